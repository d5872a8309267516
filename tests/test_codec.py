import numpy as np
import pytest
import torch

from model.codec import BoxCodec, DarkCodec
from model.geometry import apply, compose, crop_matrix, hflip_matrix, invert


def test_encode_shapes_and_weights():
    c = DarkCodec(128, 32, 2.0)
    kps = np.array([[64.0, 64.0], [10.3, 100.7], [500.0, 20.0], [30.0, 30.0]])
    hm, w = c.encode(kps, np.array([2, 1, 2, 0]))
    assert hm.shape == (4, 32, 32) and hm.dtype == np.float32
    assert w.tolist() == [1, 1, 0, 0]  # outside the crop and unlabeled lose their weight
    assert hm[2].max() == 0 and hm[3].max() == 0
    assert hm[0].max() == pytest.approx(np.exp(-(0.375**2 * 2) / 8), rel=1e-5)  # 64 → 15.625 in heatmap px


@pytest.mark.parametrize("hm_size", [32, 64, 96])
def test_encode_decode_round_trip(hm_size):
    c = DarkCodec(256, hm_size, 2.0)
    rng = np.random.default_rng(1)
    kps = rng.uniform(40, 216, size=(50, 2))
    hms = np.stack([c.encode(k[None], np.ones(1))[0] for k in kps])  # (50, 1, H, W)
    xy, conf = c.decode(hms)
    assert xy.shape == (50, 1, 2) and conf.shape == (50, 1)
    assert np.abs(xy[:, 0] - kps).max() * hm_size / 256 < 0.005  # in heatmap pixels
    std, _ = c.decode_standard(hms)
    err_std = np.abs(std[:, 0] - kps).mean()
    assert err_std > 10 * np.abs(xy[:, 0] - kps).mean()  # DARK beats argmax + quarter shift


def test_decode_is_vectorised_over_batch_and_joints():
    c = DarkCodec(128, 32, 2.0)
    kps = np.array([[[30.2, 40.7], [90.1, 20.9]], [[60.6, 61.4], [100.3, 99.9]]])
    hms = np.stack([c.encode(k, np.ones(2))[0] for k in kps])
    xy, _ = c.decode(torch.from_numpy(hms))
    assert xy.shape == (2, 2, 2)
    np.testing.assert_allclose(xy, kps, atol=0.01)


def test_codec_errors():
    with pytest.raises(ValueError):
        DarkCodec(128, 0)
    c = DarkCodec(128, 32)
    with pytest.raises(ValueError, match="visibility"):
        c.encode(np.zeros((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        c.decode(np.zeros((32, 32)))


def test_image_crop_heatmap_round_trip_through_affine_path():
    """image point → crop (rotated, flipped) → heatmap encode → decode → back to the image."""
    c = DarkCodec(128, 32, 2.0)
    rng = np.random.default_rng(0)
    img_pts = rng.uniform(60, 140, size=(20, 2))
    m = compose(hflip_matrix(128), crop_matrix((100.0, 100.0), 180.0, 128, rotation_deg=25.0))
    crop_pts = apply(m, img_pts)
    hms = np.stack([c.encode(p[None], np.ones(1))[0] for p in crop_pts])
    xy, _ = c.decode(hms)
    back = apply(invert(m), xy[:, 0])
    assert np.abs(back - img_pts).max() < 0.02


def test_crop_matrix_pixel_edges():
    m = crop_matrix((49.5, 49.5), 100.0, 50)  # a 100×100 image onto a 50×50 crop
    np.testing.assert_allclose(
        apply(m, np.array([[-0.5, -0.5], [99.5, 99.5], [49.5, 49.5]])),
        [[-0.5, -0.5], [49.5, 49.5], [24.5, 24.5]],
        atol=1e-9,
    )


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def test_box_codec_shapes_and_round_trip():
    """A box encoded as its centre map and log side, read back as the head's output, decodes to the same box."""
    c = BoxCodec(128, 32, 2.0)
    rng = np.random.default_rng(3)
    centres = torch.tensor(rng.uniform(20, 108, size=(40, 2)), dtype=torch.float32)
    sides = torch.tensor(rng.uniform(30, 200, size=40), dtype=torch.float32)
    maps, log_side = c.encode(centres, sides)
    assert maps.shape == (40, 32, 32) and log_side.shape == (40,)
    assert float(maps.amax()) <= 1.0 and float(maps.amax((1, 2)).min()) > 0.85  # a peak at every centre
    out = torch.stack([_logit(maps), log_side[:, None, None].expand(-1, 32, 32)], 1)
    got_c, got_s, conf = c.decode(out)
    assert got_c.shape == (40, 2) and got_s.shape == (40,) and conf.shape == (40,)
    # the 3×3 mean is biased towards the grid by < half a map pixel (= 2 input px at 128/32)
    assert np.abs(got_c - centres.numpy()).max() < 2.0
    np.testing.assert_allclose(got_s, sides.numpy(), rtol=1e-4)


def test_box_codec_loss_is_zero_at_the_target_and_ignores_invalid_frames():
    c = BoxCodec(128, 32, 2.0)
    centres, sides = torch.tensor([[40.0, 70.0], [90.0, 30.0]]), torch.tensor([80.0, 50.0])
    maps, ls = c.encode(centres, sides)
    perfect = torch.stack([_logit(maps), ls[:, None, None].expand(-1, 32, 32)], 1)
    wrong = perfect.clone()
    wrong[1] = 0.0
    assert float(c.loss(perfect, centres, sides, torch.ones(2))) < 1e-3
    assert float(c.loss(wrong, centres, sides, torch.ones(2))) > 1.0
    assert float(c.loss(wrong, centres, sides, torch.tensor([1.0, 0.0]))) < 1e-3  # frame 2 has no box


def test_box_codec_errors():
    with pytest.raises(ValueError):
        BoxCodec(128, 0)
    c = BoxCodec(128, 32)
    with pytest.raises(ValueError, match="sides"):
        c.encode(torch.zeros(2, 2), torch.ones(3))
    with pytest.raises(ValueError, match="> 0"):
        c.encode(torch.zeros(1, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="box head output"):
        c.decode(torch.zeros(1, 3, 32, 32))
