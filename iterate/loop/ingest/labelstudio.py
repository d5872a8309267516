"""``kind: labelstudio`` — a Label Studio JSON export of keypoint annotations (images under ``images``)."""

from __future__ import annotations

from pathlib import Path

from annotation.labeling import BadAnnotation, parse_result
from iterate.core.coco import (
    read_json,
)
from iterate.core.errors import IterateError
from iterate.loop.ingest.common import _add_imported_label, _register_image
from iterate.loop.ingest.registry import reader
from iterate.loop.settings import labeling


def _ls_image_path(img_dir: Path, ref: str) -> tuple[str, Path] | None:
    """A task's image reference (local-files URL ``/data/local-files/?d=rel``, an upload or web URL, or a
    path) → (relative path, file under ``img_dir``; the file's name alone when the relative path is not there),
    or None when that file, resolved (``..``, symlinks), lies outside ``img_dir``."""
    from urllib.parse import parse_qs, unquote, urlparse

    u = urlparse(ref)
    rel = parse_qs(u.query).get("d", [None])[0] if "local-files" in u.path else None
    rel = unquote(rel or (u.path if u.scheme or ref.startswith("/data/") else ref)).lstrip("/")
    p = img_dir / rel
    p = p if p.is_file() else img_dir / Path(rel).name
    root, r = img_dir.resolve(), p.resolve()
    return (rel, p) if r == root or root in r.parents else None


def _ingest_labelstudio(m, ledger, src, s, by_hash, progress) -> None:
    """A Label Studio JSON export (the full `JSON` format, which keeps region ids): each task's image, and its
    newest submitted annotation as a label (joints by name, `occluded` regions as visibility 1, strata from the
    image-level choices). Every annotation is parsed before anything is written."""
    setup = labeling(m)
    path = m.resolve(src.path)
    tasks = read_json(path, "Label Studio export")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise IterateError(
            f"{path}: expected a Label Studio JSON export (a list of tasks); use the full `JSON` "
            "export, not JSON_MIN (it drops the region ids that carry visibility)"
        )
    img_dir = m.resolve(src.images) if src.images else path.parent
    parsed = []
    for t in tasks:
        data = t.get("data") if isinstance(t.get("data"), dict) else {}
        ref = data.get("image") or next((v for v in data.values() if isinstance(v, str)), None)
        if not isinstance(ref, str):
            raise IterateError(f"{path}: task {t.get('id')}: no image in its data")
        anns = [a for a in t.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        anns.sort(key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), str(a.get("id", ""))))
        label = None
        if anns and src.labels:
            try:
                kps, attrs = parse_result(setup, anns[-1].get("result") or [])
            except BadAnnotation as e:
                raise IterateError(f"{path}: task {t.get('id')}, annotation {anns[-1].get('id')}: {e}") from None
            if any(v > 0 for _, _, v in kps):
                who = anns[-1].get("completed_by")
                label = (kps, attrs, f"{path.name} task {t.get('id')} by {who}")
        found = _ls_image_path(img_dir, ref)
        if found is None:
            raise IterateError(
                f"{path}: task {t.get('id')}: image {ref!r} lies outside the images folder {img_dir} "
                "(set the source's `images:` to the folder that holds the task images)"
            )
        parsed.append((t.get("id"), *found, label))
    with ledger.transaction():
        for n, (tid, rel, p, label) in enumerate(parsed, 1):
            if progress:
                progress(src.label, n, len(parsed))
            fid = _register_image(m, ledger, src, s, by_hash, rel, p, f"task {tid}")
            if fid is not None and label is not None:
                _add_imported_label(m, ledger, s, fid, *label, source="labelstudio-export")


reader("labelstudio")(_ingest_labelstudio)
