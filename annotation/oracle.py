"""The oracle annotator for the demo and simulations: answers pending tasks through the API from existing
ground-truth labels (COCO keypoints), writing the result items the Label Studio UI writes.

Its ``lead_time`` is a *model of effort*, not a measurement: with the loop's accounting of the answer against the
task's pushed pre-annotation (``account``), seconds = a base per frame + seconds per joint accepted (checked),
moved, added, deleted and re-marked (:class:`EffortModel`), times a random factor; without it, a uniform 20–60 s.
Real figures come from real annotators.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from annotation.client import Studio
from annotation.labeling import to_result
from annotation.push import project_id
from annotation.settings import LabelingSetup
from annotation.sync import Account
from iterate.core.coco import ann_key, coco_keypoints, read_coco
from iterate.core.ledger import Ledger


@dataclass(frozen=True)
class EffortModel:
    """Seconds an annotator plausibly spends on a pre-annotated frame (a model of effort for the demo)."""

    base: float = 8.0  # open the frame, answer the strata, submit
    accepted: float = 1.0  # look at a joint and leave it
    moved: float = 5.0  # drag a joint to its place
    added: float = 7.0  # pick the label and click the joint
    deleted: float = 3.0
    visibility: float = 2.0  # mark a joint occluded
    spread: float = 0.25  # × a factor drawn in [1 − spread, 1 + spread]

    def seconds(self, edits: dict, rng: random.Random) -> float:
        s = self.base + sum(getattr(self, k) * len(edits.get(k) or []) for k in ("accepted", "moved", "added"))
        s += self.deleted * len(edits.get("deleted") or []) + self.visibility * len(edits.get("visibility") or [])
        return round(s * rng.uniform(1 - self.spread, 1 + self.spread), 1)


@dataclass
class OracleSummary:
    answered: int = 0
    no_label: list[str] = field(default_factory=list)
    already: int = 0
    corrupted: list[str] = field(default_factory=list)  # frames answered with the arms swapped on purpose


def _arm_pairs(cfg: LabelingSetup) -> list[tuple[int, int]]:
    """The left/right pairs of the arms (shoulder, elbow, wrist), else the first half of the flip pairs: a limb
    swapped in the label, the error the audit's swap test looks for (a whole-body swap reads as a back view)."""
    names = list(cfg.keypoints.names)
    pairs = [(names.index(a), names.index(b)) for a, b in cfg.keypoints.flip_pairs]
    arms = [p for p in pairs if any(w in names[p[0]] for w in ("shoulder", "elbow", "wrist"))]
    return arms or pairs[: max(1, len(pairs) // 2)]


def autolabel(
    cfg: LabelingSetup,
    ledger: Ledger,
    studio: Studio,
    labels: Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    account: Account | None = None,
    effort: EffortModel = EffortModel(),
    corrupt: float = 0.0,
) -> OracleSummary:
    """Answer the project's pending tasks from ``labels``; ``corrupt``: the share of answers given with the arms'
    left and right exchanged (the demo's known label errors for the audit to find), named in the summary."""
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
        if corrupt and rng.random() < corrupt:
            for a, b in _arm_pairs(cfg):
                kps[a], kps[b] = kps[b], kps[a]
            s.corrupted.append(f.id)
        result = to_result(cfg, kps, f.width, f.height, ann.get("attributes") or {}, origin="manual", rng=rng)
        pre = ledger.task_prediction(pid, t["id"]) if account is not None else None
        edits = account(f, kps, pre) if pre is not None else None
        secs = effort.seconds(edits, rng) if edits else round(rng.uniform(20, 60), 1)
        studio.create_annotation(t["id"], result, lead_time=secs)
        s.answered += 1
    return s
