"""The default `full` selection of 500 frames from 1,000,000 cached embeddings, as `iterate select` runs it:
rank-combined uncertainty scores over the whole pool, per-stratum quotas from a report focus, 10 % random
exploration, k-center greedy among each stratum's top candidates seeded with 10,000 labeled embeddings, and
near-duplicate blocking of neighbouring video frames. Embeddings are float16 on disk (memory-mapped), as the
per-model cache keeps them.

Wall time of the selection step (`iterate.selection.strategies.choose`) in one run; its peak memory in a second run under
tracemalloc (allocations of the selection alone, not of the fake cache built beforehand).

    python bench/speed/select_scale.py [--n 1000000] [--smoke]
Last lines: select_1m_full_s=…, select_1m_full_peak_gib=…
``--smoke``: 5,000 frames, 20 picked, 100 seeds (the test suite's check) → select_scale_smoke.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from iterate.selection import (
    diversity,  # noqa: E402
    strategies,  # noqa: E402
)
from iterate.selection import scores as sc  # noqa: E402

import _common  # noqa: E402
from _common import write_result  # noqa: E402

FOCUS = {"key": "posture", "weights": {"upright": 0.1, "leaning": 0.2, "horizontal": 0.3, "inverted": 0.3}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=240)  # hrnet_w18_small's pooled embedding
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--video-frames", type=int, default=1000, help="frames per video (near-duplicate blocking)")
    ap.add_argument("--seeds", type=int, default=10_000, help="labeled embeddings k-center greedy starts from")
    ap.add_argument("--smoke", action="store_true", help="5,000 frames, 20 picked: the test suite's check")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.n, args.budget, args.video_frames, args.seeds = 5000, 20, 100, 100
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "emb.npy"
        emb = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(args.n, args.dim))
        for i in range(0, args.n, 100_000):
            emb[i : i + 100_000] = rng.normal(size=(min(100_000, args.n - i), args.dim)).astype(np.float16)
        emb.flush()
        del emb
        scores = {k: rng.random(args.n).astype(np.float32) for k in sc.NAMES}
        seeds = rng.normal(size=(args.seeds, args.dim)).astype(np.float32)
        postures = np.array(list(FOCUS["weights"]))
        strata = [{"posture": str(p)} for p in postures[rng.integers(0, len(postures), args.n)]]
        videos = [f"video-{i // args.video_frames:05d}.mp4" for i in range(args.n)]
        frame_idx = [i % args.video_frames for i in range(args.n)]
        blocked = diversity.video_neighbours(videos, frame_idx, 15)

        def run() -> list[int]:
            emb = np.load(path, mmap_mode="r")
            combined = sc.combine(scores, {"confidence": 1.0, "flip": 1.0, "entropy": 1.0})
            pool = strategies.Pool(
                args.n,
                np.random.default_rng(1),
                combined=combined,
                emb=emb,
                seeds=seeds,
                blocked=blocked,
                strata=strata,
                focus=FOCUS,
                explore=0.1,
            )
            picked = strategies.choose("full", args.budget, pool)
            return picked.rows, picked.why

        t0 = time.perf_counter()
        rows, why = run()
        dt = time.perf_counter() - t0
        tracemalloc.start()
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert len(set(rows)) == args.budget
    tags: dict[str, int] = {}
    for r in rows:
        tags[why[r]] = tags.get(why[r], 0) + 1
    sel_posture = {p: sum(1 for r in rows if strata[r]["posture"] == p) for p in FOCUS["weights"]}
    print(f"pool={args.n} dim={args.dim} budget={args.budget} picked by: {tags}; per posture: {sel_posture}")
    write_result(
        "select_scale_smoke" if args.smoke else "select_scale",
        {"select_1m_full_s": round(dt, 2), "select_1m_full_peak_gib": round(peak / 2**30, 3)},
        {
            "pool": args.n,
            "dim": args.dim,
            "budget": args.budget,
            "strategy": "full",
            "picked_by": tags,
            "per_posture": sel_posture,
            "seeds": args.seeds,
            "video_frames": args.video_frames,
            "video_gap": 15,
            "peak_measured_by": "tracemalloc around iterate.selection.strategies.choose (second run)",
        },
    )


if __name__ == "__main__":
    main()
