"""Regenerate the probe codestreams of ``decode/backends/probes.py`` (run by hand, not by the suite).

    python -m tests.make_probes > /tmp/constants.txt

JPEG 2000 and lossless JPEG are written at 12-bit precision by imagecodecs. No encoder at
hand writes HTJ2K below 16-bit precision (imagecodecs' OpenJPH binding has no bit-depth
option), so the HTJ2K probe is encoded at 16 bits with the DC level shift of 12-bit data
pre-applied (``x + 2^15 − 2^11``) and its SIZ precision byte then set to 12: the coded
coefficients are exactly those of a 12-bit image (``x − 2^11``), the quantisation (QCD)
simply allows four more bit planes than needed. OpenJPEG and OpenJPH decode it to ``x``
(``tests/test_gpu_routing.py`` checks that against the constants).
"""

from __future__ import annotations

import base64
import textwrap

import numpy as np

from decode import syntax as TS
from decode.backends.probes import PROBE_BITS, probe_pixels


def encode_all() -> dict:
    import imagecodecs

    x = probe_pixels()
    j2k = imagecodecs.jpeg2k_encode(x, level=0, codecformat="J2K", reversible=True, bitspersample=PROBE_BITS)
    jll = imagecodecs.jpeg8_encode(x, lossless=True, predictor=1, bitspersample=PROBE_BITS)
    shift = (1 << 15) - (1 << (PROBE_BITS - 1))
    ht = bytearray(imagecodecs.htj2k_encode((x.astype(np.int32) + shift).astype(np.uint16), level=0, reversible=True))
    assert ht[:4] == b"\xff\x4f\xff\x51" and ht[42] == 15  # SOC, SIZ; Ssiz = precision 16 - 1, unsigned
    ht[42] = PROBE_BITS - 1
    return {TS.JPEG2000_LOSSLESS: bytes(j2k), TS.JPEG_LOSSLESS_SV1: bytes(jll), TS.HTJ2K_LOSSLESS: bytes(ht)}


if __name__ == "__main__":
    for ts, cs in encode_all().items():
        print(f"{ts!r}: (")
        for line in textwrap.wrap(base64.b64encode(cs).decode(), 100):
            print(f'    "{line}"')
        print("),")
