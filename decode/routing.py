"""Which frames a GPU decoder may take, and how its output is made exact.

One implementation for every GPU path — both loader engines (DALI and nvImageCodec) and
``rsna-mammo decode --device cuda``:

* :func:`gpu_unsupported_reason` — why a frame must be decoded on the CPU instead (another
  transfer syntax, a codestream header that disagrees with the DICOM header, a precision
  or sign the GPU path does not keep exact), or ``None`` when the GPU may decode it;
* :func:`calibrate` — decode the 12-bit probe of every codec (:mod:`decode.backends.probes`)
  with a decoder once at start and say, per syntax, whether it returns the stored values
  (``"exact"``), the values stretched to 16 bits (``"scaled"``: DALI's mixed decoder
  multiplies ``p``-bit output by ``65535 / (2^p − 1)`` for ``p`` < 16) or something else
  (that syntax is then decoded on the CPU for the run, e.g. nvJPEG's all-zero 9–15-bit
  lossless JPEG before 13.0.2);
* :func:`exact_output` — undo a stretch per sample, from that sample's own codestream
  precision (SIZ / SOF), never from the codec: a 12-bit HTJ2K and a 16-bit HTJ2K differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from .backends.depth import classify, undo_stretch
from .backends.probes import PROBE_BITS, probe_codestreams
from .codestream import j2k_info, jpeg_sof_info
from .meta import DicomMeta
from .syntax import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, J2K_FAMILY, JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, short_name

log = logging.getLogger(__name__)

#: Lossless syntaxes nvJPEG2000 / nvJPEG decode on the GPU (lossy J2K stays on the CPU, so
#: that every path returns exactly pydicom's values).
GPU_SYNTAXES = frozenset({JPEG2000_LOSSLESS, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, JPEG_LOSSLESS_SV1})
#: What the CPU decoders behind nvImageCodec (``CPU_ONLY``) and DALI (``device="cpu"``) decode exactly.
CPU_SYNTAXES = frozenset({JPEG2000_LOSSLESS, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL})
#: Codestream precisions the GPU path returns exactly as uint16.
MIN_PRECISION, MAX_PRECISION = 9, 16


def gpu_unsupported_reason(meta: DicomMeta, codestream: bytes, syntaxes: Iterable[str] = GPU_SYNTAXES) -> str | None:
    """Why this frame must be decoded on the CPU instead; ``None`` when the GPU may decode it.

    Args:
        meta: the DICOM header.
        codestream: the frame's codestream (from ``generate_frames``; ignored for other syntaxes).
        syntaxes: transfer syntaxes the GPU decoder takes this run (without those that
            :func:`calibrate` found decoded wrongly).

    Returns:
        A one-line reason, or ``None``.
    """
    ts = meta.transfer_syntax
    if ts not in syntaxes:
        return f"transfer syntax {short_name(ts)} is decoded on the CPU"
    if meta.bits_allocated != 16:
        return f"Bits Allocated {meta.bits_allocated}: the GPU path decodes 16-bit data only"
    if meta.pixel_representation != 0:
        return "signed pixel data is decoded on the CPU"
    if ts in J2K_FAMILY:
        info = j2k_info(codestream)
        if info is None:
            return "codestream does not start with a J2K SOC+SIZ header"
        if info.signed:
            return "J2K codestream is signed"
    else:
        info = jpeg_sof_info(codestream)
        if info is None:
            return "no JPEG SOF marker before the scan"
        if info.codec != "jpeg-lossless":
            return f"JPEG codestream is {info.codec}, not lossless (SOF3)"
        if info.precision > meta.bits_stored:
            return f"JPEG precision {info.precision} > Bits Stored {meta.bits_stored} (bits must be masked)"
    if (info.rows, info.columns) != meta.shape:
        return f"codestream is {info.rows}x{info.columns}, the DICOM header says {meta.rows}x{meta.columns}"
    if info.components != 1:
        return f"codestream has {info.components} components, 1 expected"
    if not MIN_PRECISION <= info.precision <= MAX_PRECISION:
        return f"codestream precision {info.precision} outside {MIN_PRECISION}..{MAX_PRECISION}"
    return None


def calibrate(decode_one: Callable[[np.ndarray], object], syntaxes: Iterable[str], *, who: str) -> dict[str, str]:
    """Decode the 12-bit probe of each syntax with ``decode_one``; how does each come back?

    Args:
        decode_one: ``codestream (uint8 array) -> (H, W) array on any device, or None``.
            An exception counts as a wrong decode.
        syntaxes: the syntaxes to try (those without a probe are left out).
        who: the decoder's name, for the log.

    Returns:
        ``{transfer_syntax: "exact" | "scaled"}`` for the syntaxes the decoder may be given;
        a syntax decoded wrongly is missing (and a warning says it goes to the CPU).
    """
    modes: dict[str, str] = {}
    for ts, (cs, expected) in probe_codestreams(syntaxes).items():
        try:
            out = decode_one(cs)
        except Exception as exc:  # the decoder's failure is a finding, not a crash
            log.debug("%s: probe %s raised %s: %s", who, short_name(ts), type(exc).__name__, exc)
            out = None
        mode = classify(out, expected, PROBE_BITS)
        if mode is None:
            log.warning(
                "%s returns no image or wrong pixels for a %d-bit %s probe; that syntax is decoded on the CPU this "
                "run (nvJPEG before 13.0.2 returned all-zero 9-15-bit lossless JPEG)",
                who,
                PROBE_BITS,
                short_name(ts),
            )
            continue
        modes[ts] = mode
        if mode == "scaled":
            log.info("%s stretches %s to 16 bits; undone per sample from its codestream precision", who, ts)
    return modes


def exact_output(image, transfer_syntax: str, precision: int, modes: dict[str, str]):
    """The stored values of a GPU-decoded frame (in place): undo the stretch if ``modes`` says so.

    Args:
        image: ``(H, W)`` uint16 decoder output (numpy or CuPy).
        transfer_syntax: the frame's syntax.
        precision: the frame's codestream precision (SIZ / SOF); ≥ 16 or 0 leaves it as is.
        modes: from :func:`calibrate`.
    """
    if modes.get(transfer_syntax) == "scaled":
        undo_stretch(image, int(precision))
    return image
