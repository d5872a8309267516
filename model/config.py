"""Plain frozen settings the model package takes: built at the edge (``iterate.loop.settings``) from the
manifest, never the manifest itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from iterate.core.metric_keys import PCKH01
from iterate.core.schema import KeypointSpec
from model.infer import InferConfig


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "hrnet_w18_small"
    input_size: int = 128
    heatmap_size: int = 32
    sigma: float = 2.0
    box_head: bool = False  # a person-box head trained beside the heatmaps; the refine pass crops on its box


@dataclass(frozen=True)
class AugmentConfig:
    n: int = 2  # RandAugment: ops per sample
    m: float = 0.5  # RandAugment: magnitude 0..1
    max_pixel: int = 1
    max_noise: int = 1
    flip: bool = True
    rotate_deg: float = 30.0
    scale: float = 0.25
    head_up: bool = False
    person_box: float = 0.5  # share of samples cropped to the labeled person's box
    box_jitter: float = 0.0  # person crops: centre shift, normal σ as a share of the box side (0 = centred)
    zoom_out: float = 0.0  # share of samples pasted shrunk into a larger canvas over another (blurred) frame
    zoom_min: float = 0.1  # zoom_out: the smallest share of the crop's side the frame shrinks to


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-3  # from scratch
    finetune_lr: float = 5e-4  # warm start from a checkpoint
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    schedule: str = "cosine"  # cosine | step
    freeze: str = "none"  # none | all_but_stage4 | comma-separated trunk module prefixes
    seed: int = 0
    loss_scale: float = 1000.0
    fg_weight: float = 9.0  # heatmap loss: pixels near a joint's peak weigh 1 + this (0 = plain MSE)
    ohkm_topk: int = 0  # heatmap loss: only each sample's k hardest joints count (0 = all)
    best_metric: str = PCKH01
    eval_every_steps: int = 100
    workers: int = 0
    l2sp: float = 0.0  # fine-tuning: decoupled pull of the trunk toward the starting weights (0 = off)
    ema: float = 0.0  # decay of the weights' moving average that evaluation and checkpoints use (0 = off)
    replay_fraction: float = 0.3  # share of each epoch drawn from the replay samples, when train() is given some
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class TrainSetup:
    """Everything one training run needs to know: the keypoint schema, the network, the recipe and the inference
    path its checkpoints record."""

    keypoints: KeypointSpec
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig | None = None

    def infer_config(self) -> InferConfig:
        return self.infer if self.infer is not None else InferConfig(tuple(self.keypoints.flip_index()))
