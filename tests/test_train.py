"""Real learning on real LSPET images with the small HRNet (CPU, seeded), resume and the CLI."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from iterate.cli import app
from iterate.core.ledger import Ledger
from iterate.core.manifest import load_manifest
from iterate.loop.ingest import ingest
from iterate.loop.retrain import retrain
from iterate.loop.scoring import score
from iterate.loop.settings import keypoint_spec, train_setup
from model.checkpoints import load_file, model_from_checkpoint
from model.codec import DarkCodec
from model.data import PoseDataset, collate
from model.geometry import image_box
from model.infer import Predictor
from model.train import heatmap_loss, train

from conftest import LSPET, REPO, lsp_manifest, lspet_subset


def _samples(lspet_coco, ids):
    from model.data import Sample

    ims = {i["id"]: i for i in lspet_coco["images"]}
    return [
        Sample(str(LSPET / ims[a["image_id"]]["file_name"]), np.asarray(a["keypoints"], float).reshape(-1, 3))
        for a in lspet_coco["annotations"]
        if a["image_id"] in ids
    ]


def _mean_pose(samples):
    import cv2

    rel, vis, boxes = [], [], []
    for s in samples:
        h, w = cv2.imread(s.path).shape[:2]
        c, side = image_box(w, h)
        boxes.append((np.array(c), side))
        rel.append((s.keypoints[:, :2] - c) / side)
        vis.append(s.keypoints[:, 2:] > 0)
    rel, vis = np.stack(rel), np.stack(vis)
    mean = (rel * vis).sum(0) / np.maximum(vis.sum(0), 1)
    return np.stack([c + mean * side for c, side in boxes])


def test_cpu_recipe_learns_on_64_lspet_images(tmp_path, lspet_coco):
    m = load_manifest(REPO / "data_manifest.yaml")
    samples = _samples(lspet_coco, set(range(1, 65)))
    assert len(samples) == 64
    codec = DarkCodec(m.model.input_size, m.model.heatmap_size, m.model.sigma)  # the targets the recipe trains
    res = train(train_setup(m, epochs=40), samples, [], tmp_path / "run")
    model, _ = model_from_checkpoint(res.last)
    model.eval()
    # loss on the un-augmented frames, against the loss of predicting all-zero heatmaps
    ds = PoseDataset(
        samples, codec, flip_index=m.keypoints.flip_index(), joint_weights=m.keypoints.joint_weights(), targets=True
    )
    b = collate([ds[i] for i in range(len(ds))])
    t = m.train  # the loss the recipe optimises (with its foreground weight)
    with torch.no_grad():
        loss = float(heatmap_loss(model(b["image"]), b["heatmaps"], b["weights"], t.loss_scale, t.fg_weight))
    zero = float(heatmap_loss(torch.zeros_like(b["heatmaps"]), b["heatmaps"], b["weights"], t.loss_scale, t.fg_weight))
    assert loss < 0.8 * zero
    pred = Predictor(model, codec, m.keypoints.flip_index(), flip=True).predict(samples).keypoints
    got = score(keypoint_spec(m), pred, samples)["pckh@0.5"]
    base = score(keypoint_spec(m), _mean_pose(samples), samples)["pckh@0.5"]
    assert got > 3 * base, (got, base)  # measured: 17.3 % vs 3.2 % for the mean pose


@pytest.fixture
def tiny_project(tmp_path, lspet_coco):
    tr = lspet_subset(lspet_coco, list(range(7001, 7017)), tmp_path / "train.json")
    va = lspet_subset(lspet_coco, list(range(7101, 7109)), tmp_path / "val.json")
    p = lsp_manifest(
        tmp_path,
        [
            {"name": "tr", "kind": "coco", "path": str(tr), "images": str(LSPET), "split": "train"},
            {"name": "va", "kind": "coco", "path": str(va), "images": str(LSPET), "split": "val"},
        ],
        train={"epochs": 3, "batch_size": 8, "warmup_steps": 2},
    )
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
    return p


def test_retrain_interrupted_then_resume_continues(tiny_project):
    m = load_manifest(tiny_project)
    led = Ledger(m.workspace_dir)

    def stop_after_first(rec):
        if rec["epoch"] == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retrain(m, led, on_epoch=stop_after_first)
    assert led.models() == []
    run_dir = m.workspace_dir / "models" / "model-001"
    first = load_file(run_dir / "last.pt")
    assert first["epoch"] == 0
    seen = []
    out = retrain(m, led, resume=True, on_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [1, 2]  # continued from the saved epoch, not from scratch
    last = load_file(run_dir / "last.pt")
    assert [h["epoch"] for h in last["history"]] == [0, 1, 2]
    assert last["history"][0]["loss"] == first["history"][0]["loss"]
    assert out.model_id == 1 and led.latest_model().n_train == 16
    assert "val_pckh@0.1" in out.metrics and "overfit_pckh@0.1" in out.metrics
    with pytest.raises(Exception, match="nothing to resume"):
        retrain(m, led, resume=True)
    led.close()


def test_cli_retrain_and_predict(tiny_project, tmp_path):
    r = CliRunner().invoke(app, ["retrain", "-m", str(tiny_project), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "val_pckh@0.1" in r.output
    m = load_manifest(tiny_project)
    with Ledger(m.workspace_dir) as led:
        ck = led.latest_model().path
    out = tmp_path / "preds.json"
    imgs = [str(LSPET / "images" / f"im0700{i}.jpg") for i in (1, 2, 3)]
    r = CliRunner().invoke(app, ["predict", "--model", ck, *imgs, "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert len(res) == 3 and len(res[0]["keypoints"]) == 14 * 3 and res[0]["category_id"] == 1


def test_retrain_with_no_labels_says_what_to_do(tmp_path):
    p = lsp_manifest(tmp_path, [])
    r = CliRunner().invoke(app, ["retrain", "-m", str(p)])
    assert r.exit_code == 2 and "nothing to train on" in r.output


def test_l2sp_keeps_a_fine_tune_near_its_base(tmp_path, lspet_coco):
    """Fine-tuning the shipped base on 32 images: with L2-SP the trunk drifts less from the base weights than
    without, and the checkpoint records the rate."""
    from dataclasses import replace

    m = load_manifest(REPO / "data_manifest.yaml")
    samples = _samples(lspet_coco, set(range(1, 33)))
    base = REPO / "model" / "weights" / "lspet_w18s_128.pt"
    start = {k: v.float() for k, v in load_file(base)["model"].items() if k.startswith("backbone.")}

    def drift(l2sp: float) -> float:
        setup = train_setup(m, epochs=1)
        setup = replace(setup, train=replace(setup.train, batch_size=8, l2sp=l2sp, finetune_lr=3e-3, warmup_steps=0))
        res = train(setup, samples, [], tmp_path / f"l2sp-{l2sp:g}", init=base, max_steps=12)
        ck = load_file(res.last)
        assert ck["config"]["l2sp"] == l2sp
        got = ck["model"]
        return float(sum(((got[k].float() - v) ** 2).sum() for k, v in start.items() if v.dtype.is_floating_point))

    free, held = drift(0.0), drift(50.0)
    assert held < 0.8 * free, (held, free)


def test_warm_start_says_when_the_base_learned_other_heatmaps(tmp_path, lspet_coco):
    """The weights of any heatmap size fit one network; a fine-tune that trains other targets than its base
    learned (heatmap size or σ) says so in its load report, and one that matches says nothing of it."""
    from dataclasses import replace

    m = load_manifest(REPO / "data_manifest.yaml")
    samples = _samples(lspet_coco, set(range(1, 9)))
    base = REPO / "model" / "weights" / "lspet_upright_w18s_128.pt"
    learned = load_file(base)
    setup = train_setup(m, epochs=1)
    setup = replace(setup, train=replace(setup.train, batch_size=8, warmup_steps=0))
    same = replace(setup, model=replace(setup.model, heatmap_size=learned["heatmap_size"], sigma=learned["sigma"]))
    other = replace(setup, model=replace(setup.model, heatmap_size=2 * learned["heatmap_size"], sigma=3.0))
    quiet = train(same, samples, [], tmp_path / "same", init=base, max_steps=1).load_report
    loud = train(other, samples, [], tmp_path / "other", init=base, max_steps=1).load_report
    assert "heatmaps" not in quiet
    assert f"learned {learned['heatmap_size']}² heatmaps" in loud and f"trains {2 * learned['heatmap_size']}²" in loud


def test_ema_weights_are_what_evaluation_and_checkpoints_see(tmp_path, lspet_coco):
    """With ``train.ema`` the checkpoints' weights are the moving average: they moved less from the base than
    the raw weights (kept apart for resume), the val scorer saw exactly them, and a resume goes on from both."""
    from dataclasses import replace

    m = load_manifest(REPO / "data_manifest.yaml")
    samples = _samples(lspet_coco, set(range(1, 33)))
    base = REPO / "model" / "weights" / "lspet_w18s_128.pt"
    start = {k: v.float() for k, v in load_file(base)["model"].items() if k.startswith("backbone.")}
    setup = train_setup(m, epochs=2)
    tc = replace(setup.train, batch_size=8, ema=0.9, finetune_lr=3e-3, warmup_steps=0, eval_every_steps=1)
    setup = replace(setup, train=tc)
    seen = {}

    def evaluate(model, val):
        seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        seen["calls"] = seen.get("calls", 0) + 1
        return {"pckh@0.1": float(seen["calls"])}  # every epoch the best so far

    res = train(setup, samples, samples[:4], tmp_path / "ema", init=base, evaluate=evaluate)
    last = load_file(res.last)
    avg, raw = last["model"], last["train_model"]
    assert last["config"]["ema"] == 0.9

    def drift(w):
        return float(sum(((w[k].float() - v) ** 2).sum() for k, v in start.items() if v.dtype.is_floating_point))

    assert 0 < drift(avg) < 0.9 * drift(raw), (drift(avg), drift(raw))
    assert seen["calls"] == 2 and all(
        torch.equal(seen[k], avg[k]) for k in avg
    )  # the val scorer saw the average of the last epoch
    assert all(torch.equal(load_file(res.best)["model"][k], avg[k]) for k in avg)

    setup3 = replace(setup, train=replace(tc, epochs=3))
    more = train(setup3, samples, samples[:4], tmp_path / "ema", init=base, resume=True)
    after = load_file(more.last)
    assert after["step"] == last["step"] + 4
    assert drift(after["train_model"]) != drift(raw) and drift(after["model"]) < drift(after["train_model"])


def test_replay_sampler_draws_the_replay_share():
    from model.train import replay_sampler

    g = torch.Generator().manual_seed(0)
    rows = list(replay_sampler(40, 400, 0.3, g))
    assert len(rows) == round(40 / 0.7)  # an epoch: the new frames at their 70 %
    many = [r for _ in range(50) for r in replay_sampler(40, 400, 0.3, g)]
    share = np.mean([r >= 40 for r in many])
    assert abs(share - 0.3) < 0.03, share  # 400 replay frames, yet 30 % of the draws, not 91 %
    assert len({r for r in many if r < 40}) == 40  # every new frame is drawn
    # 4 new frames at 50 %: an epoch of 8 draws would be no whole batch of 16 — the loader would train no step
    assert len(list(replay_sampler(4, 251, 0.5, g, min_samples=16))) == 16


def test_replay_source_must_exist_and_be_labeled(tmp_path, lspet_coco):
    import yaml

    from iterate.core.errors import ManifestError

    coco = lspet_subset(lspet_coco, list(range(1, 9)), tmp_path / "a.json")
    src = {"name": "new", "kind": "coco", "path": str(coco), "images": str(LSPET), "split": "train"}
    p = lsp_manifest(tmp_path, [src], train={"replay": {"source": "base-data", "fraction": 0.3}})
    with pytest.raises(ManifestError, match="train.replay.source: no source named 'base-data'"):
        load_manifest(p)
    d = yaml.safe_load(p.read_text())
    other = lspet_subset(lspet_coco, list(range(9, 17)), tmp_path / "b.json")
    d["sources"].append({**src, "name": "base-data", "path": str(other), "labels": False})
    p.write_text(yaml.safe_dump(d))
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        with pytest.raises(Exception, match="source 'base-data' has no labeled frames"):
            retrain(m, led)
    # labeled: the fine-tune draws from it at its share and records it
    d["sources"][-1]["labels"] = True
    d["sources"][-1]["name"] = "base-data-2"
    d["train"] = {"epochs": 1, "batch_size": 4, "warmup_steps": 1, "replay": {"source": "base-data-2", "fraction": 0.5}}
    d["workspace"] = str(tmp_path / "ws2")
    p.write_text(yaml.safe_dump(d))
    m = load_manifest(p)
    with Ledger(m.workspace_dir) as led:
        ingest(m, led)
        # the base's own frames are not labels the loop gathered: they fill no chunk of D
        from iterate.core.chunks import chunk_progress, training_frames

        assert training_frames(m, led) == (8, 8)
        assert sum(c.labeled for c in chunk_progress(m, led)) == 8
        out = retrain(m, led)
        assert out.metrics["replay_frames"] == 8 and out.metrics["replay_fraction"] == 0.5
        assert led.models()[-1].n_train == 16
        from iterate.loop.report import _data_side, _timeline

        assert _timeline(led)[-1]["labels"] == 8  # the loop's labels; the replayed frames are counted apart
        assert (_data_side(m, led)["labels_train"], _data_side(m, led)["labels_replay"]) == (8, 8)
        assert out.metrics["steps"] == 4  # one epoch: 8 new frames / (1 - 0.5) = 16 draws at batch 4


def test_box_head_learns_the_person_box_on_frozen_pose_weights(tmp_path, lspet_coco):
    """``model.box_head`` + ``train.freeze: pose`` adds a box head to the shipped base: the keypoint weights do not
    move, the head's whole-frame boxes end nearer the labeled person's box than the untrained head's, the
    checkpoint rebuilds with its head, and inference refines on the mean of the head's and the keypoint box."""
    from dataclasses import replace

    from model.data import BOX_MARGIN
    from model.geometry import keypoint_box
    from model.infer import load_predictor

    m = load_manifest(REPO / "data_manifest.yaml")
    m.model.box_head, m.train.freeze = True, "pose"
    samples = _samples(lspet_coco, set(range(1, 33)))
    base = REPO / "model" / "weights" / "lspet_upright_w18s_128.pt"  # a base without a head
    setup = train_setup(m)
    setup = replace(setup, train=replace(setup.train, batch_size=8, finetune_lr=3e-3, warmup_steps=0))

    def box_error(ck) -> float:
        boxes = load_predictor(ck, refine=False).predict(samples).boxes
        err = []
        for s, b in zip(samples, boxes):
            (cx, cy), side = keypoint_box(s.keypoints[:, :2], s.keypoints[:, 2], BOX_MARGIN)
            err.append(np.hypot(b[0] - cx, b[1] - cy) / side + abs(np.log(b[2] / side)))
        return float(np.mean(err))

    start = train(setup, samples, [], tmp_path / "start", init=base, max_steps=1)
    res = train(setup, samples, [], tmp_path / "head", init=base, max_steps=150)  # 64² maps: 60 steps went nowhere
    assert "box head new" in res.load_report
    before, after = box_error(start.last), box_error(res.last)
    assert after < 0.7 * before, (before, after)
    got, ref = load_file(res.last)["model"], load_file(base)["model"]
    assert all(torch.equal(got[k], ref[k]) for k in ref)  # the pose weights did not move
    net, ck = model_from_checkpoint(res.last)
    assert net.box_head is not None and ck["config"]["box_head"] and ck["config"]["freeze"] == "pose"
    pred = load_predictor(res.last)
    assert "box head" in pred.settings.describe()
    with_head = pred.predict(samples[:8])
    without = load_predictor(res.last, box_head=False).predict(samples[:8])
    assert with_head.boxes.shape == (8, 3) and np.isfinite(with_head.boxes).all() and without.boxes is None
    assert not np.allclose(with_head.keypoints, without.keypoints)  # the refine pass cropped on other boxes
    from pathlib import Path

    from model.predict import predict_files

    files = [Path(s.path) for s in samples[:3]]
    predict_files(res.last, files, tmp_path / "p.json")
    rows = json.loads((tmp_path / "p.json").read_text())
    assert len(rows) == 3 and all(len(r["bbox"]) == 4 and r["bbox"][2] > 0 for r in rows)  # COCO x, y, w, h
    predict_files(res.last, files, tmp_path / "q.json", box_head=False)
    assert not any("bbox" in r for r in json.loads((tmp_path / "q.json").read_text()))
    # the shipped all-posture base carries a head, which a model with one loads
    from model.checkpoints import load_into
    from model.hrnet import build_model

    net = build_model("hrnet_w18_small", 14, 128, 32, box_head=True)
    shipped = REPO / "model" / "weights" / "lspet_w18s_128.pt"
    assert load_into(net, load_file(shipped), list(m.keypoints.names)).box_head == "loaded"
    # a base without a head warm-starts a model with one and vice versa; the pose weights load either way
    plain = train(
        train_setup(load_manifest(REPO / "data_manifest.yaml")), samples, [], tmp_path / "p", init=res.last, max_steps=1
    )
    assert "box head" not in plain.load_report and load_predictor(plain.last).box_codec is None


