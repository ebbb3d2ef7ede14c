"""The ``prepare`` run: this shard's rows through the workers (or a GPU engine) into the cache,
then the index rebuilt and every row of the whole cache checked."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from decode.atomic import atomic_write
from decode.errors import UsageError
from decode.parallel import default_workers, map_files

from ..manifest import SPLITS, load_manifest
from . import state
from .config import BLOCK_ROWS, PrepareConfig, Row
from .tasks import Sink, Task, clean_leftovers, error_record, run_gpu_tasks, run_task

log = logging.getLogger(__name__)


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


def manifest_rows(data: str) -> tuple[list[Row], dict[str, dict]]:
    """Every row of ``train.csv`` then ``test.csv`` (whichever exist), and the refused ones.

    Returns:
        ``(rows, errors)``: rows in CSV order; ``errors`` maps image_id → error dict
        (stage ``manifest``) for ids that would leave the data root or repeat an id.

    Raises:
        UsageError: neither CSV exists, or one lacks its id columns.
    """
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
        A :class:`PrepareReport` (this shard) with the whole-cache :class:`~training.prepare.state.CacheCheck`.

    Raises:
        UsageError: bad data root, or ``out`` holds a cache made with other parameters.
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
