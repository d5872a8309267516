"""`iterate export` (issue 32): real labels ingested, exported, and re-ingested into a fresh project give the same
labels; the files load in readers this code did not write (pycocotools, the DeepLabCut reader's format);
dataset versions reproduce byte for byte; bad input is one line."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.core.presets import PRESETS

from conftest import LSPET, SHARED, demo_manifest_dict, lspet_subset

RUN = CliRunner()


def _ok(args: list[str]) -> str:
    r = RUN.invoke(app, args)
    assert r.exit_code == 0, r.output
    return r.output


def _one_line(args: list[str]) -> str:
    r = RUN.invoke(app, args)
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def _manifest(tmp: Path, name: str, sources: list[dict], keypoints: dict, strata: dict) -> Path:
    d = demo_manifest_dict()
    d.update(project=name, workspace=str(tmp / "ws"), strata=strata, keypoints=keypoints, sources=sources)
    d["model"]["base"] = None
    tmp.mkdir(parents=True, exist_ok=True)
    p = tmp / "m.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _labels(p: Path) -> dict[str, dict[int, tuple]]:
    """image file bytes' sha1 → {person: (keypoints, strata, head box)}: the same picture in two projects."""
    m = load_manifest(p)
    out: dict[str, dict[int, tuple]] = {}
    with Ledger(m.workspace_dir) as led:
        for f, lab in led.current_labels():
            key = hashlib.sha1(Path(f.path).read_bytes()).hexdigest()
            out.setdefault(key, {})[lab.instance] = (lab.keypoints, lab.attributes, lab.head_box)
    return out


def _reingest(tmp: Path, export: Path, keypoints: dict, strata: dict) -> Path:
    """A fresh project whose sources are the export's COCO files."""
    srcs = [
        {"name": f"x{sp}", "kind": "coco", "path": str(f), "images": str(export / "images"), "split": sp}
        for sp in ("train", "val", "test")
        if (f := export / "annotations" / f"{sp}.json").is_file()
    ]
    p = _manifest(tmp, "again", srcs, keypoints, strata)
    _ok(["ingest", "-m", str(p)])
    return p


LSP_KEYS = {k: demo_manifest_dict()["keypoints"][k] for k in ("names", "flip_pairs", "skeleton", "weights")}
LSP_KEYS["normalizer"] = {"kind": "head_segment", "joints": ["neck", "head_top"]}
LSP_STRATA = demo_manifest_dict()["strata"]


@pytest.fixture
def lspet_project(tmp_path, lspet_coco) -> Path:
    srcs = []
    for name, ids, split in (
        ("pool", range(1, 9), "pool"),
        ("va", range(101, 106), "val"),
        ("te", range(201, 205), "test"),
    ):
        f = lspet_subset(lspet_coco, list(ids), tmp_path / f"{name}.json")
        srcs.append({"name": name, "kind": "coco", "path": str(f), "images": str(LSPET), "split": split})
    p = _manifest(tmp_path / "a", "lspet-export", srcs, LSP_KEYS, LSP_STRATA)
    _ok(["ingest", "-m", str(p)])
    return p


def test_lspet_coco_round_trip_loads_in_pycocotools(lspet_project, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "out"
    text = _ok(["export", "-m", str(lspet_project), "--out", str(out)])
    assert "dataset v1 (new" in text
    for split, n in (("train", 8), ("val", 5), ("test", 4)):
        c = COCO(str(out / "annotations" / f"{split}.json"))  # a reader none of this code wrote
        assert len(c.getImgIds()) == n and len(c.getAnnIds()) == n
        cat = c.loadCats(1)[0]
        assert cat["keypoints"] == LSP_KEYS["names"] and len(cat["skeleton"]) == len(LSP_KEYS["skeleton"])
        ann = c.loadAnns(c.getAnnIds())[0]
        assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3]) and ann["iscrowd"] == 0
        assert ann["iterate"]["origin"] == "ingest" and ann["iterate"]["label_version"] == 1
        img = c.loadImgs(ann["image_id"])[0]
        assert (out / "images" / img["file_name"]).is_file()
    assert c.loadImgs(c.getImgIds())[0]["file_name"].startswith("te/im00")
    again = _reingest(tmp_path / "b", out, LSP_KEYS, LSP_STRATA)
    before, after = _labels(lspet_project), _labels(again)
    assert len(before) == 17 and after == before  # coordinates, visibility, strata, head boxes
    sheet = (out / "DATASET.md").read_text()
    assert "| train | 8 | 8 |" in sheet and "v1, recorded" in sheet and "## Per posture" in sheet


