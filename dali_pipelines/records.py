"""Sample records shared by both GPU loader engines (DALI and nvImageCodec).

A worker process (never touching CUDA) turns one row into a :class:`SampleRecord` with
:func:`prepare_sample`: it reads the file, parses the header with pydicom, takes the
frame's codestream with ``generate_frames``, and decides its route with
:func:`decode.routing.gpu_unsupported_reason`:

* ``decoder`` — the codestream goes to the GPU decoder (DALI's ``mixed`` image decoder or
  an nvImageCodec batch), with its precision and syntax in ``info``;
* ``raw`` — decoded here on the CPU (another syntax, a codestream header that disagrees
  with the DICOM header, an unsupported precision or sign), the stored values travel;
* ``error`` — the file cannot be used; ``message`` says why in one line;
* ``pad`` — filler row of a DALI epoch plan.

As DALI external-source outputs (:meth:`SampleRecord.outputs`):

=============  ==========================  =============================================
``codestream`` uint8 ``(n,)``              for the decoder (empty on other routes)
``raw``        uint16 ``(H, W, 1)`` "HWC"  CPU-decoded stored values (``(1, 1, 1)`` else)
``is_raw``     bool scalar                 the conditional: skip the decoder
``params``     float32 ``(7,)``            :data:`PARAMS`: VOI window + rescale
``info``       int32 ``(12,)``             :data:`INFO`: index, route, MONOCHROME1, ...
``message``    uint8 ``(n,)``              UTF-8 reason (errors and CPU routes)
``extra``      uint8 ``(n,)``              the header and the row's notes, pickled (our
                                           own workers make it; padding, laterality and
                                           LUT images need the header in the chain)
=============  ==========================  =============================================

:class:`DecodedSample` / :class:`DecodedBatch` are what either engine's runner yields per
batch: stored values on the engine's device, in row order, every row either a sample or a
``failed`` entry.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from decode.backends.depth import codestream_precision, syntax_code
from decode.decoding import decode_pixels
from decode.dicom import read_dicom
from decode.errors import DicomError, SkippedDicomError, as_dicom_error
from decode.fused_chain import record_params
from decode.intent import apply_intent_policy
from decode.meta import DicomMeta
from decode.routing import GPU_SYNTAXES, gpu_unsupported_reason

ROUTE_DECODER, ROUTE_RAW, ROUTE_PAD, ROUTE_ERROR = 0, 1, 2, 3
ROUTES = {ROUTE_DECODER: "decoder", ROUTE_RAW: "raw", ROUTE_PAD: "pad", ROUTE_ERROR: "error"}

#: float32 record: ``WindowParams.as_array()`` then the rescale (used by min–max only).
PARAMS = ("kind", "center", "scale", "offset", "invert", "slope", "intercept")
#: int32 record.
INFO = (
    "index",
    "route",
    "monochrome1",
    "bits_stored",
    "rows",
    "columns",
    "bits_allocated",
    "pixel_representation",
    "needs_meta",
    "precision",
    "syntax",
    "skipped",
)
I = {name: k for k, name in enumerate(INFO)}  # column index by name

#: Bytes kept of a codestream the test hook ``broken`` cuts on purpose.
BROKEN_CODESTREAM_BYTES = 64
_EMPTY_U8 = np.zeros((0,), np.uint8)
_PAD_RAW = np.zeros((1, 1, 1), np.uint16)


def make_info(meta: DicomMeta | None, index: int, route: int, precision: int = 0, skipped: bool = False) -> np.ndarray:
    """int32 :data:`INFO` record (zeros for the header fields when there is no header).

    ``precision`` is the codestream's (SIZ / SOF) for decoder samples, ``syntax`` the
    transfer syntax's index in :data:`decode.backends.depth.SYNTAX_CODES` (-1: other).
    """
    out = np.zeros(len(INFO), np.int32)
    out[I["index"]], out[I["route"]] = index, route
    out[I["precision"]], out[I["syntax"]] = precision, -1
    out[I["skipped"]] = int(skipped)
    if meta is not None:
        out[I["monochrome1"]] = int(meta.monochrome1)
        out[I["bits_stored"]] = meta.bits_stored
        out[I["rows"]], out[I["columns"]] = meta.rows, meta.columns
        out[I["bits_allocated"]] = meta.bits_allocated
        out[I["pixel_representation"]] = meta.pixel_representation
        out[I["needs_meta"]] = int(needs_meta(meta))
        out[I["syntax"]] = syntax_code(meta.transfer_syntax)
    return out


def header_notes(meta: DicomMeta) -> list[str]:
    """Ignored header elements and what the libraries said while reading (one line each)."""
    from decode.liblog import one_line

    lib = "; ".join(meta.library_messages)
    return [*meta.header_notes, *([f"while reading: {one_line(lib, 240)}"] if lib else [])]


def needs_meta(meta: DicomMeta) -> bool:
    """True when the chain needs the header itself (a Modality or VOI LUT table)."""
    return meta.modality_lut is not None or meta.voi_lut is not None


@dataclass
class SampleRecord:
    """One sample as a worker emits it (see the module docstring for the outputs).

    ``meta`` (the header) and ``notes`` (one line each: FOR PROCESSING, ignored header
    elements, what the libraries said, a CPU fallback) travel pickled with the record
    (the nvImageCodec engine) or in DALI's ``extra`` output.
    """

    index: int
    route: int
    codestream: np.ndarray = field(default_factory=lambda: _EMPTY_U8)
    raw: np.ndarray = field(default_factory=lambda: _PAD_RAW)
    params: np.ndarray = field(default_factory=lambda: np.zeros(len(PARAMS), np.float32))
    info: np.ndarray = field(default_factory=lambda: np.zeros(len(INFO), np.int32))
    message: str = ""
    meta: DicomMeta | None = None
    backend: str = ""  # the CPU backend that decoded a ``raw`` record
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route}; allowed: {sorted(ROUTES)}")

    @property
    def skipped(self) -> bool:
        return bool(self.info[I["skipped"]])

    def outputs(self) -> tuple[np.ndarray, ...]:
        """``(codestream, raw, is_raw, params, info, message, extra)`` for the external source."""
        extra = pickle.dumps((self.meta, tuple(self.notes)), protocol=pickle.HIGHEST_PROTOCOL)
        return (
            self.codestream,
            self.raw,
            np.array(self.route != ROUTE_DECODER),
            self.params,
            self.info,
            np.frombuffer(self.message.encode("utf-8"), np.uint8).copy(),
            np.frombuffer(extra, np.uint8).copy(),
        )


def unpack_extra(arr) -> tuple[DicomMeta | None, tuple[str, ...]]:
    """DALI's ``extra`` output → ``(header, notes)`` (made by :meth:`SampleRecord.outputs` in our workers)."""
    data = bytes(np.asarray(arr, np.uint8))
    return pickle.loads(data) if data else (None, ())


