"""Draw a checkpoint's predictions on footage that is not a tight crop (the SLEAP dance video, the PoseTrack
sample), once per inference path, side by side: what `iterate predict` gives a new user on such frames.

    python bench/release/draw_footage.py --model CK [--localise frame,box_head] --out docs/img/footage.png [IMAGES...]
Default images: dance.mp4 frames 0, 150, 300 and the three PoseTrack18 sample frames.
Last line: drawn=<path>
``--smoke``: two of the default images, 64 px tiles, the sheet and draw_footage_smoke.json in the results folder
(the test suite's check; never docs/img).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: _common
from iterate.core.presets import PRESETS
from model.data import Sample
from model.infer import load_predictor
from reports.report import _draw

import _common
from _common import REPO, SHARED, write_result

COLORS = {"frame": (0, 0, 255), "box_head": (0, 200, 0)}


def default_images(tmp: Path) -> list[Path]:
    cap = cv2.VideoCapture(str(SHARED / "sleap_dance" / "dance.mp4"))
    out = []
    for idx in (0, 150, 300):
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, img = cap.read()
        if ok:
            p = tmp / f"dance_{idx:03d}.png"
            cv2.imwrite(str(p), img)
            out.append(p)
    cap.release()
    return out + sorted((SHARED / "mmpose_samples" / "posetrack18" / "images").rglob("*.jpg"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "model" / "weights" / "lspet_w18s_128.pt"))
    ap.add_argument("--localise", default="frame,box_head")
    ap.add_argument("--out", default=str(REPO / "docs" / "img" / "footage.png"))
    ap.add_argument("--height", type=int, default=240, help="each tile's height")
    ap.add_argument("--smoke", action="store_true", help="2 images, small tiles, out in the results folder")
    ap.add_argument("images", nargs="*")
    args = ap.parse_args()
    if args.smoke:
        args.out, args.height = str(_common.smoke() / "draw_footage_smoke.png"), 64
    names = PRESETS["lsp14"]["names"]
    edges = [(names.index(a), names.index(b)) for a, b in PRESETS["lsp14"]["skeleton"]]
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(p) for p in args.images] or default_images(Path(tmp))
        if args.smoke:
            files = files[:1] + files[-1:]
        rows = []
        for path in args.localise.split(","):
            pred = load_predictor(args.model, localise=path, joints=names).predict([Sample(str(f)) for f in files])
            tiles = []
            for f, kp in zip(files, pred.keypoints):
                img = cv2.imread(str(f))
                vis = np.isfinite(kp).all(1)
                _draw(img, np.nan_to_num(kp), vis, edges, COLORS.get(path, (255, 0, 0)))
                s = args.height / img.shape[0]
                tiles.append(cv2.resize(img, (max(1, int(img.shape[1] * s)), args.height)))
            row = np.hstack(tiles)
            cv2.putText(row, path, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, COLORS.get(path, (255, 0, 0)), 2)
            rows.append(row)
        width = max(r.shape[1] for r in rows)
        sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet)
    if args.smoke:
        write_result("draw_footage_smoke", {"drawn": args.out, "images": len(files)}, {"paths": args.localise})
    else:
        print(f"drawn={args.out}")


if __name__ == "__main__":
    main()
