"""The label audit's scoring: which labeled joints are probably wrong, from plain arrays.

Every test compares a frame's label (x, y, v) with a prediction (x, y, confidence) of a model that never trained
on that frame, in units of the frame's PCKh normaliser ``l``:

* ``disagreement``: a labeled joint's distance to the prediction measured against the model's own error, which
  is large and shared by a frame's joints: / the median distance of the frame's joints (at least
  ``FRAME_FLOOR``), × the model's confidence in the joint, × (1 + ``BONE_WEIGHT`` × the robust z-score of the
  joint's least unusual labeled bone, when the bone test runs): a joint labeled off its place stands out of its
  frame and bends every bone it ends;
* ``swap``: a limb (a shoulder or hip pair and the pairs beyond it, :func:`limb_body`) labeled left for right:
  how far the label's torso is crossed (−cos of its shoulders' left → right against its hips', a test of the
  label alone, given to the torso limb the model blames) + how much better the prediction fits the label with the
  limb exchanged (Σ confidence × min(distance / ``l``, 1) as labeled − exchanged) / (``SWAP_COST`` per pair).
  Each pair of the limb gets a flag; a swap explains its joints' disagreement, which is then not flagged again;
* ``implausible``: a skeleton edge of the label whose log(length / person size) is a robust z-score (median,
  MAD) far from the project's own labeled bodies, and two labeled joints on one spot (closer than
  ``coincident`` × ``l``; its score is ``coincident`` / the gap) — these need no model;
* ``missing``: a joint left unlabeled (v = 0) where the model's confidence × the share of the joint's skeleton
  neighbours that are labeled is high and its point lies inside the image (a joint left out between labeled ones
  was forgotten more often than one of a limb the picture cuts off). A joint marked occluded (v = 1) keeps its
  position, so it is checked as a labeled joint.

The prediction is first read flipped when more than 2/3 of its left/right pairs fit the label better
exchanged (a model that took a back view for a front one); a limb swapped in the label is only half the pairs.

``l`` is measured on the label under audit, so it is held within 2× of the person-box diagonal × the project's
median ratio (:func:`steady_norm`): a head top labeled on the neck would otherwise blow up every distance.

A flag's ``severity`` is its score over its threshold (≥ 1), which ranks flags of all reasons together.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from iterate.selection import scores as sc

REASONS = ("disagreement", "swap", "implausible", "missing")


FLIP_VOTE = 2 / 3  # the prediction is read flipped when more than this share of its left/right pairs fit so
SWAP_COST = 10 / 3  # a limb's cost gain per left/right pair (Σ confidence × distance / l) worth a crossed torso
COST_CAP = 1.0  # a joint's distance / l counts at most this much in a limb's cost: a wild joint does not decide
ROOTS = ("shoulder", "hip")  # joint names that root a torso limb
BONE_WEIGHT = 0.5  # a joint's disagreement × (1 + this × the robust z-score of its least unusual bone)
FRAME_FLOOR = 0.1  # a frame's median distance (in l) counts as at least this (a frame the model got right)


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
class Body:
    """The limbs a swap exchanges: each limb's left/right pairs (left first), from its root out; ``torso``: the
    limbs rooted on the torso (shoulders, hips), whose roots' left → right should run the same way."""

    limbs: tuple[tuple[tuple[int, int], ...], ...]
    torso: tuple[int, ...]


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
    body: Body | None = None,
) -> list[Flag]:
    """Flags of N labeled frames, ranked by severity (highest first).

    ``labels`` (N, K, 3) x, y, v (v = 0: not labeled); ``preds`` (N, K, 2) image pixels, NaN where the model has
    no such joint or no out-of-sample model scored the frame (``preds`` None: none at all); ``conf`` (N, K);
    ``norm`` (N,) PCKh ``l`` in pixels (≤ 0 or NaN: the frame gets no model test); ``sizes`` (N, 2) image width
    and height; ``bones``: (skeleton edges, the frames' (N, E) log bone / size, the reference (M, E) bones of the
    project's labeled bodies and (M, E) where they are labeled), or None to skip the body test."""
    l_ok = np.isfinite(norm) & (norm > 0)
    l = np.where(l_ok, norm, 1.0)
    lab = labels[..., 2] > 0
    flags: list[Flag] = []
    bone_test = bones is not None and int(bones[3].any(1).sum()) >= t.min_bodies
    z = sc.bone_z(bones[1], bones[2], bones[3], robust=True) if bone_test else None
    if preds is None:  # no model: the swap test still judges the label's torso
        preds, conf = np.full(lab.shape + (2,), np.nan), np.zeros(lab.shape)
    joint_z = _joint_bone_z(z, bones[0], lab) if z is not None else None
    near = _labeled_neighbours(bones[0] if bones is not None else [], lab)
    flags += _model_flags(labels, preds, conf, l, l_ok, sizes, flip_pairs, (body, joint_z, near), t)
    if z is not None:
        flags += _bone_flags(lab, bones[0], z, t)
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
    label_side: tuple[Body | None, np.ndarray | None, np.ndarray],
    t: Thresholds,
) -> list[Flag]:
    """The tests against the prediction: swap, disagreement, missing. ``label_side``: what the label says of
    itself — its limbs, each labeled joint's bone evidence (:func:`_joint_bone_z`, None without the bone test)
    and each joint's share of labeled skeleton neighbours (:func:`_labeled_neighbours`)."""
    body, bone, near = label_side
    xy, lab = labels[..., :2], labels[..., 2] > 0
    has = np.isfinite(preds).all(-1) & l_ok[:, None]
    c = np.where(has, np.nan_to_num(conf), 0.0)
    p = np.nan_to_num(preds)
    d = _dist(xy, p) / l[:, None]
    if flip_pairs:
        p, c, has, d = _read_flipped(xy, lab, p, c, has, d, l, flip_pairs)
    flags, swapped = _swap_flags(xy, lab, p, c, has, l, flip_pairs, body, t)
    s = disagreement(c, lab & has, d, bone)
    for i, j in zip(*np.nonzero(lab & has & ~swapped & (s >= t.disagreement))):
        flags.append(Flag(int(i), (int(j),), "disagreement", float(s[i, j]), float(s[i, j] / t.disagreement)))
    w, h = sizes[:, 0:1], sizes[:, 1:2]
    inside = (p[..., 0] >= 0) & (p[..., 0] < w) & (p[..., 1] >= 0) & (p[..., 1] < h)
    m = c * near
    for i, j in zip(*np.nonzero(~lab & has & inside & (m >= t.missing_conf))):
        flags.append(Flag(int(i), (int(j),), "missing", float(m[i, j]), float(m[i, j] / t.missing_conf)))
    return flags


