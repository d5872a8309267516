"""``kind: dlc`` — a DeepLabCut project's ``CollectedData_<scorer>.csv`` (or its config), one labeled folder."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from iterate.core.errors import IterateError
from iterate.loop.ingest.common import _add_imported_label, _register_image
from iterate.loop.ingest.registry import reader


def _dlc_rows(path: Path, csv_path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A DeepLabCut `CollectedData_*.csv` → (bodyparts in column order, [(image path, x/y cells)])."""
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise IterateError(f"{csv_path}: cannot read the DeepLabCut labels ({e})") from None
    head = {r[0]: r for r in rows[:4] if r}
    if "bodyparts" not in head or "coords" not in head:
        raise IterateError(f"{csv_path}: not a DeepLabCut CollectedData file (no 'bodyparts' and 'coords' header rows)")
    if "individuals" in head:
        raise IterateError(f"{csv_path}: a multi-animal DeepLabCut project: iterate labels one person per frame")
    coords = head["coords"]
    first = next(i for i, c in enumerate(coords) if c in ("x", "y"))
    parts = head["bodyparts"][first:]
    names = [parts[i] for i in range(0, len(parts), 2)]
    if coords[first:] != ["x", "y"] * len(names):
        raise IterateError(f"{csv_path}: coords header is not x, y per bodypart")
    data = []
    for r in rows[rows.index(coords) + 1 :]:
        if not r:
            continue
        img = "/".join(c for c in r[:first] if c)
        data.append((img, r[first : first + 2 * len(names)]))
    return names, data


def _ingest_dlc(m, ledger, src, s, by_hash, progress) -> None:
    """A DeepLabCut project (its `config.yaml`): every `labeled-data/*/CollectedData_*.csv`, bodyparts matched
    to the schema by name; a labeled point is visible (2), an empty cell not labeled (0)."""
    path = m.resolve(src.path)
    try:
        cfg = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise IterateError(f"{path}: cannot read the DeepLabCut config ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("bodyparts"), list):
        raise IterateError(f"{path}: not a DeepLabCut config.yaml (no bodyparts list)")
    if cfg.get("multianimalproject"):
        raise IterateError(f"{path}: a multi-animal DeepLabCut project: iterate labels one person per frame")
    root = path.parent
    want = list(m.keypoints.names)
    files = sorted((root / "labeled-data").glob("*/CollectedData_*.csv"))
    if not files:
        raise IterateError(f"{path}: no labeled-data/*/CollectedData_*.csv next to it")
    parsed = []
    for f in files:
        names, rows = _dlc_rows(path, f)
        if sorted(names) != sorted(want):
            missing = [n for n in want if n not in names]
            extra = [n for n in names if n not in want]
            raise IterateError(
                f"{f}: bodyparts differ from the manifest's keypoints.names (matched by name): the file "
                f"lacks {', '.join(missing) or 'none'}; it has {', '.join(extra) or 'none'}"
            )
        for img, cells in rows:
            kps = []
            for name in want:
                k = names.index(name)
                cx, cy = cells[2 * k].strip(), cells[2 * k + 1].strip()
                if not cx and not cy:
                    kps.append([0.0, 0.0, 0])
                    continue
                try:
                    x, y = float(cx), float(cy)
                except ValueError:
                    raise IterateError(f"{f}: {img}: {name}: x, y must be numbers, found {cx!r}, {cy!r}") from None
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise IterateError(f"{f}: {img}: {name}: coordinates must be finite, found ({cx}, {cy})")
                kps.append([x, y, 2])
            parsed.append((f, img, root / img, kps))
    with ledger.transaction():
        for n, (f, rel, p, kps) in enumerate(parsed, 1):
            if progress:
                progress(src.label, n, len(parsed))
            fid = _register_image(m, ledger, src, s, by_hash, rel, p, f.name)
            if fid is None or not any(v > 0 for _, _, v in kps):
                continue
            fr = ledger.frame(fid)
            for (x, y, v), name in zip(kps, want):
                if v and not (-0.5 * fr.width <= x <= 1.5 * fr.width and -0.5 * fr.height <= y <= 1.5 * fr.height):
                    raise IterateError(
                        f"{f}: {rel}: {name} at ({x:g}, {y:g}) lies far outside the {fr.width}×{fr.height} image"
                    )
            _add_imported_label(m, ledger, s, fid, kps, {}, f"{f.name}", source="dlc")


reader("dlc")(_ingest_dlc)
