"""Samples/s of a full training step with the real data pipeline (read, augment, encode, collate, forward,
backward, AdamW) vs a bare forward+backward of the same net on the same batch shape, as a ratio.

    python bench/speed/train_throughput.py [--steps 40] [--backbone B --input N --heatmap N --batch N] [--smoke]
Last line: train_step_ratio=…
``--smoke`` (the test suite's check): 4 steps of 2 on 8 frames, no loader workers; also writes
train_throughput_smoke.json into the results folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from model.codec import DarkCodec  # noqa: E402
from model.data import PoseDataset, collate  # noqa: E402
from model.hrnet import build_model  # noqa: E402
from model.train import heatmap_loss  # noqa: E402

import _common  # noqa: E402
from _common import lspet_samples, manifest, write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--input", type=int, default=None)
    ap.add_argument("--heatmap", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--smoke", action="store_true", help="4 steps of 2 on 8 frames: the test suite's check")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.steps, args.batch = 4, args.batch or 2
    m = manifest()
    bb = args.backbone or m.model.backbone
    size = args.input or m.model.input_size
    hs = args.heatmap or m.model.heatmap_size
    bs = args.batch or m.train.batch_size
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count() or 1)
    model = build_model(bb, m.keypoints.num_joints, size, hs).to(dev).to(memory_format=torch.channels_last)
    torch.nn.init.normal_(model.final_layer.weight, std=0.01)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    codec = DarkCodec(size, hs, m.model.sigma)
    ds = PoseDataset(
        lspet_samples(1, 8 if args.smoke else 2000),
        codec,
        flip_index=m.keypoints.flip_index(),
        joint_weights=m.keypoints.joint_weights(),
        train=True,
        augment=m.train.augment,
        up_joints=m.keypoints.spec().up_joints(),
        person_box_p=m.train.augment.person_box,
    )
    workers = 0 if args.smoke else m.train.workers if dev.type == "cpu" else 8
    loader = DataLoader(
        ds,
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=dev.type == "cuda",
        persistent_workers=workers > 0,
    )
    x = torch.randn(bs, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.rand(bs, m.keypoints.num_joints, hs, hs, device=dev)
    w = torch.ones(bs, m.keypoints.num_joints, device=dev)

    def step(xb, yb, wb):
        loss = heatmap_loss(model(xb), yb, wb, 1000.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model.train()
    for _ in range(3):
        step(x, y, w)
    sync()
    it = iter(loader)
    next(it)
    # alternate pipeline and bare measurements so that machine noise hits both alike
    t_pipe = t_bare = 0.0
    n_pipe = n_bare = 0
    for _rep in range(4):
        t0 = time.perf_counter()
        for _ in range(args.steps // 4):
            try:
                b = next(it)
            except StopIteration:
                it = iter(loader)
                b = next(it)
            step(
                b["image"].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last),
                b["heatmaps"].to(dev, non_blocking=True),
                b["weights"].to(dev, non_blocking=True),
            )
        sync()
        t_pipe += time.perf_counter() - t0
        n_pipe += (args.steps // 4) * bs
        t0 = time.perf_counter()
        for _ in range(args.steps // 4):
            step(x, y, w)
        sync()
        t_bare += time.perf_counter() - t0
        n_bare += (args.steps // 4) * bs
    pipe, bare = n_pipe / t_pipe, n_bare / t_bare
    print(
        f"device={torch.cuda.get_device_name() if dev.type == 'cuda' else 'cpu'} backbone={bb} input={size} "
        f"heatmap={hs} batch={bs} workers={workers}"
    )
    print(f"pipeline_samples_per_s={pipe:.1f} bare_samples_per_s={bare:.1f}")
    if not args.smoke:
        print(f"train_step_ratio={pipe / bare:.3f}")
        return
    write_result(
        "train_throughput_smoke",
        {"train_step_ratio": round(pipe / bare, 3)},
        {
            "pipeline_samples_per_s": round(pipe, 1),
            "bare_samples_per_s": round(bare, 1),
            "batch": bs,
            "steps": args.steps,
        },
    )


if __name__ == "__main__":
    main()
