"""`iterate report` and `iterate evaluate` as library calls: gather the round's data (the ledger, the current
checkpoint on val/test, the pool's predicted strata) and hand it to :mod:`reports` to compute and render."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from iterate.core.chunks import chunk_progress, current_chunk, labels_per_stratum, model_frames, training_frames
from iterate.core.ledger import Ledger, Model
from iterate.core.manifest import Manifest
from iterate.core.metric_keys import PCKH, PCKH01, PCKH05, ci_key, metric_key, upgrade
from iterate.loop import tracking
from iterate.loop.control import update_controls
from iterate.loop.cost import cost_data, hours_by_time
from iterate.loop.models import model_name, round_model
from iterate.loop.retrain import split_warnings
from iterate.loop.samples import frame_samples, labeled_samples
from iterate.loop.settings import derived_strata, keypoint_spec, selection_setup, strata
from iterate.selection.strata import StrataPredictor
from model.evaluate import head_boxes
from model.infer import Predictions, Predictor, load_predictor
from reports.evaluation import EvalSet, check_alpha, coco_evalset, evaluate
from reports.focus import next_chunk_focus
from reports.html import write_html
from reports.report import (
    OVERFIT,
    TEST01,
    TEST05,
    VAL01,
    VAL05,
    VAL_SMS01,
    contact_sheet,
    frame_scores,
    plot_joints,
    plot_timeline,
    rerender,
    summary,
    worst_frames,
    worst_overall,
    write_round,
)


def reports_dir(m: Manifest) -> Path:
    d = m.workspace_dir / "reports"
    d.mkdir(parents=True, exist_ok=True)
    return d


def evaluate_files(m: Manifest, pred: Path, gt: Path, alpha: float = 0.1) -> dict:
    """`iterate evaluate`: any COCO results file against COCO keypoint labels, with the manifest's schema."""
    check_alpha(alpha, "--alpha")
    spec = keypoint_spec(m)
    return evaluate(spec, strata(m), coco_evalset(spec, pred, gt), alpha)


def build(m: Manifest, ledger: Ledger, *, round_no: int | None = None, alpha: float = 0.1, progress=None) -> Path:
    """Compute and write this round's report; or, with ``round_no`` of an older round, re-render it."""
    check_alpha(alpha, "--alpha")
    out_dir = reports_dir(m)
    n = len(ledger.rounds())
    if round_no is not None and round_no != n:
        md = rerender(out_dir, round_no)
        write_html(out_dir, upgrade(json.loads(md.with_suffix(".json").read_text())))
        return md
    data: dict = {
        "round": n,
        "project": m.project,
        "created_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": _data_side(m, ledger),
        "alpha": alpha,
        "focus_metric": m.selection.focus_metric,
        "timeline": _timeline(ledger),
        "cost": cost_data(m, ledger),
        "model": None,
        "warnings": split_warnings(ledger),
    }
    model = ledger.latest_model()
    run = None
    if model is not None:
        data["model"] = {
            "id": model.id,
            "path": model.path,
            "n_train": model.n_train,
            "config": model.config,
            "metrics": model.metrics,
        }
        data["model"]["dataset"] = _dataset(ledger, model)
        run = tracking.model_run(m, ledger, model.id)
        if run is not None:
            data["model"]["tracking"] = run.describe()
        data.update(_model_side(m, ledger, model, alpha, out_dir, f"round-{n:02d}"))
        _add_timeline_plot(data, out_dir)
        data["focus_followup"] = _focus_followup(ledger, out_dir, data)
    data["controls"] = update_controls(m, ledger)
    data["audit"] = _audit_side(m, ledger, out_dir, n)
    data["picked"] = _picked(m, ledger, out_dir)
    md = write_round(out_dir, data)
    write_html(out_dir, data)  # the HTML twin: round-NN.html, index.html, latest.html
    with ledger.transaction():
        ledger.add_report(n, str(md), model.id if model else None, summary(data))
    if run is not None:  # the report's figures and files join the run that trained the model
        s = summary(data)
        figures = {f"report_val_{k}": v for k, v in s.items() if k != "test"}
        figures |= {f"report_test_{k}": v for k, v in (s.get("test") or {}).items()}
        run.log_metrics(figures, step=n)
        run.log_files(sorted(out_dir.glob(f"round-{n:02d}*")), f"report-round-{n:02d}")
        run.set_tags({"iterate.report_round": n, "iterate.report": md})
        run.close()
    return md


