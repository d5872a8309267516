"""The in-loop control, gathered from the ledger: once a round's labels are back, the model that selected the
round scores its newly labeled frames (the pre-annotation path, before retraining), picked vs explored
(:func:`reports.control.selection_control`). Stored per round in the ledger; recomputed only when labels change."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
from iterate.core.metric_keys import upgrade
from iterate.loop.models import model_name, round_model
from iterate.loop.samples import boxes_stamp, label_sample
from iterate.loop.settings import keypoint_spec
from iterate.selection.strategies import EXPLORE_TAG
from model.evaluate import gt_arrays, head_boxes
from model.infer import load_predictor
from reports.control import selection_control


def _key(round_id: int) -> str:
    return f"control:round-{round_id}"


def round_control(m: Manifest, ledger: Ledger, round_id: int, labeled: dict | None = None) -> dict | None:
    """The control of one round (None: no model selected it, its checkpoint is gone, or nothing is labeled yet).
    ``labeled``: frame id → (frame, current label), from :func:`_labeled` (read once for many rounds)."""
    model = round_model(ledger, round_id)
    if model is None or not Path(model.path).is_file():
        return None
    labeled = _labeled(ledger) if labeled is None else labeled
    rows = [
        (*labeled[fid], info.get("why") == EXPLORE_TAG) for fid, info in ledger.round_frames(round_id) if fid in labeled
    ]
    if not rows:
        return None
    key = [[f.id, lab.version] for f, lab, _ in rows]
    cached = upgrade(ledger.get(_key(round_id)))  # a control stored with older metric names reads as today's
    digest = boxes_stamp(ledger).get("boxes")
    if cached and cached.get("labels") == key and cached.get("checkpoint") == model.path:
        if cached.get("boxes") == digest:
            return cached
    boxes = ledger.person_boxes()
    samples = [label_sample(f, lab, boxes.get(f.id)) for f, lab, _ in rows]
    pred = load_predictor(model.path, joints=m.keypoints.names).predict(samples)
    gt, vis = gt_arrays(samples)
    res = selection_control(
        keypoint_spec(m), pred.keypoints, gt, vis, head_boxes(samples), np.array([e for *_, e in rows])
    )
    res |= {"round": round_id, "model": model_name(model), "checkpoint": model.path, "labels": key, "boxes": digest}
    with ledger.transaction():
        ledger.set(_key(round_id), res)
    return res


def _labeled(ledger: Ledger) -> dict:
    """frame id → (frame, current label of its first person): one ledger read."""
    return {f.id: (f, lab) for f, lab in ledger.current_labels() if lab.instance == 0}


def update_controls(m: Manifest, ledger: Ledger) -> list[dict]:
    """After `sync-labels`: the control of every round that a model selected (cheap when nothing changed)."""
    out = []
    labeled = _labeled(ledger)
    for r in ledger.rounds():
        if r.strategy == "random":
            continue
        c = round_control(m, ledger, r.id, labeled)
        if c is not None:
            out.append(c)
    return out


def latest_control(ledger: Ledger) -> dict | None:
    """The stored control of the most recent round that has one."""
    for r in reversed(ledger.rounds()):
        c = ledger.get(_key(r.id))
        if c:
            return upgrade(c)
    return None
