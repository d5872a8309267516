"""The MLflow backend: every run written through the tracking client (no global MLflow state).

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a team's server), else a local store in the workspace
(``<workspace>/mlflow/mlflow.db``, artifacts beside it). MLflow 3 keeps its plain-folder store in maintenance mode
and refuses it by default, so the local store is its SQLite one: one file, read by ``mlflow ui --backend-store-uri``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.ledger import describe_url
from iterate.core.manifest import Manifest
from iterate.loop.tracking.base import Run


def tracking_uri(m: Manifest) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{m.workspace_dir / 'mlflow' / 'mlflow.db'}"


def _local() -> bool:
    return not os.environ.get("MLFLOW_TRACKING_URI")


def _shown(uri: str) -> str:
    return describe_url(uri) if uri.startswith(("postgresql", "mysql")) else uri


class MlflowRun(Run):
    backend, label = "mlflow", "MLflow"

    def __init__(self, client, run_id: str, experiment: str, uri: str):
        super().__init__(run_id, experiment, _shown(uri))
        self.client = client

    def _log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def _log_points(self, points: list[tuple[str, int, float]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, s) for k, s, v in points]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def _set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def _log_files(self, paths: list[Path], folder: str) -> None:
        for p in paths:
            self.client.log_artifact(self.run_id, str(p), folder)

    def _end(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


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


def start(m: Manifest, name: str, *, resume_id: str | None = None, tags: dict | None = None) -> MlflowRun:
    """A new run (or the interrupted one, ``resume_id``) in the project's experiment."""
    experiment = m.tracking.experiment or m.project
    try:
        client, uri = _client(m)
        if resume_id:
            run = client.get_run(resume_id)
            client.update_run(resume_id, status="RUNNING")
            return MlflowRun(client, run.info.run_id, experiment, uri)
        eid = _experiment_id(m, client, experiment)
        run = client.create_run(eid, run_name=name, tags=tags or {})
    except Exception as e:  # noqa: BLE001 - whatever the tracking client raises, one line
        raise IterateError(
            f"MLflow tracking store {_shown(tracking_uri(m))} cannot be used ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); check MLFLOW_TRACKING_URI or set tracking: "
            "{backend: none}"
        ) from None
    return MlflowRun(client, run.info.run_id, experiment, uri)


def reopen(m: Manifest, run_id: str) -> MlflowRun:
    client, uri = _client(m)
    return MlflowRun(client, run_id, m.tracking.experiment or m.project, uri)
