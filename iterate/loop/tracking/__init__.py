"""Experiment tracking behind one small interface: every ``retrain`` is a run, and ``report`` logs its figures and
files to the run of the model it reports on (the report names that run). A backend is one module with a
``start(m, name, resume_id, tags)`` and a ``reopen(m, run_id)`` returning a :class:`Run`; the registry
:data:`BACKENDS` maps the manifest's ``tracking.backend`` to it:

* ``mlflow`` (default) — :mod:`.mlflow_backend`: ``MLFLOW_TRACKING_URI`` when set, else the workspace's SQLite store;
* ``wandb`` — :mod:`.wandb_backend` (``pip install iterate[wandb]``): Weights & Biases, online with
  ``WANDB_API_KEY`` in the environment, else offline files under ``<workspace>/wandb`` (``wandb sync`` uploads them);
* ``none`` — no tracking.

A tracking store that cannot be reached when a run starts is one clear error before any training; a failure
later (the server went away mid-run) is reported once and training goes on: hours of training are not thrown
away for a lost metric.
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
from collections import Counter
from pathlib import Path

from iterate.core.ledger import Ledger
from iterate.core.manifest import Manifest
from iterate.loop.tracking.base import Run, finite_points
from iterate.loop.tracking.mlflow_backend import tracking_uri

__all__ = [
    "BACKENDS",
    "Run",
    "StepLog",
    "start_run",
    "model_run",
    "remember",
    "retrain_params",
    "dataset_params",
    "dataset_tags",
    "file_sha256",
    "code_version",
    "tracking_uri",
    "finite_points",
]

BACKENDS = {"mlflow": "iterate.loop.tracking.mlflow_backend", "wandb": "iterate.loop.tracking.wandb_backend"}
_MODEL_RUN = "tracking_run:{}"  # ledger kv: model id → {"backend", "run_id"}
_OLD_MODEL_RUN = "mlflow_run:{}"  # ledgers written before the W&B backend: model id → MLflow run id


def _backend(name: str):
    return importlib.import_module(BACKENDS[name])


def start_run(m: Manifest, name: str, *, resume_id: str | None = None, tags: dict | None = None) -> Run | None:
    """A new run (or the interrupted one, ``resume_id``) of the manifest's backend; None when tracking is off."""
    kind = m.tracking.kind
    if kind == "none":
        return None
    return _backend(kind).start(m, name, resume_id=resume_id, tags={"iterate.project": m.project, **(tags or {})})


def model_run(m: Manifest, ledger: Ledger, model_id: int) -> Run | None:
    """The run that trained model ``model_id``, when tracking is on and it was tracked (by any backend)."""
    rec = ledger.get(_MODEL_RUN.format(model_id))
    if rec is None:
        old = ledger.get(_OLD_MODEL_RUN.format(model_id))
        rec = {"backend": "mlflow", "run_id": old} if old else None
    if not rec or m.tracking.kind == "none" or rec.get("backend") not in BACKENDS:
        return None
    return _backend(rec["backend"]).reopen(m, rec["run_id"])


def remember(ledger: Ledger, model_id: int, run: Run | None) -> None:
    """Record which run trained the model. Call inside the transaction that adds the model."""
    if run is not None:
        ledger.set(_MODEL_RUN.format(model_id), {"backend": run.backend, "run_id": run.run_id})


# -- what a retrain logs ------------------------------------------------------------------------------------
def retrain_params(m: Manifest, ledger: Ledger, train_s, val_s, replay_s, init) -> dict:
    """The manifest's model and train sections, labels per split and stratum, the starting checkpoint, the code."""
    p = _flat(m.model.model_dump(mode="json"), "model.") | _flat(m.train.model_dump(mode="json"), "train.")
    p |= {"labels.train": len(train_s), "labels.val": len(val_s), "labels.replay": len(replay_s)}
    for key in m.strata:
        for value, n in sorted(Counter(str(s.attributes.get(key, "unknown")) for s in train_s).items()):
            p[f"labels.{key}.{value}"] = n
    p["init"] = str(init) if init else "scratch"
    if init and Path(init).is_file():
        p["init_sha256"] = file_sha256(Path(init))
    p |= code_version()
    p["ledger"] = ledger.where
    return p


def dataset_params(version) -> dict:
    """The dataset version a retrain trains on, as run parameters (``dataset.version`` = N of vN)."""
    if version is None:
        return {}
    return {
        "dataset.version": version.id,
        "dataset.hash": version.content_hash,
        "dataset.frames": version.n_frames,
        "dataset.labels": version.n_labels,
    }


def dataset_tags(version) -> dict:
    return (
        {}
        if version is None
        else {"iterate.dataset_version": f"v{version.id}", "iterate.dataset_hash": version.content_hash}
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def code_version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        out = {"code.version": version("iterate")}
    except PackageNotFoundError:
        out = {"code.version": "unknown"}
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            if commit:
                out["code.commit"] = commit + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return out


class StepLog:
    """Collects the per-step loss and the per-epoch figures of a training run; flushes each epoch to the run."""

    def __init__(self, run: Run | None):
        self.run = run
        self.losses: list[tuple[int, float]] = []

    def step(self, step: int, total: int, loss: float) -> None:
        self.losses.append((step, loss))

    def epoch(self, rec: dict) -> None:
        if self.run is None:
            self.losses.clear()
            return
        step = int(rec.get("step", 0))
        series: dict[str, list[tuple[int, float]]] = {"loss": self.losses}
        series["epoch_loss"] = [(step, rec.get("loss"))]
        series["epoch"] = [(step, rec.get("epoch"))]
        for k, v in rec.items():
            if k not in ("epoch", "step", "loss", "elapsed_s"):
                series[f"val_{k}"] = [(step, v)]
        self.run.log_series(series)
        self.losses = []


def _flat(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out
