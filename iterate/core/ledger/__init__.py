"""The ledger: the one database every command reads and writes state through, and the only place with SQL.

* Two backends behind one URL (SQLAlchemy Core): SQLite in the workspace (the default, one machine) or
  PostgreSQL for a team (``ledger: postgresql://user@host/db`` in the manifest, or ``ledger: $VAR`` naming an
  environment variable that holds the URL; passwords come from the environment only).
* One schema for both, created and upgraded by Alembic migrations shipped in ``migrations/`` and run by the
  ledger itself when it opens (a ledger made before Alembic is stamped at its ``meta.schema_version``).
* One transaction per logical step (:meth:`Ledger.transaction`). Writers serialise through the database:
  ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL.
* Labels are versioned: a new label for a frame gets ``version + 1``; older versions stay (history).
* A command that writes takes the command lock (:meth:`Ledger.lock`): on SQLite a lock file in the workspace (the
  whole workspace, one writing command at a time); on PostgreSQL a session advisory lock per command, so different
  commands run at once from different machines while a second run of the same command is told it is busy.
* Rows come back as typed records (:mod:`iterate.core.ledger.records`: frames, labels, person boxes, dataset
  versions, models, rounds), re-exported here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from iterate.core.errors import BusyError, IterateError
from iterate.core.ledger.records import (
    DatasetRow,
    DatasetVersion,
    Frame,
    Label,
    Model,
    PersonBox,
    Round,
    frame_of,
    label_of,
    model_of,
    round_of,
    version_of,
)
from iterate.core.metric_keys import upgrade

SCHEMA_VERSION = 6  # the newest migration (migrations/versions/000N_*.py)
URL_ENV = "ITERATE_LEDGER_URL"
_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_WRITE_KEY = 0x1D6E7A7E  # PostgreSQL advisory lock id of the write transaction (one writer step at a time)
TABLES = (
    "frames",
    "models",
    "labels",
    "rounds",
    "round_frames",
    "tasks",
    "reports",
    "dataset_versions",
    "dataset_version_labels",
    "person_boxes",
    "kv",
)  # in foreign-key order


# -- URLs -------------------------------------------------------------------------------------------------
def resolve_url(workspace: str | Path, url: str | None = None, *, where: str = "ledger") -> str:
    """The ledger URL: ``url`` (a manifest's ``ledger`` field: a URL or ``$VAR``), else SQLite in the workspace.
    A password written into the URL itself is refused: it belongs in the environment."""
    if not url:
        return f"sqlite:///{Path(workspace).resolve() / Ledger.FILENAME}"
    if url.startswith("$"):
        var = url[1:].strip("{}")
        value = os.environ.get(var, "")
        if not value:
            raise IterateError(f"{where}: the environment variable {var} that should hold the ledger URL is not set")
        return _normalise(value, where)
    try:
        if make_url(url).password is not None:
            raise IterateError(
                f"{where}: the ledger URL holds a password; keep it out of files: set PGPASSWORD, or put the whole "
                f"URL in an environment variable and write `ledger: ${URL_ENV}`"
            )
    except ArgumentError:
        raise IterateError(
            f"{where}: '{url}' is not a database URL (sqlite:///path or postgresql://user@host/db)"
        ) from None
    return _normalise(url, where)


def _normalise(url: str, where: str) -> str:
    try:
        u = make_url(url)
    except ArgumentError:
        raise IterateError(
            f"{where}: the ledger URL is not a database URL (sqlite:///path or postgresql://…)"
        ) from None
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+psycopg")
    elif u.drivername != "sqlite":
        raise IterateError(f"{where}: ledger backend '{u.drivername}' is not supported (sqlite or postgresql)")
    return u.render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The URL as it may be printed: never the password."""
    return make_url(url).render_as_string(hide_password=True)


class Ledger:
    """Open (creating or migrating) the ledger of ``workspace``: SQLite in the workspace, or the database ``url``
    names (see :func:`resolve_url`)."""

    FILENAME = "ledger.sqlite"

    def __init__(self, workspace: str | Path, url: str | None = None):
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.url = resolve_url(self.workspace, url)
        self.where = describe_url(self.url)
        self._lock_fd: int | None = None
        self._lock_key: int | None = None
        self._depth = 0
        # (keypoints, attributes) → attributes: fills a label's derived strata as it is added (set_label_attributes)
        self._fill_attributes: Callable[[list, dict], dict] | None = None
        self.engine = _engine(self.url)
        self.dialect = self.engine.dialect.name
        try:
            self._conn: Connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "sqlite":
                self._sqlite_pragmas()
        except SQLAlchemyError as e:
            self.engine.dispose()
            raise IterateError(f"{self.where}: cannot open the ledger ({_reason(e)})") from None
        try:
            self._migrate()
        except DatabaseError as e:
            self.close()
            raise _damaged(self.where, e) from None

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        self.unlock()
        with contextlib.suppress(SQLAlchemyError):
            self._conn.close()
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sqlite_pragmas(self) -> None:
        for attempt in range(100):  # switching a fresh file to WAL does not wait on the busy handler: retry
            try:
                self._conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                break
            except OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.05)
        self._conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
        self._conn.exec_driver_sql("PRAGMA foreign_keys=ON")

    def _revision(self) -> str | None:
        """The Alembic revision of the database; a ledger made before Alembic reports its ``meta`` version."""
        insp = sa.inspect(self._conn)
        if insp.has_table("alembic_version"):
            row = self._conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchone()
            if row:
                return row[0]
        if insp.has_table("meta"):
            row = self._conn.exec_driver_sql("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row:
                return f"{int(row[0]):04d}"
        return None

    def _migrate(self) -> None:
        """Create or upgrade the schema inside one write transaction, so two commands opening a fresh ledger at
        once do not both create the tables (the version is read again once the transaction holds the lock)."""
        head = f"{SCHEMA_VERSION:04d}"
        if self._revision() == head:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
        cfg.attributes["connection"] = self._conn
        with self.transaction():
            current = self._revision()
            if current is not None and (not current.isdigit() or int(current) > SCHEMA_VERSION):
                shown = f"v{int(current)}" if current.isdigit() else f"revision {current}"
                raise IterateError(
                    f"{self.where}: ledger schema {shown} is newer than this iterate (v{SCHEMA_VERSION}); upgrade iterate"
                )
            stamped = sa.inspect(self._conn).has_table("alembic_version")
            if current == head and stamped:
                return  # another command migrated it while this one waited for the lock
            if current is not None and not stamped:
                command.stamp(cfg, current)  # made before Alembic: its meta version is the revision it is at
            command.upgrade(cfg, "head")

    @property
    def schema_version(self) -> int:
        return int(self._revision() or 0)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One logical step: everything inside commits together or not at all. Writers serialise: ``BEGIN
        IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL. Nested calls join the outer step."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            if self.dialect == "sqlite":
                self._conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                self._conn.exec_driver_sql("BEGIN")
                self._conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_KEY})")
        except DBAPIError as e:
            raise IterateError(f"{self.where}: cannot start a ledger transaction ({_reason(e)})") from None
        self._depth = 1
        try:
            yield
        except BaseException:
            with contextlib.suppress(SQLAlchemyError):  # a dropped connection rolled back already
                self._conn.exec_driver_sql("ROLLBACK")
            raise
        else:
            try:
                self._conn.exec_driver_sql("COMMIT")
            except DBAPIError as e:
                with contextlib.suppress(SQLAlchemyError):
                    self._conn.exec_driver_sql("ROLLBACK")
                raise IterateError(f"{self.where}: the step was not saved ({_reason(e)}); re-run the command") from None
        finally:
            self._depth = 0

    def lock(self, command: str = "iterate") -> None:
        """Take the command lock or raise :class:`BusyError` naming who holds it. SQLite: one writing command per
        workspace (a lock file). PostgreSQL: one run of each command at a time (a session advisory lock)."""
        if self._lock_fd is not None or self._lock_key is not None:
            return
        holder_text = f"`{command}` (pid {os.getpid()} on {socket.gethostname()})"
        if self.dialect == "sqlite":
            lock_path = self.workspace / "write.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another iterate command"
                os.close(fd)
                raise BusyError(
                    f"workspace {self.workspace} is busy: {holder} is writing; try again when it ends"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, holder_text.encode())
            self._lock_fd = fd
            return
        key = _command_key(command)
        got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if not got:
            holder = self.get(f"lock:{command}") or f"another `{command}`"
            raise BusyError(f"ledger {self.where} is busy: {holder} is running; try again when it ends")
        self._lock_key = key
        with self.transaction():
            self.set(f"lock:{command}", holder_text)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._lock_key is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._lock_key})
            self._lock_key = None

    # -- raw access (tests and diagnostics) ---------------------------------------------------------------
    def raw(self, sql: str, params: tuple | dict = ()):
        """Run one SQL statement in the driver's own parameter style (``?`` on SQLite, ``%s`` on PostgreSQL) and
        return the cursor result. For tests and diagnostics; product code uses the typed methods."""
        return self._conn.exec_driver_sql(sql, params)

    def _q(self, sql: str, **params):
        try:
            return self._conn.execute(sa.text(sql), params)
        except DatabaseError as e:
            if isinstance(e, IntegrityError):
                raise
            raise _damaged(self.where, e) from None

    # -- key/value (watermarks, project ids) ----------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self._q("SELECT value FROM kv WHERE key=:k", k=key).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        self._q(
            "INSERT INTO kv (key, value) VALUES (:k, :v) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            k=key,
            v=json.dumps(value),
        )

    # -- frames -------------------------------------------------------------------------------------
    def add_frame(self, f: Frame) -> bool:
        """Insert a frame; False when its id is already there (re-ingest adds nothing)."""
        cur = self._q(
            "INSERT INTO frames (id, path, source, video, frame_index, width, height, content_hash, phash, split,"
            " added_at) VALUES (:id, :path, :source, :video, :frame_index, :width, :height, :content_hash, :phash,"
            " :split, :added_at) ON CONFLICT DO NOTHING",
            id=f.id,
            path=f.path,
            source=f.source,
            video=f.video,
            frame_index=f.frame_index,
            width=f.width,
            height=f.height,
            content_hash=f.content_hash,
            phash=_to_signed(f.phash),
            split=f.split,
            added_at=time.time(),
        )
        return cur.rowcount == 1

    def frame(self, frame_id: str) -> Frame | None:
        row = self._q("SELECT * FROM frames WHERE id=:id", id=frame_id).mappings().fetchone()
        return frame_of(row) if row else None

    def is_retired(self, frame_id: str) -> bool:
        row = self._q("SELECT retired_at FROM frames WHERE id=:id", id=frame_id).fetchone()
        return bool(row and row[0] is not None)

    def frames(self, split: str | None = None, source: str | None = None) -> list[Frame]:
        q, args = "SELECT * FROM frames WHERE retired_at IS NULL", {}
        if split:
            q += " AND split=:split"
            args["split"] = split
        if source:
            q += " AND source=:source"
            args["source"] = source
        return [frame_of(r) for r in self._q(q + " ORDER BY id", **args).mappings()]

    def set_person_boxes(self, source: str, boxes: dict[str, PersonBox]) -> None:
        """The person boxes of ``source``'s frames, replacing the ones it had (re-running an ingest with the same
        file changes nothing). Call inside :meth:`transaction`."""
        self._q("DELETE FROM person_boxes WHERE source=:s", s=source)
        rows = []
        for fid, b in sorted(boxes.items()):
            x, y, w, h = b.box if b.box is not None else (None, None, None, None)
            rows.append({"f": fid, "s": source, "x": x, "y": y, "w": w, "h": h, "score": b.score, "p": b.people})
        if rows:  # one executemany: a large pool's boxes in one round trip per batch
            try:
                self._conn.execute(
                    sa.text(
                        "INSERT INTO person_boxes (frame_id, source, x, y, w, h, score, people)"
                        " VALUES (:f, :s, :x, :y, :w, :h, :score, :p)"
                    ),
                    rows,
                )
            except DatabaseError as e:
                if isinstance(e, IntegrityError):
                    raise
                raise _damaged(self.where, e) from None

    def person_boxes(self, source: str | None = None) -> dict[str, PersonBox]:
        """Frame id → its person box, for the frames whose source gives person boxes (``source``: of that one)."""
        out = {}
        q = "SELECT * FROM person_boxes" + (" WHERE source=:s" if source else "") + " ORDER BY frame_id"
        for r in self._q(q, s=source).mappings():
            box = None if r["x"] is None else (r["x"], r["y"], r["w"], r["h"])
            out[r["frame_id"]] = PersonBox(box, r["score"], int(r["people"]))
        return out

    def frame_ids_by_hash(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._q("SELECT content_hash, id FROM frames ORDER BY id")}

    def phashes(self) -> list[tuple[str, int]]:
        return [(r[0], _to_unsigned(r[1])) for r in self._q("SELECT id, phash FROM frames ORDER BY id")]

    def count_frames(self) -> dict[str, int]:
        rows = self._q("SELECT split, COUNT(*) FROM frames WHERE retired_at IS NULL GROUP BY split")
        return {r[0]: int(r[1]) for r in rows}

    def retire_frames(self, ids: list[str], why: str) -> list[str]:
        """Retire frames: they and their labels stay in the ledger (history), but no command uses them again;
        their pending Label Studio tasks are marked retired. → the ids that were active."""
        now = time.time()
        done = []
        for fid in ids:
            cur = self._q(
                "UPDATE frames SET retired_at=:now, retired_why=:why WHERE id=:id AND retired_at IS NULL",
                now=now,
                why=why,
                id=fid,
            )
            if cur.rowcount:
                done.append(fid)
                self._q(
                    "UPDATE tasks SET status='retired', note=:why, updated_at=:now WHERE frame_id=:id"
                    " AND status='pending'",
                    why=why,
                    now=now,
                    id=fid,
                )
        return done

    def retired_frames(self) -> list[tuple[str, str, float]]:
        rows = self._q("SELECT id, retired_why, retired_at FROM frames WHERE retired_at IS NOT NULL ORDER BY id")
        return [(r[0], r[1], r[2]) for r in rows]

    # -- labels -------------------------------------------------------------------------------------
    def set_label_attributes(self, fill: Callable[[list, dict], dict] | None) -> None:
        """Every label added from now on has its attributes passed through ``fill(keypoints, attributes)`` first:
        the loop fills the strata the manifest derives from the keypoints (:func:`iterate.core.strata.fill_derived`)
        for the labels that do not carry them, whichever reader brought the label."""
        self._fill_attributes = fill

    def add_label(
        self,
        frame_id: str,
        keypoints: list[list[float]],
        *,
        source: str,
        instance: int = 0,
        bbox: list[float] | None = None,
        attributes: dict | None = None,
        annotator: str | None = None,
        ls_task_id: int | None = None,
        ls_annotation_id: int | None = None,
        head_box: list[float] | None = None,
        lead_time: float | None = None,
        edits: dict | None = None,
    ) -> int | None:
        """Add a label version. Returns its version, or None when it equals the current one (no-op). Call inside
        :meth:`transaction` (the version is read and written under the write lock)."""
        with self.transaction():
            cur = self.current_label(frame_id, instance)
            attributes = attributes or {}
            if self._fill_attributes is not None:
                attributes = self._fill_attributes(keypoints, attributes)
            if (
                cur is not None
                and cur.keypoints == keypoints
                and cur.attributes == attributes
                and cur.bbox == bbox
                and cur.head_box == head_box
            ):
                return None
            version = 1 if cur is None else cur.version + 1
            self._q(
                "INSERT INTO labels (frame_id, instance, version, keypoints, bbox, attributes, source, annotator,"
                " ls_task_id, ls_annotation_id, created_at, head_box, lead_time, edits) VALUES (:frame_id, :instance,"
                " :version, :keypoints, :bbox, :attributes, :source, :annotator, :ls_task_id, :ls_annotation_id,"
                " :created_at, :head_box, :lead_time, :edits)",
                frame_id=frame_id,
                instance=instance,
                version=version,
                keypoints=json.dumps(keypoints),
                bbox=json.dumps(bbox) if bbox else None,
                attributes=json.dumps(attributes, sort_keys=True),
                source=source,
                annotator=annotator,
                ls_task_id=ls_task_id,
                ls_annotation_id=ls_annotation_id,
                created_at=time.time(),
                head_box=json.dumps(head_box) if head_box else None,
                lead_time=lead_time,
                edits=json.dumps(edits, sort_keys=True) if edits is not None else None,
            )
            return version

    def current_label(self, frame_id: str, instance: int = 0) -> Label | None:
        row = (
            self._q(
                "SELECT * FROM labels WHERE frame_id=:f AND instance=:i ORDER BY version DESC LIMIT 1",
                f=frame_id,
                i=instance,
            )
            .mappings()
            .fetchone()
        )
        return label_of(row) if row else None

    def label_history(self, frame_id: str, instance: int = 0) -> list[Label]:
        rows = self._q(
            "SELECT * FROM labels WHERE frame_id=:f AND instance=:i ORDER BY version", f=frame_id, i=instance
        ).mappings()
        return [label_of(r) for r in rows]

    def current_labels(self, splits: tuple[str, ...] | None = None) -> list[tuple[Frame, Label]]:
        """Newest version of every labeled (frame, instance), optionally restricted to splits."""
        fcols = ", ".join(f"f.{c} AS f_{c}" for c in Frame.__dataclass_fields__)
        q = (
            f"SELECT l.*, {fcols} FROM labels l JOIN frames f ON f.id = l.frame_id"
            " WHERE f.retired_at IS NULL"
            " AND l.version = (SELECT MAX(version) FROM labels m WHERE m.frame_id=l.frame_id AND m.instance=l.instance)"
        )
        stmt = sa.text(q + (" AND f.split IN :splits" if splits else "") + " ORDER BY l.frame_id, l.instance")
        args: dict[str, Any] = {}
        if splits:
            stmt = stmt.bindparams(sa.bindparam("splits", expanding=True))
            args["splits"] = list(splits)
        rows = self._conn.execute(stmt, args).mappings().fetchall()
        return [(frame_of({k: r[f"f_{k}"] for k in Frame.__dataclass_fields__}), label_of(r)) for r in rows]

    # -- dataset versions ---------------------------------------------------------------------------
    _CURRENT = (
        " FROM labels l JOIN frames f ON f.id = l.frame_id WHERE f.retired_at IS NULL"
        " AND l.version = (SELECT MAX(version) FROM labels m WHERE m.frame_id=l.frame_id AND m.instance=l.instance)"
    )

    def _current_where(self, splits, exclude_source) -> tuple[str, dict]:
        sql, args = self._CURRENT, {}
        if splits:
            sql += " AND f.split IN :splits"
            args["splits"] = list(splits)
        if exclude_source:
            sql += " AND f.source <> :exclude"
            args["exclude"] = exclude_source
        return sql, args

    _PAGE = 5000  # rows per query of a streamed read on PostgreSQL

    def _stream(self, sql: str, args: dict) -> Iterator[Any]:
        """Rows of one ordered query as they come, memory flat: SQLite steps its cursor lazily; PostgreSQL (whose
        client holds a whole result) is read a page at a time. ``:splits`` expands to a list."""
        pages = self.dialect != "sqlite"
        stmt = sa.text(sql + (" LIMIT :page_n OFFSET :page_at" if pages else ""))
        if "splits" in args:
            stmt = stmt.bindparams(sa.bindparam("splits", expanding=True))
        at = 0
        while True:
            try:
                res = self._conn.execute(stmt, {**args, "page_n": self._PAGE, "page_at": at} if pages else args)
                rows = res.mappings() if not pages else res.mappings().fetchall()
                n = 0
                for r in rows:
                    n += 1
                    yield r
            except DatabaseError as e:
                raise _damaged(self.where, e) from None
            if not pages or n < self._PAGE:
                return
            at += n

    def iter_current_labels(
        self, splits: tuple[str, ...] | None = None, *, exclude_source: str | None = None
    ) -> Iterator[tuple[Frame, Label]]:
        """Newest version of every labeled (frame, instance) of ``splits`` (all when None), without the frames of
        ``exclude_source``, streamed in (frame id, instance) order: the members :meth:`add_dataset_version` records
        for the same arguments. Read it inside the transaction that records the version."""
        where, args = self._current_where(splits, exclude_source)
        fcols = ", ".join(f"f.{c} AS f_{c}" for c in Frame.__dataclass_fields__)
        for r in self._stream(f"SELECT l.*, {fcols}{where} ORDER BY l.frame_id, l.instance", args):
            yield frame_of({k: r[f"f_{k}"] for k in Frame.__dataclass_fields__}), label_of(r)

    def iter_current_label_texts(
        self, splits: tuple[str, ...] | None = None, *, exclude_source: str | None = None
    ) -> Iterator[tuple]:
        """The rows of :meth:`iter_current_labels` unparsed, for hashing: (frame id, split, image hash, path,
        instance, label version, and the keypoints, bbox, head box and attributes as the JSON text stored)."""
        where, args = self._current_where(splits, exclude_source)
        sql = (
            "SELECT l.frame_id, f.split, f.content_hash, f.path, l.instance, l.version, l.keypoints, l.bbox,"
            f" l.head_box, l.attributes{where} ORDER BY l.frame_id, l.instance"
        )
        for r in self._stream(sql, args):
            yield tuple(r.values())

    def add_dataset_version(
        self,
        content_hash: str,
        *,
        made_by: str,
        n_frames: int,
        n_labels: int,
        params: dict,
        splits: tuple[str, ...] | None = None,
        exclude_source: str | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Record the current labels of ``splits`` (without ``exclude_source``'s frames) as a dataset version, or
        find the version with the same content hash → (the version, whether it is new). Call inside the
        :meth:`transaction` in which :meth:`iter_current_labels` computed the hash over the same arguments."""
        old = self._q("SELECT * FROM dataset_versions WHERE content_hash=:h", h=content_hash).mappings().fetchone()
        if old is not None:
            return version_of(old), False
        vid = int(
            self._q(
                "INSERT INTO dataset_versions (created_at, made_by, content_hash, n_frames, n_labels, params)"
                " VALUES (:now, :by, :h, :nf, :nl, :p) RETURNING id",
                now=time.time(),
                by=made_by,
                h=content_hash,
                nf=n_frames,
                nl=n_labels,
                p=json.dumps(params, sort_keys=True),
            ).scalar()
        )
        where, args = self._current_where(splits, exclude_source)
        stmt = sa.text(
            "INSERT INTO dataset_version_labels (version_id, label_id, round_id) SELECT :vid, l.id,"
            " (SELECT MIN(t.round_id) FROM tasks t WHERE t.task_id = l.ls_task_id AND t.frame_id = l.frame_id)" + where
        )
        if "splits" in args:
            stmt = stmt.bindparams(sa.bindparam("splits", expanding=True))
        self._conn.execute(stmt, {**args, "vid": vid})
        got = int(self._q("SELECT COUNT(*) FROM dataset_version_labels WHERE version_id=:v", v=vid).scalar())
        if got != n_labels:
            raise IterateError(
                f"{self.where}: dataset version v{vid} would hold {got} labels, {n_labels} were hashed; nothing kept"
            )
        return self.dataset_version(vid), True

    def dataset_version(self, version_id: int) -> DatasetVersion | None:
        row = self._q("SELECT * FROM dataset_versions WHERE id=:v", v=version_id).mappings().fetchone()
        return version_of(row) if row else None

    def dataset_versions(self) -> list[DatasetVersion]:
        return [version_of(r) for r in self._q("SELECT * FROM dataset_versions ORDER BY id").mappings()]

    def dataset_rows(self, version_id: int, splits: tuple[str, ...] | None = None) -> Iterator[DatasetRow]:
        """The members of a dataset version (of ``splits``, all when None) with their provenance, streamed in
        (split, source, path, instance) order: the order an export writes them in."""
        fcols = ", ".join(f"f.{c} AS f_{c}" for c in Frame.__dataclass_fields__)
        sql = (
            f"SELECT l.*, {fcols}, d.round_id AS d_round_id, EXISTS (SELECT 1 FROM labels p WHERE"
            " p.frame_id = l.frame_id AND p.instance = l.instance AND p.version < l.version"
            " AND p.keypoints <> l.keypoints) AS d_reviewed"
            " FROM dataset_version_labels d JOIN labels l ON l.id = d.label_id JOIN frames f ON f.id = l.frame_id"
            " WHERE d.version_id = :vid"
        )
        args: dict[str, Any] = {"vid": version_id}
        if splits:
            sql += " AND f.split IN :splits"
            args["splits"] = list(splits)
        sql += " ORDER BY f.split, f.source, f.path, l.frame_id, l.instance"
        for r in self._stream(sql, args):
            frame = frame_of({k: r[f"f_{k}"] for k in Frame.__dataclass_fields__})
            yield DatasetRow(frame, label_of(r), r["d_round_id"], bool(r["d_reviewed"]))

    def dataset_members(self, version_id: int) -> Iterator[tuple[str, int, int, str, str, str]]:
        """(frame id, instance, label version, frame path, source, split) of every member of a dataset version, in
        (frame id, instance) order."""
        sql = (
            "SELECT l.frame_id, l.instance, l.version, f.path, f.source, f.split FROM dataset_version_labels d"
            " JOIN labels l ON l.id = d.label_id JOIN frames f ON f.id = l.frame_id WHERE d.version_id = :vid"
            " ORDER BY l.frame_id, l.instance"
        )
        for r in self._stream(sql, {"vid": version_id}):
            yield r["frame_id"], int(r["instance"]), int(r["version"]), r["path"], r["source"], r["split"]

    def labeled_frame_ids(self) -> set[str]:
        return {r[0] for r in self._q("SELECT DISTINCT frame_id FROM labels")}  # retired ones too: never re-picked

    def count_labels(self) -> int:
        return int(self._q("SELECT COUNT(DISTINCT frame_id) FROM labels").scalar())

    # -- Label Studio tasks -------------------------------------------------------------------------
    def pending_frame_ids(self) -> set[str]:
        return {r[0] for r in self._q("SELECT frame_id FROM tasks WHERE status='pending'")}

    def tasked_frame_ids(self) -> set[str]:
        """Frames that have a Label Studio task in any project (a task lost in Label Studio does not count)."""
        return {r[0] for r in self._q("SELECT frame_id FROM tasks WHERE status<>'lost'")}

    def project_tasks(self, project_id: int) -> dict[int, str]:
        """task id → frame id for one Label Studio project: the tasks this ledger pushed (or recovered)."""
        rows = self._q("SELECT task_id, frame_id FROM tasks WHERE project_id=:p", p=project_id)
        return {int(r[0]): r[1] for r in rows}

    def task_statuses(self, project_id: int | None = None) -> dict[int, str]:
        """task id → status (pending | labeled | skipped | invalid | retired | lost)."""
        if project_id is None:
            rows = self._q("SELECT task_id, status FROM tasks")
        else:
            rows = self._q("SELECT task_id, status FROM tasks WHERE project_id=:p", p=project_id)
        return {int(r[0]): r[1] for r in rows}

    def open_tasks(self, project_id: int) -> list[tuple[int, str, int | None]]:
        """(task id, frame id, round id) of a project's tasks still waiting for a label (pending or invalid)."""
        rows = self._q(
            "SELECT task_id, frame_id, round_id FROM tasks WHERE project_id=:p AND status IN ('pending', 'invalid')"
            " ORDER BY task_id",
            p=project_id,
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def add_task(
        self,
        frame_id: str,
        project_id: int,
        task_id: int,
        round_id: int | None = None,
        prediction: list[list[float]] | None = None,
    ) -> None:
        """Record a pending task (kept as it is when already recorded); a frame whose task in this project was lost
        gets the new task in its place. ``prediction``: the pre-annotation pushed with it ([x, y, v] per joint; []
        for none; None: not known, e.g. a task adopted from the server). Call inside :meth:`transaction`."""
        pred = None if prediction is None else json.dumps(prediction)
        self._q(
            "UPDATE tasks SET task_id=:t, round_id=COALESCE(:r, round_id), status='pending', prediction=:pr,"
            " note='replaces task ' || CAST(task_id AS TEXT) || ', lost in Label Studio', updated_at=:now"
            " WHERE project_id=:p AND frame_id=:f AND status='lost'",
            f=frame_id,
            p=project_id,
            t=task_id,
            r=round_id,
            pr=pred,
            now=time.time(),
        )
        self._q(
            "INSERT INTO tasks (frame_id, project_id, task_id, round_id, status, updated_at, prediction)"
            " VALUES (:f, :p, :t, :r, 'pending', :now, :pr) ON CONFLICT DO NOTHING",
            f=frame_id,
            p=project_id,
            t=task_id,
            r=round_id,
            pr=pred,
            now=time.time(),
        )

    def confirm_label(self, label_id: int) -> None:
        """A review came back with this label version unchanged. Call inside :meth:`transaction`."""
        self._q("UPDATE labels SET reviewed_at=:now WHERE id=:i", now=time.time(), i=label_id)

    def replace_task(
        self, frame_id: str, project_id: int, task_id: int, prediction: list[list[float]] | None = None
    ) -> None:
        """The frame's task in this project becomes ``task_id`` (pending), e.g. a second review of a label corrected
        since the first; the old task's id is kept in the note. Call inside :meth:`transaction`."""
        self._q(
            "UPDATE tasks SET task_id=:t, status='pending', prediction=:pr, updated_at=:now,"
            " note='replaces task ' || CAST(task_id AS TEXT) WHERE project_id=:p AND frame_id=:f",
            t=task_id,
            pr=None if prediction is None else json.dumps(prediction),
            now=time.time(),
            p=project_id,
            f=frame_id,
        )

    def project_task_rows(self, project_id: int) -> dict[str, tuple[int, str]]:
        """frame id → (task id, status) of a project's tasks."""
        rows = self._q("SELECT frame_id, task_id, status FROM tasks WHERE project_id=:p", p=project_id)
        return {r[0]: (r[1], r[2]) for r in rows}

    def task_prediction(self, project_id: int, task_id: int) -> list[list[float]] | None:
        """The pre-annotation a task was pushed with ([] none; None unknown: pushed before v5 or adopted)."""
        row = self._q(
            "SELECT prediction FROM tasks WHERE project_id=:p AND task_id=:t", p=project_id, t=task_id
        ).fetchone()
        return json.loads(row[0]) if row and row[0] is not None else None

    def effort_rows(self) -> list[tuple[Frame, Label, int | None]]:
        """Every Label Studio label version (all versions: each was a piece of work) with its frame and its task's
        selection round, oldest first: what the cost report counts."""
        fcols = ", ".join(f"f.{c} AS f_{c}" for c in Frame.__dataclass_fields__)
        rows = self._q(
            f"SELECT l.*, {fcols}, t.round_id AS t_round FROM labels l JOIN frames f ON f.id = l.frame_id"
            " LEFT JOIN tasks t ON t.task_id = l.ls_task_id AND t.frame_id = l.frame_id"
            " WHERE l.ls_task_id IS NOT NULL ORDER BY l.created_at, l.id"
        ).mappings()
        out = []
        for r in rows:
            f = Frame(**{c: r[f"f_{c}"] for c in Frame.__dataclass_fields__})
            out.append((f, label_of(r), r["t_round"]))
        return out

    def set_task_status(self, project_id: int, task_id: int, status: str, note: str | None = None) -> None:
        """Call inside :meth:`transaction`."""
        self._q(
            "UPDATE tasks SET status=:s, note=:n, updated_at=:now WHERE project_id=:p AND task_id=:t",
            s=status,
            n=note,
            now=time.time(),
            p=project_id,
            t=task_id,
        )

    def mark_tasks_lost(self, project_id: int, task_ids: list[int], why: str) -> None:
        """Tasks gone from Label Studio (deleted, or their project deleted). Call inside :meth:`transaction`."""
        for tid in task_ids:
            self.set_task_status(project_id, tid, "lost", why)

    # -- models -------------------------------------------------------------------------------------
    def add_model(
        self,
        path: str,
        *,
        parent_id: int | None,
        n_train: int,
        config: dict,
        metrics: dict,
        dataset_version: int | None = None,
    ) -> int:
        """Record a trained model; ``dataset_version``: the dataset version (vN) it was trained on."""
        return int(
            self._q(
                "INSERT INTO models (created_at, path, parent_id, n_train, config, metrics, dataset_version)"
                " VALUES (:now, :path, :parent, :n, :config, :metrics, :dv) RETURNING id",
                now=time.time(),
                path=path,
                parent=parent_id,
                n=n_train,
                config=json.dumps(config),
                metrics=json.dumps(metrics),
                dv=dataset_version,
            ).scalar()
        )

    def latest_model(self) -> Model | None:
        row = self._q("SELECT * FROM models ORDER BY id DESC LIMIT 1").mappings().fetchone()
        return model_of(row) if row else None

    def model(self, model_id: int) -> Model | None:
        row = self._q("SELECT * FROM models WHERE id=:m", m=model_id).mappings().fetchone()
        return model_of(row) if row else None

    def models(self) -> list[Model]:
        return [model_of(r) for r in self._q("SELECT * FROM models ORDER BY id").mappings()]

    def add_report(self, round_no: int, path: str, model_id: int | None, summary: dict) -> int:
        """Record a written gap report. Call inside :meth:`transaction`."""
        return int(
            self._q(
                "INSERT INTO reports (round, path, model_id, summary, created_at)"
                " VALUES (:r, :path, :m, :s, :now) RETURNING id",
                r=round_no,
                path=path,
                m=model_id,
                s=json.dumps(summary),
                now=time.time(),
            ).scalar()
        )

    def report_summaries(self) -> dict[int, dict]:
        """model id → the summary of the newest report written for it."""
        rows = self._q("SELECT model_id, summary FROM reports WHERE model_id IS NOT NULL ORDER BY id")
        return {int(r[0]): upgrade(json.loads(r[1])) for r in rows}  # older metric names read as today's

    # -- rounds -------------------------------------------------------------------------------------
    def selected_frame_ids(self) -> set[str]:
        """Frames any round selected, pushed or not: never picked by a second round."""
        return {r[0] for r in self._q("SELECT DISTINCT frame_id FROM round_frames")}

    def round_frame_ids(self, round_id: int) -> list[str]:
        rows = self._q("SELECT frame_id FROM round_frames WHERE round_id=:r ORDER BY rank", r=round_id)
        return [r[0] for r in rows]

    def round_frames(self, round_id: int) -> list[tuple[str, dict]]:
        """A round's frames in rank order with what select recorded for each (why, scores, predicted strata)."""
        rows = self._q("SELECT frame_id, scores FROM round_frames WHERE round_id=:r ORDER BY rank", r=round_id)
        return [(r[0], json.loads(r[1]) if r[1] else {}) for r in rows]

    def add_round(
        self,
        *,
        chunk: int,
        budget: int,
        strategy: str,
        model_id: int | None,
        params: dict,
        frames: list[tuple[str, dict]],
    ) -> int:
        """Record a selection round and its frames in rank order (frame id, the scores shown for it). Call inside
        :meth:`transaction`."""
        rid = int(
            self._q(
                "INSERT INTO rounds (created_at, chunk, budget, strategy, model_id, params)"
                " VALUES (:now, :chunk, :budget, :strategy, :model, :params) RETURNING id",
                now=time.time(),
                chunk=chunk,
                budget=budget,
                strategy=strategy,
                model=model_id,
                params=json.dumps(params),
            ).scalar()
        )
        if frames:
            self._conn.execute(
                sa.text("INSERT INTO round_frames (round_id, frame_id, rank, scores) VALUES (:r, :f, :k, :s)"),
                [{"r": rid, "f": fid, "k": rank, "s": json.dumps(sc)} for rank, (fid, sc) in enumerate(frames, 1)],
            )
        return rid

    def round(self, round_id: int) -> Round | None:
        row = self._q("SELECT * FROM rounds WHERE id=:r", r=round_id).mappings().fetchone()
        return round_of(row) if row else None

    def round_unhandled(self, round_id: int) -> int:
        """Frames of a round with neither a task nor a label (a push that did not finish)."""
        return int(
            self._q(
                "SELECT COUNT(*) FROM round_frames rf WHERE rf.round_id=:r"
                " AND rf.frame_id NOT IN (SELECT frame_id FROM tasks)"
                " AND rf.frame_id NOT IN (SELECT frame_id FROM labels)",
                r=round_id,
            ).scalar()
        )

    def rounds(self) -> list[Round]:
        return [round_of(r) for r in self._q("SELECT * FROM rounds ORDER BY id").mappings()]

    # -- whole-ledger copy ---------------------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        return {t: int(self._q(f"SELECT COUNT(*) FROM {t}").scalar()) for t in TABLES}

    def copy_to(self, target: Ledger, progress=None) -> dict[str, int]:
        """Copy every row of this ledger into ``target`` (an empty ledger of either backend) in one transaction,
        keeping ids; → rows per table. Raises when the target already holds rows or a count differs after."""
        if any(target.table_counts().values()):
            raise IterateError(f"{target.where}: the target ledger is not empty; copy only into a new database")
        meta = sa.MetaData()
        meta.reflect(bind=self._conn, only=list(TABLES))
        counts = {}
        with target.transaction():
            for name in TABLES:
                rows = [dict(r) for r in self._conn.execute(sa.select(meta.tables[name])).mappings()]
                if rows:
                    target._conn.execute(sa.text(_insert_sql(name, list(rows[0]))), rows)
                counts[name] = len(rows)
                if progress:
                    progress(name, len(rows))
            if target.dialect == "postgresql":  # ids were copied: move the id sequences past them
                for name in ("models", "labels", "rounds", "reports", "dataset_versions"):
                    target._q(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), COALESCE(MAX(id), 0) + 1, false)"
                        f" FROM {name}"
                    )
            got = target.table_counts()
            if got != counts:
                raise IterateError(f"{target.where}: copy incomplete ({got} rows, expected {counts}); nothing kept")
        return counts


def _insert_sql(table: str, cols: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        return sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
    return sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})


def _command_key(command: str) -> int:
    return int.from_bytes(hashlib.sha1(command.encode()).digest()[:8], "big", signed=True)


def _damaged(where: str, e: Exception) -> IterateError:
    """A database error outside a known case, as one line: a damaged file says so and what to do."""
    why = _reason(e)
    hint = ""
    if any(w in why.lower() for w in ("malformed", "not a database", "corrupt", "disk i/o")):
        hint = ": the ledger file is damaged; restore it from a backup (or `sqlite3 .recover`) before running again"
    return IterateError(f"{where}: ledger error ({why}){hint}")


def _reason(e: Exception) -> str:
    orig = getattr(e, "orig", None) or e
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _to_signed(h: int) -> int:
    return h - (1 << 64) if h >= (1 << 63) else h


def _to_unsigned(h: int) -> int:
    return h + (1 << 64) if h < 0 else h
