"""The figures of ``benchmarks/gpu_check.py``, each measured side by side in the same run.

GPU figures (per codec, 12-bit first, then 14-bit while the budget lasts):

* ``decode`` / ``nvimgcodec``: batched nvImageCodec decode of codestreams in memory at
  batch 1, 8 and 32 (``batch_size`` says which);
* ``loader`` / ``nvimgcodec``: :class:`~dali_pipelines.loader.DicomLoader` with the
  nvImageCodec engine end to end — files → ``[B, 1, H, W]`` torch tensors at the chain size;
* ``baseline`` / ``pydicom+nvimgcodec``: the peer a GPU user would pick today — pydicom's
  ``pixel_array`` with nvImageCodec's own pydicom decoder plugin, one file at a time;
* full tier: ``decode`` / ``dali`` and ``loader`` / ``dali`` the same way;
* ``infer`` / ``memory``: a timm model's inference images/s at the chain size in bf16
  (channels_last) on a batch already on the device, so the decode-vs-model balance shows;
* ``e2e`` / ``eager`` and ``compiled``: ``predict`` end to end on the 12-bit files with the
  nvImageCodec engine (:func:`run_e2e_figure`).

CPU baselines (last): the project's default (``auto`` over all cores), ``auto`` on one
core, the serial pydicom and dicomsdl loops, and OpenJPEG's reduced-resolution decode of
the 12-bit JPEG 2000 files at full, 1/2 and 1/4 over all cores (``openjpeg@<scale>``).
GPU rows are timed with CUDA events around whole passes; peak device memory is
``cudaMemGetInfo`` above the level before.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from benchmarks.measure import Timer

from .gpu_check_steps import stream_ptr

log = logging.getLogger("gpu_check")

DECODE_BATCHES = (1, 8, 32)
MODEL_BATCH = 8


class GpuMemory:
    """Peak device memory in use (``cudaMemGetInfo``) above the level at creation; None on the CPU."""

    def __init__(self, device: str):
        self._info = None
        if device == "cuda":
            import cupy

            self._info = cupy.cuda.runtime.memGetInfo
            free, total = self._info()
            self.base = self.peak = total - free

    def sample(self) -> None:
        if self._info is not None:
            free, total = self._info()
            self.peak = max(self.peak, total - free)

    @property
    def mb(self) -> float | None:
        return None if self._info is None else round((self.peak - self.base) / 2**20, 1)


def row(stage, backend, device, ts, images, secs, batch_size, workers, peak_gpu_mb, exact, hw):
    from benchmarks.measure import summarize
    from benchmarks.schema import BenchResult

    stats = (
        summarize(secs, images, images * hw[0] * hw[1])
        if exact is not False
        else {"images_per_s": None, "mpix_per_s": None, "spread": None}
    )
    return BenchResult(
        stage=stage,
        backend=backend,
        device=device,
        transfer_syntax=ts,
        height=hw[0],
        width=hw[1],
        images=images,
        workers=workers,
        batch_size=batch_size,
        peak_host_mb=None,
        peak_gpu_mb=peak_gpu_mb,
        exact=exact,
        **stats,
    )


# --- timed passes -------------------------------------------------------------------------


def bench_nvimgcodec_decode(decoder, streams, syntaxes, batch: int, repeats: int, device: str) -> tuple:
    """Seconds per pass over ``streams`` in batches of ``batch`` (one decode call each), peak MiB."""
    mem = GpuMemory(device)
    secs = []
    for r in range(repeats + 1):  # first pass: warm-up
        with Timer(device) as t:
            for i in range(0, len(streams), batch):
                out = decoder.decode_exact(
                    streams[i : i + batch], syntaxes[i : i + batch], cuda_stream=stream_ptr(device)
                )
                mem.sample()
                del out
        if r:
            secs.append(t.seconds)
    return secs, mem.mb


def bench_loader(loader, rows: Sequence[int], repeats: int, device: str) -> tuple:
    """A loader end to end over ``rows``: seconds per pass, peak MiB, images per pass."""
    mem = GpuMemory(device)
    loader.sampler = list(rows)
    secs, images = [], 0
    for r in range(repeats + 1):
        n = 0
        with Timer(device) as t:
            for batch in loader:
                n += 0 if batch["image"] is None else int(batch["image"].shape[0])
                mem.sample()
        if r:
            secs.append(t.seconds)
            images = n
    return secs, mem.mb, images


def bench_dali_decode(runner, rows: Sequence[int], repeats: int, device: str) -> tuple:
    """DALI decode alone: seconds per epoch over ``rows``, peak MiB."""
    mem = GpuMemory(device)
    secs = []
    for r in range(repeats + 1):
        with Timer(device) as t:
            for _batch in runner.epoch(rows):
                mem.sample()
        if r:
            secs.append(t.seconds)
    return secs, mem.mb


def bench_pydicom_plugin(paths: Sequence[str], refs, repeats: int) -> tuple[list[float], bool]:
    """pydicom ``pixel_array`` with nvImageCodec's pydicom plugin registered, one file at a time.

    Returns seconds per pass (wall clock: the plugin copies every frame back to the host, so
    the work is done when ``pixel_array`` returns) and whether every frame equals pydicom's.
    """
    import numpy as np
    import pydicom
    from nvidia.nvimgcodec.tools.dicom import pydicom_plugin

    if not pydicom_plugin.register():
        raise RuntimeError("nvImageCodec's pydicom plugin did not register")
    try:
        exact = all(np.array_equal(pydicom.dcmread(p).pixel_array, refs[p]) for p in paths)  # warm-up + check
        secs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for p in paths:
                _ = pydicom.dcmread(p).pixel_array
            secs.append(time.perf_counter() - t0)
    finally:
        pydicom_plugin.unregister()
    return secs, exact


def bench_model(name: str, *, device: str, size, batch: int, repeats: int) -> tuple[list[float], float | None]:
    """A timm model's inference (bf16 on CUDA, channels_last) on one batch on the device."""
    import torch

    from benchmarks.model_bench import bench_memory, build_model, make_step

    mem = GpuMemory(device)
    model = build_model(name, device).to(memory_format=torch.channels_last)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    step = make_step(model, "infer", device, amp=device == "cuda")
    secs = bench_memory(step, device=device, batch_size=batch, size=size, steps=5, warmup=3, repeats=repeats)
    mem.sample()
    del model
    return secs, mem.mb


