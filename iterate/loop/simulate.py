"""`iterate simulate`: prove (or disprove) that selection beats random before paying annotators.

On a fully labeled pool the labels are hidden; for each strategy × seed, each round selects a chunk with the
same pieces `iterate select` uses (scores, k-center, gap focus from a val evaluation), reveals its labels,
fine-tunes from the base model on everything revealed so far (a fixed number of steps), and scores a
fixed test set. Paired over seeds: every strategy of a seed sees the same pool, base and training seed.
In-process (no Label Studio, no ledger), so it runs in minutes on a CPU.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from iterate.core.coco import ann_key, coco_keypoints, read_coco
from iterate.core.errors import IterateError
from iterate.core.manifest import Manifest
from iterate.core.score_kinds import PASS_SCORES
from iterate.loop.pool import SCORING_BATCH, PoolParts, Scored, build_pool, score_samples
from iterate.loop.scoring import score
from iterate.loop.settings import derived_strata, infer_config, keypoint_spec, selection_setup, train_setup
from iterate.loop.settings import strata as strata_of
from iterate.selection import features, strategies
from iterate.selection.strata import StrataPredictor
from model.checkpoints import model_from_checkpoint
from model.codec import DarkCodec
from model.data import Sample
from model.evaluate import head_boxes, predictor
from model.hrnet import build_model
from model.infer import SCORING, load_predictor
from model.train import train
from reports import cost
from reports.evaluation import EvalSet, evaluate
from reports.focus import next_chunk_focus
from reports.metrics import normalisers

STRATEGY_ORDER = tuple(strategies.STRATEGIES)
COLD = "cold_start"  # `full` whose first chunk is a cold start (image features), as if no base were given
N_BOOT = 2000
TOLERANCES = (0.1, 0.2, 0.5)  # besides cost.accept_tolerance: the effort verdict at looser acceptance (× l)


@dataclass
class SimConfig:
    budgets: list[int]
    strategies: tuple[str, ...] = ("random", "full")
    seeds: tuple[int, ...] = (0,)
    steps_per_round: int = 150
    base: str | None = None
    cold_first_chunk: bool = True  # with a base: also pick the first chunk by a cold start, to compare the two
    replay: bool = True  # mix the manifest's train.replay source into every fine-tune, as `iterate retrain` does


def pool_scores(m: Manifest, ck_path: Path, samples: list[Sample]) -> Scored:
    """The pool's scoring pass by `iterate select`'s own code (:func:`iterate.loop.pool.score_samples`): the same
    checkpoint file, path, batches and stored precision, so a simulated round scores exactly as `select` does."""
    spec = keypoint_spec(m)
    raw, kps, conf, emb = score_samples(spec, ck_path, samples)
    if emb is None:
        raise IterateError("no pool frame could be read")
    scores = {name: raw[:, i] for i, name in enumerate(PASS_SCORES)}
    return Scored([s.frame_id for s in samples], scores, kps, conf.astype(np.float32), emb, len(samples))


def _evaluate(m: Manifest, model, codec, samples):
    """The checkpoint's inference path on labeled samples → (overall and per-stratum figures as the report has them,
    the predictions)."""
    p = predictor(infer_config(m), model, codec).predict(samples)
    gt = np.stack([s.keypoints[:, :2] for s in samples])
    vis = np.stack([s.keypoints[:, 2] for s in samples])
    es = EvalSet(
        p.keypoints, gt, vis, [s.attributes for s in samples], list(range(len(samples))), head_boxes=head_boxes(samples)
    )
    return evaluate(keypoint_spec(m), strata_of(m), es), p


def _focus(m: Manifest, model, codec, ck_path, val, pool_kps, pool_conf, pool_emb) -> tuple[dict | None, list[dict]]:
    """What `iterate report` would tell the next round: the focus stratum and its shares, and the pool's strata."""
    res, _ = _evaluate(m, model, codec, val)
    attrs = [s.attributes for s in val]
    # calibrated on the pool's scoring path, as select does
    ps = load_predictor(ck_path, joints=m.keypoints.names, batch_size=SCORING_BATCH, **SCORING).predict(val)
    sp = StrataPredictor(m.strata, m.keypoints.names, derived_strata(m)).fit(
        ps.keypoints, ps.scores, ps.embeddings, attrs
    )
    strata = sp.predict(pool_kps, pool_conf, pool_emb)
    setup = selection_setup(m)
    metric = setup.focus_metric
    f = next_chunk_focus(res["strata"], res.get(metric), strata, 1.0 - pool_conf.mean(1), setup.explore, metric)
    items = [i for i in f["items"] if i["budget_share"] > 0]
    if not items:
        return None, strata
    key = items[0]["key"]
    weights = f["weights"][key]
    return {"key": key, "value": max(weights, key=weights.get), "weights": weights}, strata


