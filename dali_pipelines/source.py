"""The DICOM source of the DALI pipelines: a picklable callback for a parallel external source.

Each worker process (started with ``spawn``; it never touches CUDA) reads one file,
parses the header with pydicom, takes the frame's codestream with ``generate_frames``
and checks the codestream's own header (J2K SIZ, JPEG SOF3) against the DICOM header
(:func:`decode.backends.nvimgcodec_backend.gpu_unsupported_reason`). It emits six
outputs per sample (:meth:`SampleRecord.outputs`):

=============  ==========================  =============================================
``codestream`` uint8 ``(n,)``              for the DALI decoder (empty on other routes)
``raw``        uint16 ``(H, W, 1)`` "HWC"  CPU-decoded stored values (``(1, 1, 1)`` else)
``is_raw``     bool scalar                 the conditional: skip the decoder
``params``     float32 ``(7,)``            :data:`PARAMS`: VOI window + rescale
``info``       int32 ``(11,)``             :data:`INFO`: index, route, MONOCHROME1, ...
``message``    uint8 ``(n,)``              UTF-8 reason (errors and CPU routes)
=============  ==========================  =============================================

Samples the GPU must not decode (other syntax, a codestream header that disagrees with
the DICOM header, an unsupported precision) are decoded here, on the CPU, with
:func:`decode.decoding.decode_pixels`, and travel as raw pixels. A file that cannot
be read or decoded becomes an ``ROUTE_ERROR`` sample carrying its reason: the callback
never raises (an exception would fail the whole batch), except ``StopIteration`` at
the end of the epoch.

The row order of each epoch is read from an :class:`EpochPlan` file that the main
process writes before the epoch starts (the sampler lives there, the workers cannot
see it). Plans are padded to a whole number of batches with ``-1`` rows, which become
``ROUTE_PAD`` samples (DALI drops a final partial batch of a ``batch=False`` source).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from decode.atomic import atomic_write
from decode.backends.depth import codestream_precision, syntax_code
from decode.backends.nvimgcodec_backend import GPU_SYNTAXES, gpu_unsupported_reason
from decode.decoding import decode_pixels
from decode.dicom import read_dicom
from decode.errors import DicomError, as_dicom_error
from decode.gpu_chain import record_params as make_params
from decode.meta import DicomMeta

log = logging.getLogger(__name__)

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
)
I = {name: k for k, name in enumerate(INFO)}

#: Bytes kept of a codestream the test hook ``fail_indices`` breaks on purpose.
BROKEN_CODESTREAM_BYTES = 64
_EMPTY_U8 = np.zeros((0,), np.uint8)
_PAD_RAW = np.zeros((1, 1, 1), np.uint16)


def make_info(meta: DicomMeta | None, index: int, route: int, precision: int = 0) -> np.ndarray:
    """int32 :data:`INFO` record (zeros for the header fields when there is no header).

    ``precision`` is the codestream's (SIZ / SOF) for decoder samples, ``syntax`` the
    transfer syntax's index in :data:`decode.backends.depth.SYNTAX_CODES` (-1: other).
    """
    out = np.zeros(len(INFO), np.int32)
    out[I["index"]], out[I["route"]] = index, route
    out[I["precision"]], out[I["syntax"]] = precision, -1
    if meta is not None:
        needs_meta = meta.modality_lut is not None or meta.voi_lut is not None
        out[I["monochrome1"]] = int(meta.monochrome1)
        out[I["bits_stored"]] = meta.bits_stored
        out[I["rows"]], out[I["columns"]] = meta.rows, meta.columns
        out[I["bits_allocated"]] = meta.bits_allocated
        out[I["pixel_representation"]] = meta.pixel_representation
        out[I["needs_meta"]] = int(needs_meta)
        out[I["syntax"]] = syntax_code(meta.transfer_syntax)
    return out


@dataclass
class SampleRecord:
    """One sample as the worker emits it (see the module docstring for the outputs)."""

    index: int
    route: int
    codestream: np.ndarray = field(default_factory=lambda: _EMPTY_U8)
    raw: np.ndarray = field(default_factory=lambda: _PAD_RAW)
    params: np.ndarray = field(default_factory=lambda: np.zeros(len(PARAMS), np.float32))
    info: np.ndarray = field(default_factory=lambda: np.zeros(len(INFO), np.int32))
    message: str = ""

    def __post_init__(self):
        if self.route not in ROUTES:
            raise ValueError(f"unknown route {self.route}; allowed: {sorted(ROUTES)}")

    def outputs(self) -> tuple[np.ndarray, ...]:
        """``(codestream, raw, is_raw, params, info, message)`` for the external source."""
        return (
            self.codestream,
            self.raw,
            np.array(self.route != ROUTE_DECODER),
            self.params,
            self.info,
            np.frombuffer(self.message.encode("utf-8"), np.uint8).copy(),
        )


def pack_raw(pixels: np.ndarray) -> np.ndarray:
    """Stored values → ``(H, W, 1)`` uint16 (int16 keeps its bit pattern; uint8 widens)."""
    if pixels.dtype.itemsize == 2:
        out = pixels.view(np.uint16)
    else:
        out = pixels.astype(np.uint16)
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


def error_record(index: int, reason: str) -> SampleRecord:
    return SampleRecord(index, ROUTE_ERROR, info=make_info(None, index, ROUTE_ERROR), message=reason)


def pad_record() -> SampleRecord:
    return SampleRecord(-1, ROUTE_PAD, info=make_info(None, -1, ROUTE_PAD))


def prepare_sample(
    path: str, index: int, *, gpu_syntaxes: Iterable[str] = GPU_SYNTAXES, backend: str = "auto", broken: bool = False
) -> SampleRecord:
    """Read one file and decide its route (runs in the worker; never raises).

    Args:
        path: the DICOM file.
        index: its row index (travels in ``info``).
        gpu_syntaxes: transfer syntaxes the pipeline's decoder takes.
        backend: CPU backend for the samples the decoder must not take.
        broken: test hook: cut the codestream to :data:`BROKEN_CODESTREAM_BYTES` so that
            the real decoder fails on it (the file itself is untouched).

    Returns:
        A :class:`SampleRecord` on route decoder, raw or error.
    """
    try:
        dfile = read_dicom(path)
        meta = dfile.meta
        params = make_params(meta)
        cs = dfile.codestream() if meta.transfer_syntax in gpu_syntaxes else b""
        reason = gpu_unsupported_reason(meta, cs, gpu_syntaxes)
        if reason is None:
            cs = np.frombuffer(cs, np.uint8)
            if broken:
                cs = cs[:BROKEN_CODESTREAM_BYTES]
            return SampleRecord(
                index,
                ROUTE_DECODER,
                codestream=cs,
                params=params,
                info=make_info(
                    meta, index, ROUTE_DECODER, codestream_precision(meta.transfer_syntax, dfile.codestream())
                ),
            )
        dec = decode_pixels(dfile, backend)
        return SampleRecord(
            index,
            ROUTE_RAW,
            raw=pack_raw(dec.pixels),
            params=params,
            info=make_info(meta, index, ROUTE_RAW),
            message=f"{reason} ({dec.backend})",
        )
    except DicomError as exc:
        return error_record(index, exc.reason)
    except Exception as exc:  # anything else is still this file's problem, not the batch's
        return error_record(index, as_dicom_error(path, exc).reason)


class EpochPlan:
    """Row order of each epoch, shared with the workers through small files.

    ``plan-<epoch>.npz`` holds ``rows`` (int64, ``-1`` = padding) and ``syntaxes`` (the
    transfer syntaxes the decoder takes in that epoch). Written atomically by the main
    process before the epoch's first batch is scheduled.
    """

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def path(self, epoch: int) -> str:
        return os.path.join(self.folder, f"plan-{epoch}.npz")

    def write(self, epoch: int, rows: Sequence[int], *, batch_size: int, syntaxes: Iterable[str]) -> np.ndarray:
        """Write epoch ``epoch``'s plan; returns the padded rows."""
        rows = np.asarray(list(rows), np.int64)
        pad = (-len(rows)) % batch_size
        padded = np.concatenate([rows, np.full(pad, -1, np.int64)])
        syn = np.array(sorted(syntaxes) or [""], dtype=str)

        def writer(f):
            np.savez(f, rows=padded, syntaxes=syn)

        atomic_write(self.path(epoch), writer)
        # drop plans two epochs old (workers may still be on the previous one)
        old = self.path(epoch - 2)
        if epoch >= 2 and os.path.exists(old):
            os.unlink(old)
        return padded

    def load(self, epoch: int) -> tuple[np.ndarray, frozenset]:
        with np.load(self.path(epoch), allow_pickle=False) as z:
            return z["rows"], frozenset(s for s in z["syntaxes"].tolist() if s)


