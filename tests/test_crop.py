"""Breast box, Otsu threshold, longest run, flip and resize at their exact edges (tiny images, exact values)."""

from __future__ import annotations

import typing
import warnings

import numpy as np
import pytest

from decode.crop import _longest_run, breast_bbox, crop, flip_to_left, needs_flip, otsu_threshold, reduce_box
from decode.resize import fit_size, resample_taps, resample_weights, resize, resize_pad

# --- Otsu ------------------------------------------------------------------------------------------


def test_otsu_threshold_of_two_levels_is_the_first_bin_of_the_plateau():
    # every split between the two levels separates them equally well: the first one is kept,
    # and the threshold is that bin's upper edge (values above it are foreground)
    img = np.array([0.05] * 6 + [0.7] * 4, np.float32)
    assert otsu_threshold(img) == 13 / 256  # 0.05 is in bin 12
    assert otsu_threshold(img, bins=10) == 0.1  # bin 0 of 10
    assert otsu_threshold(np.array([0.0, 0.0, 1.0], np.float32)) == 1 / 256


def test_otsu_threshold_weights_the_classes_by_their_counts():
    # three levels (bin centres 0.15, 0.55, 0.85); between-class variance w0·w1·(m0 − m1)²:
    # 10/40/50: {0.1} | {0.5, 0.9} 0.029, {0.1, 0.5} | {0.9} 0.036 -> split above 0.5
    img = np.array([0.1] * 10 + [0.5] * 40 + [0.9] * 50, np.float32)
    assert otsu_threshold(img, bins=10) == 0.6
    # 50/40/10: 0.053 against 0.025 -> split above 0.1
    img = np.array([0.1] * 50 + [0.5] * 40 + [0.9] * 10, np.float32)
    assert otsu_threshold(img, bins=10) == 0.2


def test_otsu_threshold_leaves_background_out_and_is_one_half_without_pixels():
    img = np.array([0.0] * 90 + [0.4] * 5 + [0.8] * 5, np.float32)
    bg = img == 0.0
    assert otsu_threshold(img, bins=10, background=bg) == 0.5  # between 0.4 and 0.8, not 0 and the rest
    assert otsu_threshold(img, bins=10) == 0.1
    assert otsu_threshold(np.zeros(0, np.float32)) == 0.5
    assert otsu_threshold(img, background=np.ones(img.shape, bool)) == 0.5
    assert otsu_threshold(np.full(7, 0.3, np.float32), bins=10) == 0.1  # one level: no split, the first bin


def test_otsu_threshold_counts_a_value_of_one_in_the_closed_top_bin():
    # bin indices 0, 5 and 9 (1.0 is in the last bin), 1, 2 and 2 pixels; w0·w1·(m1 − m0)² in bin units:
    # {0} | {5, 5, 9, 9} 1·4·(7 − 0)² = 196, {0, 5, 5} | {9, 9} 3·2·(9 − 10/3)² = 192.7 -> split above bin 0
    img = np.array([0.0, 0.5, 0.5, 1.0, 1.0], np.float32)
    assert otsu_threshold(img, bins=10) == 0.1


def test_otsu_threshold_splits_two_pixels_in_adjacent_bins():
    # the smallest between-class variance a split can have (1·1·1² in bin units) still beats no split
    assert otsu_threshold(np.array([0.35, 0.45], np.float32), bins=10) == 0.4
    assert otsu_threshold(np.array([0.45, 0.35], np.float32), bins=10) == 0.4


def test_otsu_threshold_of_a_majority_and_two_stragglers():
    # bins 0, 1, 2, 3 holding 4, 10, 1, 1 pixels (mean bin 15/16); w0·w1·(m1 − m0)²:
    # {0} | rest 4·12·1.25² = 75, {0, 1} | {2, 3} 14·2·(2.5 − 5/7)² = 89.3, {0, 1, 2} | {3} 15·1·(3 − 0.8)² = 72.6
    img = np.array([0.05] * 4 + [0.15] * 10 + [0.25, 0.35], np.float32)
    assert otsu_threshold(img, bins=10) == 0.2


