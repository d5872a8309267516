"""`iterate report`: the round's gap report as Markdown + a JSON twin + PNG plots.

The JSON twin (`round-NN.json`) holds every table; the Markdown is rendered from it, so `--round N`
re-renders an older round exactly. `focus.json` (the newest "next chunk focus") is what `iterate select`
reads; `latest.md` links the newest report.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from iterate.chunks import chunk_progress, current_chunk, labels_per_stratum
from iterate.errors import IterateError
from iterate.images import read_image
from iterate.ledger import Ledger
from iterate.manifest import Manifest
from iterate.strata import StrataPredictor

from .evaluation import EvalSet, check_alpha, evaluate
from .focus import next_chunk_focus
from .metrics import normalisers, pck_hits


def reports_dir(m: Manifest) -> Path:
    d = m.workspace_dir / "reports"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _data_side(m: Manifest, ledger: Ledger) -> dict:
    prog = chunk_progress(m, ledger)
    cur = current_chunk(prog)
    return {
        "chunks": [{"chunk": c.index, "fraction": c.fraction, "target": c.target, "labeled": c.labeled,
                    "pending": c.pending} for c in prog],
        "current_chunk": cur.index, "frames": ledger.count_frames(),
        "labels_train": len(ledger.current_labels(("pool", "train"))),
        "labels_per_stratum": {k: {v: r for v, r in rows.items() if r} for k, rows in labels_per_stratum(m, ledger).items()},
    }


def _timeline(ledger: Ledger) -> list[dict]:
    """Each model's val figures (from training) and its test figures (from the report written for it)."""
    tests = {mid: s.get("test") or {} for mid, s in ledger.report_summaries().items()}
    out = []
    for md in ledger.models():
        mt = md["metrics"]
        t = tests.get(md["id"], {})
        out.append({"model": md["id"], "labels": md["n_train"], "pckh01": mt.get("val_pckh01"),
                    "pckh05": mt.get("val_pckh05"), "mean_sms01": mt.get("val_mean_sms01"),
                    "test_pckh01": t.get("pckh"), "test_pckh05": t.get("pckh05"),
                    "overfit01": mt.get("overfit01"), "created_at": md["created_at"]})
    return out


