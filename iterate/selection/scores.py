"""Uncertainty scores from a batch of heatmaps (higher = the model is less sure).

* ``confidence``: 1 − the mean over joints of the heatmap maximum;
* ``flip``: flip-TTA disagreement — the mean distance between the plain and the flipped-back prediction,
  divided by the PCKh normaliser measured on the prediction itself;
* ``entropy``: multiple-peak entropy (Liu & Ferrari, ICCV 2017) — per joint, the local maxima of the heatmap
  normalised into a distribution, its entropy; averaged over joints;
* ``plausibility``: how unlike a labeled body the predicted pose is — per skeleton edge, the log of the bone's
  length over the person's size as a z-score against the labeled frames' bones; mean |z| over edges
  (`select` and `simulate`; not in the default weights);
* ``snapshot``: a two-member committee of snapshots — the same normalised distance between this round's model's
  prediction and the previous round's model's (where one scored the frame; `iterate simulate` only, measured as
  an arm: see docs/evidence.md).
Combined by rank (:func:`combine`), with the manifest's weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from iterate.core.score_kinds import PASS_SCORES

NAMES = PASS_SCORES  # the columns of one scoring pass (the registry: iterate/core/score_kinds.py)


def confidence(hm: torch.Tensor) -> np.ndarray:
    return (1.0 - hm.flatten(2).amax(-1).clamp(0, 1).mean(-1)).numpy()


def peak_entropy(hm: torch.Tensor, rel_threshold: float = 0.1) -> np.ndarray:
    """(N, K, H, W) → (N,) mean over joints of the entropy of the local-maximum values."""
    h = hm.clamp_min(0)
    mx = F.max_pool2d(h.flatten(0, 1).unsqueeze(1), 3, stride=1, padding=1).view_as(h)
    top = h.flatten(2).amax(-1, keepdim=True).unsqueeze(-1)
    peaks = torch.where((h == mx) & (h > rel_threshold * top) & (h > 1e-4), h, torch.zeros_like(h)).flatten(2)
    p = peaks / peaks.sum(-1, keepdim=True).clamp_min(1e-12)
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # (N, K)
    return ent.mean(-1).numpy()


def flip_disagreement(plain: np.ndarray, flipped: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """plain/flipped (N, K, 2) image pixels, norm (N,) pixels → (N,) mean normalised distance (also the
    ``snapshot`` score, between two models' predictions)."""
    d = np.linalg.norm(plain - flipped, axis=-1).mean(-1)
    return d / np.maximum(norm, 1.0)


def bone_logs(kps: np.ndarray, edges: list[tuple[int, int]], size: np.ndarray) -> np.ndarray:
    """(N, K, 2) keypoints, skeleton edges as joint indices, (N,) person sizes → (N, E) log(bone length / size)."""
    ln = np.stack([np.linalg.norm(kps[:, i] - kps[:, j], axis=-1) for i, j in edges], 1)
    return np.log(np.maximum(ln, 1e-3) / np.maximum(size, 1.0)[:, None])


def bone_z(bones: np.ndarray, ref: np.ndarray, ref_seen: np.ndarray, *, robust: bool = False) -> np.ndarray:
    """|z| per edge (N, E) of ``bones`` (N, E) against the labeled ``ref`` bones (M, E), each edge counted on the
    labeled frames where both its joints are labeled (``ref_seen``); an edge seen on fewer than 2 frames is 0.
    ``robust``: median and 1.4826 × MAD instead of mean and standard deviation (the label audit, whose reference
    holds the very errors it looks for)."""
    z = np.zeros_like(bones)
    for e in range(bones.shape[1]):
        r = ref[ref_seen[:, e], e]
        if len(r) >= 2:
            if robust:
                mid = np.median(r)
                z[:, e] = np.abs(bones[:, e] - mid) / (1.4826 * np.median(np.abs(r - mid)) + 1e-3)
            else:
                z[:, e] = np.abs(bones[:, e] - r.mean()) / (r.std() + 1e-3)
    return z


def plausibility(bones: np.ndarray, ref: np.ndarray, ref_seen: np.ndarray) -> np.ndarray:
    """Mean over edges of :func:`bone_z` of predicted ``bones`` (N, E) against the labeled ``ref`` bones (M, E)."""
    return bone_z(bones, ref, ref_seen).mean(1)


def rank01(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank)."""
    n = len(x)
    if n <= 1:
        return np.zeros(n)
    order = np.argsort(x, kind="stable")
    r = np.empty(n)
    r[order] = np.arange(n)
    xs = x[order]
    # average ties
    _, start, counts = np.unique(xs, return_index=True, return_counts=True)
    for s0, c in zip(start, counts):
        if c > 1:
            r[order[s0 : s0 + c]] = s0 + (c - 1) / 2
    return r / (n - 1)


def combine(scores: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = sum(w for k, w in weights.items() if k in scores and w > 0)
    if total <= 0:
        raise ValueError("selection.weights: every uncertainty weight is 0")
    return sum(w * rank01(scores[k]) for k, w in weights.items() if k in scores and w > 0) / total