def coco_samples(m: Manifest, path: Path, images: Path | None, limit: int | None = None) -> list[Sample]:
    """The first labeled person of each image of a COCO file, as samples with their attributes."""
    spec = keypoint_spec(m)
    coco, order = read_coco(spec, path)
    root = images or path.parent
    first: dict = {}
    for a in sorted(coco["annotations"], key=ann_key):
        first.setdefault(a["image_id"], a)
    out = []
    for im in coco["images"]:
        a = first.get(im["id"])
        if a is None:
            continue
        kp = np.asarray(coco_keypoints(spec, a, order, path), dtype=np.float64)
        if (kp[:, 2] > 0).any():
            out.append(Sample(str(root / im["file_name"]), kp, str(im["id"]), dict(a.get("attributes") or {})))
    return out[:limit] if limit else out


def replay_samples(m: Manifest) -> list[Sample]:
    """The manifest's ``train.replay`` source (the base's own training data `iterate retrain` mixes into every
    fine-tune) as samples; [] when the manifest names none. The simulation reads it from its COCO file."""
    rp = m.train.replay
    if rp is None:
        return []
    src = next(s for s in m.sources if s.label == rp.source)
    if src.kind != "coco":
        raise IterateError(
            f"train.replay.source: simulate reads replay frames from a coco source, '{rp.source}' is {src.kind} "
            "(or pass --no-replay)"
        )
    path = m.resolve(src.path)
    if not path.is_file():
        raise IterateError(f"train.replay.source '{rp.source}': {path} not found (or pass --no-replay)")
    out = coco_samples(m, path, m.resolve(src.images) if src.images else None)
    if not out:
        raise IterateError(f"train.replay.source '{rp.source}': {path} holds no labeled person")
    return out


