"""A person box for frames without labels: how much of the gap between the refine pass (box from the first
whole-frame pass) and the labeled person's box each method closes, on the shipped all-posture base and held-out
LSPET im07001–im08000 (flip TTA + DARK on every pass).

Methods: whole frame only; refine once (the default without a box head); refine iterated (each pass re-boxes on
the last pass's keypoints); margins; a box from every joint vs the confident ones; the labeled box (the ceiling);
and a trained box head (`model.box_head`): the model's pose weights frozen (`train.freeze: pose`), the head trained
by the product's `train()` for ``--head-steps`` on LSPET im00001–05900 (val im05901–06000), then the refine pass
on the head's box alone (``box_head``) and on the mean of the head's and the keypoint box (``box_head_mean``, what
inference does with a head).

    python bench/experiments/person_box/person_box.py [--model model/weights/lspet_w18s_128.pt] [--head-steps 4000] [--head-out DIR]
                               [--set train.augment.person_box=0 …] [--name person_box] [--smoke]
Last lines: box_<method>_pckh05=…, box_gap_closed=… (share of the refine → labeled-box gap the best method closes)
``--smoke``: 4 test frames, a 2-step head (batch 2, val 4 frames) written into the results folder (the test suite's
check) → person_box_smoke.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import PCKH01, PCKH05
from iterate.loop.scoring import evaluator, score
from iterate.loop.settings import keypoint_spec, train_setup
from model.checkpoints import load_file, save_atomic
from model.codec import DarkCodec
from model.data import BOX_MARGIN
from model.geometry import keypoint_box
from model.infer import joints_box, load_predictor
from model.train import train

import _common
from _common import REPO, bare_forward_speed, lspet_samples, manifest, write_result


def _boxes(kps: np.ndarray, scores: np.ndarray, margin: float, rel: float | None) -> dict:
    """The refine box of every frame (``rel`` None: from every joint instead of the confident ones)."""
    out = {}
    for i in range(len(kps)):
        if np.isnan(kps[i]).any():
            continue
        if rel is None:
            box = keypoint_box(kps[i], np.ones(len(kps[i]), int), margin=margin)
        else:
            box = joints_box(kps[i], scores[i], rel, margin)
        if box is not None and box[1] >= 16:
            out[i] = box
    return out


def _pass(pred, samples, boxes: dict, kps: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k, s = kps.copy(), scores.copy()
    pred._rerun(samples, {}, k, s, average=False, boxes=boxes)
    return k, s


def _train_head(model: str, steps: int, out: Path, overrides: list[str], last_val: int = 6000) -> tuple[str, dict]:
    """The product's train(): a new box head on ``model``'s frozen pose weights (a head the checkpoint already
    carries is left out, so the run starts fresh) → (best checkpoint, run figures)."""
    ck = load_file(model)
    ck["model"] = {k: v for k, v in ck["model"].items() if not k.startswith("box_head.")}
    out.mkdir(parents=True, exist_ok=True)
    model = str(out / "keypoints_only.pt")
    save_atomic(ck, model)
    own = [f"model.{k}={ck[k]}" for k in ("heatmap_size", "sigma") if k in ck]  # decode as the pose weights learned
    m = manifest(["model.box_head=true", "train.freeze=pose", "train.eval_every_steps=500", *own, *overrides])
    setup = train_setup(m)
    codec = DarkCodec(setup.model.input_size, setup.model.heatmap_size, setup.model.sigma)
    ev = evaluator(keypoint_spec(m), setup.infer_config(), codec)
    val = lspet_samples(5901, last_val)
    res = train(setup, lspet_samples(1, 5900), val, out, init=model, max_steps=steps, evaluate=ev)
    samples_per_s = steps * setup.train.batch_size / max(1e-9, res.seconds)
    print(f"box head: {res.steps} steps in {res.seconds:.0f} s ({samples_per_s:.1f} samples/s)", flush=True)
    return str(res.best), {"steps": res.steps, "seconds": res.seconds, "samples_per_s": round(samples_per_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "model" / "weights" / "lspet_w18s_128.pt"))
    ap.add_argument("--first", type=int, default=7001)
    ap.add_argument("--last", type=int, default=8000)
    ap.add_argument("--head-steps", type=int, default=4000, help="box head training steps (0: no box head)")
    ap.add_argument("--head-out", default="/tmp/iterate-box-head", help="where the box head's run is written")
    ap.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="manifest change for the head run"
    )
    ap.add_argument("--name", default="person_box", help="results file name (bench/results/<name>.json)")
    ap.add_argument("--smoke", action="store_true", help="4 frames, a 2-step head: the test suite's check")
    args = ap.parse_args()
    last_val = 6000
    if args.smoke:
        results = _common.smoke()
        args.last, args.head_steps, last_val = args.first + 3, min(args.head_steps, 2), 5904
        if args.head_out == ap.get_default("head_out"):
            args.head_out = str(results / "person_box_smoke_head")
        args.set = ["train.batch_size=2", "train.workers=0", *args.set]
        args.name += "_smoke"
    speed = bare_forward_speed()
    spec = keypoint_spec(manifest())
    te = lspet_samples(args.first, args.last)
    pred = load_predictor(args.model, refine=False)  # flip TTA; the passes below are run by hand
    p0 = pred.predict(te)
    res: dict[str, float] = {}
    details: dict[str, dict] = {}
    passes: dict[str, tuple[np.ndarray, np.ndarray]] = {"whole_frame": (p0.keypoints, p0.scores)}

    def record(name: str, kps: np.ndarray, sc: np.ndarray | None = None) -> None:
        if sc is not None:
            passes[name] = (kps, sc)
        r = score(spec, kps, te)
        res[name], details[name] = r[PCKH05], r
        print(f"{name}: PCKh@0.5 {r[PCKH05]:.2f}  @0.1 {r[PCKH01]:.2f}", flush=True)

    record("whole_frame", p0.keypoints)
    gt_boxes = {
        i: b for i, s in enumerate(te) if (b := keypoint_box(s.keypoints[:, :2], s.keypoints[:, 2], BOX_MARGIN))
    }
    record("labeled_box", _pass(pred, te, gt_boxes, p0.keypoints, p0.scores)[0])
    for margin in (1.2, 1.35, 1.5, 1.7):
        k, s = _pass(pred, te, _boxes(p0.keypoints, p0.scores, margin, 0.3), p0.keypoints, p0.scores)
        record(f"refine1_m{margin:g}", k, s)
        if margin == 1.35:
            first = (k, s)
    k, s = _pass(pred, te, _boxes(p0.keypoints, p0.scores, 1.35, None), p0.keypoints, p0.scores)
    record("refine1_alljoints", k, s)
    k, s = first
    for it in (2, 3):
        k, s = _pass(pred, te, _boxes(k, s, 1.35, 0.3), k, s)
        record(f"refine{it}", k, s)
    # per frame, the pass whose heatmaps are the most confident (mean over joints); and a confidence-weighted
    # average of the refined passes
    names = list(passes)
    conf = np.stack([passes[n][1].mean(1) for n in names])  # (P, N)
    pick = conf.argmax(0)
    record("refine_most_confident", np.stack([passes[names[j]][0][i] for i, j in enumerate(pick)]))
    refined = [n for n in names if n.startswith("refine")]
    w = np.stack([passes[n][1] for n in refined])[..., None]  # (R, N, K, 1)
    kp = np.stack([passes[n][0] for n in refined])
    record("refine_conf_average", (kp * w).sum(0) / np.maximum(w.sum(0), 1e-6))
    head_run = {}
    if args.head_steps > 0:
        head_ck, head_run = _train_head(args.model, args.head_steps, Path(args.head_out), args.set, last_val)
        head_run["overrides"] = args.set
        ph = load_predictor(head_ck, refine=False).predict(te)  # the head's boxes; the same frozen pose weights
        head_run["checkpoint"] = head_ck
        head_run["first_pass_max_shift_px"] = float(np.nanmax(np.abs(ph.keypoints - p0.keypoints)))
        hb = {i: ((b[0], b[1]), b[2]) for i, b in enumerate(ph.boxes) if np.isfinite(b).all()}
        record("box_head", _pass(pred, te, hb, p0.keypoints, p0.scores)[0])
        record("box_head_mean", load_predictor(head_ck).predict(te).keypoints)  # inference's own path with a head
    base, ceiling = res["refine1_m1.35"], res["labeled_box"]
    best = max((n for n in res if n.startswith(("refine", "box_head"))), key=lambda n: res[n])
    closed = (res[best] - base) / max(1e-9, ceiling - base)
    figures = {f"box_{n}_pckh05": round(v, 2) for n, v in res.items()}
    figures.update({"box_best": best, "box_gap_closed": round(closed, 3)})
    write_result(
        args.name,
        figures,
        {"model": args.model, "test_images": len(te), "per_method": details, "box_head_run": head_run},
        speed=speed,
    )


if __name__ == "__main__":
    main()
