"""The label audit's scoring: which labeled joints are probably wrong, from plain arrays.

Every test compares a frame's label (x, y, v) with a prediction (x, y, confidence) of a model that never trained
on that frame, in units of the frame's PCKh normaliser ``l``:

* ``disagreement``: a labeled joint's distance to the prediction / ``l`` × the model's confidence in that joint;
* ``swap``: a left/right pair whose label fits the prediction better exchanged — (the pair's distance as labeled
  − its distance exchanged) / 2 / ``l`` × the lower confidence of the two joints. A whole limb swapped flags each
  of its pairs; a swap explains the two joints' disagreement, which is then not flagged again;
* ``implausible``: a skeleton edge of the label whose log(length / person size) is a robust z-score (median,
  MAD) far from the project's own labeled bodies, and two labeled joints on one spot (closer than
  ``coincident`` × ``l``; its score is ``coincident`` / the gap) — these need no model;
* ``missing``: a joint left unlabeled (v = 0) where the model's confidence is high and its point lies inside the
  image. A joint marked occluded (v = 1) keeps its position, so it is checked as a labeled joint.

The prediction is first read flipped when more than 2/3 of its left/right pairs fit the label better
exchanged (a model that took a back view for a front one); a limb swapped in the label is only half the pairs.

``l`` is measured on the label under audit, so it is held within 2× of the person-box diagonal × the project's
median ratio (:func:`steady_norm`): a head top labeled on the neck would otherwise blow up every distance.

A flag's ``severity`` is its score over its threshold (≥ 1), which ranks flags of all reasons together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from iterate.selection import scores as sc

REASONS = ("disagreement", "swap", "implausible", "missing")


FLIP_VOTE = 2 / 3  # the prediction is read flipped when more than this share of its left/right pairs fit so


@dataclass(frozen=True)
class Thresholds:
    """The manifest's ``audit:`` section (its defaults and meanings: iterate/core/manifest.py:AuditSettings),
    built at the edge (iterate/loop/audit.py:thresholds)."""

    disagreement: float
    swap: float
    implausible_z: float
    coincident: float
    missing_conf: float
    min_bodies: int


@dataclass(frozen=True)
class Flag:
    frame: int  # row of the audited arrays
    joints: tuple[int, ...]  # one joint; two for a swap, a bone or a coincidence
    reason: str
    score: float
    severity: float  # score / threshold


def steady_norm(own: np.ndarray, diag: np.ndarray, band: float = 2.0) -> np.ndarray:
    """Each frame's PCKh ``l`` held within ``band``× of its person-box diagonal × the project's median ``l`` /
    diagonal: ``l`` is measured on the label under audit, and one wrong joint of it (a head top on the neck) would
    otherwise make every distance of the frame huge."""
    both = np.isfinite(own) & (own > 0) & (diag > 0)
    if not both.any():
        return own
    typical = np.where(diag > 0, diag * float(np.median(own[both] / diag[both])), np.nan)
    held = np.clip(own, typical / band, typical * band)
    return np.where(np.isfinite(held), held, np.where(both, own, typical))


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def audit(
    labels: np.ndarray,
    preds: np.ndarray | None,
    conf: np.ndarray | None,
    norm: np.ndarray,
    sizes: np.ndarray,
    flip_pairs: list[tuple[int, int]],
    bones: tuple[list[tuple[int, int]], np.ndarray, np.ndarray, np.ndarray] | None,
    t: Thresholds,
) -> list[Flag]:
    """Flags of N labeled frames, ranked by severity (highest first).

    ``labels`` (N, K, 3) x, y, v (v = 0: not labeled); ``preds`` (N, K, 2) image pixels, NaN where the model has
    no such joint or no out-of-sample model scored the frame (``preds`` None: none at all); ``conf`` (N, K);
    ``norm`` (N,) PCKh ``l`` in pixels (≤ 0 or NaN: the frame gets no model test); ``sizes`` (N, 2) image width
    and height; ``bones``: (skeleton edges, the frames' (N, E) log bone / size, the reference (M, E) bones of the
    project's labeled bodies and (M, E) where they are labeled), or None to skip the body test."""
    l_ok = np.isfinite(norm) & (norm > 0)
    l = np.where(l_ok, norm, 1.0)
    flags: list[Flag] = []
    if preds is not None:
        flags += _model_flags(labels, preds, conf, l, l_ok, sizes, flip_pairs, t)
    bone_test = bones is not None and int(bones[3].any(1).sum()) >= t.min_bodies
    if bone_test:
        flags += _bone_flags(labels[..., 2] > 0, bones, t)
    flags += _coincident_flags(labels, l, l_ok, bones[0] if bone_test else [], t)
    flags.sort(key=lambda f: (-f.severity, f.frame, f.joints))
    return flags


def _model_flags(
    labels: np.ndarray,
    preds: np.ndarray,
    conf: np.ndarray,
    l: np.ndarray,
    l_ok: np.ndarray,
    sizes: np.ndarray,
    flip_pairs: list[tuple[int, int]],
    t: Thresholds,
) -> list[Flag]:
    """The tests against the prediction: swap, disagreement, missing."""
    xy, lab = labels[..., :2], labels[..., 2] > 0
    has = np.isfinite(preds).all(-1) & l_ok[:, None]
    c = np.where(has, np.nan_to_num(conf), 0.0)
    p = np.nan_to_num(preds)
    d = _dist(xy, p) / l[:, None]
    if flip_pairs:
        p, c, has, d = _read_flipped(xy, lab, p, c, has, d, l, flip_pairs)
    flags, swapped = _swap_flags(xy, lab, p, c, has, d, l, flip_pairs, t)
    s = d * c
    for i, j in zip(*np.nonzero(lab & has & ~swapped & (s >= t.disagreement))):
        flags.append(Flag(int(i), (int(j),), "disagreement", float(s[i, j]), float(s[i, j] / t.disagreement)))
    w, h = sizes[:, 0:1], sizes[:, 1:2]
    inside = (p[..., 0] >= 0) & (p[..., 0] < w) & (p[..., 1] >= 0) & (p[..., 1] < h)
    for i, j in zip(*np.nonzero(~lab & has & inside & (c >= t.missing_conf))):
        flags.append(Flag(int(i), (int(j),), "missing", float(c[i, j]), float(c[i, j] / t.missing_conf)))
    return flags


def _read_flipped(xy, lab, p, c, has, d, l, flip_pairs) -> tuple[np.ndarray, ...]:
    """A model that took the person's left for the right (a back view) is read flipped back: when most pairs fit
    better exchanged, the model, not the label, is the one that swapped → the prediction, its confidence, where it
    has joints and the distances, flipped in those frames."""
    n, k = lab.shape
    perm = np.arange(k)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    df = _dist(xy, p[:, perm]) / l[:, None]
    votes, pairs = np.zeros(n), np.zeros(n)
    for a, b in flip_pairs:
        ok = lab[:, a] & lab[:, b] & has[:, a] & has[:, b]
        pairs += ok
        votes += ok & (df[:, a] + df[:, b] < d[:, a] + d[:, b])
    better = (pairs > 0) & (votes > FLIP_VOTE * pairs)  # a limb swapped in the label is half the pairs
    return (
        np.where(better[:, None, None], p[:, perm], p),
        np.where(better[:, None], c[:, perm], c),
        np.where(better[:, None], has[:, perm], has),
        np.where(better[:, None], df, d),
    )


def _swap_flags(xy, lab, p, c, has, d, l, flip_pairs, t: Thresholds) -> tuple[list[Flag], np.ndarray]:
    """Left/right pairs labeled the wrong way round → their flags, and (N, K) the joints they explain."""
    flags: list[Flag] = []
    swapped = np.zeros(lab.shape, bool)
    for a, b in flip_pairs:
        ok = lab[:, a] & lab[:, b] & has[:, a] & has[:, b]
        plain = d[:, a] + d[:, b]
        cross = (_dist(xy[:, a], p[:, b]) + _dist(xy[:, b], p[:, a])) / l
        s = (plain - cross) / 2 * np.minimum(c[:, a], c[:, b])
        for i in np.flatnonzero(ok & (s >= t.swap)):
            flags.append(Flag(int(i), (a, b), "swap", float(s[i]), float(s[i] / t.swap)))
            swapped[i, a] = swapped[i, b] = True
    return flags, swapped


def _bone_flags(lab: np.ndarray, bones: tuple, t: Thresholds) -> list[Flag]:
    """Skeleton edges far from the project's labeled bodies (robust z-score)."""
    edges, frame_bones, ref, ref_seen = bones
    z = sc.bone_z(frame_bones, ref, ref_seen, robust=True)
    flags = []
    for e, (a, b) in enumerate(edges):
        for i in np.flatnonzero(lab[:, a] & lab[:, b] & (z[:, e] >= t.implausible_z)):
            flags.append(Flag(int(i), (a, b), "implausible", float(z[i, e]), float(z[i, e] / t.implausible_z)))
    return flags


def _coincident_flags(
    labels: np.ndarray, l: np.ndarray, l_ok: np.ndarray, tested_edges: list[tuple[int, int]], t: Thresholds
) -> list[Flag]:
    """Two labeled joints on one spot; a skeleton edge the bone test ran on is left to it (it already sees a
    zero-length bone)."""
    xy, lab = labels[..., :2], labels[..., 2] > 0
    on_edge = {tuple(sorted(e)) for e in tested_edges}
    flags = []
    k = labels.shape[1]
    for a in range(k):
        for b in range(a + 1, k):
            if (a, b) in on_edge:
                continue
            gap = _dist(xy[:, a], xy[:, b]) / l
            for i in np.flatnonzero(lab[:, a] & lab[:, b] & l_ok & (gap < t.coincident)):
                s = t.coincident / max(float(gap[i]), 1e-3)
                flags.append(Flag(int(i), (a, b), "implausible", s, s))
    return flags


def frame_ranking(flags: list[Flag], n: int) -> np.ndarray:
    """(n,) each frame's highest severity (0 when nothing is flagged): the order a reviewer opens frames in."""
    out = np.zeros(n)
    for f in flags:
        out[f.frame] = max(out[f.frame], f.severity)
    return out
