"""The one pool: what a selection strategy sees, built the same way for `iterate select` and `iterate simulate`.

Both callers score their candidates with :func:`score_samples` (the scoring pass: flip TTA, no refine pass) and
hand :func:`build_pool` a :class:`PoolParts` — the scores plus the ways to compute what a strategy may need (image
features, labeled bodies, the focus, predicted strata). The strategy's declared needs
(:data:`iterate.selection.strategies.NEEDS`) decide which of them are asked for; the registry of scores
(:mod:`iterate.core.score_kinds`) decides how each weighted score is computed. `select` and `simulate` differ only
in where the labels come from: the ledger and Label Studio, or a labeled pool whose labels are hidden.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iterate.core.errors import IterateError
from iterate.core.joints import JointMatch
from iterate.core.schema import KeypointSpec
from iterate.core.score_kinds import CACHE_WIDTH, PASS_SCORES, SCORES
from iterate.loop.settings import SelectionSetup
from iterate.selection import scores as sc
from iterate.selection import strategies
from model.data import Sample
from model.infer import SCORING, load_predictor, to_image
from reports.metrics import normalisers

__all__ = [
    "Scored",
    "PoolParts",
    "build_pool",
    "check_weights",
    "score_samples",
    "person_size",
    "plausibility_scores",
    "labeled_bones",
    "batch_scores",
    "SCORING_BATCH",
]

SCORING_BATCH = 32


@dataclass
class Scored:
    """Per-frame model outputs of the pool, aligned with ``frame_ids``."""

    frame_ids: list[str]
    scores: dict[str, np.ndarray]
    keypoints: np.ndarray  # (N, K, 2)
    kp_scores: np.ndarray  # (N, K)
    embeddings: np.ndarray  # (N, D) float16
    scored_now: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. a broken cache recomputed

    def rows(self, keep: np.ndarray) -> Scored:
        """The same outputs for the rows ``keep`` only."""
        return Scored(
            [self.frame_ids[i] for i in keep],
            {k: v[keep] for k, v in self.scores.items()},
            self.keypoints[keep],
            self.kp_scores[keep],
            self.embeddings[keep],
            self.scored_now,
            self.notes,
        )

    def readable(self) -> np.ndarray:
        """Rows the scoring pass could read (an unreadable frame is scored -1 and never selected)."""
        return np.flatnonzero(self.scores[PASS_SCORES[0]] >= 0)


@dataclass
class PoolParts:
    """What a caller knows, or can compute on demand, about ``n`` candidate rows. The callables are asked only when
    the strategy's needs and the weighted scores call for them."""

    n: int
    scored: Scored | None  # None: no model (a cold start)
    image_features: Callable[[], np.ndarray]  # (n, D) the cold start's image features
    labeled_bodies: Callable[[], list[np.ndarray]] = list  # (K, 3) labeled bodies: the plausibility reference
    previous_keypoints: np.ndarray | None = None  # the previous round's model's predictions (snapshot)
    labeled_embeddings: Callable[[], np.ndarray | None] = lambda: None  # k-center's seeds
    focus: Callable[[], dict | None] = lambda: None  # {"key", "weights", …} or None
    no_focus_note: str | None = None  # said when a strategy asks for a focus and there is none
    strata: Callable[[], list[dict]] | None = None  # predicted strata per row
    blocked: Callable[[int], list[int]] | None = None  # near-duplicate rows of a row


def check_weights(setup: SelectionSetup, *, history: bool) -> None:
    """Refuse a weighted score the caller cannot compute (``history``: whether it has a previous round's
    predictions; `iterate select` has none yet) — before any scoring pass."""
    for name, w in setup.weights.items():
        if w > 0 and SCORES[name].source == "history" and not history:
            raise IterateError(
                f"selection.weights.{name}: only `iterate simulate` computes this score so far; set it to 0 here"
            )


