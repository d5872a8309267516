"""Selection strategies: small pure functions in a registry (name → function), combined from the pieces
beside them (scores → :mod:`diversity` → :mod:`balance`). No I/O: `select`, `simulate` and the benches call the
same functions.

A strategy takes a :class:`Pool` (what is known about the candidate rows) and a budget and returns a
:class:`Picked` (rows in order, why each was picked, notes). Adding one is a function and a decorator::

    @strategy("my_rule")
    def my_rule(pool: Pool, budget: int) -> Picked:
        p = Picker(pool)
        p.by_diversity(np.arange(pool.n), budget, "my rule")
        return p.done(budget)

Everything is O(n log n) in the pool size plus O(k · candidates) for k-center: membership is one boolean mask,
never a set rebuilt per row (1,000,000 rows: `bench/speed/select_scale.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from iterate.selection import balance, diversity

POOL_FACTOR = 4  # diversity looks at the top budget × this many candidates
EXPLORE_TAG = "explore (random)"  # why a frame of the random exploration share was picked


@dataclass
class Pool:
    """The candidate rows a strategy chooses from. ``combined`` is None on a cold start (no model yet), when
    ``emb`` holds image features instead of the model's embeddings."""

    n: int
    rng: np.random.Generator
    combined: np.ndarray | None = None  # (n,) uncertainty, higher = more informative
    emb: np.ndarray | None = None  # (n, D) embeddings for k-center
    seeds: np.ndarray | None = None  # embeddings of frames already labeled (k-center starts from them)
    blocked: Callable[[int], list[int]] | None = None  # near-duplicate rows of a row (same video, close frames)
    strata: list[dict] | None = None  # predicted strata per row
    focus: dict | None = None  # {"key": stratum key, "weights": {value: share}} from the report
    scores: dict[str, np.ndarray] | None = None  # the named scores behind ``combined`` (what the round's table shows)
    # share of the budget kept random under a focus: the manifest's selection.explore (no default of its own)
    explore: float = field(kw_only=True)


@dataclass
class Picked:
    rows: list[int]
    why: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


Strategy = Callable[[Pool, int], Picked]
STRATEGIES: dict[str, Strategy] = {}
# What each strategy needs in its Pool, so the one pool builder (iterate/loop/pool.py) computes only that:
#   "scores" — the model's uncertainty and embeddings (image features on a cold start);
#   "focus"  — the report's focus, and the candidates' predicted strata when there is one;
#   "strata" — the candidates' predicted strata, focus or not.
NEEDS_KINDS = ("scores", "focus", "strata")
NEEDS: dict[str, frozenset[str]] = {}


def strategy(name: str, needs: tuple[str, ...] = ("scores",)) -> Callable[[Strategy], Strategy]:
    """Register a strategy under ``name`` (what `--strategy` and `simulate --strategies` accept), with what it
    needs in its :class:`Pool` (:data:`NEEDS_KINDS`)."""
    bad = set(needs) - set(NEEDS_KINDS)
    if bad:
        raise ValueError(f"strategy {name}: unknown needs {sorted(bad)} (known: {', '.join(NEEDS_KINDS)})")
    if needs and "scores" not in needs:  # the focus and strata are predicted from the model's scoring pass
        raise ValueError(f"strategy {name}: needs {', '.join(needs)} come with the model's scores: add 'scores'")

    def add(fn: Strategy) -> Strategy:
        STRATEGIES[name] = fn
        NEEDS[name] = frozenset(needs)
        return fn

    return add


