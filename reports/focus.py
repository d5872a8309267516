"""Next chunk focus: which strata hold the model back, and the budget share each should get.

priority = gap × pool share × uncertainty, where
* gap = overall figure − the stratum's upper 95 % bound (≥ 0): a small stratum must be clearly worse to count;
* pool share = the share of the unlabeled pool predicted to be in the stratum;
* uncertainty = the mean (1 − joint confidence) of those pool frames.
Budget shares are per attribute (posture, occlusion, …) and sum to 1 − ``explore``; the rest stays random.
Within an attribute, ``STEER`` of the share follows priority and the rest follows the pool, so one weak stratum
does not take the whole chunk on a small gap. Val frames whose label carries no value of an attribute ("(not
set)") steer nothing; an attribute no val label carries is listed under ``unset``.
"""

from __future__ import annotations

import numpy as np

from iterate.core.metric_keys import ci_key, label

STEER = 0.7
NOT_SET = "(not set)"  # reports.evaluation's value for a label without the attribute


def next_chunk_focus(
    strata: dict,
    overall: float | None,
    pool_strata: list[dict],
    pool_uncertainty: np.ndarray,
    explore: float,
    metric: str,
) -> dict:
    items = []
    weights: dict[str, dict[str, float]] = {}
    unset = []
    n_pool = len(pool_strata)
    for key, rows in strata.items():
        rows = {v: r for v, r in rows.items() if v != NOT_SET}
        if not rows:
            unset.append(key)
            continue
        pool_vals = np.array([p.get(key) for p in pool_strata], dtype=object)
        key_items = [
            _item(key, value, r, overall, pool_vals == value, pool_uncertainty, metric) for value, r in rows.items()
        ]
        _share_budget(key_items, explore)
        weights[key] = {i["value"]: i["budget_share"] for i in key_items}
        items += key_items
    items.sort(key=lambda i: (-i["priority"], -i["pool_share"]))
    return {
        "metric": metric,
        "explore": explore,
        "pool_frames": n_pool,
        "items": items,
        "weights": weights,
        "unset": unset,
    }


def _item(key: str, value: str, r: dict, overall, in_pool: np.ndarray, unc_all: np.ndarray, metric: str) -> dict:
    """One stratum's gap (to its upper 95 % bound), pool share, uncertainty and priority, with the reason in words."""
    in_pool = np.asarray(in_pool, bool)
    share = float(in_pool.mean()) if len(in_pool) else 0.0
    unc = float(unc_all[in_pool].mean()) if in_pool.any() else 0.0
    fig = r.get(metric)
    ci = r.get(ci_key(metric), [None, None])
    hi = ci[1] if ci[1] is not None else fig
    gap = max(0.0, (overall or 0.0) - (hi if hi is not None else (fig or 0.0))) if fig is not None else 0.0
    reason = (
        f"{key}={value}: {label(metric)} {fig if fig is not None else '–'} % vs {overall} % overall "
        f"(95 % up to {hi}), {share:.0%} of the pool, uncertainty {unc:.2f}"
        + (" — too few val frames to judge" if r.get("small") else "")
    )
    return {
        "key": key,
        "value": value,
        "gap": round(gap, 2),
        "pool_share": round(share, 4),
        "uncertainty": round(unc, 4),
        "priority": round(gap * share * unc, 5),
        "val_frames": r.get("frames"),
        "reason": reason,
    }


def _share_budget(items: list[dict], explore: float) -> None:
    """Each stratum's ``budget_share`` of one attribute: ``STEER`` by priority, the rest by pool share, × (1 − explore)."""
    total = sum(i["priority"] for i in items)
    share_total = sum(i["pool_share"] for i in items)
    for i in items:
        pool = i["pool_share"] / share_total if share_total else 0.0
        base = STEER * i["priority"] / total + (1 - STEER) * pool if total > 0 else pool
        i["budget_share"] = round((1 - explore) * base, 4)