# --- longest run -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,run",
    [
        ([], (0, 0)),
        ([0, 0, 0], (0, 0)),
        ([1], (0, 1)),
        ([1, 1, 0, 1, 1], (0, 2)),  # a tie: the first run is kept
        ([0, 1, 1, 0, 1, 1, 1], (4, 7)),  # the longest run ends the array
        ([1, 0, 1, 1, 1, 0, 1, 1], (2, 5)),
        ([0, 1, 0], (1, 2)),
    ],
)
def test_longest_run(flags, run):
    assert _longest_run(np.array(flags, bool)) == run


# --- breast box ------------------------------------------------------------------------------------


def _block(h, w, box, level=0.8, bg=0.0):
    img = np.full((h, w), bg, np.float32)
    y0, y1, x0, x1 = box
    img[y0:y1, x0:x1] = level
    return img


def test_bbox_is_exact_on_a_small_image_without_margin():
    img = _block(40, 30, (5, 33, 0, 17))
    assert breast_bbox(img, margin=0.0) == (5, 33, 0, 17)
    # margin: round(size * margin) on each side, clipped to the frame
    assert breast_bbox(img, margin=0.1) == (2, 36, 0, 19)  # 28 * 0.1 -> 3, 17 * 0.1 -> 2
    assert breast_bbox(img, margin=0.5) == (0, 40, 0, 25)  # 17 * 0.5 = 8.5 rounds to 8 (half to even)
    assert breast_bbox(img) == (4, 34, 0, 17)  # default margin 0.02: 28 -> 1, 17 -> 0


def test_bbox_on_a_strided_thumbnail_scales_back_to_frame_pixels():
    img = _block(40, 30, (9, 30, 0, 14))
    assert breast_bbox(img, thumb=40, margin=0.0) == (9, 30, 0, 14)  # step 1
    assert breast_bbox(img, thumb=20, margin=0.0) == (10, 30, 0, 14)  # step 2: rows 10..28 sampled
    assert breast_bbox(img, thumb=13, margin=0.0) == (12, 32, 0, 16)  # step ceil(40 / 13) = 4: rows 12..28
    # 38 x 29 at step ceil(38 / 13) = 3: the last thumbnail row and column end past the frame, clipped
    assert breast_bbox(_block(38, 29, (8, 38, 0, 29)), thumb=13, margin=0.0) == (9, 38, 0, 29)


def test_bbox_fraction_must_be_exceeded_not_met():
    img = _block(20, 20, (0, 20, 0, 10))
    img[0:2, 10:20] = 0.8  # 2 of 20 rows lit in the right half: a fraction of exactly 0.1
    assert breast_bbox(img, margin=0.0, min_fraction=0.1) == (0, 20, 0, 10)
    assert breast_bbox(img, margin=0.0, min_fraction=0.09) == (0, 20, 0, 20)


def test_bbox_leaves_known_background_out():
    img = _block(20, 20, (2, 18, 0, 9))
    img[:, 10:] = 1.0  # a bright border wider than the breast, marked as padding
    pad = np.zeros(img.shape, bool)
    pad[:, 10:] = True
    assert breast_bbox(img, margin=0.0, background=pad) == (2, 18, 0, 9)
    assert breast_bbox(img, margin=0.0) == (0, 20, 10, 20)  # unmarked, the border is the longest run


def test_bbox_full_frame_when_no_column_qualifies():
    assert breast_bbox(np.zeros((9, 7), np.float32)) == (0, 9, 0, 7)
    img = np.zeros((30, 30), np.float32)
    img[0, :] = 1.0  # one lit row: each column 1/30 lit, not above 0.05
    assert breast_bbox(img, min_fraction=0.05, margin=0.0) == (0, 30, 0, 30)
    assert breast_bbox(img, min_fraction=0.03, margin=0.0) == (0, 1, 0, 30)


