"""Mutations of valid DICOM files for fuzzing, and the check each mutated file must pass.

A mutated file must end, on every CPU backend, either as a :class:`~decode.errors.DicomError`
or as pixels equal to pydicom's own ``pixel_array`` of the same bytes — never a crash, a hang,
or pixels that disagree with the reference. Used by the tests (hypothesis) and by
``benchmarks/reliability.py`` (figures).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

HEADER_EDITS = {
    "Rows": [0, 1, 7, 65535],
    "Columns": [0, 3, 65535],
    "BitsStored": [0, 1, 8, 17, 40],
    "BitsAllocated": [0, 8, 12, 32],
    "PixelRepresentation": [1, 2],
    "PhotometricInterpretation": ["RGB", "PALETTE COLOR", "", "MONOCHROME1"],
    "SamplesPerPixel": [0, 3],
    "NumberOfFrames": [0, 2, 1000000],
    "WindowWidth": [0, -5, 1e30],
    "VOILUTFunction": ["CUBIC", "SIGMOID"],
    "TransferSyntaxUID": ["1.2.3.4.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"],
}


@dataclass(frozen=True)
class Mutation:
    """One way to damage a file: ``kind`` in truncate | flip | garbage | header."""

    kind: str
    where: float = 0.0  # relative position in the file / codestream
    count: int = 1  # bits flipped or bytes of garbage
    key: str = ""
    value: object = None

    def describe(self) -> str:
        if self.kind == "header":
            return f"header {self.key}={self.value!r}"
        return f"{self.kind}@{self.where:.3f}x{self.count}"


def mutate(data: bytes, m: Mutation, seed: int = 0) -> bytes:
    """Apply ``m`` to the bytes of a DICOM file (header edits re-write it with pydicom)."""
    rng = np.random.default_rng(seed)
    n = len(data)
    if m.kind == "truncate":
        return data[: int(m.where * n)]
    if m.kind == "flip":
        buf = bytearray(data)
        start = int(m.where * (n - 1))
        for _ in range(m.count):
            pos = min(n - 1, start + int(rng.integers(0, max(1, n // 50))))
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(buf)
    if m.kind == "garbage":
        buf = bytearray(data)
        start = int(m.where * (n - 1))
        buf[start : start + m.count] = rng.integers(0, 256, min(m.count, n - start), dtype=np.uint8).tobytes()
        return bytes(buf)
    if m.kind == "header":
        import io

        import pydicom

        ds = pydicom.dcmread(io.BytesIO(data))
        if m.key == "TransferSyntaxUID":
            ds.file_meta.TransferSyntaxUID = m.value
        else:
            setattr(ds, m.key, m.value)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()
    raise ValueError(f"unknown mutation kind {m.kind!r}; allowed: truncate, flip, garbage, header")


def check_file(path: str, backend: str) -> str:
    """Decode ``path`` with one CPU backend and compare with pydicom (runs in a worker).

    Returns:
        "error" (a clean DicomError), "exact" (pixels equal pydicom's), "lenient"
        (decoded where pydicom refuses), "skip" (backend does not handle the syntax), or
        "MISMATCH: ..." (pixels that differ from pydicom's).
    """
    import warnings

    import pydicom

    from ..backends import BACKENDS
    from ..decoding import decode_pixels
    from ..dicom import read_dicom
    from ..errors import DicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dfile = read_dicom(path)
        except DicomError:
            return "error"
        b = BACKENDS[backend]
        if not b.available() or not b.handles(dfile.meta.transfer_syntax):
            return "skip"
        try:
            got = decode_pixels(dfile, backend, fallback=False).pixels
        except DicomError:
            return "error"
        try:
            ref: np.ndarray | None = pydicom.dcmread(path).pixel_array
        except Exception:
            return "lenient"
        if got.shape == ref.shape and got.dtype == ref.dtype and np.array_equal(got, ref):
            return "exact"
        return f"MISMATCH: {got.dtype}{got.shape} vs pydicom {ref.dtype}{ref.shape}"


def random_mutation(rng) -> Mutation:
    """One mutation drawn with a ``random.Random``-like ``rng``."""
    kind = rng.choice(["truncate", "flip", "garbage", "header"])
    if kind == "header":
        key = rng.choice(sorted(HEADER_EDITS))
        return Mutation("header", key=key, value=rng.choice(HEADER_EDITS[key]))
    return Mutation(kind, where=rng.random(), count=rng.choice([1, 4, 64]))


@dataclass(frozen=True)
class FuzzCase:
    """One mutated file on disk and the backend to check it with (a picklable work item)."""

    path: str
    mutation: Mutation
    backend: str

    def __str__(self) -> str:
        return self.path


def check_case(case: FuzzCase) -> str:
    return check_file(case.path, case.backend)


#: Backends whose native crashes would take down ``rsna-mammo``'s default path.
DEFAULT_PATH = ("native", "imagecodecs", "pydicom")


def run_fuzz(
    sources: list[bytes],
    mutations: list[Mutation],
    folder: str,
    *,
    workers: int = 2,
    timeout: float = 20.0,
    backends: list[str] | None = None,
) -> tuple[dict[str, object], list[str]]:
    """Write each mutation of a source file into ``folder``; check it on every CPU backend.

    Each (file, backend) pair runs in a contained worker, so a native crash or hang is
    attributed to its backend. Returns ``(counts, problems)``: outcome counts
    (inputs, checks, error, exact, lenient, corrupt_decoded, mismatch, and per-backend
    ``crashed`` / ``hung``) and one line per problem: a crash or hang on the default path,
    or a mismatch outside the entropy-coded data.
    """
    from ..backends import BACKENDS
    from ..parallel import map_files

    names = backends or [
        n
        for n, b in BACKENDS.items()
        if b.available() and n in ("native", "imagecodecs", "pylibjpeg", "dicomsdl", "pydicom")
    ]
    os.makedirs(folder, exist_ok=True)
    cases = []
    for k, m in enumerate(mutations):
        data = mutate(sources[k % len(sources)], m, seed=k)
        path = os.path.join(folder, f"fuzz_{k:05d}.dcm")
        with open(path, "wb") as f:
            f.write(data)
        cases.extend(FuzzCase(path, m, n) for n in names)
    counts: dict[str, object] = {
        "inputs": len(mutations),
        "checks": 0,
        "error": 0,
        "exact": 0,
        "lenient": 0,
        "corrupt_decoded": 0,
        "mismatch": 0,
        "crashed": {},
        "hung": {},
    }
    problems = []
    for case, ok, res in map_files(check_case, cases, workers=workers, timeout=timeout):
        if not ok:
            key = "hung" if "timed out" in res.reason else "crashed"
            counts[key][case.backend] = counts[key].get(case.backend, 0) + 1
            if case.backend in DEFAULT_PATH:
                problems.append(f"{case.mutation.describe()}: {case.backend} {res.reason}")
            continue
        if res == "skip":
            continue
        counts["checks"] += 1
        entropy = case.mutation.kind in ("flip", "garbage")
        if res == "lenient" and entropy:
            counts["corrupt_decoded"] += 1
        elif res == "lenient" and case.backend in DEFAULT_PATH:
            counts["mismatch"] += 1
            problems.append(f"{case.mutation.describe()}: {case.backend} decoded a file pydicom refuses")
        elif not res.startswith("MISMATCH"):
            counts[res] += 1
        elif entropy and case.backend != "pylibjpeg":
            # Corrupt entropy-coded data the codec decodes without an error: each library
            # recovers differently (pydicom itself uses pylibjpeg, which must match).
            counts["corrupt_decoded"] += 1
        else:
            counts["mismatch"] += 1
            problems.append(f"{case.mutation.describe()}: {case.backend} {res}")
    return counts, problems


def fuzz_sources(folder: str, size: tuple[int, int] = (64, 48)) -> list[bytes]:
    """Valid files to mutate: JPEG 2000 and lossless JPEG at 12 and 16 bits, MONO1 and MONO2."""
    from .. import syntax as TS
    from .synth import make_mammogram, to_stored, write_dicom

    rng = np.random.default_rng(0)
    img = make_mammogram(rng, *size, cancer=True)
    out = []
    for ts in (TS.JPEG2000_LOSSLESS, TS.JPEG_LOSSLESS_SV1):
        for bits, photometric in ((12, "MONOCHROME1"), (16, "MONOCHROME2")):
            stored, (c, w) = to_stored(img, bits, photometric)
            path = os.path.join(folder, f"source_{TS.short_name(ts)}_{bits}.dcm")
            write_dicom(
                path,
                stored,
                transfer_syntax=ts,
                bits_stored=bits,
                photometric=photometric,
                window=([c], [w]),
                voi_function="LINEAR",
            )
            with open(path, "rb") as f:
                out.append(f.read())
    return out
