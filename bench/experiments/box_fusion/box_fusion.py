"""How to combine the box head's person box with the confident-joints box for the refine pass: the shipped
all-posture base (with its head) on held-out LSPET im07001–im08000, flip TTA + DARK on every pass, no training.

Methods (each one refine pass from the same whole-frame pass, unless said):
- ``mean``: centres averaged, sides by geometric mean (what inference does with a head);
- ``wc<a>_ws<b>``: the head's share ``a`` of the centre and ``b`` of the (log) side;
- ``side_max``: the mean's centre, the larger side; ``scale<x>``: the mean box scaled;
- ``head`` / ``joints``: either box alone;
- ``head_again``: a second refine pass on the mean of the head's box *read on the refined crop* and the refined
  joints' box (the head runs again on a crop where the person fills the frame);
- ``crop_average``: the confidence-weighted average of the keypoints of several refined passes;
- ``crop_pick``: per frame, the refined pass whose heatmaps are the most confident.

    python bench/experiments/box_fusion/box_fusion.py [--model model/weights/lspet_w18s_128.pt] [--smoke]
Last lines: fusion_<method>_pckh05=…, fusion_best=…, fusion_gap_closed=… (share of the refine on joints box →
labeled-box gap, the labeled box's figure from bench/results/person_box.json)
``--smoke``: 4 frames, the labeled box's figure measured in the run (the test suite's check) → box_fusion_smoke.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import PCKH01, PCKH05
from iterate.loop.scoring import score
from iterate.loop.settings import keypoint_spec
from model.data import BOX_MARGIN
from model.geometry import keypoint_box
from model.infer import joints_box, load_predictor

import _common
from _common import REPO, RESULTS, bare_forward_speed, lspet_samples, manifest, write_result


def _joint_boxes(kps: np.ndarray, scores: np.ndarray) -> dict:
    """The refine pass's own box of every frame that has one."""
    boxes = {i: joints_box(kps[i], scores[i]) for i in range(len(kps)) if not np.isnan(kps[i]).any()}
    return {i: b for i, b in boxes.items() if b is not None}


def _fuse(jb: dict, hb: np.ndarray, wc=0.5, ws=0.5, scale=1.0, side="geo") -> dict:
    out = {}
    for i, h in enumerate(hb):
        j, ok = jb.get(i), bool(np.isfinite(h).all())
        if j is None and not ok:
            continue
        if j is None:
            c, sd = (h[0], h[1]), h[2]
        elif not ok:
            c, sd = j
        else:
            (cx, cy), s = j
            c = ((1 - wc) * cx + wc * h[0], (1 - wc) * cy + wc * h[1])
            sd = max(s, h[2]) if side == "max" else s ** (1 - ws) * h[2] ** ws
        if sd * scale >= 16:
            out[i] = (c, sd * scale)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "model" / "weights" / "lspet_w18s_128.pt"))
    ap.add_argument("--name", default="box_fusion")
    ap.add_argument("--smoke", action="store_true", help="4 frames: the test suite's check")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.name += "_smoke"
    speed = bare_forward_speed()
    spec = keypoint_spec(manifest())
    te = lspet_samples(7001, 7004 if args.smoke else 8000)
    pred = load_predictor(args.model, refine=False)  # flip TTA; the passes below are run by hand
    if pred.box_codec is None:
        raise SystemExit(f"{args.model}: no box head (see bench/release/ship_box_head.py)")
    p0 = pred.predict(te)
    k0, s0, hb0 = p0.keypoints, p0.scores, p0.boxes
    res: dict[str, float] = {}
    passes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def record(name: str, kps: np.ndarray, sc: np.ndarray | None = None) -> None:
        if sc is not None:
            passes[name] = (kps, sc)
        r = score(spec, kps, te)
        res[name] = r[PCKH05]
        print(f"{name}: PCKh@0.5 {r[PCKH05]:.2f}  @0.1 {r[PCKH01]:.2f}", flush=True)

    def refine(boxes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass on ``boxes`` → keypoints, scores and the head's box read on each refined crop."""
        idx = sorted(boxes)
        sub, sub_box = [te[i] for i in idx], {j: boxes[i] for j, i in enumerate(idx)}
        k, s, hb = k0.copy(), s0.copy(), hb0.copy()
        for b in pred.batches(sub, {}, sub_box, with_box=True):
            if len(b.index):
                orig = np.array([idx[j] for j in b.index])
                k[orig], s[orig] = pred.decode(b)
                hb[orig] = pred.decode_boxes(b)
        return k, s, hb

    jb = _joint_boxes(k0, s0)
    k, s, hb1 = refine(_fuse(jb, hb0))
    record("mean", k, s)
    for wc, ws in ((0.0, 0.5), (0.25, 0.5), (0.5, 0.7), (0.5, 1.0)):
        record(f"wc{wc:g}_ws{ws:g}", *refine(_fuse(jb, hb0, wc, ws))[:2])
    record("side_max", *refine(_fuse(jb, hb0, side="max"))[:2])
    for x in (0.92, 1.1):
        record(f"scale{x:g}", *refine(_fuse(jb, hb0, scale=x))[:2])
    record("head", *refine(_fuse({}, hb0))[:2])
    record("joints", *refine({i: b for i, b in jb.items() if b[1] >= 16})[:2])
    record("head_again", *refine(_fuse(_joint_boxes(k, s), hb1))[:2])
    for names in (("mean", "head", "joints"), ("mean", "scale0.92", "scale1.1"), ("mean", "head_again")):
        w = np.stack([passes[n][1] for n in names])[..., None]
        kp = np.stack([passes[n][0] for n in names])
        record("crop_average_" + "+".join(names), (kp * w).sum(0) / np.maximum(w.sum(0), 1e-6))
        pick = np.stack([passes[n][1].mean(1) for n in names]).argmax(0)
        record("crop_pick_" + "+".join(names), np.stack([passes[names[j]][0][i] for i, j in enumerate(pick)]))
    if args.smoke:  # the labeled box's refine pass, in this run (no bench/results/person_box.json to read)
        gt = {i: b for i, s in enumerate(te) if (b := keypoint_box(s.keypoints[:, :2], s.keypoints[:, 2], BOX_MARGIN))}
        ceiling = score(spec, refine(gt)[0], te)[PCKH05]
    else:
        ceiling = json.loads((RESULTS / "person_box.json").read_text())["figures"]["box_labeled_box_pckh05"]
    best = max(res, key=res.get)
    closed = (res[best] - res["joints"]) / max(1e-9, ceiling - res["joints"])
    figures = {f"fusion_{n}_pckh05": round(v, 2) for n, v in res.items()}
    figures.update({"fusion_best": best, "fusion_labeled_box_pckh05": ceiling, "fusion_gap_closed": round(closed, 3)})
    write_result(args.name, figures, {"model": args.model, "test_images": len(te)}, speed=speed)


if __name__ == "__main__":
    main()
