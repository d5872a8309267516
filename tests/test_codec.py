import numpy as np
import pytest
import torch

from model.codec import DarkCodec
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
