"""``kind: coco`` — a COCO-keypoints file (its images beside it or under ``images``), labels optional."""

from __future__ import annotations

from iterate.core.coco import (
    ann_key,
    coco_head_box,
    coco_keypoints,
    declared_size,
    image_size,
    read_coco,
)
from iterate.loop.ingest.common import _add_imported_label, _register_image, _rel
from iterate.loop.ingest.registry import reader


def _ingest_coco(m, ledger, src, s, by_hash, progress) -> None:
    path = m.resolve(src.path)
    coco, order = read_coco(m.keypoints.spec(), path, joints=src.labels)
    img_dir = m.resolve(src.images) if src.images else path.parent
    anns_by_image: dict = {}
    for a in sorted(coco["annotations"], key=ann_key):
        anns_by_image.setdefault(a.get("image_id"), []).append(a)
    # validate every annotation before anything is written
    parsed = (
        {
            iid: [
                (a, coco_keypoints(m.keypoints.spec(), a, order, path, image_size(coco, iid)), coco_head_box(a, path))
                for a in anns
            ]
            for iid, anns in anns_by_image.items()
        }
        if src.labels
        else {}
    )
    images = coco["images"]
    with ledger.transaction():
        for n, im in enumerate(images, 1):
            if progress:
                progress(src.label, n, len(images))
            p = img_dir / str(im.get("file_name", ""))
            fid = _register_image(m, ledger, src, s, by_hash, _rel(m, p), p, declared=declared_size(im))
            if fid is None:
                continue
            labeled = [(a, k, hb) for a, k, hb in parsed.get(im.get("id"), []) if any(v > 0 for _, _, v in k)]
            for inst, (a, kps, head_box) in enumerate(labeled):
                bbox = [float(x) for x in a["bbox"]] if a.get("bbox") else None
                _add_imported_label(
                    m,
                    ledger,
                    s,
                    fid,
                    kps,
                    dict(a.get("attributes") or {}),
                    path.name,
                    source="coco",
                    instance=inst,
                    bbox=bbox,
                    head_box=head_box,
                )


reader("coco")(_ingest_coco)
