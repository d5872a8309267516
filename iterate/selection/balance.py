"""Gap focus: split the budget over predicted strata by the last report's "next chunk focus"."""

from __future__ import annotations

import math


def quotas(
    budget: int, explore: float, shares: dict[str, float], available: dict[str, int]
) -> tuple[dict[str, int], int, list[str]]:
    """→ (frames per stratum value, frames for random exploration, notes).

    ``shares`` are the focus' budget shares of one attribute (they sum to 1 − explore); a value with no
    available frame gives its share to the others, said in the notes."""
    notes = []
    n_explore = int(round(budget * explore))
    rest = budget - n_explore
    usable = {v: s for v, s in shares.items() if s > 0 and available.get(v, 0) > 0}
    for v, s in shares.items():
        if s > 0 and available.get(v, 0) == 0:
            notes.append(
                f"focus stratum {v} ({s:.0%} of the budget) has no predicted frame in the pool: its share went to the others"
            )
    total = sum(usable.values())
    if total <= 0:
        return {}, budget, notes + ["no focus stratum is available: the whole budget is drawn without focus"]
    raw = {v: rest * s / total for v, s in usable.items()}
    q = {v: min(int(math.floor(r)), available[v]) for v, r in raw.items()}
    # largest remainders first, within availability
    left = rest - sum(q.values())
    for v in sorted(raw, key=lambda v: raw[v] - math.floor(raw[v]), reverse=True):
        if left <= 0:
            break
        if q[v] < available[v]:
            q[v] += 1
            left -= 1
    # capacity left anywhere takes what a full stratum could not
    for v in sorted(usable, key=lambda v: -usable[v]):
        if left <= 0:
            break
        add = min(left, available[v] - q[v])
        q[v] += add
        left -= add
    return q, n_explore + left, notes
