"""Settings declared once (issue 31, item 3): the manifest's sections (iterate/core/manifest.py) are the one place
each default is written; the frozen settings the libraries take declare none for the fields the manifest sets and
are built from the sections in iterate/loop/settings.py. A second default, a field the builder drops, or a
selection setting read off the raw manifest by the selection step fails here."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args, get_origin

import numpy as np
import pytest

from annotation.settings import LabelStudioSettings
from iterate.core import manifest as mf
from iterate.core.schema import NormalizerSpec
from iterate.loop.audit import thresholds
from iterate.loop.pool import PoolParts, build_pool
from iterate.loop.settings import (
    SelectionSetup,
    augment_config,
    from_section,
    model_config,
    selection_setup,
    studio_settings,
    train_config,
    train_setup,
)
from iterate.selection import strategies
from iterate.selection.audit import Thresholds
from model.config import AugmentConfig, ModelConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _manifest(**sections) -> mf.Manifest:
    """A manifest with every section at its defaults (``sections``: replaced ones)."""
    m = mf.Manifest.model_validate(
        {"project": "p", "target_size": 10, "keypoints": {"names": ["a", "b"], "normalizer": {"kind": "person_box"}}}
    )
    return m.model_copy(update=sections)


# library settings class, the manifest section that owns its fields, the section's key in the manifest (dotted),
# and how the loop builds the library settings from a manifest
PAIRS = [
    (ModelConfig, mf.ModelSettings, "model", lambda m: train_setup(m).model),
    (TrainConfig, mf.TrainSettings, "train", lambda m: train_setup(m).train),
    (AugmentConfig, mf.AugmentSettings, "train.augment", lambda m: train_setup(m).train.augment),
    (LabelStudioSettings, mf.LabelStudioSection, "label_studio", studio_settings),
    (Thresholds, mf.AuditSettings, "audit", thresholds),
    (SelectionSetup, mf.SelectionSettings, "selection", selection_setup),
]
IDS = [p[0].__name__ for p in PAIRS]

# fields the builder turns into the library's form instead of passing them on as they are
TRANSFORMED = {
    (LabelStudioSettings, "data_root"): lambda m, v: m.resolve(v),
    (LabelStudioSettings, "instructions"): lambda m, v: v if isinstance(v, str) else None,
    (SelectionSetup, "weights"): lambda m, v: dict(v),
    (TrainConfig, "augment"): lambda m, v: augment_config(v),
}


def _as_built(m: mf.Manifest, lib, name: str, value):
    return TRANSFORMED.get((lib, name), lambda m, v: v)(m, value)


def _plain(v):
    return dict(v) if isinstance(v, Mapping) else v


# a valid value other than the default, where the generic rule (below) does not give one
OTHER = {
    "url": "http://example.org:9000",
    "project_title": "another project",
    "token_env": "OTHER_TOKEN",
    "data_root": "elsewhere",
    "instructions": "Place every joint.",
    "backbone": "hrnet_w32",
    "freeze": "all_but_stage4",
    "weights": {"confidence": 2.0, "flip": 0.0},
    "augment": {"n": 0},
    "best_metric": "pckh@0.5",
    "focus_metric": "mean_sms@0.1",
}


def _owned(lib, section) -> list[str]:
    return [f.name for f in dataclasses.fields(lib) if f.name in section.model_fields]


def _other(section, name: str):
    if name in OTHER:
        return OTHER[name]
    info = section.model_fields[name]
    d = info.get_default(call_default_factory=True)
    if get_origin(info.annotation) is Literal:
        return next(c for c in get_args(info.annotation) if c != d)
    if isinstance(d, bool):
        return not d
    if isinstance(d, int):
        return d + 1
    if isinstance(d, float):
        return round(d + 0.1, 6) if d < 0.5 else d / 2
    raise AssertionError(f"{section.__name__}.{name}: add a non-default value to OTHER")


def _with_section(m: mf.Manifest, key: str, section) -> mf.Manifest:
    if key == "train.augment":
        return m.model_copy(update={"train": m.train.model_copy(update={"augment": section})})
    return m.model_copy(update={key: section})


def _section(m: mf.Manifest, key: str):
    obj = m
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(("lib", "section", "key", "build"), PAIRS, ids=IDS)
def test_the_library_declares_no_default_of_its_own(lib, section, key, build):
    """A field the manifest sets has its default in the manifest's section only."""
    owned = _owned(lib, section)
    assert owned, f"{lib.__name__} shares no field with {section.__name__}"
    doubled = [
        f.name
        for f in dataclasses.fields(lib)
        if f.name in owned and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
    ]
    assert not doubled, f"{lib.__name__} declares defaults the manifest's {section.__name__} owns: {doubled}"


@pytest.mark.parametrize(("lib", "section", "key", "build"), PAIRS, ids=IDS)
def test_the_built_settings_hold_the_manifests_defaults(lib, section, key, build):
    m = _manifest()
    built, sec = build(m), _section(m, key)
    assert isinstance(built, lib)
    for name in _owned(lib, section):
        want, got = _as_built(m, lib, name, getattr(sec, name)), _plain(getattr(built, name))
        assert got == want, f"{lib.__name__}.{name}: {got!r}, the manifest's default is {want!r}"


