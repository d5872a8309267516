"""Caches a kill or a full disk left broken are computed again with a note, never an "Aborted." (issue "Hardening,
third pass", items 15 and 17): a 0-byte cold-start feature file, a truncated score cache, a truncated focus.json."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.manifest import load_manifest

from conftest import LSPET, REPO, lsp_manifest, lspet_subset

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"


@pytest.fixture
def pool(tmp_path, lspet_coco):
    f = lspet_subset(lspet_coco, list(range(7601, 7621)), tmp_path / "pool.json")
    src = [{"name": "pool", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "pool", "labels": False}]
    return lsp_manifest(tmp_path, src, selection={"dedup_hamming": 0})


def _select(p, *extra):
    return CliRunner().invoke(app, ["select", "--budget", "3", "--no-push", "-m", str(p), *extra])


def _with_base(p):
    doc = yaml.safe_load(p.read_text())
    doc["model"]["base"] = str(BASE)
    p.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_broken_cold_start_features_are_computed_again(pool):
    assert CliRunner().invoke(app, ["ingest", "-m", str(pool)]).exit_code == 0
    r = _select(pool)
    assert r.exit_code == 0, r.output
    files = sorted((load_manifest(pool).workspace_dir / "cache" / "coldstart").glob("*.npy"))
    assert len(files) == 20
    for f in files[:4]:
        f.write_bytes(b"")  # a kill during the cold start's scoring
    r = _select(pool)
    assert r.exit_code == 0, r.output
    assert "Aborted" not in r.output
    assert "broken cold-start feature file(s)" in r.output
    assert all(f.stat().st_size > 0 for f in files)


def test_broken_score_cache_is_scored_again(pool):
    _with_base(pool)
    assert CliRunner().invoke(app, ["ingest", "-m", str(pool)]).exit_code == 0
    assert _select(pool, "--strategy", "uncertainty").exit_code == 0
    d = load_manifest(pool).workspace_dir / "cache" / "model-base"
    (d / "scores.npy").write_bytes(b"\x93NUMPY")  # cut off mid-write
    r = _select(pool, "--strategy", "uncertainty")
    assert r.exit_code == 0, r.output
    assert "score cache" in r.output and "was broken" in r.output and "scored again" in r.output
    idx = json.loads((d / "index.json").read_text())
    assert len(idx["frame_ids"]) == 17  # the 17 frames still in the pool, scored afresh


def test_a_truncated_focus_file_is_one_line(pool):
    _with_base(pool)
    assert CliRunner().invoke(app, ["ingest", "-m", str(pool)]).exit_code == 0
    reports = load_manifest(pool).workspace_dir / "reports"
    reports.mkdir(parents=True)
    (reports / "focus.json").write_text('{"round": 1, "items": [{"key": "post')
    r = _select(pool, "--strategy", "full")
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "focus.json" in lines[0] and "iterate report" in lines[0], r.output
