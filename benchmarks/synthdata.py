"""Full-size synthetic benchmark files, written once into a cache folder and reused.

``<cache>/<H>x<W>-<bits>bit/<codec>-<i>.dcm``: mammogram-like images (decode.testing.synth)
stored as JPEG 2000 lossless (.90) and lossless JPEG SV1 (.70), MONOCHROME2, a
LINEAR window. Files are written atomically, so an existing file is a complete one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from decode import syntax as TS
from decode.errors import UsageError

log = logging.getLogger(__name__)

#: The two RSNA codecs.
CODECS = (TS.JPEG2000_LOSSLESS, TS.JPEG_LOSSLESS_SV1)
FULL_SIZE = (3328, 2560)


def default_cache() -> str:
    """``$RSNA_MAMMO_CACHE/bench`` or ``~/.cache/rsna-mammo/bench``."""
    root = os.environ.get("RSNA_MAMMO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rsna-mammo")
    return os.path.join(root, "bench")


def _write_one(job: tuple[str, str, int, int, int, int]) -> str:
    import numpy as np

    from decode.testing.synth import make_mammogram, to_stored, write_dicom

    path, ts, height, width, bits, seed = job
    rng = np.random.default_rng(seed)
    side = "L" if seed % 2 == 0 else "R"
    stored, (center, width_) = to_stored(make_mammogram(rng, height, width, side=side), bits, "MONOCHROME2")
    return write_dicom(
        path,
        stored,
        transfer_syntax=ts,
        bits_stored=bits,
        photometric="MONOCHROME2",
        window=([center], [width_]),
        voi_function="LINEAR",
        patient_id=str(seed),
        image_id=str(seed),
        laterality=side,
        view="CC",
    )


def synthesize(
    cache: str,
    *,
    size: tuple[int, int] = FULL_SIZE,
    files: int = 6,
    bits: int = 12,
    codecs: Sequence[str] = CODECS,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Make sure ``files`` synthetic DICOMs per codec exist; write the missing ones.

    Args:
        cache: the cache root (a folder per size and bit depth is made inside).
        size: ``(height, width)``.
        files: files per codec.
        bits: Bits Stored (12 like most RSNA machines).
        workers: processes for writing (0: all cores).

    Returns:
        ``{transfer syntax UID: [paths]}``.
    """
    from decode.parallel import default_workers, map_files

    if files < 1:
        raise UsageError("files must be >= 1")
    height, width = size
    folder = os.path.join(cache, f"{height}x{width}-{bits}bit")
    os.makedirs(folder, exist_ok=True)
    out: dict[str, list[str]] = {}
    jobs = []
    for k, ts in enumerate(codecs):
        if ts not in CODECS:
            raise UsageError(f"cannot synthesize {ts}; allowed: {', '.join(CODECS)}")
        paths = [os.path.join(folder, f"{TS.short_name(ts)}-{i:03d}.dcm") for i in range(files)]
        out[ts] = paths
        jobs += [(p, ts, height, width, bits, 1000 * k + i) for i, p in enumerate(paths) if not os.path.exists(p)]
    if jobs:
        log.info("writing %d synthetic %dx%d files into %s", len(jobs), height, width, folder)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="synthesize", unit="file", disable=None)
        for job, ok, res in map_files(_write_one, jobs, workers=workers or default_workers(), path_of=lambda j: j[0]):
            if not ok:
                raise RuntimeError(f"could not write synthetic file {job[0]}: {res}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    return out


def bench_files(
    data: str | None,
    *,
    cache: str | None = None,
    size: tuple[int, int] = FULL_SIZE,
    files: int = 6,
    bits: int = 12,
    progress: bool = True,
) -> list[str]:
    """The files a benchmark runs on: ``*.dcm`` under ``data``, or synthetic full-size ones.

    Raises:
        UsageError: ``data`` holds no ``*.dcm`` file.
    """
    from decode.cli_decode import find_dicoms

    if data:
        paths = find_dicoms([data])
        if not paths:
            raise UsageError(f"no *.dcm files under {data}")
        return paths
    made = synthesize(cache or default_cache(), size=size, files=files, bits=bits, progress=progress)
    return [p for ps in made.values() for p in ps]
