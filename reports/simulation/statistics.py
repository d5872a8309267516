"""Statistics of a simulation: means over seeds, paired differences to random with 95 % bootstrap intervals over
seeds, labels (and annotator corrections) to reach random's final PCKh@0.5, the focus test and the first-chunk
comparison; merging runs. Plain data in: the per-seed rows `iterate.loop.simulate` records for each strategy.

The bootstrap here resamples seeds (every paired statistic of one summary draws the same indices); it is not
:func:`reports.metrics.frame_interval`, which resamples the frames of one evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05, upgrade
from reports.metrics import bootstrap_rows

COLD = "cold_start"  # `full` whose first chunk is a cold start (image features), as if no base were given
N_BOOT = 2000


def _same_setup(cfg: dict, other: dict, *, but: tuple[str, ...] = ()) -> bool:
    """Configurations equal apart from ``but`` (the base compared by file name: runs move between checkouts)."""

    def norm(c: dict) -> dict:
        c = {k: v for k, v in c.items() if k not in but}
        return c | {"base": Path(c["base"]).name if c.get("base") else None}

    return norm(cfg) == norm(other)


def merge(parts: list[dict]) -> dict:
    """One summary from runs of the same configuration: on disjoint seeds (e.g. run on two machines), or on the
    same seeds with different arms (a new arm paired with an earlier run's random: a seed's run is deterministic,
    `tests/test_simulate.py`)."""
    cfg = dict(parts[0]["config"])
    seed_sets = [list(p["seeds"]) for p in parts]
    arms = [set(p["per_seed"]) for p in parts]
    if all(x == seed_sets[0] for x in seed_sets) and sum(map(len, arms)) == len(set().union(*arms)):
        if not all(_same_setup(cfg, p["config"]) for p in parts[1:]):
            raise ValueError("simulations to merge differ in more than their arms")
        seeds = seed_sets[0]
        per_seed = {n: runs for p in parts for n, runs in p["per_seed"].items()}
    else:
        if not all(_same_setup(cfg, p["config"], but=("seeds",)) for p in parts[1:]):
            raise ValueError("simulations to merge differ in more than their seeds")
        seeds = [x for p in parts for x in p["seeds"]]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"simulations to merge share seeds (and arms): {seeds}")
        per_seed = {n: [run for p in parts for run in p["per_seed"][n]] for n in parts[0]["per_seed"]}
    out = summarise(per_seed, seeds)
    out["wall_s"] = round(sum(p["wall_s"] for p in parts), 1)
    out["config"] = cfg | {"seeds": seeds}
    return out


def rename_arms(summary: dict, names: dict[str, str]) -> dict:
    """The same runs with arms renamed (``{"full": "full_flip"}``: a variant run with other selection settings)."""
    per_seed = {names.get(n, n): runs for n, runs in summary["per_seed"].items()}
    return summarise(per_seed, summary["seeds"]) | {"wall_s": summary["wall_s"], "config": summary["config"]}


def paired_difference(a: dict, arm_a: str, b: dict, arm_b: str) -> dict:
    """Test PCKh@0.5 of ``arm_a`` in summary ``a`` minus ``arm_b`` in summary ``b``, round by round, paired over the
    seeds both ran (e.g. the same arm with and without replay): the mean and its 95 % bootstrap interval."""
    seeds = [x for x in a["seeds"] if x in b["seeds"]]
    if not seeds:
        raise ValueError(f"no seed in common: {a['seeds']} and {b['seeds']}")
    ra = upgrade([a["per_seed"][arm_a][a["seeds"].index(x)] for x in seeds])
    rb = upgrade([b["per_seed"][arm_b][b["seeds"].index(x)] for x in seeds])
    labels = [r["labels"] for r in ra[0]]
    if labels != [r["labels"] for r in rb[0]]:
        raise ValueError(f"the arms ran different budgets: {labels} and {[r['labels'] for r in rb[0]]}")
    d = np.array([[x[PCKH05] for x in run] for run in ra]) - np.array([[x[PCKH05] for x in run] for run in rb])
    ci = _ci(d[_boot_idx(len(seeds))].mean(1)) if len(seeds) > 1 else None
    return {"seeds": seeds, "labels": labels, f"{PCKH05}_diff": _num(d.mean(0)), f"{PCKH05}_diff_ci": ci}


def _boot_idx(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Resampled seed indices (n_boot, n): the same draws for every paired statistic of one summary."""
    return bootstrap_rows(n, n_boot, seed)


def _ci(stats: np.ndarray) -> list[float | None]:
    """95 % percentile interval of bootstrap statistics along axis 0 (infinite → None)."""
    lo, hi = np.quantile(stats, [0.025, 0.975], axis=0, method="inverted_cdf")  # no interpolation: ∞ stays ∞
    return [_num(lo), _num(hi)]


