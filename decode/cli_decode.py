"""``rsna-mammo decode``: DICOM files → .npy (and optional PNG), all cores, no torch."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_write
from .backends import BACKENDS
from .chain import STAGES, parse_size
from .intent import FOR_PROCESSING
from .laterality import LATERALITY_SOURCES
from .parallel import default_workers, map_files
from .sample import read_sample


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
        help="cuda: nvImageCodec batch decode + CuPy VOI/crop/resize on the GPU (needs CuPy and "
        "nvImageCodec); cpu: CPU backends in worker processes; auto (default): cuda when available",
    )
    p.add_argument("--no-flip", action="store_true", help="crop stage: keep the original orientation")
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
        help="seconds one file may take before its worker is killed and the file reported "
        "(CPU path; 0: no limit; default 600)",
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
    )
    dec, res = smp.decoded, smp.pre
    img = np.ascontiguousarray(res.image)
    return write_outputs(
        job,
        img,
        {
            "backend": dec.backend,
            "device": "cpu",
            "transfer_syntax": dec.meta.transfer_syntax,
            "box": list(res.box),
            "flipped": res.flipped,
            **file_record(
                dec.meta, res, warnings=[*filter(None, [smp.intent_note, dec.fallback]), *dec.meta.header_notes]
            ),
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


def resolve_decode_device(device: str) -> tuple[str, str | None]:
    """``(device to use, reason the GPU is not used)``: ``auto`` → cuda when the GPU path runs here."""
    if device == "cpu":
        return "cpu", None
    from .cli_decode_gpu import gpu_unavailable_reason

    why = gpu_unavailable_reason()
    if why is None:
        return "cuda", None
    return ("error" if device == "cuda" else "cpu"), why


def run(args: argparse.Namespace) -> int:
    device, why = resolve_decode_device(args.device)
    if device == "error":
        print(
            f"rsna-mammo decode: --device cuda is not available here: {why}; use --device cpu or auto", file=sys.stderr
        )
        return 2
    if why and args.device == "auto":
        logging.getLogger(__name__).info("decoding on the CPU (%s)", why)
    size = parse_size(args.size) if args.size else None
    paths = find_dicoms(args.files)
    os.makedirs(args.out, exist_ok=True)
    jobs = [
        DecodeJob(
            p, o, args.stage, size, args.backend, not args.no_flip, args.png, args.for_processing, args.laterality
        )
        for p, o in zip(paths, output_stems(paths, args.out))
    ]
    t0 = time.perf_counter()
    ok, failed, skipped = [], [], []
    if device == "cuda":
        from .cli_decode_gpu import default_batch_size, run_gpu

        if (args.for_processing, args.laterality) != ("warn", "content"):
            print(
                "rsna-mammo decode: note: the GPU path does not apply --for-processing / --laterality yet",
                file=sys.stderr,
            )

        results = run_gpu(
            jobs, workers=args.workers or default_workers(), batch_size=default_batch_size(), write=write_outputs
        )
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
            "device": device,
            "workers": args.workers or default_workers(),
            "results": sorted(ok, key=lambda r: r["path"]),
            "errors": failed,
            "skipped_files": skipped,
            "for_processing": args.for_processing,
            "laterality": args.laterality,
        }
        atomic_write(args.summary, json.dumps(summary, indent=2))
    return 1 if failed or unaccounted else 0
