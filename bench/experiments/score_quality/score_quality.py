"""Which uncertainty score finds the frames the model gets wrong? A screening before the paired simulation
(`bench/experiments/selection_vs_random/simulate_lspet.py`), which alone says whether labeling those frames teaches
the model more.

On the simulation's pool (LSPET im06001–im06900, labels used only to grade), for each base model: every frame's
uncertainty scores on the selection path, and its true error on the product's inference path (the checkpoint's
own settings: flip + refine + DARK), per-frame PCKh@0.5. Per score: Spearman ρ with the error, and the PCKh@0.5
of the top 10 % / 30 % of frames it would pick against the whole pool's (paired, 95 % bootstrap over frames).

Scores: today's three (`confidence`, `flip` — flip disagreement divided by the person's size, `entropy` —
multiple-peak entropy) and their rank mix (`combined`, the manifest's weights); candidates not in the product:
`rotation` (disagreement of ±20° rotated passes with the plain one, size-normalised), `refine` (how far the
refine pass on the found person box moves the whole-frame prediction, size-normalised), `plausibility` (bone
lengths relative to the person's size, |z| against the val frames' labeled poses).

    python bench/experiments/score_quality/score_quality.py [--bases model/weights/lspet_upright_w18s_128.pt,model/weights/lspet_w18s_128.pt]
Last lines: per base, the best score's top-10 % gap to the pool (points of PCKh@0.5; negative = finds hard frames).
``--smoke``: the all-posture base alone on an 8-frame pool, 50 bootstrap draws (the test suite's check) →
score_quality_smoke.json and .md in the results folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/: _common
from iterate.loop.pool import person_size  # noqa: E402
from iterate.loop.settings import infer_config, keypoint_spec  # noqa: E402
from iterate.loop.simulate import pool_scores  # noqa: E402
from iterate.selection import scores as sc  # noqa: E402
from model.checkpoints import model_from_checkpoint  # noqa: E402
from model.codec import DarkCodec  # noqa: E402
from model.evaluate import gt_arrays, head_boxes, predictor  # noqa: E402
from model.infer import SCORING, Predictor  # noqa: E402
from reports.metrics import normalisers, pck_hits  # noqa: E402

import _common  # noqa: E402
from _common import REPO, bare_forward_speed, lspet_samples, manifest, write_result  # noqa: E402

N_BOOT = 2000
ROTATION_DEG = 20.0


def _disagreement(a: np.ndarray, b: np.ndarray, size: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1).mean(-1) / np.maximum(size, 1.0)


def _rotated(pr: Predictor, samples, deg: float) -> np.ndarray:
    kps = np.full((len(samples), len(pr.flip_index), 2), np.nan)
    for b in pr.batches(samples, rotations={i: deg for i in range(len(samples))}):
        if len(b.index):
            kps[b.index] = pr.decode(b)[0]
    return kps


def _edges(spec) -> list[tuple[int, int]]:
    names = list(spec.names)
    return [(names.index(a), names.index(b)) for a, b in spec.skeleton]


def _bones(spec, kps: np.ndarray) -> np.ndarray:
    """log(bone length / the person's size) per skeleton edge."""
    ln = np.stack([np.linalg.norm(kps[:, i] - kps[:, j], axis=-1) for i, j in _edges(spec)], 1)
    return np.log(np.maximum(ln, 1e-3) / np.maximum(person_size(spec, kps), 1.0)[:, None])


def _plausibility(spec, kps: np.ndarray, ref_kps: np.ndarray, ref_vis: np.ndarray) -> np.ndarray:
    """Mean |z| of the predicted bones' log length relative to the person's size, against the labeled val poses."""
    ref = _bones(spec, ref_kps)
    seen = np.stack([(ref_vis[:, i] > 0) & (ref_vis[:, j] > 0) for i, j in _edges(spec)], 1)
    mu = np.array([ref[seen[:, e], e].mean() for e in range(ref.shape[1])])
    sd = np.array([ref[seen[:, e], e].std() + 1e-3 for e in range(ref.shape[1])])
    return np.abs((_bones(spec, kps) - mu) / sd).mean(1)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(sc.rank01(x), sc.rank01(y))[0, 1])


def _top_gap(score: np.ndarray, frame_pck: np.ndarray, share: float, rng) -> dict:
    """PCKh@0.5 of the top ``share`` by score minus the pool's, with a bootstrap over frames (resampled pool,
    its own top share re-picked: the interval includes which frames make the cut)."""
    n = len(score)
    k = max(1, int(round(share * n)))

    def gap(idx):
        s, f = score[idx], frame_pck[idx]
        top = np.argsort(-s, kind="stable")[:k]
        return f[top].mean() - f.mean()

    boots = [gap(rng.integers(0, n, n)) for _ in range(N_BOOT)]
    lo, hi = np.quantile(boots, [0.025, 0.975], method="inverted_cdf")
    return {"gap": round(float(gap(np.arange(n))), 2), "ci": [round(float(lo), 2), round(float(hi), 2)]}


