"""Training: weighted heatmap MSE, AdamW, warm-up + cosine/step schedule, freeze policy, atomic best/last
checkpoints with optimizer state, resume, warm start.

The CPU default recipe (measured in ``bench/experiments/cpu_recipe/learn_cpu.py``): zero-initialised head, loss ×
1000, pixels near a joint's peak weighted 10× (``fg_weight`` 9: +5 PCKh@0.5 in 4,000 steps), AdamW 3e-3 with 100
warm-up steps then cosine, batch 16. A plain MSE recipe with a random head never leaves the all-zero-heatmap
plateau in 10 CPU minutes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from iterate.core.errors import IterateError
from iterate.core.metric_keys import PCKH01, PCKH05, label
from model.checkpoints import FORMAT, load_file, load_into, remove_stale_temporaries, save_atomic
from model.codec import BoxCodec, DarkCodec
from model.config import TrainSetup
from model.data import PoseDataset, Sample, collate
from model.hrnet import PoseHRNet, build_model


class TrainingDiverged(IterateError):
    """The loss stopped being a finite number: nothing this run wrote is kept."""


def heatmap_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    scale: float = 1.0,
    fg_weight: float = 0.0,
    topk: int = 0,
) -> torch.Tensor:
    """Weighted MSE: joints with weight 0 (not labeled, out of the crop) contribute nothing.

    ``fg_weight`` > 0 weighs each pixel by 1 + fg_weight × (the target's 3×3 maximum there), so the few pixels
    around a joint's peak count more than the background that fills most of a heatmap. ``topk`` > 0 keeps, per
    sample, only the ``topk`` joints with the largest loss (online hard keypoint mining) and averages those."""
    err = (pred - target) ** 2
    if fg_weight > 0:
        near = nn.functional.max_pool2d(target.detach().float(), 3, stride=1, padding=1).to(err.dtype)
        err = err * (1.0 + fg_weight * near)
    w = weights.to(pred.dtype)
    if topk <= 0 or topk >= err.shape[1]:
        return (err * w[:, :, None, None]).mean() * scale
    per_joint = err.mean(dim=(2, 3)) * w  # (B, J)
    return per_joint.topk(topk, dim=1).values.mean() * scale


def apply_freeze(model: PoseHRNet, policy: str) -> list[str]:
    """``none`` | ``all_but_stage4`` | ``pose`` (the trunk and the heatmap head: only a box head trains, which adds
    a box head to a trained model without changing its keypoints) | comma-separated trunk module prefixes to freeze.
    Returns frozen names."""
    policy = (policy or "none").strip()
    if policy == "pose" and model.box_head is None:
        raise IterateError("train.freeze: 'pose' trains only the box head, and this model has none (model.box_head)")
    if policy == "none":
        prefixes: list[str] = []
    elif policy == "pose":
        prefixes = list(model.trunk_modules())
    elif policy == "all_but_stage4":
        prefixes = [n for n in model.trunk_modules() if not n.startswith("stage4")]
    else:
        prefixes = [p.strip() for p in policy.split(",") if p.strip()]
        names = [n for n, _ in model.backbone.named_modules()]
        for p in prefixes:
            if not any(n == p or n.startswith(p + ".") for n in names):
                raise IterateError(
                    f"train.freeze: no trunk module named '{p}' (top level: {', '.join(model.trunk_modules())})"
                )
    frozen = []
    for name, p in model.backbone.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    if policy == "pose":
        for name, p in model.final_layer.named_parameters():
            p.requires_grad_(False)
            frozen.append(f"final_layer.{name}")
    model._frozen_prefixes = prefixes  # type: ignore[attr-defined]
    return frozen


def _freeze_bn(model: PoseHRNet) -> None:
    for name, mod in model.backbone.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and any(
            name == q or name.startswith(q + ".") for q in getattr(model, "_frozen_prefixes", [])
        ):
            mod.eval()


def lr_factor(frac: float, warmup_frac: float, schedule: str) -> float:
    if frac < warmup_frac:
        return max(frac / warmup_frac, 1e-3)
    t = (frac - warmup_frac) / max(1e-9, 1 - warmup_frac)
    if schedule == "step":
        return 1.0 if t < 0.7 else (0.1 if t < 0.9 else 0.01)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass
class TrainResult:
    best: Path
    last: Path
    epochs: int
    steps: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    bad_images: list[str] = field(default_factory=list)
    load_report: str = ""
    seconds: float = 0.0


def checkpoint_dict(model: PoseHRNet, setup: TrainSetup, **extra) -> dict:
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "joints": list(setup.keypoints.names),
        "backbone": model.backbone_name,
        "input_size": model.input_size,
        "heatmap_size": model.heatmap_size,
        "sigma": float(setup.model.sigma),
        "infer": setup.infer_config().to_dict(),
        **extra,
    }


@dataclass
class _Progress:
    """What a run has done so far (restored from ``last.pt`` on resume)."""

    start_epoch: int = 0
    step: int = 0
    best_score: float = -1.0
    best_key: list = field(default_factory=lambda: [-1e9, -1e9, -1e9])
    history: list = field(default_factory=list)
    bad: list = field(default_factory=list)
    since_eval: int = 0  # steps since the last val score: a small fine-tune would otherwise spend its time on val


@dataclass
class _Plan:
    epochs: int
    total_steps: int
    warmup_frac: float
    base_lr: float
    time_limit_s: float | None
    max_steps: int | None


class _Ema:
    """Exponential moving average of the weights (float parameters and buffers; counters are copied). The decay
    warms up as ``min(decay, (1 + t) / (10 + t))`` so the first steps do not drag the random start along."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)


@contextmanager
def _averaged(model: nn.Module, ema: _Ema | None):
    """Within the block ``model`` holds the averaged weights (evaluation and checkpoints); after it, its own."""
    if ema is None:
        yield model
        return
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ema.state)
    try:
        yield model
    finally:
        model.load_state_dict(saved)