def _num(x) -> float | None | list:
    if isinstance(x, np.ndarray):
        return [_num(v) for v in x]
    x = float(x)
    return round(x, 3) if np.isfinite(x) else None


def summarise(per_seed: dict[str, list[list[dict]]], seeds: list[int]) -> dict:
    """Means over seeds, paired differences to random and labels to reach random's final PCKh@0.5, each with a 95 %
    bootstrap interval over seeds; the focus test and the first-chunk comparison. Rows recorded with older metric
    names read under today's (:func:`iterate.core.metric_keys.upgrade`)."""
    per_seed = upgrade(per_seed)
    idx = _boot_idx(len(seeds))
    out: dict = {"seeds": seeds, "interval": f"95 % bootstrap over seeds ({N_BOOT} resamples, paired)"}
    curves = {
        s: {k: np.array([[r[k] for r in run] for run in runs]) for k in (PCKH01, PCKH05, MEAN_SMS01)}
        for s, runs in per_seed.items()
    }
    rnd = curves.get("random")
    out["strategies"] = {}
    for s, runs in per_seed.items():
        c = curves[s]
        row: dict = {"labels": [r["labels"] for r in runs[0]]}
        for k, arr in c.items():
            row[k] = _num(arr.mean(0))
            row[f"{k}_ci"] = _ci(arr[idx].mean(1)) if len(seeds) > 1 else None
            if rnd is not None and k != MEAN_SMS01:
                d = arr - rnd[k][:, : arr.shape[1]]
                row[f"{k}_vs_random"] = _num(d.mean(0))
                row[f"{k}_vs_random_ci"] = _ci(d[idx].mean(1)) if len(seeds) > 1 else None
        if rnd is not None and s != COLD:
            reach = _reach(row["labels"], c[PCKH05], rnd[PCKH05], idx)
            row.update(reach)
        row.update(_strata_rows(runs, per_seed.get("random") if s not in ("random", COLD) else None, idx))
        if s != COLD:
            row.update(
                _effort_rows(runs, c[PCKH05], per_seed.get("random"), rnd[PCKH05] if rnd is not None else None, idx)
            )
        out["strategies"][s] = row
    full = out["strategies"].get("full", {})
    if "labels_to_random_ratio" in full:
        out["full_labels_to_random_ratio"] = full["labels_to_random_ratio"]
        out["full_labels_to_random_ratio_ci"] = full["labels_to_random_ratio_ci"]
        ci = full["labels_to_random_ratio_ci"]  # None with one seed: no interval
        out["full_labels_to_random_ratio_ci_high"] = ci[1] if ci else None
    if "corrections_to_random_ratio" in full:
        out["full_corrections_to_random_ratio"] = full["corrections_to_random_ratio"]
        out["full_corrections_to_random_ratio_ci"] = full["corrections_to_random_ratio_ci"]
        ci = full["corrections_to_random_ratio_ci"]
        out["full_corrections_to_random_ratio_ci_high"] = ci[1] if ci else None
    out |= _tolerance_rows(per_seed, curves, idx)
    if "full" in per_seed and "random" in per_seed:
        out["focus_test"] = _focus_test(per_seed["full"], per_seed["random"], idx)
    if COLD in per_seed and "full" in per_seed:
        a, b = curves["full"][PCKH05][:, 1], curves[COLD][PCKH05][:, 1]
        out["first_chunk"] = {
            "labels": per_seed[COLD][0][1]["labels"],
            f"base_scored_{PCKH05}": _num(a.mean()),
            f"cold_start_{PCKH05}": _num(b.mean()),
            "base_minus_cold": _num((a - b).mean()),
            "base_minus_cold_ci": _ci((a - b)[idx].mean(1)) if len(seeds) > 1 else None,
        }
    out["per_seed"] = per_seed
    return out


def _strata_curves(runs: list[list[dict]]) -> dict[tuple[str, str], np.ndarray]:
    """Each stratum's test PCKh@0.5 as (seeds, rounds), NaN where a round has no test frame of it."""
    keys = sorted({(k, v) for run in runs for r in run for k, vals in r.get("strata", {}).items() for v in vals})
    return {
        (k, v): np.array([[r.get("strata", {}).get(k, {}).get(v, np.nan) for r in run] for run in runs], float)
        for k, v in keys
    }


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    n = (~np.isnan(a)).sum(axis)
    return np.where(n > 0, np.nansum(a, axis) / np.maximum(n, 1), np.nan)


