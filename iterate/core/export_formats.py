"""The dataset formats `iterate export` writes, as pure writers: no ledger, no manifest (issue 32).

* :class:`VersionHash` — a dataset version's content hash: sha256 over the joint schema and each member's frame
  id, split, image hash and label (person, version, and the keypoints, boxes and strata as stored), in (frame id,
  instance) order.
* :class:`CocoFile` — one COCO keypoints file written as it goes: the images entries into the file, the
  annotations into a spool beside it, joined at :meth:`CocoFile.close` (memory flat in the number of frames).
* :class:`DlcCsv` — a DeepLabCut ``CollectedData_<scorer>.csv`` (single animal; the 3-column row index
  ``labeled-data, folder, file`` DeepLabCut 2.2+ writes and ``convertcsv2h5`` reads).
* :func:`mmpose_dataset_info` — the ``dataset_info`` MMPose 1.x reads (``metainfo=dict(from_file=…)``).

Every number is written with Python's ``repr`` (the shortest text that reads back as the same float), so a
coordinate survives export and import unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pprint
from pathlib import Path
from typing import Any

__all__ = [
    "CocoFile",
    "DlcCsv",
    "VersionHash",
    "canonical",
    "coco_categories",
    "dlc_config",
    "joints_box",
    "mmpose_dataset_info",
    "sigma_for",
]


def canonical(obj: Any) -> str:
    """JSON text that depends only on the value: sorted keys, no spaces, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class VersionHash:
    """The content hash of a dataset version. Feed :meth:`add` the members in (frame id, instance) order."""

    def __init__(self, schema: dict):
        self._h = hashlib.sha256(("iterate dataset v1\n" + canonical(schema) + "\n").encode())
        self.n_labels = 0
        self.n_frames = 0
        self._last: str | None = None

    def add(self, frame_id: str, split: str, image_hash: str, instance: int, version: int, *texts: str | None) -> None:
        """One member: its frame, split, image hash, person and label version, then its keypoints, bbox, head box
        and strata as the JSON text the ledger stores (written once, never changed)."""
        line = "\t".join((frame_id, split, image_hash, str(instance), str(version), *(t or "" for t in texts)))
        self._h.update(line.encode() + b"\n")
        self.n_labels += 1
        if frame_id != self._last:
            self.n_frames += 1
            self._last = frame_id

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def joints_box(keypoints: list[list[float]]) -> list[float] | None:
    """The labeled joints' tight box [x, y, w, h] (no margin, as LSPET's and COCO's person boxes), or None."""
    pts = [(x, y) for x, y, v in keypoints if v > 0]
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


# -- COCO keypoints ------------------------------------------------------------------------------------------
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


def _line(obj: Any) -> str:
    return _ENCODER.encode(obj)


