import json

import cv2
import numpy as np
import pytest
import torch

from iterate.core.errors import IterateError
from iterate.core.manifest import load_manifest
from model.checkpoints import MPII_JOINTS, load_file, load_into, model_from_checkpoint, save_atomic
from model.codec import DarkCodec
from model.data import Sample
from model.hrnet import PoseHRNet, build_model
from model.infer import Predictor
from model.train import apply_freeze, heatmap_loss

from conftest import LSPET, REPO, SHARED

LAYOUTS = SHARED / "checkpoint_layouts"


def test_heatmap_sizes_for_256_input():
    for hm in (64, 96):
        m = build_model("hrnet_w18_small", 5, 256, hm)
        with torch.no_grad():
            out, emb = m(torch.zeros(1, 3, 256, 256), with_embedding=True)
        assert out.shape == (1, 5, hm, hm) and emb.shape == (1, m.embed_dim)


def test_loss_ignores_unlabeled_joints():
    pred = torch.rand(2, 3, 8, 8)
    target = torch.rand(2, 3, 8, 8)
    w = torch.tensor([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]])
    base = heatmap_loss(pred, target, w)
    pred2 = pred.clone()
    pred2[0, 1] += 5.0  # an unlabeled joint's output changes: loss does not
    pred2[1, 2] -= 3.0
    assert heatmap_loss(pred2, target, w) == pytest.approx(float(base))
    pred3 = pred.clone()
    pred3[0, 2] += 1.0
    assert heatmap_loss(pred3, target, w) > base


def test_loss_foreground_weight_and_hard_joint_mining():
    """fg_weight: the same squared error costs more at a joint's peak than in the background; topk: only each
    sample's hardest joints count, so an error on an easy joint stops mattering once it falls out of the top k."""
    target = torch.zeros(1, 3, 9, 9)
    target[0, :, 4, 4] = 1.0
    w = torch.ones(1, 3)
    at_peak, far = target.clone(), target.clone()
    at_peak[0, 0, 4, 4] += 0.5
    far[0, 0, 0, 0] += 0.5
    assert heatmap_loss(at_peak, target, w) == pytest.approx(float(heatmap_loss(far, target, w)))
    assert heatmap_loss(at_peak, target, w, fg_weight=4.0) > 3 * heatmap_loss(far, target, w, fg_weight=4.0)
    assert heatmap_loss(far, target, w, fg_weight=4.0) == pytest.approx(float(heatmap_loss(far, target, w)))

    pred = target.clone()
    pred[0, 0] += 0.3  # the hardest joint
    pred[0, 1] += 0.1
    pred[0, 2, 0, 0] += 0.1  # the easiest
    full = heatmap_loss(pred, target, w)
    top2 = heatmap_loss(pred, target, w, topk=2)
    assert top2 > full  # the easiest joint no longer dilutes the mean
    easier = pred.clone()
    easier[0, 2, 0, 0] = 0.0  # changing the joint outside the top 2 leaves the mined loss alone
    assert heatmap_loss(easier, target, w, topk=2) == pytest.approx(float(top2))
    assert heatmap_loss(easier, target, w) < full
    assert heatmap_loss(pred, target, w, topk=3) == pytest.approx(float(full))  # k = all joints: plain MSE


def _random_state(layout: dict) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        k: torch.randn(*shape, generator=g) if shape else torch.randn((), generator=g)
        for k, shape in layout["keys"].items()
    }


@pytest.fixture(scope="module")
def official_w32(tmp_path_factory):
    layout = json.loads((LAYOUTS / "pose_hrnet_w32_mpii_256x256.json").read_text())
    sd = _random_state(layout)
    for k in list(sd):  # BN counters are integer tensors in real checkpoints
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0)
    p = tmp_path_factory.mktemp("ck") / "pose_hrnet_w32_mpii.pth"
    torch.save(sd, p)
    return p, sd


def test_official_layout_loads_with_nothing_unexpected(official_w32):
    p, sd = official_w32
    model = PoseHRNet("hrnet_w32", 16, 256, 64)
    rep = load_into(model, load_file(p), MPII_JOINTS, path=p)
    assert rep.layout == "official" and rep.complete
    assert rep.unexpected == [] and rep.missing == [] and rep.mismatched == []
    assert torch.equal(
        model.backbone.state_dict()["stage4.0.branches.0.0.conv1.weight"], sd["stage4.0.branches.0.0.conv1.weight"]
    )
    assert torch.equal(model.final_layer.weight, sd["final_layer.weight"])


