"""Plain frozen settings the annotation package takes (built from the manifest at the edge)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iterate.core.schema import KeypointSpec


@dataclass(frozen=True)
class LabelStudioSettings:
    url: str = "http://127.0.0.1:8080"
    project_title: str = "iterate"
    token_env: str = "LABEL_STUDIO_TOKEN"  # the NAME of the variable holding the token, never the token
    data_root: Path = Path(".")  # absolute: the document root local files are served from
    batch_size: int = 500
    agreement: bool = False
    server_dir: Path = Path(".iterate/studio")  # a local server's data folder
    # what annotators are shown before labeling (annotation/labeling.py:instructions): None = generated from the
    # joints and strata; ``instructions`` replaces that text, ``instructions_extend`` is appended to it (plain text)
    instructions: str | None = None
    instructions_extend: str | None = None


@dataclass(frozen=True)
class LabelingSetup:
    """One labeling project: the server, the joints to place and the strata choices to make."""

    label_studio: LabelStudioSettings
    keypoints: KeypointSpec
    strata: dict[str, tuple[str, ...]] = field(default_factory=dict)
