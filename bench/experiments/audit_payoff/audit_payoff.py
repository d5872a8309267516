"""Does cleaning the labels the audit flags pay? (issue 33, item 4's payoff)

Real LSPET labels the shipped base never trained on (im06001–07000 by default; the base trained on
im00001–05900) get the label audit bench's injected errors (:func:`label_audit.inject`: by default 5 % of frames
with a limb's left/right exchanged, 5 % with one joint moved 0.5–2 ``l``, 2 % with a joint removed). They are
ingested as a train split and audited as `iterate audit` does (:func:`iterate.loop.audit.run_audit`, the
manifest's default thresholds, the base as the out-of-sample model). A reviewer then fixes every frame the audit
flagged (its label goes back to the clean one; a flagged clean frame stays as it was).

The same fine-tune — the product's ``train()``, from the base, the same steps, seed and order — runs on the clean
labels, the noisy labels and the fixed labels, and each model is scored on held-out test frames (im07501–08000)
through the checkpoint's inference path. PCKh@0.5 and @0.1 with 95 % bootstrap intervals over test frames, and,
paired over the same resamples, what the noise cost (clean − noisy) and the share of it the fix recovered
((fixed − noisy) / (clean − noisy)).

    python bench/experiments/audit_payoff/audit_payoff.py [--steps 600] [--seed 0] [--scale 1.0] [--smoke]
Last lines: audit_payoff_<arm>_pckh05 / _pckh01 (arm: base, clean, noisy, fixed), audit_payoff_noise_cost_pckh05,
audit_payoff_recovered_share_pckh05, audit_payoff_frames_fixed, audit_payoff_injected_frames_fixed
Goal (issue 33): fixing the flagged frames recovers ≥ 80 % of the PCKh that the noise cost.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "label_audit"))  # its injected errors, its audit project
from label_audit import BASE, audit_project, inject

from iterate.core.ledger import Ledger
from iterate.loop.audit import run_audit
from iterate.loop.settings import infer_config, keypoint_spec, train_setup
from model.checkpoints import model_from_checkpoint
from model.codec import DarkCodec
from model.data import Sample
from model.evaluate import gt_arrays, head_boxes, predictor
from model.train import train
from reports.metrics import bootstrap_rows, normalisers, pck_hits

import _common
from _common import LSPET, bare_forward_speed, lspet_samples, write_result

N_BOOT = 2000


def subset(coco: dict, first: int, last: int) -> dict:
    keep = set(range(first, last + 1))
    return {
        "images": [i for i in coco["images"] if i["id"] in keep],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep],
        "categories": coco["categories"],
    }


def samples_of(coco: dict) -> list[Sample]:
    ims = {i["id"]: i for i in coco["images"]}
    return [
        Sample(
            str(LSPET / ims[a["image_id"]]["file_name"]),
            np.asarray(a["keypoints"], np.float64).reshape(-1, 3),
            str(a["image_id"]),
        )
        for a in sorted(coco["annotations"], key=lambda a: a["image_id"])
    ]


def audited(noisy: dict, work: Path) -> set[int]:
    """`iterate audit` on the noisy labels as a train split (the base is their out-of-sample model) → the image ids
    of every frame it flags."""
    m = audit_project(noisy, work, "train", "audit-payoff-bench")
    with Ledger(m.workspace_dir) as led:
        res = run_audit(m, led)
    by_file = {Path(i["file_name"]).name: i["id"] for i in noisy["images"]}
    return {by_file[Path(s.frame.path).name] for s in res.suspects}


def per_frame_hits(m, ck: str, test: list[Sample]) -> dict[str, np.ndarray]:
    """Each test frame's hits at α 0.5 and 0.1 (N, K; NaN unlabeled) through the checkpoint's inference path."""
    model, _ = model_from_checkpoint(ck)
    codec = DarkCodec(m.model.input_size, m.model.heatmap_size, m.model.sigma)
    pred = predictor(infer_config(m), model, codec).predict(test).keypoints
    gt, vis = gt_arrays(test)
    spec = keypoint_spec(m)
    norm = normalisers(gt, vis, spec.normalizer, list(spec.names), head_boxes(test))
    k = norm.scored
    return {a: pck_hits(pred[k], gt[k], vis[k], norm.lengths[k], alpha=float(a)) for a in ("0.5", "0.1")}


def pooled(h: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pooled PCKh (%) of each bootstrap resample ``rows`` (B, N) of frames."""
    hit = np.nansum(h, 1)
    n = (~np.isnan(h)).sum(1)
    return 100 * hit[rows].sum(1) / np.maximum(n[rows].sum(1), 1)


