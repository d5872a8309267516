"""`iterate audit` (issue 33): real LSPET labels the shipped base never trained on (im07001+; it trained on
im00001–05900), with known errors injected — a left/right arm swap and a joint moved by 2 ``l`` are flagged, a
clean frame is not; bad input says so in one line."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Frame, Ledger, Model
from iterate.core.manifest import AuditSettings, load_manifest
from iterate.loop.audit import out_of_sample_model, run_audit
from iterate.loop.ingest import ingest
from iterate.loop.models import base_model
from iterate.loop.settings import from_section
from iterate.selection import audit as au

from conftest import LSP_NAMES, LSPET, REPO, lsp_manifest, lspet_subset

DEFAULTS = from_section(au.Thresholds, AuditSettings())  # the manifest's default thresholds

BASE = str(REPO / "model/weights/lspet_w18s_128.pt")
SWAPPED, MOVED, CLEAN = 7010, 7049, 7002
MOVED_JOINT = "right_shoulder"


def _image(coco: dict, iid: int) -> str:
    return next(i["file_name"] for i in coco["images"] if i["id"] == iid).rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def proj(tmp_path_factory, lspet_coco):
    tmp = tmp_path_factory.mktemp("audit")
    coco = copy.deepcopy(lspet_coco)
    anns = {a["image_id"]: a for a in coco["annotations"]}
    kp = np.asarray(anns[SWAPPED]["keypoints"], float).reshape(-1, 3)
    for a, b in (("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"), ("left_wrist", "right_wrist")):
        ia, ib = LSP_NAMES.index(a), LSP_NAMES.index(b)
        kp[[ia, ib]] = kp[[ib, ia]]
    anns[SWAPPED]["keypoints"] = kp.ravel().tolist()
    kp = np.asarray(anns[MOVED]["keypoints"], float).reshape(-1, 3)
    neck, top = kp[LSP_NAMES.index("neck"), :2], kp[LSP_NAMES.index("head_top"), :2]
    ll = float(np.hypot(*(neck - top)))
    kp[LSP_NAMES.index(MOVED_JOINT), 1] += 2 * ll  # 2 l straight down
    anns[MOVED]["keypoints"] = kp.ravel().tolist()
    f = lspet_subset(coco, list(range(7001, 7051)), tmp / "val.json")
    p = lsp_manifest(
        tmp,
        [{"name": "va", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}],
        model={**load_manifest(REPO / "data_manifest.yaml").model.model_dump(), "base": BASE},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        res = run_audit(m, led)
    return p, res, {k: _image(coco, k) for k in (SWAPPED, MOVED, CLEAN)}


def _flags(res, image: str) -> list:
    return [s for s in res.suspects if s.frame.path.endswith("/" + image)]


def test_an_injected_arm_swap_is_flagged_naming_both_joints(proj):
    _, res, im = proj
    swaps = [s for s in _flags(res, im[SWAPPED]) if s.reason == "swap"]
    assert swaps, [(s.joints, s.reason) for s in _flags(res, im[SWAPPED])]
    for s in swaps:
        a, b = s.joints
        assert a.replace("left_", "right_") == b or b.replace("left_", "right_") == a
        assert a.split("_", 1)[1] in ("shoulder", "elbow", "wrist")
        j = s.to_json()
        assert j["joint"] == f"{a}/{b}" and len(j["label"]) == 2 and len(j["model"][0]) == 3
    # the swap explains the arms' disagreement: it is not flagged again
    assert not [s for s in _flags(res, im[SWAPPED]) if s.reason == "disagreement" and s.joints[0] in swaps[0].joints]


def test_a_joint_moved_by_2_l_is_flagged_as_disagreement(proj):
    _, res, im = proj
    hit = [s for s in _flags(res, im[MOVED]) if s.reason == "disagreement" and s.joints == (MOVED_JOINT,)]
    assert hit and hit[0].score >= 0.5
    j = hit[0].to_json()
    assert j["label_version"] == 1 and j["annotator"] and j["by"] == "the base model"
    assert j["label"][2] == 2 and 0 < j["model"][2] <= 1


def test_a_clean_frame_is_not_flagged_and_rates_are_given(proj):
    _, res, im = proj
    assert _flags(res, im[CLEAN]) == []
    assert res.frames == 50 and res.models == {"the base model": 50}
    assert sum(res.per_reason.values()) == len(res.suspects)
    ann = next(iter(res.per_annotator.values()))
    assert ann["labels"] == 50 and 2 <= ann["flagged"] < 50
    assert res.per_joint["right_shoulder"]["flagged"] >= 1
    sev = [s.severity for s in res.suspects]
    assert sev == sorted(sev, reverse=True) and min(sev) >= 1


def test_audit_command_writes_the_json(proj, tmp_path):
    p, res, _ = proj
    out = tmp_path / "audit.json"
    r = CliRunner().invoke(app, ["audit", "-m", str(p), "--out", str(out), "--top", "5"])
    assert r.exit_code == 0, r.output
    assert "labels to re-check" in r.output and "audited 50 labeled frames" in r.output
    data = json.loads(out.read_text())
    assert len(data["flags"]) == len(res.suspects)
    first = data["flags"][0]
    assert {"frame", "file", "joint", "reason", "score", "label", "model", "label_version", "annotator"} <= set(first)
    assert set(data["per_annotator"]) and set(data["per_joint"]) == set(LSP_NAMES)


def test_no_labels_and_no_model_are_one_line_each(tmp_path, lspet_coco):
    f = lspet_subset(lspet_coco, list(range(7001, 7006)), tmp_path / "pool.json")
    src = {"name": "pool", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "pool", "labels": False}
    (tmp_path / "a").mkdir()
    p = lsp_manifest(tmp_path / "a", [src])  # model.base None, nothing trained
    CliRunner().invoke(app, ["ingest", "-m", str(p)])
    r = CliRunner().invoke(app, ["audit", "-m", str(p)])
    assert r.exit_code == 2 and "nothing to audit" in r.output and len(r.output.strip().splitlines()) == 1
    src2 = {**src, "split": "val", "labels": True}
    (tmp_path / "b").mkdir()
    p = lsp_manifest(tmp_path / "b", [src2])
    CliRunner().invoke(app, ["ingest", "-m", str(p)])
    r = CliRunner().invoke(app, ["audit", "-m", str(p)])
    assert r.exit_code == 2 and "no model to audit with" in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(app, ["audit", "-m", str(p), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "must be a .json file" in r.output


def _frame(split: str, source: str = "s") -> Frame:
    return Frame("f", "/x.png", source, None, None, 10, 10, "h", 0, split)


def test_the_out_of_sample_model_rule():
    """val/test: the newest model; pool/train: the newest recorded before the frame's first label, else the base;
    the base's own replayed frames: none."""
    m1 = Model(id=1, created_at=10.0, path="1", parent_id=None, n_train=1, config={}, metrics={})
    m2 = Model(id=2, created_at=20.0, path="2", parent_id=1, n_train=2, config={}, metrics={})
    base = base_model("b")
    assert out_of_sample_model(_frame("val"), 5.0, [m1, m2], base, None) is m2
    assert out_of_sample_model(_frame("pool"), 15.0, [m1, m2], base, None) is m1
    assert out_of_sample_model(_frame("train"), 25.0, [m1, m2], base, None) is m2
    assert out_of_sample_model(_frame("pool"), 5.0, [m1, m2], base, None) is base
    assert out_of_sample_model(_frame("train", "replay"), 5.0, [m1, m2], base, "replay") is None


