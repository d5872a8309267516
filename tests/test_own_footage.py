"""Issue 30, items 3–5 ("Your own footage works"): strata derived from the keypoints for labels that carry none,
small and leaky splits, and messages that tell the truth — on real data (LSPET, the SLEAP dance clip, the
DeepLabCut reaching project) and a real local Label Studio where labels come back through it."""

from __future__ import annotations

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from annotation.client import Studio
from annotation.labeling import to_result
from annotation.push import push
from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.core.strata import DEFAULT_THRESHOLDS, DEFAULT_VALUES, Derivation, derive
from iterate.loop.ingest import ingest
from iterate.loop.settings import labeling, studio_settings
from iterate.loop.studio import sync

from conftest import LSPET, SHARED, demo_manifest_dict, lsp_manifest, lspet_subset, studio_manifest

DERIVED = {
    "posture": {"derive": "torso_angle", "values": ["upright", "leaning", "horizontal", "inverted", "unknown"]},
    "occlusion": {"derive": "hidden_joints", "values": ["none", "partial", "heavy"]},
}
SLEAP = SHARED / "sleap_dance"
DLC = SHARED / "dlc_reaching"


def _cli(p, *args):
    return CliRunner().invoke(app, [*args, "-m", str(p)], env={"COLUMNS": "200"})


def _bare(coco: dict, ids: list[int], out):
    """An LSPET subset as a user's own COCO file would come: the same keypoints, no `attributes`."""
    lspet_subset(coco, ids, out)
    d = json.loads(out.read_text())
    for a in d["annotations"]:
        a.pop("attributes", None)
    out.write_text(json.dumps(d))
    return out


