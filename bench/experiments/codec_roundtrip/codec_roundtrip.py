"""Geometry + codec against points placed analytically.

For random boxes (centre, side), rotations and horizontal flips, a keypoint is placed analytically in heatmap
space; its Gaussian is drawn there by a formula independent of the codec, decoded with the product's DARK
decoder, and taken back to the image through the product's inverse crop matrix (`model.geometry`). The
expected image point is computed by hand from the same box, rotation and flip (pixel-centre convention),
never with the product's matrices, so a wrong matrix, a half-pixel shift or a flip that does not mirror is
caught. A second figure runs the product's whole forward path (image → crop matrix → `encode` → `decode`
→ inverse) on real LSPET labels.

    python bench/experiments/codec_roundtrip/codec_roundtrip.py [--smoke]
Last line: roundtrip_mean_error_px=…
``--smoke``: 80 analytic points and 10 LSPET frames (the test suite's check) → codec_roundtrip_smoke.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from model.codec import DarkCodec  # noqa: E402
from model.geometry import apply, compose, crop_matrix, hflip_matrix, invert  # noqa: E402

import _common  # noqa: E402
from _common import lspet_samples, write_result  # noqa: E402


def expected_image_point(
    v: np.ndarray, centre: np.ndarray, side: float, rot_deg: float, flip: bool, size: int, hm: int
) -> np.ndarray:
    """Heatmap point → image point, by hand: heatmap → input crop (pixel centres), un-flip, un-rotate, un-scale."""
    u = (v + 0.5) * size / hm - 0.5  # change of resolution under the pixel-centre convention
    if flip:
        u = np.array([size - 1 - u[0], u[1]])  # mirror about the crop's centre column
    q = (u - (size / 2 - 0.5)) * side / size  # offset from the box centre, image pixels, rotated frame
    a = math.radians(rot_deg)  # the crop turned the image counter-clockwise by a: turn back
    return centre + np.array([math.cos(a) * q[0] - math.sin(a) * q[1], math.sin(a) * q[0] + math.cos(a) * q[1]])


def gaussian(v: np.ndarray, hm: int, sigma: float) -> np.ndarray:
    ys, xs = np.mgrid[0:hm, 0:hm]
    return np.exp(-((xs - v[0]) ** 2 + (ys - v[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="80 points, 10 LSPET frames: the test suite's check")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
    rng = np.random.default_rng(0)
    n = 80 if args.smoke else 2000
    errs, cases = [], []
    for size, hm in ((128, 32), (256, 64), (256, 96), (192, 48)):
        codec = DarkCodec(size, hm, 2.0)
        maps, truth, mats = [], [], []
        for _ in range(n // 4):
            centre = rng.uniform(50, 600, 2)
            side = float(rng.uniform(60, 500))
            rot = float(rng.uniform(-180, 180))
            flip = bool(rng.random() < 0.5)
            v = rng.uniform(3, hm - 4, 2)  # the peak's neighbourhood inside the map
            m = crop_matrix(tuple(centre), side, size, rotation_deg=rot)
            if flip:
                m = compose(hflip_matrix(size), m)
            maps.append(gaussian(v, hm, 2.0))
            truth.append(expected_image_point(v, centre, side, rot, flip, size, hm))
            mats.append(m)
            cases.append(side / hm)
        xy, _ = codec.decode(np.stack(maps)[:, None])
        back = np.stack([apply(invert(mt), p) for mt, p in zip(mats, xy[:, 0])])
        errs += list(np.linalg.norm(back - np.stack(truth), axis=1))
    errs = np.array(errs)
    # the whole forward path on real labels: image → crop → encode → decode → back
    fwd = []
    codec = DarkCodec(128, 32, 2.0)
    for s in lspet_samples(7001, 7010 if args.smoke else 7200):
        vis = s.keypoints[:, 2] > 0
        pts = s.keypoints[vis, :2]
        if len(pts) < 2:
            continue
        c = pts.mean(0) + rng.normal(0, 5, 2)
        side = float(np.ptp(pts, axis=0).max() * rng.uniform(1.3, 1.8) + 10)
        m = crop_matrix(tuple(c), side, 128, rotation_deg=float(rng.uniform(-40, 40)))
        if rng.random() < 0.5:
            m = compose(hflip_matrix(128), m)
        crop = apply(m, pts)
        h, w = codec.encode(crop, np.ones(len(crop)))
        xy, _ = codec.decode(h[None])
        hmxy = apply(codec.to_heatmap, crop)
        interior = (hmxy >= 3).all(1) & (hmxy <= 32 - 4).all(1) & (w > 0)
        fwd += list(np.linalg.norm(apply(invert(m), xy[0]) - pts, axis=1)[interior])
    fwd = np.array(fwd)
    print(
        f"analytic points={len(errs)} max_error_px={errs.max():.5f} p99_error_px={np.quantile(errs, 0.99):.5f} "
        f"(image px; a heatmap px is {np.mean(cases):.1f} image px on average)"
    )
    print(
        f"forward path on LSPET labels: points={len(fwd)} mean_error_px={fwd.mean():.5f} max_error_px={fwd.max():.5f}"
    )
    write_result(
        "codec_roundtrip_smoke" if args.smoke else "codec_roundtrip",
        {
            "roundtrip_mean_error_px": round(float(errs.mean()), 6),
            "roundtrip_max_error_px": round(float(errs.max()), 6),
            "forward_path_mean_error_px": round(float(fwd.mean()), 6),
        },
        {
            "analytic_points": len(errs),
            "forward_points": len(fwd),
            "settings": "input/heatmap 128/32, 256/64, 256/96, 192/48; σ 2; rotations ±180°; flips 50 %; "
            "box side 60-500 px",
        },
    )


if __name__ == "__main__":
    main()
