"""People who do not fill the frame (issue 30, item 2): the zoom-out placement a box head learns from, the
`localise: box_head` inference path, and the bench's smoke mode (bench/experiments/small_person/small_person.py)."""

from __future__ import annotations

import json

import numpy as np

from iterate.core.presets import LSP_JOINTS
from iterate.core.schema import KeypointSpec
from iterate.loop.settings import augment_config
from model.codec import DarkCodec
from model.data import PoseDataset, Sample
from model.infer import load_predictor

from conftest import LSPET, REPO

BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"


def _samples(lspet_coco, ids):
    ims = {i["id"]: i for i in lspet_coco["images"]}
    return [
        Sample(str(LSPET / ims[a["image_id"]]["file_name"]), np.asarray(a["keypoints"], float).reshape(-1, 3))
        for a in lspet_coco["annotations"]
        if a["image_id"] in ids
    ]


def test_zoom_out_shrinks_the_person_over_another_frame(lspet_coco):
    samples = _samples(lspet_coco, set(range(7001, 7013)))
    spec = KeypointSpec.from_names(LSP_JOINTS)
    kw = dict(flip_index=spec.flip_index(), joint_weights=[1.0] * 14, train=True, box_targets=True)
    plain = augment_config(n=0, flip=False, rotate_deg=0, scale=0, person_box=0)
    codec = DarkCodec(128, 64, 3.0)
    tight = PoseDataset(samples, codec, augment=plain, **kw)
    small = PoseDataset(samples, codec, augment=plain, zoom_out=(1.0, 0.15), **kw)
    ratios, outside = [], []
    for i in range(len(samples)):
        a, b = tight[i], small[i]
        ratios.append(float(b["box"][2] / a["box"][2]))
        # the pixels far from the shrunk person come from another frame, not from this one's whole-frame crop
        cx, cy, side = b["box"].tolist()
        yy, xx = np.mgrid[:128, :128]
        far = (np.abs(xx - cx) > side) | (np.abs(yy - cy) > side)
        outside.append(float(np.abs(a["image"] - b["image"]).mean(0).numpy()[far].mean()))
    assert max(ratios) <= 1.0 + 1e-6 and np.median(ratios) < 0.7  # log-uniform from 0.15 to 1 of the side
    assert min(ratios) >= 0.15 - 0.02
    assert np.median(outside) > 0.2  # another scene there (normalised pixels)


def test_localise_on_the_box_head_crops_the_person_first(lspet_coco, tmp_path):
    import cv2

    s = _samples(lspet_coco, {7021, 7022, 7023, 7024})
    canvas = []
    for i, x in enumerate(s):  # a third of a grey canvas's side
        img = cv2.imread(x.path)
        h, w = img.shape[:2]
        big = np.full((3 * h, 3 * w, 3), 127, np.uint8)
        big[h : 2 * h, w : 2 * w] = img
        p = tmp_path / f"c{i}.png"
        cv2.imwrite(str(p), big)
        canvas.append(Sample(str(p)))
    frame = load_predictor(BASE, localise="frame")
    first = load_predictor(BASE, localise="box_head")
    assert "person found by the box head first" in first.settings.describe()
    a, b = frame.predict(canvas), first.predict(canvas)
    assert b.boxes is not None and np.isfinite(b.boxes).all()
    assert not np.allclose(a.keypoints, b.keypoints)  # another first crop: the head's box, not the whole canvas


def test_person_boxes_from_a_detection_file(tmp_path):
    """MMPose's own COCO sample and its detection results (`bbox_file`): the most confident person box of each
    image is the first crop; frames with several people are counted (one person per frame is the scope)."""
    from typer.testing import CliRunner

    from iterate.cli import app

    from conftest import SHARED

    coco = SHARED / "mmpose_samples" / "coco"
    out = {}
    for name, extra in (("frame", []), ("boxes", ["--bbox-file", str(coco / "test_coco_det_AP_H_56.json")])):
        p = tmp_path / f"{name}.json"
        r = CliRunner().invoke(
            app,
            [
                "predict",
                str(coco),
                "--model",
                str(BASE),
                "--coco",
                str(coco / "test_coco.json"),
                "--out",
                str(p),
                *extra,
            ],
        )
        assert r.exit_code == 0, r.output
        out[name] = {d["image_id"]: np.asarray(d["keypoints"]).reshape(-1, 3)[:, :2] for d in json.loads(p.read_text())}
        if name == "boxes":
            assert "person boxes from" in r.output and "4 of 4 images" in r.output
            assert "4 image(s) with more than one person" in r.output
    dets = json.loads((coco / "test_coco_det_AP_H_56.json").read_text())
    for iid, kp in out["boxes"].items():
        x, y, w, h = max((d for d in dets if d["image_id"] == iid), key=lambda d: d["score"])["bbox"]
        inside = (
            (kp[:, 0] > x - 0.2 * w) & (kp[:, 0] < x + 1.2 * w) & (kp[:, 1] > y - 0.2 * h) & (kp[:, 1] < y + 1.2 * h)
        )
        assert inside.mean() > 0.8, iid  # the joints are on the detected person
    assert any(not np.allclose(out["frame"][i], out["boxes"][i]) for i in out["boxes"])
    r = CliRunner().invoke(
        app,
        [
            "predict",
            str(coco),
            "--model",
            str(BASE),
            "--out",
            str(tmp_path / "x.json"),
            "--bbox-file",
            str(coco / "test_coco_det_AP_H_56.json"),
        ],
    )
    assert r.exit_code == 2 and "give --coco too" in r.output


def test_a_torchvision_detector_from_a_weights_file(tmp_path):
    """A detector the test builds itself (torchvision's smallest Faster R-CNN, untrained, 2 classes), saved as a
    state dict and given as a path: loaded with weights_only, its person boxes become the first crops. Untrained,
    its boxes are arbitrary: the test checks the plumbing (the boxes are used, counted, and a bad file is one line),
    not a detector's accuracy."""
    import torch
    import torchvision
    from typer.testing import CliRunner

    from iterate.cli import app
    from model.detect import PersonDetector

    from conftest import SHARED

    torch.manual_seed(0)
    net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=2
    )
    w = tmp_path / "det.pt"
    torch.save(net.state_dict(), w)
    coco = SHARED / "mmpose_samples" / "coco"
    files = sorted(str(p) for p in coco.glob("*.jpg"))
    found, several = PersonDetector("fasterrcnn_mobilenet_v3_large_320_fpn", w, score=0.0).person_boxes(files)
    assert found and all(side > 0 for _, side in found.values()) and several >= 0
    out = tmp_path / "p.json"
    args = ["predict", *files, "--model", str(BASE), "--out", str(out), "--detector", str(w), "--detector-score", "0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"person boxes from the fasterrcnn_mobilenet_v3_large_320_fpn detector: {len(found)} of 4 images" in r.output
    (tmp_path / "bad.pt").write_bytes(b"not a state dict")
    r = CliRunner().invoke(app, [*args[:-4], "--detector", str(tmp_path / "bad.pt")])
    assert r.exit_code == 2 and "not a readable state dict" in r.output and "Traceback" not in r.output
