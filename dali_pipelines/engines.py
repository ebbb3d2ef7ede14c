"""The loader's engines: how :class:`~dali_pipelines.loader.DicomLoader` turns rows into batches.

=============  ================================================================================
``cpu``        worker processes decode (CPU backends) and run the numpy chain; batches are
               moved to the device (pinned memory) when it is CUDA
``dali``       DALI's parallel external source reads and routes, ``fn.decoders.image``
               decodes on the GPU (``mixed``) in batches; CuPy chain; zero-copy to torch
``nvimgcodec`` worker processes read and route, nvImageCodec decodes each batch in one call
               on a side CUDA stream in a background thread, the CuPy chain writes straight
               into the batch's torch tensor, handed over with a CUDA event; no DALI
=============  ================================================================================

``engine="auto"`` picks DALI when it imports and CUDA is there, else nvImageCodec + CuPy
on CUDA, else the CPU workers (:func:`resolve_engine` says which and why). The two GPU
engines also run on the CPU (``device="cpu"``: DALI with ``device_id=None``, nvImageCodec's
``CPU_ONLY`` backend, numpy), which is how they are tested without a GPU. Both share the
routing, probe and exactness rules (:mod:`decode.routing`), the sample records
(:mod:`dali_pipelines.records`) and the batch assembly here (:func:`assemble`).

Every engine has ``batches(loader)`` (one epoch), ``stats`` and ``close()``, and is a
context manager; a loader closes its engine when it is closed or collected.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from decode.dicom import read_dicom
from decode.errors import DicomError, UsageError, as_dicom_error
from decode.fused_chain import preprocess_batch

from . import handoff
from .devices import resolve_device
from .records import DecodedBatch, I

log = logging.getLogger(__name__)

EngineName = Literal["auto", "dali", "nvimgcodec", "cpu"]
ENGINES = ("auto", "dali", "nvimgcodec", "cpu")


# --- choosing ---------------------------------------------------------------------------------


def _cuda_reason() -> str | None:
    """Why CUDA cannot be used by the GPU engines here (torch and CuPy must both see it)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "torch sees no CUDA GPU"
    except Exception as exc:  # pragma: no cover - torch is a dependency
        return f"torch does not import ({type(exc).__name__})"
    try:
        import cupy

        if not cupy.is_available():
            return "CuPy sees no CUDA GPU"
    except Exception as exc:
        return f"CuPy does not import ({type(exc).__name__}: {exc})"
    return None


def engine_unavailable_reason(engine: str, device: str) -> str | None:
    """Why ``engine`` cannot run on ``device`` here; ``None`` when it can.

    ``dali`` needs ``nvidia.dali`` to import, ``nvimgcodec`` needs ``nvidia.nvimgcodec``;
    on ``"cuda"`` both also need torch and CuPy to see a GPU. ``cpu`` always runs.
    """
    if engine == "cpu":
        return None
    module = {"dali": "nvidia.dali", "nvimgcodec": "nvidia.nvimgcodec"}.get(engine)
    if module is None:
        raise UsageError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} does not import ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    return _cuda_reason() if device == "cuda" else None


def resolve_engine(engine: str, device: str) -> tuple[str, str]:
    """``(engine to use, why)`` for a loader on ``device`` (``"cpu"`` or ``"cuda"``).

    Raises:
        UsageError: an unknown name, or a named engine that cannot run here
            (the message says why).
    """
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
    if engine != "auto":
        why = engine_unavailable_reason(engine, device)
        if why is not None:
            raise UsageError(f"engine {engine!r} cannot run on {device} here: {why}")
        return engine, "asked for"
    if device != "cuda":
        return "cpu", "the device is the CPU"
    why_dali = engine_unavailable_reason("dali", "cuda")
    if why_dali is None:
        return "dali", "DALI imports and CUDA is available"
    why_nv = engine_unavailable_reason("nvimgcodec", "cuda")
    if why_nv is None:
        return "nvimgcodec", f"DALI unavailable: {why_dali}"
    return "cpu", f"DALI unavailable: {why_dali}; nvImageCodec unavailable: {why_nv}"


def engine_report() -> dict[str, object]:
    """What ``rsna-mammo env`` says about the loader's engines on this machine.

    ``loader_engine``: what ``engine="auto"`` picks with ``device="auto"`` and why;
    ``engines``: per GPU engine, ``"ok"`` or why it cannot run on CUDA here.
    """
    device = resolve_device("auto")
    name, why = resolve_engine("auto", device)
    return {
        "loader_engine": f"{name} ({why})",
        "engines": {e: engine_unavailable_reason(e, "cuda") or "ok" for e in ("dali", "nvimgcodec")},
    }


