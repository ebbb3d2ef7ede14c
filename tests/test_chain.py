"""The preprocessing chain's contract per stage: the box and flip it reports, what it returns, its errors.

Tiny native files on disk (no codec), non-square on purpose, so rows and columns never mix up unseen.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest

from decode import syntax as TS
from decode.chain import CHAIN_VERSION, STAGES, Preprocessed, parse_size, preprocess
from decode.crop import breast_bbox
from decode.dicom import read_dicom
from decode.laterality import LateralityCheck
from decode.testing.synth import write_dicom
from decode.voi import apply_voi


def _right_breast(h=24, w=16):
    """Stored values with a block against the right edge, brightest there (the breast on the right)."""
    px = np.full((h, w), 100, np.uint16)
    px[4 : h - 4, w - 7 :] = np.linspace(1500, 3000, 7).astype(np.uint16)
    return px


def _file(tmp_path, px, **kw):
    path = write_dicom(str(tmp_path / "c.dcm"), px, transfer_syntax=TS.EXPLICIT_LE, **kw)
    return px, read_dicom(path).meta


@pytest.mark.parametrize("stage", ["raw", "voi"])
def test_raw_and_voi_stages_report_the_full_frame_unflipped(tmp_path, stage):
    px, meta = _file(tmp_path, _right_breast(), window=([1500.0], [3000.0]))
    res = preprocess(px, meta, stage=stage)
    assert res.box == (0, 24, 0, 16)  # rows first, on a non-square frame
    assert res.flipped is False and res.reduction == 0 and res.laterality is None and res.notes == []
    if stage == "raw":
        assert res.image is px
    else:
        np.testing.assert_array_equal(res.image, apply_voi(px, meta))
        assert res.image[10, 15] > res.image[10, 0]  # not mirrored


def test_voi_stage_resizes_without_cropping(tmp_path):
    px, meta = _file(tmp_path, _right_breast())
    res = preprocess(px, meta, stage="voi", size=(12, 12))
    assert res.image.shape == (12, 12) and res.box == (0, 24, 0, 16) and not res.flipped
    assert (res.image[:, 8:] == 0).all() and (res.image[:, :8] > 0).any()  # 24x16 fits as 12x8, padded right


def test_window_index_reaches_the_voi(tmp_path):
    px, meta = _file(tmp_path, _right_breast(), window=([100.0, 3000.0], [50.0, 100.0]))
    first = preprocess(px, meta, stage="voi").image
    second = preprocess(px, meta, stage="voi", window_index=1).image
    np.testing.assert_array_equal(second, apply_voi(px, meta, index=1))
    assert not np.array_equal(first, second)


def test_crop_stage_flips_a_right_breast_into_a_contiguous_copy(tmp_path):
    px, meta = _file(tmp_path, _right_breast(), laterality="R")
    res = preprocess(px, meta, stage="crop")
    img = apply_voi(px, meta)
    box = breast_bbox(img)
    assert res.box == box and res.flipped is True
    y0, y1, x0, x1 = box
    np.testing.assert_array_equal(res.image, img[y0:y1, x0:x1][:, ::-1])
    assert res.image.flags.c_contiguous and res.image.dtype == np.float32
    assert res.laterality.side == "right" and res.notes == []
    default = preprocess(px, meta)  # the crop stage is the default
    assert default.box == box and default.flipped is True
    np.testing.assert_array_equal(default.image, res.image)
    kept = preprocess(px, meta, stage="crop", flip=False)
    assert kept.flipped is False and kept.box == box
    np.testing.assert_array_equal(kept.image, img[y0:y1, x0:x1])


def test_crop_stage_left_breast_is_not_flipped_and_notes_a_disagreeing_header(tmp_path):
    px, meta = _file(tmp_path, _right_breast()[:, ::-1].copy(), laterality="R")
    res = preprocess(px, meta, stage="crop")
    assert res.flipped is False and res.laterality.content_side == "left"
    assert len(res.notes) == 1 and res.notes[0].startswith("laterality: the header says R")
    by_header = preprocess(px, meta, stage="crop", laterality="header")
    assert by_header.flipped is True  # the header's right side decides


def test_crop_stage_sets_padding_to_zero_and_leaves_it_out_of_the_box(tmp_path):
    px = _right_breast()
    px[:, :3] = 4095  # a bright padded border on the left
    px, meta = _file(tmp_path, px, extra={"PixelPaddingValue": 4095})
    res = preprocess(px, meta, stage="crop", flip=False)
    assert res.box[2] > 3  # the border is not breast
    img = preprocess(px, meta, stage="voi").image
    assert img[0, 0] == 1.0  # the voi stage is pydicom's VOI unchanged


def test_crop_stage_leaves_a_padded_strip_out_of_the_box_and_zeroes_padding_inside_it(tmp_path):
    px = _right_breast()  # breast rows 4..19, columns 9..15
    px[0:3, :] = 4095  # a padded strip across the top: unmarked, every column would be breast
    px[10, 12] = 4095  # a padded pixel inside the breast
    px, meta = _file(tmp_path, px, extra={"PixelPaddingValue": 4095})
    res = preprocess(px, meta, stage="crop", flip=False)
    assert res.box == (4, 20, 9, 16)
    expected = apply_voi(px, meta)[4:20, 9:16]
    assert expected[6, 3] > 0
    expected[6, 3] = 0
    np.testing.assert_array_equal(res.image, expected)


def test_crop_stage_with_size_resizes_the_flipped_crop(tmp_path):
    px, meta = _file(tmp_path, _right_breast())
    res = preprocess(px, meta, stage="crop", size=(8, 8))
    assert res.image.shape == (8, 8) and res.flipped
    assert res.image[:, 0].mean() > 0.5  # the chest wall now on the left


def test_window_problem_is_noted_in_voi_and_crop_stages(tmp_path):
    px, meta = _file(tmp_path, _right_breast(), window=([1500.0], [0.5]))
    for stage in ("voi", "crop"):
        notes = preprocess(px, meta, stage=stage).notes
        assert notes[:1] == ["Window Width 0.5 < 1 for LINEAR (pydicom refuses it); using min-max"]


def test_a_voi_function_replaces_apply_voi_and_no_header_is_needed():
    px = _right_breast()
    res = preprocess(px, None, stage="voi", voi=lambda raw: raw.astype(np.float32) / 4000)
    np.testing.assert_array_equal(res.image, px / np.float32(4000))
    assert res.notes == []


def test_reduced_input_reports_the_frame_box(tmp_path):
    px, meta = _file(tmp_path, _right_breast(48, 32))
    small = px[::2, ::2].copy()  # stands in for the frame decoded at half resolution
    box = breast_bbox(apply_voi(small, meta), frame_shape=(48, 32), reduction=1)
    half = preprocess(small, meta, stage="crop", size=(16, 16), reduction=1)
    assert half.reduction == 1 and half.box == box and half.flipped
    assert box == (2, 44, 25, 32)  # frame pixels, not the reduced image's
    # the 42 x 7 frame box fits 16 x 16 as 16 x 3 (7 * 16 / 42 = 2.7), the rest is padding
    assert (half.image[:, :3] > 0).all() and (half.image[:, 3:] == 0).all()
    framed = preprocess(small, None, stage="crop", reduction=1, frame_shape=(48, 32), voi=lambda r: apply_voi(r, meta))
    assert framed.box == box


@pytest.mark.parametrize("stage", ["raw", "voi"])
def test_reduction_outside_the_crop_stage_is_refused(stage):
    with pytest.raises(ValueError, match=r"^reduction 1: only the crop stage decodes below full resolution$"):
        preprocess(np.zeros((4, 4), np.uint16), None, stage=stage, reduction=1)
    with pytest.raises(ValueError, match=r"^reduction -1: only the crop stage"):
        preprocess(np.zeros((4, 4), np.uint16), None, stage="crop", reduction=-1)


def test_unknown_stage_and_laterality_source_are_refused():
    with pytest.raises(ValueError, match=r"^unknown stage 'bogus'; allowed: raw, voi, crop$"):
        preprocess(np.zeros((4, 4), np.uint16), None, stage="bogus")
    with pytest.raises(ValueError, match="laterality 'left' is not one of"):
        preprocess(np.zeros((4, 4), np.uint16), None, stage="raw", laterality="left")
    assert STAGES == ("raw", "voi", "crop") and CHAIN_VERSION == 3


def test_stage_and_result_hints_resolve_and_agree_with_the_checked_values():
    hints = typing.get_type_hints(preprocess)
    assert hints["stage"] == typing.Literal["raw", "voi", "crop"] and typing.get_args(hints["stage"]) == STAGES
    fields = typing.get_type_hints(Preprocessed)
    assert fields["box"] == tuple[int, int, int, int] and fields["laterality"] == LateralityCheck | None


@pytest.mark.parametrize(
    "text,size", [("512x256", (512, 256)), ("512X256", (512, 256)), ("1x1", (1, 1)), (" 8x4", (8, 4))]
)
def test_parse_size_accepts_height_by_width(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text,message",
    [
        ("512", "size '512' is not HxW, e.g. 512x256"),
        ("axb", "size 'axb' is not HxW, e.g. 512x256"),
        ("1x2x3", "size '1x2x3' is not HxW, e.g. 512x256"),
        ("0x5", "size '0x5' must be positive"),
        ("5x0", "size '5x0' must be positive"),
        ("-1x5", "size '-1x5' must be positive"),
    ],
)
def test_parse_size_refuses_with_the_text(text, message):
    with pytest.raises(ValueError) as err:
        parse_size(text)
    assert str(err.value) == message
