"""Predicted strata for unlabeled frames (report focus, selection quotas).

* ``posture``: the torso angle (mid-hip → neck, else mid-shoulder) against image-up, the rule LSPET's
  attribute uses: upright ≤ 30°, leaning ≤ 60°, horizontal ≤ 120°, else inverted; ``unknown`` without a torso.
* ``occlusion``: the number of joints whose confidence is below a threshold: none 0, partial 1–3, heavy ≥ 4;
  the threshold is calibrated on labeled frames (the one that best reproduces their labels).
* any other attribute (sensor, scene, …), or a posture/occlusion vocabulary other than those above:
  a scikit-learn logistic regression on the pooled backbone embedding, trained on labeled frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

POSTURES = ["upright", "leaning", "horizontal", "inverted", "unknown"]
OCCLUSIONS = ["none", "partial", "heavy"]


def posture_of(kps: np.ndarray, ok: np.ndarray, names: list[str]) -> str:
    hips = [i for i, n in enumerate(names) if "hip" in n and ok[i]]
    top = [i for i, n in enumerate(names) if n in ("neck", "upper_neck", "thorax") and ok[i]]
    if not top:
        top = [i for i, n in enumerate(names) if "shoulder" in n and ok[i]]
    if not hips or not top:
        return "unknown"
    v = kps[top].mean(0) - kps[hips].mean(0)
    if not np.isfinite(v).all() or np.hypot(*v) < 1e-6:
        return "unknown"
    ang = math.degrees(math.acos(max(-1.0, min(1.0, -v[1] / np.hypot(*v)))))  # 0 = torso points up
    return "upright" if ang <= 30 else "leaning" if ang <= 60 else "horizontal" if ang <= 120 else "inverted"


def occlusion_of(n_missing: int) -> str:
    return "none" if n_missing == 0 else "partial" if n_missing <= 3 else "heavy"


class StrataPredictor:
    def __init__(self, strata: Mapping[str, Sequence[str]], names: Sequence[str]):
        self.strata = {k: list(v) for k, v in strata.items()}
        self.names = list(names)
        self.threshold = 0.2
        self.classifiers: dict = {}

    def _rule(self, key: str) -> bool:
        allowed = set(self.strata.get(key, []))
        return (key == "posture" and allowed <= set(POSTURES)) or (key == "occlusion" and allowed <= set(OCCLUSIONS))

    def fit(self, kps: np.ndarray, scores: np.ndarray, emb: np.ndarray, attrs: list[dict]) -> StrataPredictor:
        """Calibrate on labeled frames: predicted keypoints/scores/embeddings and their labeled attributes."""
        key = self._calibrate_on
        if key is not None and len(attrs):
            d = self.rules[key]
            truth = [a.get(key) for a in attrs]
            best = (-1.0, self.threshold)
            seen = np.isfinite(kps).all(-1)  # a joint the model does not predict (NaN) is not counted as hidden
            for t in np.quantile(scores[seen], np.linspace(0.02, 0.6, 30)) if seen.any() else ():
                got = [occlusion_of(int(((s < t) & ok).sum()), d) for s, ok in zip(scores, seen)]
                acc = np.mean([g == y for g, y in zip(got, truth) if y is not None] or [0])
                if acc > best[0]:
                    best = (float(acc), float(t))
            self.threshold = best[1]
        for key in self.strata:
            if self._rule(key):
                continue
            y = [a.get(key) for a in attrs]
            keep = [i for i, v in enumerate(y) if v is not None]
            if len({y[i] for i in keep}) >= 2 and emb.shape[1]:
                from sklearn.linear_model import LogisticRegression

                clf = LogisticRegression(max_iter=500)
                clf.fit(emb[keep].astype(np.float32), [y[i] for i in keep])
                self.classifiers[key] = clf
        return self

    def state(self) -> dict:
        """The fitted calibration as JSON-able data (threshold, logistic-regression weights)."""
        return {
            "threshold": self.threshold,
            "classifiers": {
                k: {
                    "classes": [str(c) for c in c_.classes_],
                    "coef": c_.coef_.tolist(),
                    "intercept": c_.intercept_.tolist(),
                }
                for k, c_ in self.classifiers.items()
            },
        }

    @classmethod
    def from_state(cls, strata: Mapping[str, Sequence[str]], names: Sequence[str], state: dict) -> StrataPredictor:
        from sklearn.linear_model import LogisticRegression

        sp = cls(strata, names)
        sp.threshold = float(state["threshold"])
        for key, c in state.get("classifiers", {}).items():
            clf = LogisticRegression()
            clf.classes_ = np.asarray(c["classes"], dtype=object)
            clf.coef_ = np.asarray(c["coef"], dtype=np.float64)
            clf.intercept_ = np.asarray(c["intercept"], dtype=np.float64)
            clf.n_features_in_ = clf.coef_.shape[1]
            sp.classifiers[key] = clf
        return sp

    def predict(self, kps: np.ndarray, scores: np.ndarray, emb: np.ndarray) -> list[dict]:
        n = len(kps)
        out: list[dict] = [{} for _ in range(n)]
        for key in self.strata:
            d = self.rules.get(key)
            if d is not None and d.rule == "torso_angle":
                for i in range(n):
                    out[i][key] = posture_of(kps[i], scores[i] > 0.02, self.names, d)  # torso from every joint found
            elif d is not None:
                for i in range(n):
                    seen = np.isfinite(kps[i]).all(-1)  # joints the model does not predict are not counted
                    out[i][key] = occlusion_of(int(((scores[i] < self.threshold) & seen).sum()), d)
            elif key in self.classifiers and n:
                for i, v in enumerate(self.classifiers[key].predict(emb.astype(np.float32))):
                    out[i][key] = str(v)
        return out
