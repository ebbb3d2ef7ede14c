"""Batch augmentations with ``kornia.augmentation``, on the batch's own device, seeded.

Vertical flip, a small random affine (rotation, scale, shift), contrast around the image
mean, additive brightness, and optional cutout, each with its own random parameters per
image. Kornia draws from the global RNG of the device it runs on; :func:`augment_batch`
seeds that RNG from the ``torch.Generator`` passed in, inside ``torch.random.fork_rng``, so a
run is reproducible, a resumed run draws what an uninterrupted one would, and the global
RNG state (dropout, the sampler) is left as it was.

There is no horizontal flip: the loader turns every breast to face left before the batch
gets here, and a horizontal flip would undo that.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, astuple, dataclass
from functools import lru_cache

from decode.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class AugmentConfig:
    """Probabilities and magnitudes (0 disables an augmentation).

    Defaults are the recipe of the README: vertical flip 0.5; affine 0.5 (±10°, zoom
    1 ± 0.1, shift ± 5% of the side); contrast 1 ± 0.1 around each image's mean and
    brightness ± 0.1 on every image; cutout off.
    """

    vflip: float = 0.5  # probability
    affine: float = 0.5  # probability of a random affine per image
    degrees: float = 10.0  # rotation range ±
    scale: float = 0.1  # zoom range 1 ± scale
    translate: float = 0.05  # shift range ± (fraction of the size)
    brightness: float = 0.1  # additive ± (images are in [0, 1])
    contrast: float = 0.1  # multiplicative 1 ± contrast around the image mean
    cutout: float = 0.0  # probability of one erased rectangle
    cutout_size: float = 0.2  # its side, as a fraction of the image side

    def __post_init__(self):
        for name in ("vflip", "affine", "cutout"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UsageError(f"augment {name} is a probability in [0, 1], got {v}")
        for name in ("degrees", "scale", "translate", "brightness", "contrast", "cutout_size"):
            if getattr(self, name) < 0:
                raise UsageError(f"augment {name} must be >= 0")
        if self.scale >= 1 or self.cutout_size > 1 or self.translate > 1:
            raise UsageError("augment scale must be < 1, translate and cutout_size <= 1")

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        """Build from a config mapping. ``hflip: 0`` (written by earlier versions) is accepted
        and dropped; any other ``hflip`` is refused, since breasts are turned to face left."""
        d = dict(d)
        if "hflip" in d:
            if float(d.pop("hflip") or 0) != 0:
                raise UsageError("augment hflip is not supported: breasts are turned to face left before augmentation")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def build_augmentation(cfg: AugmentConfig, height: int, width: int):
    """The kornia pipeline for ``cfg`` and images of ``height`` × ``width``.

    Returns:
        ``kornia.augmentation.ImageSequential`` on the CPU (move it with ``.to(device)``,
        which also moves where its random parameters are drawn), or None when ``cfg``
        disables everything.
    """
    import kornia.augmentation as K

    steps = []
    if cfg.vflip:
        steps.append(K.RandomVerticalFlip(p=cfg.vflip))
    if cfg.affine and (cfg.degrees or cfg.scale or cfg.translate):
        steps.append(
            K.RandomAffine(
                degrees=cfg.degrees,
                translate=(cfg.translate, cfg.translate) if cfg.translate else None,
                scale=(1.0 - cfg.scale, 1.0 + cfg.scale) if cfg.scale else None,
                padding_mode="zeros",
                p=cfg.affine,
            )
        )
    if cfg.contrast:  # ColorJitter's contrast blends with the image mean (RandomContrast scales around 0)
        steps.append(K.ColorJitter(contrast=cfg.contrast, p=1.0))
    if cfg.brightness:  # RandomBrightness is additive: x + (factor − 1), clamped to [0, 1]
        steps.append(K.RandomBrightness(brightness=(1.0 - cfg.brightness, 1.0 + cfg.brightness), p=1.0))
    if cfg.cutout:
        area, aspect = cfg.cutout_size**2, height / width  # a box of cutout_size × each side
        steps.append(K.RandomErasing(scale=(area, area), ratio=(aspect, aspect), value=0.0, p=cfg.cutout))
    return K.ImageSequential(*steps) if steps else None


@lru_cache(maxsize=8)
def _cached(key: tuple, height: int, width: int, device: str):
    aug = build_augmentation(AugmentConfig(*key), height, width)
    return aug.to(device) if aug is not None else None


def augment_batch(x, cfg: AugmentConfig, gen):
    """Augment a batch (a new tensor; ``x`` is not modified).

    Args:
        x: float tensor [B, C, H, W] in [0, 1], on any device.
        cfg: what to apply.
        gen: ``torch.Generator`` on ``x.device``; one draw from it seeds this batch.

    Returns:
        float32 tensor [B, C, H, W] in [0, 1], on ``x.device``.
    """
    import torch

    if x.shape[0] == 0:
        return x
    x = x.float()
    aug = _cached(astuple(cfg), int(x.shape[2]), int(x.shape[3]), str(x.device))
    if aug is None:
        return x
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    cuda = [x.device.index if x.device.index is not None else torch.cuda.current_device()] if x.is_cuda else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(seed)
        with torch.no_grad():
            out = aug(x)
    return out.contiguous()
