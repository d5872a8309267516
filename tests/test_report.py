import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.ingest import ingest
from iterate.ledger import Ledger
from iterate.manifest import load_manifest
from model.retrain import retrain
from reports.report import evaluate_checkpoint

from conftest import LSPET, lsp_manifest, lspet_subset


@pytest.fixture(scope="module")
def project(tmp_path_factory, lspet_coco):
    tmp = tmp_path_factory.mktemp("report")
    srcs = []
    for name, lo, hi, split, labels in (("tr", 7001, 7016, "train", True), ("va", 7101, 7130, "val", True),
                                        ("te", 7301, 7324, "test", True), ("pool", 7201, 7240, "pool", False)):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp / f"{name}.json")
        srcs.append({"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels})
    p = lsp_manifest(tmp, srcs, train={"epochs": 1, "batch_size": 8, "warmup_steps": 1},
                     selection={"focus_metric": "pckh05", "dedup_hamming": 0})
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p


def test_report_without_model_shows_data_side(project):
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    m = load_manifest(project)
    md = (m.workspace_dir / "reports" / "latest.md").read_text()
    assert "No model yet" in md and "## Data" in md and "| 1 | 10% |" in md
    assert "labels per posture" in md


def _scorable(coco: dict, lo: int, hi: int) -> int:
    """frames whose neck and head_top are located (the head-segment normaliser exists)."""
    return sum(1 for a in coco["annotations"] if lo <= a["image_id"] <= hi
               and a["keypoints"][12 * 3 + 2] > 0 and a["keypoints"][13 * 3 + 2] > 0)


def test_report_with_model_has_every_section_and_plots(project, lspet_coco):
    m = load_manifest(project)
    with Ledger(m.workspace_dir) as led:
        retrain(m, led)
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    rdir = m.workspace_dir / "reports"
    md = (rdir / "latest.md").read_text()
    for section in ("## Summary", "| val |", "| test |", "## Per joint", "## Per posture", "## Per occlusion", "## Timeline",
                    "## Next chunk focus", "## Data", "MeanSmS", "height error", "overfit", "too small to judge"):
        assert section in md, section
    data = json.loads((rdir / "round-00.json").read_text())
    for key in ("val", "test", "timeline", "focus", "data", "model"):
        assert data[key], key
    # the held-out test split is scored on its own frames and carried into the timeline and the ledger
    assert data["test"]["frames"] == _scorable(lspet_coco, 7301, 7324)
    assert data["val"]["frames"] == _scorable(lspet_coco, 7101, 7130)
    assert data["timeline"][-1]["test_pckh05"] == data["test"]["pckh05"]
    with Ledger(m.workspace_dir) as led:
        assert led.report_summaries()[data["model"]["id"]]["test"]["pckh05"] == data["test"]["pckh05"]
        # one checkpoint scored on its own (the demo's "base model, before any labels" line) gives the same figures
        again = evaluate_checkpoint(m, led, data["model"]["path"], "test")
        assert (again["pckh"], again["pckh05"]) == (data["test"]["pckh"], data["test"]["pckh05"])
    for png in data["plots"].values():
        img = cv2.imread(str(rdir / png))
        assert img is not None and img.shape[0] > 50 and img.std() > 5, png  # decodes and is not blank
    assert set(data["plots"]) == {"joints", "timeline", "worst"}
    focus = json.loads((rdir / "focus.json").read_text())
    shares = [i["budget_share"] for i in focus["items"] if i["key"] == "posture"]
    assert sum(shares) == pytest.approx(1 - focus["explore"], abs=0.01)
    assert focus["pool_frames"] == 40
    # re-rendering an older round from its JSON twin gives the same Markdown
    with Ledger(m.workspace_dir) as led:  # a new round starts: round 0 is now an older round
        led.db.execute("INSERT INTO rounds (created_at, chunk, budget, strategy) VALUES (0, 1, 4, 'test')")
    (rdir / "round-00.md").write_text("scribbled over")
    r = CliRunner().invoke(app, ["report", "-m", str(project), "--round", "0"])
    assert r.exit_code == 0
    assert (rdir / "round-00.md").read_text() == md
    r = CliRunner().invoke(app, ["report", "-m", str(project), "--round", "7"])
    assert r.exit_code == 2 and "no report for round 7" in r.output
