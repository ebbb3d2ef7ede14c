"""The DALI decode runner (:class:`dali_pipelines.pipelines.DecodeRunner`) on each device.

``cpu`` (DALI with ``device_id=None``; its CPU decoder has JPEG 2000 but no lossless JPEG)
always runs; ``cuda`` (DALI's ``mixed`` decoder, nvJPEG / nvJPEG2000) where a GPU is
present. Every decoded frame equals pydicom's ``pixel_array``; a failed batch is re-decoded
without losing a row; the frames handed to torch are the decoder's memory. The runners
start spawned worker processes (a few seconds each): one is shared by the module per device.
"""

from __future__ import annotations

import numpy as np
import pytest

from decode import syntax as TS
from tests.dali_cases import BAD, on_decoder, pydicom_pixels, write_all_cases
from tests.helpers import DEVICES, assert_pixels_equal, on_device, to_numpy

pytest.importorskip("nvidia.dali", reason="DALI is not installed (the GPU check's quick tier has none)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all_cases(str(tmp_path_factory.mktemp("dali_runner_cases")))


# Its tests carry xdist_group("dali_runner"): one worker starts the runner per device.
@pytest.fixture(scope="module", params=DEVICES)
def runner(request, files):
    from dali_pipelines.pipelines import DecodeRunner

    r = DecodeRunner(list(files.values()), batch_size=4, device=request.param, workers=2, threads=2)
    r.start()
    yield r
    r.close()


def _collect(runner, rows):
    samples, failed, batches = {}, {}, []
    for batch in runner.epoch(rows):
        batches.append([s.index for s in batch.samples] + [i for i, _ in batch.failed])
        samples.update({s.index: s for s in batch.samples})
        failed.update(dict(batch.failed))
    return samples, failed, batches


@pytest.mark.xdist_group("dali_runner")
def test_every_row_decodes_like_pydicom_or_fails_with_its_reason(runner, files):
    names = list(files)
    samples, failed, batches = _collect(runner, range(len(names)))
    assert sorted(list(samples) + list(failed)) == list(range(len(names)))  # every row accounted for
    assert [i for b in batches for i in b] == list(range(len(names)))  # row order kept
    assert all(len(b) <= 4 for b in batches) and len(batches) == -(-len(names) // 4)
    for i, name in enumerate(names):
        if name in BAD:
            assert i in failed and i not in samples, name
            continue
        s = samples[i]
        assert on_device(s.image, runner.device), (name, type(s.image))
        assert_pixels_equal(s.image, pydicom_pixels(files[name]), name)
        assert s.route == ("decoder" if on_decoder(name, runner.device) else "raw"), (name, s.route, s.message)
        if name.startswith("JLL") and runner.device == "cpu":
            assert "decoded on the CPU" in s.message
    assert "header says 30x" in failed[names.index("J2K_ROWS_MISMATCH")]


@pytest.mark.xdist_group("dali_runner")
def test_the_startup_probe_keeps_exactly_the_codecs_the_decoder_gets_right(runner):
    from decode.routing import GPU_SYNTAXES

    good = runner._probe(frozenset(GPU_SYNTAXES))
    assert {TS.JPEG2000_LOSSLESS, TS.HTJ2K_LOSSLESS} <= good
    # DALI's CPU decoder has no lossless JPEG; nvJPEG >= 13.0.2 decodes 9-15-bit lossless JPEG (not zeros)
    assert (TS.JPEG_LOSSLESS_SV1 in good) == (runner.device == "cuda")


@pytest.mark.xdist_group("dali_runner")
def test_epochs_follow_the_plan_order_and_a_short_last_batch(runner):
    rows = [5, 0, 9, 2, 7]  # a sampler's order, not sorted; 4 + 1 (padded) batches
    samples, failed, batches = _collect(runner, rows)
    assert batches == [[5, 0, 9, 2], [7]]
    assert not failed
    assert list(runner.epoch([])) == []  # an empty shard
    assert _collect(runner, [3])[2] == [[3]]
    assert runner.stats["rebuilds"] == 0


@pytest.mark.xdist_group("dali_runner")
def test_frames_reach_torch_without_a_copy(runner, files):
    import torch

    from dali_pipelines import handoff

    batch = next(iter(runner.epoch([0, 1])))
    images = batch.keep[0]  # the decoder's output TensorList, kept alive by the batch
    for j, s in enumerate(batch.samples):
        t = handoff.to_torch(s.image)
        assert handoff.data_ptr(images[j]) == handoff.data_ptr(s.image) == t.data_ptr()
        flat = t.reshape(-1)  # a view (the frame is contiguous)
        before = int(flat[0].to(torch.int32))
        flat[0] = (before + 1) % 256  # written through torch ...
        if runner.device == "cuda":
            torch.cuda.synchronize()
        assert int(to_numpy(s.image).reshape(-1)[0]) == (before + 1) % 256  # ... is in the decoder's buffer
        flat[0] = before


@pytest.mark.parametrize("device", DEVICES)
def test_a_failed_batch_is_redecoded_without_losing_a_row(files, device):
    from dali_pipelines.pipelines import DecodeRunner

    names = ["J2K_16_12_MONO2", "J2K_16_14_MONO1", "CORRUPT_TRUNCATED", "HTJ2K_16_12_MONO1"]  # one batch ...
    names += ["J2K_16_16_MONO2", "JLL_16_12_MONO1", "NATIVE_16_12_MONO2", "JLL_16_16_MONO2"]  # ... and the next
    paths = [files[n] for n in names]
    broken = [1, 3]  # codestreams the decoder is made to fail on, beside a truly damaged file (2)
    with DecodeRunner(paths, batch_size=4, device=device, workers=1, threads=1, fail_indices=broken) as r:
        pipe = r._pipe
        samples, failed, batches = _collect(r, range(len(paths)))
        assert r._pipe is pipe and r.stats["rebuilds"] == 0  # not rebuilt
    assert r.stats["batch_failures"] >= 1 and r.stats["cpu_fallback"] == len(broken)
    assert set(failed) == {2} and sorted(list(samples) + list(failed)) == list(range(len(paths)))
    assert [sorted(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for i in samples:
        assert_pixels_equal(samples[i].image, pydicom_pixels(paths[i]), names[i])
    assert {samples[i].route for i in broken} == {"cpu"}
    assert samples[0].route == "retry"  # the healthy neighbour is re-decoded on the decoder, alone
    assert "cpu" not in {samples[i].route for i in range(4, 8) if i not in broken}  # the next batch is untouched


def test_a_hung_read_in_a_dali_worker_costs_its_row_only(files):
    """DALI's source workers read each row in a contained child with a per-file timeout."""
    from dali_pipelines.pipelines import DecodeRunner
    from tests.engine_helpers import HangingPrepareRow

    names = ["J2K_16_12_MONO2", "J2K_16_16_MONO2", "HTJ2K_16_12_MONO1", "NATIVE_16_12_MONO2"]
    paths = tuple(files[n] for n in names)
    task = HangingPrepareRow(paths, hang_rows=frozenset({1}))
    with DecodeRunner(paths, batch_size=2, device="cpu", workers=1, threads=1, timeout=3, task=task) as r:
        samples, failed, batches = _collect(r, range(len(paths)))
        assert r.stats["rebuilds"] == 0
    assert list(failed) == [1] and "timed out after 3 s" in failed[1]
    assert batches == [[0, 1], [2, 3]]
    for i in (0, 2, 3):
        assert np.array_equal(samples[i].image, pydicom_pixels(paths[i])), names[i]
