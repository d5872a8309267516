"""Keypoint metrics — the one definition of each figure the product prints.

Arrays: ``pred`` and ``gt`` (N, K, 2) image pixels, ``vis`` (N, K) label visibility (> 0 = labeled).
Joints without a label are excluded; a labeled joint whose prediction is missing (NaN) is a miss.

* PCKh@α: a labeled joint is correct when it lies within α·l of its label; ``l`` is the frame's normaliser
  (:func:`normalisers`). The figure pools every labeled joint of every scored frame.
* MeanSmS@α: the mean, over the manifest's height joints, of each joint's PCKh@α (the seed: "the mean
  PCKh@0.1 metric calculated only on the height measurement applying relevant joints").
* 95 % intervals: a seeded bootstrap over frames (:func:`frame_interval`): the joints of one frame are
  correlated, so frames, not joints, are the independent trials.
* A frame with no normaliser of the manifest's kind gets the fallback (the person box's diagonal times the
  median normaliser-to-box ratio of the frames that have both); it is counted, never dropped in silence.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05

N_BOOT = 1000


# -- normalisers ------------------------------------------------------------------------------------
@dataclass
class Normalisers:
    lengths: np.ndarray  # (N,) the PCKh ``l`` per frame; NaN where a frame cannot be scored
    fallback: np.ndarray  # (N,) bool: ``l`` came from the fallback
    ratio: float | None  # the normaliser-to-person-box ratio the fallback used
    ratio_frames: int  # frames the ratio was measured on (0: a fixed ratio, or none)

    @property
    def scored(self) -> np.ndarray:
        return self.lengths > 0

    def note(self, kind: str) -> str | None:
        n = int(self.fallback.sum())
        if not n:
            return None
        src = f"median of {self.ratio_frames} frames that have both" if self.ratio_frames else "manifest's fixed ratio"
        return (
            f"{n} frame(s) have no {kind} normaliser and are scored with the fallback: the labeled joints' box "
            f"diagonal × {self.ratio:.3f} ({src})"
        )


def person_box_diagonal(gt: np.ndarray, vis: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """(N,) diagonal of the person box: ``boxes`` (N, 4) x, y, w, h where given, else the labeled joints' tight box."""
    labeled = np.asarray(vis) > 0
    big = np.where(labeled[..., None], gt, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame with no labeled joint → NaN
        span = np.nanmax(big, axis=1) - np.nanmin(big, axis=1)
    out = np.hypot(span[:, 0], span[:, 1])
    out[labeled.sum(1) < 2] = np.nan
    if boxes is not None:
        bx = np.asarray(boxes, dtype=np.float64)
        d = np.hypot(bx[:, 2], bx[:, 3])
        out = np.where(np.isfinite(d) & (d > 0), d, out)
    return out


def _primary(gt, vis, normalizer, names, head_boxes, boxes) -> np.ndarray:
    n = len(gt)
    out = np.full(n, np.nan)
    if normalizer.kind == "head_box":
        if head_boxes is not None:
            hb = np.asarray(head_boxes, dtype=np.float64).reshape(n, 4)
            out = 0.6 * np.hypot(hb[:, 2], hb[:, 3])
    elif normalizer.kind == "head_segment":
        a, b = (names.index(j) for j in normalizer.joints)
        ok = (vis[:, a] > 0) & (vis[:, b] > 0)
        d = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
        out = np.where(ok, d, np.nan)
    else:
        out = person_box_diagonal(gt, vis, boxes)
    out = out * normalizer.factor
    out[~(out > 0)] = np.nan
    return out


def normalisers(
    gt: np.ndarray,
    vis: np.ndarray,
    normalizer,
    names: list[str],
    head_boxes: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
) -> Normalisers:
    """The PCKh ``l`` of every frame, with the manifest's fallback for frames that lack their own.

    ``head_box``: 0.6 × the head box diagonal (MPII's head size; ``head_boxes`` (N, 4) x, y, w, h);
    ``head_segment``: the distance between the two named joints when both are labeled;
    ``person_box``: the diagonal of ``boxes`` (N, 4), else of the labeled joints' tight box.
    Each is multiplied by ``normalizer.factor``. A frame without one gets, unless ``normalizer.fallback`` is
    ``none``, its person-box diagonal × the median ratio ``l`` / diagonal over the frames that have both (or
    ``normalizer.fallback_ratio`` when set).
    """
    gt = np.asarray(gt, dtype=np.float64)
    vis = np.asarray(vis)
    own = _primary(gt, vis, normalizer, names, head_boxes, boxes)
    fallback = np.zeros(len(gt), bool)
    ratio, ratio_frames = None, 0
    missing = ~(own > 0) & ((vis > 0).sum(1) >= 1)
    if missing.any() and getattr(normalizer, "fallback", "person_box_ratio") != "none":
        diag = person_box_diagonal(gt, vis, boxes)
        both = (own > 0) & (diag > 0)
        fixed = getattr(normalizer, "fallback_ratio", None)
        if fixed:
            ratio = float(fixed)
        elif both.any():
            ratio, ratio_frames = float(np.median(own[both] / diag[both])), int(both.sum())
        if ratio:
            fb = missing & (diag > 0)
            own = np.where(fb, diag * ratio, own)
            fallback = fb
    return Normalisers(own, fallback, ratio, ratio_frames)


# -- hits and summaries -------------------------------------------------------------------------------
def pck_hits(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, norm: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """(N, K) array: 1 correct, 0 wrong (a missing prediction is wrong), NaN not labeled.

    Refuses a frame with a label but a zero or missing normaliser: callers score only ``Normalisers.scored``.
    """
    norm = np.asarray(norm, dtype=np.float64)
    labeled = np.asarray(vis) > 0
    bad = labeled.any(1) & ~(norm > 0)
    if bad.any():
        raise ValueError(f"normaliser is zero or undefined for frame(s) {np.flatnonzero(bad)[:5].tolist()}")
    d = np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = (d <= alpha * norm[:, None]).astype(np.float64)  # NaN distance (no prediction) → False → miss
    hit[~labeled] = np.nan
    return hit


@dataclass
class PCK:
    mean: float  # % over every labeled joint
    per_joint: np.ndarray  # % per joint (NaN where no label)
    count: int  # labeled joints
    frames: int


def summarise(hits: np.ndarray, joints: list[int] | None = None) -> PCK:
    h = hits if joints is None else hits[:, joints]
    labeled = ~np.isnan(h)
    count = int(labeled.sum())
    with np.errstate(invalid="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a joint with no label anywhere → NaN
            per_joint = np.nanmean(h, axis=0) * 100 if len(h) else np.full(h.shape[1], np.nan)
    mean = float(np.nansum(h) / count * 100) if count else float("nan")
    return PCK(mean, per_joint, count, int(labeled.any(1).sum()) if len(h) else 0)


def mean_sms(hits: np.ndarray, height_joints: list[int]) -> float:
    """MeanSmS: the mean over the height joints of each joint's PCKh (joints never labeled are left out)."""
    if not height_joints or not len(hits):
        return float("nan")
    per = summarise(hits, height_joints).per_joint
    per = per[~np.isnan(per)]
    return float(per.mean()) if len(per) else float("nan")


def bootstrap_rows(n: int, n_boot: int = N_BOOT, seed: int = 0, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n_boot, n) row indices drawn with replacement: the one bootstrap of the product. Frames for an evaluation's
    interval (:func:`frame_interval`, chunked), each group of the in-loop control, the seeds of a simulation. Seeded
    (``seed``), or drawn from ``rng`` to continue one stream."""
    rng = np.random.default_rng(seed) if rng is None else rng
    return rng.integers(0, n, size=(n_boot, n))


def frame_interval(hits: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """95 % interval (in %) of pooled PCKh by a seeded bootstrap over frames (vectorised, chunked)."""
    h = np.asarray(hits, dtype=np.float64)
    n_lab = (~np.isnan(h)).sum(1)
    keep = n_lab > 0
    k = np.nansum(h, axis=1)[keep]
    n = n_lab[keep].astype(np.float64)
    if not len(k):
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    m = len(k)
    stats = np.empty(n_boot)
    step = max(1, min(n_boot, 4_000_000 // m))  # resamples per chunk: bounded memory at any N
    for s in range(0, n_boot, step):
        idx = bootstrap_rows(m, min(step, n_boot - s), rng=rng)
        stats[s : s + len(idx)] = k[idx].sum(1) / n[idx].sum(1)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (100 * float(lo), 100 * float(hi))


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion, in % (the frame-level binomial reference in the tests)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (100 * max(0.0, c - half), 100 * min(1.0, c + half))


def interval_half_width(n: int, p: float = 0.5) -> float:
    """± points of the 95 % interval of a proportion ``p`` over ``n`` frames, each frame one trial (Wilson): the
    frame-level binomial, widest at p = 50 % and for frames whose joints are all right or all wrong together — the
    bootstrap over frames (:func:`frame_interval`) is narrower when a frame's joints disagree."""
    lo, hi = wilson(p * n, n)
    return (hi - lo) / 2


def frames_for_interval(half_width: float, p: float = 0.5) -> int:
    """The fewest frames whose 95 % interval (:func:`interval_half_width`) is at most ± ``half_width`` points: the
    rule behind every "too few frames" warning (±5 points: 381 frames, ±10: 93 at p = 50 %)."""
    if not (half_width > 0):
        raise ValueError("half_width must be > 0")
    lo, hi = 1, 2
    while interval_half_width(hi, p) > half_width:
        lo, hi = hi, hi * 2
    while lo < hi:  # the half-width falls as n grows: the first n at or under it
        mid = (lo + hi) // 2
        if interval_half_width(mid, p) <= half_width:
            hi = mid
        else:
            lo = mid + 1
    return lo


def keypoint_scores(
    pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, norms: Normalisers, height_joints: list[int]
) -> dict:
    """The training-time and simulation figures (%), from the same definitions the report uses:
    ``pckh@0.1``, ``pckh@0.5``, ``mean_sms@0.1``, ``frames`` (labeled frames scored), ``frames_fallback``."""
    ok = norms.scored
    h01 = pck_hits(pred[ok], gt[ok], vis[ok], norms.lengths[ok], 0.1)
    h05 = pck_hits(pred[ok], gt[ok], vis[ok], norms.lengths[ok], 0.5)
    return {
        PCKH01: round(summarise(h01).mean, 3),
        PCKH05: round(summarise(h05).mean, 3),
        MEAN_SMS01: round(mean_sms(h01, height_joints), 3),
        "frames": int(summarise(h01).frames),
        "frames_fallback": int((norms.fallback & ok).sum()),
    }


# -- height ---------------------------------------------------------------------------------------------
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
