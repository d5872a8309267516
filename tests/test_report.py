import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.report import evaluate_checkpoint
from iterate.loop.retrain import retrain
from iterate.loop.settings import train_setup

from conftest import LSPET, lsp_manifest, lspet_subset


@pytest.fixture(scope="module")
def project(tmp_path_factory, lspet_coco):
    tmp = tmp_path_factory.mktemp("report")
    srcs = []
    for name, lo, hi, split, labels in (
        ("tr", 7001, 7016, "train", True),
        ("va", 7101, 7130, "val", True),
        ("te", 7301, 7324, "test", True),
        ("pool", 7201, 7240, "pool", False),
    ):
        f = lspet_subset(lspet_coco, list(range(lo, hi + 1)), tmp / f"{name}.json")
        srcs.append(
            {"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels}
        )
    p = lsp_manifest(
        tmp,
        srcs,
        train={"epochs": 1, "batch_size": 8, "warmup_steps": 1},
        selection={"focus_metric": "pckh@0.5", "dedup_hamming": 0},
    )
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


def _scorable(coco: dict, lo: int, hi: int) -> tuple[int, int]:
    """(labeled frames, of which without neck or head_top: no head segment, scored on the fallback)."""
    anns = [
        a for a in coco["annotations"] if lo <= a["image_id"] <= hi and sum(v > 0 for v in a["keypoints"][2::3]) >= 2
    ]
    fallback = sum(1 for a in anns if not (a["keypoints"][12 * 3 + 2] > 0 and a["keypoints"][13 * 3 + 2] > 0))
    return len(anns), fallback


def test_report_with_model_has_every_section_and_plots(project, lspet_coco):
    m = load_manifest(project)
    with Ledger(m.workspace_dir) as led:
        retrain(m, led)
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    rdir = m.workspace_dir / "reports"
    md = (rdir / "latest.md").read_text()
    for section in (
        "## Summary",
        "| val |",
        "| test |",
        "## Per joint",
        "## Per posture",
        "## Per occlusion",
        "## Timeline",
        "## Next chunk focus",
        "## Data",
        "MeanSmS",
        "height error",
        "overfit",
        "too small to judge",
    ):
        assert section in md, section
    data = json.loads((rdir / "round-00.json").read_text())
    for key in ("val", "test", "timeline", "focus", "data", "model"):
        assert data[key], key
    # the held-out test split is scored on its own frames and carried into the timeline and the ledger
    # every labeled frame is scored; those without a head segment on the fallback, counted
    assert (data["test"]["frames"], data["test"]["frames_fallback"]) == _scorable(lspet_coco, 7301, 7324)
    assert (data["val"]["frames"], data["val"]["frames_fallback"]) == _scorable(lspet_coco, 7101, 7130)
    assert data["val"]["frames_fallback"] > 0  # LSPET 7101-7130 has frames without a head segment: a real test
    assert data["timeline"][-1]["test_pckh@0.5"] == data["test"]["pckh@0.5"]
    with Ledger(m.workspace_dir) as led:
        assert led.report_summaries()[data["model"]["id"]]["test"]["pckh@0.5"] == data["test"]["pckh@0.5"]
        # one checkpoint scored on its own (the demo's "base model, before any labels" line) gives the same figures
        again = evaluate_checkpoint(m, led, data["model"]["path"], "test")
        assert (again["pckh@0.1"], again["pckh@0.5"]) == (data["test"]["pckh@0.1"], data["test"]["pckh@0.5"])
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
        led.raw("INSERT INTO rounds (created_at, chunk, budget, strategy) VALUES (0, 1, 4, 'test')")
    (rdir / "round-00.md").write_text("scribbled over")
    r = CliRunner().invoke(app, ["report", "-m", str(project), "--round", "0"])
    assert r.exit_code == 0
    assert (rdir / "round-00.md").read_text() == md
    r = CliRunner().invoke(app, ["report", "-m", str(project), "--round", "7"])
    assert r.exit_code == 2 and "no report for round 7" in r.output


def _latest_json(m) -> dict:
    md = (m.workspace_dir / "reports" / "latest.md").resolve()
    return json.loads(md.with_suffix(".json").read_text())


def test_one_figure_everywhere_predict_evaluate_report_timeline_retrain(project, tmp_path):
    """For one model and split: `iterate predict` + `evaluate --json`, the report's summary, its timeline and the
    retrain record give the same PCKh and MeanSmS (one inference path, one definition per metric)."""
    m = load_manifest(project)
    with Ledger(m.workspace_dir) as led:
        if led.latest_model() is None:
            retrain(m, led)
        model = led.latest_model()
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    data = _latest_json(m)
    val = data["val"]
    va = m.resolve(next(s.path for s in m.sources if s.name == "va"))
    files = [str(LSPET / im["file_name"]) for im in json.loads(va.read_text())["images"]]
    preds = tmp_path / "preds.json"
    r = CliRunner().invoke(app, ["predict", "--model", model.path, *files, "--coco", str(va), "--out", str(preds)])
    assert r.exit_code == 0 and "flip TTA + box refine" in r.output, r.output
    r = CliRunner().invoke(app, ["evaluate", "-m", str(project), "--pred", str(preds), "--gt", str(va), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    for key in ("pckh@0.1", "pckh@0.5", "mean_sms@0.1", "frames", "frames_fallback"):
        assert ev[key] == val[key], key
    mt = model.metrics
    assert mt["val_pckh@0.1"] == pytest.approx(val["pckh@0.1"], abs=0.01)
    assert mt["val_pckh@0.5"] == pytest.approx(val["pckh@0.5"], abs=0.01)
    assert mt["val_mean_sms@0.1"] == pytest.approx(val["mean_sms@0.1"], abs=0.01)
    row = next(t for t in data["timeline"] if t["model"] == model.id)
    assert row["val_mean_sms@0.1"] == pytest.approx(val["mean_sms@0.1"], abs=0.01)
    assert row["val_pckh@0.1"] == pytest.approx(val["pckh@0.1"], abs=0.01)
    # the opt-out is explicit and changes the figures' path, not silently the default
    r = CliRunner().invoke(app, ["predict", "--model", model.path, files[0], "--no-refine", "--out", str(preds)])
    assert r.exit_code == 0 and "no refine" in r.output


def test_evaluate_on_an_exported_test_split_gives_the_reports_figures(project, tmp_path):
    """`iterate export --splits test`, then `predict` + `evaluate --gt` on the exported file and images: the report's
    test figures for the same model (issue 32); the report names the dataset version the model trained on."""
    m = load_manifest(project)
    with Ledger(m.workspace_dir) as led:
        if led.latest_model() is None:
            retrain(m, led)
        model = led.latest_model()
    r = CliRunner().invoke(app, ["report", "-m", str(project)])
    assert r.exit_code == 0, r.output
    data = _latest_json(m)
    assert model.dataset_version and data["model"]["dataset"]["version"] == model.dataset_version
    out = tmp_path / "dataset"
    r = CliRunner().invoke(app, ["export", "-m", str(project), "--splits", "test", "--out", str(out)])
    assert r.exit_code == 0, r.output
    gt = out / "annotations" / "test.json"
    files = [str(out / "images" / im["file_name"]) for im in json.loads(gt.read_text())["images"]]
    preds = tmp_path / "preds.json"
    r = CliRunner().invoke(app, ["predict", "--model", model.path, *files, "--coco", str(gt), "--out", str(preds)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["evaluate", "-m", str(project), "--pred", str(preds), "--gt", str(gt), "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    for key in ("pckh@0.1", "pckh@0.5", "mean_sms@0.1", "frames", "frames_fallback"):
        assert ev[key] == data["test"][key], key


def test_head_box_normaliser_through_ingest_report_and_predict(tmp_path):
    """PoseTrack's `bbox_head`: stored at ingest, used by the report; a frame without one uses the fallback."""
    from iterate.core.schema import guess_flip_pairs
    from iterate.loop.samples import labeled_samples
    from model.checkpoints import save_atomic
    from model.hrnet import build_model
    from model.train import checkpoint_dict

    from conftest import SHARED

    pt = SHARED / "mmpose_samples" / "posetrack18"
    coco = json.loads((pt / "annotations" / "test_posetrack18_val.json").read_text())
    names = coco["categories"][0]["keypoints"]
    for a in coco["annotations"]:  # head boxes × 60: PCKh@0.1 radii a random net's keypoints partly reach
        a["bbox_head"] = [a["bbox_head"][0], a["bbox_head"][1], a["bbox_head"][2] * 60, a["bbox_head"][3] * 60]
    dropped = min(a["id"] for a in coco["annotations"] if a["image_id"] == coco["images"][2]["id"])
    next(a for a in coco["annotations"] if a["id"] == dropped).pop("bbox_head")  # that frame falls back
    ann = tmp_path / "pt.json"
    ann.write_text(json.dumps(coco))
    p = lsp_manifest(
        tmp_path,
        [{"name": "pt", "kind": "coco", "path": str(ann), "images": str(pt), "split": "val"}],
        keypoints={
            "names": names,
            "flip_pairs": [list(x) for x in guess_flip_pairs(names)],
            "height_joints": ["head_top", "left_hip", "right_hip", "left_ankle", "right_ankle"],
            "normalizer": {"kind": "head_box"},
        },
        strata={},
        target_size=10,
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        samples = labeled_samples(led, ("val",))
        assert len(samples) == 3 and sum(s.head_box is None for s in samples) == 1
        stored = {tuple(s.head_box) for s in samples if s.head_box}
        assert stored <= {tuple(float(v) for v in a["bbox_head"]) for a in coco["annotations"] if "bbox_head" in a}
        import torch

        torch.manual_seed(0)
        net = build_model("hrnet_w18_small", len(names), 128, 32)
        ck = tmp_path / "random.pt"
        save_atomic(checkpoint_dict(net, train_setup(m)), ck)
        with led.transaction():
            led.add_model(str(ck), parent_id=None, n_train=0, config={}, metrics={})
    r = CliRunner().invoke(app, ["report", "-m", str(p)])
    assert r.exit_code == 0, r.output
    val = _latest_json(m)["val"]
    assert val["normaliser"]["kind"] == "head_box"
    assert (val["frames"], val["frames_fallback"]) == (3, 1)
    preds = tmp_path / "preds.json"
    r = CliRunner().invoke(app, ["predict", "--model", str(ck), *[s.path for s in samples], "--out", str(preds)])
    assert r.exit_code == 0, r.output
    by_path = {
        q["file_name"]: np.asarray(q["keypoints"], float).reshape(-1, 3)[:, :2] for q in json.loads(preds.read_text())
    }

    # by hand: l = 0.6 × head-box diagonal; the frame without one: joints' box diagonal × median(l / diagonal)
    def diag(s):
        pts = s.keypoints[s.keypoints[:, 2] > 0, :2]
        return float(np.hypot(*(pts.max(0) - pts.min(0))))

    ls = {s.path: 0.6 * float(np.hypot(s.head_box[2], s.head_box[3])) for s in samples if s.head_box}
    ratio = float(np.median([ls[s.path] / diag(s) for s in samples if s.head_box]))
    hits = total = 0
    for s in samples:
        radius = 0.1 * (ls[s.path] if s.head_box else diag(s) * ratio)
        lab = s.keypoints[:, 2] > 0
        d = np.linalg.norm(by_path[s.path] - s.keypoints[:, :2], axis=1)[lab]
        hits += int((d <= radius).sum())
        total += int(lab.sum())
    assert val["joints"] == total and 0 < hits < total
    assert val["pckh@0.1"] == pytest.approx(100 * hits / total, abs=0.01)


def test_report_compares_with_the_base_model(project, tmp_path):
    """With `model.base` set, the report scores the base on the same test frames, per stratum, beside the model."""
    import yaml

    from conftest import REPO

    data = yaml.safe_load(project.read_text())
    data["model"]["base"] = str(REPO / "model" / "weights" / "lspet_w18s_128.pt")
    p = project.with_name("with-base.yaml")
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        if not led.models():
            retrain(load_manifest(project), led)
    r = CliRunner().invoke(app, ["report", "-m", str(p)])
    assert r.exit_code == 0, r.output
    rdir = m.workspace_dir / "reports"
    js = json.loads((rdir / "latest.md").resolve().with_suffix(".json").read_text())
    base, now = js["base"], js["test"]
    assert base["split"] == "test" and base["frames"] == now["frames"]
    # the shipped base is scored like any checkpoint: the same figure evaluate_checkpoint gives
    with Ledger(m.workspace_dir) as led:
        alone = evaluate_checkpoint(m, led, data["model"]["base"], "test")
    assert base["pckh@0.5"] == alone["pckh@0.5"]
    md = (rdir / "latest.md").read_text()
    assert "## Against the base model" in md
    key, rows = next(iter(now["strata"].items()))
    v, row = next((v, r) for v, r in rows.items() if v in base["strata"][key])
    delta = row["pckh@0.5"] - base["strata"][key][v]["pckh@0.5"]
    assert f"| {key}={v} | {row['frames']} |" in md and f"{delta:+.1f} |" in md
