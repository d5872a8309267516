"""The edge where the manifest becomes the plain frozen settings the libraries take: ``model`` gets a
:class:`~model.config.TrainSetup` and an :class:`~model.infer.InferConfig`, ``annotation`` a
:class:`~annotation.settings.LabelingSetup`, ``reports`` a :class:`~iterate.core.schema.KeypointSpec` and the
strata. Nothing below this module sees the :class:`~iterate.core.manifest.Manifest`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from types import MappingProxyType

from annotation.settings import LabelingSetup, LabelStudioSettings
from iterate.core.manifest import ExtendInstructions, Manifest
from iterate.core.schema import KeypointSpec
from iterate.core.strata import Derivation, fill_derived
from model.config import AugmentConfig, ModelConfig, TrainConfig, TrainSetup
from model.infer import InferConfig


def keypoint_spec(m: Manifest) -> KeypointSpec:
    return m.keypoints.spec()


def strata(m: Manifest) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in m.strata.items()}


def derived_strata(m: Manifest) -> dict[str, Derivation]:
    """The strata the manifest derives from the keypoints (``strata: posture: {derive: torso_angle}``)."""
    return m.derived_strata


def label_attributes(m: Manifest) -> Callable[[list, dict], dict] | None:
    """What the ledger applies to every label it adds (:meth:`Ledger.set_label_attributes`): the manifest's derived
    strata filled from the keypoints where the label carries none; None when the manifest derives none."""
    d = derived_strata(m)
    return partial(fill_derived, names=tuple(m.keypoints.names), derivations=d) if d else None


def infer_config(m: Manifest) -> InferConfig:
    """The manifest's inference path (flip TTA, box refine, head-up), recorded in every checkpoint it trains."""
    spec = keypoint_spec(m)
    hu = spec.up_joints() if m.model.head_up else None
    return InferConfig(
        tuple(spec.flip_index()),
        flip=True,
        refine=m.model.refine,
        refine_passes=m.model.refine_passes,
        head_up=None if hu is None else (tuple(hu[0]), tuple(hu[1])),
        localise=m.model.localise,
    )


def train_setup(
    m: Manifest, *, epochs: int | None = None, freeze: str | None = None, heatmap_size: int | None = None
) -> TrainSetup:
    """The manifest's model and train sections, with a command's overrides applied."""
    mm, t = m.model, m.train
    model = ModelConfig(mm.backbone, mm.input_size, heatmap_size or mm.heatmap_size, mm.sigma, mm.box_head)
    train = TrainConfig(
        **{k: v for k, v in t.model_dump().items() if k not in ("augment", "replay")},
        replay_fraction=t.replay.fraction if t.replay else 0.0,
        augment=AugmentConfig(**t.augment.model_dump()),
    )
    if epochs is not None:
        train = replace(train, epochs=epochs)
    if freeze is not None:
        train = replace(train, freeze=freeze)
    return TrainSetup(keypoint_spec(m), model, train, infer_config(m))


def studio_settings(m: Manifest) -> LabelStudioSettings:
    ls = m.label_studio
    return LabelStudioSettings(
        url=ls.url,
        project_title=ls.project_title,
        token_env=ls.token_env,
        data_root=m.resolve(ls.data_root),
        batch_size=ls.batch_size,
        agreement=ls.agreement,
        server_dir=m.workspace_dir / "studio",
        instructions=ls.instructions if isinstance(ls.instructions, str) else None,
        instructions_extend=ls.instructions.extend if isinstance(ls.instructions, ExtendInstructions) else None,
    )


def labeling(m: Manifest) -> LabelingSetup:
    return LabelingSetup(studio_settings(m), keypoint_spec(m), strata(m))


@dataclass(frozen=True)
class SelectionSetup:
    """The manifest's ``selection`` section as the pool builder (iterate/loop/pool.py) takes it, for `iterate
    select` and `iterate simulate` alike."""

    spec: KeypointSpec
    weights: Mapping[str, float]
    explore: float
    diversity_on: str  # "model" | "image"
    video_gap: int
    focus_metric: str
    feature_seed: int  # the seed of the cold start's image-feature PCA


def selection_setup(m: Manifest) -> SelectionSetup:
    s = m.selection
    return SelectionSetup(
        keypoint_spec(m),
        MappingProxyType(dict(s.weights)),
        s.explore,
        s.diversity_on,
        s.video_gap,
        s.focus_metric,
        m.train.seed,
    )