def make_engine(name: str, loader) -> LoaderEngine:
    """The engine object of ``name`` (resolved, not ``auto``) for ``loader``; it starts on first use."""
    if name == "cpu":
        return CpuEngine(loader)
    if name == "dali":
        return DaliEngine(loader)
    if name == "nvimgcodec":
        return NvImageCodecEngine(loader)
    raise UsageError(f"unknown engine {name!r}; allowed: cpu, dali, nvimgcodec")


# --- engines ----------------------------------------------------------------------------------


class LoaderEngine:
    """Base: ``batches(loader)`` yields one epoch of batch dicts; ``close()`` frees what it started."""

    name = "base"

    def __init__(self, loader):
        self.device = loader.device

    def batches(self, loader) -> Iterator[dict]:
        raise NotImplementedError

    @property
    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class ReadRow:
    """Worker task: ``(key, row)`` → ``(image, notes)`` or an image, via the loader's reader."""

    reader: Callable[[int], np.ndarray]
    paths: tuple[str, ...]

    def __call__(self, task):
        read = getattr(self.reader, "read", None)  # readers with notes return (image, notes)
        return read(task[1]) if read is not None else self.reader(task[1])

    def path_of(self, task) -> str:
        return self.paths[task[1]]


class CpuEngine(LoaderEngine):
    """Worker processes (crash/hang contained) decode and preprocess; batches in sampler order."""

    name = "cpu"

    def batches(self, loader) -> Iterator[dict]:
        from decode.parallel import WorkerPool, call_item

        batches = loader._batches()
        task = ReadRow(loader.reader, tuple(loader.paths))
        if loader.workers == 0:
            for b, rows in enumerate(batches):
                samples = []
                for i in rows:
                    ok, res = call_item(task, (b, i))
                    samples.append((i, res if ok else None, None if ok else res))
                yield _host_batch(loader, samples)
            return
        window = max(1, loader.prefetch * loader.workers)
        with WorkerPool(task, loader.workers, timeout=loader.timeout, path_of=task.path_of) as pool:
            done: dict = {}
            for b in range(min(window, len(batches))):
                for pos, i in enumerate(batches[b]):
                    pool.submit((b, pos), (b, i))
            for b, rows in enumerate(batches):
                while any((b, pos) not in done for pos in range(len(rows))):
                    key, ok, res = pool.next_result()
                    done[key] = (ok, res)
                ahead = b + window
                if ahead < len(batches):
                    for pos, i in enumerate(batches[ahead]):
                        pool.submit((ahead, pos), (ahead, i))
                samples = []
                for pos, i in enumerate(rows):
                    ok, res = done.pop((b, pos))
                    samples.append((i, res if ok else None, None if ok else res))
                yield _host_batch(loader, samples)


def _host_batch(loader, samples) -> dict:
    """``[(row, image or (image, notes) or None, DicomError or None)]`` from the CPU workers → a batch dict.

    The errors are :func:`~decode.parallel.call_item`'s and the worker pool's: always a
    :class:`~decode.errors.DicomError`, with its ``kind`` and one-line ``reason``.
    """
    import torch

    failed = [
        {
            "index": i,
            "path": loader.paths[i],
            "stage": "skipped" if err.kind == "skipped" else "decode",
            "reason": err.reason,
        }
        for i, _img, err in samples
        if err is not None
    ]
    loader.failures.extend(failed)
    good = [(i, *(img if isinstance(img, tuple) else (img, ()))) for i, img, err in samples if err is None]
    notes = [{"index": i, "path": loader.paths[i], "note": n} for i, _img, ns in good for n in ns]
    loader.notes.extend(notes)
    good = [(i, img) for i, img, _ns in good]
    idx = torch.tensor([i for i, _ in good], dtype=torch.long)
    if not good:
        return {"image": None, "label": None, "index": idx, "failed": failed, "notes": notes}
    images = torch.from_numpy(np.stack([img for _, img in good])[:, None])
    if loader.device == "cuda":
        images = images.pin_memory().to(loader.device, non_blocking=True)
    label = None
    if loader.labels is not None:
        label = torch.from_numpy(loader.labels[idx.numpy()]).to(images.device)
    return {"image": images, "label": label, "index": idx.to(images.device), "failed": failed, "notes": notes}


class _RunnerEngine(LoaderEngine):
    """Shared by the GPU engines: a runner (``start``/``epoch``/``close``/``stats``) made on first use."""

    def __init__(self, loader):
        super().__init__(loader)
        self.runner = None

    def _make_runner(self, loader):
        raise NotImplementedError

    def _runner(self, loader):
        if self.runner is None:
            self.runner = self._make_runner(loader).start()
        return self.runner

    @property
    def stats(self) -> dict:
        return {} if self.runner is None else dict(self.runner.stats)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None


