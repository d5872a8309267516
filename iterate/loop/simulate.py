"""`iterate simulate`: prove (or disprove) that selection beats random before paying annotators.

On a fully labeled pool the labels are hidden; for each strategy × seed, each round selects a chunk with the
same pieces `iterate select` uses (scores, k-center, gap focus from a val evaluation), reveals its labels,
fine-tunes from the base model on everything revealed so far (a small time-limited config), and scores a
fixed test set. In-process (no Label Studio, no ledger), so it runs in minutes on a CPU.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iterate.core.coco import ann_key, coco_keypoints, read_coco
from iterate.core.manifest import Manifest
from iterate.loop.scoring import score
from iterate.loop.select import batch_scores
from iterate.loop.settings import infer_config, keypoint_spec, train_setup
from iterate.loop.settings import strata as strata_of
from iterate.selection import scores as sc
from iterate.selection import strategies
from iterate.selection.strata import StrataPredictor
from model.checkpoints import model_from_checkpoint
from model.codec import DarkCodec
from model.data import Sample
from model.evaluate import head_boxes, predictor
from model.hrnet import build_model
from model.infer import SCORING, Predictor, load_predictor
from model.train import train
from reports.evaluation import EvalSet, evaluate
from reports.focus import next_chunk_focus

STRATEGY_ORDER = tuple(strategies.STRATEGIES)


@dataclass
class SimConfig:
    budgets: list[int]
    strategies: tuple[str, ...] = STRATEGY_ORDER
    seeds: tuple[int, ...] = (0,)
    minutes_per_round: float = 1.0
    base: str | None = None


def _scoring_predictor(m: Manifest, model, codec):
    """`iterate select`'s scoring path (flip TTA, no refine pass) for an in-memory model."""
    st = infer_config(m).override(**SCORING)
    return Predictor.from_settings(model, codec, st, batch_size=32)


def _score(m: Manifest, model, codec, samples):
    """Per-frame uncertainty scores, keypoints and embeddings of unlabeled samples (one streamed pass)."""
    pr = _scoring_predictor(m, model, codec)
    n, k = len(samples), m.keypoints.num_joints
    out = {name: np.zeros(n, np.float32) for name in sc.NAMES}
    kps, conf, emb = np.zeros((n, k, 2)), np.zeros((n, k)), None
    for b in pr.batches(samples):
        if not len(b.index):
            continue
        bs, kp, c = batch_scores(keypoint_spec(m), codec, b)
        for name in sc.NAMES:
            out[name][b.index] = bs[name]
        kps[b.index], conf[b.index] = kp, c
        if emb is None:
            emb = np.zeros((n, b.embedding.shape[1]), np.float32)
        emb[b.index] = b.embedding.numpy()
    return out, kps, conf, emb


def _focus(m: Manifest, model, codec, val, pool_kps, pool_conf, pool_emb) -> tuple[dict | None, list[dict]]:
    p = predictor(infer_config(m), model, codec).predict(val)
    gt = np.stack([s.keypoints[:, :2] for s in val])
    vis = np.stack([s.keypoints[:, 2] for s in val])
    attrs = [s.attributes for s in val]
    res = evaluate(
        keypoint_spec(m),
        strata_of(m),
        EvalSet(p.keypoints, gt, vis, attrs, list(range(len(val))), head_boxes=head_boxes(val), scores=p.scores),
    )
    ps = _scoring_predictor(m, model, codec).predict(
        val
    )  # strata calibrated on the pool's scoring path, as select does
    sp = StrataPredictor(m.strata, m.keypoints.names).fit(ps.keypoints, ps.scores, ps.embeddings, attrs)
    strata = sp.predict(pool_kps, pool_conf, pool_emb)
    metric = m.selection.focus_metric
    f = next_chunk_focus(res["strata"], res.get(metric), strata, 1.0 - pool_conf.mean(1), m.selection.explore, metric)
    items = [i for i in f["items"] if i["budget_share"] > 0]
    if not items:
        return None, strata
    key = items[0]["key"]
    return {"key": key, "weights": f["weights"][key]}, strata


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


