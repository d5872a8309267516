"""Shared fixtures: real data from ../shared/data (read-only) and small manifests written into tmp dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ITERATE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
LSPET = SHARED / "lspet"

LSP_NAMES = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
             "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top"]


def pytest_configure(config):
    if not LSPET.is_dir():
        raise pytest.UsageError(f"real test data not found at {SHARED} (set ITERATE_SHARED_DATA)")


@pytest.fixture(scope="session")
def lspet_coco() -> dict:
    return json.loads((LSPET / "annotations.coco.json").read_text())


def lspet_subset(coco: dict, ids: list[int], out: Path) -> Path:
    """Write a COCO file holding LSPET images `ids` (file names stay relative to lspet/)."""
    keep = set(ids)
    sub = {"images": [i for i in coco["images"] if i["id"] in keep],
           "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
           "categories": coco["categories"]}
    out.write_text(json.dumps(sub))
    return out


def lsp_manifest(tmp: Path, sources: list[dict], **over) -> Path:
    """A manifest for the 14 LSP joints in `tmp` with the given sources."""
    repo_manifest = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    m = {**repo_manifest, "project": "test", "workspace": str(tmp / "ws"), "sources": sources, **over}
    path = tmp / "data_manifest.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path
