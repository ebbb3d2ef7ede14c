"""DICOM reading, exact CPU decoding, and the preprocessing chain (numpy or CuPy).

Public names::

    read_dicom, DicomFile, DicomMeta          header → validated metadata, codestreams
    decode_file, decode_pixels, DecodedImage  stored values, exactly pydicom's pixel_array
    BACKENDS, get_backend, available_backends the backend registry
    apply_voi, window_params                  modality LUT → VOI → [0, 1] → MONOCHROME1
    breast_bbox, crop, flip_to_left           the breast box
    resize, resize_pad                        antialiased, aspect-preserving resize
    preprocess, CHAIN_VERSION                 the whole chain in one call
    read_sample, DECODE_SCALES                one file: read, FOR PROCESSING policy, decode (JPEG 2000 at
                                              the resolution needed), chain
    padding_mask, apply_intent_policy,        mammography specifics: Pixel Padding, FOR PROCESSING,
    check_laterality                          header laterality against the image
    DicomError and subclasses                 one-line, typed errors naming the file
    __version__                               the project's version (decode/_version.py)

Nothing here imports torch, DALI or CuPy.
"""

import os as _os

# nvImageCodec's and DALI's bundled OpenCV print a warning per greyscale JPEG 2000 frame
# ("unknown or unspecified color space") and a line per corrupt codestream, and
# nvImageCodec a warning per sample it returns no image for, unless told otherwise before
# they are imported. This project reports every such sample itself in one line naming the
# file, so their own lines are noise; a user's own setting wins.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
_os.environ.setdefault("PYNVIMGCODEC_VERBOSITY", "1")


from ._version import __version__
from .backends import BACKENDS, available_backends, get_backend
from .chain import CHAIN_VERSION, Preprocessed, parse_size, preprocess
from .crop import breast_bbox, crop, flip_to_left
from .decoding import DecodedImage, decode_file, decode_pixels
from .dicom import DicomFile, read_dicom
from .errors import CorruptDicomError, DicomError, SkippedDicomError, UnreadableDicomError, UnsupportedDicomError
from .intent import apply_intent_policy
from .laterality import LateralityCheck, check_laterality
from .meta import DicomMeta
from .padding import padding_mask
from .resize import resize, resize_pad
from .sample import Sample, read_sample
from .scale import DECODE_SCALES
from .voi import WindowParams, apply_voi, window_params

__all__ = [
    "__version__",
    "BACKENDS",
    "CHAIN_VERSION",
    "DECODE_SCALES",
    "CorruptDicomError",
    "DecodedImage",
    "DicomError",
    "DicomFile",
    "DicomMeta",
    "LateralityCheck",
    "Preprocessed",
    "Sample",
    "SkippedDicomError",
    "UnreadableDicomError",
    "UnsupportedDicomError",
    "WindowParams",
    "apply_intent_policy",
    "apply_voi",
    "available_backends",
    "breast_bbox",
    "check_laterality",
    "crop",
    "decode_file",
    "decode_pixels",
    "flip_to_left",
    "get_backend",
    "padding_mask",
    "parse_size",
    "preprocess",
    "read_dicom",
    "read_sample",
    "resize",
    "resize_pad",
    "window_params",
]