class _Sim:
    """One simulation's fixed parts: the data, the base, the codec and the cached cold-start features."""

    def __init__(self, m: Manifest, pool, val, test, cfg: SimConfig, log):
        self.m, self.pool, self.val, self.test, self.cfg, self.log = m, pool, val, test, cfg, log
        self.replay = replay_samples(m) if cfg.replay else []  # first: a bad replay source fails before any work
        self.spec = keypoint_spec(m)
        self.codec = DarkCodec(m.model.input_size, m.model.heatmap_size, m.model.sigma)
        self.base_model = model_from_checkpoint(cfg.base)[0] if cfg.base else None
        self.base_row = self._row(0, self.base_model) if self.base_model is not None else None
        self._features: np.ndarray | None = None

    def _row(self, labels: int, model) -> dict:
        res, pred = _evaluate(self.m, model, self.codec, self.test)
        ev = score(self.spec, pred.keypoints, self.test)
        strata = {k: {v: r["pckh05"] for v, r in rows.items()} for k, rows in res["strata"].items()}
        return {"labels": labels, **{k: ev[k] for k in ("pckh01", "pckh05", "mean_sms01")}, "strata": strata}

    def _effort(self, model, samples: list[Sample], why: list[str]) -> dict:
        """The corrections an annotator makes on a revealed chunk starting from the pre-annotations `iterate select`
        would push (``model``'s keypoints on the checkpoint's inference path; None: no pre-annotation, every labeled
        joint is added), counted by the product's accounting (reports/cost.py) against the hidden labels."""
        label = np.stack([s.keypoints for s in samples]).astype(np.float64)
        pre = None
        if model is not None:
            pre = predictor(infer_config(self.m), model, self.codec).predict(samples).keypoints
        names = self.m.keypoints.names
        hb = head_boxes(samples)
        norm = normalisers(label[..., :2], label[..., 2], self.spec.normalizer, names, head_boxes=hb).lengths
        kind, d, _ = cost.joint_edits(pre, label, norm, self.m.cost.accept_tolerance)
        per = cost.corrections(kind)
        explore = np.array([w == strategies.EXPLORE_TAG for w in why], bool)
        out = {"frames": len(samples), "corrections": int(per.sum())}
        out |= {name: int((kind == code).sum()) for code, name in cost.KINDS.items()}
        out |= {"explore_frames": int(explore.sum()), "explore_corrections": int(per[explore].sum())}
        out["at"] = {}  # the same count had annotators left joints this far off (× l): how the verdict depends on it
        for tol in TOLERANCES:
            k2 = np.where(
                (kind == cost.ACCEPTED) | (kind == cost.MOVED), np.where(d <= tol, cost.ACCEPTED, cost.MOVED), kind
            )
            p2 = cost.corrections(k2)
            out["at"][str(tol)] = {"corrections": int(p2.sum()), "explore_corrections": int(p2[explore].sum())}
        return out

    def features(self, rows: np.ndarray) -> np.ndarray:
        """Cold-start image features of the candidate ``rows`` (raw features computed once; the PCA over the
        candidates with the manifest's seed, as `iterate select` does)."""
        if self._features is None:
            self._features = np.stack([features.image_features(s.path) for s in self.pool])
        return features.pca(self._features[rows], 32, selection_setup(self.m).feature_seed)

    def _fresh(self):
        m = self.m
        mm = m.model
        return build_model(mm.backbone, m.keypoints.num_joints, mm.input_size, mm.heatmap_size, mm.box_head)

    def pick(self, strategy: str, budget: int, avail: np.ndarray, labeled: list[int], model, ck, rng, before):
        """One round's choice by the product's pool builder and strategy: ``model``/``ck`` the selecting model (in
        memory and its checkpoint file; None: no model yet, a cold start), ``before`` the last round's pool
        predictions (the snapshot score; updated). → (picked, the chosen pool rows, the focus)."""
        m = self.m
        setup = selection_setup(m)
        sub = [self.pool[i] for i in avail]
        name = "full" if strategy == COLD else strategy
        scored = None
        if ck is not None and "scores" in strategies.NEEDS[name]:
            scored = pool_scores(m, ck, sub)
        seen: dict = {}

        def focus_and_strata() -> tuple[dict | None, list[dict]]:
            if not seen:
                seen["f"] = _focus(
                    m, model, self.codec, ck, self.val, scored.keypoints, scored.kp_scores, scored.embeddings
                )
            return seen["f"]

        parts = PoolParts(
            len(sub),
            scored,
            lambda: self.features(avail),
            labeled_bodies=lambda: [s.keypoints for s in [*self.val, *(self.pool[i] for i in labeled)]],
            previous_keypoints=before[avail],
            focus=lambda: focus_and_strata()[0],
            strata=lambda: focus_and_strata()[1],
        )
        notes: list[str] = []
        pool_ = build_pool(setup, name, parts, rng, notes)
        if scored is not None:
            before[avail] = scored.keypoints
        picked = strategies.choose(name, min(budget, len(sub)), pool_)
        return picked, [int(avail[i]) for i in picked.rows], pool_.focus

    def _fine_tune(self, setup, labeled: list[int], out: Path):
        """Fine-tune from the base on every revealed frame → (the model, its checkpoint file)."""
        res = train(
            setup,
            [self.pool[i] for i in labeled],
            [],
            out,
            init=self.cfg.base,
            max_steps=self.cfg.steps_per_round,
            replay=self.replay or None,
        )
        return model_from_checkpoint(res.last)[0], Path(res.last)

    def run(self, strategy: str, seed: int) -> list[dict]:
        """One strategy's rounds for one seed: each round picks a chunk with the previous round's model, reveals
        it and fine-tunes from the base on everything revealed (``steps_per_round`` steps, the seed's own order)."""
        m, cfg = self.m, self.cfg
        rng = np.random.default_rng(seed)
        setup = train_setup(m, epochs=10_000)
        setup = replace(setup, train=replace(setup.train, seed=seed))
        budgets = cfg.budgets[:1] if strategy == COLD else cfg.budgets
        labeled: list[int] = []
        model = self.base_model or self._fresh()
        ck = None if strategy == COLD or self.base_model is None else Path(cfg.base)  # None: no model yet
        before = np.full((len(self.pool), m.keypoints.num_joints, 2), np.nan)  # last round's pool predictions
        rows = [dict(self.base_row or {"labels": 0, "pckh01": 0.0, "pckh05": 0.0, "mean_sms01": 0.0, "strata": {}})]
        with tempfile.TemporaryDirectory() as work:
            for rnd, budget in enumerate(budgets, 1):
                t0 = time.time()
                avail = np.setdiff1d(np.arange(len(self.pool)), labeled)
                picked, chunk, focus = self.pick(strategy, budget, avail, labeled, model, ck, rng, before)
                why = [picked.why.get(i, "") for i in picked.rows]
                effort = self._effort(model if ck is not None else None, [self.pool[i] for i in chunk], why)
                labeled += chunk
                model, ck = self._fine_tune(setup, labeled, Path(work) / f"round-{rnd}")
                shutil.rmtree(Path(work) / f"round-{rnd - 1}", ignore_errors=True)  # only the latest is read
                row = self._row(len(labeled), model)
                row |= {"focus": focus, "chunk_strata": _count_strata(m, [self.pool[i] for i in chunk])}
                row |= {"why": _count(why), "effort": effort, "picked": [self.pool[i].frame_id for i in chunk]}
                rows.append(row)
                self.log(
                    f"{strategy} seed {seed} round {rnd}: {len(labeled)} labels → PCKh@0.1 {row['pckh01']:.2f} "
                    f"@0.5 {row['pckh05']:.2f} MeanSmS@0.1 {row['mean_sms01']:.2f}; {effort['corrections']} "
                    f"corrections ({effort['corrections'] / max(1, effort['frames']):.1f} a frame) "
                    f"({time.time() - t0:.0f} s)"
                )
        return rows