def _strata_rows(runs: list[list[dict]], rnd_runs: list[list[dict]] | None, idx: np.ndarray) -> dict:
    """Where the points go: each stratum's mean test PCKh@0.5 per round and, paired with random, its difference at
    the final budget with an interval: the stratum a base knew can lose what the focused one gains."""
    curves = _strata_curves(runs)
    if not curves:
        return {}
    out: dict = {f"strata_{PCKH05}": {}}
    for (k, v), arr in curves.items():
        out[f"strata_{PCKH05}"].setdefault(k, {})[v] = _num(_nanmean(arr, 0))
    if rnd_runs is None:
        return out
    rnd = _strata_curves(rnd_runs)
    out[f"strata_{PCKH05}_vs_random_final"] = {}
    if len(idx[0]) < 2:  # one seed: no interval
        return out
    for (k, v), arr in curves.items():
        if (k, v) not in rnd:
            continue
        d = arr[:, -1] - rnd[(k, v)][:, arr.shape[1] - 1]
        if np.isnan(d).any():
            continue
        out[f"strata_{PCKH05}_vs_random_final"].setdefault(k, {})[v] = {
            "mean": _num(d.mean()),
            "ci": _ci(d[idx].mean(1)),
        }
    return out


def _reach(labels: list[int], ys: np.ndarray, rnd: np.ndarray, idx: np.ndarray) -> dict:
    """Labels this strategy needs to reach random's final mean PCKh@0.5, and that as a share of random's labels."""
    final = labels[-1]
    point = _labels_to_reach(labels, list(ys.mean(0)), float(rnd[:, -1].mean()))
    boots = []
    for ix in idx:
        v = _labels_to_reach(labels, list(ys[ix].mean(0)), float(rnd[ix, -1].mean()))
        boots.append(np.inf if v is None else v / final)
    boots = np.array(boots)
    return {
        f"labels_to_reach_random_final_{PCKH05}": point,
        "labels_to_random_ratio": None if point is None else round(point / final, 3),
        "labels_to_random_ratio_ci": _ci(boots) if len(idx[0]) > 1 else None,
        "not_reached_share": round(float(np.isinf(boots).mean()), 3),
    }


def _cumulative_corrections(runs: list[list[dict]]) -> np.ndarray | None:
    """(seeds, rounds + 1) corrections revealed so far (0 at the base), or None when a run did not count them (a
    simulation from before the effort accounting)."""
    if not all("effort" in r for run in runs for r in run[1:]):
        return None
    return np.array([np.cumsum([0] + [r["effort"]["corrections"] for r in run[1:]]) for run in runs], np.float64)


def _effort_rows(runs, ys: np.ndarray, rnd_runs, rnd_ys: np.ndarray | None, idx: np.ndarray) -> dict:
    """Selection judged in annotator effort: cumulative corrections per round, corrections per revealed frame
    (picked and explore frames apart), and the corrections this arm needs to reach random's final PCKh@0.5 as a
    share of random's; paired with random, how many more corrections a frame of this arm costs per round."""
    xs = _cumulative_corrections(runs)
    if xs is None:
        return {}
    frames = np.array([[r["effort"]["frames"] for r in run[1:]] for run in runs], np.float64)
    per_frame = np.diff(xs, axis=1) / np.maximum(frames, 1)
    ex_f = np.array([[r["effort"]["explore_frames"] for r in run[1:]] for run in runs], np.float64)
    ex_c = np.array([[r["effort"]["explore_corrections"] for r in run[1:]] for run in runs], np.float64)
    picked = (np.diff(xs, axis=1) - ex_c) / np.maximum(frames - ex_f, 1)
    one = len(idx[0]) > 1
    out: dict = {
        "corrections": _num(xs.mean(0)),
        "corrections_ci": _ci(xs[idx].mean(1)) if one else None,
        "corrections_per_frame": _num(per_frame.mean(0)),
        "picked_corrections_per_frame": _num(picked.mean(0)),
        "explore_corrections_per_frame": _num(
            np.where(ex_f.sum(0) > 0, ex_c.sum(0) / np.maximum(ex_f.sum(0), 1), np.nan)
        ),
    }
    rx = _cumulative_corrections(rnd_runs) if rnd_runs is not None else None
    if rx is None or rnd_ys is None:
        return out
    target, final = rnd_ys[:, -1], rx[:, -1]
    point = _labels_to_reach(list(xs.mean(0)), list(ys.mean(0)), float(target.mean()))
    boots = []
    for ix in idx:
        v = _labels_to_reach(list(xs[ix].mean(0)), list(ys[ix].mean(0)), float(target[ix].mean()))
        boots.append(np.inf if v is None else v / float(final[ix].mean()))
    boots = np.array(boots)
    rf = np.diff(rx, axis=1) / np.maximum([[r["effort"]["frames"] for r in run[1:]] for run in rnd_runs], 1)
    ratio = per_frame / np.maximum(rf[:, : per_frame.shape[1]], 1e-9)  # paired per seed and round
    out |= {
        f"corrections_to_reach_random_final_{PCKH05}": point,
        "corrections_to_random_ratio": None if point is None else round(point / float(final.mean()), 3),
        "corrections_to_random_ratio_ci": _ci(boots) if one else None,
        "corrections_not_reached_share": round(float(np.isinf(boots).mean()), 3),
        "corrections_per_frame_vs_random": _num(ratio.mean(0)),
        "corrections_per_frame_vs_random_ci": _ci(ratio[idx].mean(1)) if one else None,
    }
    return out


