"""The Weights & Biases backend (``pip install iterate[wandb]``; ``tracking: {backend: wandb}``).

Online when ``WANDB_API_KEY`` is in the environment (the key is read by W&B itself and never printed or written by
iterate), else offline: the run's files go to ``<workspace>/wandb/offline-run-*`` and ``wandb sync`` uploads them
later. ``WANDB_MODE`` (``online`` | ``offline`` | ``disabled``), ``WANDB_ENTITY`` and W&B's other variables are
honoured as W&B documents them. The project is ``tracking.experiment``, else the manifest's project name. Nothing
is downloaded and nothing prompts for a login.

Metrics are logged against their own training step (``iterate/step``), so a run resumed by ``--resume`` or reopened
by ``iterate report`` adds points without W&B's own step counter getting in the way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from iterate.core.errors import IterateError
from iterate.core.manifest import Manifest
from iterate.loop.tracking.base import Run

STEP = "iterate/step"


def _mode() -> str:
    """``WANDB_MODE`` when set; else online with a key (``WANDB_API_KEY``, or `wandb login`'s entry in ~/.netrc),
    offline without one (never a login prompt)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") or _netrc_key() else "offline"


def _netrc_key() -> bool:
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbRun(Run):
    backend, label = "wandb", "W&B"

    def __init__(self, run_id: str, experiment: str, store: str, *, run=None, opener=None):
        super().__init__(run_id, experiment, store)
        self._run, self._opener = run, opener
        if run is not None:
            self._define_step(run)

    @staticmethod
    def _define_step(run) -> None:
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)

    @property
    def run(self):
        """The W&B run; a reopened one (the report's) is opened at its first write, inside the logging guard, so a
        tracker that cannot be reached costs a warning, never the report."""
        if self._run is None:
            self._run = self._opener()
            self._define_step(self._run)
        return self._run

    def _log_params(self, params: dict) -> None:
        self.run.config.update({k: v for k, v in sorted(params.items())}, allow_val_change=True)

    def _log_points(self, points: list[tuple[str, int, float]]) -> None:
        by_step: dict[int, dict] = {}
        for k, s, v in points:
            by_step.setdefault(s, {})[k] = v
        for s in sorted(by_step):
            self.run.log({**by_step[s], STEP: s})

    def _set_tags(self, tags: dict[str, str]) -> None:
        self.run.config.update(tags, allow_val_change=True)

    def _log_files(self, paths: list[Path], folder: str) -> None:
        into = Path(self.run.dir) / folder  # files in the run's folder are the run's files (uploaded by sync)
        into.mkdir(parents=True, exist_ok=True)
        for p in paths:
            shutil.copy2(p, into / p.name)
            self.run.save(str(into / p.name), base_path=self.run.dir, policy="now")

    def _end(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)

    def _close(self) -> None:
        if self._run is not None:
            self._run.finish()


def _store(m: Manifest, mode: str) -> str:
    return f"offline files in {m.workspace_dir / 'wandb'} (`wandb sync` uploads them)" if mode == "offline" else mode


def _open(m: Manifest, name: str | None, run_id: str | None, config: dict | None):
    """``wandb.init`` for the project; any failure (no package, no key online, no network) as one line."""
    try:
        import wandb
    except ImportError:
        raise IterateError(
            "tracking.backend: wandb needs the wandb package: pip install 'iterate[wandb]' (or set tracking: "
            "{backend: mlflow})"
        ) from None
    project = m.tracking.experiment or m.project
    mode = _mode()
    m.workspace_dir.mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            project=project,
            name=name,
            id=run_id,
            resume="allow" if run_id else None,
            dir=str(m.workspace_dir),
            mode=mode,
            config=config,
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
        )
    except Exception as e:  # noqa: BLE001 - whatever the W&B client raises, one line
        raise IterateError(
            f"W&B tracking ({mode}, project {project}) cannot be used ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); check WANDB_MODE / WANDB_API_KEY or set tracking: "
            "{backend: none}"
        ) from None
    return run


def start(m: Manifest, name: str, *, resume_id: str | None = None, tags: dict | None = None) -> WandbRun:
    """A new run (or the interrupted one, ``resume_id``) in the project, opened now: a tracker that cannot be used
    is one line before any training."""
    run = _open(m, name, resume_id, dict(tags or {}))
    return WandbRun(run.id, m.tracking.experiment or m.project, _store(m, _mode()), run=run)


def reopen(m: Manifest, run_id: str) -> WandbRun:
    """The run that trained a model, opened at its first write (the report's figures)."""
    return WandbRun(
        run_id, m.tracking.experiment or m.project, _store(m, _mode()), opener=lambda: _open(m, None, run_id, None)
    )