def build_pool(
    setup: SelectionSetup, strategy: str, parts: PoolParts, rng: np.random.Generator, notes: list[str]
) -> strategies.Pool:
    """The :class:`~iterate.selection.strategies.Pool` the strategy ``strategy`` chooses from."""
    needs = strategies.NEEDS[strategy]
    pool = strategies.Pool(parts.n, rng, explore=setup.explore)
    if "scores" not in needs:
        return pool
    if parts.scored is None:  # no model yet: diversity over image features
        pool.emb = parts.image_features()
    else:
        pool.scores = _weighted_scores(setup, parts)
        pool.combined = sc.combine(pool.scores, setup.weights)
        if setup.diversity_on == "image":  # the cold start's features, no labeled-frame seeds
            pool.emb = parts.image_features()
        else:
            pool.emb = parts.scored.embeddings  # float16; diversity converts only the rows it looks at
            pool.seeds = parts.labeled_embeddings()
        if "focus" in needs:
            pool.focus = parts.focus()
            if pool.focus is None:
                if parts.no_focus_note:
                    notes.append(parts.no_focus_note)
            elif parts.strata is not None:
                pool.strata = parts.strata()
        if "strata" in needs and parts.strata is not None:
            pool.strata = parts.strata()
    pool.blocked = parts.blocked
    return pool


def _weighted_scores(setup: SelectionSetup, parts: PoolParts) -> dict[str, np.ndarray]:
    """The pass's scores plus every other weighted score of the registry, computed from the parts."""
    s = parts.scored
    out = dict(s.scores)
    for name, w in setup.weights.items():
        if w <= 0 or name in out:
            continue
        source = SCORES[name].source
        if source == "labels":
            out[name] = plausibility_scores(setup.spec, s.keypoints, parts.labeled_bodies())
        elif source == "history":
            check_weights(setup, history=parts.previous_keypoints is not None)
            out[name] = snapshot_scores(setup.spec, s.keypoints, parts.previous_keypoints)
    return out


