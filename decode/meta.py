"""`DicomMeta`: the header fields the decode and preprocessing stages need, validated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import UnsupportedDicomError

#: Largest dimension and pixel count accepted before any allocation (a 65535×65535
#: header is refused). Mammograms are at most about 5000×6000.
MAX_DIM = 16384
MAX_PIXELS = 1 << 27

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Lut:
    """A DICOM LUT (modality or VOI): ``first_map``, nominal ``bits`` and the table."""

    first_map: int
    bits: int
    data: np.ndarray  # 1-D, unsigned integer

    def __post_init__(self):
        if self.data.ndim != 1 or self.data.size == 0:
            raise ValueError("LUT data must be a non-empty 1-D array")


@dataclass(frozen=True)
class DicomMeta:
    """Header of one single-frame greyscale DICOM image.

    Validated on construction: a header this project cannot decode raises
    :class:`~decode.errors.UnsupportedDicomError` naming ``path``.
    """

    path: str
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    transfer_syntax: str
    samples_per_pixel: int = 1
    number_of_frames: int = 1
    window_centers: tuple = ()  # floats; None where the value is empty
    window_widths: tuple = ()
    voi_lut_function: str = "LINEAR"
    voi_lut: Lut | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None
    modality_lut: Lut | None = None
    patient_id: str = ""
    image_id: str = ""
    laterality: str = ""
    view: str = ""
    has_pixel_data: bool = True
    pixel_padding: tuple[int, int] | None = None  # inclusive (lo, hi) stored values
    presentation_intent: str = ""  # Presentation Intent Type: FOR PRESENTATION / FOR PROCESSING
    patient_orientation: tuple[str, ...] = ()  # Patient Orientation (0020,0020): row, column directions
    header_notes: tuple[str, ...] = ()  # elements ignored as malformed, one line each
    library_messages: tuple[str, ...] = ()  # what pydicom warned or logged while reading

    def __post_init__(self):
        bad = self._problem()
        if bad:
            raise UnsupportedDicomError(self.path, bad)

    def _problem(self) -> str:
        if not self.has_pixel_data:
            return "no Pixel Data (7FE0,0010) element"
        if self.samples_per_pixel != 1:
            return f"colour image (Samples per Pixel {self.samples_per_pixel}); only greyscale is supported"
        if self.photometric not in MONOCHROME:
            return f"photometric interpretation {self.photometric!r}; allowed: {', '.join(MONOCHROME)}"
        if self.number_of_frames != 1:
            return f"{self.number_of_frames} frames; a single frame is expected"
        if not (0 < self.rows <= MAX_DIM and 0 < self.columns <= MAX_DIM) or self.rows * self.columns > MAX_PIXELS:
            return f"absurd dimensions {self.rows}x{self.columns} (limit {MAX_DIM} per side, {MAX_PIXELS} pixels)"
        if self.bits_allocated not in (1, 8, 16, 32):
            return f"Bits Allocated {self.bits_allocated}; allowed: 1, 8, 16, 32"
        if not 1 <= self.bits_stored <= self.bits_allocated:
            return f"Bits Stored {self.bits_stored} does not fit Bits Allocated {self.bits_allocated}"
        if self.pixel_representation not in (0, 1):
            return f"Pixel Representation {self.pixel_representation}; allowed: 0, 1"
        if self.voi_lut_function not in VOI_FUNCTIONS:
            return f"VOI LUT Function {self.voi_lut_function!r}; allowed: {', '.join(VOI_FUNCTIONS)}"
        if self.pixel_padding is not None and self.pixel_padding[0] > self.pixel_padding[1]:
            return f"Pixel padding range {self.pixel_padding} is not (lo, hi)"
        return ""

    def window(self, index: int = 0) -> tuple[float, float] | None:
        """``(center, width)`` of window ``index``, or None when that window is absent.

        As pydicom's ``apply_windowing``: an element with one value serves every index;
        with several, value ``index`` is taken. An empty value (``""`` in ``"\\2048"``) is
        absent, and so is the window whose center or width is absent.
        """

        def pick(values: tuple):
            if len(values) == 1:
                return values[0]
            return values[index] if 0 <= index < len(values) else None

        c, w = pick(self.window_centers), pick(self.window_widths)
        return None if c is None or w is None else (float(c), float(w))

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the stored values: uint8/16/32 (int when signed); 1-bit data is uint8."""
        kind = "i" if self.pixel_representation else "u"
        return np.dtype(f"{kind}{max(1, self.bits_allocated // 8)}")

    @property
    def shape(self) -> tuple:
        return (self.rows, self.columns)

    @property
    def monochrome1(self) -> bool:
        return self.photometric == "MONOCHROME1"

    @property
    def for_processing(self) -> bool:
        """Presentation Intent Type FOR PROCESSING: raw detector data, log-scaled and unwindowed."""
        return self.presentation_intent == "FOR PROCESSING"

    def replace(self, **changes) -> DicomMeta:
        return dataclasses.replace(self, **changes)