def _plot_timeline(tl: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    x = [t["labels"] for t in tl]
    for key, label, ls in (("pckh01", "val PCKh@0.1", "-"), ("pckh05", "val PCKh@0.5", "-"),
                           ("mean_sms01", "val MeanSmS@0.1", "-"), ("overfit01", "overfit (train − val PCKh@0.1)", "-"),
                           ("test_pckh01", "test PCKh@0.1", "--"), ("test_pckh05", "test PCKh@0.5", "--")):
        y = [t.get(key) if t.get(key) is not None else np.nan for t in tl]
        if not np.isnan(y).all():
            ax.plot(x, y, marker="o", ls=ls, label=label)
    ax.set_xlabel("labeled training frames")
    ax.set_ylabel("%")
    ax.set_title("development timeline")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_joints(per_joint: dict, overall: float, path: Path, alpha: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(per_joint)
    vals = [per_joint[n] if per_joint[n] is not None else 0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=100)
    ax.bar(range(len(names)), vals, color=["#c44" if v < overall else "#4a4" for v in vals])
    ax.axhline(overall, color="k", lw=1, ls="--", label=f"overall {overall:.1f} %")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"PCKh@{alpha} %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw(img: np.ndarray, kps: np.ndarray, vis: np.ndarray, edges: list[tuple[int, int]], color) -> None:
    for a, b in edges:
        if vis[a] and vis[b]:
            cv2.line(img, tuple(int(v) for v in kps[a]), tuple(int(v) for v in kps[b]), color, 1, cv2.LINE_AA)
    for j in range(len(kps)):
        if vis[j]:
            cv2.circle(img, tuple(int(v) for v in kps[j]), 2, color, -1, cv2.LINE_AA)


def _contact_sheet(m: Manifest, frames: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, str]], path: Path) -> None:
    """frames: (image path, gt (K,2), vis (K,), pred (K,2), caption) → a grid PNG (labels green, model red)."""
    names = m.keypoints.names
    edges = [(names.index(a), names.index(b)) for a, b in m.keypoints.skeleton]
    cell, cols = 200, 4
    rows = max(1, (len(frames) + cols - 1) // cols)
    sheet = np.full((rows * (cell + 18), cols * cell, 3), 255, np.uint8)
    for i, (p, gt, vis, pred, cap) in enumerate(frames):
        img, _ = read_image(p)
        if img is None:
            continue
        s = cell / max(img.shape[:2])
        img = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        _draw(img, (gt + 0.5) * s - 0.5, vis > 0, edges, (0, 200, 0))
        _draw(img, (pred + 0.5) * s - 0.5, np.ones(len(pred), bool), edges, (0, 0, 230))
        r, c = divmod(i, cols)
        y0, x0 = r * (cell + 18), c * cell
        sheet[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
        cv2.putText(sheet, cap[:32], (x0 + 2, y0 + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), sheet)


def build(m: Manifest, ledger: Ledger, *, round_no: int | None = None, alpha: float = 0.1,
          progress=None) -> Path:
    """Compute and write this round's report; or, with ``round_no`` of an older round, re-render it."""
    check_alpha(alpha)
    out_dir = reports_dir(m)
    current = len(ledger.rounds())
    if round_no is not None and round_no != current:
        js = out_dir / f"round-{round_no:02d}.json"
        if not js.is_file():
            raise IterateError(f"no report for round {round_no} (have: "
                               + ", ".join(sorted(p.stem for p in out_dir.glob("round-*.json"))) + ")")
        data = json.loads(js.read_text())
        md = out_dir / f"round-{round_no:02d}.md"
        _atomic_write(md, render(data))
        return md
    n = current
    data: dict = {"round": n, "project": m.project, "created_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "data": _data_side(m, ledger), "alpha": alpha, "focus_metric": m.selection.focus_metric}
    model = ledger.latest_model()
    tl = _timeline(ledger)
    data["timeline"] = tl
    stem = f"round-{n:02d}"
    if model is None:
        data["model"] = None
    else:
        data["model"] = {"id": model["id"], "path": model["path"], "n_train": model["n_train"],
                         "config": model["config"], "metrics": model["metrics"]}
        data.update(_model_side(m, ledger, model, alpha, out_dir, stem, progress))
        for t in tl:
            if t["model"] == model["id"] and data.get("test"):
                t["test_pckh01"], t["test_pckh05"] = data["test"]["pckh"], data["test"]["pckh05"]
        if len(tl) >= 1:
            _plot_timeline(tl, out_dir / f"{stem}-timeline.png")
            data["plots"]["timeline"] = f"{stem}-timeline.png"
    js = out_dir / f"{stem}.json"
    _atomic_write(js, json.dumps(data, indent=1, default=float))
    md = out_dir / f"{stem}.md"
    _atomic_write(md, render(data))
    if data.get("focus"):
        _atomic_write(out_dir / "focus.json", json.dumps({"round": n, "model_id": model["id"], **data["focus"]}, indent=1))
    latest = out_dir / "latest.md"
    tmp = out_dir / ".latest.md.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(md.name)
    os.replace(tmp, latest)
    with ledger.transaction():
        ledger.db.execute("INSERT INTO reports (round, path, model_id, summary, created_at) VALUES (?,?,?,?,?)",
                          (n, str(md), model["id"] if model else None,
                           json.dumps(_summary(data)), time.time()))
    return md


def _summary(data: dict) -> dict:
    keys = ("pckh", "pckh05", "mean_sms", "frames", "frames_fallback")
    out = {k: (data.get("val") or {}).get(k) for k in keys}
    if data.get("test"):
        out["test"] = {k: data["test"].get(k) for k in keys}
    return out


def _split_samples(ledger: Ledger, split: str):
    from model.retrain import labeled_samples

    return labeled_samples(ledger, (split,))


def _split_arrays(samples) -> tuple[np.ndarray, np.ndarray, list[dict], np.ndarray]:
    """Labels of one split as (gt (N, K, 2), visibility (N, K), attributes, head boxes (N, 4))."""
    from model.evaluate import head_boxes

    gt = np.stack([s.keypoints[:, :2] for s in samples])
    vis = np.stack([s.keypoints[:, 2] for s in samples])
    return gt, vis, [s.attributes for s in samples], head_boxes(samples)


def _evaluate_split(m: Manifest, samples, p, alpha: float) -> dict:
    gt, vis, attrs, hb = _split_arrays(samples)
    return evaluate(m, EvalSet(p.keypoints, gt, vis, attrs, [s.frame_id for s in samples], head_boxes=hb,
                               scores=p.scores), alpha)


def evaluate_checkpoint(m: Manifest, ledger: Ledger, path: str | Path, split: str, alpha: float = 0.1) -> dict | None:
    """One checkpoint (e.g. the base model, before any labels) on the ledger's labeled ``split``; None if empty."""
    from model.infer import load_predictor

    samples = _split_samples(ledger, split)
    if not samples:
        return None
    return _evaluate_split(m, samples, load_predictor(path).predict(samples), alpha)


def _model_side(m: Manifest, ledger: Ledger, model: dict, alpha: float, out_dir: Path, stem: str, progress) -> dict:
    from model.data import Sample
    from model.infer import load_predictor

    pr = load_predictor(model["path"])  # the checkpoint's own inference path, as `iterate predict` runs it
    samples = _split_samples(ledger, "val")
    out: dict = {"plots": {}, "inference": pr.settings.describe()}
    # the test split never picks a checkpoint or steers selection: its figures are the unbiased ones
    test_samples = _split_samples(ledger, "test")
    if test_samples:
        out["test"] = _evaluate_split(m, test_samples, pr.predict(test_samples), alpha)
    if not samples:
        out["val"] = None
        out["notes"] = ["no labeled val frames: add a `split: val` source to the manifest"]
        return out
    p = pr.predict(samples)
    res = _evaluate_split(m, samples, p, alpha)
    gt, vis, attrs, hb = _split_arrays(samples)
    out["val"] = res
    _plot_joints(res["per_joint"], res["pckh"] or 0.0, out_dir / f"{stem}-joints.png", alpha)
    out["plots"]["joints"] = f"{stem}-joints.png"
    # predicted strata of the unlabeled pool → next chunk focus
    sp = StrataPredictor(m).fit(p.keypoints, p.scores, p.embeddings, attrs)
    taken = ledger.labeled_frame_ids() | ledger.pending_frame_ids()
    pool = [f for f in ledger.frames("pool") if f.id not in taken]
    rng = np.random.default_rng(0)
    if len(pool) > m.selection.max_pool_for_report:
        pool = [pool[i] for i in sorted(rng.choice(len(pool), m.selection.max_pool_for_report, replace=False))]
    if pool:
        pp = pr.predict([Sample(f.path, None, f.id) for f in pool])
        pool_strata = sp.predict(pp.keypoints, pp.scores, pp.embeddings)
        unc = 1.0 - np.nanmean(pp.scores, axis=1)
    else:
        pool_strata, unc = [], np.zeros(0)
    metric = m.selection.focus_metric
    out["focus"] = next_chunk_focus(res["strata"], res.get(metric), pool_strata, unc, m.selection.explore, metric)
    # contact sheet: the worst val frames of the two weakest strata
    norm = normalisers(gt, vis, m.keypoints.normalizer, m.keypoints.names, hb).lengths
    a = 0.5 if metric == "pckh05" else alpha
    frame_score = np.full(len(samples), np.inf)
    ok = norm > 0
    if ok.any():
        hits = pck_hits(p.keypoints[ok], gt[ok], vis[ok], norm[ok], a)
        frame_score[ok] = np.nanmean(np.where(np.isnan(hits), np.nan, hits), axis=1)
    weak = [i for i in out["focus"]["items"] if i["gap"] > 0][:2] or out["focus"]["items"][:2]
    chosen = []
    for it in weak:
        idx = [j for j in np.argsort(frame_score) if attrs[j].get(it["key"]) == it["value"] and np.isfinite(frame_score[j])]
        for j in idx[:4]:
            chosen.append((samples[j].path, gt[j], vis[j], p.keypoints[j],
                           f"{it['key']}={it['value']} {100 * frame_score[j]:.0f}%"))
    if chosen:
        _contact_sheet(m, chosen, out_dir / f"{stem}-worst.png")
        out["plots"]["worst"] = f"{stem}-worst.png"
    return out


# -- Markdown ---------------------------------------------------------------------------------------
def _length(cfg: dict) -> str:
    if cfg.get("time_limit_s"):
        return f"{cfg['time_limit_s'] / 60:.1f} min of training"
    return f"{cfg.get('epochs', '?')} epochs"


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def _gap(x) -> str:
    return "–" if x is None else f"{x:+.1f}"


def render(d: dict) -> str:
    L: list[str] = []
    a = d.get("alpha", 0.1)
    L.append(f"# {d['project']}: round {d['round']} report")
    L.append("")
    data = d["data"]
    cur = data["current_chunk"]
    L.append(f"Written {d['created_at']}. Chunk {cur} of {len(data['chunks'])} is current; "
             f"{data['labels_train']} labeled training frames so far.")
    L.append("")
    model = d.get("model")
    if model is None:
        L.append("**No model yet.** Run `iterate retrain` once labels exist; the data side is shown below.")
        L.append("")
    else:
        cfg = model.get("config", {})
        L.append(f"Model #{model['id']} (`{model['path']}`), trained on {model['n_train']} frames: "
                 f"{cfg.get('backbone', '?')} {cfg.get('input_size', '?')}² → {cfg.get('heatmap_size', '?')}² heatmaps, "
                 f"{_length(cfg)}, batch {cfg.get('batch_size', '?')}, lr {cfg.get('lr', '?')}, "
                 f"freeze {cfg.get('freeze', '?')}, from `{cfg.get('init') or 'scratch'}`.")
        L.append("")
        v = d.get("val")
        t = d.get("test")
        if v or t:
            mt = model.get("metrics", {})
            L.append("## Summary")
            L.append("")
            L.append(f"| split | PCKh@{a} [95 %] | PCKh@0.5 [95 %] | MeanSmS@{a} | height error (median) | frames "
                     "| on fallback normaliser | not scored |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for name, r in (("val", v), ("test", t)):
                if r:
                    L.append(f"| {name} | {_pct(r['pckh'])} % [{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}] | "
                             f"{_pct(r['pckh05'])} % [{_pct(r['ci95_05'][0])}, {_pct(r['ci95_05'][1])}] | "
                             f"{_pct(r['mean_sms'])} % | {_pct(r['height_err_pct'])} % | {r['frames']} | "
                             f"{r.get('frames_fallback', 0)} | {r.get('frames_unscored', 0)} |")
            L.append("")
            nm = (v or t).get("normaliser") or {}
            L.append(f"Predictions: the checkpoint's own inference path ({d.get('inference', '?')}), exactly what "
                     f"`iterate predict` writes. PCKh normaliser: {nm.get('kind', '?')}"
                     + (f"; frames without one use the labeled joints' box diagonal × {nm['fallback_ratio']:.3f}"
                        if nm.get("fallback_ratio") else "")
                     + ". MeanSmS = mean of the height joints' per-joint PCKh. Intervals: 95 % bootstrap over frames.")
            L.append("")
            if t:
                for note in t.get("notes", []):
                    L.append(f"> test: {note}")
                L.append("")
            L.append(f"Overfit (train − val PCKh@0.1): {_gap(mt.get('overfit01'))} pts. The val split picks the best "
                     "checkpoint and the tables below steer the next chunk, so its figures lean optimistic; the test "
                     "split is used for nothing else.")
            L.append("")
        if v:
            for note in v.get("notes", []):
                L.append(f"> val: {note}")
            L.append("")
            L.append(f"## Per joint (PCKh@{a})")
            L.append("")
            L.append("| joint | PCKh | gap to overall | labeled |")
            L.append("|---|---:|---:|---:|")
            for j, val in v["per_joint"].items():
                g = None if val is None or v["pckh"] is None else val - v["pckh"]
                L.append(f"| {j} | {_pct(val)} | {_gap(g)} | {v['per_joint_count'][j]} |")
            L.append("")
            if d.get("plots", {}).get("joints"):
                L.append(f"![per joint]({d['plots']['joints']})")
                L.append("")
            for key, rows in v["strata"].items():
                L.append(f"## Per {key}")
                L.append("")
                L.append(f"| {key} | frames | on fallback | PCKh@{a} [95 %] | gap | PCKh@0.5 [95 %] | MeanSmS@{a} "
                         "| height err | |")
                L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
                for val_name, r in rows.items():
                    flag = "too small to judge" if r["small"] else ""
                    L.append(f"| {val_name} | {r['frames']} | {r.get('frames_fallback', 0)} | "
                             f"{_pct(r['pckh'])} [{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}] | "
                             f"{_gap(r['gap'])} | {_pct(r['pckh05'])} [{_pct(r['ci95_05'][0])}, {_pct(r['ci95_05'][1])}] | "
                             f"{_pct(r['mean_sms'])} | {_pct(r['height_err_pct'])} | {flag} |")
                L.append("")
        elif d.get("notes"):
            for note in d["notes"]:
                L.append(f"> {note}")
            L.append("")
    tl = d.get("timeline") or []
    if tl:
        L.append("## Timeline")
        L.append("")
        L.append("| model | labels | val PCKh@0.1 | val PCKh@0.5 | val MeanSmS@0.1 | overfit | test PCKh@0.1 | test PCKh@0.5 |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for t in tl:
            L.append(f"| {t['model']} | {t['labels']} | {_pct(t['pckh01'])} | {_pct(t['pckh05'])} | "
                     f"{_pct(t['mean_sms01'])} | {_gap(t['overfit01'])} | {_pct(t.get('test_pckh01'))} | "
                     f"{_pct(t.get('test_pckh05'))} |")
        L.append("")
        if d.get("plots", {}).get("timeline"):
            L.append(f"![timeline]({d['plots']['timeline']})")
            L.append("")
    f = d.get("focus")
    if f:
        L.append("## Next chunk focus")
        L.append("")
        L.append(f"Ranked by gap × pool share × uncertainty (gap in {f['metric']} to the stratum's upper 95 % bound); "
                 f"{f['explore']:.0%} of the budget stays random for exploration. Predicted over {f['pool_frames']} unlabeled frames.")
        L.append("")
        L.append("| rank | stratum | budget share | gap | pool share | uncertainty | why |")
        L.append("|---:|---|---:|---:|---:|---:|---|")
        for i, it in enumerate(f["items"], 1):
            L.append(f"| {i} | {it['key']}={it['value']} | {it['budget_share']:.0%} | {it['gap']:.1f} | "
                     f"{it['pool_share']:.0%} | {it['uncertainty']:.2f} | {it['reason']} |")
        L.append("")
        if d.get("plots", {}).get("worst"):
            L.append("Worst val frames of the weakest strata (labels green, model red):")
            L.append("")
            L.append(f"![worst frames]({d['plots']['worst']})")
            L.append("")
    L.append("## Data")
    L.append("")
    L.append("| chunk | fraction | target | labeled | pending |")
    L.append("|---:|---:|---:|---:|---:|")
    for c in data["chunks"]:
        L.append(f"| {c['chunk']} | {c['fraction']:.0%} | {c['target']} | {c['labeled']} | {c['pending']} |")
    L.append("")
    L.append("Frames: " + ", ".join(f"{k} {v}" for k, v in sorted(data["frames"].items())))
    L.append("")
    for key, rows in data["labels_per_stratum"].items():
        L.append(f"| labels per {key} | pool | train | val | test |")
        L.append("|---|---:|---:|---:|---:|")
        for val_name, r in rows.items():
            L.append(f"| {val_name} | {r.get('pool', 0)} | {r.get('train', 0)} | {r.get('val', 0)} | {r.get('test', 0)} |")
        L.append("")
    return "\n".join(L) + "\n"
