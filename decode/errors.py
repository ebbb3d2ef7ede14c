"""One exception hierarchy for everything that can go wrong with an input file.

Every error carries the path of the file it is about and renders as a single line,
``<path>: <reason>``, so command-line tools can print it as-is and keep going.
"""

from __future__ import annotations

import os


class UsageError(ValueError):
    """A bad option, argument or input location, reported by the CLI in one line with exit status 2.

    A ``ValueError`` subclass, so API callers that catch ``ValueError`` keep working; any other
    exception reaching the CLI is a bug and keeps its traceback.
    """


class DicomError(Exception):
    """Base class: a DICOM input could not be turned into pixels.

    Attributes:
        path: the file the error is about (``"<memory>"`` when there is none).
        reason: one line saying what is wrong.
    """

    kind = "error"

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = os.fspath(path) if path is not None else "<memory>"
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.path, self.reason))


class UnreadableDicomError(DicomError):
    """The file is missing, empty, not a file, not DICOM, or its header is truncated."""

    kind = "unreadable"


class UnsupportedDicomError(DicomError):
    """A valid DICOM this project does not handle (colour, multi-frame, odd syntax...)."""

    kind = "unsupported"


class CorruptDicomError(DicomError):
    """The header parses but the pixel data is damaged, truncated or inconsistent."""

    kind = "corrupt"


class SkippedDicomError(DicomError):
    """A valid file left out on purpose by an option (e.g. ``--for-processing skip``)."""

    kind = "skipped"
    stage = "skipped"


def as_dicom_error(path, exc: BaseException) -> DicomError:
    """Wrap any exception raised while handling ``path`` into a :class:`DicomError`."""
    if isinstance(exc, DicomError):
        return exc
    if isinstance(exc, MemoryError):
        return CorruptDicomError(path, "out of memory while decoding")
    return CorruptDicomError(path, f"{type(exc).__name__}: {exc}")
