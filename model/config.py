"""Plain frozen settings the model package takes: built at the edge (``iterate.loop.settings``) from the
manifest, never the manifest itself.

The fields the manifest sets declare no default here: the manifest's sections (``model:``, ``train:``,
``train.augment:`` in iterate/core/manifest.py) are the one place each default is written, and
:mod:`iterate.loop.settings` builds these from them (``model_config()``, ``train_config()``,
``augment_config()``: with no section, the manifest's defaults). tests/test_settings.py holds them apart."""

from __future__ import annotations

from dataclasses import dataclass

from iterate.core.schema import KeypointSpec
from model.infer import InferConfig


@dataclass(frozen=True)
class ModelConfig:
    backbone: str
    input_size: int
    heatmap_size: int
    sigma: float
    box_head: bool  # a person-box head trained beside the heatmaps; the refine pass crops on its box


@dataclass(frozen=True)
class AugmentConfig:
    n: int  # RandAugment: ops per sample
    m: float  # RandAugment: magnitude 0..1
    max_pixel: int
    max_noise: int
    flip: bool
    rotate_deg: float
    scale: float
    head_up: bool
    person_box: float  # share of samples cropped to the labeled person's box
    box_jitter: float  # person crops: centre shift, normal σ as a share of the box side (0 = centred)
    zoom_out: float  # share of samples pasted shrunk into a larger canvas over another (blurred) frame
    zoom_min: float  # zoom_out: the smallest share of the crop's side the frame shrinks to


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float  # from scratch
    finetune_lr: float  # warm start from a checkpoint
    weight_decay: float
    warmup_steps: int
    schedule: str  # cosine | step
    freeze: str  # none | all_but_stage4 | comma-separated trunk module prefixes
    seed: int
    loss_scale: float
    fg_weight: float  # heatmap loss: pixels near a joint's peak weigh 1 + this (0 = plain MSE)
    ohkm_topk: int  # heatmap loss: only each sample's k hardest joints count (0 = all)
    best_metric: str
    eval_every_steps: int
    workers: int
    l2sp: float  # fine-tuning: decoupled pull of the trunk toward the starting weights (0 = off)
    ema: float  # decay of the weights' moving average that evaluation and checkpoints use (0 = off)
    replay_fraction: float  # share of each epoch drawn from the replay samples, when train() is given some
    augment: AugmentConfig


@dataclass(frozen=True)
class TrainSetup:
    """Everything one training run needs to know: the keypoint schema, the network, the recipe and the inference
    path its checkpoints record."""

    keypoints: KeypointSpec
    model: ModelConfig
    train: TrainConfig
    infer: InferConfig | None = None

    def infer_config(self) -> InferConfig:
        return self.infer if self.infer is not None else InferConfig(tuple(self.keypoints.flip_index()))
