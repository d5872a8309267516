import dataclasses
import sqlite3

import pytest

from iterate.core.errors import BusyError
from iterate.core.ledger import SCHEMA_VERSION, Frame, Ledger, Model, Round

# The schema as iterate wrote it before the Alembic migrations (ledger v1, raw SQLite DDL): such ledgers exist in
# users' workspaces and must open, be stamped and be upgraded in place.
V1_DDL = """
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
    """


def _frame(i: int, split: str = "pool") -> Frame:
    return Frame(
        id=f"f{i}",
        path=f"/x/{i}.jpg",
        source="s",
        video=None,
        frame_index=None,
        width=10,
        height=10,
        content_hash=f"h{i}",
        phash=(1 << 63) + i,
        split=split,
    )


def test_schema_version_and_reopen(tmp_path, ledger_url):
    with Ledger(tmp_path, ledger_url) as led:
        assert led.schema_version == SCHEMA_VERSION
        if led.dialect == "sqlite":
            assert led.raw("PRAGMA journal_mode").fetchone()[0] == "wal"
        with led.transaction():
            assert led.add_frame(_frame(1))
            assert not led.add_frame(_frame(1))  # the same id again adds nothing
    with Ledger(tmp_path, ledger_url) as led:  # reopening does not migrate again nor lose data
        assert [f.id for f in led.frames()] == ["f1"]
        assert led.phashes() == [("f1", (1 << 63) + 1)]  # the 64-bit hash round-trips through a signed BIGINT
        led.set("watermark", {"a": 1})
        led.set("watermark", {"a": 2})  # an upsert on both backends
        assert led.get("watermark") == {"a": 2} and led.get("missing", 7) == 7


def test_newer_schema_is_refused(tmp_path, ledger_url):
    with Ledger(tmp_path, ledger_url) as led:
        led.raw("UPDATE alembic_version SET version_num='0099'")
    with pytest.raises(Exception, match="v99 is newer than this iterate"):
        Ledger(tmp_path, ledger_url)


def test_label_versions_keep_history(tmp_path, ledger_url):
    with Ledger(tmp_path, ledger_url) as led:
        with led.transaction():
            led.add_frame(_frame(1))
            assert led.add_label("f1", [[1, 2, 2]], source="coco") == 1
            assert led.add_label("f1", [[1, 2, 2]], source="coco") is None  # same label: no new version
            assert led.add_label("f1", [[3, 4, 1]], source="labelstudio", annotator="ann", ls_task_id=7) == 2
        hist = led.label_history("f1")
        assert [h.version for h in hist] == [1, 2]
        assert hist[0].keypoints == [[1, 2, 2]] and hist[1].keypoints == [[3, 4, 1]]
        assert led.current_label("f1").source == "labelstudio"
        assert [(f.id, lab.version) for f, lab in led.current_labels()] == [("f1", 2)]


def test_models_and_rounds_come_back_as_typed_records(tmp_path, ledger_url):
    """Models and rounds are frozen records with their JSON columns decoded, the same on both backends."""
    with Ledger(tmp_path, ledger_url) as led:
        assert led.latest_model() is None and led.models() == [] and led.rounds() == [] and led.round(1) is None
        with led.transaction():
            led.add_frame(_frame(1))
            m1 = led.add_model("a.pt", parent_id=None, n_train=4, config={"lr": 0.1}, metrics={"val_pckh@0.1": 50.0})
            m2 = led.add_model(
                "b.pt", parent_id=m1, n_train=9, config={}, metrics={"replay_frames": 2}, dataset_version=None
            )
            rid = led.add_round(
                chunk=2,
                budget=1,
                strategy="uncertainty",
                model_id=m2,
                params={"push": True},
                frames=[("f1", {"u": 0.5})],
            )
    with Ledger(tmp_path, ledger_url) as led:
        model = led.latest_model()
        assert isinstance(model, Model) and model.id == m2 and model.parent_id == m1 and model.path == "b.pt"
        assert model.n_train == 9 and model.metrics == {"replay_frames": 2} and model.dataset_version is None
        assert [md.id for md in led.models()] == [m1, m2] and led.models()[0].config == {"lr": 0.1}
        assert led.models()[0].metrics["val_pckh@0.1"] == 50.0 and led.model(m1) == led.models()[0]
        assert led.model(99) is None
        rnd = led.round(rid)
        assert isinstance(rnd, Round) and led.rounds() == [rnd]
        assert (rnd.chunk, rnd.budget, rnd.strategy, rnd.model_id, rnd.params) == (
            2,
            1,
            "uncertainty",
            m2,
            {"push": True},
        )
        assert rnd.created_at >= model.created_at > 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            model.path = "c.pt"  # type: ignore[misc]