def evaluate_checkpoint(m: Manifest, ledger: Ledger, path: str | Path, split: str, alpha: float = 0.1) -> dict | None:
    """One checkpoint (e.g. the base model, before any labels) on the ledger's labeled ``split``; None if empty."""
    samples = labeled_samples(ledger, (split,))
    if not samples:
        return None
    return _evaluate_split(m, samples, load_predictor(path, joints=m.keypoints.names).predict(samples), alpha)


# -- the steps of build -----------------------------------------------------------------------------
PICKS_SHOWN = 200  # the HTML page draws at most this many of a round's picks (by rank)


def _xy(k: np.ndarray) -> list:
    """(K, 2) keypoints → JSON rows, null for a joint the model does not place (NaN)."""
    return [[round(float(x), 1), round(float(y), 1)] if np.isfinite([x, y]).all() else None for x, y in k]


def _picked(m: Manifest, ledger: Ledger, out_dir: Path) -> dict | None:
    """The latest selection round's frames with the pre-annotations its model pushed — the same predictor call as
    `push_round`, so the same keypoints — and each frame's label once synced: what the HTML page draws."""
    rounds = ledger.rounds()
    if not rounds:
        return None
    rnd = rounds[-1]
    rows = ledger.round_frames(rnd.id)
    shown = [(r, fid, info, f) for r, (fid, info) in enumerate(rows[:PICKS_SHOWN], 1) if (f := ledger.frame(fid))]
    model, notes = round_model(ledger, rnd.id), []
    preds = None
    if model is None:
        notes.append("cold start: no model scored this round, so no pre-annotations were pushed")
    elif not Path(model.path).is_file():
        notes.append(f"{model_name(model)}'s checkpoint {model.path} is gone: the frames are shown without it")
        model = None
    elif shown:
        pr = load_predictor(model.path, joints=m.keypoints.names)
        preds = pr.predict(frame_samples(ledger, [f for *_, f in shown])).keypoints
    if model is not None and not rnd.params.get("push", True):
        notes.append("pushed with --no-push: nothing was sent to Label Studio; the skeletons are what a push sends")
    frames = []
    for i, (rank, fid, info, f) in enumerate(shown):
        lab = ledger.current_label(fid)
        frames.append(
            {
                "rank": rank,
                "frame_id": fid,
                "path": f.path,
                "why": info.get("why", ""),
                "pred_strata": {k[5:]: v for k, v in info.items() if k.startswith("pred_")},
                "pred": None if preds is None else _xy(preds[i]),
                "label": None if lab is None else [[round(float(v), 1) for v in p] for p in lab.keypoints],
            }
        )
    readable = preds[~np.isnan(preds).all(axis=(1, 2))] if preds is not None else np.zeros((0, 0, 2))
    unplaced = np.isnan(readable).any(axis=2).all(axis=0) if len(readable) else []
    rounds_dir = m.workspace_dir / "rounds"
    rel = {
        key: os.path.relpath(rounds_dir / f"round-{rnd.id:02d}{ext}", out_dir)
        for key, ext in (("why_md", ".md"), ("table_csv", ".csv"), ("scores_plot", "-scores.png"))
        if (rounds_dir / f"round-{rnd.id:02d}{ext}").is_file()
    }
    return {
        "round": rnd.id,
        "strategy": rnd.strategy,
        "pre_annotated_by": model_name(model) if model is not None else None,
        "checkpoint": model.path if model is not None else None,
        "frames_total": len(rows),
        "joints": list(m.keypoints.names),
        "skeleton": [list(e) for e in m.keypoints.skeleton],
        "unplaced": [n for n, u in zip(m.keypoints.names, unplaced) if u],
        "notes": notes,
        "frames": frames,
        **rel,
    }


AUDIT_SHOWN = 8  # suspect frames drawn on the report's "Labels to re-check" sheet


