"""A team's ledger on a real PostgreSQL server (session fixture `postgres`) shared by commands running at once,
with a real Label Studio (session fixture `studio`)."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from typer.testing import CliRunner

from annotation.client import Studio
from annotation.oracle import autolabel
from annotation.push import push
from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.settings import labeling, studio_settings

from conftest import LSPET, lspet_subset, studio_manifest

URL_VAR = "ITERATE_TEST_TEAM_LEDGER"


def _cli(manifest, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "iterate.cli", *args, "-m", str(manifest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_sync_labels_and_ingest_at_once_on_one_postgresql_ledger(tmp_path, lspet_coco, studio, postgres, monkeypatch):
    """Two machines' commands at once: `sync-labels` pulls 12 finished tasks while `ingest` adds 60 labeled
    frames, both as separate processes on one PostgreSQL ledger. Both finish (different commands do not block
    each other), nothing is duplicated or lost, and re-running both changes nothing."""
    monkeypatch.setenv(URL_VAR, postgres.new_database())
    pool = lspet_subset(lspet_coco, list(range(7401, 7413)), tmp_path / "pool.json")
    train = lspet_subset(lspet_coco, list(range(7501, 7561)), tmp_path / "train.json")
    src_pool = {
        "name": "pool",
        "kind": "coco",
        "path": str(pool),
        "images": str(LSPET),
        "split": "pool",
        "labels": False,
    }
    src_train = {"name": "train", "kind": "coco", "path": str(train), "images": str(LSPET), "split": "train"}
    mp = studio_manifest(
        tmp_path, studio["port"], [src_pool], "team", selection={"dedup_hamming": 0}, ledger=f"${URL_VAR}"
    )
    m = load_manifest(mp)
    with Ledger(m.workspace_dir, m.ledger) as led:
        assert led.dialect == "postgresql"
        ingest(m, led)
        st = Studio.from_settings(studio_settings(m))
        ids = [f.id for f in led.frames("pool")]
        assert push(labeling(m), led, st, ids).pushed == 12
        assert autolabel(labeling(m), led, st, pool).answered == 12
    # the second engineer's manifest adds a labeled training source to the same project
    doc = yaml.safe_load(mp.read_text())
    doc["sources"].append(src_train)
    mp2 = tmp_path / "engineer2.yaml"
    mp2.write_text(yaml.safe_dump(doc, sort_keys=False))

    procs = [_cli(mp, "sync-labels"), _cli(mp2, "ingest")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with Ledger(m.workspace_dir, m.ledger) as led:
        rows = led.raw("SELECT frame_id, instance, version FROM labels").fetchall()
        assert len(rows) == 72 and len(set(rows)) == 72  # 12 synced + 60 ingested; no duplicate version
        assert led.count_frames() == {"pool": 12, "train": 60}
        assert sorted(set(led.task_statuses().values())) == ["labeled"]
        assert {lab.source for f, lab in led.current_labels(("pool",))} == {"labelstudio"}
        counts = led.table_counts()
    procs = [_cli(mp, "sync-labels"), _cli(mp2, "ingest")]  # again, at once: nothing new
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with Ledger(m.workspace_dir, m.ledger) as led:
        assert led.table_counts() == counts


def test_cli_ledger_copy_to_postgresql(tmp_path, lspet_coco, postgres, monkeypatch):
    from conftest import lsp_manifest

    train = lspet_subset(lspet_coco, list(range(7601, 7606)), tmp_path / "train.json")
    mp = lsp_manifest(
        tmp_path, [{"name": "train", "kind": "coco", "path": str(train), "images": str(LSPET), "split": "train"}]
    )
    r = CliRunner().invoke(app, ["ingest", "-m", str(mp)])
    assert r.exit_code == 0, r.output
    url = postgres.new_database()
    monkeypatch.setenv(URL_VAR, url)
    r = CliRunner().invoke(app, ["ledger", "copy", "--to", f"${URL_VAR}", "-m", str(mp)])
    assert r.exit_code == 0, r.output
    assert "counts match" in r.output and "postgres@" in r.output
    doc = yaml.safe_load(mp.read_text())
    doc["ledger"] = f"${URL_VAR}"
    mp.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(app, ["status", "-m", str(mp)])  # the project now runs on the copy
    assert r.exit_code == 0, r.output
    with Ledger(tmp_path / "ws", url) as led:
        assert led.count_frames() == {"train": 5} and len(led.current_labels()) == 5
    r = CliRunner().invoke(app, ["ledger", "copy", "--to", "postgresql://u:pw@db/x", "-m", str(mp)])
    assert r.exit_code == 2 and "holds a password" in r.output and "pw" not in r.output.replace("password", "")
