import json
import math

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.manifest import Normalizer, load_manifest
from iterate.loop.settings import keypoint_spec, strata
from reports.evaluation import EvalSet, coco_evalset, evaluate
from reports.metrics import (
    frame_interval,
    height_error,
    mean_sms,
    normalisers,
    pck_hits,
    skeleton_height,
    summarise,
    wilson,
)

from conftest import REPO, SHARED, demo_manifest_dict


def test_pckh_hand_computed_with_unlabeled_joint():
    gt = np.array([[[0, 0], [10, 0], [0, 10]], [[0, 0], [10, 0], [0, 10]]], float)
    vis = np.array([[2, 2, 0], [2, 1, 2]])
    pred = gt + np.array([[[0.5, 0], [1.5, 0], [99, 99]], [[0, 0.9], [0, 2.5], [0, 1.1]]])
    norm = np.array([10.0, 20.0])  # radii 1.0 and 2.0 at α = 0.1
    hits = pck_hits(pred, gt, vis, norm, 0.1)
    assert np.isnan(hits[0, 2])  # the unlabeled joint is excluded, not a miss
    assert hits[0, :2].tolist() == [1, 0] and hits[1].tolist() == [1, 0, 1]
    s = summarise(hits)
    assert s.count == 5 and s.mean == pytest.approx(60.0)
    assert s.per_joint.tolist() == pytest.approx([100.0, 0.0, 100.0])


def test_zero_size_normaliser_is_refused():
    gt = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match="normaliser is zero"):
        pck_hits(gt, gt, np.array([[2, 2]]), np.array([0.0]))
    norm = normalisers(
        np.array([[[5, 5], [5, 5]]], float),
        np.array([[2, 2]]),
        Normalizer(kind="head_segment", joints=["a", "b"]),
        ["a", "b"],
    ).lengths
    assert np.isnan(norm[0])  # a zero-length head segment is no normaliser at all (and no box to fall back on)