def run(m: Manifest, pool, val, test, cfg: SimConfig, out_dir: Path, log: Callable[[str], None] = print) -> dict:
    """pool/val/test: lists of `model.data.Sample` with labels (and `.attributes` on val)."""
    import tempfile

    spec = keypoint_spec(m)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = DarkCodec(m.model.input_size, m.model.heatmap_size, m.model.sigma)
    curves: dict = {}
    t_start = time.time()
    base_model = None
    if cfg.base:
        base_model, _ = model_from_checkpoint(cfg.base)
    base_eval = score(spec, load_predictor(cfg.base).predict(test).keypoints, test) if base_model else None
    for strategy in cfg.strategies:
        for seed in cfg.seeds:
            rng = np.random.default_rng(seed)
            labeled: list[int] = []
            model = base_model or build_model(
                m.model.backbone, m.keypoints.num_joints, m.model.input_size, m.model.heatmap_size
            )
            rows = [{"labels": 0, **(base_eval or {"pckh01": 0.0, "pckh05": 0.0, "mean_sms01": 0.0})}]
            for rnd, budget in enumerate(cfg.budgets, 1):
                t0 = time.time()
                avail = [i for i in range(len(pool)) if i not in set(labeled)]
                sub = [pool[i] for i in avail]
                combined = emb = strata = focus = None
                if strategy != "random":
                    scores, kps, conf, emb = _score(m, model, codec, sub)
                    combined = sc.combine(scores, m.selection.weights)
                    if strategy == "full":
                        focus, strata = _focus(m, model, codec, val, kps, conf, emb)
                pool_ = strategies.Pool(
                    len(sub), rng, combined=combined, emb=emb, strata=strata, focus=focus, explore=m.selection.explore
                )
                picked = strategies.choose(strategy, min(budget, len(sub)), pool_).rows
                labeled += [avail[i] for i in picked]
                with tempfile.TemporaryDirectory() as d:
                    init = None
                    if cfg.base:
                        init = cfg.base
                    res = train(
                        train_setup(m, epochs=10_000),
                        [pool[i] for i in labeled],
                        [],
                        d,
                        init=init,
                        time_limit_s=cfg.minutes_per_round * 60,
                    )
                    model, _ = model_from_checkpoint(res.last)
                ev = score(spec, predictor(infer_config(m), model, codec).predict(test).keypoints, test)
                rows.append({"labels": len(labeled), **ev})
                log(
                    f"{strategy} seed {seed} round {rnd}: {len(labeled)} labels → PCKh@0.1 {ev['pckh01']:.2f} "
                    f"@0.5 {ev['pckh05']:.2f} MeanSmS@0.1 {ev['mean_sms01']:.2f} ({time.time() - t0:.0f} s)"
                )
            curves.setdefault(strategy, []).append(rows)
    summary = _summarise(curves)
    summary["wall_s"] = round(time.time() - t_start, 1)
    summary["config"] = {
        "budgets": cfg.budgets,
        "seeds": list(cfg.seeds),
        "minutes_per_round": cfg.minutes_per_round,
        "pool": len(pool),
        "val": len(val),
        "test": len(test),
        "base": cfg.base,
    }
    (out_dir / "simulate.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, out_dir / "simulate.png")
    (out_dir / "simulate.md").write_text(_markdown(summary))
    return summary


def _summarise(curves: dict) -> dict:
    out: dict = {"strategies": {}}
    for s, runs in curves.items():
        labels = [r["labels"] for r in runs[0]]
        mean = {
            k: [float(np.mean([run[i][k] for run in runs])) for i in range(len(labels))]
            for k in ("pckh01", "pckh05", "mean_sms01")
        }
        out["strategies"][s] = {"labels": labels, **mean}
    if "random" in out["strategies"]:
        target = out["strategies"]["random"]["pckh05"][-1]
        for c in out["strategies"].values():
            c["labels_to_reach_random_final_pckh05"] = _labels_to_reach(c["labels"], c["pckh05"], target)
    return out


def _labels_to_reach(labels: list[int], ys: list[float], target: float) -> float | None:
    """Linear interpolation of the learning curve; None when it never reaches the target."""
    for i in range(1, len(labels)):
        if ys[i] >= target:
            y0, y1 = ys[i - 1], ys[i]
            if y1 == y0:
                return float(labels[i])
            return round(labels[i - 1] + (target - y0) / (y1 - y0) * (labels[i] - labels[i - 1]), 1)
    return None


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=100)
    for ax, key, title in zip(axes, ("pckh01", "pckh05", "mean_sms01"), ("PCKh@0.1", "PCKh@0.5", "MeanSmS@0.1")):
        for s, c in summary["strategies"].items():
            ax.plot(c["labels"], c[key], marker="o", label=s)
        ax.set_title(title + " (test)")
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _markdown(summary: dict) -> str:
    cfg = summary["config"]
    L = [
        "# Active-learning simulation",
        "",
        f"Pool {cfg['pool']} frames (labels hidden), val {cfg['val']}, test {cfg['test']}; rounds of "
        f"{cfg['budgets']} labels; seeds {cfg['seeds']}; each round fine-tunes from `{cfg['base'] or 'scratch'}` "
        f"for {cfg['minutes_per_round']} min on everything revealed. Wall time {summary['wall_s']:.0f} s.",
        "",
        "| strategy | labels | PCKh@0.1 | PCKh@0.5 | MeanSmS@0.1 |",
        "|---|---|---|---|---|",
    ]
    for s, c in summary["strategies"].items():
        for i, n in enumerate(c["labels"]):
            L.append(f"| {s} | {n} | {c['pckh01'][i]:.2f} | {c['pckh05'][i]:.2f} | {c['mean_sms01'][i]:.2f} |")
    L += ["", "| strategy | labels needed to reach random's final PCKh@0.5 |", "|---|---:|"]
    for s, c in summary["strategies"].items():
        v = c.get("labels_to_reach_random_final_pckh05")
        L.append(f"| {s} | {v if v is not None else 'not reached'} |")
    L += ["", "![learning curves](simulate.png)", ""]
    return "\n".join(L)