# --- phases -------------------------------------------------------------------------------


def run_gpu_figures(ctx: dict, exact_by: dict, rows: list, row_bits: list, summary: dict, save) -> None:
    """Every GPU figure of the tier, group by group while the budget lasts (see the module docstring)."""
    from dali_pipelines.loader import DicomLoader
    from decode.backends.nvimgcodec_backend import NvImageCodecDecoder
    from decode.dicom import read_dicom
    from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES
    from decode.syntax import short_name

    args, device, budget = ctx["args"], ctx["device"], ctx["budget"]
    size, chain_size, workers = ctx["size"], ctx["chain_size"], ctx["workers"]
    index = {p: i for i, p in enumerate(ctx["paths"])}
    decoder = NvImageCodecDecoder(device=device)
    decoder.calibrate(GPU_SYNTAXES if device == "cuda" else CPU_SYNTAXES)
    engines = ["nvimgcodec"] if args.tier == "quick" else ["nvimgcodec", "dali"]
    loaders = {
        e: DicomLoader(ctx["paths"], batch_size=args.batch, size=chain_size, device=device, engine=e, workers=workers)
        for e in engines
    }
    dali = None
    if "dali" in engines:
        from .gpu_check_steps import dali_runner

        dali = dali_runner(ctx["paths"], device=device, workers=workers, batch=args.batch).start()
    try:
        groups = sorted(ctx["groups"].items(), key=lambda kv: kv[0][1])  # 12-bit groups first
        for (ts, bits), ps in groups:
            if not budget.allow(f"{device} figures {short_name(ts)} {bits}-bit", 20):
                continue
            first = len(rows)
            rows_idx = [index[p] for p in ps] * args.repeat_files
            streams = [read_dicom(p).codestream() for p in ps]
            if ts in decoder.modes:
                reps = -(-max(DECODE_BATCHES) // len(streams))
                many = (streams * reps)[: max(max(DECODE_BATCHES), len(streams))]
                for b in DECODE_BATCHES:
                    secs, mb = bench_nvimgcodec_decode(decoder, many, [ts] * len(many), b, args.repeats, device)
                    rows.append(
                        row(
                            "decode",
                            "nvimgcodec",
                            device,
                            ts,
                            len(many),
                            secs,
                            b,
                            1,
                            mb,
                            exact_by.get(("nvimgcodec", ts), False),
                            size,
                        )
                    )
            for e, loader in loaders.items():
                secs, mb, n = bench_loader(loader, rows_idx, args.repeats, device)
                rows.append(
                    row(
                        "loader",
                        e,
                        device,
                        ts,
                        n or len(rows_idx),
                        secs,
                        args.batch,
                        workers,
                        mb,
                        exact_by.get((f"{e}-loader", ts), False),
                        size,
                    )
                )
            if dali is not None:
                secs, mb = bench_dali_decode(dali, rows_idx, args.repeats, device)
                rows.append(
                    row(
                        "decode",
                        "dali",
                        device,
                        ts,
                        len(rows_idx),
                        secs,
                        args.batch,
                        workers,
                        mb,
                        exact_by.get(("dali", ts), False),
                        size,
                    )
                )
            if bits == 12 and device == "cuda":  # the plugin's decoder is a GPU one
                try:
                    secs, exact = bench_pydicom_plugin(ps, ctx["refs"], args.repeats)
                    rows.append(
                        row("baseline", "pydicom+nvimgcodec", device, ts, len(ps), secs, 1, 1, None, exact, size)
                    )
                except Exception as exc:
                    summary.setdefault("errors", {})[f"pydicom_plugin_{short_name(ts)}"] = (
                        f"{type(exc).__name__}: {exc}"
                    )
            row_bits.extend([bits] * (len(rows) - first))
            save()
        if budget.allow("model inference", 25):
            secs, mb = bench_model(args.model, device=device, size=chain_size, batch=MODEL_BATCH, repeats=args.repeats)
            rows.append(
                row("infer", "memory", device, None, 5 * MODEL_BATCH, secs, MODEL_BATCH, 1, mb, None, chain_size)
            )
            row_bits.append(0)
            summary["model"] = {
                "name": args.model,
                "size": list(chain_size),
                "dtype": "bf16" if device == "cuda" else "float32",
                "channels_last": True,
            }
            save()
        run_e2e_figure(ctx, rows, row_bits, summary, save)
    finally:
        for loader in loaders.values():
            loader.close()
        if dali is not None:
            dali.close()


def run_e2e_figure(ctx: dict, rows: list, row_bits: list, summary: dict, save) -> None:
    """``predict`` end to end on the 12-bit files (both codecs): nvImageCodec engine, eager then compiled.

    Rows ``e2e`` / ``eager`` and ``e2e`` / ``compiled`` (``--e2e-compile`` mode; only while the
    budget has room for the compilation) with images/s over the scoring loop of a second run
    (the first one warms up and compiles); ``summary.e2e`` adds the whole call's seconds.
    """
    import shutil
    import tempfile

    from benchmarks.e2e_bench import bench_predict, random_checkpoint, rsna_folder
    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1

    args, device, budget, size = ctx["args"], ctx["device"], ctx["budget"], ctx["size"]
    if not budget.allow("e2e eager", 25):
        return
    files = ctx["groups"][(JPEG2000_LOSSLESS, 12)] + ctx["groups"][(JPEG_LOSSLESS_SV1, 12)]
    tmp = tempfile.mkdtemp(prefix="rsna-gpu-e2e-")
    try:
        folder = rsna_folder(files, tmp)
        ckpt = random_checkpoint(f"{tmp}/model.pt", args.model, ctx["chain_size"], args.batch)
        modes = [("eager", None)]
        if args.e2e_compile != "none":
            modes.append(("compiled", args.e2e_compile))
        for variant, mode in modes:
            if variant == "compiled" and not budget.allow("e2e compiled", 90):
                continue
            mem = GpuMemory(device)
            loop, whole, n, s = bench_predict(
                folder,
                ckpt,
                device=device,
                engine="nvimgcodec",
                batch=args.batch,
                workers=ctx["workers"],
                compile_mode=mode,
                repeats=1,
            )
            mem.sample()
            rows.append(row("e2e", variant, device, None, n, loop, args.batch, ctx["workers"], mem.mb, None, size))
            row_bits.append(12)
            summary.setdefault("e2e", {})[variant] = {
                "images_per_s": rows[-1].images_per_s,
                "whole_call_s": round(min(whole), 2),
                "engine": s["engine"],
                "compile": mode,
                "model": args.model,
            }
            save()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_cpu_baselines(ctx: dict, rows: list, row_bits: list, save) -> None:
    """The CPU on this machine, in a fresh process (``benchmarks.gpu_check_cpu``): no CUDA there, so
    its worker pools fork as ``rsna-mammo decode``'s do, and nothing of the GPU phases lingers.

    Rows: pydicom / dicomsdl serial baselines and ``auto`` over all cores and on one core
    (12-bit files), then OpenJPEG's reduced-resolution decode over all cores (``openjpeg@<scale>``).
    """
    import json
    import subprocess
    import sys
    import tempfile

    from benchmarks.schema import BenchResult
    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1

    groups, cores, budget = ctx["groups"], ctx["cores"], ctx["budget"]
    per = max(2, min(len(groups[(JPEG2000_LOSSLESS, 12)]), cores // 4 or 2))
    j2k, jll = groups[(JPEG2000_LOSSLESS, 12)], groups[(JPEG_LOSSLESS_SV1, 12)]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check_cpu",
        "--out",
        out,
        "--cores",
        str(cores),
        "--size",
        f"{ctx['size'][0]}x{ctx['size'][1]}",
        "--budget",
        str(max(10.0, budget.left() - 5)),
        "--baseline",
        *j2k[:per],
        *jll[:per],
        "--reduced",
        *j2k,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(20.0, budget.left()))
    if proc.returncode != 0:
        raise RuntimeError(f"CPU phase failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    with open(out, encoding="utf-8") as f:
        doc = json.load(f)
    os.unlink(out)
    for r in doc["rows"]:
        rows.append(BenchResult.from_dict(r))
        row_bits.append(12)
    ctx["summary"].update(doc.get("summary", {}))
    save()
