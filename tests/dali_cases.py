"""Named synthetic DICOM cases for the engine tests (DALI runner, nvImageCodec, fused chain, loader engines)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from decode import syntax as TS
from decode.testing.synth import make_mammogram, to_stored, write_dicom


@dataclass(frozen=True)
class Case:
    name: str
    transfer_syntax: str
    bits: int
    photometric: str = "MONOCHROME2"
    voi: str | None = "LINEAR"  # None: no window (min-max)
    kind: str = "u16"  # u16 | i16 | u8
    extra: dict[str, object] = field(default_factory=dict)
    expect: str = "ok"  # ok | error


#: Decodable on the GPU (``decoder`` route on a GPU; J2K family also on the DALI CPU pipeline).
GPU_CASES = (
    Case("J2K_16_12_MONO2", TS.JPEG2000_LOSSLESS, 12),
    Case("J2K_16_14_MONO1", TS.JPEG2000_LOSSLESS, 14, "MONOCHROME1", "SIGMOID"),
    Case("J2K_16_16_MONO2", TS.JPEG2000_LOSSLESS, 16),
    Case("HTJ2K_16_12_MONO1", TS.HTJ2K_LOSSLESS, 12, "MONOCHROME1"),
    Case("JLL_16_12_MONO1", TS.JPEG_LOSSLESS_SV1, 12, "MONOCHROME1"),
    Case("JLL_16_14_MONO2", TS.JPEG_LOSSLESS_SV1, 14, "MONOCHROME2", "SIGMOID"),
    Case("JLL_16_16_MONO2", TS.JPEG_LOSSLESS_SV1, 16),
)
#: Routed to the CPU in the worker (raw pixels through the second branch) or failing.
CPU_CASES = (
    Case("NATIVE_16_12_MONO2", TS.EXPLICIT_LE, 12, voi=None),
    Case("J2K_SIGNED_16_12", TS.JPEG2000_LOSSLESS, 12, kind="i16"),
    Case("J2K_8_8_MONO2", TS.JPEG2000_LOSSLESS, 8, kind="u8"),
    Case("J2K_ROWS_MISMATCH", TS.JPEG2000_LOSSLESS, 12, extra={"Rows": 30}, expect="error"),
)


def write_case(folder: str, case: Case, *, shape: tuple[int, int] = (48, 40), seed: int = 0, side: str = "L") -> str:
    """Write ``case`` as ``folder/<name>.dcm`` (a synthetic mammogram) and return the path."""
    rng = np.random.default_rng(seed)
    img = make_mammogram(rng, *shape, side=side, cancer=bool(seed % 2))
    stored, (c, w) = to_stored(img, case.bits, case.photometric)
    if case.kind == "i16":
        stored = (stored.astype(np.int32) - (1 << (case.bits - 1))).astype(np.int16)
        c -= 1 << (case.bits - 1)
    elif case.kind == "u8":
        stored = stored.astype(np.uint8)
    window = None if case.voi is None else ([c], [w])
    return write_dicom(
        os.path.join(folder, f"{case.name}.dcm"),
        stored,
        transfer_syntax=case.transfer_syntax,
        bits_stored=case.bits,
        photometric=case.photometric,
        window=window,
        voi_function=case.voi if case.voi and case.voi != "LINEAR" else None,
        extra=dict(case.extra) or None,
        laterality=side,
    )


def write_corrupt(folder: str, good_path: str, name: str = "CORRUPT_TRUNCATED") -> str:
    """A copy of ``good_path`` cut in the middle of its pixel data."""
    data = open(good_path, "rb").read()
    path = os.path.join(folder, f"{name}.dcm")
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3])
    return path


def pydicom_pixels(path: str) -> np.ndarray:
    """The reference: pydicom's ``pixel_array``."""
    import pydicom

    return pydicom.dcmread(path).pixel_array


ALL_CASES = GPU_CASES + CPU_CASES
#: Rows every decode path must report as failed (a header/codestream disagreement, a truncated file).
BAD = ("J2K_ROWS_MISMATCH", "CORRUPT_TRUNCATED")


def write_all_cases(folder: str) -> dict[str, str]:
    """``{case name: path}`` for every case plus ``CORRUPT_TRUNCATED``; shapes differ per file
    (odd and even sizes), sides alternate."""
    out = {}
    for k, case in enumerate(ALL_CASES):
        shape = (48 + 4 * (k % 3) + k % 2, 40 + 2 * (k % 2))
        out[case.name] = write_case(folder, case, shape=shape, seed=k, side="R" if k % 2 else "L")
    out["CORRUPT_TRUNCATED"] = write_corrupt(folder, out["J2K_16_12_MONO2"])
    return out


def on_decoder(name: str, device: str) -> bool:
    """Whether the DALI / nvImageCodec decoder (not the CPU branch) decodes case ``name`` on ``device``:
    every GPU case on CUDA; on the CPU only the JPEG 2000 family (their CPU decoders have no
    lossless JPEG)."""
    from decode.routing import CPU_SYNTAXES

    case = next((c for c in GPU_CASES if c.name == name), None)
    if case is None:
        return False
    return device == "cuda" or case.transfer_syntax in CPU_SYNTAXES
