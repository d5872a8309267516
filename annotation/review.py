"""Review tasks (`iterate audit --push`): labels the audit flagged go back to the annotators.

They live in a Label Studio project of their own (``<project title> — review``, recorded in the ledger like the
labeling project), so a frame labeled in the loop can be reviewed without a second task in its labeling project.
Each task shows why it was flagged (a header over the image) and carries two predictions: the *current label*
(``model_version`` ``current-label``, the one the editor loads: what the annotator corrects) and the *model's*
keypoints (``model``, to compare). What the annotator submits comes back through `sync-labels`
(:mod:`annotation.sync`): unchanged, the label version is confirmed (the audit does not flag it again); changed, it
is a new label version with source ``review`` — the old one stays in the history.

A frame already under review (its task pending) is not pushed again; one reviewed before whose label changed
since gets a new task in place of the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotation.client import Studio
from annotation.labeling import label_config, to_result
from annotation.push import _ensure_storage, pushed_data
from annotation.settings import LabelingSetup
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger

LABEL_VERSION, MODEL_VERSION = "current-label", "model"


def _key(cfg: LabelingSetup) -> str:
    return f"ls_review_project:{cfg.label_studio.url.rstrip('/')}"


def review_project_id(cfg: LabelingSetup, ledger: Ledger) -> int | None:
    return ledger.get(_key(cfg))


def review_title(cfg: LabelingSetup) -> str:
    return f"{cfg.label_studio.project_title} — review"


def review_config(cfg: LabelingSetup) -> str:
    """The labeling config with the reason for the review shown above the image (task field ``reason``)."""
    xml = label_config(cfg)
    return xml.replace("<View>\n", '<View>\n  <Header value="Why this label is checked: $reason"/>\n', 1)


def ensure_review_project(cfg: LabelingSetup, ledger: Ledger, studio: Studio) -> int:
    xml = review_config(cfg)
    pid = review_project_id(cfg, ledger)
    proj = studio.project(pid) if pid else None
    if proj is None:
        same = [p for p in studio.projects() if p.get("title") == review_title(cfg)]
        proj = same[0] if same else studio.create_project(review_title(cfg), xml)
        pid = int(proj["id"])
        with ledger.transaction():
            ledger.set(_key(cfg), pid)
    if proj.get("label_config", "").strip() != xml.strip():
        studio.update_project(pid, label_config=xml)
    return int(pid)


@dataclass
class ReviewItem:
    """One frame to review: its current label version and why it was flagged."""

    frame: object  # iterate.core.ledger.Frame
    label: object  # iterate.core.ledger.Label (the version under review)
    reason: str
    model: np.ndarray | None = None  # (K, 3) the model's keypoints (x, y, confidence); None: none


@dataclass
class ReviewPushSummary:
    project_id: int
    pushed: int = 0
    already: int = 0  # under review: a pending task holds it
    replaced: int = 0  # reviewed before, its label changed since: a new task in place of the old
    refused: list[str] = field(default_factory=list)


def _prediction(cfg: LabelingSetup, frame, kps, version: str, scores=None, attributes=None) -> dict:
    result = to_result(cfg, kps, frame.width, frame.height, attributes, origin="prediction", scores=scores)
    return {"model_version": version, "score": 1.0, "result": result}


def _strata(cfg: LabelingSetup, attrs: dict) -> dict:
    """The label's strata the config can show (a value outside the manifest's choices is left for the annotator)."""
    return {k: v for k, v in (attrs or {}).items() if v in cfg.strata.get(k, ())}


def _adopt(ledger: Ledger, studio: Studio, pid: int, items: list[ReviewItem]) -> None:
    """A push cut off between the server's import and the ledger write: a server task the ledger does not know that
    holds exactly this frame's review of this label version is recorded instead of imported again."""
    known_ids = {t for t, _ in ledger.project_task_rows(pid).values()}
    want = {it.frame.id: it for it in items}
    have = ledger.project_task_rows(pid)
    found = {}
    for t in studio.tasks(pid, fields="task_only"):
        d = t.get("data") if isinstance(t.get("data"), dict) else {}
        it = want.get(d.get("frame_id"))
        if t["id"] in known_ids or it is None or it.frame.id in have or it.frame.id in found:
            continue
        if d.get("label_version") == it.label.version:
            found[it.frame.id] = (t["id"], [list(map(float, k)) for k in it.label.keypoints])
    if found:
        with ledger.transaction():
            for fid, (tid, kps) in found.items():
                ledger.add_task(fid, pid, tid, prediction=kps)


