"""Predicted strata for unlabeled frames (report focus, selection quotas).

The rules of :mod:`iterate.core.strata`, applied to the model's keypoints:

* a ``torso_angle`` stratum — one the manifest derives so, or a ``posture`` listing only upright, leaning,
  horizontal, inverted, unknown: the torso angle (mid-hip → neck, else mid-shoulder) of the joints the model
  found, binned as the labels are (upright ≤ 30°, leaning ≤ 60°, horizontal ≤ 120°, else inverted by default);
* a ``hidden_joints`` stratum — derived so, or an ``occlusion`` listing only none, partial, heavy: the number of
  joints whose confidence is below a threshold, binned as the labels are (none 0, partial 1–3, heavy ≥ 4 by
  default); the threshold is calibrated on labeled frames (the one that best reproduces their labels);
* any other attribute (sensor, scene, …): a scikit-learn logistic regression on the pooled backbone embedding,
  trained on labeled frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from iterate.core.strata import DEFAULT_THRESHOLDS, DEFAULT_VALUES, Derivation, bin_angle, bin_count, torso_angle

POSTURES = list(DEFAULT_VALUES["torso_angle"])
OCCLUSIONS = list(DEFAULT_VALUES["hidden_joints"])
_DEFAULT = {
    key: Derivation(rule, DEFAULT_VALUES[rule], DEFAULT_THRESHOLDS[rule])
    for key, rule in (("posture", "torso_angle"), ("occlusion", "hidden_joints"))
}


def posture_of(kps: np.ndarray, ok: np.ndarray, names: list[str], d: Derivation = _DEFAULT["posture"]) -> str:
    return bin_angle(torso_angle(kps, ok, names), d.values, d.thresholds)


def occlusion_of(n_missing: int, d: Derivation = _DEFAULT["occlusion"]) -> str:
    return bin_count(n_missing, d.values, d.thresholds)


class StrataPredictor:
    def __init__(
        self,
        strata: Mapping[str, Sequence[str]],
        names: Sequence[str],
        derive: Mapping[str, Derivation] | None = None,
    ):
        self.strata = {k: list(v) for k, v in strata.items()}
        self.names = list(names)
        self.threshold = 0.2
        self.classifiers: dict = {}
        self.rules: dict[str, Derivation] = {}  # key → the keypoint rule that predicts it
        for key in self.strata:
            if derive and key in derive:
                self.rules[key] = derive[key]
            elif key in _DEFAULT and set(self.strata[key]) <= set(_DEFAULT[key].values):
                self.rules[key] = _DEFAULT[key]
        hidden = [k for k, d in self.rules.items() if d.rule == "hidden_joints"]
        self._calibrate_on = hidden[0] if hidden else None  # the stratum the confidence threshold is fitted to

    def _rule(self, key: str) -> bool:
        return key in self.rules

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
    def from_state(
        cls,
        strata: Mapping[str, Sequence[str]],
        names: Sequence[str],
        state: dict,
        derive: Mapping[str, Derivation] | None = None,
    ) -> StrataPredictor:
        from sklearn.linear_model import LogisticRegression

        sp = cls(strata, names, derive)
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