def _count(xs) -> dict:
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def _count_strata(m: Manifest, samples) -> dict:
    """True strata of a chunk (the hidden labels' attributes): how many frames of each value it holds."""
    return {k: _count(str(s.attributes.get(k, "(not set)")) for s in samples) for k in m.strata}


def run(m: Manifest, pool, val, test, cfg: SimConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """pool/val/test: lists of `model.data.Sample` with labels (and `.attributes`). Paired: for each seed, every
    strategy starts from the same base, sees the same pool and trains with the same seed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    sim = _Sim(m, pool, val, test, cfg, log)
    names = list(cfg.strategies)
    if cfg.base and cfg.cold_first_chunk and "full" in names and COLD not in names:
        names.append(COLD)
    per_seed: dict[str, list[list[dict]]] = {s: [] for s in names}
    for seed in cfg.seeds:
        for s in names:
            per_seed[s].append(sim.run(s, seed))
    summary = summarise(per_seed, list(cfg.seeds))
    summary["wall_s"] = round(time.time() - t_start, 1)
    summary["config"] = {
        "budgets": cfg.budgets,
        "seeds": list(cfg.seeds),
        "steps_per_round": cfg.steps_per_round,
        "batch_size": m.train.batch_size,
        "pool": len(pool),
        "val": len(val),
        "test": len(test),
        "base": cfg.base,
        "replay_frames": len(sim.replay),
        "replay_fraction": m.train.replay.fraction if sim.replay else 0.0,
    }
    write_outputs(summary, out_dir)
    return summary


def write_outputs(summary: dict, out_dir: Path) -> None:
    """simulate.json, simulate.png and simulate.md of a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulate.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, out_dir / "simulate.png")
    if any("corrections" in c for c in summary["strategies"].values()):
        _plot_effort(summary, out_dir / "simulate_effort.png")
    (out_dir / "simulate.md").write_text(_markdown(summary))


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


