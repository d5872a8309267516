"""The ledger: one SQLite database in the workspace that every command reads and writes state through.

* WAL journal, one ``BEGIN IMMEDIATE`` transaction per logical step (:meth:`Ledger.transaction`).
* Schema version in ``meta``; :data:`_MIGRATIONS` upgrades an older database in place.
* Labels are versioned: a new label for a frame gets ``version + 1``; older versions stay (history).
* A write lock file in the workspace makes a second writing command fail with "busy" at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iterate.core.errors import BusyError, IterateError

SCHEMA_VERSION = 3

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE frames (
        id TEXT PRIMARY KEY,             -- stable: hash of source + relative path + frame index
        path TEXT NOT NULL,              -- absolute path of the image file
        source TEXT NOT NULL,
        video TEXT,                      -- video path for frames cut from a video
        frame_index INTEGER,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        content_hash TEXT NOT NULL,      -- sha1 of the file bytes
        phash INTEGER NOT NULL,          -- 64-bit difference hash (near-duplicate test)
        split TEXT NOT NULL CHECK (split IN ('pool','train','val','test')),
        added_at REAL NOT NULL
    );
    CREATE INDEX frames_split ON frames(split);
    CREATE UNIQUE INDEX frames_content ON frames(content_hash, source, frame_index);
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        frame_id TEXT NOT NULL REFERENCES frames(id),
        instance INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL,
        keypoints TEXT NOT NULL,         -- JSON [[x, y, v], ...] in image pixels, v in {0, 1, 2}
        bbox TEXT,                       -- JSON [x, y, w, h] or null
        attributes TEXT NOT NULL DEFAULT '{}',
        source TEXT NOT NULL,            -- coco | labelstudio | oracle | ...
        annotator TEXT,
        ls_task_id INTEGER,
        ls_annotation_id INTEGER,
        created_at REAL NOT NULL,
        UNIQUE (frame_id, instance, version)
    );
    CREATE INDEX labels_frame ON labels(frame_id);
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        chunk INTEGER NOT NULL,
        budget INTEGER NOT NULL,
        strategy TEXT NOT NULL,
        model_id INTEGER REFERENCES models(id),
        params TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE round_frames (
        round_id INTEGER NOT NULL REFERENCES rounds(id),
        frame_id TEXT NOT NULL REFERENCES frames(id),
        rank INTEGER NOT NULL,
        scores TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (round_id, frame_id)
    );
    CREATE TABLE tasks (
        frame_id TEXT NOT NULL REFERENCES frames(id),
        project_id INTEGER NOT NULL,
        task_id INTEGER NOT NULL,
        round_id INTEGER REFERENCES rounds(id),
        status TEXT NOT NULL DEFAULT 'pending',   -- pending | labeled | skipped | invalid
        note TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (project_id, task_id),
        UNIQUE (project_id, frame_id)
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        path TEXT NOT NULL,
        parent_id INTEGER REFERENCES models(id),
        n_train INTEGER NOT NULL DEFAULT 0,
        config TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        round INTEGER NOT NULL,
        path TEXT NOT NULL,
        model_id INTEGER REFERENCES models(id),
        summary TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    );
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # v2: labels.head_box, JSON [x, y, w, h] from COCO bbox_head / head_box, or null
    2: """
    ALTER TABLE labels ADD COLUMN head_box TEXT
    """,
    # v3: frames.retired_at (a frame retired by `iterate frames remove`: kept with its history, used no more)
    3: """
    ALTER TABLE frames ADD COLUMN retired_at REAL;
    ALTER TABLE frames ADD COLUMN retired_why TEXT
    """,
}


@dataclass(frozen=True)
class Frame:
    id: str
    path: str
    source: str
    video: str | None
    frame_index: int | None
    width: int
    height: int
    content_hash: str
    phash: int
    split: str


@dataclass(frozen=True)
class Label:
    id: int
    frame_id: str
    instance: int
    version: int
    keypoints: list[list[float]]
    bbox: list[float] | None
    attributes: dict[str, Any]
    source: str
    annotator: str | None
    ls_task_id: int | None
    ls_annotation_id: int | None
    created_at: float
    head_box: list[float] | None = None


def _label(row: sqlite3.Row) -> Label:
    return Label(
        id=row["id"],
        frame_id=row["frame_id"],
        instance=row["instance"],
        version=row["version"],
        keypoints=json.loads(row["keypoints"]),
        bbox=json.loads(row["bbox"]) if row["bbox"] else None,
        attributes=json.loads(row["attributes"]),
        source=row["source"],
        annotator=row["annotator"],
        ls_task_id=row["ls_task_id"],
        ls_annotation_id=row["ls_annotation_id"],
        created_at=row["created_at"],
        head_box=json.loads(row["head_box"]) if row["head_box"] else None,
    )


def _frame(row: sqlite3.Row) -> Frame:
    return Frame(**{k: row[k] for k in Frame.__dataclass_fields__})


class Ledger:
    """Open (creating or migrating) the ledger database in ``workspace``."""

    FILENAME = "ledger.sqlite"

    def __init__(self, workspace: str | Path):
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / self.FILENAME
        self._lock_fd: int | None = None
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise IterateError(f"{self.path}: cannot open the ledger ({e})") from None
        self.db.row_factory = sqlite3.Row
        for attempt in range(100):  # switching a fresh file to WAL does not wait on the busy handler: retry
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise IterateError(f"{self.path}: cannot open the ledger ({e})") from None
                time.sleep(0.05)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        self.unlock()
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _version(self) -> int:
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        """Create or upgrade the schema. The version is read again inside each write transaction, so two
        commands opening a fresh workspace at once do not both create the tables."""
        current = self._version()
        if current > SCHEMA_VERSION:
            raise IterateError(
                f"{self.path}: ledger schema v{current} is newer than this iterate (v{SCHEMA_VERSION}); upgrade iterate"
            )
        while current < SCHEMA_VERSION:
            with self.transaction():  # BEGIN IMMEDIATE: one writer at a time
                current = self._version()
                if current >= SCHEMA_VERSION:
                    break
                v = current + 1
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(v),))
            current = v

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One logical step: everything inside commits together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def lock(self, command: str = "iterate") -> None:
        """Take the workspace write lock or raise :class:`BusyError` naming who holds it."""
        if self._lock_fd is not None:
            return
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
        os.write(fd, f"`{command}` (pid {os.getpid()})".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- key/value (watermarks, project ids) ----------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    # -- frames -------------------------------------------------------------------------------------
    def add_frame(self, f: Frame) -> bool:
        """Insert a frame; False when its id is already there (re-ingest adds nothing)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO frames (id, path, source, video, frame_index, width, height, content_hash, phash,"
            " split, added_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                f.id,
                f.path,
                f.source,
                f.video,
                f.frame_index,
                f.width,
                f.height,
                f.content_hash,
                _to_signed(f.phash),
                f.split,
                time.time(),
            ),
        )
        return cur.rowcount == 1

    def frame(self, frame_id: str) -> Frame | None:
        row = self.db.execute("SELECT * FROM frames WHERE id=?", (frame_id,)).fetchone()
        return _frame(row) if row else None

    def frames(self, split: str | None = None, source: str | None = None) -> list[Frame]:
        q, args = "SELECT * FROM frames WHERE retired_at IS NULL", []
        if split:
            q += " AND split=?"
            args.append(split)
        if source:
            q += " AND source=?"
            args.append(source)
        return [_frame(r) for r in self.db.execute(q + " ORDER BY id", args)]

    def frame_ids_by_hash(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT content_hash, id FROM frames")}

    def phashes(self) -> list[tuple[str, int]]:
        return [(r[0], _to_unsigned(r[1])) for r in self.db.execute("SELECT id, phash FROM frames")]

    def count_frames(self) -> dict[str, int]:
        return {
            r[0]: r[1]
            for r in self.db.execute("SELECT split, COUNT(*) FROM frames WHERE retired_at IS NULL GROUP BY split")
        }

    def retire_frames(self, ids: list[str], why: str) -> list[str]:
        """Retire frames: they and their labels stay in the ledger (history), but no command uses them again;
        their pending Label Studio tasks are marked retired. → the ids that were active."""
        now = time.time()
        done = []
        for fid in ids:
            cur = self.db.execute(
                "UPDATE frames SET retired_at=?, retired_why=? WHERE id=? AND retired_at IS NULL", (now, why, fid)
            )
            if cur.rowcount:
                done.append(fid)
                self.db.execute(
                    "UPDATE tasks SET status='retired', note=?, updated_at=? WHERE frame_id=? AND status='pending'",
                    (why, now, fid),
                )
        return done

    def retired_frames(self) -> list[tuple[str, str, float]]:
        return [
            (r[0], r[1], r[2])
            for r in self.db.execute(
                "SELECT id, retired_why, retired_at FROM frames WHERE retired_at IS NOT NULL ORDER BY id"
            )
        ]

    # -- labels -------------------------------------------------------------------------------------
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
    ) -> int | None:
        """Add a label version. Returns its version, or None when it equals the current one (no-op)."""
        cur = self.current_label(frame_id, instance)
        attributes = attributes or {}
        if (
            cur is not None
            and cur.keypoints == keypoints
            and cur.attributes == attributes
            and cur.bbox == bbox
            and cur.head_box == head_box
        ):
            return None
        version = 1 if cur is None else cur.version + 1
        self.db.execute(
            "INSERT INTO labels (frame_id, instance, version, keypoints, bbox, attributes, source, annotator,"
            " ls_task_id, ls_annotation_id, created_at, head_box) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                frame_id,
                instance,
                version,
                json.dumps(keypoints),
                json.dumps(bbox) if bbox else None,
                json.dumps(attributes, sort_keys=True),
                source,
                annotator,
                ls_task_id,
                ls_annotation_id,
                time.time(),
                json.dumps(head_box) if head_box else None,
            ),
        )
        return version

    def current_label(self, frame_id: str, instance: int = 0) -> Label | None:
        row = self.db.execute(
            "SELECT * FROM labels WHERE frame_id=? AND instance=? ORDER BY version DESC LIMIT 1",
            (frame_id, instance),
        ).fetchone()
        return _label(row) if row else None

    def label_history(self, frame_id: str, instance: int = 0) -> list[Label]:
        rows = self.db.execute(
            "SELECT * FROM labels WHERE frame_id=? AND instance=? ORDER BY version", (frame_id, instance)
        )
        return [_label(r) for r in rows]

    def current_labels(self, splits: tuple[str, ...] | None = None) -> list[tuple[Frame, Label]]:
        """Newest version of every labeled (frame, instance), optionally restricted to splits."""
        fcols = ", ".join(f"f.{c} AS f_{c}" for c in Frame.__dataclass_fields__)
        q = (
            f"SELECT l.*, {fcols} FROM labels l JOIN frames f ON f.id = l.frame_id"
            " WHERE f.retired_at IS NULL"
            " AND l.version = (SELECT MAX(version) FROM labels m WHERE m.frame_id=l.frame_id AND m.instance=l.instance)"
        )
        args: list[Any] = []
        if splits:
            q += f" AND f.split IN ({','.join('?' * len(splits))})"
            args += list(splits)
        rows = self.db.execute(q + " ORDER BY l.frame_id, l.instance", args).fetchall()
        return [(Frame(**{k: r[f"f_{k}"] for k in Frame.__dataclass_fields__}), _label(r)) for r in rows]

    def labeled_frame_ids(self) -> set[str]:
        return {
            r[0] for r in self.db.execute("SELECT DISTINCT frame_id FROM labels")
        }  # retired ones too: never re-picked

    def count_labels(self) -> int:
        return self.db.execute("SELECT COUNT(DISTINCT frame_id) FROM labels").fetchone()[0]

    # -- tasks (Label Studio) -----------------------------------------------------------------------
    def pending_frame_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT frame_id FROM tasks WHERE status='pending'")}

    # -- Label Studio tasks -------------------------------------------------------------------------
    def tasked_frame_ids(self) -> set[str]:
        """Frames that have a Label Studio task in any project."""
        return {r[0] for r in self.db.execute("SELECT frame_id FROM tasks")}

    def project_tasks(self, project_id: int) -> dict[int, str]:
        """task id → frame id for one Label Studio project."""
        rows = self.db.execute("SELECT task_id, frame_id FROM tasks WHERE project_id=?", (project_id,))
        return {int(r[0]): r[1] for r in rows}

    def task_statuses(self, project_id: int | None = None) -> dict[int, str]:
        """task id → status (pending | labeled | skipped | invalid)."""
        q, args = "SELECT task_id, status FROM tasks", ()
        if project_id is not None:
            q, args = q + " WHERE project_id=?", (project_id,)
        return {int(r[0]): r[1] for r in self.db.execute(q, args)}

    def add_task(self, frame_id: str, project_id: int, task_id: int, round_id: int | None = None) -> None:
        """Record a pending task (kept as it is when already recorded). Call inside :meth:`transaction`."""
        self.db.execute(
            "INSERT OR IGNORE INTO tasks (frame_id, project_id, task_id, round_id, status, updated_at) "
            "VALUES (?,?,?,?,?,?)",
            (frame_id, project_id, task_id, round_id, "pending", time.time()),
        )

    def set_task_status(self, project_id: int, task_id: int, status: str, note: str | None = None) -> None:
        """Call inside :meth:`transaction`."""
        self.db.execute(
            "UPDATE tasks SET status=?, note=?, updated_at=? WHERE project_id=? AND task_id=?",
            (status, note, time.time(), project_id, task_id),
        )

    # -- models -------------------------------------------------------------------------------------
    def add_model(self, path: str, *, parent_id: int | None, n_train: int, config: dict, metrics: dict) -> int:
        cur = self.db.execute(
            "INSERT INTO models (created_at, path, parent_id, n_train, config, metrics) VALUES (?,?,?,?,?,?)",
            (time.time(), path, parent_id, n_train, json.dumps(config), json.dumps(metrics)),
        )
        return int(cur.lastrowid)

    def latest_model(self) -> dict | None:
        row = self.db.execute("SELECT * FROM models ORDER BY id DESC LIMIT 1").fetchone()
        return _model(row) if row else None

    def models(self) -> list[dict]:
        return [_model(r) for r in self.db.execute("SELECT * FROM models ORDER BY id")]

    def add_report(self, round_no: int, path: str, model_id: int | None, summary: dict) -> int:
        """Record a written gap report. Call inside :meth:`transaction`."""
        cur = self.db.execute(
            "INSERT INTO reports (round, path, model_id, summary, created_at) VALUES (?,?,?,?,?)",
            (round_no, path, model_id, json.dumps(summary), time.time()),
        )
        return int(cur.lastrowid)

    def report_summaries(self) -> dict[int, dict]:
        """model id → the summary of the newest report written for it."""
        rows = self.db.execute("SELECT model_id, summary FROM reports WHERE model_id IS NOT NULL ORDER BY id")
        return {int(r[0]): json.loads(r[1]) for r in rows}

    # -- rounds -------------------------------------------------------------------------------------
    def round_frame_ids(self, round_id: int) -> list[str]:
        return [
            r[0]
            for r in self.db.execute("SELECT frame_id FROM round_frames WHERE round_id=? ORDER BY rank", (round_id,))
        ]

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
            self.db.execute(
                "INSERT INTO rounds (created_at, chunk, budget, strategy, model_id, params) VALUES (?,?,?,?,?,?)",
                (time.time(), chunk, budget, strategy, model_id, json.dumps(params)),
            ).lastrowid
        )
        self.db.executemany(
            "INSERT INTO round_frames (round_id, frame_id, rank, scores) VALUES (?,?,?,?)",
            [(rid, fid, rank, json.dumps(sc)) for rank, (fid, sc) in enumerate(frames, 1)],
        )
        return rid

    def round(self, round_id: int) -> dict | None:
        row = self.db.execute("SELECT * FROM rounds WHERE id=?", (round_id,)).fetchone()
        return dict(row) | {"params": json.loads(row["params"])} if row else None

    def round_unhandled(self, round_id: int) -> int:
        """Frames of a round with neither a task nor a label (a push that did not finish)."""
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM round_frames rf WHERE rf.round_id=? AND rf.frame_id NOT IN (SELECT frame_id FROM tasks)"
                " AND rf.frame_id NOT IN (SELECT frame_id FROM labels)",
                (round_id,),
            ).fetchone()[0]
        )

    def rounds(self) -> list[dict]:
        rows = self.db.execute("SELECT * FROM rounds ORDER BY id")
        return [dict(r) | {"params": json.loads(r["params"])} for r in rows]


def _model(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["metrics"] = json.loads(d["metrics"])
    return d


def _to_signed(h: int) -> int:
    return h - (1 << 64) if h >= (1 << 63) else h


def _to_unsigned(h: int) -> int:
    return h + (1 << 64) if h < 0 else h