def test_failed_step_rolls_back(tmp_path, ledger_url):
    with Ledger(tmp_path, ledger_url) as led:
        with pytest.raises(RuntimeError):
            with led.transaction():
                led.add_frame(_frame(1))
                raise RuntimeError("boom")
        assert led.frames() == []


def test_second_writer_gets_busy(tmp_path, ledger_url):
    a, b = Ledger(tmp_path, ledger_url), Ledger(tmp_path, ledger_url)
    a.lock("iterate ingest")
    with pytest.raises(BusyError, match="busy: `iterate ingest` \\(pid"):
        b.lock("iterate ingest")
    if a.dialect == "sqlite":  # one machine: one writing command per workspace
        with pytest.raises(BusyError, match="busy: `iterate ingest`"):
            b.lock("iterate retrain")
    else:  # a team ledger: other commands go on, each step serialised by the database
        b.lock("iterate retrain")
        b.unlock()
    a.unlock()
    b.lock("iterate ingest")  # free again
    a.close()
    b.close()


def test_v1_ledger_is_migrated_in_place_keeping_its_labels(tmp_path):
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executescript(V1_DDL)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO frames VALUES ('f', '/x.png', 's', NULL, NULL, 4, 4, 'h', 0, 'val', 0)")
    db.execute(
        "INSERT INTO labels (frame_id, version, keypoints, source, created_at) VALUES ('f', 1, '[[1,2,2]]', 'coco', 0)"
    )
    db.commit()
    db.close()
    with Ledger(tmp_path) as led:
        assert led.schema_version == SCHEMA_VERSION
        lab = led.current_label("f")
        assert lab.keypoints == [[1, 2, 2]] and lab.head_box is None
        with led.transaction():
            assert (
                led.add_label("f", [[1, 2, 2]], source="coco", head_box=[0, 0, 3, 4]) == 2
            )  # a new head box: a version
        assert led.current_label("f").head_box == [0, 0, 3, 4]


def _open_fresh(args) -> str:
    path, url, barrier = args
    barrier.wait()
    try:
        with Ledger(path, url) as led:
            return f"v{led.schema_version}"
    except Exception as e:  # noqa: BLE001 - the test reports what went wrong
        return f"{type(e).__name__}: {e}"


