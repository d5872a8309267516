"""The one vocabulary of metric keys: a metric's name and its α, built by :func:`metric_key` alone.

``metric_key("pckh", 0.1)`` is ``"pckh@0.1"``; ``label("pckh@0.1")`` is ``"PCKh@0.1"``. Every figure the product writes —
evaluate's tables, the training record, a model's metrics in the ledger, the report's JSON twin, the in-loop control,
``simulate.json``, the demo's results, a checkpoint's ``best_metric`` — is keyed so. A figure's 95 % interval sits
beside it under :func:`ci_key` (``"pckh@0.1_ci95"``); a split or a comparison is a prefix (``"val_pckh@0.1"``,
``"overfit_pckh@0.1"``).

Figures written by older versions used ``pckh01`` / ``pckh05`` / ``mean_sms01`` (training) and ``pckh`` /
``pckh05`` / ``mean_sms`` / ``ci95`` / ``ci95_05`` (evaluate, where ``pckh`` was PCKh at the report's α).
:func:`upgrade` translates a stored record on read; :func:`canonical` translates a name a user wrote in a manifest
or on the command line (:data:`DEPRECATED` says so in one line).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "DEPRECATED",
    "MEAN_SMS",
    "MEAN_SMS01",
    "PCKH",
    "PCKH01",
    "PCKH05",
    "canonical",
    "ci_key",
    "is_key",
    "metric_key",
    "label",
    "parse",
    "split_key",
    "tracker_name",
    "upgrade",
]

PCKH = "pckh"
MEAN_SMS = "mean_sms"
_LABELS = {PCKH: "PCKh", MEAN_SMS: "MeanSmS"}
_KEY = re.compile(r"^(?P<metric>[a-z_]+?)@(?P<alpha>[0-9.]+)$")


def metric_key(metric: str, alpha: float) -> str:
    """``pckh`` at α 0.1 → ``pckh@0.1`` (α as its shortest decimal: 0.1, 0.25, 0.5, 1)."""
    if metric not in _LABELS:
        raise ValueError(f"unknown metric {metric!r}: one of {', '.join(_LABELS)}")
    a = float(alpha)
    if not (math.isfinite(a) and 0 < a <= 1):
        raise ValueError(f"α must be in (0, 1], got {alpha}")
    return f"{metric}@{a:g}"


PCKH01 = metric_key(PCKH, 0.1)
PCKH05 = metric_key(PCKH, 0.5)
MEAN_SMS01 = metric_key(MEAN_SMS, 0.1)


def parse(k: str) -> tuple[str, float]:
    """``pckh@0.1`` → (``pckh``, 0.1); anything else raises ValueError."""
    m = _KEY.match(k)
    if not m or m["metric"] not in _LABELS:
        raise ValueError(f"not a metric key: {k!r} (expected e.g. {PCKH01!r})")
    return m["metric"], float(m["alpha"])


def label(k: str) -> str:
    """The printed name: ``pckh@0.1`` → ``PCKh@0.1``, ``mean_sms@0.1`` → ``MeanSmS@0.1``."""
    metric, alpha = parse(k)
    return f"{_LABELS[metric]}@{alpha:g}"


def ci_key(k: str) -> str:
    """Where a figure's 95 % interval is kept beside it: ``pckh@0.1`` → ``pckh@0.1_ci95``."""
    return f"{k}_ci95"


def is_key(k) -> bool:
    """Whether ``k`` is a metric key (``pckh@0.1``), not a count or another field."""
    try:
        parse(k)
    except (ValueError, TypeError):
        return False
    return True


def split_key(split: str, k: str) -> str:
    """A figure of one split or comparison: (``val``, ``pckh@0.1``) → ``val_pckh@0.1``; ``overfit`` is train − val."""
    return f"{split}_{k}"


def tracker_name(k: str) -> str:
    """A key as a tracker accepts it (MLflow refuses ``@``): ``val_pckh@0.1`` → ``val_pckh_at_0.1``."""
    return k.replace("@", "_at_")


# -- older names -----------------------------------------------------------------------------------------
_TRAINING = {"pckh01": PCKH01, "pckh05": PCKH05, "mean_sms01": MEAN_SMS01}
DEPRECATED = "{old!r} is the old name of {new!r}; it still works, but write {new!r}"


def canonical(name: str, alpha: float = 0.1) -> tuple[str, str | None]:
    """A metric name a user wrote → (its key, a one-line deprecation note or None).

    Accepts the keys themselves and the older names: ``pckh01``, ``pckh05``, ``mean_sms01``, and ``pckh`` /
    ``mean_sms`` meaning the figure at ``alpha``. Anything else raises ValueError.
    """
    if _KEY.match(name):
        parse(name)
        return name, None
    new = _TRAINING.get(name) or ({PCKH: metric_key(PCKH, alpha), MEAN_SMS: metric_key(MEAN_SMS, alpha)}.get(name))
    if new is None:
        raise ValueError(f"unknown metric {name!r}: e.g. {PCKH01!r}, {PCKH05!r}, {MEAN_SMS01!r}")
    return new, DEPRECATED.format(old=name, new=new)


def _renamed(k: str, alpha: float) -> str:
    """One stored key under its current name (unknown keys unchanged)."""
    for prefix in ("", "val_", "train_", "test_", "report_val_", "report_test_"):
        if k.startswith(prefix) and k[len(prefix) :] in _TRAINING:
            return prefix + _TRAINING[k[len(prefix) :]]
    if k == "overfit01":
        return split_key("overfit", PCKH01)
    if k in (PCKH, MEAN_SMS):
        return metric_key(k, alpha)
    if k == "ci95":
        return ci_key(metric_key(PCKH, alpha))
    if k == "ci95_05":
        return ci_key(PCKH05)
    return k


def upgrade(record: Any, alpha: float | None = None) -> Any:
    """A stored record (dicts and lists, any depth) with older metric keys renamed to the current ones.

    ``alpha`` is the α the record's bare ``pckh`` / ``mean_sms`` / ``ci95`` were computed at; a dict that says its
    own ``alpha`` uses that for itself and what it holds. Idempotent: a current record comes back equal.
    """
    if isinstance(record, list):
        return [upgrade(v, alpha) for v in record]
    if not isinstance(record, dict):
        return record
    a = record.get("alpha") if isinstance(record.get("alpha"), (int, float)) else alpha
    a = 0.1 if a is None else float(a)
    out: dict = {}
    for k, v in record.items():
        if k in ("pckh01", "pckh05") and isinstance(v, dict):  # the in-loop control's block per α
            out[_TRAINING[k]] = upgrade(v, parse(_TRAINING[k])[1])
            continue
        new = _renamed(k, a) if isinstance(k, str) else k
        if new in ("best_metric", "focus_metric") and isinstance(v, str):
            v = canonical(v, a)[0] if not _KEY.match(v) else v
        out[new] = upgrade(v, a)
    return out
