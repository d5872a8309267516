"""Keypoint metrics: PCKh@α with the manifest's normaliser, MeanSmS@α, height error, intervals.

Arrays: ``pred`` and ``gt`` (N, K, 2) image pixels, ``vis`` (N, K) label visibility (> 0 = labeled).
Joints without a label are excluded. A frame whose normaliser is zero or undefined is refused by
:func:`pck_hits` (ValueError) and left out, counted, by :func:`normaliser_lengths` callers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


def normaliser_lengths(gt: np.ndarray, vis: np.ndarray, normalizer, names: list[str],
                       head_boxes: np.ndarray | None = None, boxes: np.ndarray | None = None) -> np.ndarray:
    """The PCKh ``l`` per frame (NaN where it cannot be computed).

    ``head_box``: 0.6 × the head box diagonal (MPII's head size; ``head_boxes`` (N, 4) x, y, w, h);
    ``head_segment``: the distance between the two named joints when both are labeled;
    ``person_box``: the diagonal of ``boxes`` (N, 4), else of the labeled joints' tight box.
    Each is multiplied by ``normalizer.factor``.
    """
    n = len(gt)
    out = np.full(n, np.nan)
    if normalizer.kind == "head_box":
        if head_boxes is not None:
            hb = np.asarray(head_boxes, dtype=np.float64)
            out = 0.6 * np.hypot(hb[:, 2], hb[:, 3])
    elif normalizer.kind == "head_segment":
        a, b = (names.index(j) for j in normalizer.joints)
        ok = (vis[:, a] > 0) & (vis[:, b] > 0)
        d = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
        out = np.where(ok, d, np.nan)
    else:
        if boxes is not None:
            bx = np.asarray(boxes, dtype=np.float64)
            out = np.hypot(bx[:, 2], bx[:, 3])
        else:
            for i in range(n):
                p = gt[i][vis[i] > 0]
                if len(p) >= 2:
                    out[i] = float(np.hypot(*(p.max(0) - p.min(0))))
    out = out * normalizer.factor
    out[~(out > 0)] = np.nan
    return out


def pck_hits(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, norm: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """(N, K) array: 1 correct, 0 wrong, NaN not labeled. Refuses a zero or missing normaliser."""
    norm = np.asarray(norm, dtype=np.float64)
    labeled = np.asarray(vis) > 0
    bad = labeled.any(1) & ~(norm > 0)
    if bad.any():
        raise ValueError(f"normaliser is zero or undefined for frame(s) {np.flatnonzero(bad)[:5].tolist()}")
    d = np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = (d <= alpha * norm[:, None]).astype(np.float64)
    hit[~labeled] = np.nan
    return hit


@dataclass
class PCK:
    mean: float            # % over every labeled joint
    per_joint: np.ndarray  # % per joint (NaN where no label)
    count: int             # labeled joints
    frames: int


def summarise(hits: np.ndarray, joints: list[int] | None = None) -> PCK:
    h = hits if joints is None else hits[:, joints]
    labeled = ~np.isnan(h)
    count = int(labeled.sum())
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a joint with no label anywhere → NaN
            per_joint = np.nanmean(np.where(labeled, h, np.nan), axis=0) * 100 if len(h) else np.array([])
    mean = float(np.nansum(h) / count * 100) if count else float("nan")
    return PCK(mean, per_joint, count, int(labeled.any(1).sum()) if len(h) else 0)


def pckh(pred, gt, vis, norm, alpha: float = 0.1) -> PCK:
    """Frames without a normaliser are dropped here (use :func:`pck_hits` to be told)."""
    keep = np.asarray(norm) > 0
    return summarise(pck_hits(pred[keep], gt[keep], vis[keep], norm[keep], alpha))


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion, in %."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (100 * max(0.0, c - half), 100 * min(1.0, c + half))


def skeleton_height(kps: np.ndarray, vis: np.ndarray, chains: list[list[int]]) -> np.ndarray:
    """(N,) height along the manifest's chains, averaged over the chains fully labeled (NaN if none)."""
    n = len(kps)
    out = np.full(n, np.nan)
    for i in range(n):
        hs = []
        for ch in chains:
            if all(vis[i, j] > 0 for j in ch):
                hs.append(sum(float(np.linalg.norm(kps[i, a] - kps[i, b])) for a, b in zip(ch[:-1], ch[1:])))
        if hs:
            out[i] = float(np.mean(hs))
    return out


def height_error(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, chains: list[list[int]]) -> np.ndarray:
    """(N,) |predicted − labeled| skeleton height in % of the labeled height (chains labeled in the gt only)."""
    h_gt = skeleton_height(gt, vis, chains)
    h_pr = skeleton_height(pred, vis, chains)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(h_pr - h_gt) / h_gt * 100
