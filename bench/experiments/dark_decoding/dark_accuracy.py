"""DARK decoding: accuracy on synthetic heatmaps (exact and noisy), speed of the vectorised decoder against a
per-joint loop doing the same work, and what DARK is worth on a real model.

* Speed: `DarkCodec.decode` (vectorised over batch × joints) vs `loop_dark`, the same steps one joint at a
  time: argmax, the (kernel + 2)² patch around it (zeros outside the map), the separable blur of that patch to
  its 3×3 centre, raw map near the border, log, the step-1 gradient/Hessian stencil, one Newton step, the
  standard quarter-pixel shift where the step is not trusted.
* Accuracy: exact Gaussians and Gaussians with pixel noise (σ_noise 0.05 of the peak) and a second, weaker
  peak, DARK vs the standard decoder.
* Real model: the shipped base `lspet_w18s_128.pt` through `load_predictor` (the path `iterate predict` runs:
  flip TTA + box refine) on LSPET im07001–08000, DARK vs the standard decoder.

    python bench/experiments/dark_decoding/dark_accuracy.py [--smoke]
Last lines: dark_speedup=…, dark_mean_error_px=…, dark_gain_pckh05=…, dark_gain_pckh01=…
``--smoke``: 128 maps per case and 4 LSPET frames (the test suite's check) → dark_accuracy_smoke.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.core.metric_keys import PCKH01, PCKH05
from iterate.loop.scoring import score  # noqa: E402
from iterate.loop.settings import keypoint_spec  # noqa: E402
from model.codec import DarkCodec  # noqa: E402
from model.infer import load_predictor  # noqa: E402

import _common  # noqa: E402
from _common import REPO, lspet_samples, manifest, write_result  # noqa: E402


def loop_dark(hms: np.ndarray, codec: DarkCodec) -> np.ndarray:
    """The vectorised decoder's steps, one joint at a time (the shape of published per-joint decoders)."""
    k1 = codec._kernel1d.double().numpy()
    r = codec.blur_kernel // 2
    out = np.zeros((len(hms), 2))
    for i, hm in enumerate(hms):
        h, w = hm.shape
        py, px = np.unravel_index(int(np.argmax(hm)), hm.shape)
        patch = np.zeros((2 * r + 3, 2 * r + 3))
        for a in range(-(r + 1), r + 2):
            for b in range(-(r + 1), r + 2):
                y, x = py + a, px + b
                if 0 <= y < h and 0 <= x < w:
                    patch[a + r + 1, b + r + 1] = hm[y, x]
        if px < r or px > w - 1 - r or py < r or py > h - 1 - r:
            nb = patch[r : r + 3, r : r + 3]
        else:
            t = np.array(
                [
                    [sum(k1[j] * patch[row, col + j] for j in range(len(k1))) for col in range(3)]
                    for row in range(patch.shape[0])
                ]
            )
            nb = np.array(
                [[sum(k1[j] * t[row + j, col] for j in range(len(k1))) for col in range(3)] for row in range(3)]
            )
        lg = np.log(np.maximum(nb, 1e-10))
        dx, dy = 0.5 * (lg[1, 2] - lg[1, 0]), 0.5 * (lg[2, 1] - lg[0, 1])
        dxx, dyy = lg[1, 2] - 2 * lg[1, 1] + lg[1, 0], lg[2, 1] - 2 * lg[1, 1] + lg[0, 1]
        dxy = 0.25 * (lg[2, 2] - lg[0, 2] - lg[2, 0] + lg[0, 0])
        det = dxx * dyy - dxy**2
        ok = abs(det) > 1e-12 and 1 <= px <= w - 2 and 1 <= py <= h - 2 and dxx < 0 and dyy < 0
        ox = oy = 0.0
        if ok:
            ox, oy = -(dyy * dx - dxy * dy) / det, -(-dxy * dx + dxx * dy) / det
            ok = abs(ox) < 1 and abs(oy) < 1
        if ok:
            out[i] = [px + ox, py + oy]
        else:
            sx = np.sign(hm[py, min(px + 1, w - 1)] - hm[py, max(px - 1, 0)]) if 0 < px < w - 1 else 0
            sy = np.sign(hm[min(py + 1, h - 1), px] - hm[max(py - 1, 0), px]) if 0 < py < h - 1 else 0
            out[i] = [px + 0.25 * sx, py + 0.25 * sy]
    return out