def test_people_and_head_boxes_round_trip_posetrack(tmp_path):
    """PoseTrack18's val sample: 11 people in one frame, head boxes on every person, visibility 0/1."""
    pt = SHARED / "mmpose_samples" / "posetrack18"
    coco = json.loads((pt / "annotations" / "test_posetrack18_val.json").read_text())
    names = coco["categories"][0]["keypoints"]
    keys = {"names": names, "normalizer": {"kind": "head_box"}}
    src = [
        {
            "name": "pt",
            "kind": "coco",
            "path": str(pt / "annotations" / "test_posetrack18_val.json"),
            "images": str(pt),
            "split": "val",
        }
    ]
    p = _manifest(tmp_path / "a", "pt", src, keys, {})
    _ok(["ingest", "-m", str(p)])
    out = tmp_path / "out"
    _ok(["export", "-m", str(p), "--out", str(out), "--images", "copy"])
    val = json.loads((out / "annotations" / "val.json").read_text())
    assert len(val["images"]) == 3 and len(val["annotations"]) == 14
    assert all(len(a["bbox_head"]) == 4 for a in val["annotations"])
    assert not any(os.path.islink(out / "images" / i["file_name"]) for i in val["images"])  # copies
    before, after = _labels(p), _labels(_reingest(tmp_path / "b", out, keys, {}))
    assert after == before and max(len(v) for v in before.values()) == 11
    assert {k[2] for v in before.values() for k, _, _ in v.values() for k in k} == {0, 1}


LS = SHARED / "label_studio_ui"


def test_label_studio_ui_export_round_trip_keeps_occluded_and_strata(tmp_path):
    keys = {"names": ["head_top", "neck", "left_ankle"], "normalizer": {"kind": "person_box"}}
    strata = {"posture": ["supine", "prone", "side"]}
    src = [
        {
            "name": "ls",
            "kind": "labelstudio",
            "path": str(LS / "export_full_json.json"),
            "images": str(LS),
            "split": "train",
        }
    ]
    p = _manifest(tmp_path / "a", "ls", src, keys, strata)
    _ok(["ingest", "-m", str(p)])
    out = tmp_path / "out"
    _ok(["export", "-m", str(p), "--out", str(out)])
    before, after = _labels(p), _labels(_reingest(tmp_path / "b", out, keys, strata))
    assert after == before and len(before) == 2
    occluded = [k for v in before.values() for kps, _, _ in v.values() for k in kps if k[2] == 1]
    assert occluded and {a for v in before.values() for _, a, _ in v.values() for a in a.values()} == {"side", "supine"}
    ann = json.loads((out / "annotations" / "train.json").read_text())["annotations"]
    assert all(a["iterate"]["source"] == "labelstudio-export" and a["iterate"]["annotator"] for a in ann)


SLEAP = SHARED / "sleap_dance"
COCO17 = {k: PRESETS["coco17"][k] for k in ("names", "flip_pairs", "skeleton", "height_joints", "normalizer")}


def test_sleap_round_trip_keeps_each_dancer_and_occluded_nodes(tmp_path):
    src = [{"name": "dance", "kind": "sleap", "path": str(SLEAP / "dance.mp4.labels.slp"), "split": "train"}]
    p = _manifest(tmp_path / "a", "sleap", src, COCO17, {})
    _ok(["ingest", "-m", str(p)])
    out = tmp_path / "out"
    _ok(["export", "-m", str(p), "--out", str(out), "--format", "mmpose"])
    tr = json.loads((out / "annotations" / "train.json").read_text())
    assert all(i["iterate"]["video"].endswith("dance.mp4") for i in tr["images"])
    before, after = _labels(p), _labels(_reingest(tmp_path / "b", out, COCO17, {}))
    assert after == before and len(before) >= 3
    assert any(k[2] == 1 for v in before.values() for kps, _, _ in v.values() for k in kps)  # not-visible nodes


