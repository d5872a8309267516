"""One metric vocabulary: keys built from the metric and its α, older names read on load with one note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import ManifestError, load_manifest
from iterate.core.metric_keys import (
    PCKH01,
    PCKH05,
    canonical,
    ci_key,
    is_key,
    label,
    metric_key,
    parse,
    split_key,
    tracker_name,
    upgrade,
)
from iterate.loop.settings import keypoint_spec, strata
from reports.evaluation import EvalSet, evaluate

REPO = Path(__file__).resolve().parents[1]


def test_keys_are_built_from_the_metric_and_its_alpha():
    assert (PCKH01, PCKH05, metric_key("mean_sms", 0.1)) == ("pckh@0.1", "pckh@0.5", "mean_sms@0.1")
    assert metric_key("pckh", 0.25) == "pckh@0.25" and metric_key("pckh", 1) == "pckh@1"
    assert parse("mean_sms@0.25") == ("mean_sms", 0.25) and label("mean_sms@0.1") == "MeanSmS@0.1"
    assert ci_key(PCKH01) == "pckh@0.1_ci95" and split_key("val", PCKH05) == "val_pckh@0.5"
    assert tracker_name("report_val_pckh@0.1") == "report_val_pckh_at_0.1"  # MLflow refuses '@'
    assert is_key("pckh@0.5") and not is_key("frames") and not is_key("pckh05")
    for bad in (("pck", 0.1), ("pckh", 0), ("pckh", 1.5), ("pckh", float("nan"))):
        with pytest.raises(ValueError):
            metric_key(*bad)
    with pytest.raises(ValueError, match="unknown metric"):
        canonical("accuracy")


def test_older_names_translate_with_a_note():
    assert canonical("pckh01") == (
        "pckh@0.1",
        "'pckh01' is the old name of 'pckh@0.1'; it still works, but write 'pckh@0.1'",
    )
    assert canonical("pckh05")[0] == "pckh@0.5" and canonical("mean_sms01")[0] == "mean_sms@0.1"
    assert canonical("pckh", 0.2)[0] == "pckh@0.2"  # evaluate's bare pckh was PCKh at the report's α
    assert canonical("pckh@0.5") == ("pckh@0.5", None)


def test_a_stored_record_is_read_under_todays_names():
    # an evaluate block of a report written at α 0.2 by an older version, with a stratum row
    old = {
        "alpha": 0.2,
        "frames": 9,
        "pckh": 40.0,
        "ci95": [30.0, 50.0],
        "pckh05": 80.0,
        "ci95_05": [70.0, 90.0],
        "mean_sms": 35.0,
        "strata": {"posture": {"lying": {"frames": 3, "pckh": 20.0, "gap": -20.0}}},
    }
    new = upgrade(old)
    assert new["pckh@0.2"] == 40.0 and new["pckh@0.2_ci95"] == [30.0, 50.0] and new["mean_sms@0.2"] == 35.0
    assert new["pckh@0.5"] == 80.0 and new["pckh@0.5_ci95"] == [70.0, 90.0]
    assert new["strata"]["posture"]["lying"] == {"frames": 3, "pckh@0.2": 20.0, "gap": -20.0}
    assert upgrade(new) == new  # idempotent
    # a model's metrics and config (training's names), and an in-loop control's per-α blocks
    mt = upgrade({"val_pckh01": 30.0, "train_pckh05": 70.0, "overfit01": 4.0, "steps": 10})
    assert mt == {"val_pckh@0.1": 30.0, "train_pckh@0.5": 70.0, "overfit_pckh@0.1": 4.0, "steps": 10}
    assert upgrade({"best_metric": "mean_sms01"}) == {"best_metric": "mean_sms@0.1"}
    c = upgrade({"pckh05": {"selected": {"pckh": 10.0, "ci95": [5, 15]}}, "pckh01": {"selected": {"pckh": 2.0}}})
    assert c == {
        "pckh@0.5": {"selected": {"pckh@0.5": 10.0, "pckh@0.5_ci95": [5, 15]}},
        "pckh@0.1": {"selected": {"pckh@0.1": 2.0}},
    }


def _manifest(tmp_path: Path, **sections) -> Path:
    data = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    data["workspace"] = str(tmp_path / "ws")
    for k, v in sections.items():
        data[k] = {**(data.get(k) or {}), **v}
    for s in data.get("sources", []):
        for f in ("path", "images", "person_boxes"):
            if s.get(f):
                s[f] = str((REPO / s[f]).resolve())
    p = tmp_path / "iterate.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_the_manifest_takes_the_new_names_and_the_old_ones_with_one_note(tmp_path):
    p = _manifest(tmp_path, train={"best_metric": "pckh05"}, selection={"focus_metric": "pckh"})
    m = load_manifest(p)
    assert (m.train.best_metric, m.selection.focus_metric) == ("pckh@0.5", "pckh@0.1")
    assert m.notes == [
        f"{p}: train.best_metric: 'pckh05' is the old name of 'pckh@0.5'; it still works, but write 'pckh@0.5'",
        f"{p}: selection.focus_metric: 'pckh' is the old name of 'pckh@0.1'; it still works, but write 'pckh@0.1'",
    ]
    r = CliRunner().invoke(app, ["status", "-m", str(p)])
    assert r.exit_code == 0, r.output
    assert "train.best_metric: 'pckh05' is the old name" in r.output.replace("\n", " ")
    # the note goes to stderr: a command's --json output stays one JSON object
    gt = REPO / "demo_data" / "test.coco.json"
    preds = tmp_path / "preds.json"
    coco = json.loads(gt.read_text())
    preds.write_text(
        json.dumps(
            [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0} for a in coco["annotations"]]
        )
    )
    r = CliRunner().invoke(app, ["evaluate", "-m", str(p), "--pred", str(preds), "--gt", str(gt), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["pckh@0.1"] == 100.0 and "old name" in r.stderr
    m = load_manifest(
        _manifest(tmp_path, train={"best_metric": "mean_sms@0.1"}, selection={"focus_metric": "pckh@0.2"})
    )
    assert (m.train.best_metric, m.selection.focus_metric, m.notes) == ("mean_sms@0.1", "pckh@0.2", [])
    # training scores val at 0.1 and 0.5 only: another α cannot pick a checkpoint
    with pytest.raises(ManifestError, match=r"train\.best_metric: 'pckh@0.2': training scores val by pckh@0.1"):
        load_manifest(_manifest(tmp_path, train={"best_metric": "pckh@0.2"}))
    with pytest.raises(ManifestError, match=r"selection\.focus_metric: unknown metric 'recall'"):
        load_manifest(_manifest(tmp_path, selection={"focus_metric": "recall"}))


def test_evaluate_adds_the_figures_asked_for_at_another_alpha():
    m = load_manifest(REPO / "data_manifest.yaml")
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, size=(30, 14, 2))
    vis = np.full((30, 14), 2)
    pred = gt + rng.normal(0, 4, size=gt.shape)
    es = EvalSet(pred, gt, vis, [{"posture": "upright"}] * 30, list(range(30)))
    res = evaluate(keypoint_spec(m), strata(m), es, 0.1, also=(0.2,))
    for a in (0.1, 0.2, 0.5):
        assert f"pckh@{a:g}" in res and f"pckh@{a:g}_ci95" in res and f"mean_sms@{a:g}" in res
        assert f"pckh@{a:g}" in res["strata"]["posture"]["upright"]
    assert res["pckh@0.1"] < res["pckh@0.2"] < res["pckh@0.5"]  # a wider radius: more joints within it
    assert "pckh" not in res and "ci95" not in res  # no bare names any more


def test_a_ledger_written_with_the_old_names_reads_under_the_new(tmp_path):
    with Ledger(tmp_path / "ws") as led:
        with led.transaction():
            mid = led.add_model(
                "m.pt", parent_id=None, n_train=5, config={"best_metric": "pckh01"}, metrics={"val_pckh01": 31.5}
            )
            led.add_report(1, "r.md", mid, {"pckh": 31.0, "pckh05": 70.0, "test": {"pckh": 29.0, "ci95": [20, 38]}})
        model = led.latest_model()
        assert model.metrics == {"val_pckh@0.1": 31.5} and model.config["best_metric"] == "pckh@0.1"
        s = led.report_summaries()[mid]
        assert (s["pckh@0.1"], s["pckh@0.5"], s["test"]["pckh@0.1_ci95"]) == (31.0, 70.0, [20, 38])
        raw = json.loads(led.raw("SELECT metrics FROM models").fetchone()[0])
        assert raw == {"val_pckh01": 31.5}  # read under today's names; the stored row itself is left as it was
