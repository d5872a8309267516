"""One evaluation of predictions against labels: overall, per joint, per stratum (count + 95 % interval),
MeanSmS, height error. Used by `iterate evaluate` (COCO files) and `iterate report` (the ledger's val split).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from iterate.core.errors import IterateError
from iterate.core.metric_keys import MEAN_SMS, PCKH, ci_key, metric_key
from iterate.core.schema import KeypointSpec
from reports.metrics import (
    N_BOOT,
    frame_interval,
    frames_for_interval,
    height_error,
    interval_half_width,
    mean_sms,
    normalisers,
    pck_hits,
    summarise,
)

SMALL = 20  # frames: a stratum (or a val/test split) smaller than this is shown as too small to judge


def split_size_warning(split: str, frames: int) -> str | None:
    """One line when a fixed split holds too few labeled frames to pick a checkpoint (val) or judge the model or a
    stratum (val, test): the interval it allows and the frames a narrower one needs (the frame-level binomial,
    :func:`reports.metrics.frames_for_interval`). None when it holds enough (or, for test, none at all)."""
    if frames >= SMALL or (frames == 0 and split != "val"):
        return None
    rule = (
        f"±10 points needs about {frames_for_interval(10)} frames, ±5 about {frames_for_interval(5)} (95 % interval "
        "of PCKh, each frame one trial at 50 %: the widest case)"
    )
    if frames == 0:
        return (
            "val holds no labeled frame: retrain cannot pick a best checkpoint (it keeps the last) and the report "
            f"has no val tables; add a `split: val` source ({rule})"
        )
    use = "to pick a checkpoint or judge a stratum" if split == "val" else "to judge the model or a stratum"
    return (
        f"{split} holds {frames} labeled frame(s): too few {use} — at {frames} frames a 95 % interval spans about "
        f"±{interval_half_width(frames):.0f} points; {rule}"
    )


@dataclass
class EvalSet:
    """Aligned arrays for N frames."""

    pred: np.ndarray  # (N, K, 2); NaN where the model gave no prediction (every joint a miss)
    gt: np.ndarray  # (N, K, 2)
    vis: np.ndarray  # (N, K)
    attributes: list[dict]
    ids: list
    head_boxes: np.ndarray | None = None
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None  # (N, K) prediction confidence
    notes: list[str] = field(default_factory=list)
    only: list[int] | None = None  # score just these joints (e.g. those a base of another joint set predicts)


def fmt(x: float) -> float | None:
    """A figure for JSON and Markdown: two decimals, None for a missing or NaN value."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 2)


def check_alpha(alpha: float, name: str = "alpha") -> None:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 < alpha <= 1):
        raise IterateError(f"{name} must be a number in (0, 1] (PCKh's fraction of the normaliser), got {alpha}")


def evaluate(
    spec: KeypointSpec,
    strata: Mapping[str, tuple[str, ...] | list[str]],
    es: EvalSet,
    alpha: float = 0.1,
    also: tuple[float, ...] = (),
) -> dict:
    """All tables as one JSON-able dict (percentages). ``frames`` counts every labeled frame scored,
    ``frames_fallback`` those scored with the fallback normaliser; intervals are a bootstrap over frames.

    Each block holds PCKh and MeanSmS at ``alpha``, at 0.5 and at each α of ``also``, keyed by
    :func:`iterate.core.metric_keys.key` (``pckh@0.1``), each PCKh with its interval under ``ci_key``; the
    per-joint table, the strata's ``gap`` and the height error are at ``alpha``."""
    check_alpha(alpha)
    for a in also:
        check_alpha(a, "also")
    names = list(spec.names)
    kind = spec.normalizer.kind
    norms = normalisers(es.gt, es.vis, spec.normalizer, names, es.head_boxes, es.boxes)  # from every labeled joint
    if es.only is not None:  # the other joints are not scored (as if not labeled), the normaliser unchanged
        es = replace(es, vis=np.where(np.isin(np.arange(es.vis.shape[1]), es.only)[None], es.vis, 0))
    labeled = (es.vis > 0).any(1)
    usable = norms.scored & labeled
    notes, unscored = _scoring_notes(es, norms, kind, labeled, usable)
    idx = np.flatnonzero(usable)
    sc = _Scored.of(spec, es, norms, idx, sorted({float(alpha), 0.5, *map(float, also)}))
    hits = sc.by_alpha[float(alpha)]
    out = {
        "alpha": alpha,
        "notes": notes,
        **sc.block(np.ones(len(idx), bool)),
        "frames_unscored": unscored,
        "normaliser": {"kind": kind, "fallback_ratio": norms.ratio, "fallback_ratio_frames": norms.ratio_frames},
        "interval": f"95 % bootstrap over frames ({N_BOOT:,} resamples, seeded)",
    }
    out["per_joint"] = {n: fmt(v) for n, v in zip(names, summarise(hits).per_joint)}
    out["per_joint_count"] = {n: int((~np.isnan(hits[:, j])).sum()) for j, n in enumerate(names)}
    k = metric_key(PCKH, alpha)
    out["strata"] = _strata_tables(strata, [es.attributes[i] for i in idx], sc.block, (k, out[k]), notes)
    return out


