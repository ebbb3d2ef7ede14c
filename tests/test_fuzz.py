"""Fuzzing read + decode on every CPU backend: truncations, bit flips, garbage, header edits.

Every mutated input must end as a clean DicomError or as pixels; no backend of the default
path may crash or hang its worker (other backends' native crashes are contained and
counted); outside corrupt entropy-coded data, decoded pixels must equal pydicom's.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from decode.testing.fuzz import HEADER_EDITS, Mutation, fuzz_sources, run_fuzz

header_edits = st.sampled_from([(k, v) for k, vs in sorted(HEADER_EDITS.items()) for v in vs])
mutations = st.one_of(
    st.builds(Mutation, kind=st.just("truncate"), where=st.floats(0.0, 0.999)),
    st.builds(
        Mutation,
        kind=st.sampled_from(["flip", "garbage"]),
        where=st.floats(0.0, 1.0),
        count=st.sampled_from([1, 4, 64]),
    ),
    header_edits.map(lambda kv: Mutation("header", key=kv[0], value=kv[1])),
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return fuzz_sources(str(tmp_path_factory.mktemp("fuzz_src")))


def _check(sources, muts, folder):
    counts, problems = run_fuzz(sources, muts, folder, workers=2, timeout=20)
    assert not problems, problems  # no crash or hang on the default path, no mismatch
    assert counts["inputs"] == len(muts) and counts["checks"] > 0
    return counts


# Each example is a batch of 25 inputs; shrinking a batch is slow and the problems list
# already names each failing mutation, so no shrink phase.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


@settings(max_examples=4, deadline=None, derandomize=True, phases=NO_SHRINK, suppress_health_check=list(HealthCheck))
@given(muts=st.lists(mutations, min_size=25, max_size=25))
def test_fuzz_read_decode_all_backends(sources, muts, tmp_path_factory):
    _check(sources, muts, str(tmp_path_factory.mktemp("fuzz")))


def test_header_edits_exhaustive(sources, tmp_path):
    muts = [Mutation("header", key=k, value=v) for k, vs in sorted(HEADER_EDITS.items()) for v in vs]
    counts = _check(sources, muts, str(tmp_path))
    assert counts["error"] > 0 and counts["exact"] > 0


def test_truncation_at_many_offsets(sources, tmp_path):
    muts = [Mutation("truncate", where=k / 40) for k in range(40)]
    counts = _check(sources, muts, str(tmp_path))
    assert counts["lenient"] == 0  # a truncated file never decodes where pydicom refuses


#: Batches of 40 mutated inputs that test_fuzz_long tries. The default (3: 120 inputs) keeps
#: ``make test`` short; the long run, ``RSNA_MAMMO_FUZZ_EXAMPLES=12`` or more (as CONTRIBUTING.md
#: says), tries four times as many (480 inputs; derandomized, so the same ones every run) and is
#: what to run after changing a decode path or the reader. ``rsna-mammo bench reliability --fuzz N`` is
#: the longest run (1000 inputs by default).
FUZZ_EXAMPLES = int(os.environ.get("RSNA_MAMMO_FUZZ_EXAMPLES", "3"))


@pytest.mark.slow
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=NO_SHRINK,
    suppress_health_check=list(HealthCheck),
)
@given(muts=st.lists(mutations, min_size=40, max_size=40))
def test_fuzz_long(sources, muts, tmp_path_factory):
    """Longer lists, more of them: see FUZZ_EXAMPLES for the size and the long run."""
    _check(sources, muts, str(tmp_path_factory.mktemp("fuzz_long")))


def check_reduced(path: str) -> str:
    """A mutated file through the reduced-resolution chain: ``error``, ``ok``, or ``lenient`` (an
    image where pydicom refuses the file). Runs in a contained worker."""
    import warnings

    import pydicom

    from decode.errors import DicomError
    from decode.sample import read_sample

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = read_sample(path, size=(16, 12), decode_scale="1/2")
        except DicomError:
            return "error"
        assert res.pre.image.shape == (16, 12) and 0.0 <= res.pre.image.min() <= res.pre.image.max() <= 1.0
        try:
            _ = pydicom.dcmread(path).pixel_array
        except Exception:
            return "lenient"
        return "ok"


def test_reduced_decode_survives_mutated_jpeg2000(sources, tmp_path):
    """Truncations, bit flips, garbage and header edits of JPEG 2000 files through ``--decode-scale 1/2``:
    a one-line error or an image, never a crash or hang; a truncated file never decodes where pydicom refuses."""
    import random

    from decode.parallel import map_files
    from decode.testing.fuzz import mutate

    j2k = [s for s in sources if b"1.2.840.10008.1.2.4.90" in s[:400]]
    assert len(j2k) == 2
    rng = random.Random(17)
    muts = [Mutation("truncate", where=k / 30) for k in range(30)]
    muts += [
        Mutation(rng.choice(["flip", "garbage"]), where=rng.random(), count=rng.choice([1, 4, 64])) for _ in range(30)
    ]
    muts += [Mutation("header", key=k, value=v) for k, vs in sorted(HEADER_EDITS.items()) for v in vs]
    paths = []
    for k, m in enumerate(muts):
        path = str(tmp_path / f"m{k:03d}.dcm")
        with open(path, "wb") as f:
            f.write(mutate(j2k[k % 2], m, seed=k))
        paths.append(path)
    outcomes, problems = {}, []
    for path, ok, res in map_files(check_reduced, paths, workers=2, timeout=20):
        m = muts[paths.index(path)]
        if not ok:
            problems.append(f"{m.describe()}: {res.reason}")  # crashed, hung or a failed assertion
            continue
        outcomes[res] = outcomes.get(res, 0) + 1
        if res == "lenient" and m.kind in ("truncate", "header"):
            problems.append(f"{m.describe()}: decoded at 1/2 a file pydicom refuses")
    assert not problems, problems
    assert outcomes.get("error", 0) > 0 and outcomes.get("ok", 0) > 0
