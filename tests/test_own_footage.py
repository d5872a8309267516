"""Issue 30, items 3–5 ("Your own footage works"): strata derived from the keypoints for labels that carry none,
small and leaky splits, and messages that tell the truth — on real data (LSPET, the SLEAP dance clip, the
DeepLabCut reaching project) and a real local Label Studio where labels come back through it."""

from __future__ import annotations

import json

import numpy as np
import pytest
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
from iterate.loop.select import candidates
from iterate.loop.settings import keypoint_spec, labeling, studio_settings
from iterate.loop.studio import sync

from conftest import LSPET, REPO, SHARED, demo_manifest_dict, lsp_manifest, lspet_subset, studio_manifest

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


# -- a small project of a user's own COCO labels (no attributes), 3 val frames: items 3, 4 and 5 end to end ---------
@pytest.fixture(scope="module")
def small(tmp_path_factory, lspet_coco):
    """16 train, 3 val, 4 test frames of LSPET imported as a user's COCO file without `attributes`, 10 pool frames;
    the manifest lists the strata as plain choices (none is set on any label); one short retrain from scratch."""
    tmp = tmp_path_factory.mktemp("small")
    srcs = []
    for name, lo, hi, split, labels in (
        ("tr", 7001, 7016, "train", True),
        ("va", 7101, 7103, "val", True),
        ("te", 7301, 7304, "test", True),
        ("pool", 7201, 7210, "pool", False),
    ):
        f = _bare(lspet_coco, list(range(lo, hi + 1)), tmp / f"{name}.json")
        srcs.append(
            {"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split, "labels": labels}
        )
    p = lsp_manifest(
        tmp,
        srcs,
        train={"epochs": 2, "batch_size": 8, "warmup_steps": 1, "eval_every_steps": 1, "best_metric": "pckh@0.1"},
        selection={"dedup_hamming": 0},
    )
    assert _cli(p, "ingest").exit_code == 0
    retrain = _cli(p, "retrain")
    assert retrain.exit_code == 0, retrain.output
    report = _cli(p, "report")
    assert report.exit_code == 0, report.output
    m = load_manifest(p)
    data = json.loads((m.workspace_dir / "reports" / "round-00.json").read_text())
    md = (m.workspace_dir / "reports" / "round-00.md").read_text()
    return {"path": p, "m": m, "retrain": retrain.output, "data": data, "md": md}


def test_a_report_whose_strata_are_all_unset_says_so_and_what_to_do(small):
    md, focus = small["md"], small["data"]["focus"]
    assert focus["items"] == [] and focus["unset"] == ["posture", "occlusion"]
    assert "No val label carries `posture` and `occlusion`" in md
    assert "derive: torso_angle" in md and "iterate ingest" in md
    assert "posture=(not set)" not in md  # no all-zero focus table
    section = md.split("## Next chunk focus")[1].split("##")[0]
    assert "| rank |" not in section and "0%" not in section


def test_derived_strata_then_steer_the_same_project(small, tmp_path):
    """The same labels with the strata declared derived: ingest fills them, and the report's focus ranks them."""
    d = yaml.safe_load(small["path"].read_text())
    d["strata"], d["workspace"] = DERIVED, str(tmp_path / "ws2")
    p = tmp_path / "derived.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    import shutil

    shutil.copytree(small["m"].workspace_dir, tmp_path / "ws2")
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    r = _cli(p, "report")
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "ws2" / "reports" / "round-00.json").read_text())
    assert data["focus"]["unset"] == [] and {i["key"] for i in data["focus"]["items"]} == {"posture", "occlusion"}
    assert "(not set)" not in json.dumps(data["val"]["strata"])