def _scoring_notes(es: EvalSet, norms, kind: str, labeled: np.ndarray, usable: np.ndarray) -> tuple[list[str], int]:
    """The evaluation's notes (the set's own, the fallback normaliser, frames not scored or not predicted) and how
    many labeled frames could not be scored."""
    notes = list(es.notes)
    if norms.note(kind):
        notes.append(norms.note(kind))
    unscored = int((~usable & labeled).sum())
    if unscored:
        notes.append(
            f"{unscored} labeled frame(s) have no {kind} normaliser and no fallback (fewer than two labeled "
            "joints, or `normalizer.fallback: none`): not scored"
        )
    no_pred = int((np.isnan(es.pred).all(axis=(1, 2)) & usable).sum())  # a joint a model lacks is NaN too
    if no_pred:
        notes.append(
            f"{no_pred} frame(s) had no prediction (unreadable image or NaN): every labeled joint counts as a miss"
        )
    return notes, unscored


@dataclass
class _Scored:
    """The scored frames' hits at each α, fallback flags and height errors: :meth:`block` gives any subset's
    figures (the overall block, a stratum's row)."""

    by_alpha: dict[float, np.ndarray]  # α → (n, K) hits
    fallback: np.ndarray
    height_err: np.ndarray
    height_joints: list[int]

    @classmethod
    def of(cls, spec: KeypointSpec, es: EvalSet, norms, idx: np.ndarray, alphas: list[float]) -> _Scored:
        pred, gt, vis = es.pred[idx], es.gt[idx], es.vis[idx]
        by_alpha = {a: pck_hits(pred, gt, vis, norms.lengths[idx], a) for a in alphas}
        names = list(spec.names)
        chains = [[names.index(j) for j in ch] for ch in spec.height_chain]
        herr = height_error(pred, gt, vis, chains) if chains else np.full(len(idx), np.nan)
        return cls(by_alpha, norms.fallback[idx], herr, spec.height_indices())

    def block(self, sel: np.ndarray) -> dict:
        he = self.height_err[sel]
        he = he[~np.isnan(he)]
        n = int(sel.sum())
        first = next(iter(self.by_alpha.values()))
        out = {"frames": n, "frames_fallback": int(self.fallback[sel].sum()), "joints": summarise(first[sel]).count}
        for a, hits in self.by_alpha.items():
            h = hits[sel]
            out[metric_key(PCKH, a)] = fmt(summarise(h).mean)
            out[ci_key(metric_key(PCKH, a))] = [fmt(v) for v in frame_interval(h)]
            out[metric_key(MEAN_SMS, a)] = fmt(mean_sms(h, self.height_joints))
        out["height_err_pct"] = fmt(float(np.median(he))) if len(he) else None
        out["small"] = bool(n < SMALL)
        return out


def _stratum_values(key: str, allowed, attrs: list[dict], notes: list[str]) -> list[str]:
    """Each frame's value of one stratum; values the manifest does not list count as ``other`` (noted)."""
    vals = []
    unknown: dict[str, int] = {}
    for a in attrs:
        v = a.get(key)
        if v is None:
            vals.append("(not set)")
        elif allowed and v not in allowed:
            unknown[str(v)] = unknown.get(str(v), 0) + 1
            vals.append("other")
        else:
            vals.append(str(v))
    if unknown:
        notes.append(
            f"{key}: value(s) not in the manifest counted under 'other': "
            + ", ".join(f"{k} ({n})" for k, n in sorted(unknown.items()))
        )
    return vals


def _strata_tables(strata, attrs: list[dict], block, overall: tuple[str, float | None], notes: list[str]) -> dict:
    """key → value → the same figures as the overall block, plus the gap to the overall PCKh (its key, value)."""
    pckh, overall = overall
    tables = {}
    for key, allowed in strata.items():
        allowed = list(allowed)
        vals = _stratum_values(key, allowed, attrs, notes)
        arr = np.array(vals, dtype=object)
        rows = {}
        for v in allowed + sorted(set(vals) - set(allowed)):
            sel = arr == v
            if sel.any():
                r = block(sel)
                r["gap"] = fmt(r[pckh] - overall) if r[pckh] is not None and overall is not None else None
                rows[v] = r
        tables[key] = rows
    return tables