@dataclass
class _Weights:
    """What the steps update: the network, its optimiser, the L2-SP anchor and the weight average."""

    model: PoseHRNet
    opt: torch.optim.Optimizer
    anchor: dict
    ema: _Ema | None = None


def train(
    setup: TrainSetup,
    train_samples: list[Sample],
    val_samples: list[Sample],
    out_dir: str | Path,
    *,
    init: str | Path | None = None,
    allow_partial: bool = False,
    resume: bool = False,
    time_limit_s: float | None = None,
    evaluate: Callable[[PoseHRNet, list[Sample]], dict] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    device: str | None = None,
    distributed: bool = False,
    max_steps: int | None = None,
    replay: list[Sample] | None = None,
) -> TrainResult:
    """Train on ``train_samples``; every ``train.eval_every_steps`` score ``val_samples`` with ``evaluate``
    (→ ``{"pckh@0.1": …}``) and keep the best checkpoint. ``time_limit_s`` ends training at that wall time and
    ``max_steps`` after that many optimiser steps, the schedule following whichever is given. ``replay`` samples
    (the base's own training data) make up ``train.replay_fraction`` of every epoch."""
    if not train_samples:
        raise IterateError("nothing to train on — run `iterate sync-labels` or `iterate ingest` with labels")
    t0 = time.time()
    best_path, last_path = _out_dir(Path(out_dir))
    dev, rank, world = _device(device, distributed)
    torch.manual_seed(setup.train.seed)
    np.random.seed(setup.train.seed)
    w, load_report, base_lr = _start(setup, init, resume, allow_partial, dev)
    ds, sampler, loader = _data(setup, train_samples, distributed, rank, world, replay)
    net = _wrap(w.model, dev, distributed)
    plan = _plan(setup.train, len(loader), base_lr, time_limit_s, max_steps)
    prog, load_report = _resume(last_path, w.model, w.opt) if resume else (_Progress(), load_report)
    w.ema = _ema(w.model, setup.train.ema, last_path if resume else None)
    scoring = evaluate is not None and bool(val_samples)
    t_start = time.time() - (float(prog.history[-1]["elapsed_s"]) if prog.history else 0.0)
    epoch = prog.start_epoch - 1
    for epoch in range(prog.start_epoch, plan.epochs):
        ds.epoch = epoch
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new shuffle per epoch
            sampler.set_epoch(epoch)
        losses, stop = _epoch(net, w, loader, setup.train, plan, prog, dev, t_start, distributed, on_step)
        rec = _epoch_record(epoch, prog, losses, t_start)
        due = scoring and _val_due(prog, setup.train.eval_every_steps, stop or epoch == plan.epochs - 1)
        if due and rank == 0:
            rec.update(_validate(w, evaluate, val_samples))
        improved = _record(rec, prog, setup.train.best_metric, due or not scoring)
        if rank == 0:
            config = _config(setup, plan.epochs, init, time_limit_s)
            _save(w.model, setup, w.opt, prog, epoch, config, last_path, best_path if improved else None, w.ema)
        if on_epoch:
            on_epoch(rec)
        if stop:
            break
    secs = round(time.time() - t0, 1)
    return TrainResult(
        best_path, last_path, epoch + 1, prog.step, prog.best_score, prog.history, prog.bad, load_report, secs
    )


