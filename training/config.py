"""`TrainConfig`: every training option in one validated dataclass, saved as YAML.

Precedence when the CLI builds one: dataclass defaults < ``--config FILE`` < ``RUN/config.yaml``
(with ``--resume``) < flags given on the command line. ``RUN/config.yaml`` records the
resolved config of a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from decode.chain import parse_size
from decode.errors import UsageError

from .augment import AugmentConfig

Amp = Literal["auto", "bf16", "fp16", "off"]
AMPS = ("auto", "bf16", "fp16", "off")
SELECTS = ("bin_pf1", "pf1", "auc")
LR_SCRATCH = 1e-3  # AdamW from random init
LR_PRETRAINED = 2e-4  # AdamW fine-tuning local pretrained weights


@dataclass
class TrainConfig:
    """Options of ``rsna-mammo train`` (see the README for the reasons behind the defaults)."""

    data: str = ""  # dataset root: train.csv, train_images/
    out: str = "runs/train"  # run folder: best.pt, last.pt, metrics.json, config.yaml
    model: str = "convnext_small"  # timm name
    pretrained: str | None = None  # local weights file (no network)
    img_size: tuple[int, int] = (1536, 768)  # H x W, breast crop, aspect kept and padded
    epochs: int = 10
    batch_size: int = 8  # per process
    accum: int = 1  # gradient accumulation steps
    lr: float | None = None  # None: 1e-3 from scratch, 2e-4 with --pretrained
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.01
    ema_decay: float = 0.999  # 0 disables EMA
    pos_ratio: float = 0.125  # share of positives per batch (1:7)
    pos_label: float = 0.9  # soft target for positive images
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    grad_clip: float | None = 5.0  # max grad norm (None: off)
    device: str = "auto"
    engine: str = "auto"  # loader engine: auto | dali | nvimgcodec | cpu
    workers: int | None = None  # decode processes per training process (None: the node's cores shared among them)
    backend: str = "auto"  # CPU decode backend
    decode_scale: str = "auto"  # JPEG 2000 decode resolution (decode.scale): auto | full | 1/2 | 1/4
    folds: int = 4
    fold: int = 0
    seed: int = 42
    amp: str = "auto"  # auto: bf16 on CUDA, off on the CPU
    channels_last: bool = True
    agg: str = "mean"  # breast aggregation for validation: mean | max
    select: str = "bin_pf1"  # best.pt criterion (ties broken by AUC)
    val_batch_size: int | None = None  # None: 2 x batch_size
    steps_per_epoch: int | None = None  # cap on batches per epoch (None: every negative once)
    time_limit_s: float | None = None  # stop after the epoch that crosses it (demo)
    for_processing: str = "warn"  # FOR PROCESSING images: warn (use, note) | skip | error
    laterality: str = "content"  # which side decides the flip when header and content disagree
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        self.img_size = parse_size(self.img_size)
        for name in ("epochs", "batch_size", "accum"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1")
        if self.folds < 2 or not 0 <= self.fold < self.folds:
            raise UsageError(f"need folds >= 2 and 0 <= fold < folds (got folds={self.folds}, fold={self.fold})")
        if self.lr is not None and self.lr <= 0:
            raise UsageError("lr must be > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError("ema_decay must be in [0, 1)")
        if not 0.0 < self.pos_ratio < 1.0:
            raise UsageError("pos_ratio must be in (0, 1)")
        if not 0.0 < self.pos_label <= 1.0:
            raise UsageError("pos_label must be in (0, 1]")
        choices = {
            "amp": AMPS,
            "agg": ("mean", "max"),
            "select": SELECTS,
            "device": ("auto", "cpu", "cuda"),
            "engine": ("auto", "dali", "nvimgcodec", "cpu"),
            "decode_scale": ("auto", "full", "1/2", "1/4"),
            "for_processing": ("warn", "skip", "error"),
            "laterality": ("content", "header"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"{name} {getattr(self, name)!r} is not one of: {', '.join(allowed)}")
        if self.workers is not None and self.workers < 0:
            raise UsageError("workers must be >= 0")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UsageError("steps_per_epoch must be >= 1")

    def effective_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return LR_PRETRAINED if self.pretrained else LR_SCRATCH

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["img_size"] = f"{self.img_size[0]}x{self.img_size[1]}"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UsageError(f"unknown config key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        aug = d.get("augment")
        if isinstance(aug, dict):
            allowed = {f.name for f in dataclasses.fields(AugmentConfig)}
            bad = sorted(set(aug) - allowed - {"hflip"})  # hflip: see AugmentConfig.from_dict
            if bad:
                raise UsageError(f"unknown augment key(s) {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")
        return cls(**d)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def load_yaml(path: str) -> dict[str, Any]:
    """Read a YAML mapping of config keys (``-`` in keys is accepted for ``_``)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    if not isinstance(d, dict):
        raise UsageError(f"{path}: a config file must hold a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in d.items()}


def save_yaml(cfg: TrainConfig, path: str) -> str:
    from decode.atomic import atomic_write

    return atomic_write(path, cfg.to_yaml())
