"""Batch augmentations in torch, on the batch's own device (CPU or GPU), seeded.

Flips, a small random affine (rotation, scale, shift; one ``grid_sample`` per batch),
brightness/contrast, and optional cutout. Every random draw comes from the
``torch.Generator`` passed in, so a run is reproducible and a resumed run draws what
an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class AugmentConfig:
    """Probabilities and magnitudes (0 disables an augmentation).

    Images are flipped to face left before they get here, so vertical flips are the
    natural default and horizontal ones are off.
    """

    hflip: float = 0.0  # probability
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
        for name in ("hflip", "vflip", "affine", "cutout"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"augment {name} is a probability in [0, 1], got {v}")
        for name in ("degrees", "scale", "translate", "brightness", "contrast", "cutout_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment {name} must be >= 0")
        if self.scale >= 1 or self.cutout_size > 1:
            raise ValueError("augment scale must be < 1 and cutout_size <= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def _u(n, gen, device, lo=-1.0, hi=1.0):
    import torch

    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def augment_batch(x, cfg: AugmentConfig, gen):
    """Augment a batch (a new tensor; ``x`` is not modified).

    Args:
        x: float tensor [B, C, H, W] in [0, 1], on any device.
        cfg: what to apply.
        gen: ``torch.Generator`` on ``x.device``.

    Returns:
        float tensor [B, C, H, W] in [0, 1], same device and dtype.
    """
    import torch
    import torch.nn.functional as F

    b, dev = x.shape[0], x.device
    if b == 0:
        return x
    x = x.float()
    if cfg.hflip:
        m = (torch.rand(b, generator=gen, device=dev) < cfg.hflip).view(b, 1, 1, 1)
        x = torch.where(m, x.flip(3), x)
    if cfg.vflip:
        m = (torch.rand(b, generator=gen, device=dev) < cfg.vflip).view(b, 1, 1, 1)
        x = torch.where(m, x.flip(2), x)
    if cfg.affine and (cfg.degrees or cfg.scale or cfg.translate):
        on = (torch.rand(b, generator=gen, device=dev) < cfg.affine).float()
        ang = _u(b, gen, dev) * math.radians(cfg.degrees) * on
        s = 1.0 + _u(b, gen, dev) * cfg.scale * on
        tx, ty = (_u(b, gen, dev) * 2 * cfg.translate * on for _ in range(2))
        h, w = x.shape[2], x.shape[3]
        cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
        # normalised coords: keep the rotation isotropic on a non-square image
        theta = torch.stack([torch.stack([cos, -sin * h / w, tx], 1), torch.stack([sin * w / h, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.contrast or cfg.brightness:
        c = (1.0 + _u(b, gen, dev) * cfg.contrast).view(b, 1, 1, 1)
        br = (_u(b, gen, dev) * cfg.brightness).view(b, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c + mean + br).clamp_(0.0, 1.0)
    if cfg.cutout:
        h, w = x.shape[2], x.shape[3]
        ch, cw = max(1, int(h * cfg.cutout_size)), max(1, int(w * cfg.cutout_size))
        on = torch.rand(b, generator=gen, device=dev) < cfg.cutout
        y0 = (torch.rand(b, generator=gen, device=dev) * (h - ch + 1)).long()
        x0 = (torch.rand(b, generator=gen, device=dev) * (w - cw + 1)).long()
        yy = torch.arange(h, device=dev).view(1, h, 1)
        xx = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (yy >= y0.view(b, 1, 1))
            & (yy < (y0 + ch).view(b, 1, 1))
            & (xx >= x0.view(b, 1, 1))
            & (xx < (x0 + cw).view(b, 1, 1))
            & on.view(b, 1, 1)
        )
        x = x.masked_fill(box.unsqueeze(1), 0.0)
    return x