def _audit_side(m: Manifest, ledger: Ledger, out_dir: Path, n: int) -> dict:
    """ "Labels to re-check": the audit's flags counted per reason, joint and annotator, the reviews so far, and a
    contact sheet (label green, model red) of the most suspicious frames; or why there is no audit."""
    from iterate.core.errors import IterateError
    from iterate.loop.audit import run_audit

    try:
        res = run_audit(m, ledger)
    except IterateError as e:
        return {"note": str(e)}
    labs = [lab for _, lab in ledger.current_labels()]
    out = {
        "frames": res.frames,
        "flags": len(res.suspects),
        "flagged_frames": len({s.frame.id for s in res.suspects}),
        "per_reason": res.per_reason,
        "per_joint": {j: r["flagged"] for j, r in res.per_joint.items() if r["flagged"]},
        "per_annotator": {a: r for a, r in res.per_annotator.items() if r["flagged"]},
        "confirmed": sum(lab.reviewed_at is not None for lab in labs),
        "corrected": sum(lab.source == "review" for lab in labs),
        "notes": res.notes,
        "top": [s.to_json() for s in res.suspects[:20]],
    }
    shown, seen = [], set()
    for sp in res.suspects:
        if sp.frame.id in seen or sp.prediction is None:
            continue
        seen.add(sp.frame.id)
        kp = np.asarray(sp.label.keypoints, np.float64)
        cap = f"{'/'.join(sp.joints)} {sp.reason}"
        shown.append((sp.frame.path, kp[:, :2], kp[:, 2], sp.prediction[:, :2], cap))
        if len(shown) == AUDIT_SHOWN:
            break
    if shown:
        name = f"round-{n:02d}-recheck.png"
        why = contact_sheet(keypoint_spec(m), shown, out_dir / name, "suspect frames")
        out["sheet"] = None if why else name
        out["sheet_note"] = why
    return out


def _data_side(m: Manifest, ledger: Ledger) -> dict:
    prog = chunk_progress(m, ledger)
    n_train, n_replay = training_frames(m, ledger)
    return {
        "chunks": [
            {"chunk": c.index, "fraction": c.fraction, "target": c.target, "labeled": c.labeled, "pending": c.pending}
            for c in prog
        ],
        "current_chunk": current_chunk(prog).index,
        "frames": ledger.count_frames(),
        "labels_train": n_train,
        "labels_replay": n_replay,
        "labels_per_stratum": {
            k: {v: r for v, r in rows.items() if r} for k, rows in labels_per_stratum(m, ledger).items()
        },
        "people": people_per_split(ledger),
    }


def people_per_split(ledger: Ledger) -> dict[str, dict[str, int]]:
    """Frames whose source gives person boxes, per split: one person found, several (the most confident kept), none
    (the pose pass crops the whole frame); {} when no source gives boxes."""
    boxes = ledger.person_boxes()
    out: dict[str, dict[str, int]] = {}
    for f in ledger.frames():
        b = boxes.get(f.id)
        if b is not None:
            key = "none found" if b.box is None else ("several" if b.people > 1 else "one")
            row = out.setdefault(f.split, {"one": 0, "several": 0, "none found": 0})
            row[key] += 1
    return out


def _dataset(ledger: Ledger, model: Model) -> dict | None:
    """The dataset version the model was trained on (recorded by its retrain; None for a model trained before
    versions existed): its number, hash and size."""
    vid = model.dataset_version
    v = ledger.dataset_version(vid) if vid else None
    if v is None:
        return None
    return {"version": v.id, "hash": v.content_hash, "frames": v.n_frames, "labels": v.n_labels}


def _timeline(ledger: Ledger) -> list[dict]:
    """Each model's val figures (from training) and its test figures (from the report written for it)."""
    tests = {mid: s.get("test") or {} for mid, s in ledger.report_summaries().items()}
    hours = hours_by_time(ledger)
    out = []
    for md in ledger.models():
        mt = md.metrics
        t = tests.get(md.id, {})
        out.append(
            {
                "model": md.id,
                "labels": model_frames(md)[0],  # the loop's labels, not replay
                **{k: mt.get(k) for k in (VAL01, VAL05, VAL_SMS01, OVERFIT)},
                TEST01: t.get(PCKH01),
                TEST05: t.get(PCKH05),
                "created_at": md.created_at,
                # annotator hours of the labels synced before this model was trained (None: no lead time yet)
                "annotator_hours": next((h for t, h in reversed(hours) if t <= md.created_at), None),
            }
        )
    return out


def _add_timeline_plot(data: dict, out_dir: Path) -> None:
    """The current model's test figures join its timeline row, then the timeline is plotted."""
    for t in data["timeline"]:
        if t["model"] == data["model"]["id"] and data.get("test"):
            t[TEST01], t[TEST05] = data["test"].get(PCKH01), data["test"][PCKH05]
    if data["timeline"]:
        name = f"round-{data['round']:02d}-timeline.png"
        plot_timeline(data["timeline"], out_dir / name)
        data["plots"]["timeline"] = name


