"""``rsna-mammo bench decode``: images/s per decode backend and transfer syntax.

For every transfer syntax present in the data, side by side in one run:

* ``baseline`` rows: a plain serial ``pydicom.dcmread(path).pixel_array`` loop and a
  plain ``dicomsdl.open(path).pixelData(storedvalue=True)`` loop;
* the project's default, ``rsna-mammo decode``'s path: ``decode_file(path, "auto")``
  in a process pool over all cores (:func:`decode.parallel.map_files`), reported as
  backend ``auto`` with its worker count;
* per-core rows (``workers=1``): ``auto`` and every available registry backend that
  decodes the syntax, through :func:`decode.decoding.decode_file` (a named backend without
  the pydicom fallback, so its failures show; ``auto`` with it, as the default path);
* for JPEG 2000 / HTJ2K, reduced-resolution rows (``openjpeg@1/2``, ``@1/4``, ``@1/8``,
  one core): OpenJPEG stopping 1–3 resolution levels early, as ``--decode-scale`` does
  (:func:`benchmarks.reduced_bench.bench_reduced_decode`; no exactness check: there is no
  pydicom reference below full resolution). ``--no-reduced`` leaves them out.

The first pass over the files is the warm-up and the exactness gate: every output is
hashed and compared with pydicom's ``pixel_array``; a backend whose output differs on
any file (or that fails on one) is reported ``exact=false`` with no speed. Then the
configurations are timed in interleaved rounds (``--repeats``) so that load changes on
a shared machine hit them alike; each row reports the median and the spread.
``summary.cpu_s_per_image`` adds this process's CPU seconds per image for the serial
rows: a per-core figure that load from other jobs does not distort.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from decode.errors import UsageError

from .baselines import BASELINE_DECODERS, pixel_digest
from .ratios import decode_summary
from .schema import BenchResult

log = logging.getLogger(__name__)


def _pool_job(job: tuple[str, str, bool]) -> tuple[tuple[int, ...], str | None, str]:
    """Worker: decode ``path`` as ``rsna-mammo decode`` does; return shape, digest (if asked), backend."""
    from decode.decoding import decode_file

    path, backend, check = job
    dec = decode_file(path, backend)
    return dec.pixels.shape, (pixel_digest(dec.pixels) if check else None), dec.backend


# --- the run ----------------------------------------------------------------------------


@dataclass
class Config:
    """One measured configuration within one transfer syntax."""

    stage: str
    backend: str
    workers: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # this process's CPU time per pass (serial rows)
    exact: bool | None = None
    peak_mb: float = 0.0
    picked: Counter = field(default_factory=Counter)
    errors: list[dict] = field(default_factory=list)  # {"path", "backend", "reason"}

    def fail(self, path: str, reason: str) -> None:
        self.exact = False
        self.errors.append({"path": path, "backend": self.label, "reason": reason})

    @property
    def label(self) -> str:
        return f"{self.backend}{' (baseline)' if self.stage == 'baseline' else ''} w{self.workers}"


@dataclass
class Group:
    """The files of one transfer syntax."""

    transfer_syntax: str
    paths: list[str]
    shapes: list[tuple[int, int]]

    @property
    def pixels(self) -> int:
        return int(sum(h * w for h, w in self.shapes))

    @property
    def size(self) -> tuple[int | None, int | None]:
        if not self.shapes:
            return None, None
        return Counter(self.shapes).most_common(1)[0][0]


def scan(paths: Sequence[str], limit: int = 0) -> tuple[dict[str, Group], list[dict]]:
    """Group files by transfer syntax (header only); unreadable files become error rows."""
    import pydicom

    groups: dict[str, Group] = {}
    errors = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            ts = str(ds.file_meta.TransferSyntaxUID)
            shape = (int(ds.Rows), int(ds.Columns))
        except Exception as exc:
            errors.append({"path": p, "backend": None, "reason": f"cannot read header: {type(exc).__name__}: {exc}"})
            continue
        g = groups.setdefault(ts, Group(ts, [], []))
        if limit and len(g.paths) >= limit:
            continue
        g.paths.append(p)
        g.shapes.append(shape)
    return groups, errors


def project_backends(ts: str, wanted: Sequence[str] | None = None) -> list[str]:
    """``auto`` plus the available registry backends that decode ``ts`` (filtered by ``wanted``)."""
    from decode.backends import BACKENDS, available_backends

    names = ["auto"] + [n for n in available_backends() if BACKENDS[n].handles(ts)]
    if wanted:
        unknown = [w for w in wanted if w != "auto" and w not in BACKENDS]
        if unknown:
            raise UsageError(f"unknown backend(s) {', '.join(unknown)}; allowed: auto, {', '.join(BACKENDS)}")
        names = [n for n in names if n in wanted]
    return names


def _serial_pass(
    cfg: Config, decode: Callable[[str], np.ndarray], group: Group, refs: dict[str, str] | None, bar
) -> None:
    """One pass over the group in this process; on the first pass (refs given) check exactness."""
    from decode.errors import DicomError

    for p in group.paths:
        try:
            arr = decode(p)
        except Exception as exc:  # a failing file fails the gate
            cfg.fail(p, exc.reason if isinstance(exc, DicomError) else f"{type(exc).__name__}: {exc}")
            arr = None
        if refs is not None and arr is not None:
            if cfg.backend == "pydicom" and cfg.stage == "baseline":
                refs[p] = pixel_digest(arr)
            elif pixel_digest(arr) != refs.get(p):
                if cfg.exact is not False:
                    log.warning("%s: %s output differs from pydicom's pixel_array", p, cfg.label)
                cfg.exact = False
        if bar is not None:
            bar.update(1)


def _pool_pass(cfg: Config, group: Group, refs: dict[str, str] | None, bar) -> None:
    """One pass through the project's process pool (``rsna-mammo decode``'s path)."""
    from decode.parallel import map_files

    jobs = [(p, cfg.backend, refs is not None) for p in group.paths]
    for (path, _b, _c), ok, res in map_files(_pool_job, jobs, workers=cfg.workers, path_of=lambda j: j[0]):
        if not ok:
            cfg.fail(path, getattr(res, "reason", str(res)))
        elif refs is not None:
            _shape, digest, used = res
            cfg.picked[used] += 1
            if digest != refs.get(path):
                if cfg.exact is not False:
                    log.warning("%s: %s output differs from pydicom's pixel_array", path, cfg.label)
                cfg.exact = False
        if bar is not None:
            bar.update(1)


def _run_pass(cfg: Config, group: Group, refs: dict[str, str] | None, bar) -> None:
    from decode.decoding import decode_file

    if cfg.stage == "baseline":
        _serial_pass(cfg, BASELINE_DECODERS[cfg.backend], group, refs, bar)
    elif cfg.workers > 1:
        _pool_pass(cfg, group, refs, bar)
    else:

        def dec(p, _b=cfg.backend):
            d = decode_file(p, _b, fallback=_b == "auto")  # named backends: no silent pydicom fallback
            if refs is not None:
                cfg.picked[d.backend] += 1
            return d.pixels

        _serial_pass(cfg, dec, group, refs, bar)


def bench_group(
    group: Group, *, backends: Sequence[str] | None, workers: int, repeats: int, bar=None
) -> tuple[list[BenchResult], list[Config]]:
    """Measure every configuration on one transfer syntax's files (see the module docstring)."""
    import time

    from .measure import PeakHostMemory, summarize

    ts = group.transfer_syntax
    configs = [Config("baseline", name, 1) for name in BASELINE_DECODERS if _baseline_available(name)]
    names = project_backends(ts, backends)
    if "auto" in names and workers > 1:
        configs.append(Config("decode", "auto", workers))
    configs += [Config("decode", n, 1) for n in names]
    refs: dict[str, str] = {}
    for cfg in configs:  # warm-up + exactness gate (pydicom baseline first: it makes the references)
        if bar is not None:
            bar.set_description(f"{_short(ts)} {cfg.label} check")
        _run_pass(cfg, group, refs, bar)
        if cfg.exact is None:
            cfg.exact = True
    timed = [c for c in configs if c.exact]
    for r in range(repeats):  # interleaved rounds
        for cfg in timed:
            if bar is not None:
                bar.set_description(f"{_short(ts)} {cfg.label} {r + 1}/{repeats}")
            with PeakHostMemory() as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                _run_pass(cfg, group, None, bar)
                cfg.seconds.append(time.perf_counter() - t0)
                if cfg.workers == 1:
                    cfg.cpu_seconds.append(time.process_time() - c0)
            cfg.peak_mb = max(cfg.peak_mb, mem.peak_mb or 0.0)
    for cfg in configs:
        if cfg.exact is False and bar is not None:
            bar.update(repeats * len(group.paths))
    height, width = group.size
    rows = []
    for cfg in configs:
        stats = (
            summarize(cfg.seconds, len(group.paths), group.pixels)
            if cfg.exact
            else {"images_per_s": None, "mpix_per_s": None, "spread": None}
        )
        rows.append(
            BenchResult(
                stage=cfg.stage,
                backend=cfg.backend,
                device="cpu",
                transfer_syntax=ts,
                height=height,
                width=width,
                images=len(group.paths),
                workers=cfg.workers,
                batch_size=1,
                peak_host_mb=cfg.peak_mb if cfg.exact else None,
                peak_gpu_mb=None,
                exact=cfg.exact,
                **stats,
            )
        )
    return rows, configs


