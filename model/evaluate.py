"""Score a model on labeled samples with the manifest's PCKh normaliser (used after each training epoch)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from iterate.manifest import Manifest
from reports.metrics import normaliser_lengths, pckh

from .codec import DarkCodec
from .data import Sample
from .hrnet import PoseHRNet
from .infer import Predictor


def gt_arrays(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    kp = np.stack([s.keypoints for s in samples]).astype(np.float64)
    return kp[..., :2], kp[..., 2]


def score(m: Manifest, pred: np.ndarray, samples: list[Sample]) -> dict:
    """PCKh@0.1, PCKh@0.5 and MeanSmS@0.1 in % of predictions (N, K, 2) against the samples' labels."""
    gt, vis = gt_arrays(samples)
    norm = normaliser_lengths(gt, vis, m.keypoints.normalizer, m.keypoints.names)
    ok = ~np.isnan(pred).any(axis=(1, 2))
    norm = np.where(ok, norm, np.nan)
    p01, p05 = pckh(pred, gt, vis, norm, 0.1), pckh(pred, gt, vis, norm, 0.5)
    hj = [m.keypoints.index(j) for j in m.keypoints.height_joints]
    sms = float(np.nanmean(p01.per_joint[hj])) if hj else float("nan")
    return {"pckh01": round(p01.mean, 3), "pckh05": round(p05.mean, 3), "mean_sms01": round(sms, 3)}


def predictor(m: Manifest, model: PoseHRNet, codec: DarkCodec, *, flip: bool = True, batch_size: int = 32) -> Predictor:
    """The manifest's inference path (flip TTA, box refinement, head-up) for ``model``."""
    from .train import up_joint_indices

    return Predictor(model, codec, m.keypoints.flip_index(), flip=flip, refine=m.model.refine,
                     head_up=up_joint_indices(m) if m.model.head_up else None, batch_size=batch_size)


def evaluator(m: Manifest, codec: DarkCodec, flip: bool = False, batch_size: int = 32) -> Callable[[PoseHRNet, list[Sample]], dict]:
    def run(model: PoseHRNet, samples: list[Sample]) -> dict:
        pr = predictor(m, model, codec, flip=flip, batch_size=batch_size)
        return score(m, pr.predict(samples).keypoints, samples)

    return run
