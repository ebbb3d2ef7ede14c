"""Bad inputs: each gives one clear, typed, one-line error naming the file; the rest complete."""

from __future__ import annotations

import os

import numpy as np
import pytest

from decode.decoding import decode_file
from decode.errors import CorruptDicomError, DicomError, UnsupportedDicomError
from decode.testing.corpus import build_corpus
from training.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    good, bad, px = build_corpus(str(tmp_path_factory.mktemp("bad")))
    return {"good": list(good.values()), "bad": bad, "pixels": px}


def _names():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return sorted(build_corpus(d)[1])


@pytest.mark.parametrize("name", _names())
def test_bad_input_typed_one_line_error(name, corpus):
    path, expected = corpus["bad"][name]
    with pytest.raises(DicomError) as info:
        decode_file(path)
    err = info.value
    assert isinstance(err, expected), (type(err), str(err))
    assert err.path == path and str(err).startswith(path + ": ")
    assert "\n" not in str(err) and err.reason


def test_corpus_covers_the_issue_list(corpus):
    names = set(corpus["bad"])
    for must in (
        "empty",
        "not_dicom",
        "truncated_header",
        "truncated_j2k_500",
        "truncated_jll_500",
        "garbage_j2k",
        "garbage_jll",
        "no_pixel_data",
        "absurd_dims",
        "dims_disagree_j2k",
        "bits_stored_zero",
        "colour_rgb",
        "multi_frame",
        "unknown_syntax",
        "directory",
        "missing",
    ):
        assert must in names


def test_absurd_header_refused_before_allocation(corpus):
    with pytest.raises(UnsupportedDicomError, match="absurd dimensions 65535x65535"):
        decode_file(corpus["bad"]["absurd_dims"][0])


def test_good_files_still_exact(corpus):
    for p in corpus["good"]:
        assert np.array_equal(decode_file(p).pixels, corpus["pixels"])


def test_cli_decode_mixed_batch_reports_each_bad_file(corpus, tmp_path, capsys):
    bad = {k: p for k, (p, _) in corpus["bad"].items() if k != "directory"}  # a folder given is searched
    files = corpus["good"] + list(bad.values())
    rc = main(["decode", *files, "--out", str(tmp_path / "out"), "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    for p in bad.values():
        assert f"error: {p}: " in err, p
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == len(bad)
    assert f"{len(corpus['good'])} ok, {len(bad)} failed, 0 unaccounted" in err
    for p in corpus["good"]:
        stem = os.path.splitext(os.path.basename(p))[0]
        assert np.array_equal(np.load(tmp_path / "out" / f"{stem}.npy"), corpus["pixels"])


def test_cli_decode_folder_of_broken_files_names_every_one(corpus, tmp_path, capsys):
    import shutil

    folder = tmp_path / "broken"
    folder.mkdir()
    names = []
    for p, _ in corpus["bad"].values():
        if os.path.isfile(p) and not os.path.islink(p):
            shutil.copy(p, folder / os.path.basename(p))
            names.append(os.path.basename(p))
    rc = main(["decode", str(folder), "--out", str(tmp_path / "o"), "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    for n in names:
        assert f"{folder / n}: " in err
    assert f"0 ok, {len(names)} failed, 0 unaccounted" in err


def test_errors_pickle_round_trip():
    import pickle

    e = CorruptDicomError("/x/y.dcm", "bad\nthing")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is CorruptDicomError and e2.path == "/x/y.dcm" and e2.reason == "bad thing"


def test_an_unknown_backend_is_the_callers_mistake_not_the_files(tmp_path):
    from decode.errors import UsageError
    from decode.sample import read_sample
    from decode.testing.synth import write_dicom

    path = write_dicom(str(tmp_path / "ok.dcm"), np.zeros((8, 6), np.uint16), bits_stored=12)
    with pytest.raises(UsageError, match="unknown backend 'nope'; allowed: auto"):
        decode_file(path, "nope")
    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        read_sample(path, backend="nope")
    from dali_pipelines.loader import DicomLoader

    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        DicomLoader([path], size=(8, 6), backend="nope", device="cpu")
