"""The DARK keypoint codec, one object for training targets and for inference.

* ``encode``: unbiased Gaussian heatmaps centred at the exact sub-pixel location (no rounding).
* ``decode``: DARK (Zhang et al., CVPR 2020): Gaussian modulation of the heatmap (blur, rescaled to keep
  its maximum), log, then one second-order Taylor step from the argmax using the gradient and Hessian —
  vectorised over batch × joints (no Python loop per joint).
* ``decode_standard``: argmax + a quarter-pixel shift towards the higher neighbour (HRNet's default), kept
  for comparison.

Coordinates in and out are **input-crop** pixels (pixel-centre convention, see :mod:`model.geometry`); the
input→heatmap change of resolution is the codec's own matrix, so callers never rescale by hand.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .geometry import apply, invert, scale_matrix


class DarkCodec:
    def __init__(self, input_size: int, heatmap_size: int, sigma: float = 2.0, blur_kernel: int | None = None):
        if input_size <= 0 or heatmap_size <= 0 or sigma <= 0:
            raise ValueError("input_size, heatmap_size and sigma must be > 0")
        self.input_size = int(input_size)
        self.heatmap_size = int(heatmap_size)
        self.sigma = float(sigma)
        k = blur_kernel or int(2 * math.ceil(3 * self.sigma) + 1)
        if k % 2 == 0:
            raise ValueError("blur_kernel must be odd")
        self.blur_kernel = k
        self.to_heatmap = scale_matrix(self.heatmap_size / self.input_size)
        self.from_heatmap = invert(self.to_heatmap)
        ax = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
        g = torch.exp(-(ax**2) / (2 * self.sigma**2))
        self._kernel1d = (g / g.sum()).float()

    # -- encode ------------------------------------------------------------------------------------
    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints (K, 2) in input pixels, visible (K,) → heatmaps (K, H, W) float32 and weights (K,).

        A joint that is not labeled, or whose centre falls outside the heatmap, gets weight 0 and an empty map.
        """
        kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
        vis = np.asarray(visible).reshape(-1)
        if len(kps) != len(vis):
            raise ValueError(f"{len(kps)} keypoints but {len(vis)} visibility flags")
        h = self.heatmap_size
        mu = apply(self.to_heatmap, kps)  # (K, 2) heatmap coordinates
        inside = (mu >= -0.5).all(1) & (mu <= h - 0.5).all(1) & np.isfinite(mu).all(1)
        w = ((vis > 0) & inside).astype(np.float32)
        xs = np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs[None, :] - mu[:, :1]) ** 2) / (2 * self.sigma**2))  # (K, W)
        gy = np.exp(-((xs[None, :] - mu[:, 1:]) ** 2) / (2 * self.sigma**2))  # (K, H)
        hm = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
        hm *= w[:, None, None]
        return hm, w

    # -- decode ------------------------------------------------------------------------------------
    def _argmax(self, hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, -1)
        maxval, idx = flat.max(-1)
        return (idx % w), torch.div(idx, w, rounding_mode="floor"), maxval

    def _to_input(self, xy_hm: torch.Tensor) -> np.ndarray:
        return apply(self.from_heatmap, xy_hm.double().cpu().numpy())

    def decode_standard(self, heatmaps) -> tuple[np.ndarray, np.ndarray]:
        """Argmax + quarter-pixel shift. Returns (coords (N, K, 2) input pixels, maxvals (N, K))."""
        hm = _as_tensor(heatmaps)
        n, k, h, w = hm.shape
        px, py, maxval = self._argmax(hm)
        pxc, pyc = px.clamp(1, w - 2), py.clamp(1, h - 2)
        flat = hm.reshape(n, k, -1)

        def at(y, x):
            return flat.gather(-1, (y * w + x).unsqueeze(-1)).squeeze(-1)

        dx = torch.sign(at(py, pxc + 1) - at(py, pxc - 1)) * ((px > 0) & (px < w - 1))
        dy = torch.sign(at(pyc + 1, px) - at(pyc - 1, px)) * ((py > 0) & (py < h - 1))
        xy = torch.stack([px + 0.25 * dx, py + 0.25 * dy], -1).double()
        return self._to_input(xy), maxval.cpu().numpy()

    def modulate(self, hm: torch.Tensor) -> torch.Tensor:
        """Gaussian modulation: blur each map, then rescale so its maximum stays the same."""
        n, k, h, w = hm.shape
        x = hm.reshape(n * k, 1, h, w).float()
        orig_max = x.amax(dim=(2, 3), keepdim=True)
        kern = self._kernel1d.to(x.device)
        r = self.blur_kernel // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0)), kern.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, r, r)), kern.view(1, 1, -1, 1))
        new_max = x.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        return (x * orig_max / new_max).reshape(n, k, h, w)

    def decode(self, heatmaps, modulate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """DARK decoding. Returns (coords (N, K, 2) input pixels, maxvals (N, K) of the raw heatmaps)."""
        hm = _as_tensor(heatmaps)
        n, k, h, w = hm.shape
        px, py, maxval = self._argmax(hm)
        m = self.modulate(hm) if modulate else hm.float()
        lg = torch.log(m.clamp_min(1e-10)).double().reshape(n, k, -1)
        xc, yc = px.clamp(2, w - 3), py.clamp(2, h - 3)  # the ±2 neighbourhood must exist
        idx = torch.stack([
            yc * w + xc, yc * w + xc + 1, yc * w + xc - 1, (yc + 1) * w + xc, (yc - 1) * w + xc,
            yc * w + xc + 2, yc * w + xc - 2, (yc + 2) * w + xc, (yc - 2) * w + xc,
            (yc + 1) * w + xc + 1, (yc - 1) * w + xc + 1, (yc + 1) * w + xc - 1, (yc - 1) * w + xc - 1,
        ], -1)
        v = lg.gather(-1, idx.reshape(n, k, -1)).reshape(n, k, 13)
        c, r_, l_, d_, u_, rr, ll, dd, uu, dr, ur, dl, ul = v.unbind(-1)
        dx = 0.5 * (r_ - l_)
        dy = 0.5 * (d_ - u_)
        dxx = 0.25 * (rr - 2 * c + ll)
        dyy = 0.25 * (dd - 2 * c + uu)
        dxy = 0.25 * (dr - ur - dl + ul)
        det = dxx * dyy - dxy**2
        ok = (det.abs() > 1e-12) & (px >= 2) & (px <= w - 3) & (py >= 2) & (py <= h - 3)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = -(dyy * dx - dxy * dy) / safe
        oy = -(-dxy * dx + dxx * dy) / safe
        ok = ok & (ox.abs() < 1) & (oy.abs() < 1)  # a step beyond the neighbouring pixel is not trusted
        ox, oy = torch.where(ok, ox, torch.zeros_like(ox)), torch.where(ok, oy, torch.zeros_like(oy))
        xy = torch.stack([xc.double() + ox, yc.double() + oy], -1)
        xy = torch.where(ok.unsqueeze(-1), xy, torch.stack([px, py], -1).double())
        return self._to_input(xy), maxval.cpu().numpy()


def _as_tensor(heatmaps) -> torch.Tensor:
    t = heatmaps if isinstance(heatmaps, torch.Tensor) else torch.from_numpy(np.asarray(heatmaps))
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W) or (K, H, W), got shape {tuple(t.shape)}")
    return t.detach()
