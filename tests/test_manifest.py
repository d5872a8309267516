import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.errors import ManifestError
from iterate.core.manifest import load_manifest

from conftest import REPO, demo_manifest_dict


def test_repo_manifest_loads_and_plans_10_40_50():
    m = load_manifest(REPO / "data_manifest.yaml")
    assert m.chunks == [0.1, 0.4, 0.5]
    assert m.chunk_targets() == [40, 160, 200]
    assert m.keypoints.num_joints == 14
    flip = m.keypoints.flip_index()
    assert flip[m.keypoints.index("left_ankle")] == m.keypoints.index("right_ankle")
    assert sorted(flip) == list(range(14))
    assert m.keypoints.joint_weights()[m.keypoints.index("head_top")] == 1.5
    assert m.label_studio.token_env == "LABEL_STUDIO_TOKEN"


def _write(tmp_path, mutate):
    d = demo_manifest_dict()
    d["sources"] = [{"kind": "coco", "path": str(REPO / "demo_data/val.coco.json"), "split": "val"}]
    mutate(d)
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.update(target_size="many"), "target_size"),
        (
            lambda d: d["keypoints"]["flip_pairs"].append(["left_toe", "right_ankle"]),
            "flip_pairs[6][0]: unknown joint 'left_toe'",
        ),
        (lambda d: d.update(chunks=[0.1, 0.4, 0.4]), "chunks: fractions must sum to 1"),
        (
            lambda d: d["sources"].append({"kind": "images", "path": "/nonexistent/frames"}),
            "sources[1].path: folder not found",
        ),
        (lambda d: d["keypoints"]["normalizer"].update(joints=["neck"]), "head_segment needs exactly two joints"),
        (lambda d: d["label_studio"].update(token_env="abc def 123"), "label_studio.token_env"),
    ],
)
def test_bad_manifest_names_the_field(tmp_path, mutate, expected):
    p = _write(tmp_path, mutate)
    with pytest.raises(ManifestError) as e:
        load_manifest(p)
    assert expected in str(e.value)
    assert str(p) in str(e.value)


def test_bad_manifest_cli_one_line_exit_2(tmp_path):
    p = _write(tmp_path, lambda d: d.update(chunks=[0.5, 0.6]))
    r = CliRunner().invoke(app, ["status", "--manifest", str(p)])
    assert r.exit_code == 2
    assert "fractions must sum to 1" in r.output
    assert "Traceback" not in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1


def test_missing_manifest(tmp_path):
    r = CliRunner().invoke(app, ["status", "--manifest", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "manifest not found" in r.output
