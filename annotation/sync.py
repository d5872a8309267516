"""`iterate sync-labels`: finished annotations → validated label versions in the ledger.

Incremental: the tasks updated since the last watermark, then a full ``JSON`` export of those ids
(``JSON_MIN`` drops region ids and with them which joint is occluded). Tasks are handled in ``updated_at``
order, one ledger transaction per batch, and the watermark moves only with a committed batch — a sync
cut off anywhere is finished by re-running it; re-processing a task adds nothing (an unchanged label is
not a new version).

Only tasks the ledger pushed are read (their ids were recorded at push); a task anyone else made in the project
is *foreign*: named by id, never adopted, whatever frame its ``data.frame_id`` names. A task changes only a
pool frame's label (train/val/test labels are fixed), and only while its ``data`` is what was pushed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from annotation.client import Studio
from annotation.labeling import BadAnnotation, parse_result
from annotation.push import fixed_split, gone_project, mark_lost, project_id, pushed_data
from annotation.settings import LabelingSetup
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger

_BATCH = 200
_WHOLE_MIN = 1000  # updated tasks from which one whole-project export replaces the exports by ids


def _wm_key(pid: int) -> str:
    return f"ls_watermark:{pid}"


@dataclass
class SyncSummary:
    tasks: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    pending: int = 0
    invalid: list[str] = field(default_factory=list)
    foreign: list[int] = field(default_factory=list)  # ids of tasks this ledger did not push: never read
    waiting: list[str] = field(default_factory=list)  # agreement asked: one annotation so far, not ingested
    lost: list[str] = field(default_factory=list)  # recorded tasks gone from Label Studio (a full sync sees them)
    confirmed: int = 0  # review tasks answered with the label unchanged: confirmed
    corrected: int = 0  # review tasks answered with a change: a new label version (source `review`)
    retired: int = 0  # review tasks of frames retired since: skipped
    stored: list[str] = field(default_factory=list)  # frames given a new label version by this sync


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _disagree(cfg: LabelingSetup, a: list, b: list, diag: float) -> bool:
    for p, q in zip(a, b):
        if (p[2] > 0) != (q[2] > 0):
            return True
        if p[2] > 0 and np.hypot(p[0] - q[0], p[1] - q[1]) > 0.02 * diag:
            return True
    return False


# How a label's joints count against the pre-annotation its task was pushed with: (frame, keypoints [x, y, v] per
# joint, the pushed pre-annotation ([] none)) → the accounting stored with the label version (reports/cost.py,
# passed in by the loop), or None
Account = Callable[[object, list, list], dict | None]


def sync_labels(
    cfg: LabelingSetup,
    ledger: Ledger,
    studio: Studio,
    *,
    full: bool = False,
    progress=None,
    account: Account | None = None,
    review: bool = False,
) -> SyncSummary:
    """``review``: the review project's tasks (`iterate audit --push`) instead of the labeling project's."""
    if review:
        from annotation.review import review_project_id

        pid = review_project_id(cfg, ledger)
        if pid is None:
            return SyncSummary()
    else:
        pid = project_id(cfg, ledger)
    if pid is None:
        raise IterateError("no Label Studio project yet: push frames first (`iterate select` or `iterate push`)")
    kind = REVIEW_TASK if review else LABEL_TASK
    wm = None if full else ledger.get(_wm_key(pid))
    since = (_ts(wm) - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if wm else None
    # many updated tasks: one export of the whole project is far cheaper than one export request per chunk of ids
    # (`bench/speed/ls_roundtrip.py`: sync_over_export); a few among many: list what changed, export just those ids
    whole = None
    proj = studio.project(pid)
    if proj is None:
        raise IterateError(gone_project(cfg, pid))
    total = proj.get("task_number") or 0
    if since is None and total >= _WHOLE_MIN:  # first or full sync of a large project: no listing needed
        listed = studio.export_all(pid)
        whole = {t["id"]: t for t in listed}
    else:
        listed = studio.tasks(pid, updated_after=since, fields="task_only")
        if len(listed) >= _WHOLE_MIN and 2 * len(listed) >= max(total, len(listed)):
            whole = {t["id"]: t for t in studio.export_all(pid)}
    listed.sort(key=lambda t: t.get("updated_at") or "")
    s = SyncSummary(tasks=len(listed))
    if since is None:  # the whole project was listed: a recorded task it lacks was deleted there
        s.lost = mark_lost(ledger, studio, pid, {t["id"] for t in listed})
    by_task = ledger.project_tasks(pid)
    for i in range(0, len(listed), _BATCH):
        chunk = listed[i : i + _BATCH]
        exported = whole if whole is not None else {t["id"]: t for t in studio.export(pid, [t["id"] for t in chunk])}
        with ledger.transaction():
            for lt in chunk:
                t = exported.get(lt["id"], lt)
                sync_task(cfg, ledger, pid, t, by_task, s, account, kind)
            last = chunk[-1].get("updated_at")
            if last:
                ledger.set(_wm_key(pid), last)
        if progress:
            progress(min(i + _BATCH, len(listed)), len(listed))
    return s


def _set_status(ledger: Ledger, pid: int, tid: int, status: str, note: str | None = None) -> None:
    ledger.set_task_status(pid, tid, status, note)


# What a task may change, by its kind: a labeling task (the labeling project) labels a pool frame only; a review
# task (the review project, pushed by `iterate audit --push` on purpose) confirms or corrects the label version it
# was pushed with, in any split, as a new version with source `review` (the history keeps the old one).
LABEL_TASK = "label"
REVIEW_TASK = "review"  # a label the audit flagged, sent back (annotation/review.py): may correct any split's label


def _refusal(cfg: LabelingSetup, t: dict, frame, kind: str = LABEL_TASK) -> str | None:
    """Why this pushed task may not change its frame's label, or None."""
    if frame is None:
        return "its frame is no longer in the ledger"
    if kind == LABEL_TASK and fixed_split(frame):
        return fixed_split(frame)
    try:
        want = pushed_data(cfg, frame)
    except IterateError as e:
        return str(e)
    data = t.get("data")
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in want.items()):
        got = data if not isinstance(data, dict) else {k: data.get(k) for k in want}
        return f"its data was changed in Label Studio ({repr(got)[:120]}), not what was pushed ({want})"
    return None


