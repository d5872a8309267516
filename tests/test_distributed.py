"""`iterate retrain` under torchrun: 2 CPU processes (gloo) on the tiny net, each rank its shard."""

import os
import subprocess
import sys
from pathlib import Path

from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest

from conftest import LSPET, lsp_manifest, lspet_subset


def _project(tmp, lspet_coco, name):
    tr = lspet_subset(lspet_coco, list(range(7601, 7633)), tmp / "tr.json")
    va = lspet_subset(lspet_coco, list(range(7633, 7641)), tmp / "va.json")
    p = lsp_manifest(
        tmp,
        [
            {"name": "tr", "kind": "coco", "path": str(tr), "images": str(LSPET), "split": "train"},
            {"name": "va", "kind": "coco", "path": str(va), "images": str(LSPET), "split": "val"},
        ],
        train={"epochs": 30, "batch_size": 8, "warmup_steps": 4, "seed": 0},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p, m


def test_ddp_two_processes_match_one_and_write_one_checkpoint(tmp_path, lspet_coco):
    bindir = Path(sys.executable).parent
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    p1, m1 = _project(tmp_path / "one", lspet_coco, "one")
    p2, m2 = _project(tmp_path / "two", lspet_coco, "two")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [str(bindir / "iterate"), "retrain", "-m", str(p1)], capture_output=True, text=True, env=env, timeout=900
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [
            str(bindir / "torchrun"),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "iterate.cli",
            "retrain",
            "-m",
            str(p2),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    with Ledger(m1.workspace_dir) as a, Ledger(m2.workspace_dir) as b:
        one, two = a.models(), b.models()
    assert len(one) == len(two) == 1  # rank 0 alone wrote the ledger
    files = sorted(p.name for p in (m2.workspace_dir / "models").rglob("*") if p.is_file())
    assert files == ["best.pt", "last.pt"]  # one checkpoint set, no per-rank copies
    q1, q2 = one[0]["metrics"], two[0]["metrics"]
    assert q1["steps"] == q2["steps"]  # each rank: half the data at half the batch, the same global steps
    assert q1["train_pckh05"] > 10 and q2["train_pckh05"] > 10  # both learned
    assert abs(q1["train_pckh05"] - q2["train_pckh05"]) < 15, (q1, q2)  # the same quality, within noise
