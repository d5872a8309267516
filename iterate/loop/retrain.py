"""`iterate retrain` as a library call: labeled frames from the ledger → train → score → a model row."""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
from iterate.core.metric_keys import PCKH01, split_key
from iterate.loop import tracking
from iterate.loop.distributed import rank_world
from iterate.loop.export import record_version
from iterate.loop.models import base_path
from iterate.loop.samples import labeled_samples
from iterate.loop.scoring import evaluator, score
from iterate.loop.settings import train_setup
from model.checkpoints import load_file
from model.codec import DarkCodec
from model.data import Sample
from model.infer import load_predictor
from model.train import best_pick_note, train
from reports.evaluation import split_size_warning

_RUN_KEY = "training_run"


def split_warnings(ledger: Ledger) -> list[str]:
    """One line per fixed split (val, test) too small to pick a checkpoint or judge a stratum — `status`, `retrain`
    and the report say the same (:func:`reports.evaluation.split_size_warning`)."""
    out = []
    for split in ("val", "test"):
        w = split_size_warning(split, len(labeled_samples(ledger, (split,))))
        if w:
            out.append(w)
    return out


def base_checkpoint(m: Manifest, ledger: Ledger) -> Path | None:
    """Warm start: the previous round's model, else the manifest's base checkpoint, else none (from scratch)."""
    prev = ledger.latest_model()
    if prev is not None and Path(prev.path).is_file():
        return Path(prev.path)
    return base_path(m)


@dataclass
class RetrainOutcome:
    model_id: int
    path: Path
    metrics: dict
    bad_images: list[str]
    load_report: str
    tracking: dict | None = None  # the tracked run: backend, run_id, experiment, store
    notes: list[str] = field(default_factory=list)  # small val/test splits, a best checkpoint picked among ties


