"""Pool scoring across processes: a 20,000-frame pool (LSPET images, each used several times under distinct frame
ids) scored by `iterate select`'s scoring step (`iterate.loop.select.score_pool`: flip TTA on the whole frame,
uncertainty scores, keypoints, embeddings, the per-model cache) with the shipped all-posture base, once in one
process and once under `torchrun --nproc_per_node 2` (each rank scores every second batch, rank 0 merges the
shards). Same machine, same run: the ratio is the figure. Each configuration gets the machine's cores: one process
uses all of them as torch threads, two ranks split them.

    python bench/speed/score_scale.py [--frames 20000] [--smoke]
Last lines: score_1rank_frames_per_s=…, score_2rank_frames_per_s=…, score_2rank_speedup=…
``--smoke``: 8 frames, still one process and two ranks (the test suite's check) → score_scale_smoke.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
import _common  # noqa: E402
from _common import LSPET, REPO, manifest, write_result  # noqa: E402

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"


def _frames(n: int):
    from iterate.core.ledger import Frame

    ims = sorted((LSPET / "images").glob("*.jpg"))[:8000]
    return [Frame(f"f{i:06d}", str(ims[i % len(ims)]), "bench", None, None, 0, 0, f"h{i}", 0, "pool") for i in range(n)]


def worker(n: int, ws: str, out: str) -> None:
    """One configuration: score the pool into a fresh cache under ``ws``; rank 0 writes its wall time to ``out``."""
    from iterate.core.ledger import Ledger, Model
    from iterate.loop.distributed import barrier, rank_world
    from iterate.loop.select import score_pool

    _, rank, world = rank_world()
    m = manifest([f"workspace={ws}", "tracking.mlflow=false"])
    frames = _frames(n)
    led = Ledger(m.workspace_dir)  # the frames' person boxes (none here) are read from the project's ledger
    barrier()
    t0 = time.perf_counter()
    model = Model(id=1, created_at=0.0, path=str(BASE), parent_id=None, n_train=0, config={}, metrics={})
    scored = score_pool(m, led, model, frames)
    led.close()
    if rank == 0:
        dt = time.perf_counter() - t0
        Path(out).write_text(json.dumps({"seconds": dt, "world": world, "scored": int(scored.scored_now)}))


def _run(cmd: list[str], env: dict) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--worker", nargs=2, metavar=("WS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="8 frames: the test suite's check")
    args = ap.parse_args()
    if args.worker:
        worker(args.frames, *args.worker)
        return
    if args.smoke:
        _common.smoke()
        args.frames = 8
    import torch

    cores = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    bindir = Path(sys.executable).parent
    res = {}
    with tempfile.TemporaryDirectory() as d:
        for world in (1, 2):
            ws, out = Path(d) / f"ws{world}", Path(d) / f"out{world}.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // world)), "PYTHONPATH": str(REPO)}
            me = [str(Path(__file__).resolve()), "--frames", str(args.frames), "--worker", str(ws), str(out)]
            if world == 1:
                _run([sys.executable, *me], env)
            else:
                _run([str(bindir / "torchrun"), "--standalone", "--nproc_per_node", str(world), *me], env)
            res[world] = json.loads(out.read_text())
            print(f"{world} rank(s): {res[world]['scored']} frames in {res[world]['seconds']:.1f} s", flush=True)
        c1, c2 = (Path(d) / f"ws{w}" / "cache" / "model-001" for w in (1, 2))
        same_ids = (
            json.loads((c1 / "index.json").read_text())["frame_ids"]
            == json.loads((c2 / "index.json").read_text())["frame_ids"]
        )
        diff = float(np.abs(np.load(c1 / "scores.npy") - np.load(c2 / "scores.npy")).max())
    f1, f2 = (args.frames / res[w]["seconds"] for w in (1, 2))
    write_result(
        "score_scale_smoke" if args.smoke else "score_scale",
        {
            "score_1rank_frames_per_s": round(f1, 1),
            "score_2rank_frames_per_s": round(f2, 1),
            "score_2rank_speedup": round(f2 / f1, 3),
        },
        {
            "frames": args.frames,
            "cores_given": cores,
            "threads_per_rank": {"1": cores, "2": max(1, cores // 2)},
            "same_cache_order": same_ids,
            "max_score_difference": diff,
            "model": str(BASE.relative_to(REPO)),
        },
    )


if __name__ == "__main__":
    main()
