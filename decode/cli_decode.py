"""``rsna-mammo decode``: DICOM files → .npy (and optional PNG), all cores, no torch.

This module is the CPU path (worker processes, the backend registry, the numpy chain)
and the command's options, jobs, outputs and summary. The command itself is
:mod:`dali_pipelines.cli_decode`, which adds the GPU engines (``--device cuda``) and
hands them to :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_write
from .backends import BACKENDS
from .chain import STAGES, parse_size
from .errors import UsageError
from .intent import FOR_PROCESSING
from .laterality import LATERALITY_SOURCES
from .parallel import default_workers, map_files
from .sample import read_sample
from .scale import DECODE_SCALES, effective_scale, require_reduced_decoder, scale_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="DICOM files or folders (searched for *.dcm)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for <stem>.npy")
    p.add_argument(
        "--stage",
        choices=STAGES,
        default="raw",
        help="raw: stored values (native dtype); voi: float32 [0,1]; crop: VOI + breast crop",
    )
    p.add_argument("--size", metavar="HxW", help="resize with padding to HxW (voi/crop stages)")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help="decode backend (default: auto)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="cuda: GPU batch decode (--engine) + CuPy VOI/crop/resize (needs CuPy and nvImageCodec or DALI); "
        "cpu: CPU backends in worker processes; auto (default): cuda when available",
    )
    p.add_argument("--no-flip", action="store_true", help="crop stage: keep the original orientation")
    p.add_argument(
        "--decode-scale",
        choices=DECODE_SCALES,
        default="full",
        help="crop stage: full (default) decodes every pixel; auto decodes each JPEG 2000 / HTJ2K image at the "
        "coarsest resolution level whose breast crop still covers --size; 1/2, 1/4 fix it (CPU only; raw and "
        "voi stages are always full resolution)",
    )
    p.add_argument(
        "--for-processing",
        choices=FOR_PROCESSING,
        default="warn",
        help="FOR PROCESSING images (raw detector data, Presentation Intent Type): warn (default: decode "
        "and print a warning line), skip (leave out, listed as skipped) or error (refuse, listed as failed)",
    )
    p.add_argument(
        "--laterality",
        choices=LATERALITY_SOURCES,
        default="content",
        help="crop stage: when the header's laterality and the image content disagree (the summary says "
        "so), which one decides the flip and the laterality reported (default: content)",
    )
    p.add_argument("--png", action="store_true", help="also write an 8-bit <stem>.png to look at")
    p.add_argument("--summary", metavar="FILE", help="write a JSON summary of the run")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds one file may take (read + CPU decode) before its worker is killed and the file reported "
        "(0: no limit; default 600)",
    )


@dataclass(frozen=True)
class DecodeJob:
    path: str
    out: str  # output path without extension
    stage: str
    size: tuple[int, int] | None
    backend: str
    flip: bool
    png: bool
    decode_scale: str = "full"
    for_processing: str = "warn"
    laterality: str = "content"

    def __str__(self) -> str:
        return self.path


def find_dicoms(inputs: list[str]) -> list[str]:
    """Expand folders to their ``*.dcm`` files (sorted); keep files as given."""
    out = []
    for f in inputs:
        if os.path.isdir(f):
            for root, _dirs, names in sorted(os.walk(f)):
                out.extend(os.path.join(root, n) for n in sorted(names) if n.lower().endswith(".dcm"))
        else:
            out.append(f)
    return out


def output_stems(paths: list[str], out_dir: str) -> list[str]:
    """``out_dir/<stem>``; a stem shared by several inputs is prefixed by its parent folder."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    counts = Counter(stems)
    names = []
    for p, s in zip(paths, stems):
        if counts[s] > 1:
            s = f"{os.path.basename(os.path.dirname(os.path.abspath(p)))}_{s}"
        names.append(os.path.join(out_dir, s))
    return names


def to_png8(img: np.ndarray) -> np.ndarray:
    """Scale to 8 bits for viewing (float images are [0, 1]; raw is min–max scaled)."""
    if img.dtype.kind == "f":
        x = img
    else:
        x = img.astype(np.float32)
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo if hi > lo else 1.0)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def write_outputs(job: DecodeJob, img: np.ndarray, info: dict) -> dict:
    """Write ``<out>.npy`` (and the PNG) atomically; returns the summary row."""
    atomic_write(job.out + ".npy", lambda f: np.save(f, img))
    if job.png:
        import imagecodecs

        data = imagecodecs.png_encode(to_png8(img))
        atomic_write(job.out + ".png", data)
    return {"path": job.path, "out": job.out + ".npy", "shape": list(img.shape), "dtype": str(img.dtype), **info}