def retrain(
    m: Manifest,
    ledger: Ledger,
    *,
    epochs: int | None = None,
    init: str | Path | None = None,
    freeze: str | None = None,
    heatmap_size: int | None = None,
    resume: bool = False,
    allow_partial: bool = False,
    time_limit_s: float | None = None,
    max_steps: int | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> RetrainOutcome | None:
    """Train on the ledger's labeled pool/train frames, keep the best by val PCKh@0.1, record the model.

    Returns None on ranks other than 0 of a distributed run (rank 0 writes checkpoints and the ledger).
    """
    _check_limits(epochs, time_limit_s)
    distributed, rank, _ = rank_world()
    train_s, replay_s, val_s, dataset = _training_data(m, ledger, rank)
    out_dir, init, hm = _run_dir(m, ledger, init, heatmap_size, resume, rank)
    setup = train_setup(m, epochs=epochs, freeze=freeze, heatmap_size=hm)
    codec = DarkCodec(m.model.input_size, hm, m.model.sigma)
    fresh = not out_dir.exists()
    run = _track(m, ledger, out_dir, resume, rank, train_s, val_s, replay_s, init, setup, dataset)
    step_hook, epoch_hook = _hooks(tracking.StepLog(run), on_step, on_epoch)
    try:
        # val during training runs the report's inference path (flip + refine): the checkpoint kept is the one it
        # scores best
        res = train(
            setup,
            train_s,
            val_s,
            out_dir,
            init=init,
            allow_partial=allow_partial,
            resume=resume,
            time_limit_s=time_limit_s,
            max_steps=max_steps,
            evaluate=evaluator(setup.keypoints, setup.infer_config(), codec),
            on_step=step_hook,
            on_epoch=epoch_hook,
            distributed=distributed,
            replay=replay_s,
        )
    except IterateError:
        if rank == 0:
            _abandon(ledger, out_dir if fresh else None, run)
        raise
    if rank != 0:
        return None
    best = res.best if res.best.is_file() else res.last
    metrics, tie = _best_metrics(setup, best, res, train_s, val_s, replay_s)
    mid = _record_model(ledger, best, metrics, len(train_s) + len(replay_s), dataset, run)
    if run is not None:
        _close_run(run, best, mid, metrics, res.steps)
    notes = split_warnings(ledger) + ([tie] if tie else [])
    return RetrainOutcome(mid, best, metrics, res.bad_images, res.load_report, run.describe() if run else None, notes)


def _check_limits(epochs: int | None, time_limit_s: float | None) -> None:
    if epochs is not None and epochs < 1:
        raise IterateError(f"--epochs must be ≥ 1, got {epochs}")
    if time_limit_s is not None and not (math.isfinite(time_limit_s) and time_limit_s > 0):
        raise IterateError(f"--minutes must be a positive number, got {time_limit_s / 60:g}")


def _hooks(log: tracking.StepLog, on_step, on_epoch) -> tuple[Callable, Callable]:
    """The training loop's step and epoch callbacks: the tracked run's log, then the caller's."""

    def step_hook(step: int, total: int, loss: float) -> None:
        log.step(step, total, loss)
        if on_step:
            on_step(step, total, loss)

    def epoch_hook(rec: dict) -> None:
        log.epoch(rec)
        if on_epoch:
            on_epoch(rec)

    return step_hook, epoch_hook


def _abandon(ledger: Ledger, new_dir: Path | None, run) -> None:
    """A run that failed for a known reason (bad checkpoint, diverged loss) leaves no model folder (``new_dir``:
    the one it made) and nothing to resume; an interrupted one (Ctrl-C, kill) keeps both for `--resume`."""
    if new_dir is not None and new_dir.is_dir():
        shutil.rmtree(new_dir)
    with ledger.transaction():
        ledger.set(_RUN_KEY, None)
    if run is not None:
        run.end(ok=False)


def _best_metrics(setup, best: Path, res, train_s, val_s, replay_s) -> tuple[dict, str | None]:
    """The kept checkpoint's metrics (:func:`_metrics`, the replay share) and the note when it was picked among
    ties."""
    metrics = _metrics(setup.keypoints, best, res, train_s, val_s)
    tie = best_pick_note(res.history, setup.train.best_metric, load_file(best).get("step"))
    if tie:
        metrics["best_pick"] = tie
    if replay_s:
        metrics.update({"replay_frames": len(replay_s), "replay_fraction": setup.train.replay_fraction})
    return metrics, tie


def _record_model(ledger: Ledger, best: Path, metrics: dict, n_train: int, dataset, run) -> int:
    """The model row (its parent the latest model, the dataset version it trained on); the run is done."""
    parent = ledger.latest_model()
    with ledger.transaction():
        mid = ledger.add_model(
            str(best),
            parent_id=parent.id if parent else None,
            n_train=n_train,
            config=load_file(best).get("config", {}),
            metrics=metrics,
            dataset_version=dataset.id if dataset else None,
        )
        ledger.set(_RUN_KEY, None)
        tracking.remember(ledger, mid, run)
    return mid


def _close_run(run, best: Path, mid: int, metrics: dict, steps: int) -> None:
    """The tracked run gets the kept checkpoint's metrics, its model id and file, and ends."""
    run.log_metrics({f"best_{k}": v for k, v in metrics.items()}, step=steps)
    run.set_tags(
        {
            "iterate.model_id": mid,
            "iterate.checkpoint": best,
            "iterate.checkpoint_sha256": tracking.file_sha256(best),
            "iterate.inference": metrics.get("inference", ""),
        }
    )
    record = best.with_suffix(".json")
    run.log_files([record], "checkpoint")
    run.end(ok=True)


def _training_data(m: Manifest, ledger: Ledger, rank: int):
    """(training, replay and val samples, the dataset version they come from). Rank 0 reads them and records the
    version (every labeled frame of every split, the replay source included: what this model is trained,
    checkpoint-picked and scored on) in one ledger transaction, so the version holds exactly these labels."""
    rp = m.train.replay
    with ledger.transaction() if rank == 0 else contextlib.nullcontext():
        train_s = labeled_samples(ledger, ("pool", "train"), not_source=rp.source if rp else None)
        replay_s = labeled_samples(ledger, ("pool", "train"), source=rp.source) if rp else []
        if rp and not replay_s:
            raise IterateError(
                f"train.replay.source: source '{rp.source}' has no labeled frames (ingest it with labels)"
            )
        val_s = labeled_samples(ledger, ("val",))
        if not train_s:
            raise IterateError("nothing to train on — run `iterate sync-labels` or `iterate ingest` with labels")
        dataset = record_version(m, ledger, made_by="retrain", include_replay=True)[0] if rank == 0 else None
    return train_s, replay_s, val_s, dataset


def _track(m, ledger, out_dir, resume, rank, train_s, val_s, replay_s, init, setup, dataset):
    """Start (or, on ``--resume``, reopen) the retrain's tracked run on rank 0 and log its parameters and the
    dataset version it trains on."""
    if rank != 0:
        return None
    state = ledger.get(_RUN_KEY) or {}
    run = tracking.start_run(
        m,
        f"retrain {out_dir.name}",
        resume_id=(state.get("tracking_run") or state.get("mlflow_run")) if resume else None,
    )
    if run is None:
        return None
    if not resume:
        params = tracking.retrain_params(m, ledger, train_s, val_s, replay_s, init)
        params |= {"train.epochs": setup.train.epochs, "model.heatmap_size": setup.model.heatmap_size}  # as run
        params |= tracking.dataset_params(dataset)
        run.log_params(params)
        with ledger.transaction():
            ledger.set(_RUN_KEY, state | {"tracking_run": run.run_id})
    run.set_tags(tracking.dataset_tags(dataset))  # a resumed run says the version it went on with
    return run


def _run_dir(m: Manifest, ledger: Ledger, init, heatmap_size: int | None, resume: bool, rank: int):
    """The run's folder, warm start and heatmap size: the interrupted run's on resume, else a new model folder
    (recorded in the ledger so that `--resume` finds it)."""
    run = ledger.get(_RUN_KEY)
    hm = heatmap_size or (run.get("heatmap_size") if resume and run else None) or m.model.heatmap_size
    if resume:
        if not run or not (Path(run["dir"]) / "last.pt").is_file():
            raise IterateError("nothing to resume: no interrupted `iterate retrain` in this workspace")
        return Path(run["dir"]), run.get("init") or None, hm
    init = init or base_checkpoint(m, ledger)
    out_dir = m.workspace_dir / "models" / f"model-{len(ledger.models()) + 1:03d}"
    if rank == 0:
        with ledger.transaction():
            ledger.set(_RUN_KEY, {"dir": str(out_dir), "init": str(init) if init else "", "heatmap_size": hm})
    return out_dir, init, hm


def _metrics(spec, best: Path, res, train_s: list[Sample], val_s: list[Sample]) -> dict:
    """The kept checkpoint through its own inference path (the one `predict` and the report run) on val and on
    (up to 500) training frames: the figures, the overfit gap and how long it trained."""
    pr = load_predictor(best)
    metrics: dict = {}
    if val_s:
        v = score(spec, pr.predict(val_s).keypoints, val_s)
        metrics.update({split_key("val", k): v[k] for k in v})
    tr = score(spec, pr.predict(train_s[:500]).keypoints, train_s[:500])
    metrics.update({split_key("train", k): tr[k] for k in tr})
    if split_key("val", PCKH01) in metrics:
        gap = metrics[split_key("train", PCKH01)] - metrics[split_key("val", PCKH01)]
        metrics[split_key("overfit", PCKH01)] = round(gap, 3)
    metrics.update(
        {
            "epochs": res.epochs,
            "steps": res.steps,
            "seconds": res.seconds,
            "best_epoch": load_file(best).get("epoch"),
            "inference": pr.settings.describe(),
        }
    )
    return metrics
