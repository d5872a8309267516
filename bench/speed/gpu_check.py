"""GPU readiness: the product's own fine-tune (`model.train.train`, the real data pipeline) of a W32 256² net for a
few hundred steps, per heatmap size (64², the seed's, and 96²), then the product's inference path on held-out
frames; beside each, the bare network on the same shapes, as pipeline/bare ratios measured in the same run.

    python bench/speed/gpu_check.py [--init W32_CHECKPOINT] [--steps 300] [--batch 32] [--heatmaps 64,96] [--workers 8]
    python bench/speed/gpu_check.py --backbone hrnet_w18_small --input 128 --heatmaps 32 --steps 4 --batch 4 \
        --frames 16 --name gpu_check_smoke        # the same code on a CPU, in seconds
    python bench/speed/gpu_check.py --smoke             # smaller still, on the CPU even with a GPU: the test suite's check
Without ``--init`` the trunk starts from random weights (speed figures hold; the PCKh does not mean much).
Last lines per heatmap size: train_samples_per_s_hmN, train_ratio_hmN (pipeline/bare), predict_frames_per_s_hmN,
predict_ratio_hmN (bare time/pipeline time), pckh05_hmN.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from infer_throughput import measure  # noqa: E402  (bench/speed/, this script's folder)

from iterate.core.metric_keys import PCKH05
from iterate.loop.scoring import score  # noqa: E402
from iterate.loop.settings import keypoint_spec, train_setup  # noqa: E402
from model.hrnet import build_model  # noqa: E402
from model.infer import load_predictor  # noqa: E402
from model.train import heatmap_loss, train  # noqa: E402

import _common  # noqa: E402
from _common import bare_forward_speed, lspet_samples, manifest, write_result  # noqa: E402


def bare_train_speed(backbone: str, joints: int, size: int, hm: int, batch: int, steps: int, dev) -> float:
    """Samples/s of forward + backward + AdamW on one random batch, nothing else (channels_last)."""
    net = build_model(backbone, joints, size, hm).to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y, w = torch.rand(batch, joints, hm, hm, device=dev), torch.ones(batch, joints, device=dev)

    def step():
        loss = heatmap_loss(net(x), y, w, 1000.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="hrnet_w32")
    ap.add_argument("--input", type=int, default=256)
    ap.add_argument("--heatmaps", default="64,96")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--frames", type=int, default=800, help="held-out frames the inference path predicts")
    ap.add_argument("--init", default="", help="checkpoint to fine-tune from (a W32 pose trunk)")
    ap.add_argument("--name", default="gpu_check")
    ap.add_argument("--smoke", action="store_true", help="W18-small 128², 2 steps of 2, 4 frames, on the CPU")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.backbone, args.input, args.heatmaps, args.steps, args.batch, args.frames = (
            "hrnet_w18_small",
            128,
            "32",
            2,
            2,
            4,
        )
        args.name = "gpu_check_smoke"
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if dev.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    m = manifest()
    spec = keypoint_spec(m)
    tr, te = lspet_samples(1, 16 if args.smoke else 2000), lspet_samples(7001, 7000 + args.frames)
    figures, details = {}, {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "runs": {}}
    for hm in (int(h) for h in args.heatmaps.split(",")):
        setup = train_setup(m)
        setup = replace(
            setup,
            model=replace(setup.model, backbone=args.backbone, input_size=args.input, heatmap_size=hm),
            train=replace(setup.train, batch_size=args.batch, workers=args.workers if dev.type == "cuda" else 0),
        )
        with tempfile.TemporaryDirectory() as d:
            res = train(
                setup, tr, [], d, init=args.init or None, allow_partial=True, max_steps=args.steps, device=dev.type
            )
            pred = load_predictor(res.last, batch_size=args.batch, device=dev.type)
            t_pipe, t_bare, batches, passes = measure(pred, te, args.batch)
            got = score(spec, pred.predict(te).keypoints, te)
        bare = bare_train_speed(args.backbone, spec.num_joints, args.input, hm, args.batch, min(args.steps, 50), dev)
        train_speed = res.steps * args.batch / res.seconds  # includes the model build and the checkpoint writes
        k = f"hm{hm}"
        figures |= {
            f"train_samples_per_s_{k}": round(train_speed, 1),
            f"train_ratio_{k}": round(train_speed / bare, 3),
            f"predict_frames_per_s_{k}": round(len(te) / t_pipe, 1),
            f"predict_ratio_{k}": round(t_bare / t_pipe, 3),
            f"pckh05_{k}": round(got[PCKH05], 2),
        }
        details["runs"][k] = {
            "steps": res.steps,
            "train_s": res.seconds,
            "bare_train_samples_per_s": round(bare, 1),
            "predict_s": round(t_pipe, 2),
            "bare_forward_s": round(t_bare, 2),
            "batches": batches,
            "passes_per_batch": passes,
            "inference": pred.settings.describe(),
            "init": args.init or "random",
            "load": res.load_report,
        }
        print(f"{k}: " + " ".join(f"{a}={b}" for a, b in figures.items() if a.endswith(k)), flush=True)
    details |= {"backbone": args.backbone, "input": args.input, "batch": args.batch, "frames": len(te)}
    write_result(args.name, figures, details, speed=bare_forward_speed())


if __name__ == "__main__":
    main()
