"""The edge where the manifest becomes the plain frozen settings the libraries take: ``model`` gets a
:class:`~model.config.TrainSetup` and an :class:`~model.infer.InferConfig`, ``annotation`` a
:class:`~annotation.settings.LabelingSetup`, ``reports`` a :class:`~iterate.core.schema.KeypointSpec` and the
strata, the pool builder and its strategies a :class:`SelectionSetup`. Nothing below this module sees the
:class:`~iterate.core.manifest.Manifest`.

The manifest's sections are the one place each default is written: the library dataclasses declare none for
the fields the manifest sets, and are built here from the section of the same field names (:func:`from_section`).
``model_config()``, ``augment_config()`` and ``train_config()`` without a section give the manifest's defaults, for
callers without a manifest (tests, benches)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from types import MappingProxyType
from typing import TypeVar

from pydantic import BaseModel

from annotation.settings import LabelingSetup, LabelStudioSettings
from iterate.core.manifest import (
    AugmentSettings,
    ExtendInstructions,
    Manifest,
    ModelSettings,
    TrainSettings,
)
from iterate.core.metric_keys import parse
from iterate.core.schema import KeypointSpec
from iterate.core.strata import Derivation, fill_derived
from model.config import AugmentConfig, ModelConfig, TrainConfig, TrainSetup
from model.infer import InferConfig

T = TypeVar("T")


def from_section(cls: type[T], section: BaseModel, **values) -> T:
    """The frozen library settings ``cls`` from a manifest section: each field the section has by the same name
    is taken from it, ``values`` give the rest (or replace one). A field neither gives is a TypeError, not a
    default of the library's own."""
    own = type(section).model_fields
    taken = {f.name: getattr(section, f.name) for f in fields(cls) if f.name in own and f.name not in values}
    return cls(**taken, **values)


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


def model_config(s: ModelSettings | None = None, **values) -> ModelConfig:
    """The network: the manifest's ``model:`` section (None: its defaults)."""
    return from_section(ModelConfig, s if s is not None else ModelSettings(), **values)


def augment_config(a: AugmentSettings | None = None, **values) -> AugmentConfig:
    """Training augmentation: the manifest's ``train.augment:`` section (None: its defaults)."""
    return from_section(AugmentConfig, a if a is not None else AugmentSettings(), **values)


def train_config(t: TrainSettings | None = None, **values) -> TrainConfig:
    """The recipe: the manifest's ``train:`` section (None: its defaults); the replay share is the replay
    source's ``fraction``, 0 without one."""
    t = t if t is not None else TrainSettings()
    values.setdefault("replay_fraction", t.replay.fraction if t.replay else 0.0)
    values.setdefault("augment", augment_config(t.augment))
    return from_section(TrainConfig, t, **values)


def train_setup(
    m: Manifest, *, epochs: int | None = None, freeze: str | None = None, heatmap_size: int | None = None
) -> TrainSetup:
    """The manifest's model and train sections, with a command's overrides applied."""
    model = model_config(m.model, **({"heatmap_size": heatmap_size} if heatmap_size else {}))
    over = {k: v for k, v in (("epochs", epochs), ("freeze", freeze)) if v is not None}
    return TrainSetup(keypoint_spec(m), model, train_config(m.train, **over), infer_config(m))


def studio_settings(m: Manifest) -> LabelStudioSettings:
    ls = m.label_studio
    return from_section(
        LabelStudioSettings,
        ls,
        data_root=m.resolve(ls.data_root),
        server_dir=m.workspace_dir / "studio",
        instructions=ls.instructions if isinstance(ls.instructions, str) else None,
        instructions_extend=ls.instructions.extend if isinstance(ls.instructions, ExtendInstructions) else None,
    )


def labeling(m: Manifest) -> LabelingSetup:
    return LabelingSetup(studio_settings(m), keypoint_spec(m), strata(m))


@dataclass(frozen=True)
class SelectionSetup:
    """The manifest's ``selection`` section as the selection step takes it — the pool builder
    (iterate/loop/pool.py), the near-duplicate blocking, the focus and the cold start's features — for `iterate
    select` and `iterate simulate` alike: neither reads the manifest's section itself."""

    spec: KeypointSpec
    weights: Mapping[str, float]
    explore: float
    diversity_on: str  # "model" | "image"
    video_gap: int
    focus_metric: str
    feature_seed: int  # the seed of the cold start's image-feature PCA

    @property
    def focus_alpha(self) -> float:
        """The α the focus metric is computed at: evaluations that feed the focus compute their figures there too."""
        return parse(self.focus_metric)[1]


def selection_setup(m: Manifest) -> SelectionSetup:
    return from_section(
        SelectionSetup,
        m.selection,
        spec=keypoint_spec(m),
        weights=MappingProxyType(dict(m.selection.weights)),
        feature_seed=m.train.seed,
    )
