"""``rsna-mammo prepare``: decode once into an HTJ2K transcode or a preprocessed-tensor cache."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="dataset root (train.csv, test.csv, *_images/)")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache root to create or resume")
    p.add_argument(
        "--format",
        choices=["htj2k", "tensor"],
        default="htj2k",
        help="htj2k: lossless HTJ2K DICOMs, same layout (default); tensor: the loader's chain output "
        "as uint16 shards + tensor_index.json",
    )
    p.add_argument("--size", metavar="HxW", help="tensor format: output size, e.g. 1024x512 (required)")
    p.add_argument("--no-flip", action="store_true", help="tensor format: keep each breast's original side")
    p.add_argument(
        "--decode-scale",
        choices=["auto", "full", "1/2", "1/4"],
        default="auto",
        help="tensor format: auto (default) decodes each JPEG 2000 image only as finely as --size needs "
        "(the loader's default; recorded in the index, a loader asking another scale refuses the cache); "
        "full, 1/2, 1/4 fix it",
    )
    p.add_argument(
        "--laterality",
        choices=["content", "header"],
        default="content",
        help="tensor format: when the header's laterality and the image content disagree (recorded in the "
        "index), which one decides the flip (default: content)",
    )
    p.add_argument(
        "--for-processing",
        choices=["warn", "skip", "error"],
        default="warn",
        help="tensor format: FOR PROCESSING images (raw detector data) are cached with a note (warn, default), "
        "left out (skip) or failed (error); listed in errors.csv unless cached",
    )
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--backend", default="auto", help="CPU decode backend for the sources (default: auto)")
    p.add_argument(
        "--engine",
        choices=["auto", "dali", "nvimgcodec", "cpu"],
        default="auto",
        help="tensor format: decode + chain with the loader's engine (auto: CPU workers while a reduced "
        "--decode-scale applies, which only they decode; else a GPU engine where CUDA is); htj2k is always "
        "decoded on the CPU",
    )
    p.add_argument(
        "--shard", metavar="i/n", help="take rows i, i+n, ... (default: torchrun's RANK/WORLD_SIZE, else 0/1)"
    )
    p.add_argument("--chunk", type=int, default=0, help="rows per tensor shard / journal file (default: automatic)")
    p.add_argument(
        "--verify",
        choices=["quick", "full"],
        default="quick",
        help="how rows done by an earlier run are trusted: quick = source and output sizes/mtimes "
        "unchanged (default); full = re-decode and compare checksums",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only rebuild the index and errors.csv from the journal and check every row (no work; "
        "format and size are read from the cache)",
    )


def run(args: argparse.Namespace) -> int:
    from decode.chain import parse_size

    from . import PrepareConfig, check_only, parse_shard, run_prepare

    if args.check:  # the cache says what it is
        params = _cache_params(args.out)
        if params:
            args.format = params["format"]
            args.size = "x".join(map(str, params["size"])) if params.get("size") else None
            args.no_flip = not params.get("flip", True)
            args.decode_scale = params.get("decode_scale", "full")
            args.laterality = params.get("laterality", "content")
            args.for_processing = params.get("for_processing", "warn")
    cfg = PrepareConfig(
        data=args.data,
        out=args.out,
        format=args.format,
        size=parse_size(args.size) if args.size else None,
        flip=not args.no_flip,
        laterality=args.laterality,
        for_processing=args.for_processing,
        workers=args.workers,
        backend=args.backend,
        shard=parse_shard(args.shard),
        chunk=args.chunk,
        verify=args.verify,
        engine=args.engine,
        decode_scale=args.decode_scale if args.format == "tensor" else "full",
    )
    if args.check:
        check = check_only(cfg)
        _print_check(check)
        return 0 if check.complete else 1
    from decode.progress import progress_factory

    from . import manifest_rows

    factory = progress_factory()
    bar = None
    if factory is not None:
        total = len(manifest_rows(cfg.data)[0][cfg.shard[0] :: cfg.shard[1]])
        bar = factory(total=total, unit="img", desc=f"prepare {cfg.format} {cfg.shard[0]}/{cfg.shard[1]}")
    try:
        report = run_prepare(cfg, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    for e in report.errors:
        print(f"error: {e['path']}: [{e['stage']}] {e['reason']}", file=sys.stderr)
    done_now = report.ok - report.skipped
    print(
        f"prepare {cfg.format} shard {cfg.shard[0]}/{cfg.shard[1]}: {report.rows} rows; {done_now} written, "
        f"{report.skipped} already complete; {report.seconds:.1f} s",
        file=sys.stderr,
    )
    _print_check(report.check)
    print(report.line())
    bad_cache = report.check.all_shards_done and not report.check.complete
    return 1 if report.failed or report.unaccounted or bad_cache else 0


def _cache_params(out: str):
    import json
    import os

    from .state import PARAMS_FILE

    try:
        with open(os.path.join(out, PARAMS_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _print_check(check) -> None:
    print(check.summary(), file=sys.stderr)
    if check.missing and check.all_shards_done:
        for rel in check.missing[:20]:
            print(f"missing: {rel}", file=sys.stderr)
        if len(check.missing) > 20:
            print(f"missing: ... and {len(check.missing) - 20} more", file=sys.stderr)
