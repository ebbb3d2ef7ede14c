"""`DicomLoader` on the CPU engine: batch contract, order, sharding, drop_last, failures, notes, memory.

Most tests read through a small picklable reader (the loader's documented ``reader=`` hook, the
one a tensor cache uses), so they pin the engine and the loader rather than the decoders; the
DICOM path is exercised on tiny native files.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import types

import numpy as np
import pytest
import torch

from dali_pipelines.engines import ReadRow, _host_batch
from dali_pipelines.loader import DicomLoader, SampleReader, resolve_device
from decode import syntax as TS
from decode.backends import BACKENDS
from decode.errors import CorruptDicomError
from decode.parallel import call_item
from decode.scale import effective_scale
from decode.testing.synth import write_dicom
from tests.loader_rows import SIZE, NotedRows, Rows


def _loader(n=7, reader=Rows, **kw):
    kw.setdefault("batch_size", 3)
    kw.setdefault("workers", 0)
    reader = reader() if reader is Rows else reader
    return DicomLoader([f"p{i}.dcm" for i in range(n)], size=SIZE, device="cpu", reader=reader, **kw)


def _rows(batches):
    return [b["index"].tolist() for b in batches]


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_contract_order_labels_and_index(workers):
    labels = np.arange(7, dtype=np.float64) / 10
    with _loader(labels=labels, workers=workers) as ld:
        assert ld.engine_name == "cpu" and ld.engine_reason == "reading with a custom reader or a tensor cache"
        assert ld.engine.name == "cpu" and ld.stats == {}  # the cpu engine keeps no counters
        batches = list(ld)
    assert _rows(batches) == [[0, 1, 2], [3, 4, 5], [6]]
    for b in batches:
        rows = b["index"].tolist()
        assert b["image"].shape == (len(rows), 1, *SIZE) and b["image"].dtype == torch.float32
        assert b["image"].is_contiguous()
        assert [float(b["image"][k, 0, 0, 0]) for k in range(len(rows))] == [float(r) for r in rows]
        assert b["index"].dtype == torch.long
        assert b["label"].dtype == torch.float32 and b["label"].tolist() == pytest.approx(labels[rows].tolist())
        assert b["failed"] == [] and b["notes"] == []
    assert len(ld) == 3


def test_no_labels_means_label_none():
    assert all(b["label"] is None for b in _loader())


@pytest.mark.parametrize("n,drop_last,rows", [(7, True, [[0, 1, 2], [3, 4, 5]]), (6, True, [[0, 1, 2], [3, 4, 5]])])
def test_drop_last_drops_only_a_short_final_batch(n, drop_last, rows):
    ld = _loader(n, drop_last=drop_last)
    assert _rows(ld) == rows and len(ld) == len(rows)
    assert len(_loader(n, drop_last=False)) == -(-n // 3)


def test_shards_take_every_world_th_row_from_rank():
    got = [_loader(8, shard=(r, 3), batch_size=2).rows() for r in range(3)]
    assert got == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert _rows(_loader(8, shard=(2, 3), batch_size=2)) == [[2, 5]]


@pytest.mark.parametrize("shard", [(3, 3), (-1, 2), (0, 0), (1, 1)])
def test_shard_out_of_bounds_is_refused(shard):
    with pytest.raises(ValueError) as err:
        _loader(shard=shard)
    assert str(err.value) == f"shard {shard} is not (rank, world) with 0 <= rank < world"


def test_argument_checks_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"^3 labels for 7 paths$"):
        _loader(labels=[0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"^batch_size must be >= 1$"):
        _loader(batch_size=0)
    assert len(_loader(batch_size=1)) == 7
    with pytest.raises(ValueError, match=r"^unknown engine 'fast'; allowed: auto, dali, nvimgcodec, cpu$"):
        _loader(engine="fast")
    with pytest.raises(ValueError, match=r"^engine 'dali' decodes DICOM files; a custom reader"):
        _loader(engine="dali")
    assert _loader(workers=-3).workers == 0
    assert _loader(engine="cpu").engine_name == "cpu"  # a custom reader on the cpu engine, asked by name


def test_an_unknown_backend_is_refused_and_a_listed_one_reaches_the_reader():
    allowed = "auto, " + ", ".join(BACKENDS)
    with pytest.raises(ValueError, match=rf"^unknown backend 'fast'; allowed: {re.escape(allowed)}$"):
        _loader(backend="fast")
    for name in BACKENDS:
        ld = DicomLoader(["a.dcm"], size=SIZE, device="cpu", engine="cpu", backend=name)
        assert ld.backend == name and ld.reader.backend == name


class Order:
    """A sampler with an epoch: the order reverses on odd epochs."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        rows = list(range(self.n))
        return iter(rows[::-1] if self.epoch % 2 else rows)


