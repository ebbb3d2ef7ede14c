"""Presentation Intent Type: FOR PROCESSING images and the ``--for-processing`` policy.

A mammography unit stores two kinds of image. FOR PRESENTATION images are processed for
display (what RSNA's data holds). FOR PROCESSING images are the raw detector data:
log-scaled, unwindowed, with the breast often darker than the background; a model trained
on presentation images sees them as a different modality. They decode exactly (stored
values are stored values) but are flagged everywhere, and an option says what to do.
"""

from __future__ import annotations

from typing import Literal

from .errors import SkippedDicomError, UnsupportedDicomError, UsageError
from .meta import DicomMeta

ForProcessing = Literal["warn", "skip", "error"]
FOR_PROCESSING = ("warn", "skip", "error")

FOR_PROCESSING_NOTE = (
    "FOR PROCESSING image (Presentation Intent Type: raw detector data, log-scaled and not processed for display)"
)


def check_for_processing(policy: str) -> str:
    """Validate a ``--for-processing`` value; returns it."""
    if policy not in FOR_PROCESSING:
        raise UsageError(f"for_processing {policy!r} is not one of: {', '.join(FOR_PROCESSING)}")
    return policy


def apply_intent_policy(meta: DicomMeta, policy: ForProcessing = "warn") -> str | None:
    """Apply the ``--for-processing`` policy to one file's header.

    Args:
        meta: the file's header.
        policy: ``"warn"``: decode it and return a note; ``"skip"``: leave it out;
            ``"error"``: refuse it.

    Returns:
        The one-line note for a FOR PROCESSING image under ``"warn"``, else None.

    Raises:
        SkippedDicomError: FOR PROCESSING under ``"skip"``.
        UnsupportedDicomError: FOR PROCESSING under ``"error"``.
    """
    check_for_processing(policy)
    if not meta.for_processing:
        return None
    if policy == "skip":
        raise SkippedDicomError(meta.path, f"{FOR_PROCESSING_NOTE}; skipped (--for-processing skip)")
    if policy == "error":
        raise UnsupportedDicomError(meta.path, f"{FOR_PROCESSING_NOTE}; refused (--for-processing error)")
    return f"{FOR_PROCESSING_NOTE}; decoded anyway (--for-processing warn)"