def test_bbox_at_reduced_resolution_reports_frame_pixels():
    frame = _block(64, 48, (8, 56, 0, 24))
    half = frame[::2, ::2]
    quarter = frame[::4, ::4]
    full = breast_bbox(frame, margin=0.0, thumb=16)
    assert breast_bbox(half, margin=0.0, thumb=16, frame_shape=(64, 48), reduction=1) == full
    assert breast_bbox(quarter, margin=0.0, thumb=16, frame_shape=(64, 48), reduction=2) == full
    with pytest.raises(ValueError, match=r"^reduction must be >= 0, got -1$"):
        breast_bbox(frame, reduction=-1)
    with pytest.raises(ValueError, match=r"^frame_shape \(64, 40\) differs from the image \(64, 48\) at reduction 0$"):
        breast_bbox(frame, frame_shape=(64, 40))
    assert breast_bbox(frame, frame_shape=(64, 48), margin=0.0, thumb=16) == full


def test_bbox_margin_is_a_fraction_of_the_box_size_not_of_its_position():
    img = _block(40, 30, (5, 33, 6, 23))
    assert breast_bbox(img, margin=0.0) == (5, 33, 6, 23)
    assert breast_bbox(img, margin=0.1) == (2, 36, 4, 25)  # 28 * 0.1 -> 3, 17 * 0.1 -> 2


def test_bbox_row_fraction_must_be_exceeded_not_met():
    img = _block(20, 20, (4, 20, 0, 10))
    img[2:4, 0] = 0.8  # rows 2 and 3: 1 of the run's 10 columns lit, a fraction of exactly 0.1
    assert breast_bbox(img, margin=0.0, min_fraction=0.1) == (4, 20, 0, 10)
    assert breast_bbox(img, margin=0.0, min_fraction=0.09) == (2, 20, 0, 10)


def test_bbox_pixel_exactly_at_the_threshold_is_foreground():
    # background in bin 127, tissue at 0.5, the first value of bin 128: the split is above bin 127,
    # at 128 / 256 = 0.5 itself, and the tissue is above it
    img = np.full((12, 10), 127 / 256, np.float32)
    img[2:9, 0:6] = 0.5
    assert otsu_threshold(img) == 0.5
    assert breast_bbox(img, margin=0.0) == (2, 9, 0, 6)


def test_bbox_default_thumbnail_is_256_pixels():
    img = _block(257, 8, (5, 250, 0, 8))
    assert breast_bbox(img[:256], margin=0.0) == (5, 250, 0, 8)  # step 1
    assert breast_bbox(img, margin=0.0) == (6, 250, 0, 8)  # 257 rows: step 2, even rows sampled
    assert breast_bbox(img, margin=0.0, thumb=257) == (5, 250, 0, 8)


def test_bbox_of_a_blank_frame_is_the_frame_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mean of an empty slice
        assert breast_bbox(np.zeros((9, 7), np.float32)) == (0, 9, 0, 7)
        assert breast_bbox(np.full((9, 7), 0.3, np.float32), background=np.ones((9, 7), bool)) == (0, 9, 0, 7)


def test_bbox_at_reduced_resolution_reads_the_rounded_reduced_pixel_of_each_frame_pixel():
    # frame row y reads reduced row (y + 2^(r-1)) >> r (y / 2^r rounded half up), clamped to the last row
    reduced = np.zeros((8, 6), np.float32)  # a 16 x 12 frame at 1/2
    reduced[2:7, 1:5] = 0.8  # the last row and column dark
    # rows: (y + 1) >> 1 in 2..6 for y in 3..12; columns: in 1..4 for x in 1..8; y = 15, x = 11 clamp to 7, 5
    assert breast_bbox(reduced, margin=0.0, frame_shape=(16, 12), reduction=1) == (3, 13, 1, 9)
    reduced = np.zeros((4, 3), np.float32)  # the same frame at 1/4
    reduced[1:3, 0:2] = 0.8
    # rows: (y + 2) >> 2 in 1..2 for y in 2..9; columns: in 0..1 for x in 0..5; y >= 14, x >= 10 clamp
    assert breast_bbox(reduced, margin=0.0, frame_shape=(16, 12), reduction=2) == (2, 10, 0, 6)


