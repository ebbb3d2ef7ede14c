"""``rsna-mammo prepare``: decode once — an HTJ2K transcode or a preprocessed-tensor cache.

Two formats (see the README):

* ``htj2k``: every image's pixels losslessly re-encoded as High-Throughput JPEG 2000
  (:mod:`decode.transcode`), same ``{split}_images/<patient_id>/<image_id>.dcm`` layout,
  every other DICOM element kept; each file verified bit-exact before it is renamed
  into place. Any reader (and :class:`~dali_pipelines.loader.DicomLoader`) opens it.
* ``tensor``: the loader's chain (decode → VOI → MONOCHROME1 → breast box → crop →
  flip → resize/pad to ``size``) run once, stored as uint16 in memory-mappable shards
  with ``tensor_index.json`` (:mod:`dali_pipelines.tensor_cache`); the loader reads it
  when given ``data_root=CACHE``.

Atomic and resumable: outputs go to temporary names and are renamed; a row is recorded
in the journal (:mod:`training.prepare_state`) only after its output is in place, so a
kill -9 at any moment loses at most the rows in flight, and a re-run skips rows that
are complete and verified and redoes the rest. Every manifest row ends as done or as a
row of ``errors.csv``. ``--shard i/n`` (or torchrun's ``RANK``/``WORLD_SIZE``) takes
rows ``i, i+n, i+2n, ...``: no overlap, no gap; every shard ends with a check of the
whole cache that lists anything missing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from decode.atomic import atomic_write
from decode.errors import UsageError
from decode.parallel import default_workers, map_files

from . import prepare_state as state
from .prepare_tasks import Sink, Task, clean_leftovers, error_record, run_gpu_tasks, run_task

log = logging.getLogger(__name__)

Format = Literal["htj2k", "tensor"]
FORMATS = ("htj2k", "tensor")
VERIFY_MODES = ("quick", "full")
SPLITS = ("train", "test")
ENGINES = ("auto", "dali", "nvimgcodec", "cpu")
TENSOR_SHARD_BYTES = 256 << 20  # target size of one tensor shard file
BLOCK_ROWS = 1024  # rows handed to one process pool at a time (bounds memory)


@dataclass(frozen=True)
class Row:
    """One manifest row: ``rel`` = ``{split}_images/<patient_id>/<image_id>.dcm``; ``src`` its source file."""

    split: str
    patient_id: str
    image_id: str
    rel: str
    src: str


@dataclass(frozen=True)
class PrepareConfig:
    """Options of one ``prepare`` run (validated).

    Attributes:
        data: dataset root (``train.csv`` / ``test.csv``, ``{split}_images/``).
        out: cache root (created); must not be ``data``.
        format: ``"htj2k"`` or ``"tensor"``.
        size: ``(H, W)`` of the tensor cache (tensor only).
        flip: tensor only: mirror breasts to face the same side (the loader's default).
        laterality: tensor only: which side decides the flip when header and content disagree.
        for_processing: tensor only: FOR PROCESSING images are cached with a note (``warn``),
            left out (``skip``) or failed (``error``). An HTJ2K transcode keeps every header
            element, so the loader applies its own setting to it.
        workers: processes (0: all cores).
        backend: CPU decode backend for the sources.
        shard: ``(i, n)``: this run takes rows ``i::n``.
        chunk: rows per tensor shard / per journal file (0: automatic).
        verify: ``"quick"``: a done row is trusted when its source and output files have the
            recorded sizes (and mtimes); ``"full"``: done rows are re-decoded and checksummed.
        engine: tensor only: ``"auto"``, ``"dali"``, ``"nvimgcodec"`` or ``"cpu"`` — the loader's
            engines (``auto``: a GPU engine where CUDA is, else the CPU workers). An HTJ2K
            transcode is always decoded on the CPU: it is verified against that decode.
        decode_scale: tensor only: how JPEG 2000 sources are decoded (:mod:`decode.scale`;
            ``"auto"``, the loader's default, decodes only the resolution ``size`` needs).
    """

    data: str
    out: str
    format: Format = "htj2k"
    size: tuple[int, int] | None = None
    flip: bool = True
    laterality: str = "content"
    for_processing: str = "warn"
    workers: int = 0
    backend: str = "auto"
    shard: tuple[int, int] = (0, 1)
    chunk: int = 0
    verify: str = "quick"
    engine: str = "auto"
    decode_scale: str = "auto"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UsageError(f"unknown format {self.format!r}; allowed: {', '.join(FORMATS)}")
        if self.format == "tensor" and self.size is None:
            raise UsageError("--format tensor needs --size HxW (e.g. 1024x512)")
        if self.format == "htj2k" and self.size is not None:
            raise UsageError("--size applies to --format tensor only (htj2k keeps the full image)")
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; allowed: {', '.join(ENGINES)}")
        if self.format == "htj2k" and self.engine in ("dali", "nvimgcodec"):
            raise UsageError(
                f"--engine {self.engine} applies to --format tensor only: an HTJ2K transcode is decoded on the CPU, "
                "the reference its written file is verified against"
            )
        from decode.scale import check_decode_scale

        check_decode_scale(self.decode_scale)
        from decode.intent import check_for_processing
        from decode.laterality import check_laterality_source

        check_for_processing(self.for_processing)
        check_laterality_source(self.laterality)
        if self.verify not in VERIFY_MODES:
            raise UsageError(f"unknown verify mode {self.verify!r}; allowed: {', '.join(VERIFY_MODES)}")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise UsageError(f"shard {i}/{n} is not i/n with 0 <= i < n")
        if self.chunk < 0 or self.workers < 0:
            raise UsageError("chunk and workers must be >= 0")
        if not os.path.isdir(self.data):
            raise UsageError(f"--data {self.data}: no such folder")
        if os.path.realpath(self.data) == os.path.realpath(self.out):
            raise UsageError("--out must differ from --data (prepare never writes into the source dataset)")

    def params(self) -> dict:
        """What the cache records about itself (a re-run must match)."""
        if self.format == "htj2k":
            from decode.transcode import HTJ2K_SYNTAX

            return {"format": "htj2k", "transfer_syntax": HTJ2K_SYNTAX}
        from dali_pipelines.tensor_cache import CacheParams
        from decode.chain import CHAIN_VERSION
        from decode.scale import effective_scale

        return {
            "format": "tensor",
            **CacheParams(
                size=self.size,
                flip=self.flip,
                chain_version=CHAIN_VERSION,
                decode_scale="full" if self.resolved_engine() != "cpu" else effective_scale(self.decode_scale),
                laterality=self.laterality,
                for_processing=self.for_processing,
            ).to_json(),
        }

    def resolved_engine(self) -> str:
        """The engine this run uses: ``cpu`` for HTJ2K, and for ``auto`` while a reduced decode
        scale applies (only the CPU engine decodes JPEG 2000 at reduced resolution); else
        ``auto`` resolved as the loader does. A GPU engine decodes at full resolution."""
        from decode.scale import effective_scale

        if self.format == "htj2k" or self.engine == "cpu":
            return "cpu"
        if self.engine == "auto" and effective_scale(self.decode_scale) != "full":
            return "cpu"
        from dali_pipelines.devices import resolve_device
        from dali_pipelines.engines import resolve_engine

        return resolve_engine(self.engine, resolve_device("auto"))[0]

    def rows_per_chunk(self) -> int:
        if self.chunk:
            return self.chunk
        if self.format == "tensor":
            h, w = self.size
            return int(max(1, min(4096, TENSOR_SHARD_BYTES // (2 * h * w))))
        return max(16, 4 * (self.workers or default_workers()))


@dataclass
class PrepareReport:
    """Outcome of one run for this shard's rows, plus the whole-cache check."""

    rows: int
    ok: int
    skipped: int
    failed: int
    unaccounted: int
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    check: state.CacheCheck | None = None

    def line(self) -> str:
        return f"{self.ok} ok, {self.failed} failed, {self.unaccounted} unaccounted"


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)``; None → torchrun's ``RANK``/``WORLD_SIZE`` or ``(0, 1)``.

    Raises:
        ValueError: malformed, out of range, or in conflict with torchrun's environment.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    env = (int(os.environ.get("RANK", "0") or 0), env_world)
    if text is None:
        shard = env
    else:
        try:
            i, n = (int(v) for v in str(text).split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r} is not i/n, e.g. 0/4") from None
        shard = (i, n)
        if env_world > 1 and shard != env:
            raise UsageError(f"--shard {text} conflicts with torchrun's RANK/WORLD_SIZE {env[0]}/{env[1]}")
    if not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise UsageError(f"shard {shard[0]}/{shard[1]} is not i/n with 0 <= i < n")
    return shard


def manifest_rows(data: str) -> tuple[list[Row], dict[str, dict]]:
    """Every row of ``train.csv`` then ``test.csv`` (whichever exist), and the refused ones.

    Returns:
        ``(rows, errors)``: rows in CSV order; ``errors`` maps image_id → error dict
        (stage ``manifest``) for ids that would leave the data root or repeat an id.

    Raises:
        ValueError: neither CSV exists, or one lacks its id columns.
    """
    from .manifest import load_manifest

    rows: list[Row] = []
    errors: dict[str, dict] = {}
    seen = set()
    found = False
    for split in SPLITS:
        if not os.path.exists(os.path.join(data, f"{split}.csv")):
            continue
        found = True
        df = load_manifest(data, split)
        root = os.path.normpath(os.path.abspath(data))
        for pid, iid, path, problem in zip(df["patient_id"], df["image_id"], df["path"], df["path_error"]):
            pid, iid = str(pid), str(iid)
            key = iid if iid not in seen else f"{iid}#{len(rows)}"
            rel = os.path.relpath(path, root).replace(os.sep, "/") if path else f"{split}_images/{pid}/{iid}.dcm"
            row = Row(split, pid, key, rel, path)
            if problem or iid in seen:
                reason = problem or f"image_id {iid} appears more than once in the CSVs"
                errors[key] = {"image_id": iid, "path": path or rel, "stage": "manifest", "reason": reason}
            seen.add(iid)
            rows.append(row)
    if not found:
        raise UsageError(f"{data}: no train.csv or test.csv")
    return rows, errors


def copy_csvs(data: str, out: str) -> list[str]:
    """Copy the top-level CSV files of the data root into the cache (atomically)."""
    copied = []
    with state.locked(out):  # temporary names at the root are only written under the lock
        for name in sorted(os.listdir(data)):
            if name.lower().endswith(".csv") and name != state.ERRORS_CSV and os.path.isfile(os.path.join(data, name)):
                with open(os.path.join(data, name), "rb") as f:
                    atomic_write(os.path.join(out, name), f.read())
                copied.append(name)
    return copied


def run_prepare(cfg: PrepareConfig, *, progress: Callable[[int], None] | None = None) -> PrepareReport:
    """Build (or resume) the cache for this shard's rows, then rebuild the index and check every row.

    Args:
        cfg: the run's options.
        progress: called with the number of rows just finished (for a progress bar).

    Returns:
        A :class:`PrepareReport` (this shard) with the whole-cache :class:`CacheCheck`.

    Raises:
        ValueError: bad data root, or ``out`` holds a cache made with other parameters.
    """
    t0 = time.perf_counter()
    rows, manifest_errors = manifest_rows(cfg.data)
    os.makedirs(cfg.out, exist_ok=True)
    params = cfg.params()
    state.check_params(cfg.out, params)
    copy_csvs(cfg.data, cfg.out)
    rank, world = cfg.shard
    tag = f"s{rank}of{world}"
    state.mark_done(cfg.out, cfg.shard, None)
    mine = rows[rank::world]
    ok_records, _ = state.read_journal(cfg.out)
    removed = clean_leftovers(cfg, tag, mine, ok_records)
    if removed:
        log.info("removed %d temporary/orphan file(s) left by an interrupted run", removed)

    todo, skipped = _to_do(cfg, mine, manifest_errors, ok_records)
    if progress and skipped:
        progress(skipped)
    sink = Sink(cfg, tag)
    engine = cfg.resolved_engine()
    if engine != "cpu":
        log.info("prepare %s: decoding with the %s engine", cfg.format, engine)
    tasks = [
        Task(
            r,
            cfg.out,
            cfg.format,
            cfg.size,
            cfg.flip,
            cfg.backend,
            cfg.decode_scale,
            cfg.laterality,
            cfg.for_processing,
        )
        for r in todo
    ]
    for start in range(0, len(tasks), BLOCK_ROWS):
        block = tasks[start : start + BLOCK_ROWS]
        if engine == "cpu":
            results = map_files(run_task, block, workers=cfg.workers or default_workers())
        else:
            results = run_gpu_tasks(cfg, block, engine)
        for task, good, res in results:
            if good:
                sink.add(*res)
            else:
                sink.fail(error_record(task.row, res))
                log.info("%s", res)  # reported once, in the run's error lines and errors.csv
            if progress:
                progress(1)
    sink.flush()
    clean_leftovers(cfg, tag, [], state.read_journal(cfg.out)[0])  # shards whose rows were all redone

    # this shard's outputs and journal are final: say so before the (last) index rebuild sees it
    state.mark_done(
        cfg.out,
        cfg.shard,
        {
            "rows": len(mine),
            "written": sink.ok,
            "errors": sink.failed,
            "skipped": skipped,
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    check, done, failed = finish(cfg, rows, manifest_errors)
    mine_ok = sum(r.image_id in done for r in mine)
    mine_failed = sum(r.image_id in failed for r in mine)
    report = PrepareReport(
        rows=len(mine),
        ok=mine_ok,
        skipped=skipped,
        failed=mine_failed,
        unaccounted=len(mine) - mine_ok - mine_failed,
        errors=[failed[r.image_id] for r in mine if r.image_id in failed],
        seconds=round(time.perf_counter() - t0, 3),
        check=check,
    )
    return report


def _to_do(
    cfg: PrepareConfig, mine: list[Row], manifest_errors: dict[str, dict], ok_records: dict[str, dict]
) -> tuple[list[Row], int]:
    """Rows of this shard that are not complete and verified (manifest-refused rows are never done)."""
    candidates = [r for r in mine if r.image_id not in manifest_errors]
    quick, shard_sizes = [], {}
    for r in candidates:
        rec = ok_records.get(r.image_id)
        if (
            rec is None
            or rec.get("rel") != r.rel
            or state.record_problem(cfg.out, cfg.format, rec, r.src, shard_sizes=shard_sizes) is not None
        ):
            quick.append(False)
        else:
            quick.append(True)
    done = [r for r, q in zip(candidates, quick) if q]
    if cfg.verify == "full" and done:
        bad = set()
        items = [(cfg.out, cfg.format, ok_records[r.image_id], r.src) for r in done]
        for item, good, res in map_files(
            _full_check, items, workers=cfg.workers or default_workers(), path_of=lambda it: it[3]
        ):
            if not good or res is not None:
                bad.add(item[2]["image_id"])
                log.warning("%s: redoing: %s", item[3], res if good else res.reason)
        done = [r for r in done if r.image_id not in bad]
    done_ids = {r.image_id for r in done}
    return [r for r in candidates if r.image_id not in done_ids], len(done)


def _full_check(item) -> str | None:
    out, fmt, rec, src = item
    return state.record_problem(out, fmt, rec, src, full=True)


def finish(cfg: PrepareConfig, rows: list[Row] | None = None, manifest_errors: dict[str, dict] | None = None):
    """Rebuild the index and ``errors.csv`` from the journal and check every row of every shard."""
    if rows is None:
        rows, manifest_errors = manifest_rows(cfg.data)
    extra = {"data": os.path.abspath(cfg.data), "backend": cfg.backend}
    return state.rebuild(
        cfg.out, cfg.format, rows, manifest_errors or {}, index_extra=extra, params=cfg.params(), world=cfg.shard[1]
    )


def check_only(cfg: PrepareConfig) -> state.CacheCheck:
    """``prepare --check``: rebuild the index from the journal and check it, doing no work."""
    if not os.path.isdir(cfg.out):
        raise UsageError(f"--out {cfg.out}: no such cache folder")
    state.check_params(cfg.out, cfg.params())
    check, _done, _failed = finish(cfg)
    return check