def test_sampler_order_and_set_epoch_are_followed():
    order = Order(5)
    ld = _loader(5, sampler=order, batch_size=2)
    assert _rows(ld) == [[0, 1], [2, 3], [4]]
    ld.set_epoch(1)
    assert ld.epoch == 1 and order.epoch == 1
    assert _rows(ld) == [[4, 3], [2, 1], [0]]
    plain = _loader(4, sampler=[3, 3, 0], batch_size=2)
    plain.set_epoch(2)  # a sampler without set_epoch is fine
    assert _rows(plain) == [[3, 3], [0]]


@pytest.mark.parametrize("workers", [0, 1])
def test_failed_rows_leave_their_batch_and_are_reported_by_path(workers):
    ld = _loader(reader=Rows(bad={1}, skip={5}), labels=np.arange(7.0), workers=workers)
    batches = list(ld)
    assert _rows(batches) == [[0, 2], [3, 4], [6]]
    assert batches[0]["label"].tolist() == [0.0, 2.0]  # labels follow the rows kept
    assert batches[0]["failed"] == [
        {"index": 1, "path": "p1.dcm", "stage": "decode", "reason": "ValueError: row 1 is broken"}
    ]
    assert batches[1]["failed"] == [
        {"index": 5, "path": "p5.dcm", "stage": "skipped", "reason": "FOR PROCESSING image left out"}
    ]
    assert ld.failures == batches[0]["failed"] + batches[1]["failed"]


def test_a_batch_with_every_row_failed_has_no_image():
    b = next(iter(_loader(3, reader=Rows(bad={0, 1, 2}))))
    assert b["image"] is None and b["label"] is None and b["notes"] == []
    assert b["index"].dtype == torch.long and b["index"].tolist() == []
    assert [f["index"] for f in b["failed"]] == [0, 1, 2]


