"""Training: weighted heatmap MSE, AdamW, warm-up + cosine/step schedule, freeze policy, atomic best/last
checkpoints with optimizer state, resume, warm start.

The CPU default recipe (measured in ``bench/learn_cpu.py``): zero-initialised head, loss × 1000, AdamW
3e-3 with 100 warm-up steps then cosine, batch 16. A plain MSE recipe with a random head never leaves the
all-zero-heatmap plateau in 10 CPU minutes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from iterate.core.errors import IterateError

from model.checkpoints import FORMAT, load_file, load_into, save_atomic
from model.codec import DarkCodec
from model.data import PoseDataset, Sample, collate
from model.hrnet import PoseHRNet, build_model
from model.config import TrainSetup


class TrainingDiverged(IterateError):
    """The loss stopped being a finite number: nothing this run wrote is kept."""


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Weighted MSE: joints with weight 0 (not labeled, out of the crop) contribute nothing."""
    w = weights[:, :, None, None].to(pred.dtype)
    return ((pred - target) ** 2 * w).mean() * scale


def apply_freeze(model: PoseHRNet, policy: str) -> list[str]:
    """``none`` | ``all_but_stage4`` | comma-separated trunk module prefixes to freeze. Returns frozen names."""
    policy = (policy or "none").strip()
    if policy == "none":
        prefixes: list[str] = []
    elif policy == "all_but_stage4":
        prefixes = [n for n in model.trunk_modules() if not n.startswith("stage4")]
    else:
        prefixes = [p.strip() for p in policy.split(",") if p.strip()]
        names = [n for n, _ in model.backbone.named_modules()]
        for p in prefixes:
            if not any(n == p or n.startswith(p + ".") for n in names):
                raise IterateError(f"train.freeze: no trunk module named '{p}' (top level: {', '.join(model.trunk_modules())})")
    frozen = []
    for name, p in model.backbone.named_parameters():
        if any(name == q or name.startswith(q + ".") for q in prefixes):
            p.requires_grad_(False)
            frozen.append(name)
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
        "format": FORMAT, "model": model.state_dict(), "joints": list(setup.keypoints.names),
        "backbone": model.backbone_name, "input_size": model.input_size, "heatmap_size": model.heatmap_size,
        "sigma": float(setup.model.sigma), "infer": setup.infer_config().to_dict(), **extra,
    }


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
) -> TrainResult:
    """Train on ``train_samples``; every ``train.eval_every_steps`` score ``val_samples`` with ``evaluate``
    (→ ``{"pckh01": …}``) and keep the best checkpoint. ``time_limit_s`` ends training at that wall time and
    ``max_steps`` after that many optimiser steps, the schedule following whichever is given."""
    if not train_samples:
        raise IterateError("nothing to train on — run `iterate sync-labels` or `iterate ingest` with labels")
    t0 = time.time()
    cfg, tcfg, spec = setup.model, setup.train, setup.keypoints
    epochs = tcfg.epochs
    hm_size = cfg.heatmap_size
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    if dev.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(tcfg.seed)
    np.random.seed(tcfg.seed)

    model = build_model(cfg.backbone, spec.num_joints, cfg.input_size, hm_size)
    load_report = ""
    if init and not resume:
        rep = load_into(model, load_file(init), list(spec.names), dict(spec.init_from), allow_partial, init)
        load_report = f"{rep.layout}: {rep.describe()}"
        if rep.joints_from_nearest:
            load_report += "; from nearest: " + ", ".join(f"{k}←{v}" for k, v in rep.joints_from_nearest.items())
    apply_freeze(model, tcfg.freeze)
    model = model.to(dev).to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    base_lr = tcfg.finetune_lr if init else tcfg.lr  # a warm start fine-tunes gently
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=base_lr)
    codec = DarkCodec(cfg.input_size, hm_size, cfg.sigma)
    ds = PoseDataset(train_samples, codec, flip_index=spec.flip_index(), joint_weights=spec.joint_weights(),
                     train=True, augment=tcfg.augment, up_joints=spec.up_joints(), seed=tcfg.seed,
                     person_box_p=tcfg.augment.person_box)
    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=tcfg.seed, drop_last=True)
    bs = max(1, tcfg.batch_size // world)  # the global batch stays train.batch_size across ranks
    g = torch.Generator().manual_seed(tcfg.seed)
    loader = DataLoader(ds, batch_size=bs, shuffle=sampler is None, sampler=sampler, drop_last=len(ds) > bs,
                        num_workers=tcfg.workers, collate_fn=collate, generator=g,
                        persistent_workers=tcfg.workers > 0)
    net = model
    if distributed:
        # the trunk also computes the lower-resolution outputs the heatmap head does not use
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                  find_unused_parameters=True)
    steps_per_epoch = max(1, len(loader))
    total_steps = epochs * steps_per_epoch
    if max_steps:
        total_steps = int(max_steps)
        epochs = max(epochs, -(-total_steps // steps_per_epoch))
    warmup_frac = min(0.3, tcfg.warmup_steps / max(1, total_steps))

    start_epoch, step, best_score, history = 0, 0, -1.0, []
    best_key: list[float] = [-1e9, -1e9, -1e9]
    if resume:
        if not last_path.is_file():
            raise IterateError(f"{last_path}: nothing to resume (no last checkpoint in {out_dir})")
        ck = load_file(last_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, step = int(ck["epoch"]) + 1, int(ck["step"])
        best_score, history = float(ck.get("best_score", -1.0)), list(ck.get("history", []))
        best_key = list(ck.get("best_key", best_key))
        load_report = f"resumed from {last_path} after epoch {start_epoch}"

    bad: list[str] = []
    scoring = evaluate is not None and bool(val_samples)
    since_eval = 0  # steps since the last val score: a small fine-tune would otherwise spend most of its time on val
    elapsed_before = float(history[-1]["elapsed_s"]) if history else 0.0
    t_start = time.time() - elapsed_before
    stop = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        ds.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        _freeze_bn(model)
        losses = []
        for batch in loader:
            bad += [p for p in batch["bad"] if p not in bad]
            if "image" not in batch:
                continue
            frac = step / total_steps
            if time_limit_s:
                frac = max(frac, (time.time() - t_start) / time_limit_s)
            for grp in opt.param_groups:
                grp["lr"] = base_lr * lr_factor(min(frac, 1.0), warmup_frac, tcfg.schedule)
            x = batch["image"].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = batch["heatmaps"].to(dev, non_blocking=True)
            w = batch["weights"].to(dev, non_blocking=True)
            loss = heatmap_loss(net(x), y, w, tcfg.loss_scale)
            if not bool(torch.isfinite(loss.detach())):  # a poisoned label or a diverging lr: stop, keep nothing
                raise TrainingDiverged(f"training stopped at step {step + 1}: the loss is {float(loss.detach()):g}, not a finite "
                                       "number (check the labels for extreme coordinates, or lower the learning "
                                       "rate); no model was recorded")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            if on_step:
                on_step(step, total_steps, losses[-1])
            if (time_limit_s and _stop_all(time.time() - t_start >= time_limit_s, distributed)) or \
                    (max_steps and step >= max_steps):
                stop = True
                break
        rec = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)) if losses else float("nan"),
               "elapsed_s": round(time.time() - t_start, 2)}
        since_eval += len(losses)
        # val is scored every train.eval_every_steps steps, and always after the last epoch
        due = scoring and (since_eval >= tcfg.eval_every_steps or stop or epoch == epochs - 1)
        if due:
            since_eval = 0
            if rank == 0:
                model.eval()
                rec.update(evaluate(model, val_samples))
                model.train()
        # best by the val figure train.best_metric (PCKh@0.1 by default); ties go to the other PCKh, then the loss
        first = tcfg.best_metric
        second = "pckh05" if first != "pckh05" else "pckh01"
        key = [rec.get(first, -1.0), rec.get(second, -1.0), -rec["loss"]]
        history.append(rec)
        improved = key > best_key and (due or not scoring)
        if improved:
            best_key, best_score = key, rec.get("pckh01", -rec["loss"])
        if rank == 0:
            extra = {"epoch": epoch, "step": step, "best_score": best_score, "best_key": best_key, "history": history,
                     "optimizer": opt.state_dict(), "config": _config(setup, epochs, init, time_limit_s)}
            save_atomic(checkpoint_dict(model, setup, **extra), last_path)
            if improved:
                save_atomic(checkpoint_dict(model, setup, epoch=epoch, step=step, best_score=best_score,
                                            history=history, config=extra["config"]), best_path)
        if on_epoch:
            on_epoch(rec)
        if stop:
            break
    return TrainResult(best_path, last_path, epoch + 1, step, best_score, history, bad, load_report,
                       round(time.time() - t0, 1))


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
    return {"time_limit_s": time_limit_s,
        "backbone": mc.backbone, "input_size": mc.input_size, "heatmap_size": mc.heatmap_size,
        "sigma": mc.sigma, "epochs": epochs, "batch_size": tc.batch_size,
        "lr": tc.finetune_lr if init else tc.lr,
        "weight_decay": tc.weight_decay, "schedule": tc.schedule, "warmup_steps": tc.warmup_steps,
        "freeze": tc.freeze, "loss_scale": tc.loss_scale,
        "init": str(init) if init else "", "augment": asdict(tc.augment),
    }