def _invalid(ledger: Ledger, pid: int, tid: int, s: SyncSummary, why: str) -> None:
    s.invalid.append(f"task {tid}: {why}")
    _set_status(ledger, pid, tid, "invalid", why)


def _annotations(t: dict) -> list[dict] | None:
    anns = t.get("annotations")
    if anns is None:
        return []
    if not isinstance(anns, list):
        return None
    return [a for a in anns if isinstance(a, dict)]


def _order(a: dict) -> tuple[str, int]:
    aid = a.get("id")
    return (str(a.get("updated_at") or a.get("created_at") or ""), aid if isinstance(aid, int) else 0)


def _annotator(ann: dict) -> str | None:
    who = ann.get("completed_by")
    who = who.get("email") or who.get("id") if isinstance(who, dict) else who
    return str(who)[:200] if who not in (None, "") else None


def sync_task(
    cfg: LabelingSetup,
    ledger: Ledger,
    pid: int,
    t: dict,
    by_task: dict,
    s: SyncSummary,
    account: Account | None = None,
    kind: str = LABEL_TASK,
) -> None:
    """One exported task → at most one new label version; anything wrong is named in ``s``. Call inside
    :meth:`Ledger.transaction`."""
    tid = t["id"]
    fid = by_task.get(tid)
    if fid is None:
        s.foreign.append(tid)
        return
    frame = ledger.frame(fid)
    if kind == REVIEW_TASK and frame is not None and ledger.is_retired(fid):
        s.retired += 1  # retired since it was pushed (its labels leave the current set)
        return _set_status(ledger, pid, tid, "retired", "its frame was retired")
    why = _refusal(cfg, t, frame, kind)
    if why:
        return _invalid(ledger, pid, tid, s, why)
    anns = _annotations(t)
    if anns is None:
        return _invalid(ledger, pid, tid, s, f"annotations is {repr(t.get('annotations'))[:40]}, not a list")
    done = [a for a in anns if not a.get("was_cancelled")]
    if not done:
        if any(a.get("was_cancelled") for a in anns):
            s.skipped += 1
            _set_status(ledger, pid, tid, "skipped", "skipped by the annotator")
        else:
            s.pending += 1
        return
    done.sort(key=_order)
    try:
        parsed = [(a, *parse_result(cfg, a.get("result"), frame.width, frame.height)) for a in done]
    except BadAnnotation as e:
        return _invalid(ledger, pid, tid, s, str(e))
    if cfg.label_studio.agreement:
        if len(parsed) < 2:
            s.pending += 1
            s.waiting.append(f"task {tid}: 1 annotation, waiting for a second annotator (label_studio.agreement)")
            return
        diag = float(np.hypot(frame.width, frame.height))
        if any(_disagree(cfg, parsed[-1][1], p[1], diag) for p in parsed[:-1]):
            return _invalid(ledger, pid, tid, s, f"{len(parsed)} annotators disagree (manifest asks for agreement)")
    ann, kps, attrs = parsed[-1]  # the newest wins
    if not any(v > 0 for _, _, v in kps):
        s.invalid.append(f"task {tid}: no joint placed (skip the task instead)")
        _set_status(ledger, pid, tid, "invalid", "no joint placed")
        return
    if kind == REVIEW_TASK:
        return _review(ledger, pid, tid, frame, ann, kps, attrs, s, account)
    _store(ledger, pid, tid, frame, ann, kps, attrs, s, account)


