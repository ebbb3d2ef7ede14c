"""``rsna-mammo bench pipeline``: each stage of the loader timed on its own, and end to end.

Stages, in the loader's order, each measured over the same files (per transfer
syntax) with its input prepared by the warm-up pass, so the slowest one shows:

=========  ============================================================================
read       ``read_dicom`` (pydicom header parse, DicomMeta) + codestream extraction
decode     the backend's decode of the already-read file (``decode_pixels``)
voi        modality LUT → VOI window/LUT → [0, 1] float32 (``apply_voi``)
crop       breast box (Otsu on a thumbnail) + crop + flip (``breast_bbox``, ``crop``)
resize     antialiased aspect-keeping resize + pad to ``--size`` (``resize_pad``)
collate    stack a batch into a ``[B, 1, H, W]`` tensor, as the loader's batches are
h2d        host → device copy of a pinned batch (``--device cuda``; CUDA events)
loader     ``DicomLoader`` end to end with ``--workers`` processes
=========  ============================================================================

For JPEG 2000 / HTJ2K files two reduced-resolution rows follow (``--no-reduced`` drops
them): ``decode`` with backend ``openjpeg@auto`` (what ``--decode-scale auto`` decodes:
the 1/8 thumbnail for the box when needed, then the chosen resolution level) and
``loader`` with backend ``<backend>@auto`` (``DicomLoader(decode_scale="auto")``). The
plain ``loader`` row decodes at full resolution.

Rows of the first four stages report the frame size (height × width of the files);
resize, collate, h2d and loader report the output size. The stages up to collate run on
the CPU (the registry backends and numpy); the ``loader`` rows run the loader's engine
(``--engine``, ``--device``), so on a GPU they time the GPU engine end to end.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from decode.errors import UsageError

from .schema import BenchResult

log = logging.getLogger(__name__)


def _timed_stage(fn: Callable[[object], object], inputs: Sequence, repeats: int) -> tuple[list[float], float]:
    """Run ``fn`` over ``inputs`` ``repeats`` times (after a warm-up pass); seconds per pass and peak MiB."""
    from .measure import PeakHostMemory

    for x in inputs:
        fn(x)
    seconds = []
    with PeakHostMemory() as mem:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for x in inputs:
                fn(x)
            seconds.append(time.perf_counter() - t0)
    return seconds, mem.peak_mb or 0.0


def _row(
    stage: str,
    *,
    backend: str,
    device: str,
    ts: str | None,
    hw: tuple[int, int],
    images: int,
    seconds: list[float],
    workers: int = 1,
    batch: int = 1,
    peak_mb: float | None = None,
    peak_gpu: float | None = None,
) -> BenchResult:
    from .measure import summarize

    h, w = hw
    stats = summarize(seconds, images, images * h * w)
    return BenchResult(
        stage=stage,
        backend=backend,
        device=device,
        transfer_syntax=ts,
        height=h,
        width=w,
        images=images,
        workers=workers,
        batch_size=batch,
        peak_host_mb=peak_mb,
        peak_gpu_mb=peak_gpu,
        exact=None,
        **stats,
    )


def bench_stages(
    paths: Sequence[str],
    ts: str | None,
    *,
    size: tuple[int, int],
    backend: str,
    batch_size: int,
    workers: int,
    device: str,
    repeats: int,
    flip: bool = True,
    engine: str = "auto",
    reduced: bool = True,
) -> list[BenchResult]:
    """Time every stage on ``paths`` (files of one transfer syntax) and the loader (``engine``) end to end
    (plus, for JPEG 2000 with ``reduced``, the ``--decode-scale auto`` decode and CPU-engine loader rows)."""
    from collections import Counter

    from decode.crop import breast_bbox, crop, flip_to_left
    from decode.decoding import decode_pixels
    from decode.dicom import read_dicom
    from decode.resize import resize_pad
    from decode.voi import apply_voi

    def read(p):
        dfile = read_dicom(p)
        if dfile.meta.transfer_syntax not in _NATIVE:
            dfile.codestream()
        return dfile

    dfiles = [read(p) for p in paths]
    frame = Counter(d.meta.shape for d in dfiles).most_common(1)[0][0]
    rows: list[BenchResult] = []

    def add(stage, fn, inputs, hw, **kw):
        secs, peak = _timed_stage(fn, inputs, repeats)
        rows.append(_row(stage, device="cpu", ts=ts, hw=hw, images=len(inputs), seconds=secs, peak_mb=peak, **kw))

    add("read", read, list(paths), frame, backend=backend)
    decoded = [decode_pixels(d, backend) for d in dfiles]
    add("decode", lambda d: decode_pixels(d, backend), dfiles, frame, backend=decoded[0].backend)
    voi_in = [(d.pixels, d.meta) for d in decoded]
    add("voi", lambda x: apply_voi(x[0], x[1]), voi_in, frame, backend="numpy")
    imgs = [apply_voi(r, m) for r, m in voi_in]

    def crop_fn(img):
        out = crop(img, breast_bbox(img))
        return flip_to_left(out)[0] if flip else out

    add("crop", crop_fn, imgs, frame, backend="numpy")
    crops = [crop_fn(i) for i in imgs]
    add("resize", lambda img: resize_pad(img, size), crops, size, backend="numpy")
    outs = [np.ascontiguousarray(resize_pad(c, size), dtype=np.float32) for c in crops]
    rows += _collate_rows(outs, ts=ts, size=size, batch_size=batch_size, device=device, repeats=repeats)
    rows.append(
        _loader_row(
            paths,
            ts=ts,
            size=size,
            backend=backend,
            batch_size=batch_size,
            workers=workers,
            device=device,
            repeats=repeats,
            flip=flip,
            engine=engine,
            decode_scale="full",
        )
    )
    if reduced and _reduced_applies(ts):
        from decode.openjpeg import J2kCodestream, decode_reduced
        from decode.scale import auto_reduction

        def decode_auto(d):
            with J2kCodestream(d.codestream(), d.path) as j:
                r = auto_reduction(d, j, size)
                return decode_reduced(d, r, stream=j) if r else decode_pixels(d, backend).pixels

        add("decode", decode_auto, dfiles, frame, backend="openjpeg@auto")
        row = _loader_row(
            paths,
            ts=ts,
            size=size,
            backend=backend,
            batch_size=batch_size,
            workers=workers,
            device=device,
            repeats=repeats,
            flip=flip,
            decode_scale="auto",
            engine="cpu",  # the GPU engines decode at full resolution
        )
        row.backend = f"{backend}@{row.backend}"
        rows.append(row)
    return rows


def _reduced_applies(ts: str | None) -> bool:
    from decode.openjpeg import handles, unavailable_reason

    if not ts or not handles(ts):
        return False
    why = unavailable_reason()
    if why:
        log.warning("reduced-resolution rows left out: %s", why)
    return why is None


_NATIVE = frozenset({"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"})


def collate(images: Sequence[np.ndarray]):
    """Stack ``(H, W)`` float32 images into a ``[B, 1, H, W]`` CPU tensor, as the loader's batches are."""
    import torch

    return torch.from_numpy(np.stack(images)[:, None])


