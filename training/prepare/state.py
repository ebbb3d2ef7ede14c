"""The bookkeeping of ``rsna-mammo prepare``: journal, resume checks, index, final check.

Everything lives in the cache root::

    _prepare/params.json           what the cache is (format; HTJ2K: transfer syntax; tensor:
                                   size, flip, chain version, stage, dtype, decode scale,
                                   laterality, FOR PROCESSING policy)
    _prepare/journal/<tag>-*.json  one record per finished row (ok or error), written
                                   atomically after the row's output was renamed into place
    _prepare/done/<i>of<n>.json    shard i of n finished (its counts)
    _prepare/lock                  flock'ed while the index is rebuilt
    tensor_index.json | htj2k_index.json, errors.csv   rebuilt from the journal

A row is *done* when its newest ok record passes :func:`record_problem` (the source file
has the recorded size and mtime, the output exists with the recorded size; ``full``
also re-checks the pixels). Anything else is redone by the next run. Journal files of
any shard layout are read, so a cache may be resumed with another ``--shard`` split.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from decode.atomic import atomic_write
from decode.errors import UsageError

log = logging.getLogger(__name__)

STATE_DIR = "_prepare"
JOURNAL_DIR = f"{STATE_DIR}/journal"
DONE_DIR = f"{STATE_DIR}/done"
PARAMS_FILE = f"{STATE_DIR}/params.json"
ERRORS_CSV = "errors.csv"
HTJ2K_INDEX = "htj2k_index.json"
ERROR_COLUMNS = ("image_id", "path", "stage", "reason")


def source_stat(path: str) -> dict[str, int]:
    """``{"size", "mtime_ns"}`` of a file (both -1 when it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return {"size": -1, "mtime_ns": -1}
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@contextlib.contextmanager
def locked(out: str):
    """Hold an exclusive flock on ``out/_prepare/lock`` (serialises index rebuilds across shards)."""
    import fcntl

    os.makedirs(os.path.join(out, STATE_DIR), exist_ok=True)
    with open(os.path.join(out, STATE_DIR, "lock"), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def check_params(out: str, params: dict) -> None:
    """Record ``params`` for a new cache, or refuse a cache made with other parameters.

    Raises:
        UsageError: ``out`` already holds a cache made with different parameters.
    """
    path = os.path.join(out, PARAMS_FILE)
    with locked(out):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                have = json.load(f)
            if have != params:
                diff = [
                    f"{k}={have.get(k)!r} (asked {params.get(k)!r})"
                    for k in sorted(set(have) | set(params))
                    if have.get(k) != params.get(k)
                ]
                raise UsageError(
                    f"{out} already holds a cache made with other parameters: {', '.join(diff)}; "
                    f"use another --out (or delete {out})"
                )
            return
        atomic_write(path, json.dumps(params, indent=1, sort_keys=True))


def write_journal(out: str, tag: str, records: list[dict]) -> str | None:
    """Append a batch of row records as one new journal file (atomic)."""
    if not records:
        return None
    name = f"{tag}-{uuid.uuid4().hex[:12]}.json"
    return atomic_write(os.path.join(out, JOURNAL_DIR, name), json.dumps(records, separators=(",", ":")))


def read_journal(out: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """Newest ok record and newest error record per image id (unreadable files are skipped)."""
    folder = os.path.join(out, JOURNAL_DIR)
    ok: dict[str, dict] = {}
    err: dict[str, dict] = {}
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return ok, err
    for name in names:
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                records = json.load(f)
        except (OSError, ValueError) as exc:
            log.warning("%s: skipping unreadable journal file (%s)", name, exc)
            continue
        for rec in records:
            target = ok if rec.get("status") == "ok" else err
            iid = str(rec.get("image_id"))
            if iid not in target or rec.get("t", 0) >= target[iid].get("t", 0):
                target[iid] = rec
    return ok, err


def record_problem(
    out: str, fmt: str, rec: dict, src: str, *, full: bool = False, shard_sizes: dict[str, int] | None = None
) -> str | None:
    """Why an ok record no longer stands (None when the row is complete and verified)."""
    if source_stat(src) != rec.get("source"):
        return "the source file changed (size or mtime)"
    if fmt == "tensor":
        from dali_pipelines.tensor_cache import entry_problem

        return entry_problem(out, rec, full=full, shard_sizes=shard_sizes)
    dst = os.path.join(out, rec["rel"])
    st = source_stat(dst)
    if st != {"size": rec["file_size"], "mtime_ns": rec["file_mtime_ns"]}:
        return "the HTJ2K file is missing or changed"
    if full:
        from decode.transcode import verify_htj2k_file

        return verify_htj2k_file(dst, rec["pixel_checksum"])
    return None


@dataclass
class CacheCheck:
    """State of every manifest row in a cache (all shards).

    Attributes:
        total: manifest rows. ok / failed: rows done / in the error report.
        missing: relative paths of rows neither done nor failed.
        shards_done: shard indices (of ``world``) that have finished.
    """

    total: int
    ok: int
    failed: int
    missing: list[str] = field(default_factory=list)
    world: int = 1
    shards_done: list[int] = field(default_factory=list)

    @property
    def all_shards_done(self) -> bool:
        return len(self.shards_done) == self.world

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        line = f"cache check: {self.ok} of {self.total} rows ready, {self.failed} failed, {len(self.missing)} missing"
        if not self.all_shards_done:
            line += f" ({len(self.shards_done)} of {self.world} shards finished; the rest may still be running)"
        return line


def mark_done(out: str, shard: tuple[int, int], counts: dict | None) -> None:
    """Write (``counts``) or remove (None) the done marker of ``shard``."""
    path = os.path.join(out, DONE_DIR, f"{shard[0]}of{shard[1]}.json")
    if counts is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        atomic_write(path, json.dumps(counts))


def shards_done(out: str, world: int) -> list[int]:
    return [i for i in range(world) if os.path.exists(os.path.join(out, DONE_DIR, f"{i}of{world}.json"))]


def rebuild(
    out: str,
    fmt: str,
    rows: Iterable,
    manifest_errors: dict[str, dict],
    *,
    index_extra: dict,
    params: dict,
    world: int,
    full: bool = False,
) -> tuple[CacheCheck, dict[str, dict], dict[str, dict]]:
    """Rebuild the index and ``errors.csv`` from the journal and check every row (under the lock).

    Args:
        rows: every manifest row (``.image_id``, ``.rel``, ``.src``), all shards.
        manifest_errors: image_id → error dict for rows refused by the manifest.

    Returns:
        ``(check, done records by image id, error rows by image id)``.
    """
    with locked(out):
        clean_locked_temps(out)
        # the done markers before the journal: a shard writes its last journal file, then its
        # marker, without the lock, so a marker seen here vouches for a journal read after it;
        # read the other way round, a shard finishing in between would count as done while its
        # last rows still looked missing (an incomplete cache reported as final)
        finished = shards_done(out, world)
        ok, err = read_journal(out)
        done: dict[str, dict] = {}
        failed: dict[str, dict] = {}
        missing: list[str] = []
        shard_sizes: dict[str, int] = {}
        rows = list(rows)
        for row in rows:
            rec = ok.get(row.image_id)
            if row.image_id in manifest_errors:
                failed[row.image_id] = manifest_errors[row.image_id]
            elif (
                rec is not None
                and rec.get("rel") == row.rel
                and record_problem(out, fmt, rec, row.src, full=full, shard_sizes=shard_sizes) is None
            ):
                done[row.image_id] = rec
            elif row.image_id in err:
                e = err[row.image_id]
                failed[row.image_id] = {k: e.get(k, "") for k in ERROR_COLUMNS}
            else:
                missing.append(row.rel)
        _write_index(out, fmt, done, params, index_extra)
        _write_errors(out, failed.values())
        check = CacheCheck(
            total=len(rows),
            ok=len(done),
            failed=len(failed),
            missing=missing,
            world=world,
            shards_done=finished,
        )
    return check, done, failed


def clean_locked_temps(out: str) -> int:
    """Remove temporary files of outputs only written under the lock (index, errors.csv, CSVs, params).

    Call with the lock held: any such temporary file is then a leftover of a killed run.
    """
    removed = 0
    for folder in (out, os.path.join(out, STATE_DIR)):
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        for n in names:
            if n.startswith(".") and n.endswith(".tmp") and os.path.isfile(os.path.join(folder, n)):
                os.unlink(os.path.join(folder, n))
                removed += 1
    return removed


def _write_index(out: str, fmt: str, done: dict[str, dict], params: dict, extra: dict) -> None:
    drop = ("status", "t", "image_id")
    entries = {iid: {k: v for k, v in rec.items() if k not in drop} for iid, rec in sorted(done.items())}
    if fmt == "tensor":
        from dali_pipelines.tensor_cache import CacheParams, write_index

        write_index(out, CacheParams.from_json(params), entries, **extra)
    else:
        doc = {
            "format": "rsna-mammo-htj2k-cache",
            "format_version": 1,
            **params,
            "count": len(entries),
            **extra,
            "entries": entries,
        }
        atomic_write(os.path.join(out, HTJ2K_INDEX), json.dumps(doc, separators=(",", ":")))


def _write_errors(out: str, rows: Iterable[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ERROR_COLUMNS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: str(r.get("image_id"))):
        w.writerow({k: " ".join(str(r.get(k, "")).split()) for k in ERROR_COLUMNS})
    atomic_write(os.path.join(out, ERRORS_CSV), buf.getvalue())
