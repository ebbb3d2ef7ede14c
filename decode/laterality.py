"""Breast laterality: what the header says against what the image shows.

The header names the breast in Image Laterality (0020,0062), else Laterality (0020,0060).
Mammograms are stored with the chest wall at one side: Patient Orientation (0020,0020)
says which (its row direction "A" puts the chest wall on the left, "P" on the right);
without it, the standard orientation is assumed (left breast: chest wall on the left,
right breast: on the right). The image content shows where the chest wall is (the side
of the breast crop with more tissue, the same measure that decides the flip). When the
header says L or R and the content disagrees, the row's record says so — a real and
frequent labelling problem — and ``--laterality content|header`` says which one decides
the orientation (and the laterality reported).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .errors import UsageError
from .meta import DicomMeta

LateralitySource = Literal["content", "header"]
LATERALITY_SOURCES = ("content", "header")
SIDES = ("left", "right")


def check_laterality_source(source: str) -> str:
    """Validate a ``--laterality`` value; returns it."""
    if source not in LATERALITY_SOURCES:
        raise UsageError(f"laterality {source!r} is not one of: {', '.join(LATERALITY_SOURCES)}")
    return source


def header_chest_wall_side(meta: DicomMeta | None) -> str:
    """``"left"`` / ``"right"``: where the header puts the chest wall; ``""`` when it does not say."""
    if meta is None:
        return ""
    if meta.patient_orientation and meta.patient_orientation[0][:1] in ("A", "P"):
        return "left" if meta.patient_orientation[0][:1] == "A" else "right"
    return {"L": "left", "R": "right"}.get(meta.laterality, "")


@dataclass(frozen=True)
class LateralityCheck:
    """Header against content for one image.

    Attributes:
        header: ``"L"``, ``"R"``, or what else the header says (``""``, ``"B"``, ``"U"``).
        expected_side: chest-wall side the header implies (``""``: it does not say).
        content_side: chest-wall side the image shows.
        source: which one decides (``"content"`` or ``"header"``).
    """

    header: str
    expected_side: str
    content_side: str
    source: str = "content"

    def __post_init__(self):
        check_laterality_source(self.source)
        if self.content_side not in SIDES:
            raise ValueError(f"content_side {self.content_side!r} is not one of: {', '.join(SIDES)}")
        if self.expected_side not in ("", *SIDES):
            raise ValueError(f"expected_side {self.expected_side!r} is not one of: '', {', '.join(SIDES)}")

    @property
    def agrees(self) -> bool | None:
        """Whether content and header agree; None when the header names no breast or side."""
        if self.header not in ("L", "R") or not self.expected_side:
            return None
        return self.content_side == self.expected_side

    @property
    def decided_by(self) -> str:
        """``"header"`` only when asked for and the header says L/R with a side; else ``"content"``."""
        return "header" if self.source == "header" and self.agrees is not None else "content"

    @property
    def side(self) -> str:
        """The chest-wall side used (the flip mirrors ``"right"`` to the left)."""
        return self.expected_side if self.decided_by == "header" else self.content_side

    @property
    def laterality(self) -> str:
        """The laterality reported: the header's when it decides or agrees; else what the content implies."""
        if self.header in ("L", "R"):
            if self.decided_by == "header" or self.agrees:
                return self.header
            return "R" if self.header == "L" else "L"
        return "L" if self.content_side == "left" else "R"

    def note(self) -> str | None:
        """One line when header and content disagree, else None."""
        if self.agrees is not False:
            return None
        return (
            f"laterality: the header says {self.header} (chest wall expected on the {self.expected_side}) but the "
            f"image has it on the {self.content_side}; using the {self.decided_by} (--laterality {self.source})"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "agrees": self.agrees, "laterality": self.laterality, "side": self.side}


def check_laterality(meta: DicomMeta | None, content_side: str, source: str = "content") -> LateralityCheck:
    """Compare the header's laterality with ``content_side`` (``"left"`` / ``"right"``)."""
    return LateralityCheck(
        header=meta.laterality if meta is not None else "",
        expected_side=header_chest_wall_side(meta),
        content_side=content_side,
        source=source,
    )
