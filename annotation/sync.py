"""`iterate sync-labels`: finished annotations → validated label versions in the ledger.

Incremental: the tasks updated since the last watermark, then a full ``JSON`` export of those ids
(``JSON_MIN`` drops region ids and with them which joint is occluded). Tasks are handled in ``updated_at``
order, one ledger transaction per batch, and the watermark moves only with a committed batch — a sync
cut off anywhere is finished by re-running it; re-processing a task adds nothing (an unchanged label is
not a new version).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from annotation.client import Studio
from annotation.labeling import BadAnnotation, parse_result
from annotation.push import project_id
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
    foreign: int = 0


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _disagree(cfg: LabelingSetup, a: list, b: list, diag: float) -> bool:
    for p, q in zip(a, b):
        if (p[2] > 0) != (q[2] > 0):
            return True
        if p[2] > 0 and np.hypot(p[0] - q[0], p[1] - q[1]) > 0.02 * diag:
            return True
    return False


def sync_labels(
    cfg: LabelingSetup, ledger: Ledger, studio: Studio, *, full: bool = False, progress=None
) -> SyncSummary:
    pid = project_id(cfg, ledger)
    if pid is None:
        raise IterateError("no Label Studio project yet: push frames first (`iterate select` or `iterate push`)")
    wm = None if full else ledger.get(_wm_key(pid))
    since = (_ts(wm) - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if wm else None
    # many updated tasks: one export of the whole project is far cheaper than one export request per chunk of ids
    # (`bench/ls_roundtrip.py`: sync_over_export); a few among many: list what changed, export just those ids
    whole = None
    total = (studio.project(pid) or {}).get("task_number") or 0
    if since is None and total >= _WHOLE_MIN:  # first or full sync of a large project: no listing needed
        listed = studio.export_all(pid)
        whole = {t["id"]: t for t in listed}
    else:
        listed = studio.tasks(pid, updated_after=since, fields="task_only")
        if len(listed) >= _WHOLE_MIN and 2 * len(listed) >= max(total, len(listed)):
            whole = {t["id"]: t for t in studio.export_all(pid)}
    listed.sort(key=lambda t: t.get("updated_at") or "")
    s = SyncSummary(tasks=len(listed))
    by_task = ledger.project_tasks(pid)
    for i in range(0, len(listed), _BATCH):
        chunk = listed[i : i + _BATCH]
        exported = whole if whole is not None else {t["id"]: t for t in studio.export(pid, [t["id"] for t in chunk])}
        with ledger.transaction():
            for lt in chunk:
                t = exported.get(lt["id"], lt)
                _one(cfg, ledger, pid, t, by_task, s)
            last = chunk[-1].get("updated_at")
            if last:
                ledger.set(_wm_key(pid), last)
        if progress:
            progress(min(i + _BATCH, len(listed)), len(listed))
    return s


def _set_status(ledger: Ledger, pid: int, tid: int, status: str, note: str | None = None) -> None:
    ledger.set_task_status(pid, tid, status, note)


def _one(cfg: LabelingSetup, ledger: Ledger, pid: int, t: dict, by_task: dict, s: SyncSummary) -> None:
    tid = t["id"]
    fid = by_task.get(tid) or (t.get("data") or {}).get("frame_id")
    frame = ledger.frame(fid) if fid else None
    if frame is None:
        s.foreign += 1
        return
    if tid not in by_task:
        ledger.add_task(fid, pid, tid)
    anns = [a for a in t.get("annotations") or [] if isinstance(a, dict)]
    done = [a for a in anns if not a.get("was_cancelled")]
    if not done:
        if any(a.get("was_cancelled") for a in anns):
            s.skipped += 1
            _set_status(ledger, pid, tid, "skipped", "skipped by the annotator")
        else:
            s.pending += 1
        return
    done.sort(key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id", 0)))
    try:
        parsed = [(a, *parse_result(cfg, a.get("result") or [], frame.width, frame.height)) for a in done]
    except BadAnnotation as e:
        s.invalid.append(f"task {tid}: {e}")
        _set_status(ledger, pid, tid, "invalid", str(e))
        return
    if cfg.label_studio.agreement and len(parsed) >= 2:
        diag = float(np.hypot(frame.width, frame.height))
        if any(_disagree(cfg, parsed[-1][1], p[1], diag) for p in parsed[:-1]):
            msg = f"{len(parsed)} annotators disagree (manifest asks for agreement)"
            s.invalid.append(f"task {tid}: {msg}")
            _set_status(ledger, pid, tid, "invalid", msg)
            return
    ann, kps, attrs = parsed[-1]  # the newest wins
    if not any(v > 0 for _, _, v in kps):
        s.invalid.append(f"task {tid}: no joint placed (skip the task instead)")
        _set_status(ledger, pid, tid, "invalid", "no joint placed")
        return
    cur = ledger.current_label(frame.id)
    who = ann.get("completed_by")
    who = who.get("email") or who.get("id") if isinstance(who, dict) else who
    v = ledger.add_label(
        frame.id,
        kps,
        source="labelstudio",
        attributes=attrs,
        annotator=str(who) if who else None,
        ls_task_id=tid,
        ls_annotation_id=ann.get("id"),
    )
    if v is None:
        s.unchanged += 1
    elif cur is None:
        s.new += 1
    else:
        s.updated += 1
    _set_status(ledger, pid, tid, "labeled")