def _recount(runs: list[list[dict]], tol: str) -> list[list[dict]]:
    """The runs with each round's corrections as counted at tolerance ``tol``."""
    return [[run[0], *({**r, "effort": {**r["effort"], **r["effort"]["at"][tol]}} for r in run[1:])] for run in runs]


def _tolerance_rows(per_seed: dict, curves: dict, idx: np.ndarray) -> dict:
    """`full`'s effort figures recounted as if annotators left joints up to each of ``TOLERANCES`` × l off."""
    if "full" not in per_seed or "random" not in per_seed:
        return {}
    runs = {s: per_seed[s] for s in ("full", "random")}
    if not all("at" in r.get("effort", {}) for rs in runs.values() for run in rs for r in run[1:]):
        return {}
    out = {}
    for tol in next(iter(runs["full"][0][1:]))["effort"]["at"]:
        f, r = _recount(runs["full"], tol), _recount(runs["random"], tol)
        row = _effort_rows(f, curves["full"][PCKH05], r, curves["random"][PCKH05], idx)
        keys = ("corrections_to_random_ratio", "corrections_to_random_ratio_ci", "corrections_per_frame_vs_random")
        out[tol] = {k: row.get(k) for k in (*keys, "corrections_per_frame_vs_random_ci", "corrections_per_frame")}
    return {"full_effort_at_tolerance": out}


def _labels_to_reach(labels: list[int], ys: list[float], target: float) -> float | None:
    """Linear interpolation of the learning curve; 0 when the start already reaches it, None when it never does."""
    if ys[0] >= target:
        return 0.0
    for i in range(1, len(labels)):
        if ys[i] >= target:
            y0, y1 = ys[i - 1], ys[i]
            if y1 == y0:
                return float(labels[i])
            return round(labels[i - 1] + (target - y0) / (y1 - y0) * (labels[i] - labels[i - 1]), 1)
    return None


def _focus_test(full: list[list[dict]], rnd: list[list[dict]], idx: np.ndarray) -> dict:
    """Per round where `full` followed a focus: the focused stratum's test PCKh@0.5 gain over the round under full
    and under random (same seed, same stratum), and the share of the chunk that truly fell in it."""
    rounds, per_seed = [], []
    for seed_i, (fr, rr) in enumerate(zip(full, rnd)):
        diffs = []
        for r in range(1, len(fr)):
            f = fr[r].get("focus")
            if not f:
                continue
            key, val = f["key"], f["value"]

            gf = _gain(_at(fr[r], key, val), _at(fr[r - 1], key, val))
            gr = _gain(_at(rr[r], key, val), _at(rr[r - 1], key, val))
            n_f, n_r = fr[r]["labels"] - fr[r - 1]["labels"], rr[r]["labels"] - rr[r - 1]["labels"]
            share_f = fr[r]["chunk_strata"].get(key, {}).get(val, 0) / max(1, n_f)
            share_r = rr[r]["chunk_strata"].get(key, {}).get(val, 0) / max(1, n_r)
            rounds.append(
                {
                    "seed_index": seed_i,
                    "round": r,
                    "stratum": f"{key}={val}",
                    "gain_full": gf,
                    "gain_random": gr,
                    "chunk_share_full": round(share_f, 3),
                    "chunk_share_random": round(share_r, 3),
                }
            )
            if gf is not None and gr is not None:
                diffs.append(gf - gr)
        per_seed.append(float(np.mean(diffs)) if diffs else np.nan)
    d = np.array(per_seed)
    ok = ~np.isnan(d)
    out: dict = {"rounds": rounds}
    if ok.any():
        d = d[ok]
        sub = _boot_idx(len(d))
        out["gain_full_minus_random"] = _num(d.mean())
        out["gain_full_minus_random_ci"] = _ci(d[sub].mean(1)) if len(d) > 1 else None
        out["seeds_with_focus"] = int(ok.sum())
    if rounds:
        out["chunk_share_full"] = round(float(np.mean([r["chunk_share_full"] for r in rounds])), 3)
        out["chunk_share_random"] = round(float(np.mean([r["chunk_share_random"] for r in rounds])), 3)
    return out


def _at(row: dict, key: str, val: str) -> float | None:
    return (row.get("strata") or {}).get(key, {}).get(val)


def _gain(a, b) -> float | None:
    return None if a is None or b is None else round(a - b, 3)