def run_job(job: DecodeJob) -> dict:
    """Decode one file and write its outputs (runs in a worker process).

    Raises:
        DicomError: the file failed, or was left out by ``--for-processing``.
    """
    t0 = time.perf_counter()
    smp = read_sample(
        job.path,
        stage=job.stage,
        size=job.size,
        backend=job.backend,
        flip=job.flip,
        for_processing=job.for_processing,
        laterality=job.laterality,
        decode_scale=job.decode_scale,
    )
    res, meta, backend = smp.pre, smp.meta, smp.backend
    fallback = smp.decoded.fallback if smp.decoded is not None else ""
    img = np.ascontiguousarray(res.image)
    return write_outputs(
        job,
        img,
        {
            "backend": backend,
            "device": "cpu",
            "transfer_syntax": meta.transfer_syntax,
            "box": list(res.box),
            "flipped": res.flipped,
            "decode_scale": scale_name(res.reduction),
            **file_record(meta, res, warnings=[*filter(None, [smp.intent_note, fallback]), *meta.header_notes]),
            "notes": smp.notes,
            "seconds": round(time.perf_counter() - t0, 4),
        },
    )


def file_record(meta, res, *, warnings: list[str]) -> dict:
    """The per-file fields of a summary row: presentation intent, laterality, the warning line.

    ``warnings`` are printed as one ``warning: <path>: ...`` line (FOR PROCESSING, ignored
    header elements); the chain's notes (a window pydicom refuses, a laterality
    disagreement) are added to them.
    """
    lat = res.laterality
    warn = [*warnings, *res.notes]
    return {
        "presentation_intent": meta.presentation_intent or None,
        "pixel_padding": list(meta.pixel_padding) if meta.pixel_padding is not None else None,
        "laterality": lat.as_dict() if lat is not None else {"header": meta.laterality},
        "warnings": warn,
    }


def say(line: str) -> None:
    """Write one whole line to stderr in a single write.

    ``print`` writes the text and its newline separately; worker processes log to the same
    stderr, and a line of theirs can land between the two, splitting both lines.
    """
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(args: argparse.Namespace, *, gpu: Callable | None = None) -> int:
    """Decode ``args.files``; exit status 0 when every file was written or left out by
    ``--for-processing skip``, 1 when one failed or is unaccounted for.

    Args:
        args: the command's options (``args.device`` already resolved to cpu or cuda).
        gpu: the GPU path, ``(jobs, args) -> iterator of (job, ok, result or DicomError)``
            (given by :mod:`dali_pipelines.cli_decode` for ``--device cuda``); None: CPU workers.
    """
    device = "cuda" if gpu is not None else "cpu"
    size = parse_size(args.size) if args.size else None
    scale = args.decode_scale
    if scale != "full" and args.stage != "crop":
        raise UsageError(
            f"--decode-scale {scale} applies to --stage crop only (raw and voi outputs are always full resolution)"
        )
    if device == "cuda":
        scale = "full"  # the GPU path decodes every image at full resolution
    else:
        require_reduced_decoder(scale)
        scale = effective_scale(scale)
    paths = find_dicoms(args.files)
    os.makedirs(args.out, exist_ok=True)
    jobs = [
        DecodeJob(
            p,
            o,
            args.stage,
            size,
            args.backend,
            not args.no_flip,
            args.png,
            scale,
            args.for_processing,
            args.laterality,
        )
        for p, o in zip(paths, output_stems(paths, args.out))
    ]
    t0 = time.perf_counter()
    ok, failed, skipped = [], [], []
    if gpu is not None:
        results = gpu(jobs, args)
    else:
        results = map_files(
            run_job, jobs, workers=args.workers or default_workers(), timeout=args.timeout if args.timeout > 0 else None
        )
    for job, good, res in results:
        if good:
            ok.append(res)
            if res.get("warnings"):
                say(f"warning: {job.path}: {'; '.join(res['warnings'])}")
        elif getattr(res, "kind", "") == "skipped":
            skipped.append({"path": job.path, "kind": "skipped", "reason": res.reason})
            say(f"skipped: {res}")
        else:
            failed.append({"path": job.path, "kind": getattr(res, "kind", "error"), "reason": res.reason})
            say(f"error: {res}")
    elapsed = time.perf_counter() - t0
    unaccounted = len(jobs) - len(ok) - len(failed) - len(skipped)
    print(
        f"{len(ok)} ok, {len(failed)} failed, {unaccounted} unaccounted"
        f"{f', {len(skipped)} skipped' if skipped else ''} "
        f"({len(ok) / elapsed if elapsed > 0 else 0:.2f} images/s)",
        file=sys.stderr,
    )
    if args.summary:
        summary = {
            "files": len(jobs),
            "ok": len(ok),
            "failed": len(failed),
            "skipped": len(skipped),
            "unaccounted": unaccounted,
            "seconds": round(elapsed, 3),
            "images_per_s": round(len(ok) / elapsed, 3) if elapsed else None,
            "stage": args.stage,
            "size": list(size) if size else None,
            "backend": args.backend,
            "decode_scale": scale,
            "device": device,
            "engine": getattr(args, "engine", None) if device == "cuda" else "cpu",
            "workers": args.workers or default_workers(),
            "results": sorted(ok, key=lambda r: r["path"]),
            "errors": failed,
            "skipped_files": skipped,
            "for_processing": args.for_processing,
            "laterality": args.laterality,
        }
        atomic_write(args.summary, json.dumps(summary, indent=2))
    return 1 if failed or unaccounted else 0
