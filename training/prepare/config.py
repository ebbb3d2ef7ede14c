"""What a ``prepare`` run is asked to do: :class:`PrepareConfig` (validated), the manifest :class:`Row`, shards."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from dali_pipelines.engines import ENGINES
from decode.errors import UsageError
from decode.parallel import default_workers

Format = Literal["htj2k", "tensor"]
FORMATS = ("htj2k", "tensor")
VERIFY_MODES = ("quick", "full")
TENSOR_SHARD_BYTES = 256 << 20  # target size of one tensor shard file
BLOCK_ROWS = 1024  # rows handed to one process pool at a time (bounds memory)


@dataclass(frozen=True)
class Row:
    """One manifest row: ``rel`` = ``{split}_images/<patient_id>/<image_id>.dcm``; ``src`` its source file."""

    split: str
    patient_id: str
    image_id: str
    rel: str
    src: str


@dataclass(frozen=True)
class PrepareConfig:
    """Options of one ``prepare`` run (validated).

    Attributes:
        data: dataset root (``train.csv`` / ``test.csv``, ``{split}_images/``).
        out: cache root (created); must not be ``data``.
        format: ``"htj2k"`` or ``"tensor"``.
        size: ``(H, W)`` of the tensor cache (tensor only).
        flip: tensor only: mirror breasts to face the same side (the loader's default).
        laterality: tensor only: which side decides the flip when header and content disagree.
        for_processing: tensor only: FOR PROCESSING images are cached with a note (``warn``),
            left out (``skip``) or failed (``error``). An HTJ2K transcode keeps every header
            element, so the loader applies its own setting to it.
        workers: processes (0: all cores).
        backend: CPU decode backend for the sources.
        shard: ``(i, n)``: this run takes rows ``i::n``.
        chunk: rows per tensor shard / per journal file (0: automatic).
        verify: ``"quick"``: a done row is trusted when its source and output files have the
            recorded sizes (and mtimes); ``"full"``: done rows are re-decoded and checksummed.
        engine: tensor only: ``"auto"``, ``"dali"``, ``"nvimgcodec"`` or ``"cpu"`` — the loader's
            engines (``auto``: the CPU workers while a reduced decode scale applies, else a GPU
            engine where CUDA is, else the CPU workers; see :meth:`resolved_engine`). An HTJ2K
            transcode is always decoded on the CPU: it is verified against that decode.
        decode_scale: tensor only: how JPEG 2000 sources are decoded (:mod:`decode.scale`;
            ``"auto"``, the loader's default, decodes only the resolution ``size`` needs).
    """

    data: str
    out: str
    format: Format = "htj2k"
    size: tuple[int, int] | None = None
    flip: bool = True
    laterality: str = "content"
    for_processing: str = "warn"
    workers: int = 0
    backend: str = "auto"
    shard: tuple[int, int] = (0, 1)
    chunk: int = 0
    verify: str = "quick"
    engine: str = "auto"
    decode_scale: str = "auto"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r}; allowed: {', '.join(FORMATS)}")
        if self.format == "tensor" and self.size is None:
            raise UsageError("--format tensor needs --size HxW (e.g. 1024x512)")
        if self.format == "htj2k" and self.size is not None:
            raise UsageError("--size applies to --format tensor only (htj2k keeps the full image)")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; allowed: {', '.join(ENGINES)}")
        if self.format == "htj2k" and self.engine in ("dali", "nvimgcodec"):
            raise UsageError(
                f"--engine {self.engine} applies to --format tensor only: an HTJ2K transcode is decoded on the CPU, "
                "the reference its written file is verified against"
            )
        from decode.scale import check_decode_scale

        check_decode_scale(self.decode_scale)
        from decode.intent import check_for_processing
        from decode.laterality import check_laterality_source

        check_for_processing(self.for_processing)
        check_laterality_source(self.laterality)
        if self.verify not in VERIFY_MODES:
            raise UsageError(f"unknown verify mode {self.verify!r}; allowed: {', '.join(VERIFY_MODES)}")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise UsageError(f"shard {i}/{n} is not i/n with 0 <= i < n")
        if self.chunk < 0 or self.workers < 0:
            raise UsageError("chunk and workers must be >= 0")
        if not os.path.isdir(self.data):
            raise UsageError(f"--data {self.data}: no such folder")
        if os.path.realpath(self.data) == os.path.realpath(self.out):
            raise UsageError("--out must differ from --data (prepare never writes into the source dataset)")

    def params(self) -> dict:
        """What the cache records about itself (a re-run must match)."""
        if self.format == "htj2k":
            from decode.transcode import HTJ2K_SYNTAX

            return {"format": "htj2k", "transfer_syntax": HTJ2K_SYNTAX}
        from dali_pipelines.tensor_cache import CacheParams
        from decode.chain import CHAIN_VERSION
        from decode.scale import effective_scale

        return {
            "format": "tensor",
            **CacheParams(
                size=self.size,
                flip=self.flip,
                chain_version=CHAIN_VERSION,
                decode_scale="full" if self.resolved_engine() != "cpu" else effective_scale(self.decode_scale),
                laterality=self.laterality,
                for_processing=self.for_processing,
            ).to_json(),
        }

    def resolved_engine(self) -> str:
        """The engine this run uses: ``cpu`` for HTJ2K, and for ``auto`` while a reduced decode
        scale applies (only the CPU engine decodes JPEG 2000 at reduced resolution); else
        ``auto`` resolved as the loader does. A GPU engine decodes at full resolution."""
        from decode.scale import effective_scale

        if self.format == "htj2k" or self.engine == "cpu":
            return "cpu"
        if self.engine == "auto" and effective_scale(self.decode_scale) != "full":
            return "cpu"
        from dali_pipelines.devices import resolve_device
        from dali_pipelines.engines import resolve_engine

        return resolve_engine(self.engine, resolve_device("auto"))[0]

    def rows_per_chunk(self) -> int:
        if self.chunk:
            return self.chunk
        if self.format == "tensor":
            h, w = self.size
            return int(max(1, min(4096, TENSOR_SHARD_BYTES // (2 * h * w))))
        return max(16, 4 * (self.workers or default_workers()))


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)``; None → torchrun's ``RANK``/``WORLD_SIZE`` or ``(0, 1)``.

    Raises:
        UsageError: malformed, out of range, or in conflict with torchrun's environment.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    env = (int(os.environ.get("RANK", "0") or 0), env_world)
    if text is None:
        shard = env
    else:
        try:
            i, n = (int(v) for v in str(text).split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r} is not i/n, e.g. 0/4") from None
        shard = (i, n)
        if env_world > 1 and shard != env:
            raise UsageError(f"--shard {text} conflicts with torchrun's RANK/WORLD_SIZE {env[0]}/{env[1]}")
    if not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise UsageError(f"shard {shard[0]}/{shard[1]} is not i/n with 0 <= i < n")
    return shard
