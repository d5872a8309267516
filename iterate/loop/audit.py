"""`iterate audit`: find the labels that are probably wrong (issue 33), per joint, with a reason.

Every current label (instance 0 of each frame, every split) is scored by :mod:`iterate.selection.audit` against
a prediction from a model that never trained on it. Which models trained on which labels: a fine-tune recorded in
the ledger trained on the pool/train labels that existed when it was recorded (``retrain`` reads them as it
starts, and never trains on val/test). So the rule is:

* a val/test frame → the newest model of the ledger, else ``model.base``;
* a pool/train frame → the newest ledger model recorded before the frame's first label (the model that selected
  a round is one: it had not seen the round's labels), else ``model.base``;
* ``model.base`` counts as never having seen the project's labels, except those of the ``train.replay`` source
  (the base's own training data): such frames get only the body test;
* a frame no model qualifies for (the replay source's, or every frame of a project with no base once a model
  trained on it) gets, with ``folds`` ≥ 2, a prediction from one of ``folds`` models trained from scratch for
  ``fold_steps`` steps on every pool/train label but its fold's (k-fold: each frame predicted by a model that
  never trained on it).

Predictions come from each checkpoint's own inference path (flip TTA, box refine: the keypoints `predict` and
the report score), cached per model beside `select`'s scores.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iterate.core.errors import IterateError
from iterate.core.ledger import Frame, Label, Ledger, Model
from iterate.core.manifest import Manifest
from iterate.loop.models import Checkpoint, ScoringModel, base_model, base_path, cache_dir, model_name
from iterate.loop.pool import labeled_bones
from iterate.loop.samples import boxes_stamp, frame_samples
from iterate.loop.settings import from_section, keypoint_spec
from iterate.selection import audit as au
from model.infer import load_predictor
from reports.metrics import normalisers, person_box_diagonal


@dataclass
class Suspect:
    """One flagged label, with what a review task needs: the frame, the label version, the model's keypoints."""

    frame: Frame
    label: Label
    joints: tuple[str, ...]
    reason: str
    score: float
    severity: float
    label_xyv: list[list[float]]  # per joint of ``joints``
    model_xyc: list[list[float] | None]  # per joint; None where no out-of-sample model predicts it
    model: str | None  # which model predicted, e.g. "model #3", "the base model"
    prediction: np.ndarray | None = None  # (K, 3) the model's whole pose (x, y, confidence), for a review task

    def to_json(self) -> dict:
        one = len(self.joints) == 1
        return {
            "frame": self.frame.id,
            "file": self.frame.path,
            "joint": self.joints[0] if one else "/".join(self.joints),
            "joints": list(self.joints),
            "reason": self.reason,
            "score": round(self.score, 4),
            "label": self.label_xyv[0] if one else self.label_xyv,
            "model": self.model_xyc[0] if one else self.model_xyc,
            "label_version": self.label.version,
            "annotator": self.label.annotator,
            "by": self.model,
        }


@dataclass
class AuditResult:
    suspects: list[Suspect]  # ranked, most suspicious first
    frames: int  # labeled frames audited
    per_annotator: dict[str, dict]  # who → {labels, flagged, rate}
    per_joint: dict[str, dict]  # joint → {frames, flagged, rate}
    per_reason: dict[str, int]
    models: dict[str, int]  # model name → frames it predicted
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "frames": self.frames,
            "flags": [s.to_json() for s in self.suspects],
            "per_reason": self.per_reason,
            "per_annotator": self.per_annotator,
            "per_joint": self.per_joint,
            "models": self.models,
            "notes": self.notes,
        }


def thresholds(m: Manifest) -> au.Thresholds:
    return from_section(au.Thresholds, m.audit)


def _models(m: Manifest, ledger: Ledger) -> tuple[list[Model], Checkpoint | None]:
    """(the ledger's models whose checkpoint exists, oldest first; the base as a scoring model or None)."""
    models = [md for md in ledger.models() if Path(md.path).is_file()]
    p = base_path(m)
    return models, base_model(str(p)) if p is not None else None


def out_of_sample_model(
    frame: Frame, first_label_at: float, models: list[Model], base: Checkpoint | None, replay: str | None
) -> ScoringModel | None:
    """The model that predicts ``frame`` for the audit (the rule in the module's docstring)."""
    if frame.split in ("val", "test"):
        unseen = models
    else:
        unseen = [md for md in models if md.created_at < first_label_at]
    if unseen:
        return unseen[-1]
    if base is not None and frame.source != replay:
        return base
    return None


