"""The CPU default recipe for a fixed number of optimiser steps (default 4,000 at batch 16) on LSPET
im00001–im02000, scored on im07001–im08000 through the product's inference path (the settings a checkpoint
records: flip TTA + box refine + DARK), beside the mean-pose baseline. A step budget, not a time budget: the
figure measures the recipe, not the machine; the wall time is reported apart.

    python bench/experiments/cpu_recipe/learn_cpu.py [--steps 4000] [--smoke]
Last lines: cpu_steps_pckh05=…, cpu_steps_pckh01=…, samples_per_s=…
``--smoke``: 2 steps of 2 on 16 images, scored on 4 (the test suite's check) → learn_cpu_smoke.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05
from iterate.loop.scoring import score  # noqa: E402
from iterate.loop.settings import keypoint_spec, train_setup  # noqa: E402
from model.geometry import image_box  # noqa: E402
from model.infer import load_predictor  # noqa: E402
from model.train import train  # noqa: E402

import _common  # noqa: E402
from _common import bare_forward_speed, lspet_samples, manifest, write_result  # noqa: E402


def mean_pose_predictions(train_s, sizes_train, sizes_test) -> np.ndarray:
    """Mean pose in whole-frame box coordinates, pasted into each test frame's box."""
    acc, cnt = 0.0, 0.0
    for s, (w, h) in zip(train_s, sizes_train):
        c, side = image_box(w, h)
        rel = (s.keypoints[:, :2] - np.array(c)) / side
        v = (s.keypoints[:, 2] > 0)[:, None]
        acc = acc + np.where(v, rel, 0)
        cnt = cnt + v
    mean = acc / np.maximum(cnt, 1)
    return np.stack([np.array(image_box(w, h)[0]) + mean * image_box(w, h)[1] for w, h in sizes_test])


def _sizes(samples):
    import cv2

    return [cv2.imread(s.path).shape[1::-1] for s in samples]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--last", type=int, default=2000)
    ap.add_argument("--name", default="learn_cpu", help="results file name (bench/results/<name>.json)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a manifest field for this run, e.g. model.heatmap_size=64 (repeatable)",
    )
    ap.add_argument("--smoke", action="store_true", help="2 steps on 16 images, 4 test images: the test suite's check")
    args = ap.parse_args()
    last_test = 8000
    if args.smoke:
        _common.smoke()
        args.steps, args.last, last_test = 2, args.first + 15, 7004
        args.set = ["train.batch_size=2", "train.workers=0", *args.set]
        args.name += "_smoke"
    speed = bare_forward_speed()
    m = manifest(args.set)
    tr, te = lspet_samples(args.first, args.last), lspet_samples(7001, last_test)
    print(
        f"train {len(tr)} LSPET images, test {len(te)}; {m.model.backbone} {m.model.input_size}² "
        f"→ {m.model.heatmap_size}², batch {m.train.batch_size}, lr {m.train.lr}, {args.steps} steps",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        r = train(
            train_setup(m, epochs=1),
            tr,
            [],
            d,
            max_steps=args.steps,
            on_epoch=lambda rec: print(
                f"epoch {rec['epoch']} step {rec['step']} loss {rec['loss']:.3f} t {rec['elapsed_s']:.0f}s", flush=True
            ),
        )
        train_s = time.time() - t0
        pred = load_predictor(r.last)  # the checkpoint's own path: what `iterate predict` and the report run
        plain = load_predictor(r.last, flip=False, refine=False)
        t1 = time.time()
        res = score(keypoint_spec(m), pred.predict(te).keypoints, te)
        infer_s = time.time() - t1
        bare = score(keypoint_spec(m), plain.predict(te).keypoints, te)
        headless = None  # with a box head: the same checkpoint refined on the keypoint box alone, the head's gain
        if pred.box_codec is not None:
            headless = score(keypoint_spec(m), load_predictor(r.last, box_head=False).predict(te).keypoints, te)
            print(f"without the box head: PCKh@0.5 {headless[PCKH05]:.2f} @0.1 {headless[PCKH01]:.2f}")
    mp = score(keypoint_spec(m), mean_pose_predictions(tr, _sizes(tr), _sizes(te)), te)
    print(
        f"steps={r.steps} train_s={train_s:.0f} final_loss={r.history[-1]['loss']:.3f} inference={pred.settings.describe()}"
    )
    print(
        f"no_flip_no_refine_pckh05={bare[PCKH05]:.2f} mean_sms01={res[MEAN_SMS01]:.2f} "
        f"mean_pose_pckh05={mp[PCKH05]:.2f} test_frames={res['frames']} on_fallback={res['frames_fallback']}"
    )
    write_result(
        args.name,
        {
            "cpu_steps_pckh05": res[PCKH05],
            "cpu_steps_pckh01": res[PCKH01],
            "samples_per_s": round(r.steps * m.train.batch_size / train_s, 1),
        },
        {
            "steps": r.steps,
            "batch_size": m.train.batch_size,
            "train_images": len(tr),
            "test_images": len(te),
            "train_s": round(train_s, 1),
            "infer_s": round(infer_s, 1),
            "final_loss": r.history[-1]["loss"],
            "inference": pred.settings.describe(),
            "mean_sms01": res[MEAN_SMS01],
            "test_frames": res["frames"],
            "test_frames_fallback": res["frames_fallback"],
            "no_flip_no_refine": bare,
            "without_box_head": headless,
            "mean_pose": mp,
            "recipe": {
                "backbone": m.model.backbone,
                "input_size": m.model.input_size,
                "heatmap_size": m.model.heatmap_size,
                "sigma": m.model.sigma,
                "lr": m.train.lr,
                "warmup_steps": m.train.warmup_steps,
                "schedule": m.train.schedule,
                "fg_weight": m.train.fg_weight,
                "ohkm_topk": m.train.ohkm_topk,
                "augment": m.train.augment.model_dump(),
                "overrides": args.set,
            },
        },
        speed=speed,
    )


if __name__ == "__main__":
    main()