# -- the steps of train -----------------------------------------------------------------------------
def _start(
    setup: TrainSetup, init, resume: bool, allow_partial: bool, dev: torch.device
) -> tuple[_Weights, str, float]:
    """The network (:func:`_build`; on resume its weights come from the checkpoint after), the L2-SP anchor and
    the optimiser at the base learning rate (a warm start fine-tunes gently) → (them, what loaded said, the base
    learning rate)."""
    model, load_report = _build(setup, None if resume else init, allow_partial, dev)
    base_lr = setup.train.finetune_lr if init else setup.train.lr
    anchor = _anchor(model, setup.train.l2sp) if init else {}
    return _Weights(model, _optimizer(model, setup.train, base_lr, anchor), anchor), load_report, base_lr


def _out_dir(out_dir: Path) -> tuple[Path, Path]:
    """The run's folder, made, without the temporaries of a checkpoint write a kill -9 cut off → (best, last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    return out_dir / "best.pt", out_dir / "last.pt"


def _ema(model: PoseHRNet, decay: float, resumed: Path | None) -> _Ema | None:
    """The weight average (``train.ema`` > 0); on resume, the one the checkpoint ``resumed`` saved."""
    if decay <= 0:
        return None
    ema = _Ema(model, decay)
    if resumed is not None:
        ema.state = {k: v.clone() for k, v in load_file(resumed)["model"].items()}
    return ema


def _val_due(prog: _Progress, every: int, last: bool) -> bool:
    """val is scored every ``every`` (train.eval_every_steps) steps, and always after the last epoch; when it is
    due, the count starts again."""
    if prog.since_eval >= every or last:
        prog.since_eval = 0
        return True
    return False


def _epoch_record(epoch: int, prog: _Progress, losses: list[float], t_start: float) -> dict:
    rec = {
        "epoch": epoch,
        "step": prog.step,
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "elapsed_s": round(time.time() - t_start, 2),
    }
    prog.since_eval += len(losses)
    return rec


def _validate(w: _Weights, evaluate: Callable, val_samples: list[Sample]) -> dict:
    """``evaluate`` on the averaged weights, in eval mode."""
    with _averaged(w.model, w.ema):
        w.model.eval()
        scores = evaluate(w.model, val_samples)
        w.model.train()
    return scores


def _device(device: str | None, distributed: bool) -> tuple[torch.device, int, int]:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    if dev.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return dev, rank, world


def _build(setup: TrainSetup, init, allow_partial: bool, dev: torch.device) -> tuple[PoseHRNet, str]:
    """The network, warm-started from ``init`` (what loaded said in words), frozen by policy, on ``dev``."""
    cfg, spec = setup.model, setup.keypoints
    model = build_model(cfg.backbone, spec.num_joints, cfg.input_size, cfg.heatmap_size, cfg.box_head)
    load_report = ""
    if init:
        obj = load_file(init)
        rep = load_into(model, obj, list(spec.names), dict(spec.init_from), allow_partial, init)
        load_report = f"{rep.layout}: {rep.describe()}"
        if rep.joints_from_nearest:
            load_report += "; from nearest: " + ", ".join(f"{k}←{v}" for k, v in rep.joints_from_nearest.items())
        learned = (obj.get("heatmap_size"), obj.get("sigma"))
        if None not in learned and learned != (cfg.heatmap_size, cfg.sigma):
            load_report += (  # the weights fit either way; the targets they learned do not
                f"; the checkpoint learned {learned[0]}² heatmaps at σ {learned[1]:g}, "
                f"this run trains {cfg.heatmap_size}² at σ {cfg.sigma:g} (model.heatmap_size, model.sigma)"
            )
    apply_freeze(model, setup.train.freeze)
    return model.to(dev).to(memory_format=torch.channels_last), load_report


def _anchor(model: PoseHRNet, l2sp: float) -> dict[torch.nn.Parameter, torch.Tensor]:
    """L2-SP: the trainable trunk weights' starting values, which each step pulls the weights back toward."""
    if l2sp <= 0:
        return {}
    return {p: p.detach().clone() for p in model.backbone.parameters() if p.requires_grad}