def predict_frames(
    m: Manifest, ledger: Ledger, model: ScoringModel, frames: list[Frame], progress=None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) keypoints and (N, K) confidences of ``frames`` by the checkpoint's own inference path (the one
    `predict` and the report use: flip TTA, box refine), NaN where it has no such joint or the frame is unreadable;
    cached per model in ``<workspace>/cache/<model>/audit.npz``, keyed by the checkpoint's stamp."""
    ck = Path(model.path)
    if not ck.is_file():
        raise IterateError(f"{model_name(model)}: checkpoint {ck} is gone")
    d = cache_dir(m, model)
    stamp = json.dumps(
        {"checkpoint": str(ck), "mtime": ck.stat().st_mtime, "size": ck.stat().st_size, **boxes_stamp(ledger)}
    )
    cache = d / "audit.npz"
    have: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache.is_file():
        try:
            with np.load(cache) as z:
                if str(z["stamp"]) == stamp:
                    have = {fid: (z["kps"][i], z["conf"][i]) for i, fid in enumerate(z["ids"].tolist())}
        except (OSError, ValueError, KeyError, EOFError):
            have = {}
    todo = [f for f in frames if f.id not in have]
    if todo:
        pred = load_predictor(ck, joints=m.keypoints.names)
        p = pred.predict(frame_samples(ledger, todo), progress=progress)
        for i, f in enumerate(todo):
            have[f.id] = (p.keypoints[i], p.scores[i])
        d.mkdir(parents=True, exist_ok=True)
        ids = list(have)
        tmp = d / ".audit.npz.tmp"
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                ids=np.array(ids),
                kps=np.stack([have[i][0] for i in ids]),
                conf=np.stack([have[i][1] for i in ids]),
                stamp=np.array(stamp),
            )
        tmp.replace(cache)
    return np.stack([have[f.id][0] for f in frames]), np.stack([have[f.id][1] for f in frames])


def kfold_models(
    m: Manifest, ledger: Ledger, frames: list[Frame], folds: int, steps: int
) -> tuple[list[Checkpoint | None], dict]:
    """``folds`` models trained from scratch (``steps`` steps each, the manifest's training settings) on every
    current pool/train label except one fold of ``frames`` → (each frame's fold model, fold → the frame ids it
    left out). Checkpoints under ``<workspace>/cache/kfold/``."""
    from iterate.loop.samples import labeled_samples
    from iterate.loop.settings import train_setup
    from model.train import train

    ids = sorted(f.id for f in frames)
    order = np.random.default_rng(m.train.seed).permutation(len(ids))
    fold_of = {ids[i]: n % folds for n, i in enumerate(order)}
    pool = labeled_samples(ledger, ("pool", "train"))
    setup = train_setup(m, epochs=10_000)
    left_out: dict = {}
    made: dict[int, Checkpoint] = {}
    for j in range(folds):
        out = set(fid for fid, k in fold_of.items() if k == j)
        left_out[j] = sorted(out)
        keep = [s for s in pool if s.frame_id not in out]
        if not keep or not out:
            continue
        res = train(setup, keep, [], m.workspace_dir / "cache" / "kfold" / f"fold-{j + 1}", max_steps=steps)
        made[j] = Checkpoint(
            path=str(res.last),
            name=f"k-fold model {j + 1}/{folds} ({steps} steps from scratch)",
            cache=f"kfold/fold-{j + 1}",
        )
    return [made.get(fold_of[f.id]) for f in frames], left_out


def run_audit(
    m: Manifest,
    ledger: Ledger,
    progress=None,
    t: au.Thresholds | None = None,
    only: set[str] | None = None,
    folds: int = 0,
    fold_steps: int = 200,
) -> AuditResult:
    """Audit every current label (``only``: of these frames; their bodies are then the bone test's reference);
    ``t`` overrides the manifest's thresholds (the bench scores every joint); ``folds`` ≥ 2 trains k-fold models
    for the frames no model qualifies for (the module's rule)."""
    labeled, models, base = _audit_input(m, ledger, only, folds, fold_steps)
    spec = keypoint_spec(m)
    names = list(spec.names)
    n = len(labeled)
    replay = m.train.replay.source if m.train.replay else None
    labels = np.stack([np.asarray(lab.keypoints, np.float64).reshape(len(names), 3) for _, lab in labeled])
    by, kfold_note = _assign_models(m, ledger, labeled, models, base, replay, folds, fold_steps)
    preds, conf, used = _predict_all(m, ledger, labeled, by, len(names), progress)
    notes = [kfold_note] if kfold_note else []
    if any(md is None for md in by):
        notes.append(_no_model_note(sum(md is None for md in by), replay))
    t = t or thresholds(m)
    flags, seen = _flags(spec, labeled, labels, preds, conf, t)
    confirmed = {i for i, (_, lab) in enumerate(labeled) if lab.reviewed_at is not None}
    if confirmed:  # a review came back with this label version unchanged: not flagged again
        dropped = {fl.frame for fl in flags if fl.frame in confirmed}
        flags = [fl for fl in flags if fl.frame not in confirmed]
        notes.append(
            f"{len(confirmed)} label(s) confirmed by review are not flagged again"
            + (f" ({len(dropped)} would have been)" if dropped else "")
        )
    if int(seen.any(1).sum()) < t.min_bodies:
        notes.append(f"the bone test needs {t.min_bodies} labeled bodies (audit.min_bodies); {n} so far: not run")
    suspects = [_suspect(fl, labeled, labels, preds, conf, by, names) for fl in flags]
    return AuditResult(suspects, n, *_rates(labeled, names, flags), dict(used), notes)