def test_a_crashing_row_is_reported_by_its_path_and_the_rest_load():
    ld = _loader(6, reader=Rows(crash={2}), workers=2, timeout=60)
    batches = list(ld)
    assert _rows(batches) == [[0, 1], [3, 4, 5]]
    assert batches[0]["failed"] == [
        {"index": 2, "path": "p2.dcm", "stage": "decode", "reason": "the decoder crashed its worker process"}
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_reader_notes_come_with_their_row(workers):
    ld = _loader(4, reader=NotedRows(), workers=workers, batch_size=2)
    batches = list(ld)
    assert batches[0]["notes"] == [{"index": 1, "path": "p1.dcm", "note": "note 1"}]
    assert batches[1]["notes"] == [{"index": 3, "path": "p3.dcm", "note": "note 3"}]
    assert ld.notes == batches[0]["notes"] + batches[1]["notes"]
    assert float(batches[1]["image"][1, 0, 0, 0]) == 3.0


@pytest.mark.parametrize("workers,prefetch", [(1, 1), (2, 1), (1, 3)])
def test_reads_run_a_window_ahead_and_finished_batches_are_released(workers, prefetch):
    """At each batch handed out, the engine holds the results of the next ``prefetch × workers``
    batches at most (done or in flight) and none of a batch already handed out."""
    ld = _loader(12, workers=workers, prefetch=prefetch, batch_size=2)
    it = iter(ld)
    window = prefetch * workers
    for b, batch in enumerate(it):
        frame = it.gi_yieldfrom.gi_frame  # the engine's generator
        done, pool = frame.f_locals["done"], frame.f_locals["pool"]
        assert all(k[0] > b for k in done)  # nothing of batch b (or earlier) is kept
        ahead = range(b + 1, min(b + window, 5) + 1)
        assert len(done) + pool.pending == 2 * len(ahead)
        assert batch["index"].tolist() == [2 * b, 2 * b + 1]


def test_read_row_errors_name_the_rows_path():
    task = ReadRow(Rows(bad={1}), ("a.dcm", "b.dcm"))
    ok, img = call_item(task, ("key", 0))
    assert ok and img.shape == SIZE
    ok, err = call_item(task, ("key", 1))
    assert not ok and isinstance(err, CorruptDicomError) and err.path == "b.dcm"
    assert err.reason == "ValueError: row 1 is broken"
    assert task.path_of(("key", 1)) == "b.dcm"
    noted = ReadRow(NotedRows(), ("a.dcm", "b.dcm"))
    img, notes = noted(("key", 1))
    assert notes == ("note 1",) and float(img[0, 0]) == 1.0


def test_sample_reader_decodes_a_dicom_file(tmp_path):
    px = np.zeros((24, 16), np.uint16)
    px[4:20, 9:] = np.linspace(1000, 4000, 7).astype(np.uint16)
    path = write_dicom(str(tmp_path / "a.dcm"), px, transfer_syntax=TS.EXPLICIT_LE, laterality="R")
    reader = SampleReader((path,), (8, 6), decode_scale="full")
    img, notes = reader.read(0)
    assert img.shape == (8, 6) and img.dtype == np.float32 and img.flags.c_contiguous
    assert notes == ()
    np.testing.assert_array_equal(reader(0), img)
    with pytest.raises(dataclasses.FrozenInstanceError):  # the workers hold copies: no change may diverge
        reader.size = (4, 3)
    assert hash(reader) == hash(SampleReader((path,), (8, 6), decode_scale="full"))
    with DicomLoader([path, str(tmp_path / "missing.dcm")], size=(8, 6), device="cpu", workers=0) as ld:
        (batch,) = list(ld)
        assert ld.effective_decode_scale() == effective_scale("auto")
    np.testing.assert_array_equal(batch["image"][0, 0].numpy(), img)
    assert batch["failed"][0]["path"] == str(tmp_path / "missing.dcm") and batch["failed"][0]["stage"] == "decode"


def test_resolve_device_names_the_choices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"^unknown device 'tpu'; allowed: auto, cpu, cuda$"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device 'cuda' requested but torch sees no CUDA GPU$"):
            resolve_device("cuda")


def test_a_collected_loader_closes_its_engine():
    ld = _loader()
    finalizer, close = ld._finalizer, ld.engine.close
    assert finalizer.alive and finalizer.peek()[1] == close
    del ld
    gc.collect()
    assert not finalizer.alive  # it ran: the engine's close was called


def test_the_cpu_engine_takes_a_reduced_decode_scale_without_a_warning(caplog):
    with caplog.at_level("WARNING", logger="dali_pipelines.loader"):
        assert _loader(decode_scale="1/2").effective_decode_scale() == "1/2"
    assert caplog.text == ""


def test_effective_decode_scale_of_a_custom_reader_is_the_one_asked():
    assert _loader(decode_scale="full").effective_decode_scale() == "full"

    class WithParams(Rows):
        class params:
            decode_scale = "1/2"

    assert _loader(reader=WithParams()).effective_decode_scale() == "1/2"


def test_documented_defaults():
    ld = DicomLoader(["a.dcm"], reader=Rows())
    assert (ld.batch_size, ld.size, ld.workers, ld.prefetch, ld.timeout) == (8, (512, 256), 2, 2, 300.0)
    assert (ld.shard, ld.drop_last, ld.flip, ld.backend, ld.decode_scale) == ((0, 1), False, True, "auto", "auto")
    assert (ld.for_processing, ld.laterality, ld.labels, ld.epoch) == ("warn", "content", None, 0)
    assert ld.device == resolve_device("auto") and ld.failures == [] and ld.notes == []
    reader = SampleReader(("a.dcm",), (8, 6))
    assert (reader.backend, reader.flip, reader.decode_scale, reader.for_processing, reader.laterality) == (
        "auto",
        True,
        "full",
        "warn",
        "content",
    )
    sample = DicomLoader(["a.dcm"], size=(8, 6), device="cpu", engine="cpu").reader
    assert isinstance(sample, SampleReader) and sample.paths == ("a.dcm",) and sample.size == (8, 6)
    assert (sample.backend, sample.flip, sample.laterality, sample.for_processing) == ("auto", True, "content", "warn")
    assert sample.decode_scale == effective_scale("auto")


def test_a_data_root_with_a_tensor_index_is_read_as_a_cache(tmp_path):
    ld = _loader(reader=None, data_root=str(tmp_path))
    assert isinstance(ld.reader, SampleReader) and ld.data_root == str(tmp_path)  # no index: decode
    (tmp_path / "tensor_index.json").write_text("{}")
    with pytest.raises(ValueError, match="tensor_index.json"):
        DicomLoader(["a.dcm"], size=SIZE, device="cpu", data_root=str(tmp_path))


def test_a_cuda_loader_hands_out_its_batches_on_the_gpu():
    loader = types.SimpleNamespace(
        device="cuda", paths=["p0.dcm", "p1.dcm"], labels=np.array([0.5, 1.0], np.float32), failures=[], notes=[]
    )
    samples = [(1, np.full(SIZE, 1.0, np.float32), None), (0, np.zeros(SIZE, np.float32), None)]
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):  # here it asks torch for the GPU, which has none
            _host_batch(loader, samples)
        return
    b = _host_batch(loader, samples)
    assert [b[k].device.type for k in ("image", "label", "index")] == ["cuda"] * 3
    assert b["index"].tolist() == [1, 0] and b["label"].tolist() == [1.0, 0.5]
    assert torch.equal(b["image"].cpu(), torch.from_numpy(np.stack([samples[0][1], samples[1][1]])[:, None]))