def test_kfold_models_predict_the_frames_no_model_is_out_of_sample_for(tmp_path, lspet_coco):
    """A project with no base: no model has ever not trained on its train labels. `--folds 2` trains two models from
    scratch (a few steps: the plumbing is under test, not their accuracy), each on every pool/train label but its
    fold's, and each frame is predicted by the model that left it out."""
    from iterate.core.ledger import Ledger
    from iterate.core.manifest import load_manifest
    from iterate.loop.audit import kfold_models, run_audit
    from iterate.loop.samples import labeled_samples

    f = lspet_subset(lspet_coco, list(range(7001, 7013)), tmp_path / "train.json")
    src = {"name": "tr", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "train"}
    p = lsp_manifest(tmp_path, [src], train={"batch_size": 4, "warmup_steps": 1})
    CliRunner().invoke(app, ["ingest", "-m", str(p)])
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        frames = [fr for fr, lab in led.current_labels() if lab.instance == 0]
        by, left_out = kfold_models(m, led, frames, 2, 2)
        all_ids = {fr.id for fr in frames}
        assert set(left_out[0]) | set(left_out[1]) == all_ids and not set(left_out[0]) & set(left_out[1])
        assert {len(left_out[0]), len(left_out[1])} == {6}
        assert {s.frame_id for s in labeled_samples(led, ("pool", "train"))} == all_ids  # what the folds split
        for fr, md in zip(frames, by):
            fold = 0 if fr.id in left_out[0] else 1  # the fold its model left out of its training labels
            assert md.name.startswith(f"k-fold model {fold + 1}/2") and md.cache == f"kfold/fold-{fold + 1}"
        res = run_audit(m, led, folds=2, fold_steps=2)
    assert sum(res.models.values()) == 12 and all(k.startswith("k-fold model") for k in res.models)
    assert any("predicted by 2 k-fold models trained from scratch for 2 steps" in n for n in res.notes)
    r = CliRunner().invoke(app, ["audit", "-m", str(p), "--folds", "1"])
    assert r.exit_code == 2 and "--folds must be 0 (none) or at least 2" in r.output