def _optimizer(model: PoseHRNet, tcfg, base_lr: float, anchor: dict | None = None) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm parameters, nor on weights L2-SP holds to their start."""
    anchor = anchor or {}
    params = [p for p in model.parameters() if p.requires_grad]
    if anchor:
        return torch.optim.AdamW(
            [
                {"params": [p for p in params if p.ndim > 1 and p not in anchor], "weight_decay": tcfg.weight_decay},
                {"params": [p for p in params if p.ndim <= 1 or p in anchor], "weight_decay": 0.0},
            ],
            lr=base_lr,
        )
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": tcfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=base_lr,
    )


def _data(setup: TrainSetup, samples: list[Sample], distributed: bool, rank: int, world: int, replay=None):
    """The augmented training set, its sampler (one shard per rank, or replay mixed in at its share) and loader."""
    cfg, tcfg, spec = setup.model, setup.train, setup.keypoints
    codec = DarkCodec(cfg.input_size, cfg.heatmap_size, cfg.sigma)
    replay = list(replay or []) if tcfg.replay_fraction > 0 else []
    if replay and distributed:
        raise IterateError("train.replay is not supported under torchrun yet: run the fine-tune on one process")
    ds = PoseDataset(
        samples + replay,
        codec,
        flip_index=spec.flip_index(),
        joint_weights=spec.joint_weights(),
        train=True,
        augment=tcfg.augment,
        up_joints=spec.up_joints(),
        seed=tcfg.seed,
        person_box_p=tcfg.augment.person_box,
        box_jitter=tcfg.augment.box_jitter,
        zoom_out=(tcfg.augment.zoom_out, tcfg.augment.zoom_min),
        box_targets=cfg.box_head,
    )
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed, drop_last=True)
    bs = max(1, tcfg.batch_size // world)  # the global batch stays train.batch_size across ranks
    g = torch.Generator().manual_seed(tcfg.seed)
    if replay:
        sampler = replay_sampler(len(samples), len(replay), tcfg.replay_fraction, g, min_samples=bs)
    loader = DataLoader(
        ds,
        batch_size=bs,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(ds) > bs,
        num_workers=tcfg.workers,
        collate_fn=collate,
        generator=g,
        persistent_workers=tcfg.workers > 0,
    )
    return ds, sampler, loader


def replay_sampler(
    n_new: int, n_replay: int, fraction: float, generator: torch.Generator, min_samples: int = 1
) -> WeightedRandomSampler:
    """Draw an epoch of ``n_new / (1 - fraction)`` samples, at least ``min_samples`` (one batch: the loader drops a
    last partial batch, so a shorter epoch would train no step), in which the replay rows (after the new ones) are
    ``fraction`` of the draws on average, each row of a group equally likely."""
    w = torch.cat([torch.full((n_new,), (1 - fraction) / max(1, n_new)), torch.full((n_replay,), fraction / n_replay)])
    if n_new == 0:
        w = torch.full((n_replay,), 1.0 / n_replay)
    n = max(min_samples, round(max(1, n_new) / (1 - fraction)))
    return WeightedRandomSampler(w, num_samples=n, replacement=True, generator=generator)


def _wrap(model: PoseHRNet, dev: torch.device, distributed: bool) -> nn.Module:
    if not distributed:
        return model
    # the trunk also computes the lower-resolution outputs the heatmap head does not use
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True
    )


def _plan(tcfg, batches_per_epoch: int, base_lr: float, time_limit_s, max_steps) -> _Plan:
    """Epochs and steps of the schedule: ``max_steps`` (when given) decides the length, else the epochs."""
    epochs = tcfg.epochs
    steps_per_epoch = max(1, batches_per_epoch)
    total_steps = epochs * steps_per_epoch
    if max_steps:
        total_steps = int(max_steps)
        epochs = max(epochs, -(-total_steps // steps_per_epoch))
    return _Plan(
        epochs, total_steps, min(0.3, tcfg.warmup_steps / max(1, total_steps)), base_lr, time_limit_s, max_steps
    )


def _resume(last_path: Path, model: PoseHRNet, opt) -> tuple[_Progress, str]:
    if not last_path.is_file():
        raise IterateError(f"{last_path}: nothing to resume (no last checkpoint in {last_path.parent})")
    ck = load_file(last_path)
    model.load_state_dict(ck.get("train_model", ck["model"]))  # with EMA, "model" holds the averaged weights
    opt.load_state_dict(ck["optimizer"])
    prog = _Progress(
        int(ck["epoch"]) + 1,
        int(ck["step"]),
        float(ck.get("best_score", -1.0)),
        list(ck.get("best_key", [-1e9, -1e9, -1e9])),
        list(ck.get("history", [])),
    )
    return prog, f"resumed from {last_path} after epoch {prog.start_epoch}"


def _epoch(
    net,
    w: _Weights,
    loader,
    tcfg,
    plan: _Plan,
    prog: _Progress,
    dev,
    t_start: float,
    distributed: bool,
    on_step,
) -> tuple[list[float], bool]:
    """One pass over the loader; → (the step losses, whether the run ends here)."""
    net.train()
    _freeze_bn(w.model)
    box_codec = BoxCodec(w.model.input_size, w.model.box_map_size) if w.model.box_head is not None else None
    losses: list[float] = []
    for batch in loader:
        prog.bad += [p for p in batch["bad"] if p not in prog.bad]
        if "image" not in batch:
            continue
        _set_lr(w.opt, plan, prog, t_start, tcfg.schedule)
        loss = _loss(net, batch, dev, tcfg, box_codec)
        if not bool(torch.isfinite(loss.detach())):  # a poisoned label or a diverging lr: stop, keep nothing
            raise TrainingDiverged(
                f"training stopped at step {prog.step + 1}: the loss is {float(loss.detach()):g}, "
                "not a finite number (check the labels for extreme coordinates, or lower the "
                "learning rate); no model was recorded"
            )
        _optimise(w, loss, tcfg.l2sp, prog.step)
        prog.step += 1
        losses.append(float(loss.detach()))
        if on_step:
            on_step(prog.step, plan.total_steps, losses[-1])
        if (plan.time_limit_s and _stop_all(time.time() - t_start >= plan.time_limit_s, distributed)) or (
            plan.max_steps and prog.step >= plan.max_steps
        ):
            return losses, True
    return losses, False


def _set_lr(opt, plan: _Plan, prog: _Progress, t_start: float, schedule: str) -> None:
    """The schedule's learning rate at the run's progress: its steps, or its wall time when that is capped."""
    frac = prog.step / plan.total_steps
    if plan.time_limit_s:
        frac = max(frac, (time.time() - t_start) / plan.time_limit_s)
    for grp in opt.param_groups:
        grp["lr"] = plan.base_lr * lr_factor(min(frac, 1.0), plan.warmup_frac, schedule)


def _loss(net, batch: dict, dev, tcfg, box_codec: BoxCodec | None) -> torch.Tensor:
    """The batch's heatmap loss; with a box head, plus the box loss (the labeled person's box)."""
    x = batch["image"].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
    y = batch["heatmaps"].to(dev, non_blocking=True)
    wt = batch["weights"].to(dev, non_blocking=True)
    if box_codec is None:
        return heatmap_loss(net(x), y, wt, tcfg.loss_scale, tcfg.fg_weight, tcfg.ohkm_topk)
    hm, box_out = net(x, with_box=True)
    b, v = batch["box"].to(dev), batch["box_valid"].to(dev)
    return heatmap_loss(hm, y, wt, tcfg.loss_scale, tcfg.fg_weight, tcfg.ohkm_topk) + box_codec.loss(
        box_out.float(), b[:, :2], b[:, 2], v
    )


def _optimise(w: _Weights, loss: torch.Tensor, l2sp: float, step: int) -> None:
    """One optimiser step, then L2-SP's pull toward the start and the weight average."""
    w.opt.zero_grad(set_to_none=True)
    loss.backward()
    w.opt.step()
    if w.anchor:  # decoupled L2-SP: w ← w − lr·α·(w − w₀)
        lr = w.opt.param_groups[0]["lr"]
        with torch.no_grad():
            for p, p0 in w.anchor.items():
                p.add_(p - p0, alpha=-lr * l2sp)
    if w.ema is not None:
        w.ema.update(w.model, step)