class DaliEngine(_RunnerEngine):
    """DALI pipelines (:class:`~dali_pipelines.pipelines.DecodeRunner`); DALI prefetches the decode itself."""

    name = "dali"

    def _make_runner(self, loader):
        from .pipelines import DecodeRunner

        return DecodeRunner(
            loader.paths,
            batch_size=loader.batch_size,
            device=self.device,
            device_id=_device_index() if self.device == "cuda" else 0,
            workers=max(1, loader.workers),
            threads=max(1, loader.workers),
            prefetch=max(1, loader.prefetch),
            backend=loader.backend,
            fail_indices=loader.fail_indices,
            timeout=loader.timeout,
            for_processing=loader.for_processing,
        )

    def batches(self, loader) -> Iterator[dict]:
        runner = self._runner(loader)
        rows = [r for batch in loader._batches() for r in batch]
        for decoded in runner.epoch(rows):
            with handoff.on_current_stream():
                item = assemble(loader, decoded, self.device)
            if item is not None:
                yield item


class NvImageCodecEngine(_RunnerEngine):
    """nvImageCodec batches (:class:`~dali_pipelines.nvimgcodec_engine.NvImageCodecRunner`) prepared
    ``loader.prefetch`` batches ahead in a background thread on a side CUDA stream."""

    name = "nvimgcodec"

    def __init__(self, loader):
        super().__init__(loader)
        self._prefetcher: Prefetcher | None = None

    def _make_runner(self, loader):
        from .nvimgcodec_engine import NvImageCodecRunner

        return NvImageCodecRunner(
            loader.paths,
            batch_size=loader.batch_size,
            device=self.device,
            device_id=_device_index() if self.device == "cuda" else 0,
            workers=max(1, loader.workers),
            prefetch=max(1, loader.prefetch),
            backend=loader.backend,
            timeout=loader.timeout,
            fail_indices=loader.fail_indices,
            decoder=loader.decoder,
            for_processing=loader.for_processing,
        )

    def batches(self, loader) -> Iterator[dict]:
        runner = self._runner(loader)
        rows = [r for batch in loader._batches() for r in batch]
        stop = threading.Event()

        def produce(stream_ptr: int) -> Iterator[dict]:
            for decoded in runner.epoch(rows, cuda_stream=stream_ptr, stop=stop):
                with handoff.on_current_stream():  # the thread's stream (torch's current one there)
                    item = assemble(loader, decoded, self.device)
                if item is not None:
                    yield item

        self._prefetcher = Prefetcher(produce, depth=max(1, loader.prefetch), device=self.device, stop=stop)
        try:
            yield from self._prefetcher
        finally:
            self._prefetcher.close()
            self._prefetcher = None

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None
        super().close()


def _device_index() -> int:
    """torch's current GPU, without creating a CUDA context when torch has none yet."""
    import torch

    return torch.cuda.current_device() if torch.cuda.is_initialized() else 0


