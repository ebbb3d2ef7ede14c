"""``rsna-mammo bench infer --e2e``: raw DICOM → submission, end to end and stage by stage.

For each codec's files (synthetic full-size files, or ``--data``) laid out as an RSNA test
folder, it measures in one run:

* the loader's stages, each on its own: ``read`` (read + parse + codestream), ``decode``,
  ``voi`` / ``crop`` / ``resize`` (the chain; one core each, as ``bench pipeline``) and the
  ``loader`` end to end over all its workers (``--engine``);
* the model on a batch already in memory (stage ``infer``, backend ``memory-<variant>``);
* ``rsna-mammo predict`` end to end (stage ``e2e``, backend ``<variant>``): files in,
  submission out, images/s over the scoring loop (a warm-up run first, so compilation is
  not timed);

for the variants ``eager``, ``compiled`` (``torch.compile``, ``--compile`` mode) and ``onnx``
(exported and run by ONNX Runtime). ``summary.e2e[codec][variant]`` gives the end-to-end
rate, the slowest stage (the loader or the model) and the **overlap efficiency** = end-to-end
rate / slowest stage's rate (1.0: decode and model fully overlapped).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time

from decode.errors import UsageError

from .schema import BenchResult

log = logging.getLogger(__name__)

VARIANTS = ("eager", "compiled", "onnx")


def rsna_folder(paths: list[str], root: str) -> str:
    """``root/test.csv`` and ``root/test_images/<patient>/<image>.dcm`` (hard links, else copies) for ``paths``.

    Two images per breast, both breasts per patient (``prediction_id`` = patient_laterality).
    """
    import pandas as pd

    rows = []
    for k, src in enumerate(paths):
        pid, iid, lat = 10_000 + k // 4, 100_000 + k, "L" if (k // 2) % 2 == 0 else "R"
        dst = os.path.join(root, "test_images", str(pid), f"{iid}.dcm")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        rows.append(
            {
                "site_id": 1,
                "patient_id": pid,
                "image_id": iid,
                "laterality": lat,
                "view": "CC" if k % 2 == 0 else "MLO",
                "age": 60,
                "implant": 0,
                "machine_id": 49,
                "prediction_id": f"{pid}_{lat}",
            }
        )
    pd.DataFrame(rows).to_csv(os.path.join(root, "test.csv"), index=False)
    return root


def random_checkpoint(path: str, model: str, size: tuple[int, int], batch_size: int) -> str:
    """A checkpoint as ``rsna-mammo train`` writes it around a random-weight timm model (speed only)."""
    import torch

    from decode.chain import CHAIN_VERSION
    from training.checkpoint import CKPT_FORMAT
    from training.model import create_model

    net = create_model(model)
    torch.save(
        {
            "format": CKPT_FORMAT,
            "model_name": model,
            "img_size": list(size),
            "chain_version": CHAIN_VERSION,
            "decode_scale": "full",
            "prior": 0.02,
            "agg": "mean",
            "threshold": 0.5,
            "config": {"batch_size": batch_size, "amp": "auto", "channels_last": True, "agg": "mean"},
            "model": net.state_dict(),
        },
        path,
    )
    return path


def _row(stage, backend, device, ts, size, images, seconds, workers, batch, peak_gpu=None) -> BenchResult:
    from .measure import summarize

    stats = summarize(seconds, images, images * size[0] * size[1])
    return BenchResult(
        stage=stage,
        backend=backend,
        device=device,
        transfer_syntax=ts,
        height=size[0],
        width=size[1],
        images=images,
        workers=workers,
        batch_size=batch,
        peak_host_mb=None,
        peak_gpu_mb=peak_gpu,
        exact=None,
        **stats,
    )


def bench_model(predictor, *, device: str, batch: int, size, repeats: int, steps: int = 8) -> list[float]:
    """Seconds per window of ``steps`` calls on one batch already on the device (after 2 warm-up calls)."""
    import torch

    from .measure import Timer

    x = torch.rand((batch, 1, *size), device=device)
    for _ in range(2):
        predictor(x)
    timer = Timer(device)
    for _ in range(repeats):
        with timer:
            for _ in range(steps):
                predictor(x)
    return timer.windows


def bench_predict(
    folder: str,
    ckpt: str,
    *,
    device: str,
    engine: str,
    batch: int,
    workers: int,
    compile_mode: str | None,
    repeats: int,
) -> tuple[list[float], list[float], int, dict]:
    """``predict`` on ``folder`` (one warm-up run): scoring-loop seconds, whole-call seconds, images, summary."""
    from training.predict import predict

    loop, whole, summary = [], [], {}
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        summary = predict(
            data=folder,
            ckpt=ckpt,
            out=os.path.join(folder, f"sub{r}.csv"),
            device=device,
            engine=engine,
            batch_size=batch,
            workers=workers,
            compile_mode=compile_mode,
        )
        if r:
            loop.append(float(summary["seconds"]))
            whole.append(time.perf_counter() - t0)
    return loop, whole, int(summary["ok_images"]), summary


def run_e2e(args: argparse.Namespace) -> int:
    from dali_pipelines.devices import resolve_device
    from dali_pipelines.engines import resolve_engine
    from decode.chain import parse_size
    from decode.parallel import default_workers
    from training.inference_models import load_predictor

    from .decode_bench import scan
    from .machine import expand_path, machine_record
    from .pipeline_bench import bench_stages
    from .schema import dump, make_document, options_of
    from .synthdata import bench_files

    size = parse_size(args.size)
    device = resolve_device(args.device)
    workers = args.workers or default_workers()
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UsageError(f"--variants {args.variants!r}; allowed: {', '.join(VARIANTS)}")
    engine = resolve_engine(args.engine, device)[0]
    paths = bench_files(args.data, cache=args.cache, size=parse_size(args.data_size), files=args.files)
    groups, errors = scan(paths)
    if not groups:
        raise UsageError(f"no decodable DICOM among {len(paths)} input(s): {errors[:1]}")
    tmp = tempfile.mkdtemp(prefix="rsna-e2e-")
    rows: list[BenchResult] = []
    summary: dict = {"e2e": {}, "errors": errors, "engine": engine, "variants": variants}
    try:
        ckpt = args.ckpt or random_checkpoint(os.path.join(tmp, "model.pt"), args.model, size, args.batch_size)
        files = {"eager": ckpt, "compiled": ckpt}
        if "onnx" in variants:
            from training.export import export_model

            files["onnx"] = export_model(ckpt, os.path.join(tmp, "model.onnx"), format="onnx")["out"]
        model_rate = {}
        for v in variants:
            pred = load_predictor(files[v], device, compile_mode=args.compile if v == "compiled" else None)
            secs = bench_model(pred, device=device, batch=args.batch_size, size=size, repeats=args.repeats)
            rows.append(_row("infer", f"memory-{v}", device, None, size, 8 * args.batch_size, secs, 1, args.batch_size))
            model_rate[v] = rows[-1].images_per_s
        for ts in sorted(groups):
            folder = rsna_folder(groups[ts].paths, os.path.join(tmp, ts))
            stage_rows = bench_stages(
                groups[ts].paths,
                ts,
                size=size,
                backend="auto",
                batch_size=args.batch_size,
                workers=workers,
                device=device,
                repeats=args.repeats,
                engine=engine,
                reduced=False,
            )
            stage_rows = [r for r in stage_rows if r.stage not in ("collate", "h2d")]
            rows.extend(stage_rows)
            loader_rate = next(r.images_per_s for r in stage_rows if r.stage == "loader")
            summary["e2e"][ts] = {}
            for v in variants:
                loop, whole, n, s = bench_predict(
                    folder,
                    files[v],
                    device=device,
                    engine=engine,
                    batch=args.batch_size,
                    workers=workers,
                    compile_mode=args.compile if v == "compiled" else None,
                    repeats=args.repeats,
                )
                rows.append(_row("e2e", v, device, ts, size, n, loop, workers, args.batch_size))
                e2e = rows[-1].images_per_s
                slowest = min(("loader", loader_rate), ("model", model_rate[v]), key=lambda kv: kv[1] or 0)
                summary["e2e"][ts][v] = {
                    "images_per_s": e2e,
                    "whole_call_s": round(min(whole), 3),
                    "loader_images_per_s": loader_rate,
                    "model_images_per_s": model_rate[v],
                    "slowest_stage": slowest[0],
                    "overlap_efficiency": round(e2e / slowest[1], 3) if e2e and slowest[1] else None,
                    "engine": s.get("engine"),
                }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    machine = machine_record(with_torch=True)
    config = {
        "command": "bench infer --e2e",
        "options": options_of(args),
        "device": device,
        "engine": engine,
        "model": args.model if not args.ckpt else os.path.basename(args.ckpt),
        "size": list(size),
        "timing": "perf_counter around predict's scoring loop (a warm-up run first); model rows: CUDA events "
        "per window on a GPU, perf_counter on the CPU; stage rows as bench pipeline",
    }
    doc = make_document(machine, config, rows, summary)
    for ts, per in summary["e2e"].items():
        for v, s in per.items():
            print(
                f"{ts} {v}: {s['images_per_s']} img/s end to end; loader {s['loader_images_per_s']}, model "
                f"{s['model_images_per_s']}; overlap efficiency {s['overlap_efficiency']} ({s['slowest_stage']} "
                "is the slowest stage)"
            )
    if args.json:
        print(f"wrote {dump(doc, expand_path(args.json, machine))}", file=sys.stderr)
    return 0
