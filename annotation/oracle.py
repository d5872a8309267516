"""The oracle annotator for the demo and simulations: answers pending tasks through the API from existing
ground-truth labels (COCO keypoints), writing the result items the Label Studio UI writes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from annotation.client import Studio
from annotation.labeling import to_result
from annotation.push import project_id
from annotation.settings import LabelingSetup
from iterate.core.coco import ann_key, coco_keypoints, read_coco
from iterate.core.ledger import Ledger


@dataclass
class OracleSummary:
    answered: int = 0
    no_label: list[str] = field(default_factory=list)
    already: int = 0


def autolabel(
    cfg: LabelingSetup, ledger: Ledger, studio: Studio, labels: Path, *, seed: int = 0, limit: int | None = None
) -> OracleSummary:
    pid = project_id(cfg, ledger)
    s = OracleSummary()
    if pid is None:
        return s
    coco, order = read_coco(cfg.keypoints, labels)
    by_name: dict[str, tuple[dict, dict]] = {}
    anns: dict = {}
    for a in sorted(coco["annotations"], key=ann_key):
        anns.setdefault(a["image_id"], a)  # first person of each image
    for im in coco["images"]:
        if im["id"] in anns:
            by_name[Path(im["file_name"]).name] = (im, anns[im["id"]])
    rng = random.Random(seed)
    frames = ledger.project_tasks(pid)
    for t in studio.tasks(pid, fields="task_only"):
        if limit is not None and s.answered >= limit:
            break
        if t.get("total_annotations") or t.get("cancelled_annotations"):
            s.already += 1
            continue
        fid = frames.get(t["id"]) or (t.get("data") or {}).get("frame_id")
        f = ledger.frame(fid) if fid else None
        hit = by_name.get(Path(f.path).name) if f else None
        if hit is None:
            s.no_label.append(f"task {t['id']}: {f.path if f else fid}")
            continue
        _, ann = hit
        # the UI cannot place a point off the image: a label just outside goes on the edge, as an annotator would
        kps = [
            [min(max(x, 0.0), float(f.width)), min(max(y, 0.0), float(f.height)), v]
            for x, y, v in coco_keypoints(cfg.keypoints, ann, order, labels)
        ]
        result = to_result(cfg, kps, f.width, f.height, ann.get("attributes") or {}, origin="manual", rng=rng)
        studio.create_annotation(t["id"], result, lead_time=round(rng.uniform(20, 60), 1))
        s.answered += 1
    return s