def test_posetrack18_head_boxes_against_hand_values():
    path = SHARED / "mmpose_samples/posetrack18/annotations/test_posetrack18_val.json"
    coco = json.loads(path.read_text())
    names = coco["categories"][0]["keypoints"]
    d = demo_manifest_dict()
    d["keypoints"] = {"names": names, "normalizer": {"kind": "head_box"}, "height_joints": names[:3]}
    d["sources"] = []
    d["strata"] = {}
    mpath = SHARED.parent / "nonexistent.yaml"
    tmp = __import__("tempfile").mkdtemp()
    mpath = __import__("pathlib").Path(tmp) / "m.yaml"
    mpath.write_text(yaml.safe_dump(d))
    m = load_manifest(mpath)
    rng = np.random.default_rng(0)
    preds, hand_hits, hand_total = [], 0, 0
    for a in coco["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        if not (kp[:, 2] > 0).any():
            continue
        off = rng.uniform(0, 8, size=len(kp))  # pixels, straight right
        p = kp.copy()
        p[:, 0] += off
        p[:, 2] = 1
        preds.append({"image_id": a["image_id"], "category_id": 1, "keypoints": p.reshape(-1).tolist(), "score": 1})
        x, y, w, h = a["bbox_head"]
        radius = 0.1 * 0.6 * math.sqrt(w * w + h * h)
        for j in range(len(kp)):
            if kp[j, 2] > 0:
                hand_total += 1
                hand_hits += off[j] <= radius
    pp = __import__("pathlib").Path(tmp) / "preds.json"
    pp.write_text(json.dumps(preds))
    res = evaluate(keypoint_spec(m), strata(m), coco_evalset(keypoint_spec(m), pp, path), 0.1)
    assert res["joints"] == hand_total
    assert res["pckh@0.1"] == pytest.approx(100 * hand_hits / hand_total, abs=0.01)
    assert 0 < hand_hits < hand_total  # the offsets straddle the radius: a real test


def test_mean_sms_and_height_error_on_constructed_skeleton(tmp_path):
    m = load_manifest(REPO / "data_manifest.yaml")
    names = m.keypoints.names
    gt = np.zeros((1, 14, 2))
    pos = {
        "head_top": (50, 0),
        "neck": (50, 20),
        "right_hip": (45, 60),
        "left_hip": (55, 60),
        "right_knee": (45, 90),
        "left_knee": (55, 90),
        "right_ankle": (45, 120),
        "left_ankle": (55, 120),
        "right_shoulder": (40, 22),
        "left_shoulder": (60, 22),
        "right_elbow": (35, 40),
        "left_elbow": (65, 40),
        "right_wrist": (35, 55),
        "left_wrist": (65, 55),
    }
    for n, xy in pos.items():
        gt[0, names.index(n)] = xy
    vis = np.full((1, 14), 2)
    chains = [[names.index(j) for j in ch] for ch in m.keypoints.height_chain]
    h = skeleton_height(gt, vis, chains)[0]
    assert h == pytest.approx(20 + math.hypot(5, 40) + 30 + 30)
    pred = gt.copy()
    pred[0, names.index("right_ankle"), 1] += 12  # legs 12 px longer on one side
    pred[0, names.index("left_ankle"), 1] += 12
    assert height_error(pred, gt, vis, chains)[0] == pytest.approx(12 / h * 100)
    es = EvalSet(pred, gt, vis, [{"posture": "upright", "occlusion": "none"}], ["f"])
    res = evaluate(keypoint_spec(m), strata(m), es, 0.1)  # radius 2 px: only the ankles miss
    assert res["per_joint"]["right_ankle"] == 0 and res["per_joint"]["head_top"] == 100
    assert res["mean_sms@0.1"] == pytest.approx(100 * 6 / 8, abs=0.01)  # 8 height joints, 2 missed
    assert res["pckh@0.1"] == pytest.approx(100 * 12 / 14, abs=0.01)


def test_strata_tables_sum_back_and_other(tmp_path):
    m = load_manifest(REPO / "data_manifest.yaml")
    rng = np.random.default_rng(1)
    n = 60
    gt = rng.uniform(0, 100, size=(n, 14, 2))
    vis = (rng.random((n, 14)) > 0.1).astype(int) * 2
    vis[:, [12, 13]] = 2
    pred = gt + rng.normal(0, 3, size=gt.shape)
    postures = ["upright", "inverted", "sideways"]
    attrs = [{"posture": postures[i % 3], "occlusion": "none"} for i in range(n)]
    res = evaluate(keypoint_spec(m), strata(m), EvalSet(pred, gt, vis, attrs, list(range(n))), 0.5)
    rows = res["strata"]["posture"]
    assert "other" in rows and "sideways" in " ".join(res["notes"])
    assert sum(r["frames"] for r in rows.values()) == res["frames"]
    assert sum(r["joints"] for r in rows.values()) == res["joints"]
    weighted = sum(r["pckh@0.5"] * r["joints"] for r in rows.values()) / res["joints"]
    assert weighted == pytest.approx(res["pckh@0.5"], abs=0.05)
    assert not any(r["small"] for r in rows.values())  # 20 frames each: just large enough to judge
    small = evaluate(
        keypoint_spec(m), strata(m), EvalSet(pred[:12], gt[:12], vis[:12], attrs[:12], list(range(12))), 0.5
    )
    assert all(r["small"] for r in small["strata"]["posture"].values())  # 4 frames each: too small
    lo, hi = wilson(5, 6)
    assert lo < 83.4 < hi and hi - lo > 40  # six frames: a wide interval


def test_evaluate_cli_on_coco_results(tmp_path):
    gt_path = REPO / "demo_data/test.coco.json"
    gt = json.loads(gt_path.read_text())
    preds = [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "score": 1.0,
            "keypoints": [v + (1.0 if i % 3 == 0 else 0.0) if i % 3 < 2 else 1 for i, v in enumerate(a["keypoints"])],
        }
        for a in gt["annotations"]
    ]
    pp = tmp_path / "preds.json"
    pp.write_text(json.dumps(preds))
    r = CliRunner().invoke(
        app, ["evaluate", "-m", str(REPO / "data_manifest.yaml"), "--pred", str(pp), "--gt", str(gt_path), "--json"]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert {"pckh@0.1", "mean_sms@0.1", "per_joint", "strata"} <= set(res)
    assert 0 < res["pckh@0.1"] < res["pckh@0.5"] <= 100  # 1 px off: more within half a head than within 0.1
    r = CliRunner().invoke(
        app, ["evaluate", "-m", str(REPO / "data_manifest.yaml"), "--pred", str(pp), "--gt", str(gt_path)]
    )
    assert r.exit_code == 0 and "per posture" in r.output
    bad = [dict(preds[0], image_id=999999), dict(preds[1], keypoints=preds[1]["keypoints"][:-3])]
    pp.write_text(json.dumps(bad[:1]))
    r = CliRunner().invoke(
        app, ["evaluate", "-m", str(REPO / "data_manifest.yaml"), "--pred", str(pp), "--gt", str(gt_path)]
    )
    assert r.exit_code == 2 and "999999" in r.output
    pp.write_text(json.dumps(bad[1:]))
    r = CliRunner().invoke(
        app, ["evaluate", "-m", str(REPO / "data_manifest.yaml"), "--pred", str(pp), "--gt", str(gt_path)]
    )
    assert r.exit_code == 2 and "has 13 joints, the labels have 14" in r.output


def test_mean_sms_is_the_mean_of_per_joint_pckh_not_pooled_hits():
    # joint 0 labeled in 10 frames, all hit; joint 1 labeled in one frame, missed
    hits = np.full((10, 3), np.nan)
    hits[:, 0] = 1.0
    hits[0, 1] = 0.0
    hits[:, 2] = 0.0  # not a height joint: does not count
    assert mean_sms(hits, [0, 1]) == pytest.approx(50.0)  # pooled would be 10/11 = 90.9 %
    assert summarise(hits, [0, 1]).mean == pytest.approx(100 * 10 / 11)
    assert math.isnan(mean_sms(hits, []))


def test_frame_bootstrap_is_as_wide_as_the_frame_binomial_when_joints_move_together():
    rng = np.random.default_rng(3)
    n, k, p = 300, 14, 0.4
    frame_hit = (rng.random(n) < p).astype(float)
    together = np.repeat(frame_hit[:, None], k, axis=1)
    lo, hi = frame_interval(together)
    wlo, whi = wilson(frame_hit.sum(), n)  # n frames: the trials that are really independent
    assert (hi - lo) == pytest.approx(whi - wlo, rel=0.12)
    jlo, jhi = wilson(together.sum(), n * k)  # what counting joints as trials claims
    assert (hi - lo) > 2.5 * (jhi - jlo)
    # independent joints: the frame bootstrap is close to the joint-level interval, far narrower than above
    indep = (rng.random((n, k)) < p).astype(float)
    ilo, ihi = frame_interval(indep)
    jlo, jhi = wilson(indep.sum(), n * k)
    assert (ihi - ilo) == pytest.approx(jhi - jlo, rel=0.2)
    assert frame_interval(together) == (lo, hi)  # seeded: the same every time


def test_frames_without_a_normaliser_get_the_fallback_and_are_counted():
    m = load_manifest(REPO / "data_manifest.yaml")
    rng = np.random.default_rng(5)
    n = 40
    gt = rng.uniform(0, 200, size=(n, 14, 2))
    vis = np.full((n, 14), 2)
    vis[:6, 13] = 0  # six frames without head_top: no head segment
    pred = gt + rng.normal(0, 4, size=gt.shape)
    res = evaluate(keypoint_spec(m), strata(m), EvalSet(pred, gt, vis, [{}] * n, list(range(n))), 0.5)
    assert res["frames"] == n and res["frames_fallback"] == 6 and res["frames_unscored"] == 0
    names = m.keypoints.names
    seg = np.linalg.norm(gt[6:, names.index("neck")] - gt[6:, names.index("head_top")], axis=1)
    diag = np.hypot(*(gt[6:].max(1) - gt[6:].min(1)).T)
    assert res["normaliser"]["fallback_ratio"] == pytest.approx(np.median(seg / diag))
    assert any("fallback" in note for note in res["notes"])
    none = m.keypoints.normalizer.model_copy(update={"fallback": "none"})
    m2 = m.model_copy(update={"keypoints": m.keypoints.model_copy(update={"normalizer": none})})
    res2 = evaluate(keypoint_spec(m2), strata(m2), EvalSet(pred, gt, vis, [{}] * n, list(range(n))), 0.5)
    assert res2["frames"] == n - 6 and res2["frames_unscored"] == 6 and "not scored" in " ".join(res2["notes"])


def test_missing_predictions_are_misses_not_dropped_frames():
    m = load_manifest(REPO / "data_manifest.yaml")
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 200, size=(3, 14, 2))
    vis = np.full((3, 14), 2)
    pred = gt.copy()
    pred[0, :2] = np.nan  # two joints of one frame have no prediction
    pred[1] = 1e4  # a frame that is wrong everywhere
    res = evaluate(keypoint_spec(m), strata(m), EvalSet(pred, gt, vis, [{}] * 3, [0, 1, 2]), 0.1)
    assert res["frames"] == 3
    assert res["pckh@0.1"] == pytest.approx(100 * (12 + 0 + 14) / 42, abs=0.01)
    pred[0] = np.nan  # a whole frame without a prediction still counts, all misses
    res = evaluate(keypoint_spec(m), strata(m), EvalSet(pred, gt, vis, [{}] * 3, [0, 1, 2]), 0.1)
    assert res["frames"] == 3 and res["pckh@0.1"] == pytest.approx(100 * 14 / 42, abs=0.01)
    assert any("no prediction" in note for note in res["notes"])


