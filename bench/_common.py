"""Shared by every bench script: LSPET samples from ../shared/data (read-only), the repo manifest, the bare
network's speed on this machine, and ``bench/results/<name>.json`` (figures, commit, command, cores, speed).

Every script prints its figures as its last lines, ``name=value``, and writes them to its results file.

Every script also has a smoke mode (``--smoke``: tiny sizes, seconds, :func:`smoke`), which
`tests/test_bench_smoke.py` runs so that a bench cannot rot unseen: its results go where ``ITERATE_BENCH_RESULTS``
points, else into a fresh temporary folder, never into ``bench/results`` (nor a release tool's into
``model/weights``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from iterate.core.metric_keys import PCKH01, PCKH05

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ITERATE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
LSPET = SHARED / "lspet"
RESULTS = Path(os.environ.get("ITERATE_BENCH_RESULTS", REPO / "bench" / "results"))  # tests point it elsewhere
SMOKE = False  # set by smoke(): shorter speed yardstick, results never in bench/results


def smoke() -> Path:
    """Enter smoke mode (a script's ``--smoke``) → the results folder: ``ITERATE_BENCH_RESULTS``, else a fresh
    temporary folder (never ``bench/results``). Scripts read it from here, not from an imported ``RESULTS``."""
    global RESULTS, SMOKE
    SMOKE = True
    if "ITERATE_BENCH_RESULTS" not in os.environ:
        RESULTS = Path(tempfile.mkdtemp(prefix="iterate-bench-smoke-"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"smoke mode: results in {RESULTS}", flush=True)
    return RESULTS


def manifest(overrides: list[str] | None = None):
    """The repo manifest; ``overrides`` like ``model.heatmap_size=64`` or ``train.augment.rotate_deg=40`` (values
    read as YAML) change fields, validated like the file."""

    from iterate.core.manifest import Manifest, load_manifest

    m = load_manifest(REPO / "data_manifest.yaml")
    if not overrides:
        return m
    out = Manifest.model_validate(apply_overrides(m.model_dump(), overrides))
    out.root = m.root
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=value`` overrides (values read as YAML) applied in place to a manifest's data."""
    import yaml

    for o in overrides:
        key, _, value = o.partition("=")
        node = data
        *path, last = key.strip().split(".")
        for k in path:
            node = node[k]
        if last not in node:
            raise SystemExit(f"--set {o}: no field {key}")
        node[last] = yaml.safe_load(value)
    return data


def lspet_samples(first: int, last: int) -> list:
    """LSPET images ``first``..``last`` (ids) as labeled samples, in id order."""
    from model.data import Sample

    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    ims = {i["id"]: i for i in coco["images"]}
    out = []
    for a in sorted(coco["annotations"], key=lambda a: a["image_id"]):
        if first <= a["image_id"] <= last:
            out.append(
                Sample(
                    str(LSPET / ims[a["image_id"]]["file_name"]),
                    np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3),
                    str(a["image_id"]),
                )
            )
    return out


def per_posture(spec, pred: np.ndarray, samples: list) -> dict:
    """PCKh@0.5 / @0.1 of predictions (N, K, 2) on LSPET ``samples`` per `posture` attribute of their labels."""
    from iterate.loop.scoring import score

    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    posture = {a["image_id"]: a.get("attributes", {}).get("posture", "unknown") for a in coco["annotations"]}
    out = {}
    for p in sorted({posture[int(s.frame_id)] for s in samples}):
        idx = [i for i, s in enumerate(samples) if posture[int(s.frame_id)] == p]
        sp = score(spec, pred[idx], [samples[i] for i in idx])
        out[p] = {"frames": len(idx), "pckh05": sp[PCKH05], "pckh01": sp[PCKH01]}
    return out


def slim_checkpoint(ck: dict, state: dict) -> dict:
    """A shipped base: the checkpoint's architecture fields and ``state`` in half precision (half the size)."""
    slim = {k: ck[k] for k in ("format", "joints", "backbone", "input_size", "heatmap_size", "sigma")}
    slim["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    return slim


def bare_forward_speed(
    backbone: str = "hrnet_w18_small",
    size: int = 128,
    joints: int = 14,
    batch: int = 8,
    seconds: float | None = None,
) -> float:
    """Images/s of the bare network's forward pass (batch 8, channels_last, inference mode) on this machine:
    the yardstick every results file carries, so figures from machines of different speed can be compared.
    ``seconds`` defaults to 3; in smoke mode 0.2, at batch 2 after one warm-up batch (a figure of no meaning)."""
    import torch

    if seconds is None:
        seconds = 0.2 if SMOKE else 3.0
    if SMOKE:
        batch = min(batch, 2)
    from model.hrnet import build_model

    net = build_model(backbone, joints, size, size // 4).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(1 if SMOKE else 2):
            net(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            net(x)
            n += batch
    return round(n / (time.perf_counter() - t0), 1)


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def write_result(name: str, figures: dict, details: dict | None = None, *, speed: float | None = None) -> Path:
    """Print ``figures`` as the last ``name=value`` lines and write ``bench/results/<name>.json`` (the results
    folder: ``ITERATE_BENCH_RESULTS``, or in smoke mode a temporary one)."""
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    rec = {
        "name": name,
        "figures": figures,
        "details": details or {},
        "commit": _commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "bare_forward_images_per_s": speed if speed is not None else bare_forward_speed(),
        "bare_forward_setting": "hrnet_w18_small 128², batch 8, forward only",
        "written_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(rec, indent=1, default=float) + "\n")
    for k, v in figures.items():
        print(f"{k}={v}")
    return path
