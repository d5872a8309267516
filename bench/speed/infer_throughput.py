"""Frames/s of the default inference path (`load_predictor` with the settings a checkpoint records: read,
crop, forward + flipped forward, DARK decode, then the box-refine pass: crop on the found box, forward +
flipped forward, decode) against the bare forward passes that path needs (the same number of batches of the
same shape, nothing else), in one run.

    python bench/speed/infer_throughput.py [--frames 800] [--smoke]
Last lines: infer_default_frames_per_s=…, infer_default_ratio=…
``--smoke``: 4 frames at batch 2 (the test suite's check) → infer_throughput_smoke.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from iterate.loop.settings import train_setup  # noqa: E402
from model.checkpoints import save_atomic  # noqa: E402
from model.hrnet import build_model  # noqa: E402
from model.infer import load_predictor  # noqa: E402
from model.train import checkpoint_dict  # noqa: E402

import _common  # noqa: E402
from _common import bare_forward_speed, lspet_samples, manifest, write_result  # noqa: E402


def measure(pred, samples, batch: int) -> tuple[float, float, int, int]:
    """Seconds of ``pred.predict(samples)`` and of the bare forward passes it needs (the same number of batches
    of the same shape, + flipped when the path flips), the batches counted and the passes per batch."""
    size = pred.codec.input_size
    dev = pred.device
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    pred.predict(samples[: batch * 2])  # warm-up
    counted = {"batches": 0}
    real_batches = pred.batches

    def counting(*a, **kw):
        for b in real_batches(*a, **kw):
            counted["batches"] += 1
            yield b

    pred.batches = counting
    t0 = time.perf_counter()
    pred.predict(samples)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_pipe = time.perf_counter() - t0
    pred.batches = real_batches
    passes = 2 if pred.settings.flip else 1  # forward (+ flipped forward) per batch
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(counted["batches"]):
            pred.model(x, with_embedding=True)
            for _ in range(passes - 1):
                pred.model(torch.flip(x, dims=[3]))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_bare = time.perf_counter() - t0
    return t_pipe, t_bare, counted["batches"], passes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped lspet_w18s_128.pt")
    ap.add_argument("--smoke", action="store_true", help="4 frames at batch 2: the test suite's check")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.frames, args.batch = 4, 2
    speed = bare_forward_speed()
    m = manifest()
    torch.set_num_threads(os.cpu_count() or 1)
    ck = args.checkpoint or str(Path(__file__).resolve().parents[2] / "model" / "weights" / "lspet_w18s_128.pt")
    with tempfile.TemporaryDirectory() as d:
        if not Path(ck).is_file():
            ck = str(Path(d) / "random.pt")
            save_atomic(
                checkpoint_dict(
                    build_model(m.model.backbone, m.keypoints.num_joints, m.model.input_size, m.model.heatmap_size),
                    train_setup(m),
                ),
                ck,
            )
        pred = load_predictor(ck, batch_size=args.batch)
    samples = lspet_samples(7001, 7000 + args.frames)
    t_pipe, t_bare, batches, passes = measure(pred, samples, args.batch)
    n = len(samples)
    print(
        f"device={pred.device} inference={pred.settings.describe()} batch={args.batch} frames={n} "
        f"batches={batches} (first pass + refine) forward passes per batch={passes}"
    )
    print(f"pipeline_s={t_pipe:.2f} bare_forward_s={t_bare:.2f}")
    write_result(
        "infer_throughput_smoke" if args.smoke else "infer_throughput",
        {"infer_default_frames_per_s": round(n / t_pipe, 1), "infer_default_ratio": round(t_bare / t_pipe, 3)},
        {
            "frames": n,
            "batch": args.batch,
            "batches": batches,
            "pipeline_s": round(t_pipe, 2),
            "bare_forward_s": round(t_bare, 2),
            "inference": pred.settings.describe(),
            "checkpoint": Path(ck).name,
        },
        speed=speed,
    )


if __name__ == "__main__":
    main()