@pytest.mark.parametrize(("lib", "section", "key", "build"), PAIRS, ids=IDS)
def test_every_manifest_value_reaches_the_library(lib, section, key, build):
    """Each field the manifest owns, set to something other than its default, arrives in the library's settings."""
    base = _manifest()
    for name in _owned(lib, section):
        value = _other(section, name)
        sec = section.model_validate({**_section(base, key).model_dump(exclude_none=True), name: value})
        m = _with_section(base, key, sec)
        want, got = _as_built(m, lib, name, getattr(sec, name)), _plain(getattr(build(m), name))
        assert got == want, f"{key}.{name}={value!r} reached {lib.__name__} as {got!r}"
        assert want != _as_built(base, lib, name, getattr(_section(base, key), name)), f"{key}.{name}: no change"


def test_the_builders_without_a_manifest_give_its_defaults():
    """Tests and benches without a manifest build the library settings from the sections' defaults, with changes."""
    assert model_config() == train_setup(_manifest()).model
    assert train_config() == train_setup(_manifest()).train
    assert augment_config() == train_config().augment
    a = augment_config(n=0, flip=False)
    assert (a.n, a.flip, a.m) == (0, False, mf.AugmentSettings().m)
    assert train_config(epochs=3).epochs == 3
    assert train_config().replay_fraction == 0.0  # no replay source
    rp = mf.TrainSettings(replay={"source": "base"})
    assert train_config(rp).replay_fraction == mf.ReplaySettings(source="base").fraction
    with pytest.raises(TypeError):  # a field the section lacks must be given: no default to fall back on
        from_section(TrainConfig, mf.TrainSettings())


def test_the_commands_overrides_reach_the_setup():
    s = train_setup(_manifest(), epochs=7, freeze="all_but_stage4", heatmap_size=48)
    assert (s.train.epochs, s.train.freeze, s.model.heatmap_size) == (7, "all_but_stage4", 48)
    d = train_setup(_manifest())
    assert (d.train.epochs, d.train.freeze, d.model.heatmap_size) == (
        mf.TrainSettings().epochs,
        mf.TrainSettings().freeze,
        mf.ModelSettings().heatmap_size,
    )


def test_the_manifests_inference_settings_reach_the_checkpoint_record():
    m = _manifest()
    mm = m.model.model_copy(update={"refine": False, "refine_passes": 3, "localise": "box_head"})
    i = train_setup(m.model_copy(update={"model": mm})).infer
    assert (i.refine, i.refine_passes, i.localise) == (False, 3, "box_head")
    d = train_setup(m).infer
    assert (d.refine, d.refine_passes, d.localise) == (m.model.refine, m.model.refine_passes, m.model.localise)


def test_the_pool_takes_its_explore_share_from_the_selection_setup():
    """The strategy's Pool has no explore share of its own: the pool builder hands it the manifest's."""
    f = {f.name: f for f in dataclasses.fields(strategies.Pool)}["explore"]
    assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    sel = mf.SelectionSettings(explore=0.3)
    setup = selection_setup(_manifest(selection=sel))
    pool = build_pool(setup, "random", PoolParts(5, None, lambda: np.zeros((5, 0))), np.random.default_rng(0), [])
    assert pool.explore == 0.3
    assert selection_setup(_manifest()).explore == mf.SelectionSettings().explore


def test_the_normaliser_defaults_are_the_core_specs():
    """The PCKh normaliser's defaults are written once, on the core's frozen spec, and the manifest reads them."""
    spec, sec = NormalizerSpec(), mf.Normalizer()
    for f in dataclasses.fields(NormalizerSpec):
        got = getattr(sec, f.name)
        assert (tuple(got) if isinstance(got, list) else got) == getattr(spec, f.name), f.name


def test_one_class_per_name():
    """The manifest's section and the annotation package's settings are two classes with two names."""
    assert not hasattr(mf, "LabelStudioSettings")
    assert mf.Manifest.model_fields["label_studio"].annotation is mf.LabelStudioSection


def test_the_selection_step_reads_no_manifest_section():
    """`select`, `simulate` and the pool builder read the selection settings from :class:`SelectionSetup`, never
    the manifest's ``selection`` section field by field."""
    pat = re.compile(r"\b(?:m|self\.m|manifest)\.selection\.(\w+)")
    for rel in ("iterate/loop/select.py", "iterate/loop/simulate.py", "iterate/loop/pool.py"):
        read = set(pat.findall((REPO / rel).read_text()))
        assert not read, f"{rel} reads m.selection.{', '.join(sorted(read))}: take it from selection_setup(m)"


def test_the_instructions_reach_the_annotation_settings_in_either_form():
    ls = mf.LabelStudioSection(instructions={"extend": "Mind the wrists."})
    s = studio_settings(_manifest(label_studio=ls))
    assert (s.instructions, s.instructions_extend) == (None, "Mind the wrists.")
    d = studio_settings(_manifest())
    assert (d.instructions, d.instructions_extend, d.server_dir) == (None, None, _manifest().workspace_dir / "studio")