# -- statistics over seeds ----------------------------------------------------------------------------
def paired_difference(a: dict, arm_a: str, b: dict, arm_b: str) -> dict:
    """Test PCKh@0.5 of ``arm_a`` in summary ``a`` minus ``arm_b`` in summary ``b``, round by round, paired over the
    seeds both ran (e.g. the same arm with and without replay): the mean and its 95 % bootstrap interval."""
    seeds = [x for x in a["seeds"] if x in b["seeds"]]
    if not seeds:
        raise ValueError(f"no seed in common: {a['seeds']} and {b['seeds']}")
    ra = [a["per_seed"][arm_a][a["seeds"].index(x)] for x in seeds]
    rb = [b["per_seed"][arm_b][b["seeds"].index(x)] for x in seeds]
    labels = [r["labels"] for r in ra[0]]
    if labels != [r["labels"] for r in rb[0]]:
        raise ValueError(f"the arms ran different budgets: {labels} and {[r['labels'] for r in rb[0]]}")
    d = np.array([[x["pckh05"] for x in run] for run in ra]) - np.array([[x["pckh05"] for x in run] for run in rb])
    ci = _ci(d[_boot_idx(len(seeds))].mean(1)) if len(seeds) > 1 else None
    return {"seeds": seeds, "labels": labels, "pckh05_diff": _num(d.mean(0)), "pckh05_diff_ci": ci}


