"""Augmentation by type, as the seed did it: geometric ops change the sample's affine matrix (so keypoints
follow exactly); pixel and noise ops change the crop's pixels only.

A RandAugment-style sampler draws ``n`` ops at magnitude ``m`` with a cap per type per sample (by default
any number of geometric ops, at most one pixel op and one noise op), so no sample gets an unrealistic pile
of pixel/noise changes. Standard geometric jitter (flip, scale, rotation) is applied on top, as in HRNet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from model.geometry import compose, hflip_matrix, rotate_about_matrix

GEOMETRIC, PIXEL, NOISE = "geometric", "pixel", "noise"


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    fn: Callable  # geometric: (rng, m, size) -> 2x3 matrix in crop space; others: (rng, m, img) -> img


def _rotate(rng, m, size):
    return rotate_about_matrix(float(rng.uniform(-1, 1)) * 45.0 * m, size)


def _scale(rng, m, size):
    s = 1.0 + float(rng.uniform(-1, 1)) * 0.35 * m
    c = size / 2.0 - 0.5
    return np.array([[s, 0, c - s * c], [0, s, c - s * c]])


def _translate(rng, m, size):
    t = rng.uniform(-1, 1, size=2) * 0.15 * m * size
    return np.array([[1.0, 0, t[0]], [0, 1.0, t[1]]])


def _brightness(rng, m, img):
    return np.clip(img.astype(np.float32) + float(rng.uniform(-1, 1)) * 64 * m, 0, 255).astype(np.uint8)


def _contrast(rng, m, img):
    f = 1.0 + float(rng.uniform(-1, 1)) * 0.6 * m
    mean = img.mean()
    return np.clip((img.astype(np.float32) - mean) * f + mean, 0, 255).astype(np.uint8)


def _saturation(rng, m, img):
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.float32)
    f = 1.0 + float(rng.uniform(-1, 1)) * 0.8 * m
    return np.clip(grey + (img.astype(np.float32) - grey) * f, 0, 255).astype(np.uint8)


def _hue(rng, m, img):
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(rng.uniform(-1, 1) * 18 * m)) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _gamma(rng, m, img):
    g = math.exp(float(rng.uniform(-1, 1)) * 0.5 * m)
    lut = np.clip(((np.arange(256) / 255.0) ** g) * 255.0, 0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def _blur(rng, m, img):
    sigma = 0.3 + float(rng.uniform(0, 1)) * 1.5 * m
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _gauss_noise(rng, m, img):
    noise = rng.normal(0, 4 + 16 * m, size=img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _jpeg(rng, m, img):
    q = int(95 - float(rng.uniform(0, 1)) * 75 * m)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


OPS: tuple[Op, ...] = (
    Op("rotate", GEOMETRIC, _rotate),
    Op("scale", GEOMETRIC, _scale),
    Op("translate", GEOMETRIC, _translate),
    Op("brightness", PIXEL, _brightness),
    Op("contrast", PIXEL, _contrast),
    Op("saturation", PIXEL, _saturation),
    Op("hue", PIXEL, _hue),
    Op("gamma", PIXEL, _gamma),
    Op("blur", PIXEL, _blur),
    Op("gaussian_noise", NOISE, _gauss_noise),
    Op("jpeg", NOISE, _jpeg),
)
OPS_BY_NAME = {o.name: o for o in OPS}


def sample_ops(rng: np.random.Generator, n: int, caps: dict[str, int]) -> list[Op]:
    """Draw up to ``n`` distinct ops in random order, skipping any whose type has reached its cap."""
    chosen: list[Op] = []
    used: dict[str, int] = {}
    for i in rng.permutation(len(OPS)):
        if len(chosen) >= n:
            break
        op = OPS[i]
        cap = caps.get(op.kind)
        if cap is not None and used.get(op.kind, 0) >= cap:
            continue
        chosen.append(op)
        used[op.kind] = used.get(op.kind, 0) + 1
    return chosen


@dataclass
class AugmentPlan:
    """What one sample gets: a matrix in crop space (applied after the crop), a flip flag, pixel/noise ops."""

    crop_matrix: np.ndarray
    flip: bool
    image_ops: list[Op]
    m: float


def plan(
    rng: np.random.Generator,
    size: int,
    *,
    n: int,
    m: float,
    max_pixel: int,
    max_noise: int,
    flip: bool,
    rotate_deg: float,
    scale: float,
) -> AugmentPlan:
    """Sample one sample's augmentation; all geometry ends up in one 2×3 matrix (crop → augmented crop)."""
    ops = sample_ops(rng, n, {PIXEL: max_pixel, NOISE: max_noise})
    mats = []
    # standard HRNet jitter: scale always, rotation with p = 0.6, flip with p = 0.5
    s = float(np.clip(1.0 + rng.normal(0, scale / 2), 1 - scale, 1 + scale)) if scale > 0 else 1.0
    c = size / 2.0 - 0.5
    mats.append(np.array([[s, 0, c - s * c], [0, s, c - s * c]]))
    if rotate_deg > 0 and rng.random() < 0.6:
        mats.append(rotate_about_matrix(float(np.clip(rng.normal(0, rotate_deg / 2), -rotate_deg, rotate_deg)), size))
    for op in ops:
        if op.kind == GEOMETRIC:
            mats.append(op.fn(rng, m, size))
    do_flip = bool(flip and rng.random() < 0.5)
    if do_flip:
        mats.append(hflip_matrix(size))
    mats.reverse()  # compose applies the last one first
    return AugmentPlan(compose(*mats), do_flip, [op for op in ops if op.kind != GEOMETRIC], m)


def apply_image_ops(rng: np.random.Generator, p: AugmentPlan, img: np.ndarray) -> np.ndarray:
    for op in p.image_ops:
        img = op.fn(rng, p.m, img)
    return img
