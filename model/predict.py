"""`iterate predict`: images → COCO keypoint results with an iterate checkpoint, through the checkpoint's own
inference path (:func:`model.infer.load_predictor`): the keypoints the report scores for that checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from iterate.core.errors import IterateError
from iterate.core.images import IMAGE_EXTS


def _files(inputs: list[Path]) -> list[Path]:
    out = []
    for p in inputs:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            out.append(p)
        else:
            raise IterateError(f"{p}: no such image or folder")
    return out


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
) -> tuple[int, list[str], str]:
    """Write COCO results for ``inputs``; → (results written, unreadable files, the inference path used).
    ``flip``/``refine``/``head_up``/``box_head``/``refine_passes``: ``None`` keeps the checkpoint's setting.
    With a box head each result also carries the person box it found (``bbox``: x, y, w, h of a square)."""
    from model.data import Sample
    from model.infer import load_predictor

    pred = load_predictor(
        model_path,
        flip=flip,
        refine=refine,
        head_up=head_up,
        box_head=box_head,
        refine_passes=refine_passes,
        batch_size=batch_size,
    )
    files = _files(inputs)
    ids: dict[str, int] = {}
    if coco is not None:
        d = json.loads(coco.read_text())
        ids = {Path(i["file_name"]).name: int(i["id"]) for i in d.get("images", [])}
    res = pred.predict([Sample(str(f)) for f in files])
    results = []
    for i, f in enumerate(files):
        if np.isnan(res.keypoints[i]).any():
            continue
        kp = np.concatenate([res.keypoints[i], res.scores[i][:, None]], axis=1)
        row = {
            "image_id": ids.get(f.name, i + 1),
            "file_name": str(f),
            "category_id": 1,
            "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
            "score": round(float(res.scores[i].mean()), 4),
        }
        if res.boxes is not None and np.isfinite(res.boxes[i]).all():
            cx, cy, side = (float(v) for v in res.boxes[i])
            row["bbox"] = [round(cx - side / 2, 2), round(cy - side / 2, 2), round(side, 2), round(side, 2)]
        results.append(row)
    out.write_text(json.dumps(results))
    return len(results), res.bad, pred.settings.describe()