def _split_arrays(samples) -> tuple[np.ndarray, np.ndarray, list[dict], np.ndarray]:
    """Labels of one split as (gt (N, K, 2), visibility (N, K), attributes, head boxes (N, 4))."""
    gt = np.stack([s.keypoints[:, :2] for s in samples])
    vis = np.stack([s.keypoints[:, 2] for s in samples])
    return gt, vis, [s.attributes for s in samples], head_boxes(samples)


PEOPLE = ("one", "several", "none found")  # what a frame's person boxes found


def people_rows(m: Manifest, ledger: Ledger, samples, p: Predictions, alpha: float) -> dict | None:
    """The split's figures per people its person boxes found (one, several: the most confident kept, none: the
    whole frame) — a table of its own, not a stratum the focus steers by; None without person boxes."""
    boxes = ledger.person_boxes()
    found = [boxes.get(s.frame_id) for s in samples]
    if all(b is None for b in found):
        return None
    attrs = [
        {} if b is None else {"people": "none found" if b.box is None else ("several" if b.people > 1 else "one")}
        for b in found
    ]
    gt, vis, _, hb = _split_arrays(samples)
    es = EvalSet(p.keypoints, gt, vis, attrs, [s.frame_id for s in samples], head_boxes=hb, scores=p.scores)
    rows = evaluate(keypoint_spec(m), {"people": PEOPLE}, es, alpha)["strata"]["people"]
    keys = ("frames", metric_key(PCKH, alpha), PCKH05, ci_key(PCKH05), "small")
    return {v: {k: r[k] for k in keys} for v, r in rows.items()}


def _evaluate_split(m: Manifest, samples, p: Predictions, alpha: float, only: list[int] | None = None) -> dict:
    """``only``: score just these joints (the others count as not labeled), e.g. those a base checkpoint predicts."""
    gt, vis, attrs, hb = _split_arrays(samples)
    es = EvalSet(p.keypoints, gt, vis, attrs, [s.frame_id for s in samples], head_boxes=hb, scores=p.scores, only=only)
    return evaluate(keypoint_spec(m), strata(m), es, alpha, also=(selection_setup(m).focus_alpha,))


def _model_side(m: Manifest, ledger: Ledger, model: Model, alpha: float, out_dir: Path, stem: str) -> dict:
    # the checkpoint's own inference path, as `iterate predict` runs it, in the manifest's joints
    pr = load_predictor(model.path, joints=m.keypoints.names)
    out: dict = {"plots": {}, "inference": pr.settings.describe()}
    # the test split never picks a checkpoint or steers selection: its figures are the unbiased ones
    test_samples = labeled_samples(ledger, ("test",))
    if test_samples:
        out["test"] = _evaluate_split(m, test_samples, pr.predict(test_samples), alpha)
    samples = labeled_samples(ledger, ("val",))
    out["base"] = _against_base(m, test_samples or samples, "test" if test_samples else "val", alpha, pr)
    if not samples:
        out["val"] = None
        out["notes"] = ["no labeled val frames: add a `split: val` source to the manifest"]
        out["worst_note"] = "there are no labeled val frames to draw"
        return out
    p = pr.predict(samples)
    out["val"] = res = _evaluate_split(m, samples, p, alpha)
    out["people_val"] = people_rows(m, ledger, samples, p, alpha)
    plot_joints(res["per_joint"], res[metric_key(PCKH, alpha)] or 0.0, out_dir / f"{stem}-joints.png", alpha)
    out["plots"]["joints"] = f"{stem}-joints.png"
    out["focus"] = _focus(m, ledger, pr, p, res, [s.attributes for s in samples])
    _worst_sheet(m, samples, p, out, alpha, out_dir / f"{stem}-worst.png")
    return out


def _against_base(m: Manifest, samples, split: str, alpha: float, current: Predictor) -> dict | None:
    """The manifest's base checkpoint on the same split, per stratum: what fine-tuning kept, lost and gained. A base
    of another joint set is compared on the joints both predict (both models scored on those, and said so)."""
    if not m.model.base or not samples or not m.resolve(m.model.base).is_file():
        return None
    base = load_predictor(m.resolve(m.model.base), joints=m.keypoints.names)
    only = base.joints.shared if base.joints is not None else None
    res = _evaluate_split(m, samples, base.predict(samples), alpha, only)
    keys = ("frames", metric_key(PCKH, alpha), PCKH05, ci_key(PCKH05))
    out = {
        "path": m.model.base,
        "split": split,
        **{k: res[k] for k in keys},
        "strata": {key: {v: {k: r[k] for k in keys} for v, r in rows.items()} for key, rows in res["strata"].items()},
    }
    if only is not None:  # this model on the same joints, so the two columns compare
        now = _evaluate_split(m, samples, current.predict(samples), alpha, only)
        out["joints"] = base.joints.describe()
        out["now"] = {
            **{k: now[k] for k in keys},
            "strata": {
                key: {v: {k: r[k] for k in keys} for v, r in rows.items()} for key, rows in now["strata"].items()
            },
        }
    return out


