"""Plain frozen settings the annotation package takes (built from the manifest at the edge,
:mod:`iterate.loop.settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iterate.core.schema import KeypointSpec


@dataclass(frozen=True)
class LabelStudioSettings:
    """The ``label_studio:`` section of the manifest as the annotation package takes it. No defaults here: the
    manifest's section (iterate/core/manifest.py:LabelStudioSection) declares them, iterate/loop/settings.py
    builds this from it."""

    url: str
    project_title: str
    token_env: str  # the NAME of the variable holding the token, never the token
    data_root: Path  # absolute: the document root local files are served from
    batch_size: int
    agreement: bool
    server_dir: Path  # a local server's data folder (the workspace's studio/)
    # what annotators are shown before labeling (annotation/labeling.py:instructions): None = generated from the
    # joints and strata; ``instructions`` replaces that text, ``instructions_extend`` is appended to it (plain text)
    instructions: str | None
    instructions_extend: str | None


@dataclass(frozen=True)
class LabelingSetup:
    """One labeling project: the server, the joints to place and the strata choices to make."""

    label_studio: LabelStudioSettings
    keypoints: KeypointSpec
    strata: dict[str, tuple[str, ...]] = field(default_factory=dict)
