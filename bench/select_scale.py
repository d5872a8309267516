"""Selecting 500 frames from 1,000,000 cached embeddings (float16 on disk, as `select` caches them): the
rank combination of three scores over the whole pool, k-center greedy among the top candidates, seeded with
10,000 labeled embeddings. Measures wall time and peak memory (ru_maxrss) of the selection step.

Last lines: select_1m_s=…, select_1m_peak_gib=…
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from iterate.select import choose
from iterate.selection import scores as sc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=240)  # hrnet_w18_small's pooled embedding
    ap.add_argument("--budget", type=int, default=500)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "emb.npy"
        emb = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(args.n, args.dim))
        for i in range(0, args.n, 100_000):
            emb[i:i + 100_000] = rng.normal(size=(min(100_000, args.n - i), args.dim)).astype(np.float16)
        emb.flush()
        del emb
        scores = {k: rng.random(args.n).astype(np.float32) for k in sc.NAMES}
        seeds = rng.normal(size=(10_000, args.dim)).astype(np.float32)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        emb = np.load(path, mmap_mode="r")
        combined = sc.combine(scores, {"confidence": 1.0, "flip": 1.0, "entropy": 1.0})
        rows, _, _ = choose("diversity", args.budget, args.n, combined=combined, emb=emb, seeds=seeds, blocked=None,
                            strata=None, focus=None, explore=0.1, rng=rng)
        dt = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(set(rows)) == args.budget
    print(f"pool={args.n} dim={args.dim} budget={args.budget} rss_before_gib={base / 2**20:.2f}")
    print(f"select_1m_s={dt:.2f}")
    print(f"select_1m_peak_gib={peak / 2**20:.2f}")


if __name__ == "__main__":
    main()