def _collate_rows(outs: list[np.ndarray], *, ts, size, batch_size: int, device: str, repeats: int) -> list[BenchResult]:
    """Collation on the host; on a GPU also the pinned host→device copy (timed with CUDA events)."""
    from .measure import gpu_peak_mb, reset_gpu_peak, time_cuda

    batches = [outs[i : i + batch_size] for i in range(0, len(outs), batch_size)]
    n = len(outs)
    seconds, peak = _timed_stage(collate, batches, repeats)
    rows = [
        _row(
            "collate",
            backend="torch",
            device="cpu",
            ts=ts,
            hw=size,
            images=n,
            seconds=seconds,
            batch=batch_size,
            peak_mb=peak,
        )
    ]
    if device == "cuda":
        import torch

        pinned = [collate(b).pin_memory() for b in batches]
        reset_gpu_peak()

        def copy_all():
            for t in pinned:
                t.to("cuda", non_blocking=True)

        secs = time_cuda(copy_all, repeats=repeats, warmup=1)
        rows.append(
            _row(
                "h2d",
                backend="torch",
                device="cuda",
                ts=ts,
                hw=size,
                images=n,
                seconds=secs,
                batch=batch_size,
                peak_gpu=gpu_peak_mb(),
            )
        )
        del pinned
        torch.cuda.empty_cache()
    return rows


