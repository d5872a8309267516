"""The one place ledger rows become samples for the model: a frame to predict on (with its person box, where its
source gives person boxes) and a label to train or score on (keypoints, strata, head box, person box)."""

from __future__ import annotations

import hashlib

import numpy as np

from iterate.core.ledger import Frame, Label, Ledger, PersonBox
from model.data import Sample

__all__ = ["frame_samples", "label_sample", "labeled_samples", "boxes_stamp"]


def boxes_stamp(ledger: Ledger) -> dict:
    """What a prediction cache adds to its key so that it is recomputed when the person boxes change: ``{}`` for a
    ledger without person boxes (a cache written before them stays valid), else ``{"boxes": digest}``."""
    boxes = ledger.person_boxes()
    if not boxes:
        return {}
    h = hashlib.sha1()
    for fid, b in boxes.items():
        h.update(f"{fid}:{b.box}:{b.people};".encode())
    return {"boxes": h.hexdigest()}


def _box(b: PersonBox | None) -> tuple[float, float, float, float] | None:
    return None if b is None or b.box is None else tuple(b.box)


def frame_samples(ledger: Ledger, frames: list[Frame]) -> list[Sample]:
    """Frames to predict on: the pose pass crops on a frame's person box where its source gives one."""
    boxes = ledger.person_boxes()
    return [Sample(f.path, None, f.id, person_box=_box(boxes.get(f.id))) for f in frames]


def labeled_samples(
    ledger: Ledger, splits: tuple[str, ...], *, source: str | None = None, not_source: str | None = None
) -> list[Sample]:
    """Current labels of the first person in each frame of ``splits`` (top-down), with their attributes (strata),
    head box and person box; only frames of ``source`` / not of ``not_source`` when given."""
    boxes = ledger.person_boxes()
    out = []
    for f, lab in ledger.current_labels(splits):
        if (source is not None and f.source != source) or (not_source is not None and f.source == not_source):
            continue
        if lab.instance == 0:
            out.append(label_sample(f, lab, boxes.get(f.id)))
    return out


def label_sample(f: Frame, lab: Label, box: PersonBox | None = None) -> Sample:
    """One ledger label as a training/scoring sample: keypoints, attributes (strata), head box, person box."""
    return Sample(
        f.path,
        np.asarray(lab.keypoints, dtype=np.float64).reshape(-1, 3),
        f.id,
        dict(lab.attributes),
        tuple(lab.head_box) if lab.head_box else None,
        _box(box),
    )