def pack_raw(pixels: np.ndarray) -> np.ndarray:
    """Stored values → ``(H, W, 1)`` uint16 (int16 keeps its bit pattern; uint8 widens)."""
    out = pixels.view(np.uint16) if pixels.dtype.itemsize == 2 else pixels.astype(np.uint16)
    return np.ascontiguousarray(out)[:, :, None]


def unpack_raw(raw, info: np.ndarray):
    """``(H, W[, 1])`` uint16 (numpy or CuPy) → ``(H, W)`` stored values of the header's dtype.

    int16 is a view of the same memory; 8-bit data is narrowed (a copy).
    """
    arr = raw[..., 0] if raw.ndim == 3 else raw
    signed = bool(info[I["pixel_representation"]])
    if int(info[I["bits_allocated"]]) == 8:
        return arr.astype(np.int8 if signed else np.uint8)
    return arr.view(np.int16) if signed else arr


def error_record(index: int, reason: str, *, skipped: bool = False) -> SampleRecord:
    """A row that produced nothing; ``skipped``: left out on purpose (``--for-processing skip``)."""
    return SampleRecord(index, ROUTE_ERROR, info=make_info(None, index, ROUTE_ERROR, skipped=skipped), message=reason)


def pad_record() -> SampleRecord:
    return SampleRecord(-1, ROUTE_PAD, info=make_info(None, -1, ROUTE_PAD))


