"""The preprocessed-tensor cache: shard files of uint16 images and ``tensor_index.json``.

Made by ``rsna-mammo prepare --format tensor --size HxW`` (:mod:`training.prepare`),
read by :class:`TensorCacheReader` (which :class:`~dali_pipelines.loader.DicomLoader`
uses when ``data_root`` holds a ``tensor_index.json``).

Layout of a cache root::

    tensor_index.json            the index (below)
    tensors/<name>.u16           shards: images back to back, C order, little-endian uint16
    train.csv, test.csv, ...     copied from the data root
    errors.csv                   rows that failed (image_id, path, stage, reason)

Each image is the loader's chain output (:func:`decode.chain.preprocess` with
``stage="crop"``, the cache's ``size`` and ``flip``): float32 in [0, 1], stored as
``uint16 = round(x * 65535)`` (absolute error ≤ 7.7e-6) and read back as
``float32 = uint16 / 65535``. The index holds the cache parameters (size, chain
version, flip, stage, dtype, scale, decode scale, laterality, FOR PROCESSING policy) and,
per image id: shard, byte offset, shape, checksum (blake2b-128 of the stored values),
crop box, flipped, resolution levels dropped, the row's notes, the source file's size and
mtime, and its ``{split}_images/<patient_id>/<image_id>.dcm`` relative path.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from decode.atomic import atomic_write
from decode.errors import UsageError
from decode.transcode import pixel_checksum

log = logging.getLogger(__name__)

#: The index file that marks a tensor cache root.
TENSOR_INDEX = "tensor_index.json"


def is_tensor_cache(root: str | os.PathLike) -> bool:
    """True when ``root`` holds a tensor cache index (the loader then reads the cache, not DICOMs)."""
    return os.path.isfile(os.path.join(os.fspath(root), TENSOR_INDEX))


FORMAT = "rsna-mammo-tensor-cache"
FORMAT_VERSION = 1
DTYPE = "uint16"  # stored dtype (little-endian on disk)
SCALE = 65535.0  # stored = round(clip(x, 0, 1) * SCALE)
SHARD_DIR = "tensors"
SHARD_SUFFIX = ".u16"


@dataclass(frozen=True)
class CacheParams:
    """What a tensor cache was made with; a reader or a re-run must ask for the same.

    Attributes:
        size: ``(H, W)`` of every stored image.
        flip: whether breasts were mirrored to face the same side.
        chain_version: :data:`decode.chain.CHAIN_VERSION` when the cache was made.
        stage: the chain stage (always ``"crop"``).
        dtype: stored dtype (``"uint16"``).
        decode_scale: how JPEG 2000 sources were decoded (:mod:`decode.scale`); an index
            without the key predates reduced decoding and was made at ``"full"``.
        laterality: which side decided the flip when header and content disagreed.
        for_processing: what was done with FOR PROCESSING images (``warn``: cached).
    """

    size: tuple[int, int]
    flip: bool
    chain_version: int
    stage: str = "crop"
    dtype: str = DTYPE
    decode_scale: str = "full"
    laterality: str = "content"
    for_processing: str = "warn"

    def __post_init__(self):
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) <= 0:
            raise UsageError(f"size must be (H, W) with positive values, got {self.size!r}")
        object.__setattr__(self, "size", size)
        if self.dtype != DTYPE:
            raise UsageError(f"tensor cache dtype {self.dtype!r}; allowed: {DTYPE}")
        if self.stage != "crop":
            raise UsageError(f"tensor cache stage {self.stage!r}; allowed: crop")
        from decode.scale import check_decode_scale

        check_decode_scale(self.decode_scale)

    def to_json(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_json(cls, d: dict) -> CacheParams:
        return cls(
            size=tuple(d["size"]),
            flip=bool(d["flip"]),
            chain_version=int(d["chain_version"]),
            stage=d.get("stage", "crop"),
            dtype=d.get("dtype", DTYPE),
            decode_scale=d.get("decode_scale", "full"),
            laterality=d.get("laterality", "content"),
            for_processing=d.get("for_processing", "warn"),
        )

    def differences(self, other: CacheParams) -> list[str]:
        """Human-readable differences (``self`` is what the cache holds, ``other`` what is asked)."""
        out = []
        if self.size != other.size:
            out.append(f"size {self.size[0]}x{self.size[1]} (asked {other.size[0]}x{other.size[1]})")
        if self.chain_version != other.chain_version:
            out.append(f"chain version {self.chain_version} (this code is chain version {other.chain_version})")
        if self.flip != other.flip:
            out.append(f"flip={self.flip} (asked flip={other.flip})")
        if self.decode_scale != other.decode_scale:
            out.append(f"decode scale {self.decode_scale} (asked {other.decode_scale})")
        if self.laterality != other.laterality:
            out.append(f"laterality={self.laterality} (asked laterality={other.laterality})")
        if self.for_processing != other.for_processing:
            out.append(f"for_processing={self.for_processing} (asked for_processing={other.for_processing})")
        if self.stage != other.stage or self.dtype != other.dtype:
            out.append(f"stage/dtype {self.stage}/{self.dtype} (asked {other.stage}/{other.dtype})")
        return out


def to_stored(img01: np.ndarray) -> np.ndarray:
    """float [0, 1] image → C-contiguous uint16 (``round(x * 65535)``)."""
    x = np.clip(np.asarray(img01, dtype=np.float32), 0.0, 1.0)
    return np.ascontiguousarray(np.rint(x * np.float32(SCALE)).astype(np.uint16))


def from_stored(stored: np.ndarray) -> np.ndarray:
    """uint16 → float32 in [0, 1] (a new array)."""
    return np.asarray(stored, dtype=np.float32) * np.float32(1.0 / SCALE)


def write_shard(root: str, name: str, arrays: Sequence[np.ndarray]) -> tuple[str, int, list[tuple[int, str]]]:
    """Write ``arrays`` (uint16) back to back as ``root/tensors/<name>.u16``, verified, atomically.

    The data goes to a temporary name, is fsynced, read back and checked against the
    checksums, then renamed into place.

    Returns:
        ``(shard path relative to root, shard size in bytes, [(offset, checksum), ...])``.
    """
    rel = f"{SHARD_DIR}/{name}{SHARD_SUFFIX}"
    final = os.path.join(root, rel)
    placed: list[tuple[int, str]] = []

    def write(f) -> None:
        offset = 0
        for arr in arrays:
            a = np.ascontiguousarray(arr, dtype="<u2")
            f.write(a.tobytes())
            placed.append((offset, pixel_checksum(a)))
            offset += a.nbytes

    def read_back(tmp: str) -> None:
        for (off, checksum), arr in zip(placed, arrays):
            back = np.fromfile(tmp, dtype="<u2", count=int(np.prod(arr.shape)), offset=off).reshape(arr.shape)
            if pixel_checksum(back) != checksum:
                raise OSError(f"shard {rel}: data read back differs at offset {off}")

    atomic_write(final, write, verify=read_back)
    return rel, os.path.getsize(final), placed


def entry_problem(
    root: str, entry: dict, *, full: bool = False, shard_sizes: dict[str, int] | None = None
) -> str | None:
    """Why a cache entry is not usable (None when it is).

    Quick check: the shard exists with the size recorded when it was written and holds
    the entry's bytes. ``full=True`` also re-hashes the entry's values.
    """
    rel = entry["shard"]
    if shard_sizes is not None and rel in shard_sizes:
        size = shard_sizes[rel]
    else:
        try:
            size = os.path.getsize(os.path.join(root, rel))
        except OSError:
            size = -1
        if shard_sizes is not None:
            shard_sizes[rel] = size
    if size < 0:
        return f"shard {rel} is missing"
    if size != int(entry.get("shard_size", size)):
        return f"shard {rel} has {size} bytes, {entry.get('shard_size')} were written"
    h, w = entry["shape"]
    if int(entry["offset"]) + 2 * h * w > size:
        return f"shard {rel} is shorter than the entry"
    if full:
        arr = np.fromfile(os.path.join(root, rel), dtype="<u2", count=h * w, offset=int(entry["offset"]))
        if pixel_checksum(arr.reshape(h, w)) != entry["checksum"]:
            return f"checksum mismatch in shard {rel} at offset {entry['offset']}"
    return None


def write_index(root: str, params: CacheParams, entries: dict[str, dict], **extra) -> str:
    """Write ``root/tensor_index.json`` atomically (``entries``: image_id → entry)."""
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **params.to_json(),
        "scale": SCALE,
        "count": len(entries),
        **extra,
        "entries": entries,
    }
    return atomic_write(os.path.join(root, TENSOR_INDEX), json.dumps(doc, separators=(",", ":")))


def read_index(root: str) -> dict:
    """Load and sanity-check ``root/tensor_index.json``.

    Raises:
        UsageError: missing, unreadable or not a tensor cache index of a
            known version.
    """
    path = os.path.join(root, TENSOR_INDEX)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise UsageError(
            f"{root} is not a tensor cache: no {TENSOR_INDEX} (make one with `rsna-mammo prepare --format tensor`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable tensor cache index: {exc}") from None
    if doc.get("format") != FORMAT or int(doc.get("format_version", -1)) != FORMAT_VERSION:
        raise UsageError(
            f"{path}: not a {FORMAT} index of version {FORMAT_VERSION} "
            f"(found {doc.get('format')!r} version {doc.get('format_version')!r})"
        )
    return doc


def read_errors(root: str) -> dict[str, str]:
    """image_id → ``"stage: reason"`` from the cache's ``errors.csv`` (empty when absent)."""
    import csv

    try:
        with open(os.path.join(root, "errors.csv"), newline="", encoding="utf-8") as f:
            return {
                r["image_id"]: f"{r.get('stage', '')}: {r.get('reason', '')}"
                for r in csv.DictReader(f)
                if r.get("image_id")
            }
    except (OSError, KeyError, ValueError):
        return {}


