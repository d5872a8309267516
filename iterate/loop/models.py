"""Which model is which: the one place that resolves the manifest's base checkpoint, the model that scores the pool
now (the latest trained in the loop, else the base), the model that scored a round, and how each is named and
cached. `select`, `simulate`'s callers, `retrain`, `audit`, `report` and the in-loop control ask here."""

from __future__ import annotations

from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest

__all__ = ["base_path", "base_model", "scoring_model", "round_model", "model_name", "cache_dir"]


def base_path(m: Manifest) -> Path | None:
    """The manifest's ``model.base`` checkpoint, None when it names none; refused in one line when it is missing."""
    if not m.model.base:
        return None
    p = m.resolve(m.model.base)
    if not p.is_file():
        raise IterateError(f"model.base: checkpoint not found: {p}")
    return p


def base_model(path: str) -> dict:
    """The manifest's base checkpoint as a scoring model (not a model of the ledger)."""
    return {"id": None, "path": path, "base": True, "cache": "model-base"}


def scoring_model(m: Manifest, ledger: Ledger) -> dict | None:
    """The model that scores the pool now: the latest one trained in the loop, else the manifest's base checkpoint
    (``{"id": None, "path": …, "base": True}``), else None (a cold start)."""
    model = ledger.latest_model()
    if model is not None:
        return model
    p = base_path(m)
    return base_model(str(p)) if p is not None else None


def round_model(ledger: Ledger, round_id: int) -> dict | None:
    """The model that scored a round: a model of the ledger, the base checkpoint it named, or None (cold start)."""
    rnd = ledger.round(round_id)
    if rnd is None:
        raise IterateError(f"no selection round {round_id}")
    mid = rnd["model_id"]
    if mid:
        return next((md for md in ledger.models() if md["id"] == mid), None)
    base = rnd["params"].get("base_path")
    return base_model(base) if base else None


def model_name(model: dict) -> str:
    """How a scoring model is named to users."""
    if model.get("name"):
        return model["name"]
    return "the base model" if model.get("base") else f"model #{model['id']}"


def cache_dir(m: Manifest, model: dict) -> Path:
    """Where a model's pool scores are cached: ``<workspace>/cache/model-<id>/`` (the base: ``model-base/``)."""
    return m.workspace_dir / "cache" / (model.get("cache") or f"model-{model['id']:03d}")
