"""Strata that follow from the keypoints themselves, for labels that carry none (SLEAP, DeepLabCut, COCO without
``attributes``): the one definition of each derivation, pure functions of one label's keypoints.

* ``torso_angle`` (posture): the angle of the torso — mid-hip (or the one hip labeled) to the neck, else to the
  mid-shoulder (or the one shoulder labeled) — against image-up, in degrees (0 = upright, 180 = upside down).
  Binned by ``thresholds`` (default 30, 60, 120: upright ≤ 30°, leaning ≤ 60°, horizontal ≤ 120°, else
  inverted); the last value (``unknown``) where no hip or no neck/shoulder is labeled. This is exactly how
  LSPET's own ``attributes.posture`` was derived.
* ``hidden_joints`` (occlusion): the number of joints not visible (v = 1) or not labeled (v = 0), binned by
  ``thresholds`` (default 1, 4: none 0, partial 1–3, heavy ≥ 4): a count ≥ ``thresholds[i]`` takes value i + 1.

The pool's strata are predicted with the same functions on the model's keypoints (:mod:`iterate.selection.strata`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RULES = ("torso_angle", "hidden_joints")
DEFAULT_VALUES = {
    "torso_angle": ("upright", "leaning", "horizontal", "inverted", "unknown"),
    "hidden_joints": ("none", "partial", "heavy"),
}
DEFAULT_THRESHOLDS = {"torso_angle": (30.0, 60.0, 120.0), "hidden_joints": (1.0, 4.0)}
NECK_NAMES = ("neck", "upper_neck", "thorax")


@dataclass(frozen=True)
class Derivation:
    """A stratum derived from the keypoints: the rule, its value names in bin order, the bin edges."""

    rule: str  # torso_angle | hidden_joints
    values: tuple[str, ...]
    thresholds: tuple[float, ...]


def values_needed(rule: str, n_thresholds: int) -> int:
    """How many value names a rule with ``n_thresholds`` bin edges takes (torso_angle: the bins + unknown)."""
    return n_thresholds + 2 if rule == "torso_angle" else n_thresholds + 1


def torso_joints(names: Sequence[str]) -> tuple[list[int], list[int], list[int]]:
    """(hips, necks, shoulders): the joint indices the torso angle reads, found by name."""
    hips = [i for i, n in enumerate(names) if "hip" in n.lower()]
    necks = [i for i, n in enumerate(names) if n.lower() in NECK_NAMES]
    shoulders = [i for i, n in enumerate(names) if "shoulder" in n.lower()]
    return hips, necks, shoulders


def has_torso(names: Sequence[str]) -> bool:
    """True when the joint set can give a torso angle at all (a hip, and a neck or a shoulder)."""
    hips, necks, shoulders = torso_joints(names)
    return bool(hips) and bool(necks or shoulders)


def torso_angle(xy: np.ndarray, ok: np.ndarray, names: Sequence[str]) -> float | None:
    """Degrees between the torso (mid-hip → neck, else mid-shoulder) and image-up; None without a torso.
    ``xy`` (K, 2) image pixels, ``ok`` (K,) which joints count (labeled, or found by the model)."""
    hips, necks, shoulders = torso_joints(names)
    hips = [i for i in hips if ok[i]]
    top = [i for i in necks if ok[i]] or [i for i in shoulders if ok[i]]
    if not hips or not top:
        return None
    v = np.asarray(xy, np.float64)[top].mean(0) - np.asarray(xy, np.float64)[hips].mean(0)
    length = float(np.hypot(*v))
    if not np.isfinite(v).all() or length < 1e-6:
        return None
    return math.degrees(math.acos(max(-1.0, min(1.0, -float(v[1]) / length))))  # image y points down


def bin_angle(angle: float | None, values: Sequence[str], thresholds: Sequence[float]) -> str:
    if angle is None:
        return values[-1]
    for v, t in zip(values, thresholds):
        if angle <= t:
            return v
    return values[len(thresholds)]


def bin_count(count: int, values: Sequence[str], thresholds: Sequence[float]) -> str:
    return values[sum(1 for t in thresholds if count >= t)]


def derive(d: Derivation, keypoints, names: Sequence[str]) -> str:
    """One label's value of a derived stratum; ``keypoints`` (K, 3) x, y, visibility (0 not labeled, 1 occluded,
    2 visible)."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 3)
    if d.rule == "torso_angle":
        return bin_angle(torso_angle(kp[:, :2], kp[:, 2] > 0, names), d.values, d.thresholds)
    return bin_count(int((kp[:, 2] < 2).sum()), d.values, d.thresholds)


def fill_derived(
    keypoints, attributes: Mapping | None, names: Sequence[str], derivations: Mapping[str, Derivation]
) -> dict:
    """The label's attributes with every derived stratum it does not carry filled from its keypoints (a value
    the label carries — an annotator's choice, a COCO file's ``attributes`` — is kept)."""
    out = dict(attributes or {})
    for key, d in derivations.items():
        if out.get(key) in (None, ""):
            out[key] = derive(d, keypoints, names)
    return out
