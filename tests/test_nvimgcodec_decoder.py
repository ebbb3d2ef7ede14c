"""The nvImageCodec decoder (:class:`decode.backends.nvimgcodec_backend.NvImageCodecDecoder`) on each
device: ``cpu`` (its CPU_ONLY backends: JPEG 2000 family) always, ``cuda`` (nvJPEG2000, nvJPEG)
where a GPU is present. Every frame it returns equals pydicom's; a bad sample costs only itself."""

from __future__ import annotations

import numpy as np
import pytest

from decode.backends.probes import probe_codestreams
from decode.dicom import read_dicom
from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES
from tests.dali_cases import GPU_CASES, pydicom_pixels, write_all_cases
from tests.helpers import DEVICES, assert_pixels_equal, on_device

pytest.importorskip("nvidia.nvimgcodec", reason="nvImageCodec is not installed")

SYNTAXES = {"cpu": CPU_SYNTAXES, "cuda": GPU_SYNTAXES}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all_cases(str(tmp_path_factory.mktemp("nvimgcodec_cases")))


@pytest.mark.parametrize("device", DEVICES)
def test_the_probes_find_every_codec_this_device_decodes(device):
    from decode.backends.nvimgcodec_backend import NvImageCodecDecoder

    dec = NvImageCodecDecoder(device=device)
    assert dec.calibrate(SYNTAXES[device]) == frozenset(SYNTAXES[device]), dec.modes
    for ts, (cs, expected) in probe_codestreams(SYNTAXES[device]).items():
        assert_pixels_equal(dec.decode_exact([cs], [ts])[0], expected, ts)


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_decodes_exactly_and_a_bad_sample_costs_only_itself(files, device):
    from decode.backends.nvimgcodec_backend import NvImageCodecDecoder

    dec = NvImageCodecDecoder(device=device)
    dec.calibrate(SYNTAXES[device])
    names = [c.name for c in GPU_CASES if c.transfer_syntax in SYNTAXES[device]]
    dfiles = [read_dicom(files[n]) for n in names]
    streams = [d.codestream() for d in dfiles]
    syntaxes = [d.meta.transfer_syntax for d in dfiles]
    junk = b"\xff\x4f\xff\x51junk" * 8
    out = dec.decode_exact([*streams[:2], junk, *streams[2:]], [*syntaxes[:2], syntaxes[0], *syntaxes[2:]])
    assert out[2] is None  # the bad sample only
    for arr, name in zip(out[:2] + out[3:], names):
        assert on_device(arr, device), name
        assert_pixels_equal(arr, pydicom_pixels(files[name]), name)


def test_the_registry_backend_is_opt_in_and_falls_back_to_pydicom(files):
    from decode.backends import AUTO_ORDER, BACKENDS
    from decode.backends.nvimgcodec_backend import register
    from decode.decoding import decode_file

    assert "nvimgcodec" not in BACKENDS  # not at import: it cannot decode signed J2K
    order = list(AUTO_ORDER)
    try:
        assert register()
        assert AUTO_ORDER.index("nvimgcodec") > AUTO_ORDER.index("imagecodecs")
        dec = decode_file(files["J2K_16_14_MONO1"], "nvimgcodec", fallback=False)
        assert dec.backend == "nvimgcodec" and np.array_equal(dec.pixels, pydicom_pixels(files["J2K_16_14_MONO1"]))
        assert decode_file(files["JLL_16_12_MONO1"], "nvimgcodec").backend != "nvimgcodec"  # not its syntax
        signed = decode_file(files["J2K_SIGNED_16_12"], "nvimgcodec")  # fails in it, pydicom takes over
        assert signed.backend == "pydicom" and np.array_equal(signed.pixels, pydicom_pixels(files["J2K_SIGNED_16_12"]))
    finally:
        BACKENDS.pop("nvimgcodec", None)
        AUTO_ORDER[:] = order
