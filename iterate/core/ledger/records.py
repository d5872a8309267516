"""The ledger's typed records: what its methods return for the rows of frames, labels, person boxes, dataset
versions, models and rounds (frozen dataclasses, JSON columns decoded), and the functions that build them from a
row. No SQL here: that is :mod:`iterate.core.ledger`'s alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iterate.core.metric_keys import upgrade

__all__ = ["Frame", "PersonBox", "Label", "DatasetVersion", "DatasetRow", "Model", "Round"]


@dataclass(frozen=True)
class Frame:
    id: str
    path: str
    source: str
    video: str | None
    frame_index: int | None
    width: int
    height: int
    content_hash: str
    phash: int
    split: str


@dataclass(frozen=True)
class PersonBox:
    """A frame's person box from its source's ``person_boxes`` file: the most confident person (x, y, w, h in
    image pixels; None where the detector found no one) and how many people it found."""

    box: tuple[float, float, float, float] | None
    score: float | None
    people: int


@dataclass(frozen=True)
class Label:
    id: int
    frame_id: str
    instance: int
    version: int
    keypoints: list[list[float]]
    bbox: list[float] | None
    attributes: dict[str, Any]
    source: str
    annotator: str | None
    ls_task_id: int | None
    ls_annotation_id: int | None
    created_at: float
    head_box: list[float] | None = None
    lead_time: float | None = None  # seconds the annotator spent (Label Studio's lead_time)
    edits: dict[str, Any] | None = None  # per-joint accounting against the task's pre-annotation (reports/cost.py)
    reviewed_at: float | None = None  # a review task confirmed this version unchanged (`iterate audit --push`)


@dataclass(frozen=True)
class DatasetVersion:
    """A recorded dataset version (vN): a set of label versions, its content hash, and the joint schema and strata
    it exports with (``params``)."""

    id: int
    created_at: float
    made_by: str  # export | retrain
    content_hash: str
    n_frames: int
    n_labels: int
    params: dict[str, Any]


@dataclass(frozen=True)
class DatasetRow:
    """One member of a dataset version with its provenance: the label's selection round (through its Label Studio
    task, as recorded with the version) and whether it replaced an earlier version with other keypoints."""

    frame: Frame
    label: Label
    round_id: int | None
    reviewed: bool


@dataclass(frozen=True)
class Model:
    """A model trained in the loop (``iterate retrain``): its checkpoint, the model it was fine-tuned from, how many
    frames it trained on (``n_train``: the loop's labels and the replayed ones, ``metrics["replay_frames"]``), its
    training config and validation figures, and the dataset version (vN) it was trained on (None: trained before
    versions existed)."""

    id: int
    created_at: float
    path: str
    parent_id: int | None
    n_train: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    dataset_version: int | None = None


@dataclass(frozen=True)
class Round:
    """A selection round (``iterate select``): the chunk it filled, its budget and strategy, the ledger model that
    scored the pool (None: the base checkpoint, named in ``params["base_path"]``, or a cold start) and what select
    recorded with it (``params``: focus, push, scored_by, …). Its frames: :meth:`Ledger.round_frames`."""

    id: int
    created_at: float
    chunk: int
    budget: int
    strategy: str
    model_id: int | None
    params: dict[str, Any]


# -- rows → records (a mapping row of the table; JSON columns are decoded) ----------------------------------


def label_of(row) -> Label:
    return Label(
        id=row["id"],
        frame_id=row["frame_id"],
        instance=row["instance"],
        version=row["version"],
        keypoints=json.loads(row["keypoints"]),
        bbox=json.loads(row["bbox"]) if row["bbox"] else None,
        attributes=json.loads(row["attributes"]),
        source=row["source"],
        annotator=row["annotator"],
        ls_task_id=row["ls_task_id"],
        ls_annotation_id=row["ls_annotation_id"],
        created_at=row["created_at"],
        head_box=json.loads(row["head_box"]) if row["head_box"] else None,
        lead_time=row.get("lead_time"),
        edits=json.loads(row["edits"]) if row.get("edits") else None,
        reviewed_at=row.get("reviewed_at"),
    )


def frame_of(row) -> Frame:
    return Frame(**{k: row[k] for k in Frame.__dataclass_fields__})


def version_of(row) -> DatasetVersion:
    d = dict(row)
    return DatasetVersion(**{**d, "params": json.loads(d["params"])})


def model_of(row) -> Model:
    return Model(
        id=row["id"],
        created_at=row["created_at"],
        path=row["path"],
        parent_id=row["parent_id"],
        n_train=row["n_train"],
        config=upgrade(json.loads(row["config"])),  # its best_metric, and
        metrics=upgrade(json.loads(row["metrics"])),  # its figures: older metric names read under today's
        dataset_version=row.get("dataset_version"),
    )


def round_of(row) -> Round:
    return Round(**{**{k: row[k] for k in Round.__dataclass_fields__}, "params": json.loads(row["params"])})