def test_a_gpu_engine_gets_the_loaders_decoder_and_fail_rows():
    """(After this one nvImageCodec is imported: worker pools spawn instead of fork.)"""
    pytest.importorskip("nvidia.nvimgcodec")
    decoder = object()
    ld = DicomLoader(
        ["a.dcm", "b.dcm", "c.dcm"],
        size=SIZE,
        device="cpu",
        engine="nvimgcodec",
        decoder=decoder,
        fail_indices=np.array([2, 0]),
    )
    assert ld.decoder is decoder and ld.fail_indices == (2, 0)
    runner = ld.engine._make_runner(ld)  # made, not started: nothing runs
    assert runner.decoder is decoder and runner.fail_indices == {0, 2}


def test_a_gpu_engine_reads_in_worker_processes_and_decodes_at_full_resolution(caplog):
    """(Last in this file: it imports nvImageCodec, after which worker pools spawn instead of fork.)"""
    pytest.importorskip("nvidia.nvimgcodec")
    with caplog.at_level("WARNING", logger="dali_pipelines.loader"):
        ld = DicomLoader(["a.dcm"], size=SIZE, device="cpu", engine="nvimgcodec", workers=0, decode_scale="full")
        assert ld.workers == 1 and ld.effective_decode_scale() == "full"
        assert caplog.text == ""
        DicomLoader(["a.dcm"], size=SIZE, device="cpu", engine="nvimgcodec", decode_scale="auto")
        assert caplog.text == ""  # auto: nothing to say
        DicomLoader(["a.dcm"], size=SIZE, device="cpu", engine="nvimgcodec", decode_scale="1/2")
        assert "decode scale 1/2 applies to the cpu engine; the nvimgcodec engine decodes at full" in caplog.text
    assert _loader(workers=0).workers == 0  # the cpu engine may read in this process
