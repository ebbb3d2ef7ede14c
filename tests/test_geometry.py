"""Breast box, crop, flip and resize on images with known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from decode.chain import parse_size, preprocess
from decode.crop import breast_bbox, flip_to_left, otsu_threshold
from decode.resize import fit_size, resize, resize_pad
from decode.testing.synth import make_mammogram


def _rect_image(h=400, w=300, box=(50, 350, 0, 180), level=0.7):
    img = np.full((h, w), 0.05, np.float32)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = level
    return img


def test_otsu_separates_two_levels():
    img = _rect_image()
    assert otsu_threshold(img) == 13 / 256  # the upper edge of 0.05's bin: the first split of the plateau


def test_bbox_recovers_rectangle_within_margin():
    img = _rect_image()
    y0, y1, x0, x1 = breast_bbox(img, margin=0.0)
    assert abs(y0 - 50) <= 2 and abs(y1 - 350) <= 2 and x0 == 0 and abs(x1 - 180) <= 2


def test_bbox_ignores_small_separate_label():
    img = _rect_image()
    img[10:18, 250:290] = 1.0  # a burned-in marker beyond a gap of background
    y0, y1, x0, x1 = breast_bbox(img, margin=0.0)
    assert x1 <= 185 and y0 >= 45


def test_bbox_margin_grows_box_inside_frame():
    img = _rect_image()
    tight = breast_bbox(img, margin=0.0)
    loose = breast_bbox(img, margin=0.05)
    assert loose[0] <= tight[0] and loose[1] >= tight[1] and loose[3] >= tight[3]
    assert loose[0] >= 0 and loose[1] <= 400 and loose[3] <= 300


def test_bbox_empty_image_is_full_frame():
    assert breast_bbox(np.zeros((64, 48), np.float32)) == (0, 64, 0, 48)


def test_flip_puts_breast_on_left():
    img = _rect_image(box=(50, 350, 120, 300))
    out, flipped = flip_to_left(img)
    assert flipped and out[:, :100].mean() > out[:, -100:].mean()
    same, flipped2 = flip_to_left(out)
    assert not flipped2 and same is out


def test_fit_size_keeps_aspect():
    assert fit_size(400, 300, (200, 200)) == (200, 150)
    assert fit_size(100, 400, (64, 64)) == (16, 64)


def test_resize_preserves_constant_and_mean():
    img = np.full((333, 257), 0.25, np.float32)
    out = resize(img, (64, 50))
    assert out.shape == (64, 50) and np.allclose(out, 0.25, atol=1e-6)
    rng = np.random.default_rng(0)
    noise = rng.random((400, 300)).astype(np.float32)
    small = resize(noise, (100, 75))
    assert abs(small.mean() - noise.mean()) < 1e-3
    assert small.std() < noise.std() / 2  # antialiasing averages, not point-samples


def test_resize_upsampling_is_bilinear_like():
    img = np.array([[0.0, 1.0]], np.float32)
    out = resize(img, (1, 4))
    assert np.all(np.diff(out[0]) >= 0) and out[0, 0] == 0.0 and out[0, -1] == 1.0


def test_resize_pad_places_image_top_left_and_pads_zero():
    img = np.ones((100, 50), np.float32)
    out = resize_pad(img, (64, 64))
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert np.allclose(out[:, :32], 1.0) and np.all(out[:, 32:] == 0.0)


def test_crop_stage_on_mammogram(tmp_path):
    rng = np.random.default_rng(3)
    img = make_mammogram(rng, 208, 160, side="R", cancer=False)
    stored = np.round(img * 4095).astype(np.uint16)
    from decode.decoding import decode_file
    from decode.testing.synth import write_dicom

    p = write_dicom(str(tmp_path / "m.dcm"), stored, bits_stored=12, window=([2047.5], [4095.0]))
    dec = decode_file(p)
    res = preprocess(dec.pixels, dec.meta, stage="crop", size=(128, 96))
    assert res.image.shape == (128, 96) and res.flipped
    y0, y1, x0, x1 = res.box
    assert x1 - x0 < 160 and x1 == 160  # breast on the right, box reaches the chest wall
    assert res.image[:, :8].mean() > res.image[:, -8:].mean()


def test_parse_size():
    assert parse_size("512x256") == (512, 256)
    with pytest.raises(ValueError):
        parse_size("512")
    with pytest.raises(ValueError):
        parse_size("0x5")


def test_unknown_stage_lists_allowed():
    with pytest.raises(ValueError, match="raw, voi, crop"):
        preprocess(np.zeros((4, 4), np.uint16), None, stage="bogus")


@pytest.mark.parametrize(
    "shape,out",
    [((2900, 1800), (1024, 636)), ((37, 53), (100, 90)), ((64, 48), (64, 20)), ((1, 37), (1, 5)), ((300, 200), (7, 3))],
)
def test_banded_resize_equals_dense_matrix_resampling(shape, out):
    """The banded sum against the dense matrix of the same weights (the weights themselves are checked
    against torch's antialiased resampling in test_crop.py)."""
    from decode.resize import resample_weights

    rng = np.random.default_rng(1)
    img = rng.random(shape).astype(np.float32)
    dense = resample_weights(shape[0], out[0]) @ img @ resample_weights(shape[1], out[1]).T
    assert np.abs(resize(img, out) - dense).max() < 1e-5
