import sqlite3

import pytest

from iterate.core.errors import BusyError
from iterate.core.ledger import SCHEMA_VERSION, Frame, Ledger


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


def test_schema_version_wal_and_reopen(tmp_path):
    with Ledger(tmp_path) as led:
        assert led.schema_version == SCHEMA_VERSION
        assert led.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with led.transaction():
            assert led.add_frame(_frame(1))
    with Ledger(tmp_path) as led:  # reopening does not migrate again nor lose data
        assert [f.id for f in led.frames()] == ["f1"]
        assert led.phashes() == [("f1", (1 << 63) + 1)]  # 64-bit hash round-trips through SQLite


def test_newer_schema_is_refused(tmp_path):
    Ledger(tmp_path).close()
    db = sqlite3.connect(tmp_path / Ledger.FILENAME)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(Exception, match="newer than this iterate"):
        Ledger(tmp_path)


def test_label_versions_keep_history(tmp_path):
    with Ledger(tmp_path) as led:
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


def test_failed_step_rolls_back(tmp_path):
    with Ledger(tmp_path) as led:
        with pytest.raises(RuntimeError):
            with led.transaction():
                led.add_frame(_frame(1))
                raise RuntimeError("boom")
        assert led.frames() == []


def test_second_writer_gets_busy(tmp_path):
    a, b = Ledger(tmp_path), Ledger(tmp_path)
    a.lock("iterate ingest")
    with pytest.raises(BusyError, match="busy: `iterate ingest`"):
        b.lock("iterate retrain")
    a.unlock()
    b.lock("iterate retrain")  # free again
    a.close()
    b.close()


def test_v1_ledger_is_migrated_in_place_keeping_its_labels(tmp_path):
    import sqlite3

    from iterate.core.ledger import _MIGRATIONS

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.executescript(_MIGRATIONS[1])
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
    path, barrier = args
    barrier.wait()
    try:
        with Ledger(path) as led:
            return f"v{led.schema_version}"
    except Exception as e:  # noqa: BLE001 - the test reports what went wrong
        return f"{type(e).__name__}: {e}"


def test_two_commands_opening_a_fresh_workspace_at_once_both_succeed(tmp_path):
    """Schema creation runs under the write transaction: no `table frames already exists` (1 in 28 before)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for i in range(12):
        barrier = ctx.Manager().Barrier(3)
        ws = tmp_path / f"ws{i}"
        with ctx.Pool(3) as pool:
            out = pool.map(_open_fresh, [(ws, barrier)] * 3)
        assert out == [f"v{SCHEMA_VERSION}"] * 3, out
