"""Ground truth arrays from samples and the in-memory predictor a training run's checkpoints will record.

The figures themselves are computed by ``reports.metrics`` (one definition per metric); the loop
(``iterate.loop.scoring``) puts the two together.
"""

from __future__ import annotations

import numpy as np

from model.codec import DarkCodec
from model.data import Sample
from model.hrnet import PoseHRNet
from model.infer import InferConfig, Predictor


def gt_arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    kp = np.stack([s.keypoints for s in samples]).astype(np.float64)
    return kp[..., :2], kp[..., 2]


def head_boxes(samples: list[Sample]) -> np.ndarray:
    """(N, 4) head boxes of the samples (NaN where a frame has none)."""
    return np.array([s.head_box if s.head_box is not None else (np.nan,) * 4 for s in samples], dtype=np.float64)


def predictor(infer: InferConfig, model: PoseHRNet, codec: DarkCodec, *, batch_size: int = 32) -> Predictor:
    """The inference path a checkpoint with these settings records, for an in-memory ``model``."""
    return Predictor.from_settings(model, codec, infer, batch_size=batch_size)
