"""Each augmentation keeps keypoints on the same image content: draw a dot, transform, find the dot."""

import cv2
import numpy as np
import pytest

from iterate.core.manifest import AugmentSettings
from model import augment as aug
from model.codec import DarkCodec
from model.data import PoseDataset, Sample
from model.geometry import apply, compose, crop_matrix


def _dot_image(tmp_path, xy, shape=(180, 140)):
    img = np.zeros((*shape, 3), np.uint8)
    cv2.circle(img, (int(round(xy[0])), int(round(xy[1]))), 0, (255, 255, 255), -1)
    img = cv2.GaussianBlur(img, (0, 0), 2.5)
    img = (img.astype(np.float32) * (255.0 / img.max())).astype(np.uint8)
    p = tmp_path / "dot.png"
    cv2.imwrite(str(p), img)
    return p, img


def _centroid(img):
    g = img.astype(np.float64) if img.ndim == 2 else img.mean(axis=2)
    g = np.where(g > g.max() * 0.5, g, 0)
    ys, xs = np.mgrid[: g.shape[0], : g.shape[1]]
    return np.array([(xs * g).sum() / g.sum(), (ys * g).sum() / g.sum()])


@pytest.mark.parametrize("op", [o for o in aug.OPS if o.kind == aug.GEOMETRIC], ids=lambda o: o.name)
def test_geometric_op_moves_keypoint_with_content(tmp_path, op):
    pt = np.array([63.0, 97.0])
    _, img = _dot_image(tmp_path, pt)
    base = crop_matrix((69.5, 89.5), 180.0, 128)
    rng = np.random.default_rng(3)
    m = compose(op.fn(rng, 1.0, 128), base)
    crop = cv2.warpAffine(img, m, (128, 128), flags=cv2.INTER_LINEAR)
    assert np.abs(_centroid(crop) - apply(m, pt)).max() < 0.35


def test_flip_swaps_left_right_and_follows_content(tmp_path):
    pt = np.array([40.0, 60.0])
    p, _ = _dot_image(tmp_path, pt)
    codec = DarkCodec(128, 32, 2.0)
    kps = np.array([[pt[0], pt[1], 2], [0, 0, 0]], dtype=np.float64)  # joint 0 = "left", 1 = "right"
    ds = PoseDataset(
        [Sample(str(p), kps)],
        codec,
        flip_index=[1, 0],
        joint_weights=[1, 1],
        train=True,
        augment=AugmentSettings(n=0, flip=True, rotate_deg=0, scale=0, head_up=False),
    )
    flipped = 0
    for epoch in range(8):
        ds.epoch = epoch
        item = ds[0]
        j = int(item["weights"].argmax())  # the labeled joint's channel after a possible swap
        flipped += j == 1
        xy, _ = codec.decode(item["heatmaps"][None])
        crop = item["image"].numpy().transpose(1, 2, 0)
        assert np.abs(_centroid(crop - crop.min()) - xy[0, j]).max() < 0.4
    assert 0 < flipped < 8  # both flipped and unflipped samples were drawn


def test_full_augmented_sample_keeps_dot_under_keypoint(tmp_path):
    pt = np.array([70.0, 80.0])
    p, _ = _dot_image(tmp_path, pt)
    codec = DarkCodec(128, 32, 2.0)
    kps = np.array([[pt[0], pt[1], 2]], dtype=np.float64)
    ds = PoseDataset(
        [Sample(str(p), kps)],
        codec,
        flip_index=[0],
        joint_weights=[1],
        train=True,
        augment=AugmentSettings(n=3, m=0.8, max_pixel=0, max_noise=0),
    )
    for epoch in range(6):
        ds.epoch = epoch
        item = ds[0]
        if item["weights"][0] == 0:
            continue  # pushed out of the crop: no label weight
        xy, _ = codec.decode(item["heatmaps"][None])
        crop = item["image"].numpy().transpose(1, 2, 0)
        assert np.abs(_centroid(crop - crop.min()) - xy[0, 0]).max() < 0.4


def test_caps_per_type():
    rng = np.random.default_rng(0)
    for _ in range(200):
        ops = aug.sample_ops(rng, 6, {aug.PIXEL: 1, aug.NOISE: 1})
        kinds = [o.kind for o in ops]
        assert kinds.count(aug.PIXEL) <= 1 and kinds.count(aug.NOISE) <= 1
        assert len(ops) == 5  # 3 geometric + 1 pixel + 1 noise is all the caps allow
    ops = aug.sample_ops(rng, 2, {aug.PIXEL: 0, aug.NOISE: 0})
    assert all(o.kind == aug.GEOMETRIC for o in ops)


@pytest.mark.parametrize("op", [o for o in aug.OPS if o.kind != aug.GEOMETRIC], ids=lambda o: o.name)
def test_pixel_and_noise_ops_keep_shape_and_change_pixels(op):
    rng = np.random.default_rng(5)
    img = cv2.imread(str(__import__("conftest").LSPET / "images" / "im07001.jpg"))
    out = op.fn(rng, 1.0, img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() > 0.1


def test_box_jitter_moves_person_crops_off_centre_and_keeps_the_labels_on_the_content(tmp_path):
    """Person crops centre the labeled joints' box; ``box_jitter`` shifts that centre (as the refine pass's real
    boxes are off), and the dot stays under its keypoint either way."""
    pt = np.array([70.0, 80.0])
    p, _ = _dot_image(tmp_path, pt)
    codec = DarkCodec(128, 32, 2.0)
    kps = np.array([[pt[0], pt[1], 2], [50.0, 40.0, 2], [95.0, 130.0, 2]], dtype=np.float64)
    plain = AugmentSettings(n=0, flip=False, rotate_deg=0, scale=0, max_pixel=0, max_noise=0)

    def crop_centres(jitter: float) -> np.ndarray:
        ds = PoseDataset(
            [Sample(str(p), kps)],
            codec,
            flip_index=[0, 1, 2],
            joint_weights=[1, 1, 1],
            train=True,
            augment=plain,
            person_box_p=1.0,
            box_jitter=jitter,
        )
        out = []
        for epoch in range(12):
            ds.epoch = epoch
            item = ds[0]
            xy, _ = codec.decode(item["heatmaps"][None])
            crop = item["image"].numpy().transpose(1, 2, 0)
            assert np.abs(_centroid(crop - crop.min()) - xy[0, 0]).max() < 0.5
            out.append((xy[0].min(axis=0) + xy[0].max(axis=0)) / 2)  # the joints' box centre in the crop
        return np.array(out)

    centred, jittered = crop_centres(0.0), crop_centres(0.1)
    assert np.abs(centred - 63.5).max() < 1.0
    shift = np.abs(jittered - 63.5)
    assert shift.max() > 5.0 and 2.0 < shift.mean() < 15.0  # σ 0.1 of a side of ≈ 128 / margin crop pixels