def _loader_row(
    paths, *, ts, size, backend, batch_size, workers, device, repeats, flip, decode_scale="full", engine="auto"
) -> BenchResult:
    """``DicomLoader`` end to end: every file once per repeat, after one warm-up epoch.

    The row's backend is the scale the loader really decoded at when ``decode_scale`` is not
    ``full`` (the caller labels it), else the engine for a GPU engine, else the CPU decode backend.
    """
    from dali_pipelines.loader import DicomLoader

    from .measure import PeakHostMemory, gpu_peak_mb, reset_gpu_peak

    loader = DicomLoader(
        list(paths),
        batch_size=batch_size,
        size=size,
        device=device,
        workers=workers,
        backend=backend,
        flip=flip,
        engine=engine,
        decode_scale=decode_scale,
    )
    cuda = loader.device == "cuda"
    if cuda:
        import torch

        reset_gpu_peak()

    def epoch() -> int:
        count = 0
        for batch in loader:
            if batch["image"] is not None:
                count += int(batch["image"].shape[0])
        return count

    epoch()  # warm-up (worker start-up is timed in every repeat: the loader pays it each epoch)
    seconds, images = [], 0
    with PeakHostMemory() as mem:
        for _ in range(repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                images = epoch()
                end.record()
                end.synchronize()
                seconds.append(start.elapsed_time(end) / 1000.0)
            else:
                t0 = time.perf_counter()
                images = epoch()
                seconds.append(time.perf_counter() - t0)
    loader.close()
    if loader.failures:
        log.warning("loader: %d file(s) failed, e.g. %s", len(loader.failures), loader.failures[0])
    return _row(
        "loader",
        backend=(
            loader.effective_decode_scale()
            if decode_scale != "full"
            else (backend if loader.engine_name == "cpu" else loader.engine_name)
        ),
        device=loader.device,
        ts=ts,
        hw=tuple(size),
        images=images,
        seconds=seconds,
        workers=max(1, workers),
        batch=batch_size,
        peak_mb=mem.peak_mb,
        peak_gpu=gpu_peak_mb() if cuda else None,
    )


def pipeline_summary(rows: Sequence[BenchResult]) -> dict[str, dict]:
    """Per transfer syntax: the slowest stage, the serial sum of stages and the loader's figure
    (full resolution), and the ``--decode-scale auto`` loader beside it where measured."""
    out: dict[str, dict] = {}
    for ts in sorted({r.transfer_syntax or "-" for r in rows}):
        rs = [r for r in rows if (r.transfer_syntax or "-") == ts and r.images_per_s]
        reduced = [r for r in rs if "@" in r.backend]
        rs = [r for r in rs if "@" not in r.backend]
        stages = [r for r in rs if r.stage not in ("loader", "h2d")]
        loader = next((r for r in rs if r.stage == "loader"), None)
        auto = next((r for r in reduced if r.stage == "loader"), None)
        slowest = min(stages, key=lambda r: r.images_per_s, default=None)
        serial = 1.0 / sum(1.0 / r.images_per_s for r in stages) if stages else None
        out[ts] = {
            "bottleneck": slowest.stage if slowest else None,
            "bottleneck_images_per_s": slowest.images_per_s if slowest else None,
            "serial_stages_images_per_s": round(serial, 4) if serial else None,
            "loader_images_per_s": loader.images_per_s if loader else None,
            "loader_workers": loader.workers if loader else None,
        }
        if auto is not None:
            out[ts]["loader_decode_scale_auto_images_per_s"] = auto.images_per_s
            out[ts]["loader_auto_vs_full"] = (
                round(auto.images_per_s / loader.images_per_s, 3) if loader and loader.images_per_s else None
            )
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR", help="folder searched for *.dcm (default: synthetic full-size files)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="loader device (default: auto)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "dali", "nvimgcodec", "cpu"],
        help="the loader row's engine (default: auto)",
    )
    p.add_argument("--size", default="1024x512", metavar="HxW", help="output size (default: 1024x512)")
    p.add_argument("--backend", default="auto", help="decode backend (default: auto)")
    p.add_argument("--batch-size", type=int, default=4, help="loader batch size (default: 4)")
    p.add_argument("--workers", type=int, default=0, help="loader worker processes (default: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per stage (default: 3)")
    p.add_argument("--limit", type=int, default=4, help="files per transfer syntax (default: 4)")
    p.add_argument(
        "--data-size",
        default="3328x2560",
        metavar="HxW",
        help="synthetic frame size without --data (default: 3328x2560)",
    )
    p.add_argument("--cache", metavar="DIR", help="synthetic file cache (default: ~/.cache/rsna-mammo/bench)")
    p.add_argument("--json", metavar="FILE", help="write the results; {machine} and {date} are filled in")
    p.add_argument(
        "--no-reduced",
        action="store_true",
        help="leave out the reduced-resolution rows (--decode-scale auto decode and loader) for JPEG 2000",
    )


