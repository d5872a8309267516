"""Score predictions on labeled samples: the model's ground-truth arrays and the report's metric definitions
(:func:`reports.metrics.keypoint_scores`), used while training, by retrain's record, simulate and the benches."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from iterate.core.schema import KeypointSpec
from model.codec import DarkCodec
from model.data import Sample
from model.evaluate import gt_arrays, head_boxes, predictor
from model.hrnet import PoseHRNet
from model.infer import InferConfig
from reports.metrics import keypoint_scores, normalisers


def score(spec: KeypointSpec, pred: np.ndarray, samples: list[Sample]) -> dict:
    """PCKh@0.1, PCKh@0.5 and MeanSmS@0.1 in % of predictions (N, K, 2) against the samples' labels, plus the
    frames scored and those on the fallback normaliser."""
    gt, vis = gt_arrays(samples)
    norms = normalisers(gt, vis, spec.normalizer, list(spec.names), head_boxes(samples))
    return keypoint_scores(pred, gt, vis, norms, spec.height_indices())


def evaluator(
    spec: KeypointSpec, infer: InferConfig, codec: DarkCodec, batch_size: int = 32
) -> Callable[[PoseHRNet, list[Sample]], dict]:
    """The val callback training calls: the checkpoint's own inference path, scored like the report."""

    def run(model: PoseHRNet, samples: list[Sample]) -> dict:
        pr = predictor(infer, model, codec, batch_size=batch_size)
        return score(spec, pr.predict(samples).keypoints, samples)

    return run
