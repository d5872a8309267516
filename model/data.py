"""Training / evaluation samples: image → (augmented) input crop → DARK targets, through one affine matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from iterate.core.images import read_image
from model.codec import DarkCodec
from model.geometry import apply, compose, crop_matrix, image_box, keypoint_box, rotate_about_matrix

from . import augment as aug

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
BOX_MARGIN = 1.35  # the person box around the joints: what the refine pass crops on and the box head learns


@dataclass(frozen=True)
class Sample:
    path: str
    keypoints: np.ndarray | None = None  # (K, 3) x, y, v in image pixels
    frame_id: str = ""
    attributes: dict = field(default_factory=dict, compare=False)
    head_box: tuple[float, float, float, float] | None = None  # x, y, w, h (MPII-style head box), when labeled
    person_box: tuple[float, float, float, float] | None = None  # x, y, w, h: a detector's person box (inference)


def to_tensor(crop_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 crop → normalised RGB float tensor (3, H, W)."""
    rgb = crop_bgr[:, :, ::-1].astype(np.float32)
    return torch.from_numpy(((rgb - MEAN) / STD).transpose(2, 0, 1).copy())


def up_angle(kps: np.ndarray, vis: np.ndarray, up: tuple[list[int], list[int]] | None) -> float | None:
    """Rotation (multiple of 90°, counter-clockwise) that puts the head above the body, or None if unknown."""
    if not up:
        return None
    lo, hi = up
    a = [i for i in lo if vis[i] > 0]
    b = [i for i in hi if vis[i] > 0]
    if not a or not b:
        return None
    v = kps[b].mean(0) - kps[a].mean(0)
    if not np.isfinite(v).all() or np.hypot(*v) < 1e-6:
        return None
    phi = math.degrees(math.atan2(-v[1], v[0]))  # screen y points down
    return float((round((90.0 - phi) / 90.0) % 4) * 90)