def cache_key(path: str) -> tuple[str | None, str]:
    """``(relative path or None, image id)`` a path is looked up by.

    ``.../{split}_images/<patient_id>/<image_id>.dcm`` → ``("{split}_images/<patient_id>/<image_id>.dcm",
    "<image_id>")``; anything else → ``(None, stem)`` (so a bare image id works too).
    """
    parts = os.path.normpath(os.fspath(path)).replace(os.sep, "/").split("/")
    stem = os.path.splitext(parts[-1])[0] if parts[-1].endswith(".dcm") else parts[-1]
    if len(parts) >= 3 and parts[-3].endswith("_images"):
        return "/".join(parts[-3:]), stem
    return None, stem


class TensorCacheReader:
    """Row ``i`` → ``(H, W)`` float32 image in [0, 1] from a tensor cache (picklable).

    Shards are memory-mapped lazily in each process that calls the reader (a pickled
    reader carries only the row → (shard, offset) table).
    """

    def __init__(
        self,
        root: str,
        params: CacheParams,
        shards: Sequence[str],
        shard_of: np.ndarray,
        offsets: np.ndarray,
        entries: list[dict] | None = None,
    ):
        self.root = os.fspath(root)
        self.params = params
        self.shards = tuple(shards)
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.entries = entries  # per row: box, flipped, checksum... (not pickled when None)
        self.failed: dict[int, tuple[str, str]] = {}  # row → (path, why prepare has no image for it)
        self._maps: dict[int, np.memmap] = {}

    @classmethod
    def open(
        cls,
        root: str,
        paths: Sequence[str],
        size: tuple[int, int],
        *,
        flip: bool = True,
        decode_scale: str = "auto",
        laterality: str = "content",
        for_processing: str = "warn",
    ) -> TensorCacheReader:
        """A reader for ``paths`` (rows) from the cache at ``root``.

        Args:
            root: the cache root (holds ``tensor_index.json``).
            paths: one per row: ``.../{split}_images/<patient_id>/<image_id>.dcm`` (the
                folder part may be anything) or an image id.
            size: ``(H, W)`` the caller wants.
            flip: the caller's flip setting.
            decode_scale: the caller's decode scale (:mod:`decode.scale`).
            laterality: the caller's ``laterality`` setting.
            for_processing: the caller's ``for_processing`` setting.

        Rows that ``prepare`` could not do (listed in the cache's ``errors.csv``) open fine
        and fail one by one when read (a :class:`~decode.errors.DicomError` with prepare's
        reason), as they would when decoding the raw data.

        Raises:
            UsageError: the cache was made with other parameters (size,
                chain version, flip, decode scale, laterality, FOR PROCESSING policy), or
                some paths are neither in it nor in its error report (the message says
                which and how to rebuild).
        """
        from decode.chain import CHAIN_VERSION

        doc = read_index(root)
        have = CacheParams.from_json(doc)
        want = CacheParams(
            size=tuple(size),
            flip=flip,
            chain_version=CHAIN_VERSION,
            decode_scale=decode_scale,
            laterality=laterality,
            for_processing=for_processing,
        )
        diff = have.differences(want)
        if diff:
            raise UsageError(
                f"tensor cache {root} is stale for this run: it was made with {'; '.join(diff)}. "
                f"Rebuild it: rsna-mammo prepare --format tensor --size {want.size[0]}x{want.size[1]}"
                f"{'' if flip else ' --no-flip'} --decode-scale {decode_scale} --laterality {laterality}"
                f" --for-processing {for_processing} --out NEW_DIR"
            )
        entries = doc["entries"]
        by_rel = {e["rel"]: iid for iid, e in entries.items() if e.get("rel")}
        shards: dict[str, int] = {}
        shard_of, offsets, rows, missing = [], [], [], []
        known_bad = read_errors(root)
        failed: dict[int, tuple[str, str]] = {}
        for p in paths:
            rel, stem = cache_key(p)
            iid = by_rel.get(rel) if rel else None
            if iid is None and stem in entries and (rel is None or entries[stem].get("rel") in (None, rel)):
                iid = stem
            if iid is None and stem in known_bad:
                failed[len(offsets)] = (
                    os.fspath(p),
                    f"not in the tensor cache: prepare failed on it ({known_bad[stem]})",
                )
                shard_of.append(-1)
                offsets.append(0)
                rows.append(None)
                continue
            if iid is None:
                missing.append(os.fspath(p))
                continue
            e = entries[iid]
            if tuple(e["shape"]) != have.size:
                raise UsageError(f"tensor cache {root}: entry {iid} has shape {e['shape']}, the index says {have.size}")
            shard_of.append(shards.setdefault(e["shard"], len(shards)))
            offsets.append(int(e["offset"]))
            rows.append(e)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise UsageError(
                f"tensor cache {root} lacks {len(missing)} of {len(paths)} requested images: {shown} "
                f"(run `rsna-mammo prepare` on the data again, or see its errors.csv)"
            )
        reader = cls(root, have, list(shards), np.asarray(shard_of), np.asarray(offsets), rows)
        reader.failed = failed
        return reader

    def __len__(self) -> int:
        return len(self.offsets)

    def _map(self, k: int) -> np.memmap:
        mm = self._maps.get(k)
        if mm is None:
            mm = self._maps[k] = np.memmap(os.path.join(self.root, self.shards[k]), dtype="<u2", mode="r")
        return mm

    def stored(self, i: int) -> np.ndarray:
        """Row ``i``'s stored uint16 image (a read-only view into the mapped shard).

        Raises:
            DicomError: ``prepare`` failed on this row (its reason).
        """
        if self.shard_of[i] < 0:
            from decode.errors import CorruptDicomError

            raise CorruptDicomError(*self.failed[i])
        h, w = self.params.size
        start = int(self.offsets[i]) // 2
        return self._map(int(self.shard_of[i]))[start : start + h * w].reshape(h, w)

    def __call__(self, i: int) -> np.ndarray:
        """Row ``i`` as a new ``(H, W)`` float32 array in [0, 1]."""
        return from_stored(self.stored(i))

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}
        state["entries"] = None
        return state
