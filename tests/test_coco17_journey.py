"""A COCO-17 project with the shipped 14-joint LSP base, end to end (issue 30, item 1): the SLEAP dance video as
the pool, its hand-labeled frames as val, frames labeled from SLEAP's own predictions as test; `select` scores and
pre-annotates with the base (the 12 joints both sets share; the face joints unplaced), a real Label Studio takes
the tasks, an oracle annotator answers them with all 17 joints, `sync-labels`, `retrain` from the base (the face
joints start from the base's head top and then learn apart), `report` (the base compared on the shared joints)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch
import yaml
from typer.testing import CliRunner

from annotation.client import Studio
from annotation.push import project_id
from iterate.cli import app
from iterate.core.joints import match_joints
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.core.presets import COCO_JOINTS, LSP_JOINTS, PRESETS
from iterate.loop.settings import labeling, studio_settings
from model.checkpoints import load_file, load_into
from model.data import Sample
from model.hrnet import build_model
from model.infer import load_predictor

from conftest import REPO, SHARED, studio_manifest

DANCE = SHARED / "sleap_dance"
BASE = REPO / "model" / "weights" / "lspet_w18s_128.pt"
FACE = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]


def sleap_predictions() -> dict[int, list[list[float]]]:
    """The .slp's predicted instance of every frame, as [[x, y, v]] in COCO-17 order (nodes by name)."""
    import h5py

    with h5py.File(DANCE / "dance.mp4.labels.slp", "r") as f:
        md = json.loads(f["metadata"].attrs["json"])
        frames, instances, points = f["frames"][:], f["instances"][:], f["pred_points"][:]
    names = [n["name"] for n in md["nodes"]]
    order = [names[n["id"]] for n in md["skeletons"][0]["nodes"]]
    out = {}
    for fr in frames:
        for inst in instances[int(fr["instance_id_start"]) : int(fr["instance_id_end"])]:
            if int(inst["instance_type"]) != 1:
                continue
            pts = points[int(inst["point_id_start"]) : int(inst["point_id_end"])]
            kp = {
                n: [float(p["x"]), float(p["y"]), 2] for n, p in zip(order, pts) if np.isfinite([p["x"], p["y"]]).all()
            }
            out[int(fr["frame_idx"])] = [kp.get(n, [0.0, 0.0, 0]) for n in COCO_JOINTS]
    return out


