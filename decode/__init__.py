"""DICOM reading, exact CPU decoding, and the preprocessing chain (numpy or CuPy).

Public names::

    read_dicom, DicomFile, DicomMeta          header → validated metadata, codestreams
    decode_file, decode_pixels, DecodedImage  stored values, exactly pydicom's pixel_array
    BACKENDS, get_backend, available_backends the backend registry
    apply_voi, window_params                  modality LUT → VOI → [0, 1] → MONOCHROME1
    breast_bbox, crop, flip_to_left           the breast box
    resize, resize_pad                        antialiased, aspect-preserving resize
    preprocess, CHAIN_VERSION                 the whole chain in one call
    DicomError and subclasses                 one-line, typed errors naming the file
    __version__                               the project's version (decode/_version.py)

Nothing here imports torch, DALI or CuPy.
"""

from ._version import __version__
from .backends import BACKENDS, available_backends, get_backend
from .chain import CHAIN_VERSION, Preprocessed, parse_size, preprocess
from .crop import breast_bbox, crop, flip_to_left
from .decoding import DecodedImage, decode_file, decode_pixels
from .dicom import DicomFile, read_dicom
from .errors import CorruptDicomError, DicomError, UnreadableDicomError, UnsupportedDicomError
from .meta import DicomMeta
from .resize import resize, resize_pad
from .voi import WindowParams, apply_voi, window_params

__all__ = [
    "__version__",
    "BACKENDS",
    "CHAIN_VERSION",
    "CorruptDicomError",
    "DecodedImage",
    "DicomError",
    "DicomFile",
    "DicomMeta",
    "Preprocessed",
    "UnreadableDicomError",
    "UnsupportedDicomError",
    "WindowParams",
    "apply_voi",
    "available_backends",
    "breast_bbox",
    "crop",
    "decode_file",
    "decode_pixels",
    "flip_to_left",
    "get_backend",
    "parse_size",
    "preprocess",
    "read_dicom",
    "resize",
    "resize_pad",
    "window_params",
]