def ci(x: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in np.quantile(x, [0.025, 0.975], method="inverted_cdf")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-first", type=int, default=6001)
    ap.add_argument("--train-last", type=int, default=7000)
    ap.add_argument("--test-first", type=int, default=7501)
    ap.add_argument("--test-last", type=int, default=8000)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the default error rates (5/5/2 %%) by this")
    ap.add_argument("--name", default="audit_payoff", help="the results file's name")
    ap.add_argument("--smoke", action="store_true", help="40 train / 20 test frames, 3 steps: a test runs it")
    args = ap.parse_args()
    if args.smoke:
        _common.smoke()
        args.train_last, args.test_last, args.steps, args.scale = args.train_first + 39, args.test_first + 19, 3, 2.0
    speed = bare_forward_speed(seconds=0.5 if args.smoke else 3.0)
    coco = json.loads((LSPET / "annotations.coco.json").read_text())
    clean = subset(coco, args.train_first, args.train_last)
    noisy = copy.deepcopy(clean)
    names = list(coco["categories"][0]["keypoints"])
    rates = {"swap": 0.05 * args.scale, "move": 0.05 * args.scale, "remove": 0.02 * args.scale}
    truth = inject(noisy, names, rates, args.seed)
    test = lspet_samples(args.test_first, args.test_last)
    m = _common.manifest()
    setup = train_setup(m, epochs=10_000)
    setup = replace(setup, train=replace(setup.train, seed=args.seed))
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        flagged = audited(noisy, work)
        fixed = copy.deepcopy(noisy)
        clean_ann = {a["image_id"]: a for a in clean["annotations"]}
        fixed["annotations"] = [
            copy.deepcopy(clean_ann[a["image_id"]]) if a["image_id"] in flagged else a for a in fixed["annotations"]
        ]
        arms = {"clean": clean, "noisy": noisy, "fixed": fixed}
        hits = {"base": per_frame_hits(m, str(BASE), test)}
        for arm, data in arms.items():
            res = train(setup, samples_of(data), [], work / arm, init=BASE, max_steps=args.steps)
            hits[arm] = per_frame_hits(m, str(res.last), test)
            print(f"{arm}: {res.steps} steps in {res.seconds:.0f} s", flush=True)
    n = len(next(iter(hits.values()))["0.5"])
    rows = bootstrap_rows(n, N_BOOT)
    fig: dict = {}
    details: dict = {
        "train": f"LSPET im{args.train_first:05d}-im{args.train_last:05d}",
        "test": f"LSPET im{args.test_first:05d}-im{args.test_last:05d} ({n} frames scored)",
        "rates": rates,
        "steps": args.steps,
        "seed": args.seed,
        "injected": {k: sum(v["type"] == k for v in truth.values()) for k in ("swap", "move", "remove")},
    }
    boot = {arm: {a: pooled(h[a], rows) for a in h} for arm, h in hits.items()}
    for arm, h in hits.items():
        for a in ("0.5", "0.1"):
            key = f"audit_payoff_{arm}_pckh{a.replace('0.', '0')}"
            fig[key] = round(float(pooled(h[a], np.arange(n)[None])[0]), 2)
            details[f"{key}_ci95"] = ci(boot[arm][a])
    for a in ("0.5", "0.1"):
        tag = a.replace("0.", "0")
        cost = boot["clean"][a] - boot["noisy"][a]
        gain = boot["fixed"][a] - boot["noisy"][a]
        fig[f"audit_payoff_noise_cost_pckh{tag}"] = round(
            fig[f"audit_payoff_clean_pckh{tag}"] - fig[f"audit_payoff_noisy_pckh{tag}"], 2
        )
        details[f"audit_payoff_noise_cost_pckh{tag}_ci95"] = ci(cost)
        point = fig[f"audit_payoff_noise_cost_pckh{tag}"]
        share = (fig[f"audit_payoff_fixed_pckh{tag}"] - fig[f"audit_payoff_noisy_pckh{tag}"]) / point if point else None
        fig[f"audit_payoff_recovered_share_pckh{tag}"] = None if share is None else round(share, 3)
        ok = np.abs(cost) > 1e-9
        details[f"audit_payoff_recovered_share_pckh{tag}_ci95"] = ci(gain[ok] / cost[ok]) if ok.any() else None
        details[f"audit_payoff_fix_gain_pckh{tag}_ci95"] = ci(gain)
    fig["audit_payoff_frames_fixed"] = len(flagged)
    fig["audit_payoff_injected_frames_fixed"] = len(flagged & set(truth))
    details["injected_frames"] = len(truth)
    name = f"{args.name}_smoke" if args.smoke else args.name
    write_result(name, fig, details, speed=speed)


if __name__ == "__main__":
    main()