DLC = SHARED / "dlc_reaching"
DLC_KEYS = {
    "names": ["Hand", "Finger1", "Tongue", "Joystick1", "Joystick2"],
    "skeleton": [["Hand", "Finger1"], ["Joystick1", "Joystick2"]],
    "normalizer": {"kind": "person_box"},
}


def test_deeplabcut_project_round_trip(tmp_path):
    src = [{"name": "reach", "kind": "dlc", "path": str(DLC / "config.yaml"), "split": "train"}]
    p = _manifest(tmp_path / "a", "reach", src, DLC_KEYS, {})
    _ok(["ingest", "-m", str(p)])
    out = tmp_path / "out"
    _ok(["export", "-m", str(p), "--out", str(out), "--format", "dlc", "--scorer", "Mackenzie"])
    csv_path = out / "labeled-data" / "reach" / "CollectedData_Mackenzie.csv"
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("scorer,,,Mackenzie,") and rows[2].startswith("coords,,,x,y,x,y")
    assert rows[3].startswith("labeled-data,reach,img")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["scorer"] == "Mackenzie" and cfg["bodyparts"] == DLC_KEYS["names"]
    assert [Path(v).stem for v in cfg["video_sets"]] == ["reach"]  # DeepLabCut finds labeled-data/<video stem>
    src2 = [{"name": "again", "kind": "dlc", "path": str(out / "config.yaml"), "split": "train"}]
    p2 = _manifest(tmp_path / "b", "again", src2, DLC_KEYS, {})
    _ok(["ingest", "-m", str(p2)])  # the importer reads the format: the round trip is the test
    before, after = _labels(p), _labels(p2)
    assert after == before and len(before) > 40


def test_deeplabcut_export_says_what_it_cannot_carry(tmp_path):
    """Occluded joints, strata and head boxes have no place in DeepLabCut's CSV: counted in DATASET.md, and the
    re-imported points are visible."""
    keys = {"names": ["head_top", "neck", "left_ankle"], "normalizer": {"kind": "person_box"}}
    src = [
        {
            "name": "ls",
            "kind": "labelstudio",
            "path": str(LS / "export_full_json.json"),
            "images": str(LS),
            "split": "train",
        }
    ]
    p = _manifest(tmp_path / "a", "ls", src, keys, {"posture": ["supine", "prone", "side"]})
    _ok(["ingest", "-m", str(p)])
    out = tmp_path / "out"
    _ok(["export", "-m", str(p), "--out", str(out), "--format", "dlc"])
    sheet = (out / "DATASET.md").read_text()
    before = _labels(p)
    n_occ = sum(k[2] == 1 for v in before.values() for kps, _, _ in v.values() for k in kps)
    assert f"- occluded joints written as plain points (DeepLabCut reads every point as visible): {n_occ}" in sheet
    assert "- labels' strata (attributes): 2" in sheet
    src2 = [{"name": "again", "kind": "dlc", "path": str(out / "config.yaml"), "split": "train"}]
    p2 = _manifest(tmp_path / "b", "again", src2, keys, {"posture": ["supine", "prone", "side"]})
    _ok(["ingest", "-m", str(p2)])
    after = _labels(p2)
    for key, people in before.items():
        want = [[x, y, 2 if v else 0] for x, y, v in people[0][0]]
        assert after[key][0][0] == want and after[key][0][1] == {}