def test_small_val_and_test_splits_are_warned_with_the_frames_a_narrower_interval_needs(small):
    from iterate.loop.retrain import split_warnings

    with Ledger(small["m"].workspace_dir) as led:
        warnings = split_warnings(led)
    assert len(warnings) == 2
    val, test = warnings
    assert val.startswith("val holds 3 labeled frame(s): too few to pick a checkpoint")
    assert "±37 points" in val and "±5 about 381" in val and "±10 points needs about 93" in val
    assert test.startswith("test holds 4 labeled frame(s)")
    for out in (small["retrain"], _cli(small["path"], "status").output):
        flat = " ".join(out.split())
        assert "val holds 3 labeled frame(s)" in flat and "test holds 4 labeled frame(s)" in flat, out
    assert small["md"].count("> **Warning:**") == 2 and "val holds 3 labeled frame(s)" in small["md"]


def test_the_rule_matches_the_bootstrap_where_a_frames_joints_agree():
    """frames_for_interval: the frame-level binomial. On frames whose joints are all right or all wrong (p = 50 %),
    the report's bootstrap over frames is as wide as the rule says at the N it gives."""
    from reports.metrics import frame_interval, frames_for_interval, interval_half_width

    for half in (5, 10):
        n = frames_for_interval(half)
        assert interval_half_width(n) <= half < interval_half_width(n - 1)
        right = np.zeros(n, bool)
        right[: n // 2] = True
        hits = np.repeat(right[:, None].astype(float), 14, axis=1)
        lo, hi = frame_interval(hits)
        assert abs((hi - lo) / 2 - half) < 0.6


def test_a_best_checkpoint_picked_among_ties_says_so(small):
    """3 val frames after 2 short epochs from scratch: both evaluations score PCKh@0.1 0.0 %; retrain and the report
    say the pick was a tie and how it was broken."""
    from model.train import best_pick_note

    mt = json.loads(json.dumps(small["data"]["model"]["metrics"]))
    assert "among 2 of 2 val evaluations tied at PCKh@0.1 0.0 %" in mt["best_pick"]
    assert "among 2 of 2" in " ".join(small["retrain"].split())
    assert "Best checkpoint was picked among 2 of 2" in small["md"].replace("The best", "Best")
    hist = [
        {"epoch": 0, "step": 10, "loss": 0.9, "pckh@0.1": 40.0, "pckh@0.5": 70.0},
        {"epoch": 1, "step": 20, "loss": 0.5, "pckh@0.1": 40.0, "pckh@0.5": 70.0},
        {"epoch": 2, "step": 30, "loss": 0.7, "pckh@0.1": 38.0, "pckh@0.5": 75.0},
    ]
    note = best_pick_note(hist, "pckh@0.1", 20)
    assert "2 of 3 val evaluations tied at PCKh@0.1 40.0 %" in note and "lower training loss 0.5000" in note
    assert best_pick_note(hist[:1] + hist[2:], "pckh@0.1", 10) is None


def test_the_report_says_the_training_time_spent_and_draws_the_worst_frames(small):
    """No `--minutes`: the report gives the seconds the run took, never a cap as time spent; the contact sheet is
    drawn over the worst val frames overall when no stratum can pick them."""
    from reports.report import training_time

    secs = small["data"]["model"]["metrics"]["seconds"]
    assert f"{secs:.0f} s of training, 2 epoch(s)" in small["md"] and "min of training" not in small["md"]
    assert f"in {secs:.0f} s" in small["retrain"] or "trained" in small["retrain"]
    assert training_time(27.0, 180.0) == "27 s of training (cap 3.0 min)"
    assert small["data"]["plots"]["worst"] and small["data"]["worst_of"] == "all"
    assert (small["m"].workspace_dir / "reports" / small["data"]["plots"]["worst"]).is_file()
    assert "Worst val frames overall" in small["md"]


def test_a_contact_sheet_that_cannot_be_drawn_says_why(tmp_path):
    from reports.report import contact_sheet

    spec = load_manifest(REPO / "data_manifest.yaml", check_sources=False).keypoints.spec()
    bad = tmp_path / "not_an_image.png"
    bad.write_text("no picture here")
    z = np.zeros((14, 2))
    why = contact_sheet(spec, [(str(bad), z, np.ones(14), z, "x")], tmp_path / "sheet.png")
    assert why == "none of the 1 worst val frames could be read" and not (tmp_path / "sheet.png").exists()
    from reports.report import _worst_section

    md = "\n".join(_worst_section({"model": {"id": 1}, "plots": {}, "worst_note": why}))
    assert "No contact sheet: none of the 1 worst val frames could be read." in md


def test_status_shows_the_base_as_the_model_until_one_is_trained(tmp_path):
    p = lsp_manifest(
        tmp_path, [], model={**demo_manifest_dict()["model"], "base": str(REPO / "model/weights/lspet_w18s_128.pt")}
    )
    r = _cli(p, "status")
    flat = " ".join(r.output.split())
    assert r.exit_code == 0 and "none yet (run" not in flat, r.output
    assert "model: the base" in flat and "lspet_w18s_128.pt" in flat and "none trained yet" in flat
    assert "val holds no labeled frame" in flat  # no val split yet: retrain could not pick a checkpoint


# -- the control, leaky splits, frame ranges, dropped items ----------------------------------------------------
def test_the_control_prints_no_interval_from_one_random_frame(lspet_coco):
    from reports.control import selection_control
    from reports.report import _control_section

    m = load_manifest(REPO / "data_manifest.yaml", check_sources=False)
    anns = [a for a in lspet_coco["annotations"] if 7001 <= a["image_id"] <= 7012]
    kp = np.stack([np.asarray(a["keypoints"], float).reshape(-1, 3) for a in anns])
    gt, vis = kp[:, :, :2], kp[:, :, 2]
    pred = gt + np.random.default_rng(0).normal(0, 6, gt.shape)  # a model a few pixels off
    explored = np.zeros(len(anns), bool)
    explored[-1] = True
    c = selection_control(keypoint_spec(m), pred, gt, vis, None, explored)
    c |= {"round": 1, "model": "base"}
    md = "\n".join(_control_section({"controls": [c]}))
    assert "too few random frames to judge (n=1)" in md
    e = c["pckh@0.5"]["explored"]
    assert e["frames"] == 1 and f"[{e['pckh@0.5']:.1f}, {e['pckh@0.5']:.1f}]" not in md and "Estimated from" not in md


@pytest.mark.parametrize("pool_first", [True, False])
def test_a_pool_picture_that_is_also_a_val_picture_is_dropped_from_the_pool(tmp_path, lspet_coco, pool_first):
    """Two LSPET images sit in both the pool and the val file: whichever is ingested first, val keeps its labeled
    frame, the pool's copy is never selectable, and ingest counts it."""
    pool = lspet_subset(lspet_coco, list(range(7501, 7509)), tmp_path / "pool.json")
    val = lspet_subset(lspet_coco, [7503, 7506, 7520], tmp_path / "val.json")
    srcs = [
        {"name": "pool", "kind": "coco", "path": str(pool), "images": str(LSPET), "split": "pool", "labels": False},
        {"name": "val", "kind": "coco", "path": str(val), "images": str(LSPET), "split": "val"},
    ]
    p = lsp_manifest(tmp_path, srcs if pool_first else srcs[::-1], selection={"dedup_hamming": 0})
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    assert "pool: 2 pool frame(s) dropped: the same picture as a val/test/train frame" in " ".join(r.output.split())
    with Ledger(load_manifest(p).workspace_dir) as led:
        names = lambda fs: sorted(f.path.rsplit("/", 1)[1] for f in fs)  # noqa: E731
        assert names(led.frames("val")) == ["im07503.jpg", "im07506.jpg", "im07520.jpg"]
        assert len(led.current_labels(("val",))) == 3
        pool_names = names(candidates(led))
        assert len(pool_names) == 6 and "im07503.jpg" not in pool_names and "im07506.jpg" not in pool_names
    r = _cli(p, "ingest")  # nothing comes back into the pool on a re-run
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert len(candidates(led)) == 6


def test_the_dance_video_in_the_pool_and_its_sleap_labels_in_val(tmp_path):
    """The issue's journey: the dance clip as the pool, its SLEAP labels as val. Frame 0 is in both: dropped from
    the pool; the near-duplicates ingest dropped are listed (--list-dropped, and a file in the workspace)."""
    from iterate.core.presets import PRESETS

    d = demo_manifest_dict()
    kp = {k: PRESETS["coco17"][k] for k in ("names", "flip_pairs", "skeleton", "height_joints", "normalizer")}
    d.update(
        project="own",
        workspace=str(tmp_path / "ws"),
        strata=DERIVED,
        keypoints=kp,
        sources=[
            {"name": "clip", "kind": "video", "path": str(SLEAP / "dance.mp4"), "every": 3, "split": "pool"},
            {"name": "labels", "kind": "sleap", "path": str(SLEAP / "dance.mp4.labels.slp"), "split": "val"},
        ],
    )
    d["model"]["base"] = None
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    r = _cli(p, "ingest", "--list-dropped")
    assert r.exit_code == 0, r.output
    flat = " ".join(r.output.split())
    assert "clip: 1 pool frame(s) dropped" in flat
    listed = (tmp_path / "ws" / "ingest-dropped.txt").read_text().splitlines()
    near = [x for x in listed if "near-duplicate of an earlier frame of this video" in x]
    held = [x for x in listed if "the same picture as val frame" in x]
    assert near and len(held) == 1 and all(x.startswith("clip\t") for x in listed)
    assert flat.count("dropped: clip: ") == len(listed) and f"{len(listed)} dropped item(s)" in flat
    with Ledger(tmp_path / "ws") as led:
        assert 0 not in {f.frame_index for f in candidates(led)}
        assert sorted(f.frame_index for f in led.frames("val")) == [0, 1, 2]
    r = _cli(p, "ingest")
    assert "ingest --list-dropped` prints them" in " ".join(r.output.split())


def test_a_video_source_takes_a_frame_range(tmp_path):
    """val from frames 0–99, the pool from frame 300 on, every 50th: held apart in time; a range is checked."""
    srcs = [
        {"name": "early", "kind": "video", "path": str(SLEAP / "dance.mp4"), "every": 50, "end": 100, "split": "val"},
        {"name": "late", "kind": "video", "path": str(SLEAP / "dance.mp4"), "every": 50, "start": 300, "split": "pool"},
    ]
    p = lsp_manifest(tmp_path, srcs, selection={"dedup_hamming": 0})
    r = _cli(p, "ingest")
    assert r.exit_code == 0, r.output
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert sorted(f.frame_index for f in led.frames("val")) == [0, 50]
        assert sorted(f.frame_index for f in led.frames("pool")) == [300, 350, 400]
    for bad, needle in (
        ({"start": 100, "end": 100}, "sources[0]: end (100) must be after start (100)"),
        ({"start": -1}, "sources[0].start"),
    ):
        p = lsp_manifest(tmp_path, [{**srcs[0], "end": None, **bad}])
        r = _cli(p, "status")
        assert r.exit_code == 2 and needle in r.output and len(r.output.strip().splitlines()) == 1, r.output
    coco = {"name": "c", "kind": "coco", "path": str(LSPET / "annotations.coco.json"), "start": 10}
    r = _cli(lsp_manifest(tmp_path, [coco]), "status")
    assert r.exit_code == 2 and "a frame range is for a video source, not coco" in r.output, r.output
    p = lsp_manifest(tmp_path, [{**srcs[1], "start": 5000}])
    r = _cli(p, "ingest")
    assert r.exit_code == 0 and "start 5000 lies past the video's last frame (450 frames)" in " ".join(r.output.split())
