"""The in-loop control: did selection find the frames the model gets wrong?

Each round keeps a random exploration share of the pool. Once its labels are back, the model that selected the
round is scored on the frames it picked and on the random ones, before any retraining: if selection works, the
model scores lower on its picks than on random pool frames; the random frames also estimate the model's accuracy
on the whole unlabeled pool. Figures are pooled PCKh (:mod:`reports.metrics`) with 95 % intervals by a seeded
bootstrap over frames; the difference's interval resamples each group on its own. Under ``MIN_EXPLORED`` random
frames there is no interval, no difference and no verdict: one random frame would print "47.1 [47.1, 47.1]".
"""

from __future__ import annotations

import numpy as np

from iterate.core.metric_keys import PCKH01, PCKH05, ci_key, parse
from iterate.core.schema import KeypointSpec
from reports.evaluation import fmt
from reports.metrics import N_BOOT, bootstrap_rows, frame_interval, normalisers, pck_hits, summarise

MIN_EXPLORED = 5  # fewer random frames than this: no interval, no difference, no verdict


def too_few_random(n: int) -> str:
    """What the control shows instead of figures for ``n`` < ``MIN_EXPLORED`` random frames."""
    return f"too few random frames to judge (n={n})"


def _pooled(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: correct joints and labeled joints (frames without a labeled joint dropped)."""
    n = (~np.isnan(hits)).sum(1)
    keep = n > 0
    return np.nansum(hits, axis=1)[keep], n[keep].astype(np.float64)


def difference_interval(
    hits_a: np.ndarray, hits_b: np.ndarray, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """95 % interval (points) of pooled PCKh(a) − pooled PCKh(b), each group's frames resampled on their own."""
    ka, na = _pooled(hits_a)
    kb, nb = _pooled(hits_b)
    if not len(ka) or not len(kb):
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    ia, ib = bootstrap_rows(len(ka), n_boot, rng=rng), bootstrap_rows(len(kb), n_boot, rng=rng)
    d = ka[ia].sum(1) / na[ia].sum(1) - kb[ib].sum(1) / nb[ib].sum(1)
    lo, hi = np.quantile(d, [0.025, 0.975])
    return 100 * float(lo), 100 * float(hi)


def _group(hits: np.ndarray, k: str) -> dict:
    s = summarise(hits)
    lo, hi = frame_interval(hits)
    return {"frames": s.frames, "joints": s.count, k: fmt(s.mean), ci_key(k): [fmt(lo), fmt(hi)]}


def selection_control(
    spec: KeypointSpec,
    pred: np.ndarray,
    gt: np.ndarray,
    vis: np.ndarray,
    head_boxes: np.ndarray | None,
    explored: np.ndarray,
) -> dict:
    """The selecting model's PCKh@0.5 and @0.1 on the picked and the explored (random) frames of one round, their
    difference with its interval, and a one-line verdict."""
    explored = np.asarray(explored, bool)
    norms = normalisers(gt, vis, spec.normalizer, list(spec.names), head_boxes)
    ok = norms.scored
    out: dict = {"frames_unscored": int((~ok).sum())}
    for name in (PCKH05, PCKH01):
        hits = pck_hits(pred[ok], gt[ok], vis[ok], norms.lengths[ok], parse(name)[1])
        sel, exp = hits[~explored[ok]], hits[explored[ok]]
        block = {"selected": _group(sel, name), "explored": _group(exp, name)}
        if block["explored"]["frames"] < MIN_EXPLORED:  # nothing to judge by: no interval, no difference
            block["explored"][ci_key(name)] = [None, None]
            block["difference"], block["difference_ci95"] = None, [None, None]
            block["too_few_random"] = True
            out[name] = block
            continue
        a, b = block["selected"][name], block["explored"][name]
        block["difference"] = fmt(a - b) if a is not None and b is not None else None
        lo, hi = difference_interval(sel, exp)
        block["difference_ci95"] = [fmt(lo), fmt(hi)]
        out[name] = block
    out["verdict"] = verdict(out[PCKH05])
    return out


def verdict(block: dict, k: str = PCKH05) -> str:
    """What the PCKh@0.5 comparison (a block keyed ``k``) says, in one line a user can read."""
    s, e = block["selected"], block["explored"]
    if s["frames"] == 0:
        return "no picked frame is labeled yet"
    if e["frames"] < MIN_EXPLORED:
        return (
            f"{too_few_random(e['frames'])}: under {MIN_EXPLORED} random (explore) frames labeled are too few to tell "
            "whether selection found the hard ones (raise selection.explore or the budget)"
        )
    lo, hi = block["difference_ci95"]
    head = (
        f"the model scored {s[k]:.1f} % on the {s['frames']} frames it picked and {e[k]:.1f} % on "
        f"{e['frames']} random pool frames"
    )
    if hi is not None and hi < 0:
        return head + ": selection found the hard ones"
    if lo is not None and lo > 0:
        return head + ": the picked frames were easier than random ones — selection did not find the hard ones"
    return head + ": no difference told from noise at this many frames"