def _own_manifest(tmp_path, names_from: str, source: dict, strata=DERIVED):
    """A manifest of another joint set (the coco17 preset, or the DeepLabCut project's body parts)."""
    from iterate.core.presets import PRESETS

    d = demo_manifest_dict()
    if names_from == "coco17":
        kp = {k: PRESETS["coco17"][k] for k in ("names", "flip_pairs", "skeleton", "height_joints", "normalizer")}
    else:
        kp = {"names": ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"], "normalizer": {"kind": "person_box"}}
    d.update(project="own", workspace=str(tmp_path / "ws"), strata=strata, keypoints=kp, sources=[source])
    d["model"]["base"] = None
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


# -- item 3: strata when the labels have none ---------------------------------------------------------------
def test_torso_angle_and_hidden_joints_reproduce_lspets_own_attributes(tmp_path, lspet_coco):
    """400 LSPET labels imported without their attributes: the derived posture and occlusion are LSPET's own
    (which were derived by this rule), in every posture the sample holds."""
    ids = list(range(1, 8001, 20))
    p = lsp_manifest(
        tmp_path,
        [
            {
                "name": "mine",
                "kind": "coco",
                "path": str(_bare(lspet_coco, ids, tmp_path / "bare.json")),
                "images": str(LSPET),
                "split": "val",
            }
        ],
        strata=DERIVED,
    )
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    truth = {a["image_id"]: a["attributes"] for a in lspet_coco["annotations"] if a["image_id"] in set(ids)}
    by_file = {im["file_name"].rsplit("/", 1)[-1]: im["id"] for im in lspet_coco["images"]}
    with Ledger(load_manifest(p).workspace_dir) as led:
        labels = led.current_labels()
    assert len(labels) == len(ids)
    got = {by_file[f.path.rsplit("/", 1)[-1]]: lab.attributes for f, lab in labels}
    assert {i: (a["posture"], a["occlusion"]) for i, a in got.items()} == {
        i: (a["posture"], a["occlusion"]) for i, a in truth.items()
    }
    assert {a["posture"] for a in got.values()} == set(DEFAULT_VALUES["torso_angle"])  # every bin, unknown too
    assert {a["occlusion"] for a in got.values()} == {"none", "partial", "heavy"}


def test_thresholds_are_settable_and_a_label_that_carries_a_value_keeps_it(tmp_path, lspet_coco):
    """hidden_joints with thresholds [1, 2]: one hidden joint is `partial`, two or more `heavy`; a COCO file's
    own attribute is never overwritten."""
    ids = [a["image_id"] for a in lspet_coco["annotations"] if sum(v == 0 for v in a["keypoints"][2::3]) == 2][:3]
    f = lspet_subset(lspet_coco, ids, tmp_path / "withattrs.json")
    strata = {"posture": DERIVED["posture"], "occlusion": {"derive": "hidden_joints", "thresholds": [1, 2]}}
    p = lsp_manifest(
        tmp_path, [{"name": "a", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}], strata=strata
    )
    assert _cli(p, "ingest").exit_code == 0
    with Ledger(load_manifest(p).workspace_dir) as led:
        labels = [lab for _, lab in led.current_labels()]
    assert [lab.attributes["occlusion"] for lab in labels] == ["partial"] * 3  # the file's own value, kept
    (tmp_path / "b").mkdir()
    bare = _bare(lspet_coco, ids, tmp_path / "b" / "bare.json")
    p2 = lsp_manifest(
        tmp_path / "b",
        [{"name": "b", "kind": "coco", "path": str(bare), "images": str(LSPET), "split": "val"}],
        strata=strata,
    )
    assert _cli(p2, "ingest").exit_code == 0
    with Ledger(load_manifest(p2).workspace_dir) as led:
        assert [lab.attributes["occlusion"] for _, lab in led.current_labels()] == ["heavy"] * 3


def test_a_bad_derived_stratum_is_one_line_naming_it(tmp_path):
    for strata, needle in (
        ({"posture": {"derive": "torso"}}, "strata: posture.derive: Input should be 'torso_angle'"),
        ({"posture": {"derive": "torso_angle", "values": ["up", "down"]}}, "takes 5 values"),
        ({"occlusion": {"derive": "hidden_joints", "thresholds": [1.5]}}, "whole numbers"),
        ({"posture": {"derive": "torso_angle", "thresholds": [60, 30, 120]}}, "strictly increasing"),
    ):
        p = lsp_manifest(tmp_path, [], strata=strata)
        r = _cli(p, "status")
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and needle in lines[0] and "data_manifest.yaml" in lines[0], r.output


def test_sleap_import_gets_posture_and_occlusion_from_its_keypoints(tmp_path):
    """The dance clip's 3 user-labeled frames (COCO-17 names, no neck: the torso runs to mid-shoulder): the dancer
    stands, and the occlusion counts the nodes marked not visible or not placed."""
    src = {"name": "dance", "kind": "sleap", "path": str(SLEAP / "dance.mp4.labels.slp"), "split": "val"}
    p = _own_manifest(tmp_path, "coco17", src)
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    names = load_manifest(p).keypoints.names
    occ = Derivation("hidden_joints", DEFAULT_VALUES["hidden_joints"], DEFAULT_THRESHOLDS["hidden_joints"])
    with Ledger(load_manifest(p).workspace_dir) as led:
        labels = led.current_labels()
    assert len(labels) >= 3
    for _, lab in labels:
        kp = np.asarray(lab.keypoints)
        assert lab.attributes["posture"] == "upright"
        hidden = int((kp[:, 2] < 2).sum())
        assert lab.attributes["occlusion"] == derive(occ, kp, names)
        assert lab.attributes["occlusion"] == ("none" if hidden == 0 else "partial" if hidden <= 3 else "heavy")
    assert any(lab.attributes["occlusion"] != "none" for _, lab in labels)  # the right ankle is marked occluded
    r = _cli(p, "status")
    assert r.exit_code == 0 and "upright" in r.output and "(not set)" not in r.output, r.output


def test_deeplabcut_import_has_no_torso_so_posture_is_unknown_and_said(tmp_path):
    """DeepLabCut's reaching project has 5 body parts (hand, finger, tongue, joysticks): no hip, neck or shoulder,
    so the torso angle is `unknown` on every label — ingest says why; occlusion still counts empty cells."""
    src = {"name": "dlc", "kind": "dlc", "path": str(DLC / "config.yaml"), "split": "train"}
    p = _own_manifest(tmp_path, "dlc", src)
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    assert "no hip with a neck or shoulder" in r.output and "'unknown'" in r.output, r.output
    with Ledger(load_manifest(p).workspace_dir) as led:
        labels = [lab for _, lab in led.current_labels()]
    assert labels and {lab.attributes["posture"] for lab in labels} == {"unknown"}
    for lab in labels:
        n = sum(1 for _, _, v in lab.keypoints if v < 2)
        assert lab.attributes["occlusion"] == ("none" if n == 0 else "partial" if n <= 3 else "heavy")
    assert {lab.attributes["occlusion"] for lab in labels} >= {"none", "partial"}


def test_labels_stored_before_the_manifest_derived_them_are_filled_at_the_next_ingest(tmp_path):
    src = {"name": "dance", "kind": "sleap", "path": str(SLEAP / "dance.mp4.labels.slp"), "split": "val"}
    p = _own_manifest(tmp_path, "coco17", src, strata={"posture": ["upright", "leaning"], "occlusion": []})
    assert _cli(p, "ingest").exit_code == 0
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert all("posture" not in lab.attributes for _, lab in led.current_labels())
    d = yaml.safe_load(p.read_text())
    d["strata"] = DERIVED
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    with Ledger(load_manifest(p).workspace_dir) as led:
        labels = led.current_labels()
        assert all(lab.attributes["posture"] == "upright" and lab.version == 2 for _, lab in labels)
        assert all(len(led.label_history(f.id, lab.instance)) == 2 for f, lab in labels)  # the old version stays
    r = _cli(p, "ingest")  # nothing left to fill: no new version
    assert r.exit_code == 0 and "filled the derived strata" not in r.output


def test_labels_synced_from_label_studio_without_strata_get_them(tmp_path, lspet_coco, studio):
    """Annotators place the joints in a real Label Studio and choose no posture or occlusion: `sync-labels` stores
    the strata derived from the joints they placed — LSPET's own attributes for those joints."""
    ids = [7411, 7412, 7413, 7414, 7415, 7416]
    pool = lspet_subset(lspet_coco, ids, tmp_path / "pool.json")
    src = [{"name": "pool", "kind": "coco", "path": str(pool), "images": str(LSPET), "split": "pool", "labels": False}]
    m = load_manifest(studio_manifest(tmp_path, studio["port"], src, "derived-sync", strata=DERIVED))
    truth = {a["image_id"]: a for a in lspet_coco["annotations"] if a["image_id"] in ids}
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        st = Studio.from_settings(studio_settings(m))
        push(labeling(m), led, st, [f.id for f in led.frames("pool")])
        tasks = dict(led.raw("SELECT frame_id, task_id FROM tasks").fetchall())
        by_frame = {}
        for f in led.frames("pool"):
            iid = int(f.path.rsplit("im", 1)[1].split(".")[0])
            kp = np.asarray(truth[iid]["keypoints"], float).reshape(-1, 3).tolist()
            st.create_annotation(tasks[f.id], to_result(labeling(m), kp, f.width, f.height))  # no stratum chosen
            by_frame[f.id] = truth[iid]["attributes"]
        s = sync(m, led)
        assert s.new == len(ids)
        got = {f.id: lab.attributes for f, lab in led.current_labels()}
    assert {k: (a["posture"], a["occlusion"]) for k, a in got.items()} == {
        k: (a["posture"], a["occlusion"]) for k, a in by_frame.items()
    }