def test_bbox_at_reduced_resolution_leaves_known_background_out():
    reduced = np.zeros((10, 10), np.float32)  # a 20 x 20 frame at 1/2
    reduced[1:9, 0:4] = 0.8
    reduced[:, 5:] = 1.0  # a bright border wider than the breast, marked as padding
    pad = np.zeros(reduced.shape, bool)
    pad[:, 5:] = True
    # rows (y + 1) >> 1 in 1..8: y in 1..16; columns in 0..3: x in 0..6
    assert breast_bbox(reduced, margin=0.0, background=pad, frame_shape=(20, 20), reduction=1) == (1, 17, 0, 7)
    # unmarked, the border (reduced columns 5.., frame columns 9..) is the longest run
    assert breast_bbox(reduced, margin=0.0, frame_shape=(20, 20), reduction=1) == (0, 20, 9, 20)


def test_box_type_is_four_ints():
    assert typing.get_type_hints(breast_bbox)["return"] == tuple[int, int, int, int]
    assert typing.get_type_hints(crop)["box"] == tuple[int, int, int, int]


def test_reduce_box_rounds_outward_and_clips():
    assert reduce_box((3, 61, 5, 47), 1, (32, 24)) == (1, 31, 2, 24)
    assert reduce_box((4, 60, 4, 44), 2, (16, 12)) == (1, 15, 1, 11)
    assert reduce_box((0, 64, 0, 48), 2, (15, 11)) == (0, 15, 0, 11)
    assert reduce_box((7, 9, 7, 9), 0, (64, 48)) == (7, 9, 7, 9)


def test_crop_is_a_view_of_the_box():
    img = np.arange(20, dtype=np.float32).reshape(4, 5)
    out = crop(img, (1, 3, 2, 5))
    assert out.tolist() == [[7, 8, 9], [12, 13, 14]] and np.shares_memory(out, img)


# --- flip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row,flip",
    [
        ([0, 0, 9, 0, 0], False),  # odd width: the middle column belongs to neither half
        ([0, 0, 9, 1, 0], True),
        ([1, 0, 9, 0, 0], False),
        ([1, 0, 0, 1], False),  # equal halves: no flip
        ([1, 0, 0, 2], True),
        ([0, 1, 1, 0], False),
        ([0], False),
        ([0, 1], True),
    ],
)
def test_flip_decision_compares_the_two_halves(row, flip):
    img = np.array([row, row], np.float32)
    assert needs_flip(img) is flip
    out, flipped = flip_to_left(img)
    assert flipped is flip
    assert out.tolist() == (img[:, ::-1] if flip else img).tolist()


# --- resize ----------------------------------------------------------------------------------------


def test_resample_weights_hand_computed():
    # upsampling 2 -> 4: bilinear, centres at 0.25 .. 1.75, edges clamp
    np.testing.assert_allclose(resize(np.array([[0.0, 1.0]], np.float32), (1, 4))[0], [0, 0.25, 0.75, 1], atol=1e-7)
    # downsampling 4 -> 2: a triangle twice as wide, normalised
    w = resample_weights(4, 2)
    np.testing.assert_allclose(w[0], np.array([0.75, 0.75, 0.25, 0.0]) / 1.75, atol=1e-7)
    np.testing.assert_allclose(w[1], np.array([0.0, 0.25, 0.75, 0.75]) / 1.75, atol=1e-7)
    assert w.dtype == np.float32
    idx, wt = resample_taps(4, 2)
    assert idx.tolist() == [[0, 1, 2], [1, 2, 3]] and idx.dtype == np.int64
    np.testing.assert_allclose(wt, np.array([[0.75, 0.75, 0.25], [0.25, 0.75, 0.75]]) / 1.75, atol=1e-7)
    np.testing.assert_array_equal(resample_weights(3, 3), np.eye(3, dtype=np.float32))


