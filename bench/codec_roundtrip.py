"""Image point → crop (rotated, scaled, flipped: one affine matrix) → heatmap encode → decode → back to the
image through the inverse matrix, on real LSPET labels. Last line: roundtrip_mean_error_px=…"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lspet import lspet_samples  # noqa: E402

from model.codec import DarkCodec  # noqa: E402
from model.geometry import apply, compose, crop_matrix, hflip_matrix, invert  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    errs, border = [], []
    for input_size, hm_size in ((128, 32), (256, 64), (256, 96)):
        codec = DarkCodec(input_size, hm_size, 2.0)
        for s in lspet_samples(7001, 7200):
            vis = s.keypoints[:, 2] > 0
            pts = s.keypoints[vis, :2]
            if len(pts) < 2:
                continue
            c = pts.mean(0) + rng.normal(0, 5, 2)
            side = float(np.ptp(pts, axis=0).max() * rng.uniform(1.3, 1.8) + 10)
            m = crop_matrix(tuple(c), side, input_size, rotation_deg=float(rng.uniform(-40, 40)))
            if rng.random() < 0.5:
                m = compose(hflip_matrix(input_size), m)
            crop = apply(m, pts)
            hm, w = codec.encode(crop, np.ones(len(crop)))
            xy, _ = codec.decode(hm[None])
            back = apply(invert(m), xy[0])
            hmxy = apply(codec.to_heatmap, crop)
            interior = (hmxy >= 1.0).all(1) & (hmxy <= hm_size - 2.0).all(1)  # peak and its neighbours inside
            e = np.linalg.norm(back - pts, axis=1)
            errs += list(e[(w > 0) & interior])
            border += list(e[(w > 0) & ~interior])
    errs, border = np.array(errs), np.array(border)
    print(f"points={len(errs)} max_error_px={errs.max():.5f} p99_error_px={np.quantile(errs, 0.99):.5f}")
    print(f"border_points={len(border)} (within 1 heatmap px of the edge, Gaussian cut off) "
          f"border_mean_error_px={border.mean() if len(border) else 0:.4f}")
    print(f"roundtrip_mean_error_px={errs.mean():.5f}")


if __name__ == "__main__":
    main()