def _record(rec: dict, prog: _Progress, best_metric: str, may_improve: bool) -> bool:
    """Append the epoch's record; → whether it is the best so far (by ``best_metric``, ties to the other PCKh,
    then the loss)."""
    second = PCKH05 if best_metric != PCKH05 else PCKH01
    key = [rec.get(best_metric, -1.0), rec.get(second, -1.0), -rec["loss"]]
    prog.history.append(rec)
    improved = key > prog.best_key and may_improve
    if improved:
        prog.best_key, prog.best_score = key, rec.get(PCKH01, -rec["loss"])
    return improved


def best_pick_note(history: list[dict], best_metric: str, kept_step: int | None) -> str | None:
    """When the kept checkpoint tied with other val evaluations on ``best_metric``: one line saying so and how the
    tie was broken (the other PCKh, then the lower training loss, as :func:`_record` ranks them). None otherwise."""
    evals = [r for r in history if r.get(best_metric) is not None]
    if len(evals) < 2:
        return None
    top = max(r[best_metric] for r in evals)
    tied = [r for r in evals if r[best_metric] == top]
    if len(tied) < 2:
        return None
    second = PCKH05 if best_metric != PCKH05 else PCKH01
    kept = next((r for r in tied if r.get("step") == kept_step), None)
    head = (
        f"the best checkpoint was picked among {len(tied)} of {len(evals)} val evaluations tied at "
        f"{label(best_metric)} {top:.1f} %" + (" (val told none of them apart)" if len(tied) == len(evals) else "")
    )
    if kept is None:
        return head + f": ties go to the higher val {label(second)}, then the lower training loss"
    same2 = sum(1 for r in tied if r.get(second) == kept.get(second)) > 1
    how = f"its val {label(second)} {kept.get(second, float('nan')):.1f} %" + (
        f", then its lower training loss {kept['loss']:.4f}" if same2 else ""
    )
    return head + f": kept step {kept.get('step')} (epoch {kept.get('epoch', 0) + 1}) by {how}"