class DicomSource:
    """Per-sample callback for ``fn.external_source(parallel=True, batch=False)``.

    Picklable (sent to spawned workers). Sample ``k`` of epoch ``e`` is row
    ``plan(e).rows[k]``; past the end of the plan it raises ``StopIteration``.

    Args:
        paths: DICOM files, one per row.
        plan_dir: folder of the :class:`EpochPlan`.
        backend: CPU backend for samples routed to the CPU.
        fail_indices: test hook: rows whose codestream is broken on purpose (see
            :func:`prepare_sample`), to exercise the per-batch fallback.
    """

    def __init__(self, paths: Sequence[str], plan_dir: str, *, backend: str = "auto", fail_indices: Iterable[int] = ()):
        self.paths = tuple(os.fspath(p) for p in paths)
        self.plan = EpochPlan(plan_dir)
        self.backend = backend
        self.fail_indices = frozenset(int(i) for i in fail_indices)
        self._epoch = None
        self._rows = None
        self._syntaxes = frozenset()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_epoch=None, _rows=None)
        return state

    def _load(self, epoch: int) -> None:
        if self._epoch != epoch:
            self._rows, self._syntaxes = self.plan.load(epoch)
            self._epoch = epoch

    def record(self, row: int, syntaxes: Iterable[str]) -> SampleRecord:
        """The record of row ``row`` (``-1``: padding), as a worker makes it."""
        if row < 0:
            return pad_record()
        return prepare_sample(
            self.paths[row], row, gpu_syntaxes=syntaxes, backend=self.backend, broken=row in self.fail_indices
        )

    def __call__(self, sample_info) -> tuple[np.ndarray, ...]:
        self._load(sample_info.epoch_idx)
        k = sample_info.idx_in_epoch
        if k >= len(self._rows):
            raise StopIteration
        return self.record(int(self._rows[k]), self._syntaxes).outputs()
