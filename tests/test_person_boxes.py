"""People who do not fill the frame, in the loop: a source's ``person_boxes`` (COCO detection results, MMPose's
bbox_file) are paired with its frames at ingest, and every prediction of the loop — select's scoring pass, the
pre-annotations, the report's evaluation, the audit — crops on the frame's person box. Real LSPET frames pasted at a
third of a canvas over another frame blurred; the shipped base; boxes from the labels (an ideal detector)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.errors import IterateError
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.models import scoring_model
from iterate.loop.report import people_per_split
from iterate.loop.samples import labeled_samples
from iterate.loop.scoring import score
from iterate.loop.select import candidates, score_pool
from iterate.loop.settings import keypoint_spec
from model.infer import load_predictor
from reports.report import render

from conftest import LSPET, REPO, lsp_manifest

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"
SCALE = 3


def _canvases(lspet_coco, ids: list[int], out) -> tuple[list[dict], list[dict], list[dict]]:
    """Each LSPET frame pasted at 1/SCALE of a canvas over the next one blurred → (COCO images, annotations, the
    labeled joints' boxes padded by 10 % as detections keyed by file name)."""
    ims = {i["id"]: i for i in lspet_coco["images"]}
    anns = {a["image_id"]: a for a in lspet_coco["annotations"]}
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    images, annotations, dets = [], [], []
    for n, iid in enumerate(ids):
        img = cv2.imread(str(LSPET / ims[iid]["file_name"]))
        h, w = img.shape[:2]
        bg = cv2.imread(str(LSPET / ims[ids[(n + 1) % len(ids)]]["file_name"]))
        bg = cv2.GaussianBlur(cv2.resize(bg, (w * SCALE, h * SCALE)), (0, 0), sigmaX=2.0 * SCALE)
        x0, y0 = int(rng.integers(0, w * (SCALE - 1) + 1)), int(rng.integers(0, h * (SCALE - 1) + 1))
        bg[y0 : y0 + h, x0 : x0 + w] = img
        name = f"im{iid:05d}_x{SCALE}.png"
        cv2.imwrite(str(out / name), bg)
        kp = np.asarray(anns[iid]["keypoints"], float).reshape(-1, 3)
        kp[:, 0] += np.where(kp[:, 2] > 0, x0, 0)
        kp[:, 1] += np.where(kp[:, 2] > 0, y0, 0)
        images.append({"id": iid, "file_name": name, "width": w * SCALE, "height": h * SCALE})
        annotations.append({**anns[iid], "keypoints": [round(float(v), 2) for v in kp.ravel()]})
        seen = kp[kp[:, 2] > 0, :2]
        lo, hi = seen.min(0), seen.max(0)
        pad = 0.1 * float(np.hypot(*(hi - lo)))
        box = [float(lo[0] - pad), float(lo[1] - pad), float(hi[0] - lo[0] + 2 * pad), float(hi[1] - lo[1] + 2 * pad)]
        dets.append({"file_name": name, "category_id": 1, "bbox": box, "score": 0.95})
    return images, annotations, dets


@pytest.fixture(scope="module")
def project(tmp_path_factory, lspet_coco):
    tmp = tmp_path_factory.mktemp("boxes")
    v_im, v_ann, v_det = _canvases(lspet_coco, list(range(7301, 7321)), tmp / "val")
    p_im, _, p_det = _canvases(lspet_coco, list(range(7321, 7341)), tmp / "pool")
    (tmp / "val.json").write_text(
        json.dumps({"images": v_im, "annotations": v_ann, "categories": lspet_coco["categories"]})
    )
    v_det.append({**v_det[0], "bbox": [1.0, 1.0, 30.0, 60.0], "score": 0.5})  # a second, less sure person
    v_det.append({"file_name": "not_a_frame.png", "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.9})
    v_det.append({"file_name": v_im[1]["file_name"], "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.1})  # under 0.3
    (tmp / "val_boxes.json").write_text(json.dumps(v_det))
    (tmp / "pool_boxes.json").write_text(json.dumps(p_det))
    srcs = [
        {"name": "va", "kind": "coco", "path": str(tmp / "val.json"), "images": str(tmp / "val"), "split": "val"},
        {"name": "pool", "kind": "images", "path": str(tmp / "pool"), "split": "pool"},
    ]
    model = {**yaml.safe_load((REPO / "data_manifest.yaml").read_text())["model"], "base": str(BASE)}
    p = lsp_manifest(tmp, srcs, model=model, selection={"dedup_hamming": 0})
    doc = yaml.safe_load(p.read_text())
    doc["sources"][0]["person_boxes"] = str(tmp / "val_boxes.json")
    doc["sources"][1]["person_boxes"] = str(tmp / "pool_boxes.json")
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        out = ingest(m, led)
    return p, out, tmp


def test_ingest_pairs_boxes_with_frames_by_name_and_counts_people(project):
    p, out, _ = project
    notes = {s.source: " ".join(s.notes) for s in out}
    assert "20 of 20 frames boxed" in notes["va"] and "1 with several people" in notes["va"]
    assert "1 detection(s) name no frame of this source (e.g. file_name 'not_a_frame.png')" in notes["va"]
    assert "20 of 20 frames boxed" in notes["pool"] and "0 with several people" in notes["pool"]
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        boxes = led.person_boxes()
        first = next(f for f in led.frames("val") if f.path.endswith("im07301_x3.png"))
        assert boxes[first.id].people == 2 and boxes[first.id].score == pytest.approx(0.95)  # the surer one kept
        second = next(f for f in led.frames("val") if f.path.endswith("im07302_x3.png"))
        assert boxes[second.id].people == 1  # the 0.1 detection is not a person
        assert people_per_split(led) == {
            "val": {"one": 19, "several": 1, "none found": 0},
            "pool": {"one": 20, "several": 0, "none found": 0},
        }
        before = dict(boxes)
        ingest(m, led)  # re-running changes nothing
        assert led.person_boxes() == before


def test_the_loops_predictions_crop_on_the_person_box(project):
    """The report's evaluation path on val (labeled_samples carry the boxes) and select's scoring pass on the pool:
    a person a third of the frame's size is found through its box, and lost without it."""
    p, _, _ = project
    m = load_manifest(p)
    spec = keypoint_spec(m)
    pred = load_predictor(BASE, joints=m.keypoints.names)
    with Ledger(m.workspace_dir) as led:
        val = labeled_samples(led, ("val",))
        assert all(s.person_box is not None for s in val)
        boxed = score(spec, pred.predict(val).keypoints, val)["pckh@0.5"]
        bare = [type(s)(s.path, s.keypoints, s.frame_id, s.attributes, s.head_box) for s in val]
        whole = score(spec, pred.predict(bare).keypoints, bare)["pckh@0.5"]
        print(f"val PCKh@0.5 with boxes {boxed:.1f}, whole frame {whole:.1f}")
        assert boxed > whole + 15, (boxed, whole)
        model = scoring_model(m, led)
        cands = candidates(led)
        scored = score_pool(m, led, model, cands)
        boxes = led.person_boxes()
        inside = []
        for f, kp in zip(cands, scored.keypoints):
            x, y, w, h = boxes[f.id].box
            ok = np.isfinite(kp).all(1)
            pad = 0.25 * max(w, h)
            inside.append(
                (
                    (kp[ok, 0] >= x - pad)
                    & (kp[ok, 0] <= x + w + pad)
                    & (kp[ok, 1] >= y - pad)
                    & (kp[ok, 1] <= y + h + pad)
                ).mean()
            )
        assert np.mean(inside) > 0.9
        assert score_pool(m, led, model, cands).scored_now == 0  # cached
        led_boxes = {k: v for k, v in boxes.items()}
        with led.transaction():  # other boxes (a rerun detector): the cached scores are scored again
            from iterate.core.ledger import PersonBox

            f0 = cands[0]
            b = led_boxes[f0.id]
            led.set_person_boxes("pool", {**{f.id: led_boxes[f.id] for f in cands}, f0.id: PersonBox(None, None, 0)})
            assert b.box is not None
        assert score_pool(m, led, model, cands).scored_now == len(cands)


def test_the_report_shows_the_people_per_split(project):
    p, _, _ = project
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        people = people_per_split(led)
    data = {
        "chunks": [{"chunk": 1, "fraction": 0.1, "target": 2, "labeled": 0, "pending": 0}],
        "current_chunk": 1,
        "frames": {"val": 20, "pool": 20},
        "labels_train": 0,
        "labels_replay": 0,
        "labels_per_stratum": {},
        "people": people,
    }
    md = render({"project": "t", "round": 0, "created_at": "now", "data": data})
    assert "| several people (most confident kept) | " in md and "1 frame(s) show several people" in md
    # val scored per people found, through the report's own evaluation, with the base's real predictions
    from iterate.loop.report import people_rows

    with Ledger(m.workspace_dir) as led:
        val = labeled_samples(led, ("val",))
        rows = people_rows(m, led, val, load_predictor(BASE, joints=m.keypoints.names).predict(val), 0.1)
    assert {v: r["frames"] for v, r in rows.items()} == {"one": 19, "several": 1}
    assert rows["several"]["small"] and 0 <= rows["one"]["pckh@0.5"] <= 100
    model = {"id": 1, "path": "m.pt", "n_train": 0, "config": {}, "metrics": {}}
    val_block = {
        "frames": 20,
        "pckh@0.1": 1.0,
        "pckh@0.5": 50.0,
        "mean_sms@0.1": 1.0,
        "pckh@0.1_ci95": [0, 2],
        "pckh@0.5_ci95": [40, 60],
    }
    md = render({"project": "t", "round": 0, "created_at": "now", "data": data, "people_val": rows} | {"model": None})
    assert "Per people found" not in md  # no model, no val figures
    from reports.report import _people_val_section

    section = "\n".join(_people_val_section({"people_val": rows, "val": val_block, "model": model}, 0.1))
    assert "## Per people found (val)" in section and "| several | 1 |" in section and "too small to judge" in section


def test_a_bad_boxes_file_is_one_line_naming_it(project, tmp_path):
    p, _, tmp = project
    doc = yaml.safe_load(p.read_text())
    bad = tmp_path / "bad_boxes.json"
    bad.write_text(
        json.dumps([{"file_name": "a.png", "bbox": [1, 2, 3, 4]}, {"file_name": "b.png", "bbox": [1, 2, 0, 4]}])
    )
    doc["sources"][1]["person_boxes"] = str(bad)
    doc["workspace"] = str(tmp_path / "ws")
    p2 = tmp_path / "m.yaml"
    p2.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(app, ["ingest", "-m", str(p2)])
    assert r.exit_code == 2 and f"{bad}: detection 1: bbox must be [x, y, w, h] with w, h > 0" in r.output, r.output
    assert "Traceback" not in r.output
    bad.write_text(json.dumps([{"file_name": "nowhere.png", "bbox": [1, 2, 3, 4]}]))
    m = load_manifest(p2)
    with Ledger(m.workspace_dir) as led, pytest.raises(IterateError, match="no detection names a frame of source"):
        ingest(m, led)
    doc["sources"][1]["person_boxes"] = str(tmp_path / "missing.json")
    p2.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = CliRunner().invoke(app, ["status", "-m", str(p2)])
    assert r.exit_code == 2 and "sources[1].person_boxes: file not found" in r.output, r.output


def test_iterate_detect_writes_the_file_a_source_reads(project, tmp_path):
    """`iterate detect` with a detector the test builds itself (torchvision's smallest Faster R-CNN, untrained, so its
    boxes are arbitrary: the plumbing is under test, not a detector's accuracy) → COCO detection results keyed by the
    file name under the folder → a source's person_boxes → every frame with a detection gets its most confident box."""
    import torch
    import torchvision

    _, _, tmp = project
    torch.manual_seed(0)
    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=2
    )
    w = tmp_path / "det.pt"
    torch.save(net.state_dict(), w)
    folder = tmp / "pool"
    out = tmp_path / "people.json"
    args = ["detect", str(folder), "--detector", str(w), "--out", str(out), "--detector-score", "0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    names = {d["file_name"] for d in rows}
    assert names and all("/" not in n and (folder / n).is_file() for n in names)  # relative to the folder
    assert f"wrote {len(rows)} person detections to {out}" in r.output
    for name in names:  # most confident first within each image
        scores = [d["score"] for d in rows if d["file_name"] == name]
        assert scores == sorted(scores, reverse=True)
    sure = tmp_path / "sure.json"  # the untrained detector's scores lifted over the 0.3 person threshold
    sure.write_text(json.dumps([{**d, "score": 0.5 + 0.5 * d["score"]} for d in rows]))
    rows = json.loads(sure.read_text())
    srcs = [{"name": "pool", "kind": "images", "path": str(folder), "split": "pool", "person_boxes": str(sure)}]
    p = lsp_manifest(tmp_path, srcs)
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        boxes = led.person_boxes()
        by_name = {f.id: f.path.rsplit("/", 1)[-1] for f in led.frames()}
    assert sum(b.box is not None for b in boxes.values()) == len(names)  # every image with a detection is boxed
    for fid, b in boxes.items():
        mine = [d for d in rows if d["file_name"] == by_name[fid]]
        assert b.people == len(mine)
        if mine:
            assert list(b.box) == pytest.approx(mine[0]["bbox"])
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "nope.pt"), *args[4:]])
    assert r.exit_code == 2 and "file not found" in r.output and "Traceback" not in r.output


def test_a_real_detectors_file_on_a_coco17_source(tmp_path):
    """MMPose's own bbox_file (a person detector at AP_H 56 on its COCO sample, keyed by image_id) as a COCO-17
    source's person_boxes: each frame gets that detector's most confident box, and the frames with several people are
    the ones `iterate predict --bbox-file` counts from the same file (one reader of the convention, two paths)."""
    from iterate.core.presets import PRESETS
    from model.predict import DET_THRESHOLD, read_person_boxes

    from conftest import SHARED

    coco_dir = SHARED / "mmpose_samples" / "coco"
    det_file = coco_dir / "test_coco_det_AP_H_56.json"
    coco17 = PRESETS["coco17"]
    p = lsp_manifest(
        tmp_path,
        [
            {
                "name": "cocoval",
                "kind": "coco",
                "path": str(coco_dir / "test_coco.json"),
                "images": str(coco_dir),
                "split": "val",
                "person_boxes": str(det_file),
            }
        ],
        strata={},
        keypoints={
            k: coco17[k] for k in ("names", "flip_pairs", "skeleton", "height_joints", "height_chain", "normalizer")
        },
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        out = ingest(m, led)
        boxes = led.person_boxes()
        frames = {f.id: f for f in led.frames()}
    assert "4 of 4 frames boxed" in " ".join(out[0].notes)
    dets = json.loads(det_file.read_text())
    ids = {"000000000785.jpg": 785, "000000040083.jpg": 40083, "000000196141.jpg": 196141, "000000197388.jpg": 197388}
    squares, several = read_person_boxes(det_file, set(ids.values()))
    assert sum(b.people > 1 for b in boxes.values()) == several == 4
    for fid, b in boxes.items():
        iid = ids[frames[fid].path.rsplit("/", 1)[-1]]
        mine = sorted(
            (d for d in dets if d["image_id"] == iid and d["score"] >= DET_THRESHOLD), key=lambda d: -d["score"]
        )
        assert b.people == len(mine) and list(b.box) == pytest.approx(mine[0]["bbox"])
        from model.geometry import detection_square

        (cx, cy), side = detection_square(b.box)
        (px, py), pside = squares[iid]
        assert (cx, cy, side) == pytest.approx((px, py, pside))  # the square predict crops on, too


def test_an_unlabeled_pool_listed_by_a_coco_file_of_another_joint_set(tmp_path):
    """README's recipe on PoseTrack18 footage (MMPose's sample and its human detections, keyed by image_id) with the
    14-joint LSP schema: a `coco` source with `labels: false` registers the images only, whatever joints the file
    names, and the detections box its frames."""
    from conftest import SHARED

    pt = SHARED / "mmpose_samples" / "posetrack18"
    src = {
        "name": "ballroom",
        "kind": "coco",
        "path": str(pt / "annotations" / "test_posetrack18_val.json"),
        "images": str(pt),
        "labels": False,
        "split": "pool",
        "person_boxes": str(pt / "annotations" / "test_posetrack18_human_detections.json"),
    }
    p = lsp_manifest(tmp_path, [src])
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    assert "3 of 3 frames boxed" in r.output and "3 with several people" in r.output
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        assert len(led.frames("pool")) == 3 and not led.current_labels()
        assert all(b.box is not None and b.people > 1 for b in led.person_boxes().values())
    labeled = {**src, "labels": True}  # its labels do need the manifest's joints: still refused by name
    p.write_text(yaml.safe_dump({**yaml.safe_load(p.read_text()), "sources": [labeled]}, sort_keys=False))
    r = CliRunner().invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 2 and "joint names differ" in r.output


def test_boxes_pair_by_their_whole_name_and_go_when_the_field_goes(tmp_path, lspet_coco):
    """Two cameras with the same file names: a detection for cam2/0001.png never boxes cam1/0001.png (a file shared
    by both sources pairs each with its own); removing person_boxes removes the boxes; an empty source is a note."""
    import shutil

    ims = {i["id"]: i["file_name"] for i in lspet_coco["images"]}
    for cam, iid in (("cam1", 7001), ("cam2", 7002)):
        (tmp_path / "footage" / cam).mkdir(parents=True)
        shutil.copy(LSPET / ims[iid], tmp_path / "footage" / cam / "0001.jpg")
    (tmp_path / "empty").mkdir()
    dets = [
        {"file_name": "cam1/0001.jpg", "bbox": [10.0, 10.0, 50.0, 80.0], "score": 0.9},
        {"file_name": "cam2/0001.jpg", "bbox": [20.0, 20.0, 60.0, 90.0], "score": 0.99},
    ]
    (tmp_path / "people.json").write_text(json.dumps(dets))
    srcs = [
        {
            "name": c,
            "kind": "images",
            "path": str(tmp_path / "footage" / c),
            "person_boxes": str(tmp_path / "people.json"),
        }
        for c in ("cam1", "cam2")
    ] + [
        {
            "name": "none",
            "kind": "images",
            "path": str(tmp_path / "empty"),
            "person_boxes": str(tmp_path / "people.json"),
        }
    ]
    p = lsp_manifest(tmp_path, srcs)
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        out = ingest(m, led)
        boxes = {f.source: led.person_boxes()[f.id] for f in led.frames()}
        assert boxes["cam1"].box == (10.0, 10.0, 50.0, 80.0) and boxes["cam1"].people == 1
        assert boxes["cam2"].box == (20.0, 20.0, 60.0, 90.0) and boxes["cam2"].people == 1
        notes = {s.source: " ".join(s.notes) for s in out}
        assert "1 detection(s) name no frame of this source (e.g. file_name 'cam2/0001.jpg')" in notes["cam1"]
        assert "no frames to pair people.json's person boxes with" in notes["none"]
    doc = yaml.safe_load(p.read_text())
    doc["sources"][0].pop("person_boxes")
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        out = ingest(m, led)
        assert {f.source for f in led.frames() if f.id in led.person_boxes()} == {"cam2"}
        assert "cam1: person_boxes no longer given: its frames' boxes removed" in " ".join(out[0].notes)
