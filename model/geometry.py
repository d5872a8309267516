"""The one geometry path: a 2×3 affine matrix per sample maps image → input crop; keypoints go through the
same matrix (and its inverse on the way back).

Convention everywhere: integer coordinates are pixel centres (OpenCV's ``warpAffine``). A change of
resolution by ``s`` is therefore ``x' = s·(x + 0.5) − 0.5``, never ``x' = s·x`` (that shifts points by
half a pixel, which is what a plain resize does).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def _h(m: np.ndarray) -> np.ndarray:
    """2×3 → 3×3."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def compose(*ms: np.ndarray) -> np.ndarray:
    """compose(A, B) applies B first, then A (matrix product order)."""
    out = np.eye(3)
    for m in ms:
        out = out @ _h(m)
    return out[:2]


def invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def crop_matrix(center: tuple[float, float], size: float, out: int, rotation_deg: float = 0.0) -> np.ndarray:
    """Map a square of side ``size`` around ``center`` (rotated by ``rotation_deg``, counter-clockwise in
    the output) onto an ``out``×``out`` crop: the square's edges land on the crop's pixel edges."""
    s = out / size
    a = math.radians(rotation_deg)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    cx, cy = center
    oc = out / 2.0 - 0.5
    # rotate about the box centre: y grows downwards, so a counter-clockwise turn on screen is (cos, sin; -sin, cos)
    return np.array([[cos, sin, oc - cos * cx - sin * cy], [-sin, cos, oc + sin * cx - cos * cy]], dtype=np.float64)


def scale_matrix(s: float) -> np.ndarray:
    """Change of resolution by ``s`` under the pixel-centre convention."""
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5]], dtype=np.float64)


def hflip_matrix(width: int) -> np.ndarray:
    """Horizontal flip of an image ``width`` pixels wide: x → width − 1 − x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]], dtype=np.float64)


def rotate_about_matrix(deg: float, size: int) -> np.ndarray:
    """Rotation by ``deg`` (counter-clockwise on screen) about the centre of a ``size``×``size`` crop."""
    c = size / 2.0 - 0.5
    return crop_matrix((c, c), size, size, deg)


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2×3 matrix to points of shape (..., 2)."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp(img: np.ndarray, m: np.ndarray, out: int, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    return cv2.warpAffine(img, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=border)


def image_box(width: int, height: int) -> tuple[tuple[float, float], float]:
    """The whole frame as a square box (centre, side): the default top-down box when no detector runs."""
    return ((width - 1) / 2.0, (height - 1) / 2.0), float(max(width, height))


def keypoint_box(kps: np.ndarray, vis: np.ndarray, margin: float = 1.25) -> tuple[tuple[float, float], float] | None:
    """Square box around the labeled joints, ``margin`` × the larger side."""
    p = kps[vis > 0]
    if len(p) < 2:
        return None
    lo, hi = p.min(0), p.max(0)
    c = (lo + hi) / 2.0
    return (float(c[0]), float(c[1])), float(max(hi - lo) * margin + 1.0)


DET_MARGIN = 1.25  # a detector's person box (tight around the body) → the square the pose pass crops


def detection_square(box: tuple[float, float, float, float]) -> tuple[tuple[float, float], float]:
    """A detector's person box (x, y, w, h, image px) → the square the pose pass crops: (centre, side)."""
    x, y, w, h = box
    return (x + w / 2, y + h / 2), max(w, h) * DET_MARGIN