def prepare_sample(
    path: str,
    index: int,
    *,
    gpu_syntaxes: Iterable[str] = GPU_SYNTAXES,
    backend: str = "auto",
    broken: bool = False,
    for_processing: str = "warn",
) -> SampleRecord:
    """Read one file and decide its route (runs in a worker; never raises).

    Args:
        path: the DICOM file.
        index: its row index (travels in ``info``).
        gpu_syntaxes: transfer syntaxes the engine's decoder takes (empty: decode on the CPU).
        backend: CPU backend for the samples the decoder must not take.
        broken: test hook: cut the codestream to :data:`BROKEN_CODESTREAM_BYTES` so that
            the real decoder fails on it (the file itself is untouched).
        for_processing: the FOR PROCESSING policy (:func:`decode.intent.apply_intent_policy`):
            ``warn`` adds a note, ``skip`` makes a skipped error record, ``error`` an error record.

    Returns:
        A :class:`SampleRecord` on route decoder, raw or error.
    """
    try:
        dfile = read_dicom(path)
        meta = dfile.meta
        intent = apply_intent_policy(meta, for_processing)
        notes = [*([intent] if intent else []), *header_notes(meta)]
        params = record_params(meta)
        cs = dfile.codestream() if meta.transfer_syntax in gpu_syntaxes else b""
        reason = gpu_unsupported_reason(meta, cs, gpu_syntaxes)
        if reason is None:
            precision = codestream_precision(meta.transfer_syntax, cs)
            cs = np.frombuffer(cs, np.uint8)
            if broken:
                cs = cs[:BROKEN_CODESTREAM_BYTES]
            return SampleRecord(
                index,
                ROUTE_DECODER,
                codestream=cs,
                params=params,
                info=make_info(meta, index, ROUTE_DECODER, precision),
                meta=meta,
                notes=tuple(notes),
            )
        dec = decode_pixels(dfile, backend)
        return SampleRecord(
            index,
            ROUTE_RAW,
            raw=pack_raw(dec.pixels),
            params=params,
            info=make_info(meta, index, ROUTE_RAW),
            message=f"{reason} ({dec.backend})",
            meta=meta,
            backend=dec.backend,
            notes=(*notes, *dec.notes),
        )
    except SkippedDicomError as exc:
        return error_record(index, exc.reason, skipped=True)
    except DicomError as exc:
        return error_record(index, exc.reason)
    except Exception as exc:  # anything else is still this file's problem, not the batch's
        return error_record(index, as_dicom_error(path, exc).reason)


@dataclass
class DecodedSample:
    """One decoded frame: stored values on the engine's device, with its records."""

    index: int
    image: object  # (H, W) stored values: CuPy on "cuda", numpy on "cpu"
    params: np.ndarray  # float32 PARAMS
    info: np.ndarray  # int32 INFO
    route: str  # "decoder", "raw" (worker CPU), "retry" (decoder one by one), "cpu" (fallback backend)
    message: str = ""
    meta: DicomMeta | None = None  # the header (padding, laterality, LUT images)
    notes: tuple[str, ...] = ()  # one line each, from the worker


@dataclass
class DecodedBatch:
    """A batch in row order; ``failed`` lists ``(index, reason)`` of rows that produced nothing,
    ``skipped`` the indices among them left out on purpose (``for_processing="skip"``)."""

    samples: list[DecodedSample]
    failed: list[tuple[int, str]] = field(default_factory=list)
    skipped: set = field(default_factory=set)
    fell_back: bool = False  # the batch failed in the decoder and was decoded sample by sample
    keep: object = None  # the decoder outputs the samples' memory belongs to


@dataclass(frozen=True)
class PrepareRow:
    """Worker task ``(row, gpu_syntaxes) -> SampleRecord`` over a fixed list of paths (picklable).

    Args:
        paths: DICOM files, one per row.
        backend: CPU backend for the rows routed to the CPU.
        fail_indices: test hook: rows whose codestream is cut on purpose (see :func:`prepare_sample`).
    """

    paths: tuple[str, ...]
    backend: str = "auto"
    fail_indices: frozenset = frozenset()
    for_processing: str = "warn"

    def __call__(self, task) -> SampleRecord:
        row, syntaxes = task
        return prepare_sample(
            self.paths[row],
            row,
            gpu_syntaxes=syntaxes,
            backend=self.backend,
            broken=row in self.fail_indices,
            for_processing=self.for_processing,
        )

    def path_of(self, task) -> str:
        return self.paths[task[0]]


class ContainedPreparer:
    """:class:`PrepareRow` run one row at a time in a child process with a per-file timeout.

    A read or CPU decode that hangs past ``timeout`` seconds, or a native decoder that
    crashes, costs that row only (an ``error`` record naming why); the child is replaced.
    With ``timeout=None`` rows are prepared in this process. The child starts on first use.
    """

    def __init__(self, task: PrepareRow, timeout: float | None):
        self.task = task
        self.timeout = timeout
        self._pool = None

    def __getstate__(self):
        return {"task": self.task, "timeout": self.timeout, "_pool": None}

    def __call__(self, row: int, syntaxes: Iterable[str]) -> SampleRecord:
        syntaxes = frozenset(syntaxes)
        if self.timeout is None:
            return self.task((row, syntaxes))
        if self._pool is None:
            from decode.parallel import WorkerPool

            self._pool = WorkerPool(self.task, 1, timeout=self.timeout, path_of=self.task.path_of)
        self._pool.submit(row, (row, syntaxes))
        _key, ok, res = self._pool.next_result()
        return res if ok else error_record(row, res.reason)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