def _audit_input(
    m: Manifest, ledger: Ledger, only: set[str] | None, folds: int, fold_steps: int
) -> tuple[list[tuple[Frame, Label]], list[Model], Checkpoint | None]:
    """The labels to audit (instance 0 of each frame, of ``only``), the ledger's models and the base; refuses
    nothing to audit, bad fold options, and no model to audit with."""
    labeled = [(f, lab) for f, lab in ledger.current_labels() if lab.instance == 0 and (only is None or f.id in only)]
    if not labeled:
        raise IterateError("nothing to audit: the ledger holds no labels (ingest labeled sources or sync-labels)")
    if folds == 1 or folds < 0 or fold_steps < 1:
        raise IterateError("--folds must be 0 (none) or at least 2, and --fold-steps at least 1")
    models, base = _models(m, ledger)
    if not models and base is None and folds < 2:
        raise IterateError(
            "no model to audit with: set model.base in the manifest, run `iterate retrain`, or give --folds K "
            "(K models trained from scratch, each leaving a fold out)"
        )
    return labeled, models, base


def _assign_models(
    m: Manifest,
    ledger: Ledger,
    labeled: list[tuple[Frame, Label]],
    models: list[Model],
    base: Checkpoint | None,
    replay: str | None,
    folds: int,
    fold_steps: int,
) -> tuple[list[ScoringModel | None], str | None]:
    """Each frame's out-of-sample model (the module's rule; k-fold models for the orphans when ``folds`` ≥ 2), and
    a note on the k-fold models when any were trained."""
    by: list[ScoringModel | None] = []
    for f, _ in labeled:
        first = min(v.created_at for v in ledger.label_history(f.id))
        by.append(out_of_sample_model(f, first, models, base, replay))
    orphans = [i for i, md in enumerate(by) if md is None]
    if folds < 2 or not orphans:
        return by, None
    fold_models, _ = kfold_models(m, ledger, [labeled[i][0] for i in orphans], folds, fold_steps)
    for i, md in zip(orphans, fold_models):
        by[i] = md
    return by, (
        f"{sum(md is not None for md in fold_models)} frames with no model that did not train on them were "
        f"predicted by {folds} k-fold models trained from scratch for {fold_steps} steps, each leaving its fold "
        "out (their predictions are as good as those steps make them)"
    )