def run(args: argparse.Namespace) -> int:
    from dali_pipelines.devices import resolve_device
    from decode.chain import parse_size
    from decode.parallel import default_workers

    from .decode_bench import scan
    from .machine import expand_path, machine_record
    from .schema import dump, make_document, options_of
    from .synthdata import bench_files

    if args.repeats < 1 or args.batch_size < 1 or args.limit < 1:
        raise UsageError("--repeats, --batch-size and --limit must be >= 1")
    size = parse_size(args.size)
    device = resolve_device(args.device)
    workers = args.workers or default_workers()
    paths = bench_files(args.data, cache=args.cache, size=parse_size(args.data_size), files=args.limit)
    groups, errors = scan(paths, args.limit)
    from tqdm import tqdm

    rows: list[BenchResult] = []
    for ts in tqdm(sorted(groups), desc="pipeline", unit="codec", disable=None, file=sys.stderr):
        rows += bench_stages(
            groups[ts].paths,
            ts,
            size=size,
            backend=args.backend,
            batch_size=args.batch_size,
            workers=workers,
            device=device,
            repeats=args.repeats,
            engine=args.engine,
            reduced=not args.no_reduced,
        )
    machine = machine_record(with_torch=True)
    from dali_pipelines.engines import resolve_engine

    config = {
        "command": "bench pipeline",
        "options": options_of(args),
        "device": device,
        "engine": resolve_engine(args.engine, device)[0],
        "workers": workers,
        "files": {ts: len(g.paths) for ts, g in groups.items()},
        "size": list(size),
        "timing": "perf_counter per full pass on the CPU; CUDA events for host→device and a cuda loader",
    }
    summary = {"stages": pipeline_summary(rows), "errors": errors}
    doc = make_document(machine, config, rows, summary)
    print(render(rows, summary["stages"]))
    if args.json:
        print(f"wrote {dump(doc, expand_path(args.json, machine))}", file=sys.stderr)
    return 0


def render(rows: Sequence[BenchResult], stages: dict[str, dict]) -> str:
    """A plain-text table for the terminal."""
    from decode.syntax import short_name

    lines = [
        f"{'codec':14s} {'stage':8s} {'device':6s} {'size':>11s} {'workers':>7s} {'batch':>5s} {'img/s':>9s} "
        f"{'spread':>6s}"
    ]
    for r in rows:
        ips = f"{r.images_per_s:9.2f}" if r.images_per_s is not None else f"{'-':>9s}"
        lines.append(
            f"{short_name(r.transfer_syntax or '-'):14s} {r.stage:8s} {r.device:6s} "
            f"{f'{r.height}x{r.width}':>11s} {r.workers:7d} {r.batch_size:5d} {ips} "
            f"{(r.spread or 0):6.2f}"
        )
    for ts, s in stages.items():
        lines.append(
            f"{short_name(ts)}: bottleneck {s['bottleneck']} ({s['bottleneck_images_per_s']} img/s); "
            f"stages in series {s['serial_stages_images_per_s']} img/s; loader with "
            f"{s['loader_workers']} workers {s['loader_images_per_s']} img/s"
            + (
                f"; --decode-scale auto {s['loader_decode_scale_auto_images_per_s']} img/s "
                f"({s['loader_auto_vs_full']}x)"
                if "loader_auto_vs_full" in s
                else ""
            )
        )
    return "\n".join(lines)