class Picker:
    """Rows chosen so far (one boolean mask), why each was chosen, and the ways to add more."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.taken = np.zeros(pool.n, bool)
        self.chosen: list[int] = []
        self.why: dict[int, str] = {}
        self.notes: list[str] = []
        self.unnarrowed: list[str] = []  # by_diversity calls whose candidates were every free row

    def take(self, rows, tag: str) -> None:
        for r in rows:
            r = int(r)
            if not self.taken[r]:
                self.taken[r] = True
                self.chosen.append(r)
                self.why[r] = tag

    def free(self, rows: np.ndarray) -> np.ndarray:
        return rows[~self.taken[rows]]

    def by_score(self, rows: np.ndarray) -> np.ndarray:
        """Rows most uncertain first (stable)."""
        return rows[np.argsort(-self.pool.combined[rows], kind="stable")]

    def _k_center(self, rows: np.ndarray, k: int) -> list[int]:
        p, local = self.pool, None
        if p.blocked:
            inv = np.full(p.n, -1, np.int64)
            inv[rows] = np.arange(len(rows))

            def local(i: int) -> list[int]:
                g = np.asarray(p.blocked(int(rows[i])), dtype=np.int64)
                j = inv[g] if len(g) else g
                return j[j >= 0].tolist()

        sel = diversity.k_center_greedy(p.emb[rows], k, seeds=p.seeds, rng=p.rng, blocked=local)
        return [int(rows[i]) for i in sel]

    def by_uncertainty(self, rows: np.ndarray, k: int, tag: str) -> None:
        """The ``k`` most uncertain free rows (diversity alone on a cold start)."""
        rows = self.free(rows)
        if k <= 0 or not len(rows):
            return
        if self.pool.combined is None:
            self.take(self._k_center(rows, k), tag)
        else:
            self.take(self.by_score(rows)[:k], tag)

    def by_diversity(self, rows: np.ndarray, k: int, tag: str) -> None:
        """k-center among the ``k × POOL_FACTOR`` most uncertain free rows (all of them on a cold start); short
        after near-duplicate suppression: filled by score."""
        rows = self.free(rows)
        if k <= 0 or not len(rows):
            return
        if self.pool.combined is None:
            self.take(self._k_center(rows, k), tag)
            return
        order = self.by_score(rows)
        if k < len(rows) <= k * POOL_FACTOR:
            self.unnarrowed.append(f"{tag} ({k} of {len(rows)})")
        before = len(self.chosen)
        self.take(self._k_center(order[: max(k * POOL_FACTOR, k)], k), tag)
        short = k - (len(self.chosen) - before)
        if short > 0:
            self.take(self.free(order)[:short], tag)

    def at_random(self, k: int, tag: str) -> None:
        rest = np.flatnonzero(~self.taken)
        if k > 0 and len(rest):
            self.take(self.pool.rng.choice(rest, size=min(k, len(rest)), replace=False), tag)

    def done(self, budget: int) -> Picked:
        """Fill anything still missing with the best remaining by score (else at random), and finish."""
        if len(self.chosen) < budget:
            left = np.flatnonzero(~self.taken)
            left = self.by_score(left) if self.pool.combined is not None else self.pool.rng.permutation(left)
            self.take(left[: budget - len(self.chosen)], "fill")
        if self.unnarrowed:
            self.notes.append(
                f"uncertainty did not narrow the choice for {', '.join(self.unnarrowed)}: with at most {POOL_FACTOR}× "
                "the picks free, k-center chose among all of them, so these picks are spread out, not the hardest"
            )
        return Picked(self.chosen[:budget], self.why, self.notes)


def _nothing_known(pool: Pool) -> bool:
    return pool.combined is None and pool.emb is None


@strategy("random", needs=())
def random_sample(pool: Pool, budget: int) -> Picked:
    """A uniform sample: the baseline every other strategy is measured against."""
    rows = [int(r) for r in pool.rng.choice(pool.n, size=budget, replace=False)]
    return Picked(rows, {r: "random" for r in rows})


@strategy("uncertainty")
def uncertainty(pool: Pool, budget: int) -> Picked:
    """The most uncertain frames (confidence, flip disagreement, peak entropy combined)."""
    if _nothing_known(pool):
        return random_sample(pool, budget)
    p = Picker(pool)
    p.by_uncertainty(
        np.arange(pool.n), budget, "uncertainty" if pool.combined is not None else "diversity (cold start)"
    )
    return p.done(budget)


@strategy("diversity")
def uncertainty_diversity(pool: Pool, budget: int) -> Picked:
    """k-center over the most uncertain frames: informative and not alike."""
    if _nothing_known(pool):
        return random_sample(pool, budget)
    p = Picker(pool)
    p.by_diversity(
        np.arange(pool.n), budget, "diversity (cold start)" if pool.combined is None else "uncertainty + diversity"
    )
    return p.done(budget)


@strategy("full", needs=("scores", "focus"))
def focused(pool: Pool, budget: int) -> Picked:
    """The report's focus: the budget split over one stratum's values by their gap shares (uncertainty +
    diversity inside each), an exploration share at random; without a focus, uncertainty + diversity and the same
    exploration share. The random share is the round's control: the selecting model scored on it at sync time
    tells whether the picked frames were the hard ones (cold start, no model: diversity alone)."""
    if _nothing_known(pool):
        return random_sample(pool, budget)
    if pool.combined is None:
        return uncertainty_diversity(pool, budget)
    p = Picker(pool)
    if not (pool.focus and pool.strata is not None):
        n_explore = int(round(budget * pool.explore))
        p.by_diversity(np.arange(pool.n), budget - n_explore, "uncertainty + diversity")
        p.at_random(n_explore, EXPLORE_TAG)
        return p.done(budget)
    return _by_quota(p, pool, pool.focus["key"], pool.focus["weights"], budget, "focus")


@strategy("balanced", needs=("scores", "strata"))
def balanced(pool: Pool, budget: int) -> Picked:
    """The same budget split as ``full`` but uniform: every value of the first stratum attribute (posture) that the
    model predicts in the pool gets an equal share, whatever the report says (uncertainty + diversity inside each,
    the exploration share at random). The arm that asks whether the report's gap weights beat plain balance."""
    if _nothing_known(pool) or pool.combined is None or not pool.strata:
        return focused(pool, budget)
    key = next(iter(pool.strata[0]))
    values = sorted({str(s.get(key)) for s in pool.strata if s.get(key) is not None})
    share = (1.0 - pool.explore) / max(1, len(values))
    return _by_quota(Picker(pool), pool, key, {v: share for v in values}, budget, "balance")


def _by_quota(p: Picker, pool: Pool, key: str, shares: dict[str, float], budget: int, tag: str) -> Picked:
    """``shares`` of the budget per predicted value of ``key`` (uncertainty + diversity inside each), the
    exploration share at random."""
    vals = np.array([s.get(key) for s in pool.strata], dtype=object)
    masks = {v: vals == v for v in shares}
    q, n_explore, p.notes = balance.quotas(budget, pool.explore, shares, {v: int(mk.sum()) for v, mk in masks.items()})
    rows = np.arange(pool.n)
    for v, k in sorted(q.items(), key=lambda kv: -kv[1]):
        p.by_diversity(rows[masks[v]], k, f"{tag} {key}={v}")
    p.at_random(n_explore, EXPLORE_TAG)
    return p.done(budget)


def choose(name: str, budget: int, pool: Pool) -> Picked:
    """Run the strategy registered as ``name``."""
    if name not in STRATEGIES:
        raise KeyError(name)
    return STRATEGIES[name](pool, budget)
