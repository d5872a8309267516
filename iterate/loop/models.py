"""Which model is which: the one place that resolves the manifest's base checkpoint, the model that scores the pool
now (the latest trained in the loop, else the base), the model that scored a round, and how each is named and
cached. `select`, `simulate`'s callers, `retrain`, `audit`, `report` and the in-loop control ask here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger, Model
from iterate.core.manifest import Manifest

__all__ = [
    "Checkpoint",
    "ScoringModel",
    "base_path",
    "base_model",
    "is_base",
    "scoring_model",
    "round_model",
    "model_name",
    "cache_dir",
]


@dataclass(frozen=True)
class Checkpoint:
    """A scoring model that is not a model of the ledger: the manifest's base checkpoint, or a k-fold model the
    audit trains. ``cache``: its folder under ``<workspace>/cache/``."""

    path: str
    name: str
    cache: str
    base: bool = False
    id: None = None  # not a model of the ledger
    created_at: float = 0.0  # older than every label


ScoringModel = Model | Checkpoint  # what scores frames: a model trained in the loop, or a checkpoint outside it


def base_path(m: Manifest) -> Path | None:
    """The manifest's ``model.base`` checkpoint, None when it names none; refused in one line when it is missing."""
    if not m.model.base:
        return None
    p = m.resolve(m.model.base)
    if not p.is_file():
        raise IterateError(f"model.base: checkpoint not found: {p}")
    return p


def base_model(path: str) -> Checkpoint:
    """The manifest's base checkpoint as a scoring model (not a model of the ledger)."""
    return Checkpoint(path=path, name="the base model", cache="model-base", base=True)


def is_base(model: ScoringModel | None) -> bool:
    """Whether ``model`` is the manifest's base checkpoint."""
    return isinstance(model, Checkpoint) and model.base


def scoring_model(m: Manifest, ledger: Ledger) -> ScoringModel | None:
    """The model that scores the pool now: the latest one trained in the loop, else the manifest's base checkpoint,
    else None (a cold start)."""
    model = ledger.latest_model()
    if model is not None:
        return model
    p = base_path(m)
    return base_model(str(p)) if p is not None else None


def round_model(ledger: Ledger, round_id: int) -> ScoringModel | None:
    """The model that scored a round: a model of the ledger, the base checkpoint it named, or None (cold start)."""
    rnd = ledger.round(round_id)
    if rnd is None:
        raise IterateError(f"no selection round {round_id}")
    if rnd.model_id:
        return ledger.model(rnd.model_id)
    base = rnd.params.get("base_path")
    return base_model(base) if base else None


def model_name(model: ScoringModel) -> str:
    """How a scoring model is named to users."""
    return model.name if isinstance(model, Checkpoint) else f"model #{model.id}"


def cache_dir(m: Manifest, model: ScoringModel) -> Path:
    """Where a model's pool scores are cached: ``<workspace>/cache/model-<id>/`` (the base: ``model-base/``)."""
    return m.workspace_dir / "cache" / (model.cache if isinstance(model, Checkpoint) else f"model-{model.id:03d}")