class CocoFile:
    """A COCO keypoints file written entry by entry: ``{"info", "images": [...], "annotations": [...],
    "categories"}``, one entry a line. Ids are 1, 2, … in the order entries are added."""

    def __init__(self, path: Path, info: dict, categories: list[dict]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spool_path = self.path.with_name(f".{self.path.name}.annotations")
        self._f = open(self.path, "w", encoding="utf-8")
        self._spool = open(self._spool_path, "w", encoding="utf-8")
        self._categories = categories
        self.images = 0
        self.annotations = 0
        self._f.write('{"info": ' + _line(info) + ',\n"images": [')

    def add_image(self, entry: dict) -> int:
        """Write an ``images`` entry (its ``id`` is given here) → the id."""
        self.images += 1
        self._f.write(("\n" if self.images == 1 else ",\n") + _line({"id": self.images, **entry}))
        return self.images

    def add_annotation(self, image_id: int, entry: dict) -> int:
        self.annotations += 1
        row = {"id": self.annotations, "image_id": image_id, "category_id": 1, **entry}
        self._spool.write(("\n" if self.annotations == 1 else ",\n") + _line(row))
        return self.annotations

    def close(self) -> None:
        self._spool.close()
        self._f.write("\n],\n" if self.images else "],\n")
        self._f.write('"annotations": [')
        with open(self._spool_path, encoding="utf-8") as spool:
            while block := spool.read(1 << 20):
                self._f.write(block)
        self._f.write(("\n" if self.annotations else "") + "],\n")
        self._f.write('"categories": ' + _line(self._categories) + "\n}\n")
        self._f.close()
        os.unlink(self._spool_path)

    def abort(self) -> None:
        for fh in (self._f, self._spool):
            fh.close()
        for p in (self.path, self._spool_path):
            p.unlink(missing_ok=True)


def coco_categories(names: list[str], skeleton: list[list[str]], flip_pairs: list[list[str]]) -> list[dict]:
    """The one ``person`` category: joint names, the skeleton as 1-based joint numbers (COCO's convention) and the
    left/right pairs by name (``flip_pairs``, an iterate field COCO readers ignore)."""
    index = {n: i + 1 for i, n in enumerate(names)}
    return [
        {
            "id": 1,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(names),
            "skeleton": [[index[a], index[b]] for a, b in skeleton],
            "flip_pairs": [list(p) for p in flip_pairs],
        }
    ]


# -- DeepLabCut ----------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return repr(float(x))


class DlcCsv:
    """``labeled-data/<folder>/CollectedData_<scorer>.csv`` of a single-animal DeepLabCut project: rows
    ``labeled-data,<folder>,<file>,x,y,…`` in bodypart order; a joint not labeled is two empty cells. DeepLabCut
    stores no visibility: every labeled point reads back as visible."""

    def __init__(self, path: Path, scorer: str, bodyparts: list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        self.rows = 0
        n = len(bodyparts)
        for head, cells in (
            ("scorer", [scorer] * 2 * n),
            ("bodyparts", [b for b in bodyparts for _ in (0, 1)]),
            ("coords", ["x", "y"] * n),
        ):
            self._write([head, "", "", *cells])

    @classmethod
    def plain(cls, path: Path, header: list[str]) -> DlcCsv:
        """A plain CSV with one header row (``row`` adds rows), written the same way."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self._f = open(self.path, "w", encoding="utf-8", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        self.rows = 0
        self._write(header)
        return self

    def _write(self, cells: list[str]) -> None:
        self._w.writerow(cells)

    def row(self, cells: list[str]) -> None:
        self._write(cells)
        self.rows += 1

    def add(self, folder: str, file: str, keypoints: list[list[float]]) -> None:
        cells = []
        for x, y, v in keypoints:
            cells += [_num(x), _num(y)] if v > 0 else ["", ""]
        self._write(["labeled-data", folder, file, *cells])
        self.rows += 1

    def close(self) -> None:
        self._f.close()


def dlc_config(
    *, task: str, scorer: str, date: str, bodyparts: list[str], skeleton: list[list[str]], folders: dict
) -> str:
    """A DeepLabCut ``config.yaml`` for the exported folders (``folders``: name → (width, height) of its largest
    frame): ``video_sets`` names one video per folder (DeepLabCut finds ``labeled-data/<video stem>``), and
    ``project_path`` is left for DeepLabCut's ``read_config`` to set to the folder it opens."""
    import yaml

    cfg = {
        "Task": task,
        "scorer": scorer,
        "date": date,
        "multianimalproject": False,
        "identity": None,
        "project_path": ".",
        "video_sets": {f"videos/{name}.mp4": {"crop": f"0, {w}, 0, {h}"} for name, (w, h) in sorted(folders.items())},
        "bodyparts": list(bodyparts),
        "start": 0,
        "stop": 1,
        "numframes2pick": 20,
        "skeleton": [list(e) for e in skeleton],
        "skeleton_color": "black",
        "pcutoff": 0.6,
        "dotsize": 12,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [0.95],
        "iteration": 0,
        "default_net_type": "resnet_50",
        "default_augmenter": "default",
        "snapshotindex": -1,
        "batch_size": 8,
        "cropping": False,
        "x1": 0,
        "x2": 640,
        "y1": 277,
        "y2": 624,
        "corner2move2": [50, 50],
        "move2corner": True,
    }
    head = (
        "# DeepLabCut project written by `iterate export --format dlc`; project_path is set by DeepLabCut's\n"
        "# read_config to this folder when it opens the project. Make the .h5 it trains from with\n"
        "# deeplabcut.convertcsv2h5('config.yaml', userfeedback=False).\n"
    )
    return head + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


# -- MMPose --------------------------------------------------------------------------------------------------
# OKS sigmas by joint name. COCO's 17 are cocoapi's (pycocotools/cocoeval.py, kpt_oks_sigmas); the head top and
# neck are the ones MMPose's CrowdPose meta (configs/_base_/datasets/crowdpose.py) gives the two joints it adds to
# COCO's (top_head, neck); a joint neither names has no published figure and takes the same 0.079.
_COCO_SIGMAS = {
    "nose": 0.026,
    "left_eye": 0.025,
    "right_eye": 0.025,
    "left_ear": 0.035,
    "right_ear": 0.035,
    "left_shoulder": 0.079,
    "right_shoulder": 0.079,
    "left_elbow": 0.072,
    "right_elbow": 0.072,
    "left_wrist": 0.062,
    "right_wrist": 0.062,
    "left_hip": 0.107,
    "right_hip": 0.107,
    "left_knee": 0.087,
    "right_knee": 0.087,
    "left_ankle": 0.089,
    "right_ankle": 0.089,
}
_CROWDPOSE_SIGMAS = {"head_top": 0.079, "top_head": 0.079, "neck": 0.079}
DEFAULT_SIGMA = 0.079


def sigma_for(name: str) -> tuple[float, str]:
    """(OKS sigma, where it comes from) for a joint name."""
    if name in _COCO_SIGMAS:
        return _COCO_SIGMAS[name], "COCO (cocoapi kpt_oks_sigmas)"
    if name in _CROWDPOSE_SIGMAS:
        return _CROWDPOSE_SIGMAS[name], "CrowdPose's (MMPose crowdpose.py)"
    return DEFAULT_SIGMA, "no published value: the default 0.079 — measure your annotators' spread and replace it"


_LOWER = ("hip", "knee", "ankle", "foot", "heel", "toe", "pelvis")


def _side(name: str) -> str:
    n = name.lower()
    return "left" if n.startswith(("left", "l_")) else "right" if n.startswith(("right", "r_")) else ""


def mmpose_dataset_info(
    dataset_name: str, names: list[str], flip_pairs: list[list[str]], skeleton: list[list[str]], weights: list[float]
) -> str:
    """The text of ``dataset_info.py`` for MMPose 1.x (``metainfo=dict(from_file='dataset_info.py')``): each joint
    with its ``swap`` partner (from the flip pairs), upper/lower body ``type`` (hips, knees, ankles and feet are
    lower), a colour; the skeleton links; ``joint_weights`` (the manifest's ``keypoints.weights``) and ``sigmas``
    (:func:`sigma_for`)."""
    swap = {}
    for a, b in flip_pairs:
        swap[a], swap[b] = b, a
    colour = {"left": [0, 255, 0], "right": [255, 128, 0], "": [51, 153, 255]}
    kinfo = {
        i: {
            "name": n,
            "id": i,
            "color": colour[_side(n)],
            "type": "lower" if any(w in n.lower() for w in _LOWER) else "upper",
            "swap": swap.get(n, ""),
        }
        for i, n in enumerate(names)
    }
    sides = {n: _side(n) for n in names}
    sinfo = {
        i: {"link": (a, b), "id": i, "color": colour[sides[a] if sides[a] == sides[b] else ""]}
        for i, (a, b) in enumerate(skeleton)
    }
    info = {
        "dataset_name": dataset_name,
        "paper_info": {"title": f"{dataset_name}: labels curated with iterate", "homepage": ""},
        "keypoint_info": kinfo,
        "skeleton_info": sinfo,
        "joint_weights": [float(w) for w in weights],
        "sigmas": [sigma_for(n)[0] for n in names],
    }
    lines = [
        "# MMPose 1.x dataset meta information written by `iterate export --format mmpose`.",
        "# Load it with metainfo=dict(from_file='<this folder>/dataset_info.py') in a CocoDataset config.",
        "# joint_weights: the manifest's keypoints.weights (default 1). sigmas (OKS): "
        + "; ".join(f"{n} {sigma_for(n)[0]:g} {sigma_for(n)[1]}" for n in names),
        "dataset_info = " + pprint.pformat(info, sort_dicts=False, width=110),
        "",
    ]
    return "\n".join(lines)
