"""One file through the whole CPU path: read, presentation-intent policy, decode, chain.

The loader's reader, ``rsna-mammo decode`` and ``prepare`` all run this, so a file gets
the same options and the same record everywhere. With ``decode_scale`` other than
``full`` the crop stage of a JPEG 2000 / HTJ2K file is decoded below full resolution
(:mod:`decode.scale`); a reduced decode that fails falls back to the exact decoders.
The GPU paths decode differently but apply the same two rules:
:func:`decode.intent.apply_intent_policy` right after :func:`decode.dicom.read_dicom`,
and ``laterality=`` passed to the chain.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .chain import Preprocessed, Stage, preprocess
from .decoding import DecodedImage, decode_pixels
from .dicom import read_dicom
from .errors import DicomError, UsageError, as_dicom_error
from .intent import apply_intent_policy
from .liblog import one_line
from .meta import DicomMeta
from .scale import check_decode_scale, reduced_chain, scale_name

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """A decoded and preprocessed file, and every note about it (one line each).

    Attributes:
        pre: the chain's output (``pre.reduction`` > 0 when decoded below full resolution).
        meta: the header.
        backend: the registry backend that decoded it, or ``"openjpeg"`` for a reduced decode.
        decoded: the full-resolution decode (None when the frame was decoded reduced).
        intent_note: the FOR PROCESSING warning, when the policy is ``warn``.
        reduced_failed: why a reduced decode failed before the full-resolution one.
    """

    pre: Preprocessed
    meta: DicomMeta
    backend: str
    decoded: DecodedImage | None = None
    intent_note: str | None = None
    reduced_failed: str | None = None

    @property
    def decode_scale(self) -> str:
        return scale_name(self.pre.reduction)

    @property
    def notes(self) -> list[str]:
        """FOR PROCESSING, ignored header elements, what the libraries said, fallbacks, laterality."""
        if self.decoded is not None:
            decoded = self.decoded.all_notes()
        else:
            lib = "; ".join(self.meta.library_messages)
            decoded = [*self.meta.header_notes, *([f"while reading: {one_line(lib, 240)}"] if lib else [])]
        failed = [f"reduced-resolution decode failed ({self.reduced_failed}); decoded at full resolution"]
        return [
            *([self.intent_note] if self.intent_note else []),
            *decoded,
            *(failed if self.reduced_failed else []),
            *self.pre.notes,
        ]


def read_sample(
    path: str | os.PathLike,
    *,
    stage: Stage = "crop",
    size: tuple[int, int] | None = None,
    backend: str = "auto",
    flip: bool = True,
    for_processing: str = "warn",
    laterality: str = "content",
    decode_scale: str = "full",
) -> Sample:
    """Read, check, decode and preprocess one file.

    Raises:
        DicomError: a one-line reason naming the file (``SkippedDicomError`` when
            ``for_processing="skip"`` leaves it out).
        UsageError: a bad ``decode_scale``, or a fixed reduced scale where
            OpenJPEG is unavailable.
    """
    check_decode_scale(decode_scale)
    path = os.fspath(path)
    try:
        dfile = read_dicom(path)
        note = apply_intent_policy(dfile.meta, for_processing)
    except DicomError:
        raise
    except Exception as exc:
        raise as_dicom_error(path, exc) from None
    failed = None
    if stage == "crop" and decode_scale != "full":
        pre, failed = reduced_chain(dfile, size=size, flip=flip, decode_scale=decode_scale, laterality=laterality)
        if pre is not None:
            return Sample(pre, dfile.meta, "openjpeg", None, note)
    try:
        dec = decode_pixels(dfile, backend)
    except (DicomError, UsageError):
        raise  # the exact decoders' verdict on a bad file (the reduced one's is not repeated), or a bad backend name
    except Exception as exc:
        raise as_dicom_error(path, exc) from None
    pre = preprocess(dec.pixels, dec.meta, stage=stage, size=size, flip=flip, laterality=laterality)
    return Sample(pre, dec.meta, dec.backend, dec, note, failed)
