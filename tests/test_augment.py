"""Batch augmentation (kornia): seeded, per-image parameters, shape/dtype/device kept, no horizontal flip."""

import dataclasses

import pytest
import torch

from training.augment import AugmentConfig, augment_batch, build_augmentation

OFF = dict(vflip=0.0, affine=0.0, brightness=0.0, contrast=0.0)


def _gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def _left_bright(b=16, h=40, w=30):
    """Breasts face left: the left half bright, the right half dark."""
    x = torch.full((b, 1, h, w), 0.1)
    x[..., : w // 2] = 0.8
    return x


def test_seeded_deterministic_and_keeps_shape_dtype_range():
    x = torch.rand(6, 1, 32, 24)
    keep = x.clone()
    cfg = AugmentConfig(affine=1.0, cutout=0.5)
    rng = torch.get_rng_state()
    a = augment_batch(x, cfg, _gen(1))
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG (dropout, sampler) is untouched
    b = augment_batch(x, cfg, _gen(1))
    c = augment_batch(x, cfg, _gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == torch.float32 and a.device == x.device and a.is_contiguous()
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert torch.equal(x, keep)  # the input is not modified
    g = _gen(3)
    first, second = augment_batch(x, cfg, g), augment_batch(x, cfg, g)  # the generator advances per batch
    assert not torch.equal(first, second)
    half = augment_batch(x.half(), cfg, _gen(1))
    assert half.dtype == torch.float32
    empty = torch.zeros(0, 1, 32, 24)
    assert augment_batch(empty, cfg, _gen(1)) is empty


def test_everything_off_returns_the_batch_unchanged():
    x = torch.rand(3, 1, 16, 12)
    assert torch.equal(augment_batch(x, AugmentConfig(**OFF), _gen(0)), x)
    assert build_augmentation(AugmentConfig(**OFF), 16, 12) is None


def test_vertical_flip_per_image_never_horizontal():
    x = torch.rand(32, 1, 20, 14)
    assert torch.equal(augment_batch(x, AugmentConfig(**{**OFF, "vflip": 1.0}), _gen(0)), x.flip(2))
    out = augment_batch(x, AugmentConfig(**{**OFF, "vflip": 0.5}), _gen(0))
    flipped = [torch.equal(o, xi.flip(1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(x)  # drawn per image, not per batch


def test_default_recipe_never_flips_horizontally():
    x = _left_bright(64)
    for seed in range(4):
        out = augment_batch(x, AugmentConfig(), _gen(seed))
        w = out.shape[3]
        left, right = out[..., : w // 2].mean(dim=(1, 2, 3)), out[..., w // 2 :].mean(dim=(1, 2, 3))
        assert (left > right + 0.3).all(), seed  # ±10° and ±5% shift keep the bright side on the left
    assert "hflip" not in {f.name for f in dataclasses.fields(AugmentConfig)}
    aug = build_augmentation(AugmentConfig(vflip=1.0, affine=1.0, cutout=1.0), 40, 30)
    assert "HorizontalFlip" not in repr(aug)


def test_contrast_is_around_the_image_mean_and_brightness_additive_per_image():
    x = 0.4 + 0.2 * torch.rand(16, 1, 12, 10)  # mid-range: no clamping
    out = augment_batch(x, AugmentConfig(**{**OFF, "contrast": 0.1}), _gen(0))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    dx, dy = x - mean, out - mean
    factor = (dx * dy).sum(dim=(1, 2, 3), keepdim=True) / (dx * dx).sum(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, mean + factor * dx, atol=1e-5, rtol=0)  # one factor per image, about the mean
    f = factor.flatten()
    assert ((f >= 0.9 - 1e-5) & (f <= 1.1 + 1e-5)).all() and f.unique().numel() == len(f)
    out = augment_batch(x, AugmentConfig(**{**OFF, "brightness": 0.1}), _gen(0))
    shift = (out - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1], atol=1e-6)
    assert (shift[:, 0].abs() <= 0.1 + 1e-6).all() and shift[:, 0].unique().numel() > 1


def test_cutout_erases_a_box_of_the_configured_size():
    x = torch.ones(4, 1, 50, 40)
    out = augment_batch(x, AugmentConfig(**{**OFF, "cutout": 1.0, "cutout_size": 0.2}), _gen(0))
    assert (out == 0).sum(dim=(1, 2, 3)).tolist() == [10 * 8] * 4


def test_config_validation_and_legacy_hflip_key():
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(vflip=2.0)
    with pytest.raises(ValueError, match="scale must be < 1"):
        AugmentConfig(scale=1.0)
    assert AugmentConfig.from_dict({"hflip": 0.0, "vflip": 0.25}) == AugmentConfig(vflip=0.25)
    with pytest.raises(ValueError, match="hflip is not supported"):
        AugmentConfig.from_dict({"hflip": 0.5})


@pytest.mark.gpu
def test_on_cuda_parameters_and_output_stay_on_the_device():
    x = _left_bright(8).cuda()
    a = augment_batch(x, AugmentConfig(cutout=0.5), _gen(1, "cuda"))
    b = augment_batch(x, AugmentConfig(cutout=0.5), _gen(1, "cuda"))
    assert a.is_cuda and a.shape == x.shape and a.dtype == torch.float32 and torch.equal(a, b)