def _review_predictions(cfg: LabelingSetup, it: ReviewItem) -> list[dict]:
    """The task's predictions: the label under review (with its strata), and the model's keypoints when given (a
    joint it does not predict left unplaced, one slightly off the frame placed on its edge)."""
    f, lab = it.frame, it.label
    preds = [_prediction(cfg, f, lab.keypoints, LABEL_VERSION, attributes=_strata(cfg, lab.attributes))]
    if it.model is not None:
        m = np.asarray(it.model, np.float64)
        ok = np.isfinite(m[:, :2]).all(1)
        xy = np.clip(np.nan_to_num(m[:, :2]), 0, [f.width - 1, f.height - 1])
        k3 = [[float(x), float(y), 2 if o else 0] for (x, y), o in zip(xy, ok)]
        preds.append(_prediction(cfg, f, k3, MODEL_VERSION, scores=np.nan_to_num(m[:, 2])))
    return preds


def _import_reviews(
    cfg: LabelingSetup,
    ledger: Ledger,
    studio: Studio,
    pid: int,
    todo: list[dict],
    meta: list[tuple],
    s: ReviewPushSummary,
) -> None:
    """Import the review tasks in batches; each task id recorded as it comes (in place of a frame's earlier review
    task when it had one)."""
    bs = cfg.label_studio.batch_size
    for i in range(0, len(todo), bs):
        batch, info = todo[i : i + bs], meta[i : i + bs]
        ids = studio.import_tasks(pid, batch)
        if len(ids) != len(batch):
            raise IterateError(f"import returned {len(ids)} task ids for {len(batch)} review tasks; re-run to finish")
        with ledger.transaction():
            for (fid, kps, again), tid in zip(info, ids):
                if again:
                    ledger.replace_task(fid, pid, tid, prediction=kps)
                    s.replaced += 1
                else:
                    ledger.add_task(fid, pid, tid, prediction=kps)
        s.pushed += len(batch)


def push_reviews(cfg: LabelingSetup, ledger: Ledger, studio: Studio, items: list[ReviewItem]) -> ReviewPushSummary:
    """One review task per flagged frame (see the module docstring)."""
    from label_studio_sdk.label_interface import LabelInterface

    pid = ensure_review_project(cfg, ledger, studio)
    s = ReviewPushSummary(pid)
    iface = LabelInterface(review_config(cfg))
    _adopt(ledger, studio, pid, items)
    known = ledger.project_task_rows(pid)
    todo, meta, folders = [], [], set()
    for it in items:
        f, lab = it.frame, it.label
        row = known.get(f.id)
        if row is not None and row[1] == "pending":
            s.already += 1
            continue
        if row is not None and lab.reviewed_at is not None:
            s.already += 1  # confirmed since its task: nothing new to ask
            continue
        if not Path(f.path).is_file():
            s.refused.append(f"{f.path}: image file missing; refused before sending")
            continue
        try:
            data = pushed_data(cfg, f) | {"reason": it.reason, "label_version": lab.version}
        except IterateError as e:
            s.refused.append(str(e))
            continue
        preds = _review_predictions(cfg, it)
        bad = [e for p in preds for e in iface.validate_prediction(p, return_errors=True)]
        if bad:
            s.refused.append(
                f"{f.path}: review task does not fit the labeling config ({'; '.join(map(str, bad))[:200]})"
            )
            continue
        todo.append({"data": data, "predictions": preds})
        meta.append((f.id, [list(map(float, k)) for k in lab.keypoints], row is not None))
        folders.add(Path(f.path).resolve().parent)
    if todo:
        _ensure_storage(cfg, studio, pid, folders)
    _import_reviews(cfg, ledger, studio, pid, todo, meta, s)
    if s.pushed:  # once predictions of that version exist: the editor opens on the current label
        studio.update_project(pid, model_version=LABEL_VERSION)
    return s