def _predict_all(
    m: Manifest, ledger: Ledger, labeled: list[tuple[Frame, Label]], by: list[ScoringModel | None], k: int, progress
) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Each frame's prediction by its model (NaN without one), the joints' confidences, frames per model."""
    n = len(labeled)
    preds = np.full((n, k, 2), np.nan)
    conf = np.zeros((n, k))
    used: Counter = Counter()
    groups: dict[str, list[int]] = {}
    keyed: dict[str, ScoringModel] = {}
    for i, md in enumerate(by):
        if md is not None:
            key = md.path
            groups.setdefault(key, []).append(i)
            keyed[key] = md
    for key, rows in groups.items():
        md = keyed[key]
        kp, cf = predict_frames(m, ledger, md, [labeled[i][0] for i in rows], progress)
        r = np.asarray(rows)
        preds[r], conf[r] = kp, np.nan_to_num(cf)
        used[model_name(md)] += int(np.isfinite(kp).all(-1).any(-1).sum())
    return preds, conf, used


def _no_model_note(n: int, replay: str | None) -> str:
    if replay:
        return (
            f"{n} frames have no model that did not train on them (the `{replay}` "
            "source's are the base's own training data): only their bodies are checked (`iterate audit --folds 3` "
            "predicts them with k-fold models)"
        )
    return (
        f"{n} frames have no model that did not train on them: only their bodies "
        "are checked (`iterate audit --folds 3` predicts them with k-fold models)"
    )


def _flags(
    spec, labeled: list[tuple[Frame, Label]], labels: np.ndarray, preds: np.ndarray, conf: np.ndarray, t
) -> tuple[list[au.Flag], np.ndarray]:
    """The selection library's flags, each label scored against its prediction and the labeled bodies; and which
    bones of each body were labeled (the bone test's reference)."""
    names = list(spec.names)
    xy = np.where(labels[..., 2:] > 0, labels[..., :2], np.nan)
    vis = labels[..., 2]
    hb = np.array([lab.head_box if lab.head_box else (np.nan,) * 4 for _, lab in labeled], np.float64)
    own = normalisers(np.nan_to_num(xy), vis, spec.normalizer, names, head_boxes=hb).lengths
    norm = au.steady_norm(own, person_box_diagonal(np.nan_to_num(xy), vis))
    sizes = np.array([[f.width, f.height] for f, _ in labeled], np.float64)
    edges, ref_bones, seen = labeled_bones(spec, np.concatenate([xy, vis[..., None]], -1))
    pairs = [(names.index(a), names.index(b)) for a, b in spec.flip_pairs]
    body = au.limb_body(names, pairs, edges)
    flags = au.audit(labels, preds, conf, norm, sizes, pairs, (edges, ref_bones, ref_bones, seen), t, body=body)
    return flags, seen


def _suspect(
    fl: au.Flag,
    labeled: list[tuple[Frame, Label]],
    labels: np.ndarray,
    preds: np.ndarray,
    conf: np.ndarray,
    by: list[ScoringModel | None],
    names: list[str],
) -> Suspect:
    f, lab = labeled[fl.frame]
    md = by[fl.frame]
    pose = np.concatenate([preds[fl.frame], conf[fl.frame, :, None]], -1) if md is not None else None
    return Suspect(
        f,
        lab,
        tuple(names[j] for j in fl.joints),
        fl.reason,
        fl.score,
        fl.severity,
        [[float(v) for v in labels[fl.frame, j]] for j in fl.joints],
        [
            None if pose is None or not np.isfinite(pose[j]).all() else [round(float(v), 2) for v in pose[j]]
            for j in fl.joints
        ],
        model_name(md) if md is not None else None,
        pose,
    )


def _rates(labeled: list[tuple[Frame, Label]], names: list[str], flags: list[au.Flag]):
    """Per annotator: labeled frames and those with a flag; per joint: frames and those flagging that joint."""
    flagged_frames = {fl.frame for fl in flags}
    per_ann: dict[str, dict] = {}
    for i, (_, lab) in enumerate(labeled):
        row = per_ann.setdefault(lab.annotator or "(unknown)", {"labels": 0, "flagged": 0})
        row["labels"] += 1
        row["flagged"] += i in flagged_frames
    joint_frames: dict[int, set] = {}
    for fl in flags:
        for j in fl.joints:
            joint_frames.setdefault(j, set()).add(fl.frame)
    n = len(labeled)
    per_joint = {
        name: {"frames": n, "flagged": len(joint_frames.get(j, ())), "rate": round(len(joint_frames.get(j, ())) / n, 4)}
        for j, name in enumerate(names)
    }
    for row in per_ann.values():
        row["rate"] = round(row["flagged"] / row["labels"], 4)
    per_reason = {r: sum(fl.reason == r for fl in flags) for r in au.REASONS}
    return per_ann, per_joint, per_reason


def review_items(res: AuditResult, max_frames: int) -> list:
    """The flagged frames, most suspicious first (at most ``max_frames``), each with every reason it was flagged for:
    what `iterate audit --push` sends back to the annotators."""
    from annotation.review import ReviewItem

    by: dict[str, list[Suspect]] = {}
    for sp in res.suspects:
        by.setdefault(sp.frame.id, []).append(sp)
    items = []
    for sps in list(by.values())[:max_frames]:
        why = "; ".join(f"{'/'.join(sp.joints)}: {sp.reason} ({sp.score:.2f})" for sp in sps[:6])
        if len(sps) > 6:
            why += f"; and {len(sps) - 6} more"
        items.append(ReviewItem(sps[0].frame, sps[0].label, why, sps[0].prediction))
    return items


def push_review(m: Manifest, ledger: Ledger, res: AuditResult, max_frames: int):
    """`iterate audit --push`: the flagged frames to Label Studio's review project (annotation/review.py)."""
    from annotation.client import Studio
    from annotation.review import push_reviews
    from iterate.loop.settings import labeling, studio_settings

    items = review_items(res, max_frames)
    studio = Studio.from_settings(studio_settings(m))
    try:
        return push_reviews(labeling(m), ledger, studio, items), len(items)
    finally:
        studio.close()


def write_json(result: AuditResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=1))
    tmp.replace(out)
