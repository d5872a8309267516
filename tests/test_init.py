"""`iterate init`: schema presets and schemas from COCO files (issue "Hardening", item 7)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.manifest import load_manifest

from conftest import SHARED


@pytest.mark.parametrize(
    "preset, joints, kind", [("coco17", 17, "person_box"), ("mpii16", 16, "head_box"), ("lsp14", 14, "head_segment")]
)
def test_presets_write_a_manifest_that_loads(tmp_path, preset, joints, kind):
    p = tmp_path / "m.yaml"
    r = CliRunner().invoke(app, ["init", "-m", str(p), "--preset", preset, "--project", "t"])
    assert r.exit_code == 0, r.output
    m = load_manifest(p, check_sources=False)
    k = m.keypoints
    assert k.num_joints == joints and k.normalizer.kind == kind
    flip = k.flip_index()
    assert sorted(flip) == list(range(joints))
    assert flip[k.index("left_knee")] == k.index("right_knee") and flip[k.index("right_ankle")] == k.index("left_ankle")
    assert len(k.height_chain) == 2 and all(len(c) >= 4 for c in k.height_chain)
    assert len(k.skeleton) >= joints - 2
    assert (m.model.heatmap_size, m.model.sigma) == (64, 3.0)  # the CPU recipe's targets at 128² input


def test_default_is_coco17_not_a_two_joint_schema(tmp_path):
    p = tmp_path / "m.yaml"
    assert CliRunner().invoke(app, ["init", "-m", str(p)]).exit_code == 0
    assert load_manifest(p, check_sources=False).keypoints.num_joints == 17


def test_from_coco_with_a_known_joint_set_takes_the_presets_pairs_and_chains(tmp_path):
    coco = SHARED / "mmpose_samples" / "coco" / "test_coco.json"
    p = tmp_path / "m.yaml"
    r = CliRunner().invoke(app, ["init", "-m", str(p), "--from-coco", str(coco)])
    assert r.exit_code == 0, r.output
    k = load_manifest(p, check_sources=False).keypoints
    assert k.num_joints == 17 and k.height_chain and k.normalizer.kind == "person_box"


def test_unknown_preset_is_one_line(tmp_path):
    r = CliRunner().invoke(app, ["init", "-m", str(tmp_path / "m.yaml"), "--preset", "horse"])
    assert r.exit_code == 2 and "--preset must be one of coco17, mpii16, lsp14" in r.output
