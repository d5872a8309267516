"""Rebuild demo_data/ from the shared LSPET copy (run once by the maintainers; the result is committed).

The demo's footage: LSPET people who are leaning, horizontal or upside down (posture attribute), images
im06001–im07100 — none of them seen by the shipped demo base model, which was trained on upright/leaning people
of im00001–im06000 only. Every 13 consecutive such images go 8 to the pool, 2 to val, 3 to test.

The replay set is a sample of the base's own training data (every 12th upright or leaning person of
im00001–im05800): `train.replay` mixes it into each fine-tune so the loop does not forget what the base knew.

    python scripts/make_demo_data.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTURES = ("leaning", "horizontal", "inverted")
FIRST, LAST = 6001, 7100
REPLAY_POSTURES, REPLAY_LAST, REPLAY_EVERY = ("upright", "leaning"), 5800, 12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    lspet = args.shared / "lspet"
    coco = json.loads((lspet / "annotations.coco.json").read_text())
    ims = {i["id"]: i for i in coco["images"]}
    anns = sorted(
        (
            a
            for a in coco["annotations"]
            if FIRST <= a["image_id"] <= LAST and a.get("attributes", {}).get("posture") in POSTURES
        ),
        key=lambda a: a["image_id"],
    )
    splits: dict[str, list] = {"pool": [], "val": [], "test": []}
    for i, a in enumerate(anns):
        r = i % 13
        splits["pool" if r < 8 else "val" if r < 10 else "test"].append(a)
    base_rows = sorted(
        (
            a
            for a in coco["annotations"]
            if a["image_id"] <= REPLAY_LAST and a.get("attributes", {}).get("posture") in REPLAY_POSTURES
        ),
        key=lambda a: a["image_id"],
    )
    splits["replay"] = base_rows[::REPLAY_EVERY]
    out = REPO / "demo_data"
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "images").mkdir(parents=True)
    for name, rows in splits.items():
        images = []
        for a in rows:
            im = dict(ims[a["image_id"]])
            src = lspet / im["file_name"]
            im["file_name"] = f"images/{Path(im['file_name']).name}"
            shutil.copy2(src, out / im["file_name"])
            images.append(im)
        ids = [a["image_id"] for a in rows]
        (out / f"{name}.coco.json").write_text(
            json.dumps(
                {
                    "info": {
                        "description": f"LSPET, {len(rows)} {'upright/leaning' if name == 'replay' else 'leaning/horizontal/inverted'}"
                        f" people of im{min(ids):05d}-im{max(ids):05d} ({name} split of the iterate demo); see demo_data/README.md"
                    },
                    "images": images,
                    "annotations": rows,
                    "categories": coco["categories"],
                }
            )
        )
        print(f"{name}: {len(rows)} images")


if __name__ == "__main__":
    main()
