"""`iterate predict`: images → COCO keypoint results with an iterate checkpoint, through the checkpoint's own
inference path (:func:`model.infer.load_predictor`): the keypoints the report scores for that checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from iterate.core.errors import IterateError
from iterate.core.images import IMAGE_EXTS
from iterate.core.paths import name_parts, same_file, suffix_match
from model.geometry import detection_square


def image_files(inputs: list[Path]) -> list[Path]:
    """The image files of ``inputs`` (files, or folders searched recursively), refused by name when missing."""
    out = []
    for p in inputs:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            out.append(p)
        else:
            raise IterateError(f"{p}: no such image or folder")
    return out


def check_out(out: Path, files: list[Path]) -> None:
    """Before any prediction: ``out`` can be written, is not one of the inputs and overwrites no non-JSON file."""
    if out.is_dir():
        raise IterateError(f"--out {out} is a folder: give a JSON file name")
    if not out.parent.is_dir():
        raise IterateError(f"--out {out}: the folder {out.parent} does not exist")
    if out.exists():
        if any(out.resolve() == f.resolve() for f in files):
            raise IterateError(f"--out {out} is one of the input images: give another file name")
        if out.suffix.lower() != ".json":
            raise IterateError(f"--out {out} exists and is not a JSON file: refusing to overwrite it")


def coco_ids(coco: Path, files: list[Path]) -> dict[Path, int]:
    """Each input file's image id in ``coco``, matched by its path's tail against the COCO ``file_name`` (the
    longest shared tail wins). A file that matches no image, two images equally well, or an image claimed by two
    files is refused by name: never paired by position or by base name alone."""
    from iterate.core.coco import read_json

    d = read_json(coco, "COCO file")
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        raise IterateError(f"{coco}: not a COCO file (no 'images' list)")
    images = [i for i in d["images"] if isinstance(i, dict) and isinstance(i.get("file_name"), str) and "id" in i]
    by_base: dict[str, list[dict]] = {}
    for im in images:
        parts = name_parts(im["file_name"])
        if parts:
            by_base.setdefault(parts[-1], []).append(im)
    ids: dict[Path, int] = {}
    missing, claimed = [], {}
    for f in files:
        cands = by_base.get(f.name, [])
        best = max((suffix_match(f, im["file_name"]) for im in cands), default=0)
        top = [im for im in cands if suffix_match(f, im["file_name"]) == best and same_file(f, im["file_name"])]
        if not top:
            missing.append(f)
            continue
        if len(top) > 1:
            names = ", ".join(repr(im["file_name"]) for im in top[:3])
            raise IterateError(f"{coco}: {f} matches {len(top)} images equally ({names}): ambiguous, not guessed")
        iid = int(top[0]["id"])
        if iid in claimed:
            raise IterateError(
                f"{coco}: image {iid} ({top[0]['file_name']!r}) matches both {claimed[iid]} and {f}: "
                "give the folder its file names are relative to"
            )
        claimed[iid] = f
        ids[f] = iid
    if missing:
        shown = ", ".join(str(f) for f in missing[:3])
        raise IterateError(f"{coco}: {len(missing)} input image(s) not among its images by file name: {shown}")
    return ids


DET_THRESHOLD = 0.3  # a detection below this score is not a person (MMPose's top-down demos use 0.3)


def read_person_boxes(path: Path, ids: set[int]) -> tuple[dict[int, tuple[tuple[float, float], float]], int]:
    """COCO detection results (``[{image_id, category_id, bbox: [x, y, w, h], score}]``, the ``bbox_file`` MMPose's
    top-down evaluation reads) → each image's most confident person box as a square (centre, side), and the number
    of images where more than one person scores at least :data:`DET_THRESHOLD` (one person per frame is the
    product's scope: those frames are counted, the best box kept)."""
    from iterate.core.coco import read_json

    d = read_json(path, "detection results")
    if not isinstance(d, list):
        raise IterateError(f"{path}: expected a list of COCO detections [{{image_id, bbox, score}}, …]")
    by_image: dict[int, list[tuple[float, list[float]]]] = {}
    for i, det in enumerate(d):
        box = det.get("bbox") if isinstance(det, dict) else None
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            or not np.isfinite(box).all()
            or box[2] <= 0
            or box[3] <= 0
        ):
            raise IterateError(f"{path}: detection {i}: bbox must be [x, y, w, h] with w, h > 0")
        if det.get("category_id", 1) != 1:  # COCO's person
            continue
        score = det.get("score", 1.0)
        if not isinstance(score, (int, float)) or score < DET_THRESHOLD:
            continue
        by_image.setdefault(det.get("image_id"), []).append((float(score), [float(v) for v in box]))
    unknown = [k for k in by_image if k not in ids]
    if unknown and len(unknown) == len(by_image):
        raise IterateError(f"{path}: no detection's image_id is among the inputs' ids (e.g. {unknown[0]!r})")
    out, several = {}, 0
    for iid, dets in by_image.items():
        several += len(dets) > 1
        out[iid] = detection_square(tuple(max(dets, key=lambda t: t[0])[1]))
    return out, several