def _save(
    model,
    setup: TrainSetup,
    opt,
    prog: _Progress,
    epoch: int,
    config: dict,
    last_path: Path,
    best_path: Path | None,
    ema: _Ema | None = None,
) -> None:
    """``last.pt`` (with optimizer state, to resume) every epoch; ``best.pt`` when the epoch improved."""
    extra = {
        "epoch": epoch,
        "step": prog.step,
        "best_score": prog.best_score,
        "best_key": prog.best_key,
        "history": prog.history,
        "optimizer": opt.state_dict(),
        "config": config,
    }
    if ema is not None:  # inference reads "model": the averaged weights; resume also needs the raw ones
        extra["train_model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with _averaged(model, ema):
        save_atomic(checkpoint_dict(model, setup, **extra), last_path)
        if best_path is not None:
            _save_best(model, setup, prog, epoch, config, best_path)


def _save_best(model, setup: TrainSetup, prog: _Progress, epoch: int, config: dict, best_path: Path) -> None:
    extra = {"epoch": epoch, "step": prog.step, "best_score": prog.best_score, "history": prog.history}
    save_atomic(checkpoint_dict(model, setup, config=config, **extra), best_path)


def _stop_all(local: bool, distributed: bool) -> bool:
    """Every rank stops at the same step (else one would wait forever in the next all-reduce)."""
    if not distributed:
        return local
    import torch.distributed as dist

    t = torch.tensor([1.0 if local else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _config(setup: TrainSetup, epochs: int, init, time_limit_s=None) -> dict:
    mc, tc = setup.model, setup.train
    return {
        "time_limit_s": time_limit_s,
        "backbone": mc.backbone,
        "input_size": mc.input_size,
        "heatmap_size": mc.heatmap_size,
        "sigma": mc.sigma,
        "box_head": mc.box_head,
        "epochs": epochs,
        "batch_size": tc.batch_size,
        "lr": tc.finetune_lr if init else tc.lr,
        "weight_decay": tc.weight_decay,
        "schedule": tc.schedule,
        "warmup_steps": tc.warmup_steps,
        "freeze": tc.freeze,
        "loss_scale": tc.loss_scale,
        "fg_weight": tc.fg_weight,
        "ohkm_topk": tc.ohkm_topk,
        "init": str(init) if init else "",
        "l2sp": tc.l2sp if init else 0.0,
        "ema": tc.ema,
        "augment": asdict(tc.augment),
    }