def test_two_commands_opening_a_fresh_workspace_at_once_both_succeed(tmp_path, request):
    """Schema creation runs under the write transaction: no `table frames already exists` (1 in 28 before)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    pg = request.getfixturevalue("postgres")
    for i in range(12):
        barrier = ctx.Manager().Barrier(3)
        ws = tmp_path / f"ws{i}"
        url = None if i % 2 == 0 else pg.new_database()  # both backends
        with ctx.Pool(3) as pool:
            out = pool.map(_open_fresh, [(ws, url, barrier)] * 3)
        assert out == [f"v{SCHEMA_VERSION}"] * 3, out


def _write_labels(args) -> int:
    """One writer process: for each round, a new label for every frame (the same frames as the other writers)."""
    ws, url, who, rounds, n_frames, barrier = args
    barrier.wait()
    written = 0
    with Ledger(ws, url) as led:
        for r in range(rounds):
            with led.transaction():  # one step per round, like a sync batch or an ingest source
                for i in range(n_frames):
                    if led.add_label(f"f{i}", [[who, r, 2]], source=f"writer{who}") is not None:
                        written += 1
    return written


def test_concurrent_writers_leave_no_duplicate_versions_and_no_lost_rows(tmp_path, postgres):
    """Three processes write new label versions for the same 40 frames at once on one PostgreSQL ledger: every
    write lands, the versions of each frame are 1..n without a gap or a duplicate."""
    import multiprocessing as mp

    url = postgres.new_database()
    with Ledger(tmp_path, url) as led, led.transaction():
        for i in range(40):
            led.add_frame(_frame(i))
    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(3)
    with ctx.Pool(3) as pool:
        written = pool.map(_write_labels, [(tmp_path, url, w, 5, 40, barrier) for w in range(3)])
    assert written == [200, 200, 200]
    with Ledger(tmp_path, url) as led:
        rows = led.raw("SELECT frame_id, version FROM labels").fetchall()
        assert len(rows) == 600 and len(set(rows)) == 600  # no lost row, no duplicate (frame, version)
        for i in range(40):
            assert [h.version for h in led.label_history(f"f{i}")] == list(range(1, 16))


def test_a_dropped_connection_mid_step_leaves_the_ledger_as_before(tmp_path, postgres):
    url = postgres.new_database()
    with Ledger(tmp_path, url) as led:
        with led.transaction():
            led.add_frame(_frame(0))
            led.add_label("f0", [[1, 1, 2]], source="coco")
        before = led.table_counts()
        with pytest.raises(Exception), led.transaction():  # noqa: B017 - whatever the driver raises
            for i in range(1, 30):
                led.add_frame(_frame(i))
                led.add_label(f"f{i}", [[i, i, 2]], source="coco")
            assert postgres.terminate_backends(url) >= 1  # the server drops this connection mid-step
            led.add_frame(_frame(99))
    with Ledger(tmp_path, url) as led:
        assert led.table_counts() == before
        assert [f.id for f in led.frames()] == ["f0"]


def test_copy_moves_a_ledger_to_postgresql_keeping_ids(tmp_path, postgres):
    src_ws = tmp_path / "src"
    with Ledger(src_ws) as led:
        with led.transaction():
            for i in range(5):
                led.add_frame(_frame(i, "train"))
                led.add_label(f"f{i}", [[i, 0, 2]], source="coco", head_box=[0, 0, 2, 2])
            led.add_label("f1", [[9, 9, 2]], source="labelstudio")
            mid = led.add_model("m.pt", parent_id=None, n_train=5, config={"a": 1}, metrics={"pckh": 0.5})
            led.add_round(chunk=1, budget=2, strategy="full", model_id=mid, params={}, frames=[("f0", {"u": 1.0})])
            led.add_task("f0", 3, 11)
            led.set("watermark", 5)
        url = postgres.new_database()
        with Ledger(tmp_path / "dst", url) as dst:
            counts = led.copy_to(dst)
            assert counts == led.table_counts() == dst.table_counts()
            assert counts["labels"] == 6 and counts["frames"] == 5
            assert dst.current_label("f1").keypoints == [[9, 9, 2]] and dst.current_label("f2").head_box == [0, 0, 2, 2]
            assert dst.phashes() == led.phashes() and dst.get("watermark") == 5
            assert dst.models() == led.models() and dst.rounds() == led.rounds()  # the same records, ids kept
            assert dst.latest_model().config == {"a": 1} and dst.rounds()[0].model_id == mid
            assert dst.add_model("n.pt", parent_id=mid, n_train=6, config={}, metrics={}) == mid + 1  # ids go on
            with pytest.raises(Exception, match="not empty"):
                led.copy_to(dst)


def test_ledger_urls(tmp_path, monkeypatch):
    from iterate.core.ledger import describe_url, resolve_url

    assert resolve_url(tmp_path, None).startswith("sqlite:///") and resolve_url(tmp_path, None).endswith(
        "ledger.sqlite"
    )
    with pytest.raises(Exception, match="holds a password; keep it out of files"):
        resolve_url(tmp_path, "postgresql://ann:secret@db/iterate", where="m.yaml: ledger")
    monkeypatch.setenv("TEAM_LEDGER", "postgresql://ann:secret@db/iterate")
    url = resolve_url(tmp_path, "$TEAM_LEDGER")
    assert url.startswith("postgresql+psycopg://") and "secret" not in describe_url(url)
    monkeypatch.delenv("TEAM_LEDGER")
    with pytest.raises(Exception, match="TEAM_LEDGER that should hold the ledger URL is not set"):
        resolve_url(tmp_path, "$TEAM_LEDGER")
    with pytest.raises(Exception, match="'mysql' is not supported"):
        resolve_url(tmp_path, "mysql://u@h/db")


def test_a_damaged_ledger_page_is_one_line(tmp_path, lspet_coco):
    """A corrupted SQLite page (a disk fault, a copy cut off) gives one line saying the ledger is damaged and what
    to do, never a DatabaseError traceback (issue "Hardening, third pass", item 17)."""
    from typer.testing import CliRunner

    from iterate.cli import app

    from conftest import LSPET, lsp_manifest, lspet_subset

    f = lspet_subset(lspet_coco, list(range(7001, 7031)), tmp_path / "l.json")
    p = lsp_manifest(tmp_path, [{"name": "l", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}])
    assert CliRunner().invoke(app, ["ingest", "-m", str(p)]).exit_code == 0
    db = tmp_path / "ws" / "ledger.sqlite"
    for extra in ("-wal", "-shm"):
        (tmp_path / "ws" / f"ledger.sqlite{extra}").unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) > 3 * page
    data[page : len(data)] = bytes([0xA5]) * (len(data) - page)  # every page after the schema's first one
    db.write_bytes(bytes(data))
    for cmd in (["status"], ["ingest"]):
        r = CliRunner().invoke(app, [*cmd, "-m", str(p)])
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in r.output, r.output
        assert "ledger" in lines[0] and ("damaged" in lines[0] or "cannot open" in lines[0]), lines[0]


def _ledger_at(tmp_path, revision: str, *sql: str) -> None:
    """A ledger migrated only up to ``revision`` (an older iterate's), with ``sql`` run on it."""
    from alembic import command
    from alembic.config import Config

    from iterate.core.ledger import _MIGRATIONS_DIR, _engine, resolve_url

    eng = _engine(resolve_url(tmp_path))
    with eng.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        for q in sql:
            conn.exec_driver_sql(q)
    eng.dispose()


def test_v3_ledger_gains_dataset_versions_keeping_its_rows(tmp_path):
    """A ledger at schema v3 (before dataset versions, issue 32) is upgraded in place: its labels and models stay,
    and versions can be recorded on them."""
    _ledger_at(
        tmp_path,
        "0003",
        "INSERT INTO frames VALUES ('f', '/x.png', 's', NULL, NULL, 4, 4, 'h', 0, 'val', 0, NULL, NULL)",
        "INSERT INTO labels (frame_id, version, keypoints, source, created_at) VALUES ('f', 1, '[[1,2,2]]', 'coco', 0)",
        "INSERT INTO models (created_at, path) VALUES (0, 'm.pt')",
    )
    with Ledger(tmp_path) as led:
        assert led.schema_version == SCHEMA_VERSION  # every later migration applied in place
        assert led.current_label("f").keypoints == [[1, 2, 2]]
        assert led.models()[0].dataset_version is None  # trained before versions existed
        with led.transaction():
            v, new = led.add_dataset_version("h1", made_by="export", n_frames=1, n_labels=1, params={})
        assert new and v.id == 1 and [m[:3] for m in led.dataset_members(1)] == [("f", 0, 1)]


def test_v4_ledger_gains_what_labeling_costs_keeping_its_rows(tmp_path):
    """A v4 ledger (before issue 34) opens at v5: its labels and tasks stay, with no lead time, no accounting and an
    unknown pre-annotation (NULL, not "none pushed"); new rows keep all three."""
    _ledger_at(
        tmp_path,
        "0004",
        "INSERT INTO frames VALUES ('f', '/x.png', 's', NULL, NULL, 4, 4, 'h', 0, 'pool', 0, NULL, NULL)",
        "INSERT INTO labels (frame_id, version, keypoints, source, created_at, ls_task_id)"
        " VALUES ('f', 1, '[[1,2,2]]', 'labelstudio', 0, 7)",
        "INSERT INTO tasks (frame_id, project_id, task_id, updated_at) VALUES ('f', 1, 7, 0)",
    )
    with Ledger(tmp_path) as led:
        assert led.schema_version == SCHEMA_VERSION
        lab = led.current_label("f")
        assert lab.keypoints == [[1, 2, 2]] and lab.lead_time is None and lab.edits is None
        assert led.task_prediction(1, 7) is None  # unknown: pushed before the ledger kept it
        with led.transaction():
            led.add_frame(_frame(3, "pool"))
            led.add_task("f3", 1, 8, prediction=[])
            led.add_label("f3", [[3, 0, 2]], source="labelstudio", ls_task_id=8, lead_time=12.5, edits={"added": ["a"]})
        assert led.task_prediction(1, 8) == []
        lab = led.current_label("f3")
        assert lab.lead_time == 12.5 and lab.edits == {"added": ["a"]}
        assert [(f.id, r) for f, _, r in led.effort_rows()] == [("f", None), ("f3", None)]


def test_v5_ledger_gains_person_boxes_keeping_its_rows(tmp_path):
    """A v5 ledger (before person boxes, issue 30) opens at v6: its frames and labels stay, no frame has a person box
    (every prediction crops the whole frame, as before), and boxes can be stored and replaced per source."""
    from iterate.core.ledger import PersonBox

    _ledger_at(
        tmp_path,
        "0005",
        "INSERT INTO frames VALUES ('f', '/x.png', 's', NULL, NULL, 4, 4, 'h', 0, 'pool', 0, NULL, NULL)",
        "INSERT INTO labels (frame_id, version, keypoints, source, created_at) VALUES ('f', 1, '[[1,2,2]]', 'coco', 0)",
    )
    with Ledger(tmp_path) as led:
        assert led.schema_version == SCHEMA_VERSION == 6
        assert led.current_label("f").keypoints == [[1, 2, 2]] and led.person_boxes() == {}
        with led.transaction():
            led.set_person_boxes("s", {"f": PersonBox((1.0, 2.0, 3.0, 4.0), 0.9, 2)})
        assert led.person_boxes() == {"f": PersonBox((1.0, 2.0, 3.0, 4.0), 0.9, 2)}
        with led.transaction():
            led.set_person_boxes("s", {"f": PersonBox(None, None, 0)})  # a source's boxes are replaced, not added
        assert led.person_boxes() == {"f": PersonBox(None, None, 0)}


def test_dataset_versions_hold_the_label_versions_they_were_recorded_with(tmp_path, ledger_url):
    """A version keeps its (frame, label version) rows after later labels; the same content hash is the same
    version; the members are streamed in order on both backends (PostgreSQL a page at a time)."""
    with Ledger(tmp_path, ledger_url) as led:
        led._PAGE = 3  # several pages on PostgreSQL
        with led.transaction():
            for i in range(7):
                led.add_frame(_frame(i, "train" if i < 5 else "val"))
                led.add_label(f"f{i}", [[i, 0, 2]], source="coco")
            led.add_frame(_frame(9, "train"))
            led.add_label("f9", [[9, 0, 2]], source="coco")
        led.retire_frames(["f9"], "test")
        with led.transaction():
            rows = list(led.iter_current_labels(("train",)))
            assert [f.id for f, _ in rows] == ["f0", "f1", "f2", "f3", "f4"]  # retired f9 and val left out
            v1, new = led.add_dataset_version(
                "a", made_by="export", n_frames=5, n_labels=5, params={}, splits=("train",)
            )
        assert new
        with led.transaction():
            led.add_label("f1", [[5, 5, 1]], source="labelstudio", ls_task_id=3)
            assert led.add_dataset_version("a", made_by="retrain", n_frames=5, n_labels=5, params={})[0] == v1
            v2, _ = led.add_dataset_version("b", made_by="retrain", n_frames=7, n_labels=7, params={"x": 1})
        assert [(f, v) for f, _, v, *_ in led.dataset_members(v1.id)] == [(f"f{i}", 1) for i in range(5)]
        assert dict((f, v) for f, _, v, *_ in led.dataset_members(v2.id))["f1"] == 2
        rows = list(led.dataset_rows(v2.id))
        assert [r.frame.split for r in rows] == ["train"] * 5 + ["val"] * 2  # (split, source, path) order
        assert [r.reviewed for r in rows if r.frame.id == "f1"] == [True]  # replaced other keypoints
        assert led.dataset_version(v2.id).params == {"x": 1} and led.dataset_version(99) is None
        with pytest.raises(Exception, match="would hold 7 labels, 6 were hashed"), led.transaction():
            led.add_dataset_version("c", made_by="export", n_frames=6, n_labels=6, params={})
        assert [v.id for v in led.dataset_versions()] == [v1.id, v2.id]  # the refused one left nothing