def test_freeze_pose_needs_a_box_head():
    from iterate.core.errors import IterateError
    from model.hrnet import build_model
    from model.train import apply_freeze

    with pytest.raises(IterateError, match="box head"):
        apply_freeze(build_model("hrnet_w18_small", 14, 64, 16), "pose")
    net = build_model("hrnet_w18_small", 14, 64, 16, box_head=True)
    frozen = apply_freeze(net, "pose")
    assert "final_layer.weight" in frozen
    assert [n for n, p in net.named_parameters() if p.requires_grad] == [
        f"box_head.{n}" for n, _ in net.box_head.named_parameters()
    ]


def test_refine_passes_rebox_on_the_last_crop_and_its_head_box(lspet_coco):
    """``refine_passes: 2`` on the shipped base (with its box head): the second refine pass runs one more forward
    pass per frame, reads the head's box on the first refined crop and moves the keypoints; the setting travels
    through the checkpoint record's round trip and names itself in the path's description."""
    from model.infer import InferConfig, load_predictor

    shipped = REPO / "model" / "weights" / "lspet_w18s_128.pt"
    samples = _samples(lspet_coco, set(range(7001, 7009)))
    one = load_predictor(shipped, batch_size=8)
    two = load_predictor(shipped, batch_size=8, refine_passes=2)
    calls = []
    inner = two.model.forward
    two.model.forward = lambda *a, **k: calls.append(k.get("with_box", False)) or inner(*a, **k)
    p1, p2 = one.predict(samples), two.predict(samples)
    # whole frame (plain + flip), refine 1 with the head read on the crop, refine 2: three plain/flip pairs
    assert len(calls) == 6 and calls[2] is True and calls[4] is False
    assert not np.allclose(p1.keypoints, p2.keypoints)
    np.testing.assert_allclose(p1.boxes, p2.boxes)  # the reported person box is the whole-frame head's
    st = InferConfig.from_dict(two.settings.to_dict())
    assert st.refine_passes == 2 and "box refine ×2" in st.describe()


def test_a_few_new_frames_with_replay_still_train(tmp_path, lspet_coco):
    """4 new frames at replay fraction 0.5 make an epoch of 8 draws, under one batch of 16: each epoch still trains a
    step (before, the loader dropped the partial batch and the fine-tune trained nothing)."""
    from dataclasses import replace

    m = load_manifest(REPO / "data_manifest.yaml")
    setup = train_setup(m, epochs=2)
    assert setup.train.replay_fraction == 0.5 and setup.train.batch_size == 16
    res = train(
        setup, _samples(lspet_coco, {1, 2, 3, 4}), [], tmp_path / "run", replay=_samples(lspet_coco, set(range(5, 45)))
    )
    assert load_file(res.last)["step"] == 2
    setup = replace(setup, train=replace(setup.train, replay_fraction=0.0))
    res = train(setup, _samples(lspet_coco, {1, 2, 3, 4}), [], tmp_path / "plain", replay=_samples(lspet_coco, {5}))
    assert load_file(res.last)["step"] == 2  # 4 frames, no replay: one partial batch per epoch