def grade(m, base: Path, pool, ref) -> dict:
    """Every score of ``pool`` under the model in ``base``, graded against the frames' true error."""
    spec = keypoint_spec(m)
    model, ck = model_from_checkpoint(base)
    model.eval()
    codec = DarkCodec(model.input_size, model.heatmap_size, float(ck.get("sigma", m.model.sigma)))
    t0 = time.time()
    scored = pool_scores(m, base, pool)
    scores, kps = dict(scored.scores), scored.keypoints
    scores["combined"] = sc.combine(scores, m.selection.weights)
    # the true error: the product's inference path (flip + refine), per-frame PCKh@0.5
    infer = infer_config(m)
    full = predictor(infer, model, codec).predict(pool).keypoints
    gt, vis = gt_arrays(pool)
    norm = normalisers(gt, vis, spec.normalizer, list(spec.names), head_boxes(pool))
    keep = norm.scored
    hits = pck_hits(full, gt, vis, norm.lengths, alpha=0.5)
    frame_pck = 100 * np.nanmean(np.where(keep[:, None], hits, np.nan), axis=1)
    # candidates outside the product
    plain = Predictor.from_settings(model, codec, infer.override(**SCORING), batch_size=32)
    size = person_size(spec, kps)
    rot = [_rotated(plain, pool, d) for d in (ROTATION_DEG, -ROTATION_DEG)]
    scores["rotation"] = 0.5 * (_disagreement(rot[0], kps, size) + _disagreement(rot[1], kps, size))
    scores["refine"] = _disagreement(full, kps, size)
    ref_gt, ref_vis = gt_arrays(ref)
    scores["plausibility"] = _plausibility(spec, kps, ref_gt, ref_vis)
    ok = keep & np.isfinite(frame_pck) & np.all([np.isfinite(v) for v in scores.values()], axis=0)
    rng = np.random.default_rng(0)
    err = 100 - frame_pck[ok]
    out = {
        "frames": int(ok.sum()),
        "pool_pckh05": round(float(frame_pck[ok].mean()), 2),
        "seconds": round(time.time() - t0, 1),
        "scores": {},
    }
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)[ok]
        out["scores"][name] = {
            "spearman_with_error": round(_spearman(s, err), 3),
            "top10": _top_gap(s, frame_pck[ok], 0.10, rng),
            "top30": _top_gap(s, frame_pck[ok], 0.30, rng),
        }
    return out


def _markdown(res: dict) -> str:
    lines = [
        "# Which uncertainty score finds the frames the model gets wrong",
        "",
        "Pool LSPET im06001–im06900 (the simulation's pool); error = 100 − the frame's PCKh@0.5 on the product's",
        "inference path. Gap = PCKh@0.5 of the top share by score − the pool's (negative: the score finds the hard",
        "frames), 95 % bootstrap over frames. A screening: whether labeling them teaches more is the simulation's.",
        "",
    ]
    for base, r in res.items():
        lines += [
            f"## {base} (pool PCKh@0.5 {r['pool_pckh05']} on {r['frames']} frames)",
            "",
            "| score | Spearman ρ with error | top 10 % gap | top 30 % gap |",
            "|---|---:|---:|---:|",
        ]
        for name, s in sorted(r["scores"].items(), key=lambda kv: kv[1]["top10"]["gap"]):
            t10, t30 = s["top10"], s["top30"]
            lines.append(
                f"| {name} | {s['spearman_with_error']:+.3f} | {t10['gap']:+.1f} [{t10['ci'][0]:+.1f}, "
                f"{t10['ci'][1]:+.1f}] | {t30['gap']:+.1f} [{t30['ci'][0]:+.1f}, {t30['ci'][1]:+.1f}] |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--bases", default="model/weights/lspet_upright_w18s_128.pt,model/weights/lspet_w18s_128.pt", help="checkpoints"
    )
    ap.add_argument("--first", type=int, default=6001)
    ap.add_argument("--last", type=int, default=6900)
    ap.add_argument("--name", default="score_quality")
    ap.add_argument("--smoke", action="store_true", help="one base, 8 frames, 50 draws: the test suite's check")
    args = ap.parse_args()
    global N_BOOT
    last_ref = 7000
    if args.smoke:
        _common.smoke()
        args.bases, args.last, last_ref, N_BOOT = "model/weights/lspet_w18s_128.pt", args.first + 7, 6910, 50
        args.name += "_smoke"
    m = manifest()
    pool, ref = lspet_samples(args.first, args.last), lspet_samples(6901, last_ref)
    res = {}
    for b in args.bases.split(","):
        res[Path(b).stem] = grade(m, REPO / b, pool, ref)
        print(f"{b}: graded {res[Path(b).stem]['frames']} frames in {res[Path(b).stem]['seconds']} s", flush=True)
    md = _markdown(res)
    _common.RESULTS.mkdir(parents=True, exist_ok=True)
    (_common.RESULTS / f"{args.name}.md").write_text(md + "\n")
    print(md)
    figures = {}
    for base, r in res.items():
        best = min(r["scores"].items(), key=lambda kv: kv[1]["top10"]["gap"])
        figures[f"{base}_best_score"] = best[0]
        figures[f"{base}_best_top10_gap"] = best[1]["top10"]["gap"]
        figures[f"{base}_combined_top10_gap"] = r["scores"]["combined"]["top10"]["gap"]
    write_result(args.name, figures, {"bases": res, "pool": [args.first, args.last]}, speed=bare_forward_speed())


if __name__ == "__main__":
    main()