def _baseline_available(name: str) -> bool:
    from decode.backends import module_available

    if module_available(name):
        return True
    log.warning("baseline %s is not installed; its rows are missing", name)
    return False


def _short(ts: str) -> str:
    from decode.syntax import short_name

    return short_name(ts)


# --- CLI --------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="folder searched for *.dcm (default: synthesize full-size files)")
    p.add_argument(
        "--backends",
        metavar="A,B",
        help="project backends to measure (default: auto and every "
        "available one); the pydicom and dicomsdl baselines are always measured",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto or cpu: the registry backends decode on the CPU (GPU decode: benchmarks/gpu_check.sh)",
    )
    p.add_argument("--workers", type=int, default=0, help="processes of the default (auto) row (default: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after the warm-up pass (default: 3)")
    p.add_argument("--limit", type=int, default=0, help="with --data: at most N files per transfer syntax")
    p.add_argument("--files", type=int, default=6, help="without --data: synthetic files per codec (default: 6)")
    p.add_argument("--size", default="3328x2560", metavar="HxW", help="synthetic image size (default: 3328x2560)")
    p.add_argument("--bits", type=int, default=12, help="synthetic Bits Stored (default: 12)")
    p.add_argument("--cache", metavar="DIR", help="synthetic file cache (default: ~/.cache/rsna-mammo/bench)")
    p.add_argument(
        "--caches",
        action="store_true",
        help="also measure the decode-once caches beside the raw figures: the HTJ2K transcode and "
        "the tensor cache (rsna-mammo prepare) of full-size JPEG 2000 files (summary.caches)",
    )
    p.add_argument("--cache-size", default="2048x1024", metavar="HxW", help="tensor cache size for --caches")
    p.add_argument("--json", metavar="FILE", help="write the results; {machine} and {date} are filled in")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-reduced",
        action="store_true",
        help="leave out the reduced-resolution JPEG 2000 rows (openjpeg@1/2, @1/4, @1/8: what --decode-scale uses)",
    )