# --- the overlap thread -------------------------------------------------------------------------

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher:
    """Runs ``produce(stream_ptr)`` in a thread, up to ``depth`` batches ahead of the consumer.

    On CUDA the thread works on its own stream: decode, copies and the chain of batch k+1
    overlap the consumer's work on batch k. Each batch is handed over with a CUDA event:
    the consumer's stream waits for it (no host sync) and the batch's tensors are marked
    as used on the consumer's stream (``record_stream``), so their memory is not reused
    before the consumer is done. An exception in the thread is raised in the consumer;
    :meth:`close` stops the thread (``stop``) and waits for it.
    """

    def __init__(self, produce: Callable[[int], Iterator[dict]], *, depth: int, device: str, stop: threading.Event):
        self.produce = produce
        self.stop = stop
        self.q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stream = None
        if device == "cuda":
            import torch

            self.stream = torch.cuda.Stream()
        self.thread = threading.Thread(target=self._run, name="rsna-mammo-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from .nvimgcodec_engine import Stopped

        try:
            ctx = contextlib.nullcontext()
            ptr = 0
            if self.stream is not None:
                import torch

                ctx = torch.cuda.stream(self.stream)
                ptr = int(self.stream.cuda_stream)
            with ctx:
                for item in self.produce(ptr):
                    event = None
                    if self.stream is not None:
                        import torch

                        event = torch.cuda.Event()
                        event.record(self.stream)
                    if not self._put((item, event)):
                        return
        except Stopped:
            return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_Failure(exc), None))
            return
        self._put((_END, None))

    def _put(self, entry) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(entry, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[dict]:
        while True:
            item, event = self.q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            if event is not None:
                import torch

                current = torch.cuda.current_stream()
                current.wait_event(event)
                for key in ("image", "label", "index"):
                    t = item.get(key)
                    if t is not None and t.is_cuda:
                        t.record_stream(current)
            yield item

    def close(self) -> None:
        """Stop the thread and wait for it (batches not taken are dropped)."""
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self.q.get_nowait()
            self.thread.join(timeout=0.2)


# --- batch assembly (GPU engines) ---------------------------------------------------------------


def assemble(loader, decoded: DecodedBatch, device: str) -> dict | None:
    """A decoded batch → the loader's batch dict: chain on the device, torch tensors, failures, notes.

    The chain writes into a torch tensor's memory directly (a CuPy view of it on CUDA, a
    numpy view on the CPU): the batch is never copied. Each sample's header (carried with
    it, or read again here when a record without it needs it for a LUT) lets Pixel Padding,
    the header's laterality (``loader.laterality``) and LUT images apply as on the CPU
    engine. Returns None for a batch with no image and no failure (only padding).
    """
    import torch

    failed = [
        {"index": i, "path": loader.paths[i], "stage": "skipped" if i in decoded.skipped else "decode", "reason": r}
        for i, r in decoded.failed
    ]
    good, raws, params, metas, notes = [], [], [], [], {}
    for s in decoded.samples:
        meta = s.meta
        if meta is None and int(s.info[I["needs_meta"]]):  # a record made without its header
            try:
                meta = read_dicom(loader.paths[s.index]).meta
            except DicomError as exc:
                failed.append(
                    {"index": s.index, "path": loader.paths[s.index], "stage": "decode", "reason": exc.reason}
                )
                continue
        good.append(s.index)
        raws.append(s.image)
        params.append(s.params)
        metas.append(meta)
        notes[s.index] = list(s.notes)
    images = None
    if good:
        images, good, more, chain_notes = _chain(loader, good, raws, params, metas, device)
        failed.extend(more)
        for row, extra in chain_notes.items():
            notes[row].extend(extra)
    failed.sort(key=lambda f: f["index"])
    loader.failures.extend(failed)
    noted = [{"index": i, "path": loader.paths[i], "note": n} for i in good for n in notes.get(i, ())]
    loader.notes.extend(noted)
    if images is None:
        if not failed:
            return None
        return {
            "image": None,
            "label": None,
            "index": torch.empty((0,), dtype=torch.long),
            "failed": failed,
            "notes": noted,
        }
    idx = torch.tensor(good, dtype=torch.long, device=images.device)
    label = None
    if loader.labels is not None:
        label = torch.from_numpy(loader.labels[np.asarray(good)]).to(images.device)
    return {"image": images, "label": label, "index": idx, "failed": failed, "notes": noted}


def batch_tensor(n: int, size: tuple[int, int], device: str):
    """``(torch float32 [n, 1, H, W] on device, the same memory as a CuPy / numpy array)``."""
    import torch

    t = torch.empty((n, 1, *size), dtype=torch.float32, device="cuda" if device == "cuda" else "cpu")
    if device == "cuda":
        from decode.backends.nvimgcodec_backend import device_view

        return t, device_view(t)
    return t, t.numpy()


def _chain(loader, rows: list[int], raws, params, metas, device: str):
    """VOI → crop → flip → resize for a batch on the device; a failing image drops out alone.

    Returns ``(tensor or None, rows kept, failures, {row: the chain's notes})``.
    """
    failed = []
    kwargs = {"size": loader.size, "flip": loader.flip, "laterality": loader.laterality}
    try:
        t, view = batch_tensor(len(rows), loader.size, device)
        _, done = preprocess_batch(raws, params, metas=metas, out=view, **kwargs)
        return t, rows, failed, {row: list(res.notes) for row, res in zip(rows, done)}
    except Exception as exc:  # find the culprit(s), keep the rest
        log.warning("batch preprocessing failed (%s); retrying image by image", exc)
    keep = []
    for k, row in enumerate(rows):
        try:
            preprocess_batch([raws[k]], [params[k]], metas=[metas[k]], **kwargs)
            keep.append(k)
        except Exception as exc:
            reason = as_dicom_error(loader.paths[row], exc).reason
            failed.append({"index": row, "path": loader.paths[row], "stage": "preprocess", "reason": reason})
    if not keep:
        return None, [], failed, {}
    t, view = batch_tensor(len(keep), loader.size, device)
    _, done = preprocess_batch(
        [raws[k] for k in keep], [params[k] for k in keep], metas=[metas[k] for k in keep], out=view, **kwargs
    )
    kept = [rows[k] for k in keep]
    return t, kept, failed, {row: list(res.notes) for row, res in zip(kept, done)}
