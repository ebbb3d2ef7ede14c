"""``rsna-mammo bench train`` / ``bench infer``: model images/s, loader-fed vs in memory.

The same timm backbone (``pretrained=False``, one input channel, one logit) runs the
same number of steps twice: on one batch already on the device (``backend="memory"``:
the model's own ceiling) and on batches from :class:`~dali_pipelines.loader.DicomLoader`
(``backend="loader"``).
The ratio loader / memory is the share of the model's speed the loader delivers.

Timing: on a GPU, CUDA events recorded on the current stream around each window of
``--steps`` steps (synchronised on the end event); on the CPU (synchronous),
``time.perf_counter``. ``--repeats`` windows follow ``--warmup`` untimed steps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Literal

from decode.errors import UsageError

from .measure import Timer
from .schema import BenchResult

log = logging.getLogger(__name__)

Mode = Literal["train", "infer"]
MODES = ("train", "infer")


def build_model(name: str, device: str):
    """A timm model with random weights, 1 input channel and 1 output logit, on ``device``."""
    import timm

    return timm.create_model(name, pretrained=False, in_chans=1, num_classes=1).to(device)


def make_step(model, mode: Mode, device: str, amp: bool) -> Callable:
    """``step(images [B,1,H,W], labels [B]) -> None`` for training (AdamW, BCE) or inference."""
    import torch

    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    autocast = (lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)) if amp else None
    if mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            if autocast:
                with autocast():
                    loss = loss_fn(model(x).float().squeeze(1), y)
            else:
                loss = loss_fn(model(x).squeeze(1), y)
            loss.backward()
            opt.step()

        return step
    model.eval()

    def infer(x, _y):
        with torch.inference_mode():
            if autocast:
                with autocast():
                    model(x).sigmoid()
            else:
                model(x).sigmoid()

    return infer


def bench_memory(
    step, *, device: str, batch_size: int, size: tuple[int, int], steps: int, warmup: int, repeats: int
) -> list[float]:
    """Seconds per window of ``steps`` steps on one batch already on ``device``."""
    import torch

    x = torch.rand((batch_size, 1, *size), device=device)
    y = (torch.arange(batch_size, device=device) % 2).float()
    for _ in range(warmup):
        step(x, y)
    timer = Timer(device)
    for _ in range(repeats):
        with timer:
            for _ in range(steps):
                step(x, y)
    return timer.windows


def bench_loader(step, loader, *, device: str, steps: int, warmup: int, repeats: int) -> tuple[list[float], int]:
    """Seconds per window of ``steps`` loader batches (one loader pass covers warm-up and windows)."""
    import torch

    it: Iterator[dict] = iter(loader)

    def next_batch():
        while True:
            b = next(it)
            if b["image"] is not None and b["image"].shape[0]:
                return b

    def run_step():
        b = next_batch()
        x = b["image"].to(device, non_blocking=True)
        y = b["label"].to(device) if b["label"] is not None else torch.zeros(x.shape[0], device=device)
        step(x, y)
        return int(x.shape[0])

    for _ in range(warmup):
        run_step()
    timer = Timer(device)
    images = 0
    for _ in range(repeats):
        with timer:
            images = sum(run_step() for _ in range(steps))
    return timer.windows, images


def add_arguments(p: argparse.ArgumentParser, mode: str = "train") -> None:
    p.add_argument("--model", default="resnet18", help="timm model name, random weights (default: resnet18)")
    p.add_argument("--size", default="512x256", metavar="HxW", help="model input size (default: 512x256)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    p.add_argument("--steps", type=int, default=5, help="steps per timed window (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed windows (default: 3)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--workers", type=int, default=0, help="loader worker processes (default: all cores)")
    p.add_argument("--backend", default="auto", help="loader decode backend (default: auto)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "dali", "nvimgcodec", "cpu"],
        help="loader engine (default: auto)",
    )
    p.add_argument("--data", metavar="DIR", help="DICOM folder for the loader (default: synthetic files)")
    p.add_argument(
        "--data-size",
        default="3328x2560",
        metavar="HxW",
        help="synthetic frame size without --data (default: 3328x2560)",
    )
    p.add_argument("--files", type=int, default=6, help="synthetic files per codec (default: 6)")
    p.add_argument("--cache", metavar="DIR", help="synthetic file cache (default: ~/.cache/rsna-mammo/bench)")
    p.add_argument("--no-loader", action="store_true", help="only the in-memory figure")
    if mode == "infer":
        p.add_argument(
            "--e2e",
            action="store_true",
            help="raw DICOM -> submission end to end and per stage, for eager, compiled and ONNX (overlap efficiency)",
        )
        p.add_argument("--variants", default="eager,compiled,onnx", help="--e2e: model variants (default: all three)")
        p.add_argument(
            "--compile",
            default="default",
            choices=["default", "reduce-overhead", "max-autotune"],
            help="--e2e: torch.compile mode of the compiled variant (default: default)",
        )
        p.add_argument("--ckpt", metavar="FILE", help="--e2e: a checkpoint to use (default: random weights of --model)")
    p.add_argument("--json", metavar="FILE", help="write the results; {machine} and {date} are filled in")


def run(args: argparse.Namespace, mode: str = "train") -> int:
    import torch

    if mode == "infer" and getattr(args, "e2e", False):
        from .e2e_bench import run_e2e

        return run_e2e(args)

    from dali_pipelines.devices import resolve_device
    from dali_pipelines.loader import DicomLoader
    from decode.chain import parse_size
    from decode.parallel import default_workers

    from .machine import expand_path, machine_record
    from .measure import PeakHostMemory, gpu_peak_mb, reset_gpu_peak, summarize
    from .schema import dump, make_document, options_of
    from .synthdata import bench_files

    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    if min(args.batch_size, args.steps, args.repeats) < 1 or args.warmup < 0:
        raise UsageError("--batch-size, --steps and --repeats must be >= 1, --warmup >= 0")
    size = parse_size(args.size)
    device = resolve_device(args.device)
    workers = args.workers or default_workers()
    model = build_model(args.model, device)
    params = sum(p.numel() for p in model.parameters())
    step = make_step(model, mode, device, args.amp)
    rows: list[BenchResult] = []

    def row(backend: str, seconds: list[float], images: int, workers_: int, peak: float | None) -> BenchResult:
        stats = summarize(seconds, images, images * size[0] * size[1])
        return BenchResult(
            stage=mode,
            backend=backend,
            device=device,
            transfer_syntax=None,
            height=size[0],
            width=size[1],
            images=images,
            workers=workers_,
            batch_size=args.batch_size,
            peak_host_mb=peak,
            peak_gpu_mb=gpu_peak_mb() if device == "cuda" else None,
            exact=None,
            **stats,
        )

    reset_gpu_peak()
    with PeakHostMemory() as mem:
        secs = bench_memory(
            step,
            device=device,
            batch_size=args.batch_size,
            size=size,
            steps=args.steps,
            warmup=args.warmup,
            repeats=args.repeats,
        )
    rows.append(row("memory", secs, args.steps * args.batch_size, 1, mem.peak_mb))
    files: list[str] = []
    engine = None
    if not args.no_loader:
        files = bench_files(args.data, cache=args.cache, size=parse_size(args.data_size), files=args.files)
        need = (args.warmup + args.steps * args.repeats + 1) * args.batch_size
        sampler = [i % len(files) for i in range(need)]
        labels = [float(i % 2) for i in range(len(files))]
        loader = DicomLoader(
            files,
            labels,
            batch_size=args.batch_size,
            size=size,
            device=device,
            workers=workers,
            sampler=sampler,
            backend=args.backend,
            drop_last=True,
            engine=args.engine,
        )
        engine = loader.engine_name
        reset_gpu_peak()
        with PeakHostMemory() as mem:
            secs, images = bench_loader(
                step, loader, device=device, steps=args.steps, warmup=args.warmup, repeats=args.repeats
            )
        rows.append(row("loader", secs, images, workers, mem.peak_mb))
        loader.close()
    ratio = None
    if len(rows) == 2 and rows[0].images_per_s and rows[1].images_per_s:
        ratio = round(rows[1].images_per_s / rows[0].images_per_s, 4)
    machine = machine_record(with_torch=True)
    config = {
        "command": f"bench {mode}",
        "options": options_of(args),
        "model": args.model,
        "params": params,
        "device": device,
        "amp": args.amp,
        "engine": engine,
        "torch_threads": torch.get_num_threads(),
        "loader_files": len(files),
        "timing": "CUDA events per window of steps" if device == "cuda" else "perf_counter per window",
    }
    summary = {"loader_vs_memory": ratio, "model": args.model}
    doc = make_document(machine, config, rows, summary)
    for r in rows:
        print(
            f"{mode} {args.model} {size[0]}x{size[1]} batch {args.batch_size} on {device}, data from {r.backend}: "
            f"{r.images_per_s} images/s (spread {r.spread})"
        )
    print(f"loader / memory = {ratio}")
    if args.json:
        print(f"wrote {dump(doc, expand_path(args.json, machine))}", file=sys.stderr)
    return 0
