"""`iterate simulate`: prove (or disprove) that selection beats random before paying annotators.

On a fully labeled pool the labels are hidden; for each strategy × seed, each round selects a chunk with the
same pieces `iterate select` uses (scores, k-center, gap focus from a val evaluation), reveals its labels,
fine-tunes from the base model on everything revealed so far (a fixed number of steps), and scores a
fixed test set. Paired over seeds: every strategy of a seed sees the same pool, base and training seed.
In-process (no Label Studio, no ledger), so it runs in minutes on a CPU. The statistics over seeds and the
outputs (simulate.json, .md, .png) are :mod:`reports.simulation`'s, from the rows recorded here.
"""

from __future__ import annotations

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
from iterate.core.metric_keys import MEAN_SMS01, PCKH01, PCKH05
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
from reports.simulation import COLD, summarise, write_outputs

STRATEGY_ORDER = tuple(strategies.STRATEGIES)
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
    # the focus metric's figure, as the report has it
    return evaluate(keypoint_spec(m), strata_of(m), es, also=(selection_setup(m).focus_alpha,)), p


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
        strata = {k: {v: r[PCKH05] for v, r in rows.items()} for k, rows in res["strata"].items()}
        return {"labels": labels, **{k: ev[k] for k in (PCKH01, PCKH05, MEAN_SMS01)}, "strata": strata}

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
        rows = [dict(self.base_row or {"labels": 0, PCKH01: 0.0, PCKH05: 0.0, MEAN_SMS01: 0.0, "strata": {}})]
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
                    f"{strategy} seed {seed} round {rnd}: {len(labeled)} labels → PCKh@0.1 {row[PCKH01]:.2f} "
                    f"@0.5 {row[PCKH05]:.2f} MeanSmS@0.1 {row[MEAN_SMS01]:.2f}; {effort['corrections']} "
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
