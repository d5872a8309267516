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
    q1, q2 = one[0].metrics, two[0].metrics
    assert q1["steps"] == q2["steps"]  # each rank: half the data at half the batch, the same global steps
    assert q1["train_pckh@0.5"] > 10 and q2["train_pckh@0.5"] > 10  # both learned
    assert abs(q1["train_pckh@0.5"] - q2["train_pckh@0.5"]) < 15, (q1, q2)  # the same quality, within noise


def test_select_scores_the_pool_in_shards_and_picks_what_one_process_picks(tmp_path, lspet_coco):
    """`torchrun --nproc_per_node 2 -m iterate.cli select`: each gloo rank scores half of the pool, rank 0 merges
    the shards into the score cache, chooses and records the round: the same frames one process picks."""
    import shutil

    import numpy as np
    import yaml

    bindir = Path(sys.executable).parent
    tr = lspet_subset(lspet_coco, list(range(7601, 7617)), tmp_path / "tr.json")
    va = lspet_subset(lspet_coco, list(range(7633, 7641)), tmp_path / "va.json")
    pool = lspet_subset(lspet_coco, list(range(7701, 7781)), tmp_path / "pool.json")
    one = tmp_path / "one"
    one.mkdir()
    p1 = lsp_manifest(
        one,
        [
            {"name": "tr", "kind": "coco", "path": str(tr), "images": str(LSPET), "split": "train"},
            {"name": "va", "kind": "coco", "path": str(va), "images": str(LSPET), "split": "val"},
            {"name": "pool", "kind": "coco", "path": str(pool), "images": str(LSPET), "split": "pool", "labels": False},
        ],
        train={"epochs": 2, "batch_size": 8, "warmup_steps": 1, "seed": 0},
        selection={"dedup_hamming": 0},
        tracking={"mlflow": False},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for args in (["ingest"], ["retrain"]):
        r = subprocess.run([str(bindir / "iterate"), *args, "-m", str(p1)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
    two = tmp_path / "two"  # the same project (same ledger, same model) in a second workspace
    shutil.copytree(one, two)
    doc = yaml.safe_load(p1.read_text())
    doc["workspace"] = str(two / "ws")
    p2 = two / "data_manifest.yaml"
    p2.write_text(yaml.safe_dump(doc, sort_keys=False))
    sel = ["select", "--budget", "8", "--no-push", "--strategy", "uncertainty"]
    r = subprocess.run([str(bindir / "iterate"), *sel, "-m", str(p1)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    torchrun = [str(bindir / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "iterate.cli"]
    r = subprocess.run([*torchrun, *sel, "-m", str(p2)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    assert r.stdout.count("round 1: selected 8 frames") == 1  # rank 0 alone reports (and writes)
    picked = []
    for p in (p1, p2):
        m = load_manifest(p)
        with Ledger(m.workspace_dir) as led:
            assert len(led.rounds()) == 1
            picked.append(led.round_frame_ids(1))
    assert picked[0] == picked[1]
    c1, c2 = (load_manifest(p).workspace_dir / "cache" / "model-001" for p in (p1, p2))
    import json

    assert (
        json.loads((c1 / "index.json").read_text())["frame_ids"]
        == json.loads((c2 / "index.json").read_text())["frame_ids"]
    )
    np.testing.assert_allclose(np.load(c1 / "scores.npy"), np.load(c2 / "scores.npy"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.load(c1 / "kps.npy"), np.load(c2 / "kps.npy"), atol=1e-2)
    assert not (c2 / "shards").exists()