def _check_device(device: str) -> str:
    """The registry backends timed here decode on the CPU; the nvImageCodec GPU batch decode is timed
    by ``benchmarks/gpu_check.sh`` (its ``decode`` rows with backend ``nvimgcodec``)."""
    if device == "cuda":
        raise UsageError(
            "bench decode times the CPU decode backends; the GPU batch decode is measured by "
            "benchmarks/gpu_check.sh. Allowed here: --device auto, cpu"
        )
    return "cpu"


def measure_caches(args: argparse.Namespace, workers: int) -> dict:
    """HTJ2K transcode and tensor cache vs raw JPEG 2000, in this run (see benchmarks.prepare_bench)."""
    import tempfile

    from decode.chain import parse_size

    from .prepare_bench import run_bench

    h, w = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="bench-caches-") as work:
        res = run_bench(
            work,
            files=args.files,
            height=h,
            width=w,
            size=parse_size(args.cache_size),
            repeats=args.repeats,
            workers=workers,
        )
    ratios = res["summary"]["ratios"]
    print(
        f"caches: HTJ2K decodes {ratios['htj2k_vs_j2k_decode']}x faster than JPEG 2000; the tensor cache "
        f"feeds {ratios['tensor_cache_vs_j2k_decode_chain']}x faster than JPEG 2000 decode+chain",
        file=sys.stderr,
    )
    return {"rows": res["rows"], **res["summary"]}


def measure_reduced(groups: dict[str, Group], rows: list[BenchResult], *, repeats: int) -> dict:
    """Reduced-resolution rows for the JPEG 2000 / HTJ2K groups (appended to ``rows``); per codec,
    each scale's images/s over the per-core ``auto`` (full-resolution) row of the same run."""
    from decode.openjpeg import handles, unavailable_reason

    from .reduced_bench import bench_reduced_decode

    why = unavailable_reason()
    if why:
        log.warning("reduced-resolution rows left out: %s", why)
        return {}
    out = {}
    for ts in sorted(groups):
        if not handles(ts):
            continue
        new = bench_reduced_decode(groups[ts].paths, scales=("1/2", "1/4", "1/8"), workers=1, repeats=repeats)
        rows += new
        full = next((r for r in rows if r.transfer_syntax == ts and r.backend == "auto" and r.workers == 1), None)
        out[ts] = {
            r.backend.split("@", 1)[1]: round(r.images_per_s / full.images_per_s, 3)
            if full and full.images_per_s and r.images_per_s
            else None
            for r in new
        }
    return {"vs_auto_per_core": out}