def _focus(m: Manifest, ledger: Ledger, pr: Predictor, p: Predictions, res: dict, attrs: list[dict]) -> dict:
    """Strata predicted over (a sample of) the unlabeled pool → the next chunk's focus."""
    sp = StrataPredictor(strata(m), m.keypoints.names, derived_strata(m)).fit(
        p.keypoints, p.scores, p.embeddings, attrs
    )
    taken = ledger.labeled_frame_ids() | ledger.pending_frame_ids()
    pool = [f for f in ledger.frames("pool") if f.id not in taken]
    cap = m.selection.max_pool_for_report
    if len(pool) > cap:
        pool = [pool[i] for i in sorted(np.random.default_rng(0).choice(len(pool), cap, replace=False))]
    if pool:
        pp = pr.predict(frame_samples(ledger, pool))
        pool_strata = sp.predict(pp.keypoints, pp.scores, pp.embeddings)
        unc = 1.0 - np.nanmean(pp.scores, axis=1)
    else:
        pool_strata, unc = [], np.zeros(0)
    setup = selection_setup(m)
    return next_chunk_focus(
        res["strata"], res.get(setup.focus_metric), pool_strata, unc, setup.explore, setup.focus_metric
    )


def _focus_followup(ledger: Ledger, out_dir: Path, data: dict) -> dict | None:
    """Did the last chunk's focus pay off? The stratum the latest round was steered to, its share of the round's
    labels, and its figure on the unbiased split in the previous report and in this one."""
    rounds = ledger.rounds()
    focus = rounds[-1].params.get("focus") if rounds else None
    split = "test" if data.get("test") else "val"
    now = data.get(split)
    prev_file = out_dir / f"round-{data['round'] - 1:02d}.json"
    if not focus or not now or not prev_file.is_file():
        return None
    key, value = focus["key"], max(focus["weights"], key=focus["weights"].get)
    labels = [ledger.current_label(fid) for fid in ledger.round_frame_ids(rounds[-1].id)]
    labels = [lab for lab in labels if lab is not None]
    prev = upgrade(json.loads(prev_file.read_text())).get(split) or {}
    before = (prev.get("strata") or {}).get(key, {}).get(value)
    after = (now.get("strata") or {}).get(key, {}).get(value)
    return {
        "round": rounds[-1].id,
        "stratum": f"{key}={value}",
        "split": split,
        "labels": len(labels),
        "labels_in_stratum": sum(1 for lab in labels if lab.attributes.get(key) == value),
        "before": None if before is None else {k: before[k] for k in ("frames", PCKH05, ci_key(PCKH05))},
        "after": None if after is None else {k: after[k] for k in ("frames", PCKH05, ci_key(PCKH05))},
        "previous_report": prev_file.name,
    }


def _worst_sheet(m: Manifest, samples, p: Predictions, out: dict, alpha: float, path: Path) -> None:
    """Contact sheet of the worst val frames of the two weakest strata (else the worst overall); when none can be
    drawn, ``worst_note`` says why, for the report to print."""
    gt, vis, attrs, hb = _split_arrays(samples)
    spec = keypoint_spec(m)
    a = selection_setup(m).focus_alpha
    scores = frame_scores(spec, p.keypoints, gt, vis, hb, a)
    chosen, of = worst_frames(out["focus"], scores, attrs), "strata"
    if not chosen:
        chosen, of = worst_overall(scores), "all"
    if not chosen:
        out["worst_note"] = f"none of the {len(samples)} labeled val frames could be scored (no PCKh normaliser)"
        return
    why = contact_sheet(spec, [(samples[j].path, gt[j], vis[j], p.keypoints[j], cap) for j, cap in chosen], path)
    if why:
        out["worst_note"] = why
        return
    out["plots"]["worst"] = path.name
    out["worst_of"] = of
