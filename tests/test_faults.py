"""Faults with real processes and a real server: kill -9, a server restart mid-push, corrupt images, busy."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotation import server
from annotation.client import Studio, StudioError
from annotation.oracle import autolabel
from annotation.push import push
from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.settings import labeling, studio_settings
from model.checkpoints import load_file

from conftest import LSPET, STUDIO_TOKEN_ENV, lsp_manifest, lspet_subset, studio_manifest

BIN = Path(sys.executable).parent


def _labeled_project(tmp, lspet_coco, ids_train, ids_val, **over):
    tr = lspet_subset(lspet_coco, list(ids_train), tmp / "tr.json")
    va = lspet_subset(lspet_coco, list(ids_val), tmp / "va.json")
    p = lsp_manifest(
        tmp,
        [
            {"name": "tr", "kind": "coco", "path": str(tr), "images": str(LSPET), "split": "train"},
            {"name": "va", "kind": "coco", "path": str(va), "images": str(LSPET), "split": "val"},
        ],
        **over,
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p, m


def test_kill9_during_retrain_then_resume(tmp_path, lspet_coco):
    p, m = _labeled_project(
        tmp_path,
        lspet_coco,
        range(7651, 7667),
        range(7667, 7671),
        train={"epochs": 20, "batch_size": 8, "warmup_steps": 2},
    )
    last = m.workspace_dir / "models" / "model-001" / "last.pt"
    proc = subprocess.Popen(
        [str(BIN / "iterate"), "retrain", "-m", str(p)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t0 = time.time()
        while not last.exists() and time.time() - t0 < 300:
            time.sleep(0.2)
        assert last.exists(), "no checkpoint before the kill"
        # while it writes, a second command is told the workspace is busy (and nothing is corrupted)
        r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
        assert r.exit_code == 3 and "busy" in r.output
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = load_file(last)["epoch"]
    assert saved < 19, "training finished before the kill; the test needs a kill mid-run"
    r = subprocess.run(
        [str(BIN / "iterate"), "retrain", "-m", str(p), "--resume"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_file(last)
    assert [h["epoch"] for h in ck["history"]] == list(range(20))  # continued after the last complete epoch
    with Ledger(m.workspace_dir) as led:
        assert len(led.models()) == 1 and led.get("training_run") is None


def _studio_project(tmp, lspet_coco, studio, title, ids):
    coco = lspet_subset(lspet_coco, list(ids), tmp / "pool.json")
    p = studio_manifest(
        tmp,
        studio["port"],
        [{"name": "pool", "kind": "coco", "path": str(coco), "images": str(LSPET), "split": "pool", "labels": False}],
        title,
        selection={"dedup_hamming": 0},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p, m, coco


def test_kill9_during_sync_then_rerun_loses_and_duplicates_nothing(tmp_path, lspet_coco, studio):
    p, m, coco = _studio_project(tmp_path, lspet_coco, studio, "kill-sync", range(7701, 7741))
    with Ledger(m.workspace_dir) as led:
        st = Studio.from_settings(studio_settings(m))
        push(labeling(m), led, st, [f.id for f in led.frames("pool")])
        assert autolabel(labeling(m), led, st, coco).answered == 40
    for delay in (0.3, 1.0):
        proc = subprocess.Popen(
            [str(BIN / "iterate"), "sync-labels", "-m", str(p)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ},
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    r = subprocess.run([str(BIN / "iterate"), "sync-labels", "-m", str(p)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    with Ledger(m.workspace_dir) as led:
        assert len(led.current_labels()) == 40
        assert tuple(led.raw("SELECT COUNT(*), MAX(version) FROM labels").fetchone()) == (40, 1)
        assert led.raw("SELECT COUNT(*) FROM tasks WHERE status='labeled'").fetchone()[0] == 40


def test_server_restarted_mid_push_finishes_without_duplicates(tmp_path, lspet_coco, studio):
    p, m, coco = _studio_project(tmp_path, lspet_coco, studio, "restart-push", range(7751, 7761))
    sm = studio["manifest"]
    led = Ledger(m.workspace_dir)
    ids = [f.id for f in led.frames("pool")]
    import annotation.push as push_mod

    calls = []
    real_import = Studio.import_tasks

    def import_then_die(self, pid, tasks):
        out = real_import(self, pid, tasks)
        calls.append(len(tasks))
        if len(calls) == 2:  # the server goes down right after accepting the second batch
            server.stop(studio_settings(sm))
        return out

    st = Studio(m.label_studio.url, STUDIO_TOKEN_ENV, retries=1, backoff=0.1)
    Studio.import_tasks = import_then_die
    try:
        with pytest.raises(StudioError, match="not reachable"):
            push_mod.push(labeling(m), led, st, ids)
    finally:
        Studio.import_tasks = real_import
    assert led.raw("SELECT COUNT(*) FROM tasks").fetchone()[0] == 8  # the two completed batches are kept
    # a process killed between the server's import and the ledger write leaves tasks the ledger does not know:
    # make that state (drop batch 2's rows), which only a kill at exactly that instant would produce
    with led.transaction():
        led.raw("DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM tasks ORDER BY task_id DESC LIMIT 4)")
    server.start(studio_settings(sm))
    s = push_mod.push(labeling(m), led, Studio.from_settings(studio_settings(m)), ids)
    assert s.recovered == 4 and s.pushed == 2  # batch 2 reconciled from the server, the last batch imported
    tasks = Studio.from_settings(studio_settings(m)).tasks(s.project_id, fields="task_only")
    frame_ids = [t["data"]["frame_id"] for t in tasks]
    assert sorted(frame_ids) == sorted(ids)  # every frame exactly once on the server
    assert led.raw("SELECT COUNT(*) FROM tasks").fetchone()[0] == 10
    led.close()


def test_corrupt_pool_image_is_never_selected(tmp_path, lspet_coco):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(7801, 7811):
        shutil.copy(LSPET / "images" / f"im{i:05d}.jpg", folder)
    tr = lspet_subset(lspet_coco, list(range(7811, 7819)), tmp_path / "tr.json")
    p = lsp_manifest(
        tmp_path,
        [
            {"kind": "images", "path": str(folder)},
            {"name": "tr", "kind": "coco", "path": str(tr), "images": str(LSPET), "split": "train"},
        ],
        train={"epochs": 1, "batch_size": 8, "warmup_steps": 1},
        selection={"dedup_hamming": 0},
    )
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "-m", str(p)]).exit_code == 0
    assert runner.invoke(app, ["retrain", "-m", str(p)]).exit_code == 0
    (folder / "im07803.jpg").write_bytes(b"\xff\xd8 truncated")  # the file breaks after ingest
    r = runner.invoke(app, ["select", "--budget", "9", "--strategy", "uncertainty", "--no-push", "-m", str(p)])
    assert r.exit_code == 0, r.output
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        picked = [led.frame(f).path for (f,) in led.raw("SELECT frame_id FROM round_frames")]
    assert len(picked) == 9 and not any(x.endswith("im07803.jpg") for x in picked)
    # the first round holds its 9 frames: only the broken one is left, and it is not a readable candidate
    r = runner.invoke(app, ["select", "--budget", "1", "--strategy", "uncertainty", "--no-push", "-m", str(p)])
    assert r.exit_code == 2 and "no pool frame could be read" in r.output and "Traceback" not in r.output
