"""A source's ``person_boxes``: COCO detection results (``[{image_id | file_name | frame_index, category_id, bbox:
[x, y, w, h], score}]``, the ``bbox_file`` convention MMPose's top-down evaluation reads) paired with the source's
frames and stored in the ledger: each frame's most confident person box and how many people scored.

A detection names its frame by ``file_name`` (the image's path as the source names it: relative to an images
folder, or a COCO / Label Studio file's own name; matched by its trailing path components, never by position),
``image_id`` (a ``coco`` source's image id) or ``frame_index`` (a ``video`` or ``sleap`` source's frame). A
detection that names no frame of the source is counted and one of them named; a file none of whose detections
names a frame is refused in one line. One person per frame is the product's scope: where several people score at
least :data:`model.predict.DET_THRESHOLD`, the most confident box is kept and the frame is counted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from iterate.core.coco import read_json
from iterate.core.errors import IterateError
from iterate.core.ledger import Frame, Ledger, PersonBox
from iterate.core.manifest import Manifest, Source
from iterate.core.paths import name_parts, same_file, suffix_match
from iterate.loop.ingest.common import SourceSummary
from model.predict import DET_THRESHOLD

KEYS = ("file_name", "image_id", "frame_index")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_detections(path: Path) -> list[tuple[str, object, float, tuple[float, float, float, float]]]:
    """The file's person detections as (key kind, key, score, box); a malformed one is refused naming its index."""
    d = read_json(path, "person boxes")
    if not isinstance(d, list):
        raise IterateError(f"{path}: expected a list of COCO detections [{{file_name | image_id, bbox, score}}, …]")
    out = []
    for i, det in enumerate(d):
        if not isinstance(det, dict):
            raise IterateError(f"{path}: detection {i}: not an object")
        box = det.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box) and box[2] > 0 < box[3]):
            raise IterateError(f"{path}: detection {i}: bbox must be [x, y, w, h] with w, h > 0")
        score = det.get("score", 1.0)
        if not _number(score):
            raise IterateError(f"{path}: detection {i}: score must be a number")
        if det.get("category_id", 1) != 1:  # COCO's person
            continue
        kind = next((k for k in KEYS if det.get(k) is not None), None)
        if kind is None:
            raise IterateError(f"{path}: detection {i}: names no frame (give file_name, image_id or frame_index)")
        out.append((kind, det[kind], float(score), tuple(float(v) for v in box)))
    return out


class _Frames:
    """The source's frames by each key a detection may give."""

    def __init__(self, m: Manifest, src: Source, frames: list[Frame]):
        self.by_base: dict[str, list[Frame]] = defaultdict(list)
        for f in frames:
            self.by_base[Path(f.path).name].append(f)
        self.by_index = {f.frame_index: f for f in frames if f.frame_index is not None}
        self.coco_names: dict = {}
        if src.kind == "coco":
            d = read_json(m.resolve(src.path), "COCO file")
            self.coco_names = {im.get("id"): im.get("file_name") for im in d.get("images", []) if isinstance(im, dict)}
        self.kind = src.kind

    def by_name(self, name: str, path: Path) -> Frame | None:
        """The frame whose path ends with every component of ``name`` (``cam2/0001.jpg`` never pairs with
        ``cam1/0001.jpg``); the longest shared tail wins, a tie is refused."""
        parts = name_parts(name)
        cands = [f for f in self.by_base.get(parts[-1], []) if same_file(f.path, name)] if parts else []
        if not cands:
            return None
        best = max(suffix_match(f.path, name) for f in cands)
        top = [f for f in cands if suffix_match(f.path, name) == best]
        if len(top) > 1:
            raise IterateError(f"{path}: file_name {name!r} matches {len(top)} frames equally: ambiguous, not guessed")
        return top[0]

    def find(self, kind: str, key, path: Path) -> Frame | None:
        if kind == "frame_index":
            return self.by_index.get(key) if isinstance(key, int) else None
        if kind == "image_id":
            if self.kind != "coco":
                raise IterateError(f"{path}: image_id names a coco source's images; give file_name for {self.kind}")
            name = self.coco_names.get(key)
            return self.by_name(name, path) if isinstance(name, str) else None
        return self.by_name(key, path) if isinstance(key, str) else None


def apply_person_boxes(m: Manifest, ledger: Ledger, src: Source, s: SourceSummary) -> None:
    """Pair ``src.person_boxes`` with the source's frames and store each frame's person box (a frame with no person
    detection keeps the whole frame: stored as none found)."""
    if not src.person_boxes:
        if ledger.person_boxes(src.label):
            with ledger.transaction():
                ledger.set_person_boxes(src.label, {})
            s.notes.append(f"{src.label}: person_boxes no longer given: its frames' boxes removed (whole-frame crops)")
        return
    path = m.resolve(src.person_boxes)
    dets = read_detections(path)
    frames = ledger.frames(source=src.label)
    if not frames:
        s.notes.append(f"{src.label}: no frames to pair {path.name}'s person boxes with")
        return
    index = _Frames(m, src, frames)
    found: dict[str, list[tuple[float, tuple]]] = defaultdict(list)
    unpaired: list[str] = []
    for kind, key, score, box in dets:
        f = index.find(kind, key, path)
        if f is None:
            unpaired.append(f"{kind} {key!r}")
        elif score >= DET_THRESHOLD and min(box[2], box[3]) >= 2:
            found[f.id].append((score, box))
    if dets and len(unpaired) == len(dets):
        raise IterateError(f"{path}: no detection names a frame of source '{src.label}' (e.g. {unpaired[0]})")
    boxes = {}
    for f in frames:
        people = found.get(f.id, [])
        best = max(people, key=lambda t: t[0]) if people else None
        boxes[f.id] = PersonBox(best[1] if best else None, best[0] if best else None, len(people))
    with ledger.transaction():
        ledger.set_person_boxes(src.label, boxes)
    several = sum(b.people > 1 for b in boxes.values())
    none = sum(b.box is None for b in boxes.values())
    note = (
        f"{src.label}: person boxes from {path.name}: {len(boxes) - none} of {len(boxes)} frames boxed ({none} with "
        f"no person scoring ≥ {DET_THRESHOLD:g}: the whole frame); {several} with several people (the most "
        "confident kept)"
    )
    if unpaired:
        note += f"; {len(unpaired)} detection(s) name no frame of this source (e.g. {unpaired[0]})"
    s.notes.append(note)
