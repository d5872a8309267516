"""Bad input from outside (COCO files, predictions, manifests, CLI options) gives one line naming the file, the
annotation or field and what is wrong, exit code 2, and writes nothing (issue "Hardening", items 2, 3 and 5)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest

from conftest import LSPET, REPO, demo_manifest_dict, lsp_manifest, lspet_subset

IDS = list(range(7001, 7007))


def _one_line(r, code: int = 2) -> str:
    out = r.output
    assert r.exit_code == code, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return lines[0]


@pytest.fixture
def good(lspet_coco) -> dict:
    return copy.deepcopy(
        {
            "images": [i for i in lspet_coco["images"] if i["id"] in IDS],
            "annotations": [a for a in lspet_coco["annotations"] if a["image_id"] in IDS],
            "categories": lspet_coco["categories"],
        }
    )


def _ingest(tmp_path, coco, raw: str | None = None):
    f = tmp_path / "labels.json"
    f.write_text(raw if raw is not None else json.dumps(coco))
    p = lsp_manifest(tmp_path, [{"name": "l", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "train"}])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        written = (len(led.frames()), led.count_labels())
    return r, written


def _set_kp(c, ann: int, i: int, v):
    c["annotations"][ann]["keypoints"][i] = v


BAD_COCO = [
    ("top-level list", lambda c: c["annotations"], "found a list"),
    ("string annotation", lambda c: c["annotations"].__setitem__(1, "oops"), "annotations[1] is not an object"),
    ("null x", lambda c: _set_kp(c, 0, 0, None), "x, y, v must be numbers"),
    ("string y", lambda c: _set_kp(c, 0, 1, "12"), "x, y, v must be numbers"),
    ("string visibility", lambda c: _set_kp(c, 0, 2, "2"), "x, y, v must be numbers"),
    ("visibility 1.7", lambda c: _set_kp(c, 0, 5, 1.7), "visibility 1.7"),
    ("x -500 on a small image", lambda c: (_set_kp(c, 0, 0, -500.0), _set_kp(c, 0, 2, 2)), "far outside"),
    ("x 1e9", lambda c: (_set_kp(c, 0, 0, 1e9), _set_kp(c, 0, 2, 2)), "far outside"),
    ("string bbox", lambda c: c["annotations"][0].__setitem__("bbox", "1,2,3,4"), "bbox must be [x, y, w, h]"),
    (
        "attributes as a list",
        lambda c: c["annotations"][0].__setitem__("attributes", ["upright"]),
        "attributes must be a mapping",
    ),
    ("mixed id types", lambda c: c["images"][0].__setitem__("id", str(c["images"][0]["id"])), "mix"),
    ("duplicate image id", lambda c: c["images"][1].__setitem__("id", c["images"][0]["id"]), "repeats"),
    (
        "annotation for a missing image",
        lambda c: c["annotations"][0].__setitem__("image_id", 424242),
        "image 424242 is not in the file's images",
    ),
    (
        "joint names differ, same count",
        lambda c: c["categories"][0].__setitem__(
            "keypoints", ["nose", "left_eye"] + c["categories"][0]["keypoints"][2:]
        ),
        "lacks right_ankle, right_knee; it has nose, left_eye",
    ),
]


@pytest.mark.parametrize("case, mutate, expected", BAD_COCO, ids=[c[0] for c in BAD_COCO])
def test_bad_coco_is_refused_in_one_line_and_writes_nothing(tmp_path, good, case, mutate, expected):
    out = mutate(good)
    coco = out if case == "top-level list" else good
    r, written = _ingest(tmp_path, coco)
    line = _one_line(r)
    assert expected in line and "labels.json" in line, line
    assert written == (0, 0)


@pytest.mark.parametrize("literal", ["Infinity", "NaN", "-Infinity"])
def test_non_finite_json_numbers_are_refused(tmp_path, good, literal):
    raw = json.dumps(good).replace(json.dumps(good["annotations"][0]["keypoints"][0]), literal, 1)
    r, written = _ingest(tmp_path, good, raw)
    assert f"non-finite number {literal}" in _one_line(r)
    assert written == (0, 0)


def test_evaluate_refuses_bad_predictions_and_scores_nan_as_misses(tmp_path, good):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(good))
    man = str(REPO / "data_manifest.yaml")
    pred = tmp_path / "pred.json"

    def run(obj, gt_path=gt, extra=()):
        pred.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return CliRunner().invoke(app, ["evaluate", "-m", man, "--pred", str(pred), "--gt", str(gt_path), *extra])

    assert "predictions[0] is not an object" in _one_line(run([1, 2, 3]))
    a = good["annotations"][0]
    assert "keypoints must be a list of numbers" in _one_line(
        run([{"image_id": a["image_id"], "keypoints": ["1"] * 42, "score": 1}])
    )
    results = [{"image_id": x["image_id"], "keypoints": x["keypoints"], "score": 1} for x in good["annotations"]]
    results_as_gt = tmp_path / "results.json"
    results_as_gt.write_text(json.dumps(results))
    assert "found a list" in _one_line(run(results, gt_path=results_as_gt))
    assert "--alpha must be a number in (0, 1]" in _one_line(run(results, extra=("--alpha", "nan")))
    assert "--alpha must be a number in (0, 1]" in _one_line(run(results, extra=("--alpha", "-1")))
    # NaN in two joints of a perfect prediction: those joints are misses, the frame is not dropped
    perfect = run(results, extra=("--json",))
    assert perfect.exit_code == 0, perfect.output
    full = json.loads(perfect.output)
    nan = [dict(x) for x in results]
    nan[0]["keypoints"] = list(nan[0]["keypoints"])
    labeled = [j for j in range(14) if nan[0]["keypoints"][3 * j + 2] > 0][:2]
    for j in labeled:
        nan[0]["keypoints"][3 * j] = float("nan")
    r = run(json.dumps(nan), extra=("--json",))
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["frames"] == full["frames"] and res["joints"] == full["joints"]
    assert res["pckh@0.5"] == pytest.approx(full["pckh@0.5"] - 100 * 2 / full["joints"], abs=0.01)


def _manifest_with(tmp_path, mutate):
    d = demo_manifest_dict()
    d["sources"] = []
    mutate(d)
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.update(chunks=[float("nan")]), "chunks"),
        (lambda d: d.update(target_size=True), "target_size"),
        (lambda d: d["keypoints"]["flip_pairs"].append(["left_ankle", "right_knee"]), "already in flip_pairs[0]"),
        (lambda d: d["train"].update(augment={"rotate_deg": float("inf")}), "rotate_deg"),
        (lambda d: d["selection"]["weights"].update(confidnce=1.0), "selection.weights: 'confidnce' is not an"),
    ],
    ids=["chunks nan", "target_size true", "joint in two flip pairs", "infinite rotation", "unknown score"],
)
def test_bad_manifest_values(tmp_path, mutate, expected):
    p = _manifest_with(tmp_path, mutate)
    line = _one_line(CliRunner().invoke(app, ["status", "-m", str(p)]))
    assert expected in line and str(p) in line


def test_non_utf8_manifest(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_bytes((REPO / "data_manifest.yaml").read_bytes().replace(b"lspet-demo", b"lspet-\xff\xfe"))
    assert "not UTF-8" in _one_line(CliRunner().invoke(app, ["status", "-m", str(p)]))


def test_predict_with_an_empty_checkpoint_file(tmp_path):
    ck = tmp_path / "empty.pt"
    ck.write_bytes(b"")
    r = CliRunner().invoke(
        app, ["predict", "--model", str(ck), str(LSPET / "images" / "im07001.jpg"), "--out", str(tmp_path / "p.json")]
    )
    assert "not a loadable checkpoint" in _one_line(r)


@pytest.fixture
def trainable(tmp_path, lspet_coco):
    sub = lspet_subset(lspet_coco, list(range(7001, 7017)), tmp_path / "tr.json")
    return lsp_manifest(
        tmp_path,
        [{"name": "tr", "kind": "coco", "path": str(sub), "images": str(LSPET), "split": "train"}],
        train={"epochs": 1, "batch_size": 8, "warmup_steps": 1, "loss_scale": 1e300},
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--epochs", "0"], "--epochs must be ≥ 1"),
        (["--epochs", "-3"], "--epochs must be ≥ 1"),
        (["--minutes", "nan"], "--minutes must be a positive number"),
    ],
)
def test_retrain_refuses_nonsense_lengths(trainable, args, expected):
    r = CliRunner().invoke(app, ["ingest", "-m", str(trainable)])
    assert r.exit_code == 0, r.output
    assert expected in _one_line(CliRunner().invoke(app, ["retrain", "-m", str(trainable), *args]))


def test_non_finite_loss_stops_training_and_records_no_model(trainable):
    """loss_scale 1e300 overflows float32: the loss is inf at the first step (a stand-in for any divergence)."""
    assert CliRunner().invoke(app, ["ingest", "-m", str(trainable)]).exit_code == 0
    line = _one_line(CliRunner().invoke(app, ["retrain", "-m", str(trainable)]))
    assert "not a finite number" in line and "no model was recorded" in line
    m = load_manifest(trainable)
    with Ledger(m.workspace_dir) as led:
        assert led.models() == [] and led.get("training_run") is None
    assert not (m.workspace_dir / "models" / "model-001").exists()
