"""Project setup (idempotent) and push: frames → Label Studio tasks with the model's keypoints as predictions.

The ledger records every task id it imports; ``sync-labels`` reads labels from those tasks only (a task anyone
else made in the project is foreign, never adopted). Only pool frames are pushed: train/val/test labels are
fixed.

Re-running never creates a duplicate task: before importing, the project's tasks are listed and a task holding
exactly what this push would send for one of its frames (``data`` = the frame's image URL and id) is recorded
in the ledger instead of imported again, so a push cut off between the server's import and the ledger write
(server restarted, process killed) is finished on re-run. A recorded task no longer on the server (deleted in
Label Studio), or every open task of a recorded project that answers 404, is marked lost and named; its frame
is pushed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from annotation.client import Studio, StudioError
from annotation.labeling import instructions, label_config, to_result
from annotation.settings import LabelingSetup
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger


def _project_key(cfg: LabelingSetup) -> str:
    return f"ls_project:{cfg.label_studio.url.rstrip('/')}"


def project_id(cfg: LabelingSetup, ledger: Ledger) -> int | None:
    return ledger.get(_project_key(cfg))


def gone_project(cfg: LabelingSetup, pid: int) -> str:
    """The one line for a recorded project that answers 404."""
    return (
        f"Label Studio project {pid} (the ledger's project at {cfg.label_studio.url}) answers 404: it was deleted; "
        "restore it, or run `iterate push --round N` for each open round to push its frames to a new project"
    )


def _forget_gone_project(cfg: LabelingSetup, ledger: Ledger, studio: Studio) -> list[str]:
    """A recorded project that answers 404: its open tasks are marked lost (named), so a new project takes over."""
    pid = project_id(cfg, ledger)
    if pid is None or studio.project(pid) is not None:
        return []
    lost = ledger.open_tasks(pid)
    with ledger.transaction():
        ledger.mark_tasks_lost(pid, [t for t, _, _ in lost], f"project {pid} deleted in Label Studio")
    return [f"project {pid} answers 404 (deleted in Label Studio): its {len(lost)} open task(s) marked lost"] + [
        _lost_line(pid, tid, fid, rid) for tid, fid, rid in lost
    ]


def _lost_line(pid: int, tid: int, fid: str, round_id: int | None) -> str:
    again = f"`iterate push --round {round_id}` pushes its frame again" if round_id else "its frame may be pushed again"
    return f"task {tid} of project {pid} (frame {fid}) is gone from Label Studio: marked lost; {again}"


def mark_lost(ledger: Ledger, studio: Studio, pid: int, on_server: set[int]) -> list[str]:
    """Open tasks the ledger recorded that the server's listing lacks and that answer 404 themselves: deleted in
    Label Studio → lost, named. (Asking each one again keeps a task another machine's push imported after the
    listing from being taken for a deleted one.)"""
    lost = [t for t in ledger.open_tasks(pid) if t[0] not in on_server and studio.task(t[0]) is None]
    if lost:
        with ledger.transaction():
            ledger.mark_tasks_lost(pid, [t for t, _, _ in lost], "deleted in Label Studio")
    return [_lost_line(pid, *t) for t in lost]


def ensure_project(cfg: LabelingSetup, ledger: Ledger, studio: Studio) -> int:
    """The project for this manifest: found by the ledger's id, else by title, else created; its label config and
    the instructions shown before labeling kept current."""
    xml = label_config(cfg)
    shown = {"expert_instruction": instructions(cfg), "show_instruction": True}
    pid = project_id(cfg, ledger)
    proj = studio.project(pid) if pid else None
    if proj is None:
        same = [p for p in studio.projects() if p.get("title") == cfg.label_studio.project_title]
        proj = same[0] if same else studio.create_project(cfg.label_studio.project_title, xml, **shown)
        pid = int(proj["id"])
        with ledger.transaction():
            ledger.set(_project_key(cfg), pid)
    stale = {}
    if (proj.get("label_config") or "").strip() != xml.strip():
        stale["label_config"] = xml
    if (proj.get("expert_instruction") or "").strip() != shown["expert_instruction"].strip():
        stale["expert_instruction"] = shown["expert_instruction"]
    if proj.get("show_instruction") is not True:
        stale["show_instruction"] = True
    if stale:
        studio.update_project(pid, **stale)
    return int(pid)


def _ensure_storage(cfg: LabelingSetup, studio: Studio, pid: int, folders: set[Path]) -> None:
    """Local-files storage rows so the server may serve these folders (each under the data root)."""
    root = cfg.label_studio.data_root
    have = [Path(s.get("path", "")) for s in studio.local_storages(pid)]
    for f in sorted(folders):
        if any(f == h or h in f.parents for h in have):
            continue
        if f == root:
            raise StudioError(
                f"frames directly in the data root {root}: put them in a subfolder "
                "(Label Studio serves local files only from subfolders of its document root)"
            )
        studio.add_local_storage(pid, str(f))
        have.append(f)


def image_url(cfg: LabelingSetup, path: str | Path) -> str:
    """Task URL of a local frame; refuses paths outside ``label_studio.data_root``."""
    root = cfg.label_studio.data_root
    p = Path(path).resolve()
    try:
        rel = p.relative_to(root)
    except ValueError:
        raise StudioError(f"{p}: outside the data root {root} (label_studio.data_root); refused") from None
    return f"/data/local-files/?d={quote(str(rel))}"


@dataclass
class PushSummary:
    project_id: int
    pushed: int = 0
    already: int = 0
    recovered: int = 0
    refused: list[str] = field(default_factory=list)
    batches: int = 0
    lost: list[str] = field(default_factory=list)  # tasks gone from Label Studio, named


def pushed_data(cfg: LabelingSetup, frame) -> dict:
    """The task ``data`` push sends for a frame (what a task must still hold for its annotations to count)."""
    return {"image": image_url(cfg, frame.path), "frame_id": frame.id}


def fixed_split(frame) -> str | None:
    """Why Label Studio may not label this frame (its split's labels are fixed), or None for a pool frame."""
    if frame.split == "pool":
        return None
    return f"frame {frame.id} is a {frame.split} frame: its labels are fixed, never changed from Label Studio"


def reconcile(cfg: LabelingSetup, ledger: Ledger, pid: int, server_tasks: list[dict], frame_ids: list[str]) -> int:
    """Record tasks of a push cut off after the import: a server task the ledger does not know is adopted only
    when it holds exactly what this push sends for one of ``frame_ids`` that has no task yet."""
    known = ledger.project_tasks(pid)
    wanted = set(frame_ids) - _tasked(ledger, pid)
    missing: dict[str, int] = {}
    for t in server_tasks:
        data = t.get("data")
        fid = data.get("frame_id") if isinstance(data, dict) else None
        if t["id"] in known or not isinstance(fid, str) or fid not in wanted or fid in missing:
            continue
        f = ledger.frame(fid)
        if f is not None and fixed_split(f) is None and data == _data_or_none(cfg, f):
            missing[fid] = t["id"]
    if missing:
        with ledger.transaction():
            for fid, tid in missing.items():
                ledger.add_task(fid, pid, tid)
    return len(missing)


def _tasked(ledger: Ledger, pid: int) -> set[str]:
    """Frames with a task in the project (a lost one does not count)."""
    statuses = ledger.task_statuses(pid)
    return {f for t, f in ledger.project_tasks(pid).items() if statuses.get(t) != "lost"}


def _data_or_none(cfg: LabelingSetup, frame) -> dict | None:
    try:
        return pushed_data(cfg, frame)
    except StudioError:
        return None


def push(
    cfg: LabelingSetup,
    ledger: Ledger,
    studio: Studio,
    frame_ids: list[str],
    *,
    predictions: dict | None = None,
    round_id: int | None = None,
    model_version: str | None = None,
    progress=None,
) -> PushSummary:
    """Create one task per frame (with a prediction when ``predictions[frame_id] = (kps (K, 2), scores (K,))``)."""
    from label_studio_sdk.label_interface import LabelInterface

    lost = _forget_gone_project(cfg, ledger, studio)
    pid = ensure_project(cfg, ledger, studio)
    s = PushSummary(pid, lost=lost)
    server_tasks = studio.tasks(pid, fields="task_only")
    s.lost += mark_lost(ledger, studio, pid, {t["id"] for t in server_tasks})
    s.recovered = reconcile(cfg, ledger, pid, server_tasks, frame_ids)
    in_project = _tasked(ledger, pid)
    iface = LabelInterface(label_config(cfg))
    todo, folders = [], set()
    pre: dict[str, list] = {}  # the pre-annotation each task is pushed with ([] none), kept in the ledger for cost
    for fid in frame_ids:
        if fid in in_project:
            s.already += 1
            continue
        f = ledger.frame(fid)
        prediction = predictions[fid] if predictions and fid in predictions else None
        try:
            task, k3 = _task(cfg, iface, fid, f, prediction, model_version)
        except _Refused as e:
            s.refused.append(str(e))
            continue
        if k3 is not None:
            pre[fid] = k3
        todo.append(task)
        folders.add(Path(f.path).resolve().parent)
    if todo:
        _ensure_storage(cfg, studio, pid, folders)
    _import(cfg, ledger, studio, pid, todo, pre, round_id, s, progress)
    if model_version and todo:
        studio.update_project(pid, model_version=model_version)
    return s


class _Refused(Exception):
    """A frame this push does not send, and why (listed in the summary)."""


def _task(cfg: LabelingSetup, iface, fid: str, f, prediction: tuple | None, model_version: str | None):
    """The frame's task (with the model's prediction when given) → (task, the pre-annotation pushed or None);
    raises :class:`_Refused` for a frame not in the ledger, an image gone, a fixed-split frame, a path Label Studio
    cannot serve, a prediction that does not fit the labeling config."""
    if f is None:
        raise _Refused(f"{fid}: not a frame in the ledger")
    if not Path(f.path).is_file():
        raise _Refused(f"{f.path}: image file missing; refused before sending")
    if fixed_split(f):
        raise _Refused(fixed_split(f))
    try:
        task: dict = {"data": pushed_data(cfg, f)}
    except StudioError as e:
        raise _Refused(str(e)) from None
    if prediction is None:
        return task, None
    kps, scores = prediction
    # a prediction slightly off the frame (a cut-off limb) is placed on its edge for the annotator
    xy = np.clip(np.asarray(kps, dtype=np.float64), 0, [f.width - 1, f.height - 1])
    # a joint the model does not predict (NaN: not among its joints) is left unplaced, never guessed
    k3 = [[float(x), float(y), 2] if np.isfinite([x, y]).all() else [0.0, 0.0, 0] for x, y in xy]
    placed = [float(c) for c, k in zip(scores, k3) if k[2]]
    result = to_result(cfg, k3, f.width, f.height, origin="prediction", scores=scores)
    mean = float(np.mean(placed)) if placed else 0.0
    pred = {"model_version": model_version or "iterate", "score": mean, "result": result}
    errors = iface.validate_prediction(pred, return_errors=True)
    if errors:
        raise _Refused(f"{f.path}: prediction does not fit the labeling config ({'; '.join(map(str, errors))[:200]})")
    task["predictions"] = [pred]
    return task, k3


def _import(
    cfg: LabelingSetup,
    ledger: Ledger,
    studio: Studio,
    pid: int,
    todo: list[dict],
    pre: dict[str, list],
    round_id: int | None,
    s: PushSummary,
    progress,
) -> None:
    """Import the tasks in batches, each batch's task ids recorded in the ledger as soon as the server gives them."""
    bs = cfg.label_studio.batch_size
    for i in range(0, len(todo), bs):
        batch = todo[i : i + bs]
        ids = studio.import_tasks(pid, batch)
        if len(ids) != len(batch):
            raise StudioError(
                f"import returned {len(ids)} task ids for {len(batch)} tasks; re-run `iterate push` to reconcile"
            )
        with ledger.transaction():
            for t, tid in zip(batch, ids):
                fid = t["data"]["frame_id"]
                ledger.add_task(fid, pid, tid, round_id, prediction=pre.get(fid, []))
        s.pushed += len(batch)
        s.batches += 1
        if progress:
            progress(s.pushed, len(todo))


def frames_of_round(ledger: Ledger, round_id: int) -> list[str]:
    ids = ledger.round_frame_ids(round_id)
    if not ids:
        raise IterateError(f"round {round_id} has no selected frames (see `iterate status`)")
    return ids
