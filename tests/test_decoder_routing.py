"""Which frames go to a GPU-engine decoder and which to the CPU branch, what the worker hands over,
and how a decoder's stretched output is undone (no decoder runs here)."""

from __future__ import annotations

import numpy as np
import pytest

from decode import syntax as TS
from decode.dicom import read_dicom
from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES, gpu_unsupported_reason
from tests.dali_cases import pydicom_pixels, write_all_cases


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all_cases(str(tmp_path_factory.mktemp("routing_cases")))


def test_route_rules_name_why_a_frame_goes_to_the_cpu(files):
    want_cpu = {
        "NATIVE_16_12_MONO2": "transfer syntax",
        "J2K_SIGNED_16_12": "signed",
        "J2K_8_8_MONO2": "Bits Allocated",
    }
    for name, path in files.items():
        if name == "CORRUPT_TRUNCATED":
            continue
        dfile = read_dicom(path)
        ts = dfile.meta.transfer_syntax
        cs = dfile.codestream() if ts in GPU_SYNTAXES else b""
        reason = gpu_unsupported_reason(dfile.meta, cs)
        if name in want_cpu:
            assert want_cpu[name] in reason, (name, reason)
        elif name == "J2K_ROWS_MISMATCH":
            assert "header says 30x" in reason
        else:
            assert reason is None, (name, reason)
        if ts == TS.JPEG_LOSSLESS_SV1:
            assert "decoded on the CPU" in gpu_unsupported_reason(dfile.meta, cs, CPU_SYNTAXES)


def test_records_carry_codestream_precision_and_syntax(files):
    from dali_pipelines.records import ROUTE_DECODER, ROUTE_RAW, I, prepare_sample
    from decode.backends.depth import SYNTAX_CODES

    rec = prepare_sample(files["J2K_16_14_MONO1"], 7)
    assert rec.route == ROUTE_DECODER and rec.info[I["index"]] == 7
    assert rec.info[I["precision"]] == 14 and SYNTAX_CODES[rec.info[I["syntax"]]] == TS.JPEG2000_LOSSLESS
    assert rec.info[I["monochrome1"]] == 1 and rec.params.dtype == np.float32
    rec = prepare_sample(files["JLL_16_12_MONO1"], 3, gpu_syntaxes=CPU_SYNTAXES)
    assert rec.route == ROUTE_RAW and rec.raw.shape[-1] == 1 and rec.raw.dtype == np.uint16
    assert np.array_equal(rec.raw[..., 0], pydicom_pixels(files["JLL_16_12_MONO1"]))


@pytest.mark.parametrize("precision", [9, 12, 14, 15, 16])
def test_stretched_decoder_output_is_undone_exactly(precision):
    from decode.backends.depth import classify, stretch, undo_stretch

    x = np.arange(1 << precision, dtype=np.uint16).reshape(-1, 1 << min(precision, 8))
    y = stretch(x, precision)  # what DALI's mixed decoder returns for a `precision`-bit frame
    if precision < 16:
        assert y.max() == 65535 and not np.array_equal(y, x)
        assert classify(y, x, precision) == "scaled"
    assert np.array_equal(undo_stretch(y.copy(), precision), x)
    assert classify(x, x, precision) == "exact"
    assert classify(np.zeros_like(x), x, precision) is None  # nvJPEG's all-zero lossless output