def test_scoring_only_the_shared_joints_keeps_the_normaliser(lspet_coco):
    """A base of another joint set is scored on the joints it predicts (``EvalSet.only``); the PCKh normaliser still
    comes from every labeled joint (here the neck–head-top segment, which that base does not predict)."""
    m = load_manifest(REPO / "data_manifest.yaml")
    spec = keypoint_spec(m)
    anns = [a for a in lspet_coco["annotations"] if 7001 <= a["image_id"] <= 7060]
    kp = np.stack([np.asarray(a["keypoints"], float).reshape(-1, 3) for a in anns])
    gt, vis = kp[..., :2], kp[..., 2]
    pred = gt.copy()
    pred[:, 12:] = np.nan  # neck and head top: not among the model's joints
    es = EvalSet(pred, gt, vis, [{} for _ in anns], [a["id"] for a in anns], only=list(range(12)))
    res = evaluate(spec, {}, es, 0.1)
    full = evaluate(spec, {}, EvalSet(gt, gt, vis, [{} for _ in anns], [a["id"] for a in anns]), 0.1)
    assert res["pckh@0.1"] == pytest.approx(100.0)
    assert res["frames_fallback"] == full["frames_fallback"]  # the same normaliser for every frame
    assert not any("had no prediction" in n for n in res["notes"])
    assert res["joints"] < full["joints"]  # the two unshared joints are not counted
