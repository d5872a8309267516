"""Smaller items of issue "Hardening, third pass" (19): a RANK variable outside torchrun does not skip the workspace
lock; `retrain --minutes 0` is refused, not taken as "no limit"."""

from __future__ import annotations

from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest

from conftest import LSPET, lsp_manifest, lspet_subset


def _project(tmp_path, lspet_coco):
    f = lspet_subset(lspet_coco, list(range(7101, 7109)), tmp_path / "t.json")
    return lsp_manifest(
        tmp_path, [{"name": "t", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "train"}]
    )


def test_a_stray_rank_variable_does_not_skip_the_lock(tmp_path, lspet_coco, monkeypatch):
    p = _project(tmp_path, lspet_coco)
    m = load_manifest(p)
    monkeypatch.setenv("RANK", "1")  # left over from a cluster job; no torchrun here
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    with Ledger(m.workspace_dir) as holder:
        holder.lock("iterate retrain")  # another command is writing
        r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 3 and "busy" in r.output, r.output  # BusyError: try again later
    with Ledger(m.workspace_dir) as led:
        assert led.frames() == []


def test_retrain_minutes_zero_is_refused(tmp_path, lspet_coco):
    p = _project(tmp_path, lspet_coco)
    assert CliRunner().invoke(app, ["ingest", "-m", str(p)]).exit_code == 0
    for bad in ("0", "-1"):
        r = CliRunner().invoke(app, ["retrain", "--minutes", bad, "-m", str(p)])
        assert r.exit_code == 2, r.output
        assert "--minutes must be a positive number" in r.output and "Traceback" not in r.output
