"""Cold start (no model yet): cheap image features — a downscaled grey image and a HOG descriptor (OpenCV)
→ PCA — for k-center diversity, like SLEAP's image-feature suggestions."""

from __future__ import annotations

import cv2
import numpy as np

_HOG = None


def _hog():
    global _HOG
    if _HOG is None:
        _HOG = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9)
    return _HOG


def image_features(path: str) -> np.ndarray | None:
    from iterate.core.images import read_image

    g, _ = read_image(path, cv2.IMREAD_GRAYSCALE)
    if g is None:
        return None
    small = cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small = (small - small.mean()) / (small.std() + 1e-6)
    h = _hog().compute(cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA)).ravel()
    return np.concatenate([small, h / (np.linalg.norm(h) + 1e-6) * np.sqrt(len(small))]).astype(np.float32)


def pca(x: np.ndarray, dims: int = 32, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = max(1, min(dims, x.shape[0] - 1, x.shape[1]))
    if x.shape[0] < 3:
        return x
    return PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)