def _maps(codec: DarkCodec, centres: np.ndarray, rng, noisy: bool) -> np.ndarray:
    hms = np.stack([codec.encode(c[None], np.ones(1))[0][0] for c in centres]).astype(np.float32)
    if noisy:
        for hm in hms:
            second = rng.uniform(8, codec.heatmap_size - 9, 2)
            hm += 0.4 * codec.encode(second[None], np.ones(1))[0][0]
        hms += rng.normal(0, 0.05, hms.shape).astype(np.float32)
    return hms


def synthetic(rng, n: int = 4096) -> dict:
    size, sigma = 64, 2.0
    codec = DarkCodec(size, size, sigma)  # input = heatmap resolution: errors are in heatmap pixels
    out = {}
    for noisy in (False, True):
        centres = rng.uniform(8, size - 9, size=(n, 2))
        hms = _maps(codec, centres, rng, noisy)
        batch = hms.reshape(n // 64, 64, size, size)  # n / 64 frames × 64 joints
        codec.decode(batch[:2])  # warm-up
        t0 = time.perf_counter()
        xy, _ = codec.decode(batch)
        t_vec = time.perf_counter() - t0
        std, _ = codec.decode_standard(batch)
        t0 = time.perf_counter()
        loop = loop_dark(hms, codec)
        t_loop = time.perf_counter() - t0
        tag = "noisy" if noisy else "exact"
        e = np.linalg.norm(xy.reshape(-1, 2) - centres, axis=1)
        out[tag] = {
            "dark_mean_error_px": float(e.mean()),
            "dark_max_error_px": float(e.max()),
            "standard_mean_error_px": float(np.linalg.norm(std.reshape(-1, 2) - centres, axis=1).mean()),
            "loop_vs_vectorised_max_px": float(np.abs(loop - xy.reshape(-1, 2)).max()),
            "vectorised_hm_per_s": n / t_vec,
            "loop_hm_per_s": n / t_loop,
            "speedup": t_loop / t_vec,
        }
    return out


def real_model(last: int = 8000) -> dict:
    m = manifest()
    te = lspet_samples(7001, last)
    base = REPO / "model" / "weights" / "lspet_w18s_128.pt"
    res = {}
    for name in ("dark", "standard"):
        pr = load_predictor(base)
        if name == "standard":  # the same path with the decoder swapped
            pr.codec.decode = lambda hm, modulate=True, c=pr.codec: c.decode_standard(hm)
        res[name] = score(keypoint_spec(m), pr.predict(te).keypoints, te)
    res["inference"] = load_predictor(base).settings.describe()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="128 maps per case, 4 LSPET frames: the test suite's check")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
    rng = np.random.default_rng(0)
    syn = synthetic(rng, 128 if args.smoke else 4096)
    for tag, r in syn.items():
        print(
            f"{tag}: DARK {r['dark_mean_error_px']:.4f} px (max {r['dark_max_error_px']:.4f}), standard "
            f"{r['standard_mean_error_px']:.4f} px; loop agrees to {r['loop_vs_vectorised_max_px']:.1e} px; "
            f"{r['vectorised_hm_per_s']:.0f} vs {r['loop_hm_per_s']:.0f} maps/s"
        )
    real = real_model(7004 if args.smoke else 8000)
    print(
        f"shipped base on LSPET 07001-08000 ({real['inference']}): DARK PCKh@0.5 {real['dark'][PCKH05]:.2f} "
        f"@0.1 {real['dark'][PCKH01]:.2f}; standard {real['standard'][PCKH05]:.2f} / {real['standard'][PCKH01]:.2f}"
    )
    write_result(
        "dark_accuracy_smoke" if args.smoke else "dark_accuracy",
        {
            "dark_speedup": round(syn["exact"]["speedup"], 1),
            "dark_mean_error_px": round(syn["exact"]["dark_mean_error_px"], 6),
            "dark_noisy_mean_error_px": round(syn["noisy"]["dark_mean_error_px"], 4),
            "standard_noisy_mean_error_px": round(syn["noisy"]["standard_mean_error_px"], 4),
            "shipped_pckh05": real["dark"][PCKH05],
            "shipped_pckh01": real["dark"][PCKH01],
            "dark_gain_pckh05": round(real["dark"][PCKH05] - real["standard"][PCKH05], 2),
            "dark_gain_pckh01": round(real["dark"][PCKH01] - real["standard"][PCKH01], 2),
        },
        {
            "synthetic": syn,
            "real_model": real,
            "heatmaps": f"{128 if args.smoke else 4096:,} per case, 64×64, σ 2, centres ≥ 8 px from the edge",
        },
    )


if __name__ == "__main__":
    main()
