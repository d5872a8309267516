"""Score a model on labeled samples with the manifest's PCKh normaliser (used while training and by simulate).

The figures come from :func:`reports.metrics.keypoint_scores`, the same definitions the report prints; the
predictions from :class:`model.infer.Predictor` with the settings the checkpoint will record.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from iterate.manifest import Manifest
from reports.metrics import keypoint_scores, normalisers

from .codec import DarkCodec
from .data import Sample
from .hrnet import PoseHRNet
from .infer import Predictor


def gt_arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    kp = np.stack([s.keypoints for s in samples]).astype(np.float64)
    return kp[..., :2], kp[..., 2]


def head_boxes(samples: list[Sample]) -> np.ndarray:
    """(N, 4) head boxes of the samples (NaN where a frame has none)."""
    return np.array([s.head_box if s.head_box is not None else (np.nan,) * 4 for s in samples], dtype=np.float64)


def score(m: Manifest, pred: np.ndarray, samples: list[Sample]) -> dict:
    """PCKh@0.1, PCKh@0.5 and MeanSmS@0.1 in % of predictions (N, K, 2) against the samples' labels, plus the
    frames scored and those on the fallback normaliser."""
    gt, vis = gt_arrays(samples)
    norms = normalisers(gt, vis, m.keypoints.normalizer, m.keypoints.names, head_boxes(samples))
    hj = [m.keypoints.index(j) for j in m.keypoints.height_joints]
    return keypoint_scores(pred, gt, vis, norms, hj)


def predictor(m: Manifest, model: PoseHRNet, codec: DarkCodec, *, batch_size: int = 32) -> Predictor:
    """The inference path a checkpoint trained with this manifest records, for an in-memory ``model``."""
    from .train import infer_settings

    return Predictor.from_settings(model, codec, infer_settings(m), batch_size=batch_size)


def evaluator(m: Manifest, codec: DarkCodec, batch_size: int = 32) -> Callable[[PoseHRNet, list[Sample]], dict]:
    def run(model: PoseHRNet, samples: list[Sample]) -> dict:
        pr = predictor(m, model, codec, batch_size=batch_size)
        return score(m, pr.predict(samples).keypoints, samples)

    return run