def test_mmpose_layout_and_new_joint_from_nearest(official_w32, tmp_path):
    _, sd = official_w32
    mm = {
        "meta": {"epoch": 210},
        "state_dict": {
            **{f"backbone.{k}": v for k, v in sd.items() if not k.startswith("final_layer")},
            "head.final_layer.weight": sd["final_layer.weight"],
            "head.final_layer.bias": sd["final_layer.bias"],
        },
    }
    p = tmp_path / "mmpose.pth"
    torch.save(mm, p)
    joints = ["right_ankle", "head_top", "neck", "head_top_ext"]
    model = PoseHRNet("hrnet_w32", len(joints), 256, 64)
    # LSP's `neck` is MPII's `upper_neck` (a built-in correspondence, iterate.core.joints.SAME_JOINT)
    with pytest.raises(IterateError, match=r"joints with no source: head_top_ext\)"):
        load_into(model, load_file(p), joints, path=p)
    rep = load_into(model, load_file(p), joints, {"head_top_ext": "head_top"}, path=p)
    assert rep.layout == "mmpose" and rep.complete
    w = model.final_layer.weight
    assert torch.equal(w[1], sd["final_layer.weight"][9])  # head_top
    assert torch.equal(w[2], sd["final_layer.weight"][8])  # neck ← upper_neck
    assert torch.equal(w[3], sd["final_layer.weight"][9])  # head_top_ext ← head_top (nearest)
    assert rep.joints_from_nearest == {"head_top_ext": "head_top"} and "neck" in rep.joints_copied


def test_wrong_layout_lists_what_did_not_match(official_w32, tmp_path):
    p, _ = official_w32
    model = PoseHRNet("hrnet_w18_small", 16, 128, 32)
    with pytest.raises(IterateError) as e:
        load_into(model, load_file(p), MPII_JOINTS, path=p)
    assert "shape mismatch" in str(e.value) and "--allow-partial" in str(e.value)
    bad = tmp_path / "x.pth"
    torch.save({"foo": 1}, bad)
    with pytest.raises(IterateError, match="unknown checkpoint layout"):
        load_into(model, load_file(bad), MPII_JOINTS, path=bad)


def test_flip_tta_symmetric_input_gives_symmetric_joints(tmp_path):
    m = load_manifest(REPO / "data_manifest.yaml")
    img = cv2.imread(str(LSPET / "images" / "im07002.jpg"))
    half = img[:, : img.shape[1] // 2]
    sym = np.concatenate([half, half[:, ::-1]], axis=1)
    p = tmp_path / "sym.png"
    cv2.imwrite(str(p), sym)
    torch.manual_seed(0)
    model = build_model("hrnet_w18_small", 14, 128, 32)
    torch.nn.init.normal_(model.final_layer.weight, std=0.5)
    codec = DarkCodec(128, 32, 2.0)
    pred = Predictor(model, codec, m.keypoints.flip_index(), flip=True).predict([Sample(str(p))])
    kp = pred.keypoints[0]
    w = sym.shape[1]
    for a, b in m.keypoints.flip_pairs:
        ia, ib = m.keypoints.index(a), m.keypoints.index(b)
        assert kp[ia, 0] == pytest.approx(w - 1 - kp[ib, 0], abs=1e-3)
        assert kp[ia, 1] == pytest.approx(kp[ib, 1], abs=1e-3)
        assert pred.scores[0, ia] == pytest.approx(pred.scores[0, ib], abs=1e-5)


def test_freeze_all_but_stage4():
    model = build_model("hrnet_w18_small", 14, 128, 32)
    frozen = apply_freeze(model, "all_but_stage4")
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert frozen and trainable and all(n.startswith("stage4") for n in trainable)
    with pytest.raises(IterateError, match="no trunk module named 'stage9'"):
        apply_freeze(build_model("hrnet_w18_small", 14, 128, 32), "stage9")


def test_atomic_checkpoint_loads_weights_only(tmp_path):
    model = build_model("hrnet_w18_small", 14, 128, 32)
    p = tmp_path / "ck.pt"
    save_atomic(
        {
            "format": "iterate-pose-v1",
            "model": model.state_dict(),
            "joints": MPII_JOINTS[:14],
            "backbone": "hrnet_w18_small",
            "input_size": 128,
            "heatmap_size": 32,
            "sigma": 2.0,
        },
        p,
    )
    assert [x.name for x in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    m2, ck = model_from_checkpoint(p)
    assert ck["heatmap_size"] == 32 and isinstance(m2, PoseHRNet)
