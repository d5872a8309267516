"""Project setup (idempotent) and push: frames → Label Studio tasks with the model's keypoints as predictions.

Re-running never creates a duplicate task: before importing, the project's tasks are listed and every frame
already there (by ``data.frame_id``) is recorded in the ledger instead of imported again, so a push cut off
between the server's import and the ledger write (server restarted, process killed) is finished on re-run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from annotation.client import Studio, StudioError
from annotation.labeling import label_config, to_result
from annotation.settings import LabelingSetup
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger


def _project_key(cfg: LabelingSetup) -> str:
    return f"ls_project:{cfg.label_studio.url.rstrip('/')}"


def project_id(cfg: LabelingSetup, ledger: Ledger) -> int | None:
    return ledger.get(_project_key(cfg))


def ensure_project(cfg: LabelingSetup, ledger: Ledger, studio: Studio) -> int:
    """The project for this manifest: found by the ledger's id, else by title, else created; config kept current."""
    xml = label_config(cfg)
    pid = project_id(cfg, ledger)
    proj = studio.project(pid) if pid else None
    if proj is None:
        same = [p for p in studio.projects() if p.get("title") == cfg.label_studio.project_title]
        proj = same[0] if same else studio.create_project(cfg.label_studio.project_title, xml)
        pid = int(proj["id"])
        with ledger.transaction():
            ledger.set(_project_key(cfg), pid)
    if proj.get("label_config", "").strip() != xml.strip():
        studio.update_project(pid, label_config=xml)
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


def reconcile(cfg: LabelingSetup, ledger: Ledger, studio: Studio, pid: int) -> int:
    """Record tasks that exist on the server but not in the ledger (a push cut off after the import)."""
    known = set(ledger.project_tasks(pid))
    missing = []
    for t in studio.tasks(pid, fields="task_only"):
        fid = (t.get("data") or {}).get("frame_id")
        if t["id"] not in known and fid and ledger.frame(fid) is not None:
            missing.append((fid, t["id"]))
    if missing:
        with ledger.transaction():
            for fid, tid in missing:
                ledger.add_task(fid, pid, tid)
    return len(missing)


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

    pid = ensure_project(cfg, ledger, studio)
    s = PushSummary(pid)
    s.recovered = reconcile(cfg, ledger, studio, pid)
    in_project = set(ledger.project_tasks(pid).values())
    iface = LabelInterface(label_config(cfg))
    todo, folders = [], set()
    for fid in frame_ids:
        if fid in in_project:
            s.already += 1
            continue
        f = ledger.frame(fid)
        if f is None:
            s.refused.append(f"{fid}: not a frame in the ledger")
            continue
        if not Path(f.path).is_file():
            s.refused.append(f"{f.path}: image file missing; refused before sending")
            continue
        try:
            url = image_url(cfg, f.path)
        except StudioError as e:
            s.refused.append(str(e))
            continue
        task: dict = {"data": {"image": url, "frame_id": fid}}
        if predictions and fid in predictions:
            kps, scores = predictions[fid]
            # a prediction slightly off the frame (a cut-off limb) is placed on its edge for the annotator
            xy = np.clip(np.asarray(kps, dtype=np.float64), 0, [f.width - 1, f.height - 1])
            k3 = [[float(x), float(y), 2] for x, y in xy]
            result = to_result(cfg, k3, f.width, f.height, origin="prediction", scores=scores)
            pred = {"model_version": model_version or "iterate", "score": float(np.mean(scores)), "result": result}
            errors = iface.validate_prediction(pred, return_errors=True)
            if errors:
                s.refused.append(
                    f"{f.path}: prediction does not fit the labeling config ({'; '.join(map(str, errors))[:200]})"
                )
                continue
            task["predictions"] = [pred]
        todo.append(task)
        folders.add(Path(f.path).resolve().parent)
    if todo:
        _ensure_storage(cfg, studio, pid, folders)
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
                ledger.add_task(t["data"]["frame_id"], pid, tid, round_id)
        s.pushed += len(batch)
        s.batches += 1
        if progress:
            progress(s.pushed, len(todo))
    if model_version and todo:
        studio.update_project(pid, model_version=model_version)
    return s


def frames_of_round(ledger: Ledger, round_id: int) -> list[str]:
    ids = ledger.round_frame_ids(round_id)
    if not ids:
        raise IterateError(f"round {round_id} has no selected frames (see `iterate status`)")
    return ids