def test_limbs_hang_off_the_torso_and_a_crossed_torso_needs_no_model():
    """A limb is a shoulder or hip pair with the same-side joints hanging off it alone (the COCO eyes and ears,
    which touch the nose, are a limb of their own); a label whose shoulders run against its hips is a swap
    without any prediction."""

    coco = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]
    coco += [f"{s}_{j}" for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle") for s in ("left", "right")]
    edges = [(15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9)]
    edges += [(8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)]
    pairs = [(2 + 2 * i, 1 + 2 * i) for i in range(8)]  # right first: the body orders them
    body = au.limb_body(coco, pairs, edges)
    named = [{coco[a].split("_", 1)[1] for a, _ in limb} for limb in body.limbs]
    assert named == [{"shoulder", "elbow", "wrist"}, {"hip", "knee", "ankle"}, {"eye", "ear"}]
    assert body.torso == (0, 1) and all(coco[a].startswith("left") for limb in body.limbs for a, _ in limb)
    idx = {n: i for i, n in enumerate(LSP_NAMES)}
    lsp_pairs = [(idx[f"left_{j}"], idx[f"right_{j}"]) for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
    lsp_edges = [
        (idx[f"{s}_{a}"], idx[f"{s}_{b}"])
        for s in ("left", "right")
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"), ("hip", "shoulder"))
    ]
    lsp = au.limb_body(LSP_NAMES, lsp_pairs, lsp_edges)
    kp = np.zeros((1, len(LSP_NAMES), 3))
    kp[0, :, 2] = 2
    for s, x in (("left", 60.0), ("right", 40.0)):  # a front view: the person's left on the image's right
        for j, y in (("shoulder", 20), ("elbow", 35), ("wrist", 50), ("hip", 55), ("knee", 75), ("ankle", 95)):
            kp[0, idx[f"{s}_{j}"], :2] = x, y
    kp[0, idx["neck"], :2], kp[0, idx["head_top"], :2] = (50, 15), (50, 0)
    clean = au.audit(kp, None, None, np.array([15.0]), np.array([[100, 100]]), lsp_pairs, None, DEFAULTS, body=lsp)
    assert not clean
    swapped = kp.copy()
    for j in ("shoulder", "elbow", "wrist"):
        swapped[0, [idx[f"left_{j}"], idx[f"right_{j}"]]] = swapped[0, [idx[f"right_{j}"], idx[f"left_{j}"]]]
    assert au.torso_crossing(swapped[..., :2], swapped[..., 2] > 0, lsp).max() == pytest.approx(1.0)
    flags = au.audit(swapped, None, None, np.array([15.0]), np.array([[100, 100]]), lsp_pairs, None, DEFAULTS, body=lsp)
    assert {f.reason for f in flags} == {"swap"} and {("left_shoulder", "right_shoulder")} <= {
        (LSP_NAMES[f.joints[0]], LSP_NAMES[f.joints[1]]) for f in flags
    }  # no model to say which: the arm and the leg are both named
