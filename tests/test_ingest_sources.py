"""Labels a team already has, from other tools (issue "Hardening", item 7): a Label Studio JSON export."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest

from conftest import SHARED, demo_manifest_dict

LS = SHARED / "label_studio_ui"


def _manifest(tmp_path, names, export=LS / "export_full_json.json") -> object:
    d = demo_manifest_dict()
    d.update(
        project="ls-import",
        workspace=str(tmp_path / "ws"),
        strata={"posture": ["supine", "prone", "side"]},
        keypoints={"names": names, "normalizer": {"kind": "person_box"}},
        sources=[{"name": "ls", "kind": "labelstudio", "path": str(export), "images": str(LS), "split": "train"}],
    )
    d["model"]["base"] = None
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_label_studio_export_keeps_joints_visibility_and_strata(tmp_path):
    """The real UI export: task 1 clicked by hand (neck at pixel (213, 137), head_top occluded, posture side),
    task 2 from a pre-annotation, tasks 3 and 7 skipped (no label)."""
    p = _manifest(tmp_path, ["head_top", "neck", "left_ankle"])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        frames = {f.path.rsplit("/", 1)[1]: f for f in led.frames()}
        assert sorted(frames) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
        labels = {f.path.rsplit("/", 1)[1]: lab for f, lab in led.current_labels()}
    assert sorted(labels) == ["frame_0000.png", "frame_0001.png"]  # the skipped tasks carry no label
    first = labels["frame_0000.png"]
    head, neck, ankle = first.keypoints
    assert neck[:2] == pytest.approx([212.987, 137.013], abs=0.01) and neck[2] == 2
    assert head[2] == 1 and ankle == [0.0, 0.0, 0]  # occluded kept; a joint not placed is not labeled
    assert first.attributes == {"posture": "side"} and labels["frame_0001.png"].attributes == {"posture": "supine"}
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])  # re-running adds nothing
    assert r.exit_code == 0
    with Ledger(m.workspace_dir) as led:
        assert led.raw("SELECT COUNT(*) FROM labels").fetchone()[0] == 2


def test_label_studio_export_with_other_joint_names_is_refused_whole(tmp_path):
    p = _manifest(tmp_path, ["head_top", "neck", "right_ankle"])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 2 and "unknown joint 'left_ankle'" in r.output and "task 2" in r.output
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert led.frames() == []


def test_json_min_export_is_refused_with_the_reason(tmp_path):
    bad = tmp_path / "min.json"
    bad.write_text(json.dumps({"not": "a list"}))
    p = _manifest(tmp_path, ["head_top", "neck", "left_ankle"], export=bad)
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 2 and "full `JSON` export" in r.output


DLC = SHARED / "dlc_reaching"


def _dlc_manifest(tmp_path, names):
    d = demo_manifest_dict()
    d.update(
        project="dlc-import",
        workspace=str(tmp_path / "ws"),
        strata={},
        keypoints={
            "names": names,
            "skeleton": [["Hand", "Finger1"]] if "Finger1" in names else [],
            "normalizer": {"kind": "person_box"},
        },
        sources=[{"name": "dlc", "kind": "dlc", "path": str(DLC / "config.yaml"), "split": "train"}],
    )
    d["model"]["base"] = None
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_deeplabcut_project_labels_by_bodypart_name(tmp_path):
    import csv

    rows = list(csv.reader(open(next((DLC / "labeled-data" / "reachingvideo1").glob("CollectedData_*.csv")))))[3:]
    # the schema lists the bodyparts in another order than the project: matched by name
    p = _dlc_manifest(tmp_path, ["Joystick2", "Joystick1", "Tongue", "Finger1", "Hand"])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        labels = {f.path.rsplit("/", 1)[1]: lab for f, lab in led.current_labels()}
        assert len(led.frames()) == len(rows)
    want = {r[0].rsplit("/", 1)[1]: r[1:] for r in rows}
    kp = labels["img005.png"].keypoints
    hand, tongue = kp[4], kp[2]
    assert hand == pytest.approx([float(want["img005.png"][0]), float(want["img005.png"][1]), 2])
    assert tongue == [0.0, 0.0, 0]  # an empty cell: not labeled
    assert labels["img005.png"].source == "dlc"
    assert len(labels) == sum(1 for v in want.values() if any(c.strip() for c in v))


def test_deeplabcut_bodyparts_that_differ_are_refused(tmp_path):
    p = _dlc_manifest(tmp_path, ["Hand", "Finger1", "Tongue", "Joystick1", "Nose"])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 2 and "lacks Nose; it has Joystick2" in r.output


SLEAP = SHARED / "sleap_dance"


def test_sleap_user_labeled_frames_in_skeleton_order(tmp_path):
    """The dance clip's .slp: user-labeled instances only, nodes by name. The points are stored in the skeleton's
    node order: the nose is at the top of the dancer, the ankles at the bottom (the file's global node list is
    another order — reading by it puts the nose at the ankle)."""
    from iterate.core.presets import PRESETS

    d = demo_manifest_dict()
    coco17 = PRESETS["coco17"]
    d.update(
        project="sleap-import",
        workspace=str(tmp_path / "ws"),
        strata={},
        keypoints={k: coco17[k] for k in ("names", "flip_pairs", "skeleton", "height_joints", "normalizer")},
        sources=[{"name": "dance", "kind": "sleap", "path": str(SLEAP / "dance.mp4.labels.slp"), "split": "train"}],
    )
    d["model"]["base"] = None
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    m = load_manifest(p)
    names = m.keypoints.names
    with Ledger(m.workspace_dir) as led:
        labels = led.current_labels()
        frames = led.frames()
        assert len(frames) == len({f.frame_index for f in frames}) >= 3
        assert all(f.width == 406 and f.height == 720 for f in frames)
        for _, lab in labels:
            kp = lab.keypoints
            nose, ankles = kp[names.index("nose")], [kp[names.index(j)] for j in ("left_ankle", "right_ankle")]
            if nose[2] and all(a[2] for a in ankles):
                assert nose[1] < min(a[1] for a in ankles) - 200  # head far above the feet in a 720-px frame
        first = next(lab for f, lab in labels if f.frame_index == 0)
        assert first.keypoints[names.index("nose")][:2] == pytest.approx([193.83, 230.05], abs=0.01)
        assert first.keypoints[names.index("right_ankle")][2] == 1  # marked not visible, position kept: occluded
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0 and "changed since" not in r.output
