"""Frames/s of `predict` (real images: read, crop, forward, DARK decode, back to image pixels; flip TTA and the
refinement pass off) vs the bare forward of the same net on the same batch shape.

Last line: infer_ratio=…
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lspet import lspet_samples, manifest  # noqa: E402

from model.codec import DarkCodec  # noqa: E402
from model.hrnet import build_model  # noqa: E402
from model.infer import Predictor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=800)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--input", type=int, default=None)
    ap.add_argument("--heatmap", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    m = manifest()
    bb = args.backbone or m.model.backbone
    size = args.input or m.model.input_size
    hs = args.heatmap or m.model.heatmap_size
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count() or 1)
    workers = args.workers if args.workers is not None else (1 if dev.type == "cpu" else 8)
    model = build_model(bb, m.keypoints.num_joints, size, hs)
    pred = Predictor(model, DarkCodec(size, hs, m.model.sigma), m.keypoints.flip_index(), flip=False,
                     batch_size=args.batch, workers=workers)
    samples = lspet_samples(7001, 7000 + args.frames)
    x = torch.randn(args.batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        for _ in range(3):
            pred.model(x, with_embedding=True)
    pred.predict(samples[: args.batch * 2])
    t_pipe = t_bare = 0.0
    reps = 2
    for _ in range(reps):
        t0 = time.perf_counter()
        pred.predict(samples)
        sync()
        t_pipe += time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():
            for _ in range((len(samples) + args.batch - 1) // args.batch):
                pred.model(x, with_embedding=True)
        sync()
        t_bare += time.perf_counter() - t0
    n = len(samples) * reps
    print(f"device={torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'} backbone={bb} input={size} "
          f"heatmap={hs} batch={args.batch} workers={workers}")
    print(f"predict_frames_per_s={n / t_pipe:.1f} bare_forward_frames_per_s={n / t_bare:.1f}")
    print(f"infer_ratio={t_bare / t_pipe:.3f}")


if __name__ == "__main__":
    main()