def test_resample_taps_band_is_only_as_wide_as_the_widest_kernel():
    idx, wt = resample_taps(3, 3)  # the same size: one tap, the pixel itself
    assert idx.tolist() == [[0], [1], [2]] and wt.tolist() == [[1.0], [1.0], [1.0]]
    idx, wt = resample_taps(2, 4)  # upsampling: two taps; the outer outputs read one pixel
    assert idx.tolist() == [[0, 1], [0, 1], [0, 1], [1, 1]]
    assert wt.tolist() == [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [1.0, 0.0]]
    # 6 -> 3: four taps for the middle output (centre 3, support 2); the outer ones pad with a zero weight
    idx, wt = resample_taps(6, 3)
    assert idx.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [3, 4, 5, 5]]
    ref = np.array([[0.75, 0.75, 0.25, 0.0], [0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.0]])
    np.testing.assert_array_equal(wt, (ref / ref.sum(axis=1, keepdims=True)).astype(np.float32))


def test_cached_resampling_weights_are_read_only():
    for arr in (resample_weights(5, 3), *resample_taps(5, 3)):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0, 0] = 0


@pytest.mark.parametrize(
    "shape,out", [((37, 53), (100, 90)), ((64, 48), (64, 20)), ((300, 200), (7, 3)), ((5, 9), (3, 9))]
)
def test_resize_matches_torch_antialiased_bilinear(shape, out):
    """An independent reference: torch's (PIL's) antialiased bilinear resampling."""
    import torch

    img = np.random.default_rng(1).random(shape).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(img)[None, None], size=out, mode="bilinear", antialias=True, align_corners=False
    )[0, 0].numpy()
    assert np.abs(resize(img, out) - ref).max() < 1e-5


def test_resize_returns_a_new_contiguous_float32_array():
    img = np.arange(12, dtype=np.float64).reshape(3, 4)
    same = resize(img, (3, 4))
    assert same.dtype == np.float32 and same.tolist() == img.tolist() and not np.shares_memory(same, img)
    f32 = img.astype(np.float32)
    assert not np.shares_memory(resize(f32, (3, 4)), f32)
    for out in ((3, 2), (6, 4), (2, 2)):
        r = resize(f32[:, ::-1], out)
        assert r.shape == out and r.flags.c_contiguous and r.dtype == np.float32


@pytest.mark.parametrize(
    "h,w,size,fit",
    [
        (400, 300, (200, 200), (200, 150)),
        (100, 400, (64, 64), (16, 64)),
        (1, 1000, (10, 10), (1, 10)),  # never below one pixel
        (1000, 1, (10, 10), (10, 1)),
        (3, 5, (10, 10), (6, 10)),  # 3 * 2 = 6
        (2, 5, (9, 9), (4, 9)),  # 3.6 rounds to 4
        (7, 7, (5, 3), (3, 3)),
    ],
)
def test_fit_size_exact(h, w, size, fit):
    assert fit_size(h, w, size) == fit


def test_resize_pad_value_and_fit_shape():
    img = np.ones((10, 10), np.float32)
    out = resize_pad(img, (8, 6), pad_value=-1.0)
    assert out.shape == (8, 6) and (out[:6, :6] == 1).all() and (out[6:] == -1).all()
    # a crop decoded at half resolution fits as its 20x10 full-resolution box would
    out = resize_pad(img, (8, 8), fit_shape=(20, 10))
    assert (out[:, :4] == 1).all() and (out[:, 4:] == 0).all()