def run(args: argparse.Namespace) -> int:
    from decode.chain import parse_size
    from decode.parallel import default_workers

    from .machine import expand_path, machine_record
    from .schema import dump, make_document, options_of
    from .synthdata import bench_files, default_cache

    device = _check_device(args.device)
    if args.repeats < 1:
        raise UsageError("--repeats must be >= 1")
    workers = args.workers or default_workers()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    progress = not args.no_progress
    synthetic = None
    size = parse_size(args.size)
    cache = args.cache or default_cache()
    paths = bench_files(args.data, cache=cache, size=size, files=args.files, bits=args.bits, progress=progress)
    if not args.data:
        synthetic = {
            "cache": os.path.abspath(cache),
            "height": size[0],
            "width": size[1],
            "bits": args.bits,
            "files_per_codec": args.files,
            "photometric": "MONOCHROME2",
        }
    groups, errors = scan(paths, args.limit)
    total = sum(
        (len(project_backends(ts, backends)) + 3) * (args.repeats + 1) * len(g.paths) for ts, g in groups.items()
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", disable=None, file=sys.stderr)
    rows, picks, cpu_per_image = [], {}, {}
    try:
        for ts in sorted(groups):
            group_rows, configs = bench_group(
                groups[ts], backends=backends, workers=workers, repeats=args.repeats, bar=bar
            )
            rows += group_rows
            for cfg in configs:
                errors += cfg.errors
                if cfg.cpu_seconds:  # load-independent per-core figure (median CPU seconds per image)
                    cpu_per_image.setdefault(ts, {})[cfg.label] = round(
                        statistics.median(cfg.cpu_seconds) / len(groups[ts].paths), 4
                    )
                if cfg.backend == "auto" and cfg.picked:
                    picks.setdefault(ts, dict(cfg.picked))
    finally:
        if bar is not None:
            bar.close()
    reduced = {}
    if not args.no_reduced:
        reduced = measure_reduced(groups, rows, repeats=args.repeats)
    machine = machine_record(with_torch=False)
    config = {
        "command": "bench decode",
        "options": options_of(args),
        "device": device,
        "data": args.data,
        "synthetic": synthetic,
        "files": {ts: len(g.paths) for ts, g in groups.items()},
        "repeats": args.repeats,
        "workers": workers,
        "backends": backends,
        "auto_picks": picks,
        "timing": "interleaved rounds; perf_counter around a full pass over the files",
    }
    summary = {"ratios": decode_summary(rows), "cpu_s_per_image": cpu_per_image, "errors": errors}
    if reduced:
        summary["reduced"] = reduced
    if args.caches:
        summary["caches"] = measure_caches(args, workers)
    doc = make_document(machine, config, rows, summary)
    print(render_rows(rows, summary["ratios"]))
    for e in errors:
        print(f"error: {e['backend'] or 'scan'}: {e['path']}: {e['reason']}", file=sys.stderr)
    if args.json:
        out = dump(doc, expand_path(args.json, machine))
        print(f"wrote {out}", file=sys.stderr)
    return 0


def render_rows(rows: Sequence[BenchResult], ratios: dict[str, dict]) -> str:
    """A plain-text table of a decode run and its ratios (for the terminal)."""
    from decode.syntax import short_name

    lines = [
        f"{'codec':14s} {'backend':22s} {'workers':>7s} {'img/s':>8s} {'MPix/s':>8s} {'spread':>7s} "
        f"{'peak MB':>8s} exact"
    ]
    for r in rows:
        name = f"{r.backend}{' (baseline)' if r.is_baseline else ''}"
        ips = f"{r.images_per_s:8.3f}" if r.images_per_s is not None else f"{'-':>8s}"
        mps = f"{r.mpix_per_s:8.1f}" if r.mpix_per_s is not None else f"{'-':>8s}"
        spr = f"{r.spread:7.2f}" if r.spread is not None else f"{'-':>7s}"
        mem = f"{r.peak_host_mb:8.0f}" if r.peak_host_mb is not None else f"{'-':>8s}"
        lines.append(
            f"{short_name(r.transfer_syntax or ''):14s} {name:22s} {r.workers:7d} {ips} {mps} {spr} {mem} {r.exact}"
        )
    for ts, s in ratios.items():
        lines.append(
            f"{short_name(ts)}: default (auto, {s['default_workers']} workers) = "
            f"{s['default_vs_pydicom']}x pydicom; per core auto = {s['per_core_vs_pydicom']}x pydicom, "
            f"{s['per_core_vs_fastest_single']}x the fastest single library ({s['fastest_single']})"
        )
    return "\n".join(lines)