def test_mmpose_meta_information(lspet_project, tmp_path):
    """dataset_info.py holds what MMPose 1.x's parse_pose_metainfo asserts and reads: names, symmetric swaps from
    the flip pairs, links between known joints, joint_weights from keypoints.weights, one sigma per joint."""
    out = tmp_path / "out"
    _ok(["export", "-m", str(lspet_project), "--out", str(out), "--format", "mmpose", "--splits", "val"])
    info = runpy.run_path(str(out / "dataset_info.py"))["dataset_info"]
    assert {"dataset_name", "keypoint_info", "skeleton_info", "joint_weights", "sigmas"} <= set(info)
    kinfo = info["keypoint_info"]
    names = [kinfo[i]["name"] for i in range(len(kinfo))]
    assert names == LSP_KEYS["names"]
    for k in kinfo.values():
        if k["swap"]:
            assert kinfo[names.index(k["swap"])]["swap"] == k["name"]
    pairs = {frozenset((k["name"], k["swap"])) for k in kinfo.values() if k["swap"]}
    assert pairs == {frozenset(p) for p in LSP_KEYS["flip_pairs"]}
    assert all(a in names and b in names for a, b in (s["link"] for s in info["skeleton_info"].values()))
    weights = dict(zip(names, info["joint_weights"]))
    assert weights["head_top"] == 1.5 and weights["neck"] == 1.0
    sig = dict(zip(names, info["sigmas"]))
    assert sig["left_hip"] == 0.107 and sig["left_wrist"] == 0.062 and sig["head_top"] == 0.079
    assert {kinfo[names.index(n)]["type"] for n in ("left_knee", "right_ankle")} == {"lower"}
    assert not (out / "annotations" / "train.json").exists()  # --splits val
    assert "| neck | 0.079 | CrowdPose's (MMPose crowdpose.py) |" in (out / "DATASET.md").read_text()


def _files(d: Path) -> dict[str, bytes]:
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*")) if f.is_file()}


def test_a_version_reproduces_byte_for_byte_after_a_review_and_diff_lists_the_changes(lspet_project, tmp_path):
    m = load_manifest(lspet_project)
    first = tmp_path / "v1"
    _ok(["export", "-m", str(lspet_project), "--out", str(first)])
    with Ledger(m.workspace_dir) as led:
        frames = {f.id: f for f in led.frames()}
        pool = sorted(f.id for f in frames.values() if f.split == "pool")
        lab = led.current_label(pool[0])
        moved = [[x + 1.5, y, v] if v else [x, y, v] for x, y, v in lab.keypoints]
        with led.transaction():  # a review in Label Studio: a new version of one frame's label
            assert led.add_label(pool[0], moved, source="labelstudio", attributes=lab.attributes, annotator="rev") == 2
        led.retire_frames([pool[1]], "blurred")
    second = tmp_path / "v2"
    assert "dataset v2 (new" in _ok(["export", "-m", str(lspet_project), "--out", str(second)])
    again = tmp_path / "v1-again"
    assert "dataset v1 (as recorded" in _ok(["export", "-m", str(lspet_project), "--version", "1", "--out", str(again)])
    a, b = _files(first), _files(again)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)  # byte for byte, images included
    v2 = json.loads((second / "annotations" / "train.json").read_text())
    reviewed = next(x for x in v2["annotations"] if x["iterate"]["frame_id"] == pool[0])
    assert reviewed["iterate"]["origin"] == "review" and reviewed["iterate"]["label_version"] == 2
    assert (
        reviewed["keypoints"][0::3]
        != next(
            x for x in json.loads(a["annotations/train.json"])["annotations"] if x["iterate"]["frame_id"] == pool[0]
        )["keypoints"][0::3]
    )
    assert len(v2["images"]) == 7  # the retired frame is out of the current labels, still in v1
    out = _ok(["export", "-m", str(lspet_project), "--diff", "1", "2"])
    assert "v1 → v2: 0 frame(s) added, 1 removed, 1 label(s) changed" in out
    assert f"- {pool[1]} " in out and f"~ {pool[0]} " in out and "v1 → v2" in out.splitlines()[-1]
    # the same labels again: the same version, no new one
    assert "dataset v2 (unchanged" in _ok(["export", "-m", str(lspet_project), "--out", str(second)])
    status = _ok(["status", "-m", str(lspet_project)])
    assert "dataset versions (2" in status and "v2" in status