# -- COCO files (iterate evaluate) -------------------------------------------------------------------
def _load(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise IterateError(f"{path}: cannot read the {what} ({e})") from None


def coco_evalset(spec: KeypointSpec, pred_path: Path, gt_path: Path) -> EvalSet:
    """Pair a COCO results file with COCO keypoint labels (by image id; several people: nearest prediction)."""
    from iterate.core.coco import ann_key, coco_head_box, coco_keypoints, image_size, read_coco

    gt, order = read_coco(spec, Path(gt_path))
    preds = _read_predictions(pred_path, gt, gt_path, spec.num_joints)
    k = spec.num_joints
    notes = [_check_file_names(preds, gt, pred_path, gt_path)]
    by_img = _by_image(preds, pred_path, k)
    P, G, V, A, I, HB = [], [], [], [], [], []
    for a in sorted(gt["annotations"], key=ann_key):
        kps = np.asarray(coco_keypoints(spec, a, order, Path(gt_path), image_size(gt, a["image_id"])), float)
        if not (kps[:, 2] > 0).any():
            continue
        cands = by_img.get(a["image_id"], [])
        if cands:
            d = [
                np.nan_to_num(np.nanmean(np.linalg.norm(c[:, :2] - kps[:, :2], axis=1)[kps[:, 2] > 0]), nan=np.inf)
                for c in cands
            ]
            best = cands.pop(int(np.argmin(d)))
            P.append(best[:, :2])
        else:
            P.append(np.full((k, 2), np.nan))  # no prediction: every joint is a miss
        G.append(kps[:, :2])
        V.append(kps[:, 2])
        A.append(dict(a.get("attributes") or {}))
        I.append(a.get("id"))
        hb = coco_head_box(a, Path(gt_path))
        HB.append(hb if hb else [np.nan] * 4)
    if not G:
        raise IterateError(f"{gt_path}: no labeled annotations to evaluate")
    return EvalSet(np.stack(P), np.stack(G), np.stack(V), A, I, np.asarray(HB, float), None, None, notes)


def _read_predictions(pred_path: Path, gt: dict, gt_path: Path, k: int) -> list[dict]:
    """The results file's predictions, each an object with a list of numbers and an image id the labels have."""
    preds = _load(pred_path, "predictions")
    if isinstance(preds, dict) and "annotations" in preds:
        preds = preds["annotations"]
    if not isinstance(preds, list):
        raise IterateError(f"{pred_path}: expected a COCO results list [{{image_id, keypoints, score}}, …]")
    for i, p in enumerate(preds):
        if not isinstance(p, dict):
            raise IterateError(f"{pred_path}: predictions[{i}] is not an object {{image_id, keypoints, score}}")
        kp = p.get("keypoints")
        if not isinstance(kp, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in kp
        ):
            raise IterateError(
                f"{pred_path}: prediction for image {p.get('image_id')!r}: keypoints must be a list "
                "of numbers x, y, score"
            )
    gt_ids = {im["id"] for im in gt["images"]}
    bad_ids = sorted({p.get("image_id") for p in preds if isinstance(p.get("image_id"), (int, str))} - gt_ids, key=str)
    bad_ids += [p.get("image_id") for p in preds if not isinstance(p.get("image_id"), (int, str))][:1]
    if bad_ids:
        raise IterateError(
            f"{pred_path}: {len(bad_ids)} prediction image id(s) not in {gt_path}: " + ", ".join(map(str, bad_ids[:5]))
        )
    return preds


def _by_image(preds: list[dict], pred_path: Path, k: int) -> dict:
    """image id → its predictions as (K, 3) arrays; a missing or non-finite value (null, NaN) is a miss."""
    by_img: dict = {}
    for p in preds:
        kp = p.get("keypoints") or []
        if len(kp) != 3 * k:
            raise IterateError(
                f"{pred_path}: prediction for image {p.get('image_id')} has {len(kp) // 3} joints, the labels have {k}"
            )
        by_img.setdefault(p["image_id"], []).append(
            np.asarray([np.nan if v is None else v for v in kp], float).reshape(k, 3)
        )
    return by_img


def _check_file_names(preds: list[dict], gt: dict, pred_path: Path, gt_path: Path) -> str:
    """Results are paired with labels by image id; where a result and its image both carry a file name they must
    name the same file (a results file numbered by position against labels numbered otherwise is refused, not
    scored). → the note saying how the pairing was checked."""
    from iterate.core.paths import same_file

    names = {im["id"]: im.get("file_name") for im in gt["images"]}
    checked, wrong = 0, []
    for p in preds:
        ours, theirs = p.get("file_name"), names.get(p["image_id"])
        if isinstance(ours, str) and isinstance(theirs, str):
            checked += 1
            if not same_file(ours, theirs):
                wrong.append(f"image {p['image_id']}: {ours!r} vs {theirs!r}")
    if wrong:
        raise IterateError(
            f"{pred_path}: {len(wrong)} of {checked} predictions name another file than {gt_path} under the same "
            f"image id ({'; '.join(wrong[:2])}): predict with --coco {gt_path} so ids follow the labels"
        )
    if checked == len(preds):
        return f"{checked} predictions paired with the labels by image id and file name"
    return f"{len(preds)} predictions paired by image id; {checked} of them also checked by file name (the rest carry none)"
