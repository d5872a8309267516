"""The interface every tracking backend's run implements, and the guard that keeps a lost metric from ending a
training run."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from iterate.core.metric_keys import tracker_name


def finite_points(series: dict[str, list[tuple[int, float]]]) -> list[tuple[str, int, float]]:
    """name → [(step, value)] as (name, step, value), leaving out values that are not finite numbers. Names are
    written as every tracker accepts them (MLflow refuses ``@``: ``val_pckh@0.1`` is logged as ``val_pckh_at_0.1``)."""
    return [
        (tracker_name(k), int(s), float(v))
        for k, pts in series.items()
        for s, v in pts
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]


class Run:
    """One tracked run. A backend subclasses it and implements the ``_`` methods; callers use the public ones, which
    never raise once the run has started: the first failure is printed once and logging stops."""

    backend = ""  # the registry name: "mlflow", "wandb"
    label = ""  # how users read it: "MLflow", "W&B"

    def __init__(self, run_id: str, experiment: str, store: str):
        self.run_id, self.experiment, self.store = run_id, experiment, store
        self.failed: str | None = None

    def describe(self) -> dict:
        return {"backend": self.label, "run_id": self.run_id, "experiment": self.experiment, "store": self.store}

    def _guard(self, fn, *args, **kw) -> None:
        if self.failed:
            return
        try:
            fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - a lost metric must not end a training run
            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(
                f"warning: {self.label} run {self.run_id}: logging stopped ({self.failed}); training goes on",
                file=sys.stderr,
            )

    def log_params(self, params: dict) -> None:
        self._guard(self._log_params, params)

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        self.log_series({k: [(step, v)] for k, v in metrics.items()})

    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None:
        """name → [(step, value)]; values that are not finite numbers are left out."""
        points = finite_points(series)
        if points:
            self._guard(self._log_points, points)

    def set_tags(self, tags: dict) -> None:
        if tags:
            self._guard(self._set_tags, {k: str(v) for k, v in tags.items()})

    def log_files(self, paths: list[Path], folder: str) -> None:
        files = [p for p in paths if p.is_file()]
        if files:
            self._guard(self._log_files, files, folder)

    def end(self, ok: bool = True) -> None:
        """The run is over (a finished or failed training)."""
        self._guard(self._end, ok)

    def close(self) -> None:
        """Done logging to a reopened run (the report's figures), leaving its status as it was."""
        self._guard(self._close)

    def _close(self) -> None:
        """Nothing to do for a client without an open session (MLflow)."""

    # -- what a backend implements
    def _log_params(self, params: dict) -> None:
        raise NotImplementedError

    def _log_points(self, points: list[tuple[str, int, float]]) -> None:
        raise NotImplementedError

    def _set_tags(self, tags: dict[str, str]) -> None:
        raise NotImplementedError

    def _log_files(self, paths: list[Path], folder: str) -> None:
        raise NotImplementedError

    def _end(self, ok: bool) -> None:
        raise NotImplementedError