# -- the scoring pass ----------------------------------------------------------------------------------------
def score_samples(
    spec: KeypointSpec,
    ck_path: Path,
    samples: list[Sample],
    *,
    tmp: Path | None = None,
    progress: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The scoring pass (flip TTA, no box-refine pass) of the checkpoint on ``samples`` → (scores (n, CACHE_WIDTH)
    in :data:`PASS_SCORES` order, keypoints (n, K, 2), keypoint confidences (n, K) float16, embeddings (n, D)
    float16 or None when nothing could be read). An unreadable sample scores -1. ``tmp``: a file the embeddings
    are streamed to (a large pool), else they are held in memory."""
    k, n = len(spec.names), len(samples)
    new_sc = np.zeros((n, CACHE_WIDTH), np.float32)
    new_kp = np.zeros((n, k, 2), np.float32)
    new_ks = np.zeros((n, k), np.float16)
    if not n:
        return new_sc, new_kp, new_ks, None
    pred = load_predictor(ck_path, joints=list(spec.names), batch_size=SCORING_BATCH, **SCORING)
    row_of = {s.path: i for i, s in reversed(list(enumerate(samples)))}
    emb, done = None, 0
    for b in pred.batches(samples):
        done += len(b.index) + len(b.bad)
        if len(b.index):
            bs, kp, conf = batch_scores(spec, pred.codec, b, pred.joints)
            new_sc[b.index] = np.stack([bs[name] for name in PASS_SCORES], axis=1)
            new_kp[b.index], new_ks[b.index] = kp, conf
            if emb is None:
                shape = (n, b.embedding.shape[1])
                emb = (
                    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
                    if tmp is not None
                    else np.zeros(shape, np.float16)
                )
            emb[b.index] = b.embedding.numpy().astype(np.float16)
        for p in b.bad:  # unreadable: never selected
            new_sc[row_of[p]] = -1
        if progress:
            progress(done, n)
    if emb is None or tmp is None:
        return new_sc, new_kp, new_ks, emb
    emb.flush()
    out = np.array(emb)
    del emb
    os.remove(tmp)
    return new_sc, new_kp, new_ks, out


def batch_scores(
    spec: KeypointSpec, codec, b, joints: JointMatch | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One predictor batch (plain + flipped-back heatmaps) → uncertainty scores, keypoints (image px), confidences.
    ``joints``: the manifest's joints matched to the network's; the scores are over the joints both share, the
    keypoints in the manifest's order with NaN (confidence 0) where the network does not predict a joint."""
    hm, hf = b.heatmaps, b.heatmaps_flip
    if joints is not None:
        rows = [joints.src[t] for t in joints.shared]
        hm, hf = hm[:, rows], hf[:, rows]
    avg = 0.5 * (hm + hf)
    xy, conf = codec.decode(avg)
    xp, _ = codec.decode(hm)
    xf, _ = codec.decode(hf)
    kp, plain, flipped = (to_image(c, b.matrix) for c in (xy, xp, xf))
    if joints is not None:
        full = np.full((len(kp), len(joints.target), 2), np.nan)
        full[:, joints.shared] = kp
        full_conf = np.zeros((len(kp), len(joints.target)), conf.dtype)
        full_conf[:, joints.shared] = conf
        kp, conf = full, full_conf
    norm = person_size(spec, kp)
    scores = {
        "confidence": sc.confidence(avg),
        "flip": sc.flip_disagreement(plain, flipped, norm),
        "entropy": sc.peak_entropy(avg),
    }
    return scores, kp, conf


# -- scores computed from the pass's keypoints ---------------------------------------------------------------
def person_size(spec: KeypointSpec, kp: np.ndarray) -> np.ndarray:
    """(N, K, 2) predicted keypoints → (N,) the person's size measured on the prediction itself: the PCKh
    normaliser, else (no head in view) a sixth of the person's extent. Disagreement scores are divided by it."""
    seen = np.isfinite(kp).all(-1)  # joints the model does not predict are NaN
    norm = normalisers(np.nan_to_num(kp), seen.astype(float), spec.normalizer, list(spec.names)).lengths
    lo = np.where(seen[..., None], kp, np.inf).min(1)
    hi = np.where(seen[..., None], kp, -np.inf).max(1)
    box = np.where(seen.any(1), np.hypot(*(hi - lo).T), 0.0) / 6.0
    return np.where(np.isfinite(norm) & (norm > 1), norm, box)


def plausibility_scores(spec: KeypointSpec, kps: np.ndarray, labeled: list[np.ndarray]) -> np.ndarray:
    """The ``plausibility`` score of predictions (N, K, 2) against labeled bodies ((K, 3) each: x, y, v)."""
    if len(labeled) < 2:
        return np.zeros(len(kps))
    edges, ref_bones, seen = labeled_bones(spec, np.stack(labeled))
    return sc.plausibility(sc.bone_logs(kps, edges, person_size(spec, kps)), ref_bones, seen)


def snapshot_scores(spec: KeypointSpec, now: np.ndarray, before: np.ndarray) -> np.ndarray:
    """The ``snapshot`` score: how far this round's model moved each frame's prediction since the last round's
    model scored it (normalised by the person's size); 0 where no earlier model scored the frame (round 1)."""
    d = sc.flip_disagreement(now, before, person_size(spec, now))
    return np.where(np.isfinite(d), d, 0.0)


def labeled_bones(spec: KeypointSpec, ref: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """Labeled bodies (M, K, 3) → (skeleton edges as joint indices, (M, E) log(bone / person size), (M, E) whether
    both joints of the edge are labeled): the reference of the ``plausibility`` score and of the label audit."""
    names = list(spec.names)
    edges = [(names.index(a), names.index(b)) for a, b in spec.skeleton]
    gt, vis = ref[..., :2], ref[..., 2]
    if not edges:  # a manifest without a skeleton: no bone to judge
        return edges, np.zeros((len(ref), 0)), np.zeros((len(ref), 0), bool)
    seen = np.stack([(vis[:, i] > 0) & (vis[:, j] > 0) for i, j in edges], 1)
    return edges, sc.bone_logs(gt, edges, person_size(spec, gt)), seen