def _coco(images: list[tuple[int, str]], preds: dict, w: int, h: int) -> dict:
    anns = []
    for iid, (idx, _) in enumerate(images, 1):
        kp = preds[idx]
        anns.append(
            {
                "id": iid,
                "image_id": iid,
                "category_id": 1,
                "keypoints": [v for p in kp for v in p],
                "num_keypoints": sum(1 for p in kp if p[2]),
            }
        )
    return {
        "images": [{"id": i, "file_name": name, "width": w, "height": h} for i, (_, name) in enumerate(images, 1)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": COCO_JOINTS, "skeleton": []}],
    }


def _face_spread(checkpoint, frames, names) -> float:
    """Median over frames of the largest distance between two predicted face joints (pixels)."""
    p = load_predictor(checkpoint, joints=names).predict([Sample(f) for f in frames]).keypoints
    face = p[:, [names.index(j) for j in FACE]]
    d = np.linalg.norm(face[:, :, None] - face[:, None], axis=-1).reshape(len(p), -1)
    return float(np.median(np.nanmax(d, axis=1)))


def test_coco17_project_with_the_lsp_base_end_to_end(tmp_path, studio):
    preds = sleap_predictions()
    # the test split: frames between the pool's, labeled from SLEAP's predictions, in a folder of their own
    cap = cv2.VideoCapture(str(DANCE / "dance.mp4"))
    test_dir = tmp_path / "test_frames"
    test_dir.mkdir()
    test_images = []
    for idx in range(45, 450, 90):
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, img = cap.read()
        assert ok
        name = f"dance_{idx:04d}.png"
        cv2.imwrite(str(test_dir / name), img)
        test_images.append((idx, name))
    cap.release()
    h, w = img.shape[:2]
    (tmp_path / "test.json").write_text(json.dumps(_coco(test_images, preds, w, h)))
    coco17 = PRESETS["coco17"]
    p = studio_manifest(
        tmp_path,
        studio["port"],
        [
            {"name": "dance", "kind": "video", "path": str(DANCE / "dance.mp4"), "every": 30, "split": "pool"},
            {"name": "danceval", "kind": "sleap", "path": str(DANCE / "dance.mp4.labels.slp"), "split": "val"},
            {
                "name": "dancetest",
                "kind": "coco",
                "path": str(tmp_path / "test.json"),
                "images": str(test_dir),
                "split": "test",
            },
        ],
        "coco17-journey",
        target_size=10,
        strata={},
        keypoints={
            k: coco17[k] for k in ("names", "flip_pairs", "skeleton", "height_joints", "height_chain", "normalizer")
        },
        selection={"dedup_hamming": 0, "explore": 0.0},
        train={"batch_size": 4, "warmup_steps": 1, "eval_every_steps": 50, "finetune_lr": 0.003},
    )
    doc = yaml.safe_load(p.read_text())
    doc["model"]["base"] = str(BASE)
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    m = load_manifest(p)
    run = CliRunner()

    r = run.invoke(app, ["ingest", "-m", str(p)])
    assert r.exit_code == 0, r.output
    r = run.invoke(app, ["select", "--budget", "4", "-m", str(p)])
    assert r.exit_code == 0, r.output
    assert "predicts 12 of the 17 joints" in r.output and "not predicted: nose" in r.output

    # the pushed pre-annotations: the 12 shared joints placed where the base puts them, no face joint guessed
    with Ledger(m.workspace_dir) as led:
        pid = project_id(labeling(m), led)
        frames = {f.id: f for f in led.frames("pool")}
    st = Studio.from_settings(studio_settings(m))
    tasks = st.export_all(pid)
    assert len(tasks) == 4
    jm = match_joints(LSP_JOINTS, COCO_JOINTS)
    assert sorted(jm.missing) == sorted(FACE)
    base = load_predictor(BASE)
    for t in tasks:
        (pred,) = st.request("GET", "/api/predictions/", params={"task": t["id"]}, expect=list)
        placed = {r["value"]["keypointlabels"][0]: r["value"] for r in pred["result"] if r["type"] == "keypointlabels"}
        assert set(placed) == set(COCO_JOINTS) - set(FACE)
        f = frames[t["data"]["frame_id"]]
        own = base.predict([Sample(f.path)]).keypoints[0]  # the base in its own LSP order
        for name, v in placed.items():  # by name, never by position: left stays left
            x, y = own[LSP_JOINTS.index(name)]
            assert abs(v["x"] * f.width / 100 - np.clip(x, 0, f.width - 1)) < 1.0
            assert abs(v["y"] * f.height / 100 - np.clip(y, 0, f.height - 1)) < 1.0

    # the annotators answer with all 17 joints (SLEAP's predictions stand in for their corrections)
    by_name = {}
    for t in tasks:
        f = frames[t["data"]["frame_id"]]
        by_name[f.path.rsplit("/", 1)[-1]] = f.frame_index
    oracle = _coco([(idx, name) for name, idx in by_name.items()], preds, w, h)
    (tmp_path / "oracle.json").write_text(json.dumps(oracle))
    r = run.invoke(app, ["studio", "autolabel", "--from", str(tmp_path / "oracle.json"), "-m", str(p)])
    assert r.exit_code == 0 and "answered 4 task(s)" in r.output, r.output
    r = run.invoke(app, ["sync-labels", "-m", str(p)])
    assert r.exit_code == 0, r.output

    # the fine-tune's start: each face channel is the base's head-top channel (mapped, not random)
    net = build_model("hrnet_w18_small", 17, 128, 64)
    load_into(net, load_file(BASE), list(COCO_JOINTS), path=BASE)
    w = net.final_layer.weight
    assert all(torch.equal(w[COCO_JOINTS.index(j)], w[COCO_JOINTS.index("nose")]) for j in FACE)
    pool_frames = [f.path for f in frames.values()]
    r = run.invoke(app, ["retrain", "--epochs", "100", "-m", str(p)])
    assert r.exit_code == 0, r.output
    assert "nose←head_top" in r.output and "left_ear←head_top" in r.output  # the face starts at the head top
    with Ledger(m.workspace_dir) as led:
        ck = led.latest_model().path
    # the five face joints started as one channel (the base's head top) and learned apart
    assert _face_spread(ck, pool_frames, list(COCO_JOINTS)) > 4.0

    r = run.invoke(app, ["report", "-m", str(p)])
    assert r.exit_code == 0, r.output
    md = (m.workspace_dir / "reports" / "latest.md").read_text()
    assert "## Against the base model" in md
    assert "only on the joints it predicts, 12 of the 17 joints (not predicted: nose" in md
