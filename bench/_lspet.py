"""Shared by the bench scripts: LSPET samples from ../shared/data (read-only) and the repo manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from iterate.manifest import load_manifest
from model.data import Sample

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ITERATE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
LSPET = SHARED / "lspet"


def manifest():
    return load_manifest(REPO / "data_manifest.yaml")


def lspet_samples(first: int, last: int) -> list[Sample]:
    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    ims = {i["id"]: i for i in coco["images"]}
    out = []
    for a in sorted(coco["annotations"], key=lambda a: a["image_id"]):
        if first <= a["image_id"] <= last:
            out.append(Sample(str(LSPET / ims[a["image_id"]]["file_name"]),
                              np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3), str(a["image_id"])))
    return out