class PoseDataset(Dataset):
    """``train=True`` samples augmentation per item; otherwise the plain whole-frame crop.

    Returns a dict: ``image`` (3, I, I), ``heatmaps`` (K, H, W), ``weights`` (K,), ``matrix`` (2, 3) image → crop,
    ``index``; with ``box_targets`` also ``box`` (cx, cy, side of the labeled joints' box at margin
    :data:`BOX_MARGIN`, crop pixels) and ``box_valid`` (0 where fewer than two joints are labeled); a corrupt image
    gives ``{"bad": path}``, which :func:`collate` drops and reports.
    """

    def __init__(
        self,
        samples: list[Sample],
        codec: DarkCodec,
        *,
        flip_index: list[int],
        joint_weights: list[float],
        train: bool = False,
        augment=None,
        up_joints: tuple[list[int], list[int]] | None = None,
        seed: int = 0,
        rotations: dict[int, float] | None = None,
        boxes: dict[int, tuple[tuple[float, float], float]] | None = None,
        person_box_p: float = 0.0,
        box_jitter: float = 0.0,
        zoom_out: tuple[float, float] = (0.0, 0.1),
        targets: bool | None = None,
        box_targets: bool = False,
    ):
        self.samples = samples
        self.targets = train if targets is None else targets  # heatmap targets: training (or a loss) needs them
        self.codec = codec
        self.flip_index = np.asarray(flip_index)
        self.joint_weights = np.asarray(joint_weights, dtype=np.float32)
        self.train = train
        self.augment = augment
        self.up_joints = up_joints
        self.seed = seed
        self.epoch = 0
        self.rotations = rotations or {}
        self.boxes = boxes or {}
        self.person_box_p = person_box_p
        self.box_jitter = box_jitter  # σ of a person crop's centre shift, as a share of its side
        self.box_targets = box_targets  # the labeled person's box in crop pixels, for a box head's loss
        self.zoom_out = zoom_out  # (share of samples, smallest side share): frames pasted small over another frame

    def __len__(self) -> int:
        return len(self.samples)

    def _over_background(self, crop, img, m, rng, i: int, kps, vis) -> np.ndarray:
        """The shrunk person over another frame (blurred): a feathered ellipse around the labeled joints' box keeps
        the person and a little of its scene, so no sharp pasted rectangle gives the person away."""
        size = crop.shape[0]
        bg = _background(self.samples, rng, i, size)
        if bg is None:
            return crop
        inside = cv2.warpAffine(np.ones(img.shape[:2], np.float32), m, (size, size), flags=cv2.INTER_LINEAR)
        box = keypoint_box(apply(m, kps), vis, margin=float(rng.uniform(1.3, 1.8)))
        if box is not None:
            (cx, cy), side = box
            ell = np.zeros((size, size), np.float32)
            axes = (max(1, int(side * 0.5)), max(1, int(side * 0.5)))
            cv2.ellipse(ell, (int(round(cx)), int(round(cy))), axes, 0, 0, 360, 1.0, -1)
            ell = cv2.GaussianBlur(ell, (0, 0), sigmaX=max(1.0, side * 0.08))
            inside = inside * ell
        a = inside[..., None]
        return (crop * a + bg * (1 - a)).astype(np.uint8)

    def _crop_box(self, i: int, img: np.ndarray, kps, vis, rng) -> tuple[tuple[float, float], float]:
        """The crop's centre and side: the sample's box, else the whole frame; in training, at ``person_box_p``,
        the labeled joints' box (jittered), as the refinement pass of inference sees people."""
        center, side = self.boxes.get(i) or image_box(img.shape[1], img.shape[0])
        if self.train and self.person_box_p > 0 and rng.random() < self.person_box_p:
            box = keypoint_box(kps, vis, margin=float(rng.uniform(1.15, 1.5)))
            if box is not None:
                center, side = box
                if self.box_jitter > 0:  # the refine pass's boxes are off-centre: train on such crops too
                    dx, dy = rng.normal(0, self.box_jitter, size=2) * side
                    center = (center[0] + float(dx), center[1] + float(dy))
        return center, side

    def _zoom_out(self, m: np.ndarray, rng, size: int) -> tuple[np.ndarray, bool]:
        """In training, at ``zoom_out[0]``: the frame shrinks to f of the crop's side (log-uniform) at a random
        place, a person far from the camera → (the matrix, whether it shrank)."""
        if not (self.train and self.zoom_out[0] > 0 and rng.random() < self.zoom_out[0]):
            return m, False
        f = float(np.exp(rng.uniform(np.log(self.zoom_out[1]), 0.0)))
        t = rng.uniform(0, size * (1 - f), size=2)
        return compose(np.array([[f, 0, t[0]], [0, f, t[1]]]), m), True

    def _augment(self, m: np.ndarray, kps, vis, rng, size: int):
        """The training augmentation: head-up rotation, then the random plan's crop → (the matrix, the plan)."""
        a = self.augment
        if a.head_up:
            ang = up_angle(kps, vis, self.up_joints)
            if ang:
                m = compose(rotate_about_matrix(ang, size), m)
        plan = aug.plan(
            rng,
            size,
            n=a.n,
            m=a.m,
            max_pixel=a.max_pixel,
            max_noise=a.max_noise,
            flip=a.flip,
            rotate_deg=a.rotate_deg,
            scale=a.scale,
        )
        return compose(plan.crop_matrix, m), plan

    def _add_targets(self, out: dict, pts: np.ndarray, vis: np.ndarray) -> None:
        """Heatmaps and weights (only where a loss is computed: inference ships crops and matrices alone); the
        labeled person's box for a box head."""
        if self.targets:
            hm, w = self.codec.encode(pts, vis)
            out["heatmaps"] = torch.from_numpy(hm)
            out["weights"] = torch.from_numpy(w * self.joint_weights)
        if self.box_targets:
            box = keypoint_box(pts, vis, margin=BOX_MARGIN)
            out["box"] = torch.tensor([box[0][0], box[0][1], box[1]] if box else [0.0, 0.0, 1.0], dtype=torch.float32)
            out["box_valid"] = torch.tensor(1.0 if box else 0.0)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        img, _ = read_image(s.path)  # any file name; refuses huge or degenerate frames instead of crashing
        if img is None:
            return {"bad": s.path}
        size = self.codec.input_size
        k = len(self.joint_weights)
        kps = s.keypoints[:, :2].astype(np.float64) if s.keypoints is not None else np.zeros((k, 2))
        vis = s.keypoints[:, 2].copy() if s.keypoints is not None else np.zeros(k)
        rng = np.random.default_rng((self.seed, self.epoch, i))
        m = crop_matrix(*self._crop_box(i, img, kps, vis, rng), size)
        m, zoomed = self._zoom_out(m, rng, size)
        plan = None
        if self.rotations.get(i):
            m = compose(rotate_about_matrix(self.rotations[i], size), m)
        if self.train and self.augment is not None:
            m, plan = self._augment(m, kps, vis, rng, size)
        crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if zoomed:
            crop = self._over_background(crop, img, m, rng, i, kps, vis)
        pts = apply(m, kps)
        if plan is not None:
            if plan.flip:
                pts, vis = pts[self.flip_index], vis[self.flip_index]
            crop = aug.apply_image_ops(rng, plan, crop)
        out = {"image": to_tensor(crop), "matrix": torch.from_numpy(m.astype(np.float64)), "index": i}
        self._add_targets(out, pts, vis)
        return out


def _background(samples: list[Sample], rng: np.random.Generator, skip: int, size: int) -> np.ndarray | None:
    """Another frame of the set, whole, blurred: the scene a shrunk person is pasted into."""
    if len(samples) < 2:
        return None
    j = int(rng.integers(len(samples) - 1))
    j += j >= skip
    bg, _ = read_image(samples[j].path)
    if bg is None:
        return None
    c, side = image_box(bg.shape[1], bg.shape[0])
    bg = cv2.warpAffine(
        bg, crop_matrix(c, side, size), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return cv2.GaussianBlur(bg, (0, 0), sigmaX=float(rng.uniform(1.0, 3.0)))


def collate(items: list[dict]) -> dict:
    good = [x for x in items if "bad" not in x]
    out: dict = {"bad": [x["bad"] for x in items if "bad" in x]}
    if good:
        for key in ("image", "heatmaps", "weights", "matrix", "box", "box_valid"):
            if key in good[0]:
                out[key] = torch.stack([x[key] for x in good])
        out["index"] = torch.tensor([x["index"] for x in good])
    return out