def predict_files(
    model_path: Path,
    inputs: list[Path],
    out: Path,
    *,
    coco: Path | None = None,
    flip: bool | None = None,
    refine: bool | None = None,
    head_up: bool | None = None,
    box_head: bool | None = None,
    refine_passes: int | None = None,
    batch_size: int = 32,
    joints: list[str] | None = None,
    localise: str | None = None,
    bbox_file: Path | None = None,
    detector: tuple[str, Path, float] | None = None,
    notes: list[str] | None = None,
) -> tuple[int, list[str], str]:
    """Write COCO results for ``inputs``; → (results written, unreadable files, the inference path used).
    ``flip``/``refine``/``head_up``/``box_head``/``refine_passes``: ``None`` keeps the checkpoint's setting.
    ``joints``: write these joints (a manifest's), matched by name; one the checkpoint lacks is written as 0, 0
    with score 0 (COCO results have no "not predicted").
    With a box head each result also carries the person box it found (``bbox``: x, y, w, h of a square)."""
    from model.data import Sample
    from model.infer import load_predictor

    files = image_files(inputs)
    check_out(out, files)
    ids = coco_ids(coco, files) if coco is not None else {}
    if bbox_file is not None and detector is not None:
        raise IterateError("--bbox-file and --detector both give person boxes: choose one")
    first_boxes = _first_boxes(files, ids, coco, bbox_file, detector, notes)
    pred = load_predictor(
        model_path,
        joints=joints,
        flip=flip,
        refine=refine,
        head_up=head_up,
        box_head=box_head,
        refine_passes=refine_passes,
        localise=localise,
        batch_size=batch_size,
    )
    res = pred.predict([Sample(str(f)) for f in files], person_boxes=first_boxes)
    results = _result_rows(files, ids, res)
    out.write_text(json.dumps(results))
    return len(results), res.bad, pred.settings.describe()


def _first_boxes(
    files: list[Path],
    ids: dict[Path, int],
    coco: Path | None,
    bbox_file: Path | None,
    detector: tuple[str, Path, float] | None,
    notes: list[str] | None,
) -> dict | None:
    """Each file's person box for the first pass (file position → box), from the detector or the detections file;
    None (the checkpoint's own first pass) without either."""
    if detector is not None:
        from model.detect import PersonDetector

        arch, weights, thr = detector
        found, several = PersonDetector(arch, weights, score=thr).person_boxes([str(f) for f in files])
        if notes is not None:
            notes.append(
                f"person boxes from the {arch} detector: {len(found)} of {len(files)} images (the others: the whole "
                f"frame); {several} image(s) with more than one person (the most confident box kept)"
            )
        return found
    if bbox_file is None:
        return None
    if coco is None:
        raise IterateError("--bbox-file: give --coco too (detections name COCO image ids)")
    found, several = read_person_boxes(bbox_file, set(ids.values()))
    first_boxes = {i: found[ids[f]] for i, f in enumerate(files) if ids[f] in found}
    if notes is not None:
        notes.append(
            f"person boxes from {bbox_file}: {len(first_boxes)} of {len(files)} images (the others: the whole "
            f"frame); {several} image(s) with more than one person (the most confident box kept)"
        )
    return first_boxes


def _result_rows(files: list[Path], ids: dict[Path, int], res) -> list[dict]:
    """One COCO result per readable file: keypoints with their scores, the mean score, the box head's box."""
    results = []
    for i, f in enumerate(files):
        if np.isnan(res.keypoints[i]).all():  # unreadable
            continue
        kp = np.concatenate([np.nan_to_num(res.keypoints[i]), res.scores[i][:, None]], axis=1)
        row = {
            "image_id": ids.get(f, i + 1),  # without --coco: the file's position; evaluate checks file_name
            "file_name": str(f),
            "category_id": 1,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "score": round(float(res.scores[i].mean()), 4),
        }
        if res.boxes is not None and np.isfinite(res.boxes[i]).all():
            cx, cy, side = (float(v) for v in res.boxes[i])
            row["bbox"] = [round(cx - side / 2, 2), round(cy - side / 2, 2), round(side, 2), round(side, 2)]
        results.append(row)
    return results