def _boot_idx(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Resampled seed indices (n_boot, n): the same draws for every paired statistic of one summary."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


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
    bootstrap interval over seeds; the focus test and the first-chunk comparison."""
    idx = _boot_idx(len(seeds))
    out: dict = {"seeds": seeds, "interval": f"95 % bootstrap over seeds ({N_BOOT} resamples, paired)"}
    curves = {
        s: {k: np.array([[r[k] for r in run] for run in runs]) for k in ("pckh01", "pckh05", "mean_sms01")}
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
            if rnd is not None and k != "mean_sms01":
                d = arr - rnd[k][:, : arr.shape[1]]
                row[f"{k}_vs_random"] = _num(d.mean(0))
                row[f"{k}_vs_random_ci"] = _ci(d[idx].mean(1)) if len(seeds) > 1 else None
        if rnd is not None and s != COLD:
            reach = _reach(row["labels"], c["pckh05"], rnd["pckh05"], idx)
            row.update(reach)
        row.update(_strata_rows(runs, per_seed.get("random") if s not in ("random", COLD) else None, idx))
        if s != COLD:
            row.update(
                _effort_rows(runs, c["pckh05"], per_seed.get("random"), rnd["pckh05"] if rnd is not None else None, idx)
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
        a, b = curves["full"]["pckh05"][:, 1], curves[COLD]["pckh05"][:, 1]
        out["first_chunk"] = {
            "labels": per_seed[COLD][0][1]["labels"],
            "base_scored_pckh05": _num(a.mean()),
            "cold_start_pckh05": _num(b.mean()),
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
    out: dict = {"strata_pckh05": {}}
    for (k, v), arr in curves.items():
        out["strata_pckh05"].setdefault(k, {})[v] = _num(_nanmean(arr, 0))
    if rnd_runs is None:
        return out
    rnd = _strata_curves(rnd_runs)
    out["strata_pckh05_vs_random_final"] = {}
    if len(idx[0]) < 2:  # one seed: no interval
        return out
    for (k, v), arr in curves.items():
        if (k, v) not in rnd:
            continue
        d = arr[:, -1] - rnd[(k, v)][:, arr.shape[1] - 1]
        if np.isnan(d).any():
            continue
        out["strata_pckh05_vs_random_final"].setdefault(k, {})[v] = {"mean": _num(d.mean()), "ci": _ci(d[idx].mean(1))}
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
        "labels_to_reach_random_final_pckh05": point,
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
        "corrections_to_reach_random_final_pckh05": point,
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
        row = _effort_rows(f, curves["full"]["pckh05"], r, curves["random"]["pckh05"], idx)
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


# -- outputs ----------------------------------------------------------------------------------------------
def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    color = {s: f"C{i}" for i, s in enumerate(summary["strategies"])}  # one colour per strategy in every panel
    panels = (("pckh05", "PCKh@0.5 (test)"), ("pckh01", "PCKh@0.1 (test)"), ("pckh05_vs_random", "PCKh@0.5 − random"))
    for ax, (key, title) in zip(axes, panels):
        for s, c in summary["strategies"].items():
            if key not in c or (key.endswith("random") and s == "random"):
                continue
            x, y = c["labels"], c[key]
            (line,) = ax.plot(x, y, marker="o", label=s, color=color[s])
            band = c.get(f"{key}_ci")
            if band:
                lo = [v if v is not None else np.nan for v in band[0]]
                hi = [v if v is not None else np.nan for v in band[1]]
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        if key.endswith("random"):
            ax.axhline(0, color="k", lw=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%  (bands: 95 % over seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_effort(summary: dict, path: Path) -> None:
    """Test PCKh@0.5 against the corrections revealed so far (mean over seeds): selection judged in effort."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for i, (s, c) in enumerate(summary["strategies"].items()):
        if "corrections" not in c:
            continue
        axes[0].plot(c["corrections"], c["pckh05"], marker="o", label=s, color=f"C{i}")
        axes[1].plot(c["labels"][1:], c["corrections_per_frame"], marker="o", label=s, color=f"C{i}")
    axes[0].set_xlabel("corrections so far (joints moved, added or deleted)")
    axes[0].set_ylabel("PCKh@0.5 (test)")
    axes[0].set_title("learning curve in annotator effort", fontsize=10)
    axes[1].set_xlabel("labels")
    axes[1].set_ylabel("corrections per revealed frame")
    axes[1].set_ylim(bottom=0)
    axes[1].set_title("what a frame of each round cost", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _effort_markdown(summary: dict) -> list[str]:
    arms = {s: c for s, c in summary["strategies"].items() if "corrections" in c}
    if not arms:
        return []
    L = [
        "",
        "## In annotator effort",
        "",
        "Corrections: the joints an annotator moves (more than `cost.accept_tolerance` × l off), adds or deletes "
        "starting from the round's pre-annotations (the model that selected the round, on the checkpoint's inference "
        "path; none for a cold start), counted against the hidden labels by reports/cost.py.",
        "",
        "| strategy | labels | corrections so far | per revealed frame | per picked frame | per explore frame "
        "| per frame ÷ random's (paired) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, c in arms.items():
        vr, vci = c.get("corrections_per_frame_vs_random"), c.get("corrections_per_frame_vs_random_ci")
        ex = c.get("explore_corrections_per_frame")
        for i, n in enumerate(c["labels"][1:]):
            ratio = "" if vr is None or s == "random" else f"{vr[i]:.2f}" + (_iv([vci[0][i], vci[1][i]]) if vci else "")
            e = "–" if not ex or ex[i] is None else f"{ex[i]:.1f}"
            L.append(
                f"| {s} | {n} | {c['corrections'][i + 1]:.0f} | {c['corrections_per_frame'][i]:.1f} | "
                f"{c['picked_corrections_per_frame'][i]:.1f} | {e} | {ratio.replace('+', '')} |"
            )
    L += [
        "",
        "| strategy | corrections to reach random's final PCKh@0.5 | share of random's corrections | "
        "share of random's labels |",
        "|---|---:|---:|---:|",
    ]
    for s, c in arms.items():
        if "corrections_to_random_ratio" not in c:
            continue
        r, ci = c["corrections_to_random_ratio"], c.get("corrections_to_random_ratio_ci")
        v = c["corrections_to_reach_random_final_pckh05"]
        lr, lci = c.get("labels_to_random_ratio"), c.get("labels_to_random_ratio_ci")
        cell = "not reached" if r is None else f"{r:.2f}" + (_iv(ci).replace("+", "") if ci else "")
        lcell = "not reached" if lr is None else f"{lr:.2f}" + (_iv(lci).replace("+", "") if lci else "")
        L.append(f"| {s} | {'not reached' if v is None else f'{v:.0f}'} | {cell} | {lcell} |")
    at = summary.get("full_effort_at_tolerance") or {}
    if at:
        L += [
            "",
            "Had annotators left joints farther off (the same runs recounted): `full` against random",
            "",
            "| joints left within | share of random's corrections to reach its final PCKh@0.5 | a `full` frame's corrections "
            "÷ random's, per round |",
            "|---:|---:|---:|",
        ]
        for tol, r in at.items():
            v, ci = r.get("corrections_to_random_ratio"), r.get("corrections_to_random_ratio_ci")
            cell = "not reached" if v is None else f"{v:.2f}" + (_iv(ci).replace("+", "") if ci else "")
            per = " / ".join("–" if x is None else f"{x:.2f}" for x in (r.get("corrections_per_frame_vs_random") or []))
            L.append(f"| {tol} × l | {cell} | {per} |")
    L += ["", "![learning curves in effort](simulate_effort.png)"]
    return L


def _iv(ci) -> str:
    if not ci:
        return ""
    lo, hi = ci
    f = lambda v: "∞" if v is None else f"{v:+.2f}" if abs(v) < 1000 else f"{v:.0f}"  # noqa: E731
    return f" [{f(lo)}, {f(hi)}]"


def _verdict(mean, ci, what: str) -> str:
    if mean is None:
        return f"{what}: not measured"
    if not ci or ci[0] is None or ci[1] is None:
        return f"{what}: {mean:+.2f} (one seed: no interval)"
    if ci[0] > 0:
        word = "helped"
    elif ci[1] < 0:
        word = "hurt"
    else:
        word = "no difference told from noise"
    return f"{what}: {mean:+.2f}{_iv(ci)} → {word}"


def _replay_note(cfg: dict) -> str:
    n = cfg.get("replay_frames", 0)
    if not n:
        return " (no replay of the base's data)"
    return (
        f", {cfg['replay_fraction']:.0%} of each fine-tune's samples drawn from {n} replayed frames of the base's data"
    )


def _markdown(summary: dict) -> str:
    cfg = summary["config"]
    L = [
        "# Active-learning simulation (paired)",
        "",
        f"Pool {cfg['pool']} frames (labels hidden), val {cfg['val']} (gap focus), test {cfg['test']}; rounds of "
        f"{cfg['budgets']} labels; seeds {cfg['seeds']}. For each seed every strategy starts from "
        f"`{Path(cfg['base']).name if cfg['base'] else 'scratch'}`, sees the same pool and trains with the same seed: "
        f"each round fine-tunes from the base for {cfg['steps_per_round']} steps at batch {cfg['batch_size']} on "
        f"everything revealed{_replay_note(cfg)}. Intervals: {summary['interval']}. "
        f"Wall time {summary['wall_s']:.0f} s.",
        "",
        "| strategy | labels | PCKh@0.5 | − random (paired) | PCKh@0.1 | − random (paired) | MeanSmS@0.1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, c in summary["strategies"].items():
        for i, n in enumerate(c["labels"]):
            cell = []
            for k in ("pckh05", "pckh01"):
                ci = c.get(f"{k}_ci")
                cell.append(f"{c[k][i]:.2f}" + (_iv([ci[0][i], ci[1][i]]).replace("+", "") if ci else ""))
                d = c.get(f"{k}_vs_random")
                dci = c.get(f"{k}_vs_random_ci")
                cell.append(
                    "" if d is None or s == "random" else f"{d[i]:+.2f}" + (_iv([dci[0][i], dci[1][i]]) if dci else "")
                )
            L.append(f"| {s} | {n} | {' | '.join(cell)} | {c['mean_sms01'][i]:.2f} |")
    L += [
        "",
        "| strategy | labels to reach random's final PCKh@0.5 | share of random's labels | not reached (resamples) |",
        "|---|---:|---:|---:|",
    ]
    for s, c in summary["strategies"].items():
        if "labels_to_random_ratio" not in c:
            continue
        v, r = c["labels_to_reach_random_final_pckh05"], c["labels_to_random_ratio"]
        ci = c["labels_to_random_ratio_ci"]
        ratio = "not reached" if r is None else f"{r:.2f}" + (_iv(ci).replace("+", "") if ci else "")
        L.append(f"| {s} | {v if v is not None else 'not reached'} | {ratio} | {c['not_reached_share']:.0%} |")
    L += ["", "## Verdicts", ""]
    full = summary["strategies"].get("full")
    if full and "pckh05_vs_random" in full:
        L.append(
            "- "
            + _verdict(
                full["pckh05_vs_random"][-1],
                _col(full.get("pckh05_vs_random_ci"), -1),
                f"`full` − random at {full['labels'][-1]} labels, test PCKh@0.5 (points)",
            )
        )
    if summary.get("full_labels_to_random_ratio") is not None or "full_labels_to_random_ratio_ci" in summary:
        r, hi = summary.get("full_labels_to_random_ratio"), summary.get("full_labels_to_random_ratio_ci_high")
        goal = "met" if (r is not None and r <= 0.6 and hi is not None and hi < 1.0) else "not met"
        L.append(
            f"- labels `full` needs for random's final figure: {'not reached' if r is None else f'{r:.2f}×'}"
            f" (upper end {'∞' if hi is None else f'{hi:.2f}×'}); goal ≤ 0.6× with the upper end < 1: **{goal}**"
        )
    ft = summary.get("focus_test") or {}
    if "gain_full_minus_random" in ft:
        L.append(
            "- "
            + _verdict(
                ft["gain_full_minus_random"],
                ft.get("gain_full_minus_random_ci"),
                "steering: the focused stratum's test PCKh@0.5 gain per round, `full` − random",
            )
        )
        L.append(
            f"  (the focused stratum held {ft['chunk_share_full']:.0%} of `full`'s chunks and "
            f"{ft['chunk_share_random']:.0%} of random's)"
        )
    fc = summary.get("first_chunk")
    if fc:
        L.append(
            "- "
            + _verdict(
                fc["base_minus_cold"],
                fc.get("base_minus_cold_ci"),
                f"first chunk ({fc['labels']} labels) scored by the base − cold start, test PCKh@0.5",
            )
        )
    if ft.get("rounds"):
        L += [
            "",
            "## The report's focus, round by round",
            "",
            "| seed | round | focused stratum | gain under full | gain under random | chunk share full | chunk share random |",
            "|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in ft["rounds"]:
            g = lambda v: "–" if v is None else f"{v:+.2f}"  # noqa: E731
            L.append(
                f"| {summary['seeds'][r['seed_index']]} | {r['round']} | {r['stratum']} | {g(r['gain_full'])} | "
                f"{g(r['gain_random'])} | {r['chunk_share_full']:.0%} | {r['chunk_share_random']:.0%} |"
            )
    L += _strata_markdown(summary)
    L += _effort_markdown(summary)
    L += ["", "![learning curves](simulate.png)", ""]
    return "\n".join(L)


def _strata_markdown(summary: dict) -> list[str]:
    """Per stratum: each arm's mean test PCKh@0.5 round by round, and each arm − random at the final budget."""
    arms = {s: c for s, c in summary["strategies"].items() if c.get("strata_pckh05")}
    if not arms:
        return []
    paired = [s for s, c in arms.items() if c.get("strata_pckh05_vs_random_final")]
    L = [
        "",
        "## Where the points go: test PCKh@0.5 per stratum (mean of the seeds)",
        "",
        "Each arm's cell reads round by round from the base; a stratum the base knew can lose what a focused one "
        "gains.",
    ]
    keys = sorted({k for c in arms.values() for k in c["strata_pckh05"]})
    for key in keys:
        head = ["stratum", *(f"{s} ({' / '.join(map(str, arms[s]['labels']))} labels)" for s in arms)]
        head += [f"{s} − random at {arms[s]['labels'][-1]}" for s in paired]
        L += ["", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        values = sorted({v for c in arms.values() for v in c["strata_pckh05"].get(key, {})})
        for v in values:
            cells = [f"{key}={v}"]
            for s in arms:
                ys = arms[s]["strata_pckh05"].get(key, {}).get(v)
                cells.append("–" if ys is None else " / ".join("–" if y is None else f"{y:.1f}" for y in ys))
            for s in paired:
                d = arms[s]["strata_pckh05_vs_random_final"].get(key, {}).get(v)
                cells.append("–" if d is None else f"{d['mean']:+.2f}" + _iv(d["ci"]))
            L.append("| " + " | ".join(cells) + " |")
    return L


def _col(ci, i):
    return None if not ci else [ci[0][i], ci[1][i]]
