"""Diversity: k-center greedy over embeddings, seeded with what is already labeled, with near-duplicate
suppression of neighbouring video frames inside the batch."""

from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def k_center_greedy(
    emb: np.ndarray, k: int, *, seeds: np.ndarray | None = None, blocked=None, rng: np.random.Generator | None = None
) -> list[int]:
    """Pick ``k`` rows of ``emb``, each the farthest from everything picked or seeded so far.

    ``blocked(i, chosen) -> list[int]``: rows to exclude once row i is chosen (near duplicates)."""
    n = len(emb)
    if k <= 0 or n == 0:
        return []
    x = _normalise(emb)
    dist = np.full(n, np.inf, dtype=np.float32)
    if seeds is not None and len(seeds):
        s = _normalise(seeds)
        for i in range(0, len(s), 4096):
            d = 2.0 - 2.0 * (x @ s[i : i + 4096].T)
            dist = np.minimum(dist, d.min(axis=1))
    alive = np.ones(n, bool)
    chosen: list[int] = []
    first = int(np.argmax(dist)) if np.isfinite(dist).any() else int((rng or np.random.default_rng(0)).integers(n))
    nxt = first
    while len(chosen) < k and alive.any():
        chosen.append(nxt)
        alive[nxt] = False
        if blocked is not None:
            for j in blocked(nxt):
                alive[j] = False
        d = 2.0 - 2.0 * (x @ x[nxt])
        dist = np.minimum(dist, d)
        cand = np.where(alive, dist, -np.inf)
        if not alive.any():
            break
        nxt = int(np.argmax(cand))
    return chosen


def video_neighbours(videos: list[str | None], indices: list[int | None], gap: int):
    """blocked(i) for k_center_greedy: frames of the same video within ``gap`` frames of frame i."""
    by_video: dict[str, list[tuple[int, int]]] = {}
    for row, (v, fi) in enumerate(zip(videos, indices)):
        if v is not None and fi is not None:
            by_video.setdefault(v, []).append((fi, row))

    def blocked(i: int) -> list[int]:
        v, fi = videos[i], indices[i]
        if v is None or fi is None or gap <= 0:
            return []
        return [row for f, row in by_video[v] if abs(f - fi) < gap]

    return blocked


def min_pairwise_distance(emb: np.ndarray) -> float:
    x = _normalise(emb)
    d = 2.0 - 2.0 * (x @ x.T)
    np.fill_diagonal(d, np.inf)
    return float(np.sqrt(max(d.min(), 0.0)))