def disagreement(c: np.ndarray, ok: np.ndarray, d: np.ndarray, bone: np.ndarray | None = None) -> np.ndarray:
    """(N, K) each joint's distance to the prediction (``d``, in ``l``) against the model's error in that frame: /
    the median distance of the frame's joints (at least ``FRAME_FLOOR``: a frame the model got wrong everywhere
    says little of one joint), × the confidence, × (1 + ``BONE_WEIGHT`` × ``bone``, the label's own bone evidence)
    where given. Nothing but the frame itself and the bone test's reference decides it, so a flag does not come
    and go as other frames are added, corrected or retired."""
    rr = np.where(ok, d, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a frame with nothing to compare: NaN
        frame = np.nanmedian(rr, 1)
    out = rr / np.maximum(np.nan_to_num(frame, nan=1.0), FRAME_FLOOR)[:, None] * c
    if bone is not None:
        out = out * (1 + BONE_WEIGHT * bone)
    return np.where(ok, out, 0.0)


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


def _swap_flags(xy, lab, p, c, has, l, flip_pairs, body: Body | None, t: Thresholds) -> tuple[list[Flag], np.ndarray]:
    """Limbs labeled the wrong way round → a flag per left/right pair of each, and (N, K) the joints they explain.
    A limb's score: how much better the prediction explains the label with the limb exchanged
    (:func:`limb_gains`) / (``SWAP_COST`` × its pairs), plus how far the label's torso is crossed
    (:func:`torso_crossing`), which goes to the torso limb the model blames more (to each on a tie: no prediction)."""
    body = body or Body(tuple((pr,) for pr in flip_pairs), ())
    gain = limb_gains(xy, p, c, lab, has, l, body.limbs)  # (N, L), NaN where the model has nothing to say
    cross = torso_crossing(xy, lab, body)  # (N, L), zero off the torso
    if len(body.torso) >= 2:
        g = np.nan_to_num(gain[:, list(body.torso)], nan=-np.inf)
        top = g == g.max(1, keepdims=True)
        blame = np.where(top.sum(1, keepdims=True) == 1, top, True)  # a tie (no prediction): every torso limb
        cross[:, list(body.torso)] *= blame
    pairs = np.array([len(limb) for limb in body.limbs], float)
    s = np.nan_to_num(gain) / (SWAP_COST * pairs) + cross
    flags: list[Flag] = []
    swapped = np.zeros(lab.shape, bool)
    for g, limb in enumerate(body.limbs):
        for i in np.flatnonzero(s[:, g] >= t.swap):
            for a, b in limb:
                if lab[i, a] and lab[i, b]:
                    flags.append(Flag(int(i), (a, b), "swap", float(s[i, g]), float(s[i, g] / t.swap)))
                    swapped[i, a] = swapped[i, b] = True
    return flags, swapped


def _exchange(k: int, pairs) -> np.ndarray:
    perm = np.arange(k)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def limb_gains(xy, p, c, lab, has, l, limbs) -> np.ndarray:
    """(N, L) per limb: the prediction's cost of the label as it is − its cost with the limb's pairs exchanged; a
    cost is Σ confidence × min(distance / ``l``, ``COST_CAP``) over the joints both have. NaN where the model has
    fewer than 3 of the labeled joints."""
    n, k = lab.shape

    def cost(pairs) -> np.ndarray:
        perm = _exchange(k, pairs)
        ok = lab[:, perm] & has
        r = _dist(xy[:, perm], p) / l[:, None]
        return np.where(ok, c * np.minimum(r, COST_CAP), 0.0).sum(1)

    as_is = cost([])
    gains = np.stack([as_is - cost(limb) for limb in limbs], 1) if limbs else np.zeros((n, 0))
    return np.where(((lab & has).sum(1) >= 3)[:, None], gains, np.nan)


def torso_crossing(xy: np.ndarray, lab: np.ndarray, body: Body) -> np.ndarray:
    """(N, L) for each torso limb: how far its root pair's left → right runs against another torso root's in the
    label (−cosine, 0 when they agree): shoulders exchanged against the hips make a crossed torso. Needs no model."""
    out = np.zeros((len(xy), len(body.limbs)))
    for g in body.torso:
        a, b = body.limbs[g][0]
        for h in body.torso:
            if h == g:
                continue
            c_, d_ = body.limbs[h][0]
            u, v = xy[:, b] - xy[:, a], xy[:, d_] - xy[:, c_]
            norm = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
            cos = (u * v).sum(1) / np.maximum(norm, 1e-9)
            seen = lab[:, a] & lab[:, b] & lab[:, c_] & lab[:, d_] & (norm > 0)
            out[:, g] = np.maximum(out[:, g], np.where(seen, -cos, 0.0))
    return out


def limb_body(names: list[str], flip_pairs: list[tuple[int, int]], edges: list[tuple[int, int]]) -> Body:
    """The limbs of a skeleton, by name: a shoulder or hip pair roots a torso limb, which takes the pairs of each
    group of same-side joints hanging off it alone (the elbow and wrist; not the eye and ear, which touch the nose);
    any other group is a limb of its own. Pairs are left first; without ``left``/``right`` in every pair's names
    no torso is judged."""
    pairs = [(a, b) if "right" not in names[a] else (b, a) for a, b in flip_pairs]
    oriented = all("left" in names[a] and "right" in names[b] for a, b in pairs)
    pair_of = {a: i for i, (a, _) in enumerate(pairs)}
    roots = [i for i, (a, _) in enumerate(pairs) if any(w in names[a] for w in ROOTS)]
    rest = [a for i, (a, _) in enumerate(pairs) if i not in roots]
    nbr: dict[int, set] = {}
    for u, v in edges:
        nbr.setdefault(u, set()).add(v)
        nbr.setdefault(v, set()).add(u)
    limbs = {i: [i] for i in roots}
    others, seen = [], set()
    for start in rest:
        if start in seen:
            continue
        group, todo = {start}, [start]
        while todo:
            for v in nbr.get(todo.pop(), ()):
                if v in rest and v not in group:
                    group.add(v)
                    todo.append(v)
        seen |= group
        touch = set().union(*(nbr.get(j, set()) for j in group)) - group
        ids = sorted(pair_of[j] for j in group)
        root = [i for i in roots if touch == {pairs[i][0]}]
        if root:
            limbs[root[0]].extend(ids)
        else:
            others.append(ids)
    out = [tuple(pairs[j] for j in limbs[i]) for i in roots] + [tuple(pairs[j] for j in g) for g in others]
    return Body(tuple(out), tuple(range(len(roots))) if oriented else ())


def _bone_flags(lab: np.ndarray, edges: list[tuple[int, int]], z: np.ndarray, t: Thresholds) -> list[Flag]:
    """Skeleton edges far from the project's labeled bodies (``z``: (N, E) their robust z-scores)."""
    flags = []
    for e, (a, b) in enumerate(edges):
        for i in np.flatnonzero(lab[:, a] & lab[:, b] & (z[:, e] >= t.implausible_z)):
            flags.append(Flag(int(i), (a, b), "implausible", float(z[i, e]), float(z[i, e] / t.implausible_z)))
    return flags


def _labeled_neighbours(edges: list[tuple[int, int]], lab: np.ndarray) -> np.ndarray:
    """(N, K) the share of each joint's skeleton neighbours that are labeled (1 without a skeleton): a joint left
    out between labeled ones was more likely forgotten than one of a limb the picture cuts off."""
    near, degree = np.zeros(lab.shape), np.zeros(lab.shape[1])
    for a, b in edges:
        near[:, a] += lab[:, b]
        near[:, b] += lab[:, a]
        degree[a] += 1
        degree[b] += 1
    return np.where(degree > 0, near / np.maximum(degree, 1), 1.0)


def _joint_bone_z(z: np.ndarray, edges: list[tuple[int, int]], lab: np.ndarray) -> np.ndarray:
    """(N, K) per joint the lowest robust z-score of its labeled bones (0 where it has none): a joint labeled off
    its place makes every bone it ends unusual, while one odd bone of a pose blames two joints."""
    out = np.full(lab.shape, np.inf)
    for e, (a, b) in enumerate(edges):
        v = np.where(lab[:, a] & lab[:, b], np.nan_to_num(z[:, e]), np.inf)
        out[:, a], out[:, b] = np.minimum(out[:, a], v), np.minimum(out[:, b], v)
    return np.where(np.isfinite(out), out, 0.0)


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
