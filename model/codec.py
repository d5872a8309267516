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

from model.geometry import apply, invert, scale_matrix


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
        return self._to_input(self._standard_xy(hm)), self._argmax(hm)[2].cpu().numpy()

    def _standard_xy(self, hm: torch.Tensor) -> torch.Tensor:
        n, k, h, w = hm.shape
        px, py, maxval = self._argmax(hm)
        pxc, pyc = px.clamp(1, w - 2), py.clamp(1, h - 2)
        flat = hm.reshape(n, k, -1)

        def at(y, x):
            return flat.gather(-1, (y * w + x).unsqueeze(-1)).squeeze(-1)

        dx = torch.sign(at(py, pxc + 1) - at(py, pxc - 1)) * ((px > 0) & (px < w - 1))
        dy = torch.sign(at(pyc + 1, px) - at(pyc - 1, px)) * ((py > 0) & (py < h - 1))
        return torch.stack([px + 0.25 * dx, py + 0.25 * dy], -1).double()

    def modulate(self, hm: torch.Tensor) -> torch.Tensor:
        """Gaussian modulation of whole maps: blur each map, then rescale so its maximum stays the same."""
        n, k, h, w = hm.shape
        r = self.blur_kernel // 2
        out = self._blur_valid(F.pad(hm.reshape(n * k, h, w).float(), (r, r, r, r)), h, w)
        orig = hm.reshape(n * k, -1).amax(-1).float()
        new = out.reshape(n * k, -1).amax(-1).clamp_min(1e-12)
        return (out * (orig / new)[:, None, None]).reshape(n, k, h, w)

    def _blur_valid(self, x: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
        """Separable blur of (M, oh + 2r, ow + 2r) maps → the valid (M, oh, ow) part (a loop over taps only)."""
        kern = self._kernel1d.to(x.device, x.dtype)
        t = torch.zeros(x.shape[0], x.shape[1], ow, dtype=x.dtype, device=x.device)
        for i in range(self.blur_kernel):
            t += kern[i] * x[:, :, i : i + ow]
        out = torch.zeros(x.shape[0], oh, ow, dtype=x.dtype, device=x.device)
        for i in range(self.blur_kernel):
            out += kern[i] * t[:, i : i + oh, :]
        return out

    def decode(self, heatmaps, modulate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """DARK decoding. Returns (coords (N, K, 2) input pixels, maxvals (N, K) of the raw heatmaps).

        Only the 3×3 neighbourhood of each maximum enters the Taylor step, so the modulation is computed
        there alone: the blur of a (kernel + 2)² patch around the argmax (zero outside the map, as a blur
        of the whole map would see it). The rescale to the old maximum multiplies the map by a constant,
        which the log turns into an offset that the gradient and Hessian do not see: it is skipped.
        """
        hm = _as_tensor(heatmaps)
        n, k, h, w = hm.shape
        px, py, maxval = self._argmax(hm)
        flat = hm.reshape(n * k, h * w)
        r = self.blur_kernel // 2 if modulate else 0
        off = torch.arange(-(r + 1), r + 2)
        ys = py.reshape(-1, 1) + off  # (M, size) rows of the patch around the peak
        xs = px.reshape(-1, 1) + off
        inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
        idx = (ys.clamp(0, h - 1) * w)[:, :, None] + xs.clamp(0, w - 1)[:, None, :]
        patch = flat.gather(1, idx.reshape(n * k, -1)).reshape(idx.shape).float() * inside  # zero outside the map
        nb = self._blur_valid(patch, 3, 3) if modulate else patch
        if modulate:  # near the edge a blur sees the map's border as zeros and pulls the peak inward: raw map there
            raw = patch[:, r : r + 3, r : r + 3]
            near = ((px < r) | (px > w - 1 - r) | (py < r) | (py > h - 1 - r)).reshape(-1, 1, 1)
            nb = torch.where(near, raw, nb)
        lg = torch.log(nb.clamp_min(1e-10)).double()  # (M, 3, 3), centre at [1, 1]
        c = lg[:, 1, 1]
        dx = 0.5 * (lg[:, 1, 2] - lg[:, 1, 0])
        dy = 0.5 * (lg[:, 2, 1] - lg[:, 0, 1])
        dxx = lg[:, 1, 2] - 2 * c + lg[:, 1, 0]
        dyy = lg[:, 2, 1] - 2 * c + lg[:, 0, 1]
        dxy = 0.25 * (lg[:, 2, 2] - lg[:, 0, 2] - lg[:, 2, 0] + lg[:, 0, 0])
        det = dxx * dyy - dxy**2
        pxf, pyf = px.reshape(-1), py.reshape(-1)
        inner = (pxf >= 1) & (pxf <= w - 2) & (pyf >= 1) & (pyf <= h - 2)
        ok = (det.abs() > 1e-12) & inner & (dxx < 0) & (dyy < 0)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = -(dyy * dx - dxy * dy) / safe
        oy = -(-dxy * dx + dxx * dy) / safe
        ok = ok & (ox.abs() < 1) & (oy.abs() < 1)  # a step beyond the neighbouring pixel is not trusted
        xy = torch.stack(
            [
                pxf.double() + torch.where(ok, ox, torch.zeros_like(ox)),
                pyf.double() + torch.where(ok, oy, torch.zeros_like(oy)),
            ],
            -1,
        )
        if not bool(ok.all()):  # border peaks and flat maps: the standard quarter-pixel shift instead
            std = self._standard_xy(hm).reshape(-1, 2)
            xy = torch.where(ok.unsqueeze(-1), xy, std)
        return self._to_input(xy.reshape(n, k, 2)), maxval.cpu().numpy()


def _as_tensor(heatmaps) -> torch.Tensor:
    t = heatmaps if isinstance(heatmaps, torch.Tensor) else torch.from_numpy(np.asarray(heatmaps))
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W) or (K, H, W), got shape {tuple(t.shape)}")
    return t.detach()


class BoxCodec:
    """The person box of a whole-frame crop as a centre heatmap plus the box side, one object for the box head's
    training targets and its decoding (the refine pass crops on the decoded box).

    * ``encode``: box centres (B, 2) and sides (B,) in input-crop pixels → a Gaussian centre map (B, h, w) at the
      exact sub-pixel centre (σ in map pixels) and the target ``log(side / input_size)`` (B,).
    * ``decode``: head output (B, 2, h, w) — channel 0 the centre logit, channel 1 the log side — → centres (B, 2)
      and sides (B,) in input-crop pixels (centre: argmax + the 3×3 neighbourhood's weighted mean; side: read at
      the argmax) and the centre map's peak (B,) as a confidence.
    """

    def __init__(self, input_size: int, map_size: int, sigma: float = 2.0):
        if input_size <= 0 or map_size <= 0 or sigma <= 0:
            raise ValueError("input_size, map_size and sigma must be > 0")
        self.input_size, self.map_size, self.sigma = int(input_size), int(map_size), float(sigma)
        self._r = self.map_size / self.input_size

    def encode(self, centres: torch.Tensor, sides: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 2)
        s = torch.as_tensor(sides, dtype=torch.float32).reshape(-1)
        if len(c) != len(s):
            raise ValueError(f"{len(c)} box centres but {len(s)} sides")
        if (s <= 0).any():
            raise ValueError("box sides must be > 0")
        hc = c * self._r + 0.5 * self._r - 0.5  # input → map pixels, pixel-centre convention
        ax = torch.arange(self.map_size, dtype=torch.float32, device=c.device)
        gx = torch.exp(-((ax[None, :] - hc[:, :1]) ** 2) / (2 * self.sigma**2))  # (B, w)
        gy = torch.exp(-((ax[None, :] - hc[:, 1:]) ** 2) / (2 * self.sigma**2))  # (B, h)
        return gy[:, :, None] * gx[:, None, :], torch.log(s / self.input_size)

    def decode(self, out) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = _as_tensor(out).float().cpu()
        if out.ndim != 4 or out.shape[1] != 2:
            raise ValueError(f"box head output must be (B, 2, h, w), got {tuple(out.shape)}")
        b, _, h, w = out.shape
        cm = torch.sigmoid(out[:, 0])
        flat = cm.reshape(b, -1).argmax(1)
        y, x = flat // w, flat % w
        pad = F.pad(cm, (1, 1, 1, 1))
        rows = torch.arange(b)
        num_x, num_y, den = torch.zeros(b), torch.zeros(b), torch.zeros(b)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                v = pad[rows, y + 1 + dy, x + 1 + dx]
                num_x, num_y, den = num_x + v * dx, num_y + v * dy, den + v
        hx = x.float() + num_x / den.clamp_min(1e-9)
        hy = y.float() + num_y / den.clamp_min(1e-9)
        centres = torch.stack([(hx + 0.5) / self._r - 0.5, (hy + 0.5) / self._r - 0.5], 1)
        sides = torch.exp(out[rows, 1, y, x]) * self.input_size
        return centres.numpy().astype(np.float64), sides.numpy().astype(np.float64), cm.amax((1, 2)).numpy()

    def loss(self, out: torch.Tensor, centres: torch.Tensor, sides: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Centre map MSE (×100, to the scale of the heatmap loss) plus the L1 error of the log side, weighted by the
        centre target so it counts near the centre; frames without a box (``valid`` 0) count nothing."""
        v = valid.to(out.dtype)
        if not bool(v.any()):
            return out.sum() * 0.0
        safe = torch.where(v[:, None] > 0, centres, torch.full_like(centres, self.input_size / 2))
        g, ls = self.encode(safe, torch.where(v > 0, sides, torch.ones_like(sides)))
        lc = ((torch.sigmoid(out[:, 0]) - g) ** 2).mean((1, 2)) * 100
        lsz = ((out[:, 1] - ls[:, None, None]).abs() * g).sum((1, 2)) / g.sum((1, 2)).clamp_min(1e-6)
        return ((lc + lsz) * v).sum() / v.sum()