def _same(a: list, b: list, px: float = 0.5) -> bool:
    """Two labels alike: the same joints placed, with the same visibility, each within ``px`` pixels."""
    return len(a) == len(b) and all(
        (p[2] > 0) == (q[2] > 0) and (p[2] <= 0 or (p[2] == q[2] and np.hypot(p[0] - q[0], p[1] - q[1]) <= px))
        for p, q in zip(a, b)
    )


def _review(ledger: Ledger, pid: int, tid: int, frame, ann: dict, kps, attrs, s: SyncSummary, account) -> None:
    """A review task's answer: the label it was pushed with unchanged → confirmed; changed → a new version with
    source ``review``. A label changed in the ledger since the push is never confirmed by an older review."""
    pushed = ledger.task_prediction(pid, tid)
    cur = ledger.current_label(frame.id)
    attrs = attrs or dict(cur.attributes)  # strata left unanswered keep the label's
    if pushed is not None and _same(kps, pushed) and attrs == cur.attributes:
        if _same(cur.keypoints, pushed) and cur.reviewed_at is None:
            ledger.confirm_label(cur.id)
            s.confirmed += 1
        else:
            s.unchanged += 1
        return _set_status(ledger, pid, tid, "labeled", "confirmed by review")
    aid = ann.get("id")
    v = ledger.add_label(
        frame.id,
        kps,
        source="review",
        attributes=attrs,
        annotator=_annotator(ann),
        ls_task_id=tid,
        ls_annotation_id=aid if isinstance(aid, int) and not isinstance(aid, bool) else None,
        lead_time=_lead_time(ann),
        edits=account(frame, kps, pushed) if account is not None and pushed is not None else None,
    )
    if v is None:
        s.unchanged += 1
    else:
        s.corrected += 1
        s.stored.append(frame.id)
    _set_status(ledger, pid, tid, "labeled", "corrected by review" if v else None)


def _lead_time(ann: dict) -> float | None:
    """Label Studio's ``lead_time`` (seconds the annotator spent), when it is a plausible number."""
    v = ann.get("lead_time")
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
        return None
    return float(v)


def _store(ledger: Ledger, pid: int, tid: int, frame, ann: dict, kps, attrs, s: SyncSummary, account=None) -> None:
    cur = ledger.current_label(frame.id)
    aid = ann.get("id")
    edits = None
    if account is not None:
        pre = ledger.task_prediction(pid, tid)
        edits = None if pre is None else account(frame, kps, pre)
    v = ledger.add_label(
        frame.id,
        kps,
        source="labelstudio",
        attributes=attrs,
        annotator=_annotator(ann),
        ls_task_id=tid,
        ls_annotation_id=aid if isinstance(aid, int) and not isinstance(aid, bool) else None,
        lead_time=_lead_time(ann),
        edits=edits,
    )
    if v is None:
        s.unchanged += 1
    elif cur is None:
        s.new += 1
    else:
        s.updated += 1
    if v is not None:
        s.stored.append(frame.id)
    _set_status(ledger, pid, tid, "labeled")
