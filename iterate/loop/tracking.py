"""Experiment tracking: every ``retrain`` is an MLflow run, and ``report`` logs its figures and files to the run of
the model it reports on (the report names that run).

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a team's server), else a local store in the workspace
(``<workspace>/mlflow/mlflow.db``, artifacts beside it). MLflow 3 keeps its plain-folder store in maintenance mode
and refuses it by default, so the local store is its SQLite one: one file, read by ``mlflow ui --backend-store-uri``.
Turn tracking off with ``tracking: {mlflow: false}`` in the manifest.

A tracking server that cannot be reached when a run starts is one clear error before any training; a failure
later (the server went away mid-run) is reported once and training goes on: hours of training are not thrown
away for a lost metric.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger, describe_url
from iterate.core.manifest import Manifest

_MODEL_RUN = "mlflow_run:{}"  # ledger kv: model id → MLflow run id


def tracking_uri(m: Manifest) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{m.workspace_dir / 'mlflow' / 'mlflow.db'}"


def _local() -> bool:
    return not os.environ.get("MLFLOW_TRACKING_URI")


class Run:
    """One MLflow run, written through the tracking client (no global MLflow state)."""

    def __init__(self, client, run_id: str, experiment: str, uri: str):
        self.client, self.run_id, self.experiment, self.uri = client, run_id, experiment, uri
        self.failed: str | None = None

    def describe(self) -> dict:
        return {"run_id": self.run_id, "experiment": self.experiment, "store": _shown(self.uri)}

    def _guard(self, fn, *args, **kw) -> None:
        if self.failed:
            return
        try:
            fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - a lost metric must not end a training run
            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(
                f"warning: MLflow run {self.run_id}: logging stopped ({self.failed}); training goes on",
                file=sys.stderr,
            )

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self._guard(self.client.log_batch, self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        self.log_series({k: [(step, v)] for k, v in metrics.items()})

    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None:
        """name → [(step, value)]; values that are not finite numbers are left out."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(s))
            for k, pts in series.items()
            for s, v in pts
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        for i in range(0, len(items), 1000):
            self._guard(self.client.log_batch, self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self._guard(self.client.set_tag, self.run_id, k, str(v))

    def log_files(self, paths: list[Path], folder: str) -> None:
        for p in paths:
            if p.is_file():
                self._guard(self.client.log_artifact, self.run_id, str(p), folder)

    def end(self, ok: bool = True) -> None:
        self._guard(self.client.set_terminated, self.run_id, "FINISHED" if ok else "FAILED")


def _client(m: Manifest):
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its store's "creating tables" lines are not ours to print
    uri = tracking_uri(m)
    if _local():
        (m.workspace_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    return MlflowClient(uri), uri


def _experiment_id(m: Manifest, client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    where = (m.workspace_dir / "mlflow" / "artifacts").as_uri() if _local() else None
    try:
        return client.create_experiment(name, artifact_location=where)
    except MlflowException:  # created by another command meanwhile
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def start_run(m: Manifest, name: str, *, resume_id: str | None = None, tags: dict | None = None) -> Run | None:
    """A new run (or the interrupted one, ``resume_id``) in the project's experiment; None when tracking is off."""
    if not m.tracking.mlflow:
        return None
    experiment = m.tracking.experiment or m.project
    try:
        client, uri = _client(m)
        if resume_id:
            run = client.get_run(resume_id)
            client.update_run(resume_id, status="RUNNING")
            return Run(client, run.info.run_id, experiment, uri)
        eid = _experiment_id(m, client, experiment)
        run = client.create_run(eid, run_name=name, tags={"iterate.project": m.project, **(tags or {})})
    except Exception as e:  # noqa: BLE001 - whatever the tracking client raises, one line
        raise IterateError(
            f"MLflow tracking store {_shown(tracking_uri(m))} cannot be used ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); check MLFLOW_TRACKING_URI or set tracking: {{mlflow: false}}"
        ) from None
    return Run(client, run.info.run_id, experiment, uri)


def model_run(m: Manifest, ledger: Ledger, model_id: int) -> Run | None:
    """The run that trained model ``model_id``, when tracking is on and it was tracked."""
    run_id = ledger.get(_MODEL_RUN.format(model_id))
    if not run_id or not m.tracking.mlflow:
        return None
    client, uri = _client(m)
    return Run(client, run_id, m.tracking.experiment or m.project, uri)


def remember(ledger: Ledger, model_id: int, run: Run | None) -> None:
    """Record which run trained the model. Call inside the transaction that adds the model."""
    if run is not None:
        ledger.set(_MODEL_RUN.format(model_id), run.run_id)


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


def _shown(uri: str) -> str:
    if uri.startswith(("postgresql", "mysql")):
        return describe_url(uri)
    return uri