def test_out_folder_rules_and_an_earlier_export_is_replaced(lspet_project, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    line = _one_line(["export", "-m", str(lspet_project), "--out", str(busy)])
    assert "not empty and holds no earlier `iterate export`" in line and (busy / "notes.txt").read_text() == "mine"
    assert "a file, not a folder" in _one_line(["export", "-m", str(lspet_project), "--out", str(busy / "notes.txt")])
    out = tmp_path / "out"
    _ok(["export", "-m", str(lspet_project), "--out", str(out)])
    (out / "stale.txt").write_text("from before")
    dead = tmp_path / ".out.export-4194303"  # what an export killed mid-way leaves beside the folder
    (dead / "annotations").mkdir(parents=True)
    _ok(["export", "-m", str(lspet_project), "--out", str(out), "--format", "dlc"])  # replaced whole
    assert not (out / "stale.txt").exists() and not (out / "annotations").exists() and (out / "config.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # nothing left beside it
    other = _manifest(tmp_path / "o", "another-project", [], LSP_KEYS, LSP_STRATA)
    assert "holds an export of project 'lspet-export'" in _one_line(["export", "-m", str(other), "--out", str(out)])


def test_bad_versions_splits_and_vanished_images_are_one_line(tmp_path, lspet_coco):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    sub = lspet_subset(lspet_coco, [1, 2, 3], tmp_path / "l.json")
    coco = json.loads(sub.read_text())
    for im in coco["images"]:  # a copy of three images that can vanish
        (imgs / Path(im["file_name"]).name).write_bytes((LSPET / im["file_name"]).read_bytes())
        im["file_name"] = Path(im["file_name"]).name
    sub.write_text(json.dumps(coco))
    p = _manifest(
        tmp_path / "a",
        "bad",
        [{"name": "l", "kind": "coco", "path": str(sub), "images": str(imgs), "split": "train"}],
        LSP_KEYS,
        LSP_STRATA,
    )
    _ok(["ingest", "-m", str(p)])
    out = tmp_path / "out"
    assert "no dataset version v4 in this ledger (versions: none yet" in _one_line(
        ["export", "-m", str(p), "--version", "4", "--out", str(out)]
    )
    assert "nothing to export: no labels in val" in _one_line(
        ["export", "-m", str(p), "--splits", "val", "--out", str(out)]
    )
    assert "--splits: unknown split 'pool'" in _one_line(
        ["export", "-m", str(p), "--splits", "pool", "--out", str(out)]
    )
    (imgs / "im00002.jpg").unlink()
    line = _one_line(["export", "-m", str(p), "--out", str(out)])
    assert (
        "1 image(s) of the labeled frames are gone from disk" in line
        and "im00002.jpg" in line
        and "--images none" in line
    )
    with Ledger(load_manifest(p).workspace_dir) as led:
        assert led.dataset_versions() == []  # refused before anything was recorded
    _ok(["export", "-m", str(p), "--out", str(out), "--images", "none"])
    tr = json.loads((out / "annotations" / "train.json").read_text())
    assert [Path(i["file_name"]).name for i in tr["images"]] == ["im00001.jpg", "im00002.jpg", "im00003.jpg"]
    assert not (out / "images").exists()
    assert "no dataset version v9" in _one_line(
        ["export", "-m", str(p), "--version", "9", "--out", str(tmp_path / "x")]
    )
    assert "no dataset version v3 in this ledger (versions: v1–v1" in _one_line(
        ["export", "-m", str(p), "--diff", "1", "3"]
    )
    assert "--format: 'yolo' is not one of coco, mmpose, dlc" in _one_line(
        ["export", "-m", str(p), "--format", "yolo", "--out", str(tmp_path / "y")]
    )


def test_versions_on_a_postgresql_ledger(tmp_path, lspet_coco, postgres):
    """The team backend: the hash pass and the export read the ledger a page at a time; a version still writes the
    same bytes after a review."""
    from iterate.core.ledger import Ledger as L

    f = lspet_subset(lspet_coco, list(range(301, 313)), tmp_path / "l.json")
    p = _manifest(
        tmp_path / "a",
        "pg",
        [{"name": "l", "kind": "coco", "path": str(f), "images": str(LSPET), "split": "val"}],
        LSP_KEYS,
        LSP_STRATA,
    )
    d = yaml.safe_load(p.read_text())
    d["ledger"] = postgres.new_database()
    p.write_text(yaml.safe_dump(d))
    _ok(["ingest", "-m", str(p)])
    m = load_manifest(p)
    page, L._PAGE = L._PAGE, 5  # several pages of 12 rows
    try:
        _ok(["export", "-m", str(p), "--out", str(tmp_path / "v1")])
        with L(m.workspace_dir, m.ledger) as led, led.transaction():
            fid = sorted(x.id for x in led.frames())[3]
            kps = [[x, y + 2.0, v] for x, y, v in led.current_label(fid).keypoints]
            led.add_label(fid, kps, source="labelstudio", annotator="rev")
        _ok(["export", "-m", str(p), "--out", str(tmp_path / "v2")])
        _ok(["export", "-m", str(p), "--version", "1", "--out", str(tmp_path / "again")])
    finally:
        L._PAGE = page
    assert _files(tmp_path / "v1") == _files(tmp_path / "again")
    assert len(json.loads((tmp_path / "v2" / "annotations" / "val.json").read_text())["annotations"]) == 12
    assert "0 frame(s) added, 0 removed, 1 label(s) changed" in _ok(["export", "-m", str(p), "--diff", "1", "2"])


def test_provenance_names_the_round_and_the_model_that_pre_annotated(lspet_project, tmp_path):
    """A label synced from a Label Studio task of round 1, which model #1 pre-annotated: the annotation names the
    task, the round and the model, DATASET.md counts it as model-assisted — and the version keeps the round after
    the task is replaced in the ledger (lost in Label Studio, pushed again)."""
    m = load_manifest(lspet_project)
    with Ledger(m.workspace_dir) as led:
        fid = sorted(f.id for f in led.frames("pool"))[2]
        lab = led.current_label(fid)
        with led.transaction():  # what select, push and sync-labels write
            mid = led.add_model("m.pt", parent_id=None, n_train=8, config={}, metrics={})
            rid = led.add_round(chunk=1, budget=1, strategy="full", model_id=mid, params={}, frames=[(fid, {})])
            led.add_task(fid, 7, 41, rid)
            kps = [[x - 1.0, y, v] for x, y, v in lab.keypoints]
            led.add_label(
                fid,
                kps,
                source="labelstudio",
                attributes=lab.attributes,
                annotator="ann@lab",
                ls_task_id=41,
                ls_annotation_id=5,
            )
    out = tmp_path / "out"
    _ok(["export", "-m", str(lspet_project), "--out", str(out), "--splits", "train"])
    with Ledger(m.workspace_dir) as led, led.transaction():
        led.mark_tasks_lost(7, [41], "deleted in Label Studio")
        led.add_task(fid, 7, 99, None)  # pushed again: the task row now says 99
    again = tmp_path / "again"
    _ok(["export", "-m", str(lspet_project), "--version", "1", "--out", str(again), "--splits", "train"])
    assert _files(out) == _files(again)
    anns = json.loads((out / "annotations" / "train.json").read_text())["annotations"]
    prov = next(a["iterate"] for a in anns if a["iterate"]["frame_id"] == fid)
    assert (prov["round"], prov["pre_annotated_by"], prov["ls_task_id"], prov["annotator"]) == (
        rid,
        f"model #{mid}",
        41,
        "ann@lab",
    )
    assert prov["origin"] == "review"  # it replaced the imported label's keypoints
    sheet = (out / "DATASET.md").read_text()
    assert f"0 of 8: 1 by model #{mid}" not in sheet and f"1 of 8: 1 by model #{mid}" in sheet
    assert f"| {rid} | 1 | model #{mid} |" in sheet and "| ann@lab | 1 |" in sheet
