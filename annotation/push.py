"""Project setup (idempotent) and push: frames → Label Studio tasks with the model's keypoints as predictions.

Re-running never creates a duplicate task: before importing, the project's tasks are listed and every frame
already there (by ``data.frame_id``) is recorded in the ledger instead of imported again, so a push cut off
between the server's import and the ledger write (server restarted, process killed) is finished on re-run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from iterate.errors import IterateError
from iterate.ledger import Ledger
from iterate.manifest import Manifest

from .client import Studio, StudioError
from .labeling import label_config, to_result


def _project_key(m: Manifest) -> str:
    return f"ls_project:{m.label_studio.url.rstrip('/')}"


def project_id(m: Manifest, ledger: Ledger) -> int | None:
    return ledger.get(_project_key(m))


def ensure_project(m: Manifest, ledger: Ledger, studio: Studio) -> int:
    """The project for this manifest: found by the ledger's id, else by title, else created; config kept current."""
    cfg = label_config(m)
    pid = project_id(m, ledger)
    proj = studio.project(pid) if pid else None
    if proj is None:
        same = [p for p in studio.projects() if p.get("title") == m.label_studio.project_title]
        proj = same[0] if same else studio.create_project(m.label_studio.project_title, cfg)
        pid = int(proj["id"])
        with ledger.transaction():
            ledger.set(_project_key(m), pid)
    if proj.get("label_config", "").strip() != cfg.strip():
        studio.update_project(pid, label_config=cfg)
    return int(pid)


def _ensure_storage(m: Manifest, studio: Studio, pid: int, folders: set[Path]) -> None:
    """Local-files storage rows so the server may serve these folders (each under the data root)."""
    root = m.resolve(m.label_studio.data_root)
    have = [Path(s.get("path", "")) for s in studio.local_storages(pid)]
    for f in sorted(folders):
        if any(f == h or h in f.parents for h in have):
            continue
        if f == root:
            raise StudioError(f"frames directly in the data root {root}: put them in a subfolder "
                              "(Label Studio serves local files only from subfolders of its document root)")
        studio.add_local_storage(pid, str(f))
        have.append(f)


def image_url(m: Manifest, path: str | Path) -> str:
    """Task URL of a local frame; refuses paths outside ``label_studio.data_root``."""
    root = m.resolve(m.label_studio.data_root)
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


def reconcile(m: Manifest, ledger: Ledger, studio: Studio, pid: int) -> int:
    """Record tasks that exist on the server but not in the ledger (a push cut off after the import)."""
    known = {r[0] for r in ledger.db.execute("SELECT task_id FROM tasks WHERE project_id=?", (pid,))}
    missing = []
    for t in studio.tasks(pid, fields="task_only"):
        fid = (t.get("data") or {}).get("frame_id")
        if t["id"] not in known and fid and ledger.frame(fid) is not None:
            missing.append((fid, t["id"]))
    if missing:
        with ledger.transaction():
            for fid, tid in missing:
                ledger.db.execute(
                    "INSERT OR IGNORE INTO tasks (frame_id, project_id, task_id, status, updated_at) VALUES (?,?,?,?,?)",
                    (fid, pid, tid, "pending", time.time()))
    return len(missing)


def push(m: Manifest, ledger: Ledger, studio: Studio, frame_ids: list[str], *, predictions: dict | None = None,
         round_id: int | None = None, model_version: str | None = None, progress=None) -> PushSummary:
    """Create one task per frame (with a prediction when ``predictions[frame_id] = (kps (K, 2), scores (K,))``)."""
    from label_studio_sdk.label_interface import LabelInterface

    pid = ensure_project(m, ledger, studio)
    s = PushSummary(pid)
    s.recovered = reconcile(m, ledger, studio, pid)
    in_project = {r[0] for r in ledger.db.execute("SELECT frame_id FROM tasks WHERE project_id=?", (pid,))}
    iface = LabelInterface(label_config(m))
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
            url = image_url(m, f.path)
        except StudioError as e:
            s.refused.append(str(e))
            continue
        task: dict = {"data": {"image": url, "frame_id": fid}}
        if predictions and fid in predictions:
            kps, scores = predictions[fid]
            # a prediction slightly off the frame (a cut-off limb) is placed on its edge for the annotator
            xy = np.clip(np.asarray(kps, dtype=np.float64), 0, [f.width - 1, f.height - 1])
            k3 = [[float(x), float(y), 2] for x, y in xy]
            result = to_result(m, k3, f.width, f.height, origin="prediction", scores=scores)
            pred = {"model_version": model_version or "iterate", "score": float(np.mean(scores)), "result": result}
            errors = iface.validate_prediction(pred, return_errors=True)
            if errors:
                s.refused.append(f"{f.path}: prediction does not fit the labeling config ({'; '.join(map(str, errors))[:200]})")
                continue
            task["predictions"] = [pred]
        todo.append(task)
        folders.add(Path(f.path).resolve().parent)
    if todo:
        _ensure_storage(m, studio, pid, folders)
    bs = m.label_studio.batch_size
    for i in range(0, len(todo), bs):
        batch = todo[i:i + bs]
        ids = studio.import_tasks(pid, batch)
        if len(ids) != len(batch):
            raise StudioError(f"import returned {len(ids)} task ids for {len(batch)} tasks; re-run `iterate push` to reconcile")
        with ledger.transaction():
            for t, tid in zip(batch, ids):
                ledger.db.execute(
                    "INSERT OR IGNORE INTO tasks (frame_id, project_id, task_id, round_id, status, updated_at) "
                    "VALUES (?,?,?,?,?,?)", (t["data"]["frame_id"], pid, tid, round_id, "pending", time.time()))
        s.pushed += len(batch)
        s.batches += 1
        if progress:
            progress(s.pushed, len(todo))
    if model_version and todo:
        studio.update_project(pid, model_version=model_version)
    return s


def frames_of_round(ledger: Ledger, round_id: int) -> list[str]:
    rows = ledger.db.execute("SELECT frame_id FROM round_frames WHERE round_id=? ORDER BY rank", (round_id,))
    ids = [r[0] for r in rows]
    if not ids:
        raise IterateError(f"round {round_id} has no selected frames (see `iterate status`)")
    return ids
