"""One file through the whole CPU path: read, presentation-intent policy, decode, chain.

The loader's reader, ``rsna-mammo decode`` and ``prepare`` all run this, so a file gets
the same options and the same record everywhere. The GPU paths decode differently but
apply the same two rules: :func:`decode.intent.apply_intent_policy` right after
:func:`decode.dicom.read_dicom`, and ``laterality=`` passed to :func:`decode.chain.preprocess`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .chain import Preprocessed, Stage, preprocess
from .decoding import DecodedImage, decode_pixels
from .dicom import read_dicom
from .errors import DicomError, as_dicom_error
from .intent import apply_intent_policy


@dataclass
class Sample:
    """A decoded and preprocessed file, and every note about it (one line each)."""

    decoded: DecodedImage
    pre: Preprocessed
    intent_note: str | None = None

    @property
    def notes(self) -> list[str]:
        """FOR PROCESSING, ignored header elements, what the libraries said, fallbacks, laterality."""
        return [*([self.intent_note] if self.intent_note else []), *self.decoded.all_notes(), *self.pre.notes]


def read_sample(
    path: str | os.PathLike,
    *,
    stage: Stage = "crop",
    size: tuple[int, int] | None = None,
    backend: str = "auto",
    flip: bool = True,
    for_processing: str = "warn",
    laterality: str = "content",
) -> Sample:
    """Read, check, decode and preprocess one file.

    Raises:
        DicomError: a one-line reason naming the file (``SkippedDicomError`` when
            ``for_processing="skip"`` leaves it out).
    """
    path = os.fspath(path)
    try:
        dfile = read_dicom(path)
        note = apply_intent_policy(dfile.meta, for_processing)
        dec = decode_pixels(dfile, backend)
    except DicomError:
        raise
    except Exception as exc:
        raise as_dicom_error(path, exc) from None
    pre = preprocess(dec.pixels, dec.meta, stage=stage, size=size, flip=flip, laterality=laterality)
    return Sample(dec, pre, note)
