"""Benchmark suite: result schema, exactness gate, report, and small real runs of every bench."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re

import numpy as np
import pytest

from benchmarks import schema
from benchmarks.schema import BenchResult

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(**kw) -> BenchResult:
    base = dict(
        stage="decode",
        backend="auto",
        device="cpu",
        transfer_syntax="1.2.840.10008.1.2.4.90",
        height=64,
        width=48,
        images=2,
        images_per_s=10.0,
        mpix_per_s=0.03,
        spread=0.1,
        workers=2,
        batch_size=1,
        peak_host_mb=100.0,
        peak_gpu_mb=None,
        exact=True,
    )
    base.update(kw)
    return BenchResult(**base)


def _machine() -> dict:
    return {
        "cpu": "AMD EPYC",
        "cpu_count": 2,
        "cpus_usable": 2,
        "gpu": None,
        "gpu_count": 0,
        "driver": None,
        "cuda": None,
        "python": "3.11.7",
        "versions": {"pydicom": "3.0"},
        "git_commit": "0" * 40,
        "git_dirty": False,
        "date": "2026-11-27T10:00:00+00:00",
    }


@pytest.fixture
def decode_doc() -> dict:
    """A decode result document as `bench decode` writes it, one backend failing the gate."""
    j2k, ljpeg = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"
    rows = []
    for ts, scale in ((j2k, 1.0), (ljpeg, 6.0)):
        rows += [
            _row(stage="baseline", backend="pydicom", transfer_syntax=ts, workers=1, images_per_s=1.0 * scale),
            _row(stage="baseline", backend="dicomsdl", transfer_syntax=ts, workers=1, images_per_s=1.1 * scale),
            _row(backend="auto", transfer_syntax=ts, workers=2, images_per_s=2.0 * scale),
            _row(backend="auto", transfer_syntax=ts, workers=1, images_per_s=1.2 * scale),
            _row(backend="imagecodecs", transfer_syntax=ts, workers=1, images_per_s=1.2 * scale),
            _row(
                backend="broken",
                transfer_syntax=ts,
                workers=1,
                images_per_s=None,
                mpix_per_s=None,
                spread=None,
                peak_host_mb=None,
                exact=False,
            ),
        ]
    return schema.make_document(_machine(), {"command": "bench decode"}, rows)


# --- schema --------------------------------------------------------------------------------


def test_schema_rows_have_exactly_the_issue_fields(decode_doc):
    assert schema.ROW_FIELDS == (
        "stage",
        "backend",
        "device",
        "transfer_syntax",
        "height",
        "width",
        "images",
        "images_per_s",
        "mpix_per_s",
        "spread",
        "workers",
        "batch_size",
        "peak_host_mb",
        "peak_gpu_mb",
        "exact",
    )
    doc = json.loads(json.dumps(decode_doc))
    rows = schema.validate(doc)
    assert len(rows) == 12 and all(isinstance(r, BenchResult) for r in rows)
    assert set(doc) == {"machine", "config", "results"}


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(stage="warp"), "stage 'warp' is not one of: baseline, decode"),
        (dict(device="tpu"), "device 'tpu' is not one of: cpu, cuda"),
        (dict(workers=0), "workers"),
        (dict(images_per_s=-1.0), "images_per_s"),
        (dict(exact="yes"), "exact"),
        (dict(exact=False), "no speed"),
    ],
)
def test_schema_rejects_bad_rows(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _row(**change)


def test_validate_names_the_problem(decode_doc):
    bad = json.loads(json.dumps(decode_doc))
    bad["results"][3]["extra"] = 1
    with pytest.raises(ValueError, match=r"results\[3\].*unexpected \['extra'\]"):
        schema.validate(bad)
    bad = json.loads(json.dumps(decode_doc))
    del bad["machine"]["git_commit"]
    with pytest.raises(ValueError, match="git_commit"):
        schema.validate(bad)
    with pytest.raises(ValueError, match="lacks results"):
        schema.validate({"machine": {}, "config": {}})


def test_dump_is_atomic_json_and_loads(tmp_path, decode_doc):
    path = schema.dump(decode_doc, str(tmp_path / "r.json"))
    assert schema.load(path) == json.loads(json.dumps(decode_doc))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not JSON"):
        schema.load(str(tmp_path / "bad.json"))


def test_machine_record_and_slug():
    from benchmarks.machine import expand_path, machine_record, machine_slug

    rec = machine_record(with_torch=False)
    assert all(k in rec for k in schema.MACHINE_KEYS)
    assert rec["versions"]["pydicom"] and rec["cpu_count"] >= 1
    assert re.fullmatch(r"[a-z0-9-]+", machine_slug(rec))
    assert machine_slug({**rec, "cpu": "AMD EPYC 7B13", "cpus_usable": 2, "gpu": None}) == "cpu-2core-epyc"
    assert (
        machine_slug(
            {
                "cpu": "Intel(R) Xeon(R) Platinum 8480+",
                "cpus_usable": 16,
                "gpu": "NVIDIA H100 80GB HBM3",
                "gpu_count": 1,
            }
        )
        == "h100x1-16core-xeon"
    )
    assert (
        expand_path("r/{machine}-{date}.json", {"cpu": "AMD EPYC", "cpus_usable": 2, "date": "2026-11-27T10:00:00"})
        == "r/cpu-2core-epyc-2026-11-27.json"
    )


def test_nothing_in_the_library_imports_benchmarks():
    offenders = []
    for pkg in ("decode", "dali_pipelines", "training"):
        for path in glob.glob(os.path.join(REPO, pkg, "**", "*.py"), recursive=True):
            text = open(path, encoding="utf-8").read()
            if re.search(r"^\s*(from|import)\s+benchmarks\b", text, re.M):
                offenders.append(path)
    assert offenders == []


# --- the exactness gate, on real files with a real (deliberately wrong) backend -----------


@pytest.fixture(scope="module")
def tiny_codec_files(tmp_path_factory):
    from benchmarks.synthdata import synthesize

    cache = str(tmp_path_factory.mktemp("bench_cache"))
    return cache, synthesize(cache, size=(64, 48), files=2, workers=1, progress=False)


@pytest.fixture
def wrong_backend(monkeypatch):
    """A real imagecodecs decode with every pixel off by one, registered under a name (removed after).

    The registration exists in this process only: worker pools fork for the test, so that
    their workers inherit it (with CuPy, DALI or nvImageCodec imported by an earlier test,
    pools would otherwise spawn fresh interpreters without it).
    """
    import multiprocessing

    from decode import parallel
    from decode.backends import AUTO_ORDER, BACKENDS, Backend, register_backend

    monkeypatch.setattr(parallel, "_context", lambda: multiprocessing.get_context("fork"))
    from decode.backends.codecs import decode_imagecodecs
    from decode.syntax import J2K_FAMILY, LOSSLESS_JPEG

    def off_by_one(dfile):
        return decode_imagecodecs(dfile).astype(np.uint16) + 1

    made = []

    def register(first: bool = False) -> str:
        register_backend(
            Backend(
                "wrong_plus_one",
                frozenset(J2K_FAMILY | LOSSLESS_JPEG),
                ("imagecodecs",),
                off_by_one,
                "test: wrong on purpose",
            ),
            first=first,
        )
        made.append(1)
        return "wrong_plus_one"

    order = list(AUTO_ORDER)
    yield register
    BACKENDS.pop("wrong_plus_one", None)
    AUTO_ORDER[:] = order


def test_exactness_gate_flags_a_wrong_backend(tiny_codec_files, wrong_backend):
    from benchmarks.decode_bench import bench_group, scan

    _cache, made = tiny_codec_files
    name = wrong_backend(first=False)
    groups, errors = scan([p for ps in made.values() for p in ps])
    assert errors == [] and len(groups) == 2
    for group in groups.values():
        rows, _ = bench_group(group, backends=["auto", "imagecodecs", name], workers=1, repeats=1)
        by = {(r.stage, r.backend, r.workers): r for r in rows}
        wrong = by[("decode", name, 1)]
        assert wrong.exact is False and wrong.images_per_s is None and wrong.mpix_per_s is None
        for key in (
            ("baseline", "pydicom", 1),
            ("baseline", "dicomsdl", 1),
            ("decode", "auto", 1),
            ("decode", "imagecodecs", 1),
        ):
            assert by[key].exact is True and by[key].images_per_s > 0, key


def test_exactness_gate_flags_auto_when_auto_picks_a_wrong_backend(tiny_codec_files, wrong_backend):
    """Made the first choice of ``auto``, the wrong backend fails the default pool row too."""
    from benchmarks.decode_bench import bench_group, scan

    _cache, made = tiny_codec_files
    wrong_backend(first=True)
    groups, _ = scan(made["1.2.840.10008.1.2.4.90"])
    rows, configs = bench_group(groups["1.2.840.10008.1.2.4.90"], backends=["auto"], workers=2, repeats=1)
    autos = [r for r in rows if r.backend == "auto"]
    assert {r.workers for r in autos} == {1, 2}
    assert all(r.exact is False and r.images_per_s is None for r in autos)
    assert all(r.exact for r in rows if r.stage == "baseline")


# --- small real runs --------------------------------------------------------------------------


def test_bench_decode_small_run_writes_valid_json(tmp_path, tiny_codec_files, capsys):
    from training.cli import main

    cache, _ = tiny_codec_files
    rc = main(
        [
            "bench",
            "decode",
            "--size",
            "64x48",
            "--files",
            "2",
            "--repeats",
            "1",
            "--cache",
            cache,
            "--no-progress",
            "--json",
            str(tmp_path / "{machine}-{date}-decode.json"),
        ]
    )
    assert rc == 0
    [path] = glob.glob(str(tmp_path / "cpu-*core-*-????-??-??-decode.json")) or glob.glob(
        str(tmp_path / "*-decode.json")
    )
    doc = schema.load(path)
    rows = schema.validate(doc)
    for ts in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"):
        mine = [r for r in rows if r.transfer_syntax == ts and "@" not in r.backend]
        assert {r.backend for r in mine if r.stage == "baseline"} == {"pydicom", "dicomsdl"}
        assert any(r.backend == "auto" and r.workers == doc["config"]["workers"] for r in mine)
        assert all(r.exact and r.images_per_s > 0 and r.height == 64 and r.width == 48 for r in mine)
    assert set(doc["summary"]["ratios"]) == {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"}
    # reduced-resolution rows for JPEG 2000 only: one core, no pydicom reference, frame size kept
    reduced = [r for r in rows if "@" in r.backend]
    assert [r.backend for r in reduced] == ["openjpeg@1/2", "openjpeg@1/4", "openjpeg@1/8"]
    assert all(r.transfer_syntax == "1.2.840.10008.1.2.4.90" and r.exact is None and r.workers == 1 for r in reduced)
    assert all(r.images_per_s > 0 and (r.height, r.width) == (64, 48) for r in reduced)
    assert set(doc["summary"]["reduced"]["vs_auto_per_core"]["1.2.840.10008.1.2.4.90"]) == {"1/2", "1/4", "1/8"}
    assert "@" not in doc["summary"]["ratios"]["1.2.840.10008.1.2.4.90"]["fastest_single"]
    assert "x pydicom" in capsys.readouterr().out


def test_bench_decode_refuses_unknown_backend_and_cuda(tiny_codec_files, capsys):
    from training.cli import main

    cache, _ = tiny_codec_files
    assert (
        main(
            [
                "bench",
                "decode",
                "--size",
                "64x48",
                "--files",
                "2",
                "--cache",
                cache,
                "--backends",
                "nope",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "unknown backend(s) nope; allowed: auto, native" in capsys.readouterr().err
    assert main(["bench", "decode", "--device", "cuda", "--no-progress"]) == 2
    assert "Allowed here: --device auto, cpu" in capsys.readouterr().err


def test_report_renders_table_and_plot_from_fixture(tmp_path, decode_doc, capsys):
    from training.cli import main

    src = schema.dump(decode_doc, str(tmp_path / "cpu-2core-epyc-2026-11-27-decode.json"))
    out = tmp_path / "report"
    assert main(["bench", "report", src, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| stage | codec | backend |" in md and "pydicom (baseline)" in md and "dicomsdl (baseline)" in md
    assert "**WRONG**" in md and "2.00×" in md
    assert "j2k-lossless: the default (`auto`, 2 workers) decodes 2.00× the serial pydicom loop" in md
    png = (out / "decode.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "![decode images/s" in capsys.readouterr().out
    # a file that is not a result document: one line naming it, the others still render, exit 1
    (tmp_path / "other.json").write_text(json.dumps({"machine": {}, "config": {}}))
    assert main(["bench", "report", src, str(tmp_path / "other.json"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "other.json: result document lacks results" in err and "report.md" in err


def _pipeline_doc(command: str = "bench pipeline") -> dict:
    """Loader-stage rows as `bench pipeline` writes them (JPEG 2000 with its reduced rows, lossless JPEG)."""
    j2k, ljpeg = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"
    rows = []
    for ts, decode_rate in ((j2k, 1.0), (ljpeg, 16.9)):
        rows += [
            _row(stage="read", backend="auto", transfer_syntax=ts, workers=1, images_per_s=206.0, exact=None),
            _row(stage="decode", backend="imagecodecs", transfer_syntax=ts, workers=1, images_per_s=decode_rate),
            _row(stage="voi", backend="numpy", transfer_syntax=ts, workers=1, images_per_s=98.6, exact=None),
            _row(stage="crop", backend="numpy", transfer_syntax=ts, workers=1, images_per_s=246.0, exact=None),
            _row(stage="resize", backend="numpy", transfer_syntax=ts, workers=1, images_per_s=54.3, exact=None),
            _row(stage="collate", backend="torch", transfer_syntax=ts, workers=1, images_per_s=10649.0, exact=None),
            _row(stage="loader", backend="auto", transfer_syntax=ts, workers=2, images_per_s=11.8, exact=None),
        ]
    # reduced-resolution rows come after the full-resolution ones of JPEG 2000 in bench pipeline's output
    rows.insert(2, _row(stage="decode", backend="openjpeg@auto", transfer_syntax=j2k, workers=1, images_per_s=8.0))
    rows.insert(8, _row(stage="loader", backend="auto@auto", transfer_syntax=j2k, workers=2, images_per_s=5.5))
    return schema.make_document(_machine(), {"command": command}, rows)


def _e2e_doc() -> dict:
    """A `bench infer --e2e` document: stage rows, the models in memory and predict end to end per variant."""
    ts = "1.2.840.10008.1.2.4.70"
    doc = _pipeline_doc("bench infer --e2e")
    doc["results"] = [r for r in doc["results"] if r["transfer_syntax"] == ts and r["stage"] != "collate"]
    for variant, model, e2e in (("eager", 40.0, 10.0), ("compiled", 80.0, 11.0), ("onnx", 8.0, 6.0)):
        row = _row(stage="infer", backend=f"memory-{variant}", transfer_syntax=None, images_per_s=model, exact=None)
        doc["results"].append(dataclasses.asdict(row))
        row = _row(stage="e2e", backend=variant, transfer_syntax=ts, images_per_s=e2e, exact=None)
        doc["results"].append(dataclasses.asdict(row))
    return doc


def test_pipeline_chart_bars_follow_the_loader_order_and_mark_the_bottleneck():
    from benchmarks.report_charts import pipeline_bars

    panels = pipeline_bars([("p.json", _pipeline_doc())])
    assert list(panels) == ["cpu-2core-epyc 2026-11-27 — jpeg-ll-sv1", "cpu-2core-epyc 2026-11-27 — j2k-lossless"]
    j2k = panels["cpu-2core-epyc 2026-11-27 — j2k-lossless"]
    assert [(b.label, b.images_per_s, b.kind) for b in j2k] == [
        ("read", 206.0, "stage"),
        ("decode (imagecodecs)", 1.0, "bottleneck"),
        ("decode openjpeg@auto", 8.0, "reduced"),  # faster than the full decode, never the bottleneck
        ("voi", 98.6, "stage"),
        ("crop", 246.0, "stage"),
        ("resize", 54.3, "stage"),
        ("collate", 10649.0, "stage"),
        ("loader auto, 2 workers", 11.8, "loader"),
        ("loader auto@auto, 2 workers", 5.5, "reduced"),
    ]
    # lossless JPEG: decode (16.9) is no longer the slowest; the loader (11.8) is never the bottleneck
    ljpeg = panels["cpu-2core-epyc 2026-11-27 — jpeg-ll-sv1"]
    assert [b.label for b in ljpeg if b.kind == "bottleneck"] == ["decode (imagecodecs)"]
    slow_resize = _pipeline_doc()
    for r in slow_resize["results"]:
        if r["stage"] == "resize" and r["transfer_syntax"].endswith(".70"):
            r["images_per_s"] = 16.8
    ljpeg = pipeline_bars([("p.json", slow_resize)])["cpu-2core-epyc 2026-11-27 — jpeg-ll-sv1"]
    assert [b.label for b in ljpeg if b.kind == "bottleneck"] == ["resize"]


def test_e2e_chart_groups_loader_model_and_predict_per_variant():
    from benchmarks.report_charts import e2e_groups, pipeline_bars

    docs = [("e.json", _e2e_doc())]
    groups = e2e_groups(docs)["cpu-2core-epyc 2026-11-27 — jpeg-ll-sv1"]
    assert [(g.variant, g.loader, g.model, g.e2e) for g in groups] == [
        ("eager", 11.8, 40.0, 10.0),
        ("compiled", 11.8, 80.0, 11.0),
        ("onnx", 11.8, 8.0, 6.0),
    ]
    # overlap efficiency: end to end over the slower of loader and model, as summary.e2e has it
    assert [g.overlap for g in groups] == [round(10.0 / 11.8, 3), round(11.0 / 11.8, 3), 0.75]
    assert list(pipeline_bars(docs)) == ["cpu-2core-epyc 2026-11-27 — jpeg-ll-sv1"]  # its stage rows too
    assert e2e_groups([("p.json", _pipeline_doc())]) == {}


def test_report_draws_pipeline_and_e2e_charts(tmp_path, decode_doc, capsys):
    from tests.pictures import check_png
    from training.cli import main

    decode = schema.dump(decode_doc, str(tmp_path / "d.json"))
    out = tmp_path / "only-decode"
    assert main(["bench", "report", decode, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["decode.png", "report.md"]
    pipe = schema.dump(_pipeline_doc(), str(tmp_path / "p.json"))
    e2e = schema.dump(_e2e_doc(), str(tmp_path / "e.json"))
    out = tmp_path / "all"
    assert main(["bench", "report", decode, pipe, e2e, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["decode.png", "e2e.png", "pipeline.png", "report.md"]
    md = (out / "report.md").read_text()
    assert "](pipeline.png)" in md and "](e2e.png)" in md and "](decode.png)" in md
    w, h = check_png(out / "pipeline.png", min_size=(600, 300))
    assert h > w / 2  # three panels (two codecs of the pipeline run, one of the e2e run): two rows
    check_png(out / "e2e.png", min_size=(500, 300))
    assert "e2e.png" in capsys.readouterr().err


def test_decode_summary_ratios(decode_doc):
    from benchmarks.decode_bench import decode_summary

    rows = schema.validate(decode_doc)
    rows.append(
        _row(
            backend="nvjpeg",
            device="cuda",
            transfer_syntax="1.2.840.10008.1.2.4.70",
            workers=1,
            batch_size=16,
            images_per_s=60.0,
        )
    )
    s = decode_summary(rows)["1.2.840.10008.1.2.4.70"]
    assert s["default_vs_pydicom"] == 2.0 and s["default_workers"] == 2 and s["per_core_vs_pydicom"] == 1.2
    assert s["fastest_single"] == "imagecodecs" and s["per_core_vs_fastest_single"] == 1.0
    assert s["gpu_best"] == "nvjpeg (batch 16)" and s["gpu_vs_pydicom"] == 10.0


def test_bench_speedup_small_run_through_the_cli(tmp_path, tiny_codec_files):
    """``rsna-mammo bench speedup`` in-process: both rows per codec, exact, path template filled in."""
    from benchmarks.machine import machine_slug
    from training.cli import main

    cache, _ = tiny_codec_files
    argv = ["bench", "speedup", "--size", "64x48", "--files", "2", "--repeats", "1", "--cache", cache]
    assert main([*argv, "--json", str(tmp_path / "{machine}-{date}-speedup.json")]) == 0
    (out,) = tmp_path.glob("*-speedup.json")
    doc = schema.load(str(out))
    assert out.name == f"{machine_slug(doc['machine'])}-{doc['machine']['date'][:10]}-speedup.json"
    assert "{" not in out.name
    rows = schema.validate(doc)
    assert {(r.stage, r.backend) for r in rows} == {("baseline", "pydicom"), ("decode", "auto")}
    assert all(r.exact for r in rows) and len(rows) == 4
    assert set(doc["summary"]["speedup_vs_pydicom"]) == {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"}
    assert doc["config"]["command"] == "decode-speedup"  # what `bench report` knows as a decode run
    assert doc["config"]["options"]["bench_command"] == "speedup"


def test_bench_pipeline_small_run(tmp_path, tiny_dataset):
    from training.cli import main

    out = tmp_path / "pipe.json"
    assert (
        main(
            [
                "bench",
                "pipeline",
                "--data",
                tiny_dataset,
                "--limit",
                "2",
                "--size",
                "32x24",
                "--batch-size",
                "2",
                "--repeats",
                "1",
                "--workers",
                "1",
                "--device",
                "cpu",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    doc = schema.load(str(out))
    rows = schema.validate(doc)
    stages = {r.stage for r in rows}
    assert {"read", "decode", "voi", "crop", "resize", "collate", "loader"} <= stages
    assert all(r.images_per_s and r.images_per_s > 0 for r in rows)
    loader = [r for r in rows if r.stage == "loader"]
    assert all(r.images == 2 and r.height == 32 and r.width == 24 for r in loader)
    assert doc["config"]["engine"] == "cpu" and {r.backend for r in loader} == {"auto", "auto@auto"}
    # JPEG 2000 also gets the --decode-scale auto rows: its decode and a second loader row
    j2k = "1.2.840.10008.1.2.4.90"
    assert [r.backend for r in rows if r.transfer_syntax == j2k and r.stage == "decode"][1:] == ["openjpeg@auto"]
    assert [r.backend for r in loader if r.transfer_syntax == j2k] == ["auto", "auto@auto"]
    assert all("@" not in r.backend for r in rows if r.transfer_syntax != j2k)
    s = doc["summary"]["stages"][j2k]
    assert s["loader_auto_vs_full"] > 0 and s["bottleneck"] != "openjpeg@auto"
    # bench report draws the stages of this real run
    assert main(["bench", "report", str(out), "--out", str(tmp_path / "report")]) == 0
    from tests.pictures import check_png

    check_png(tmp_path / "report" / "pipeline.png", min_size=(600, 300))


def test_bench_train_and_infer_small_run(tmp_path, tiny_dataset):
    from training.cli import main

    out = tmp_path / "train.json"
    common = [
        "--model",
        "test_resnet",
        "--size",
        "64x32",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--device",
        "cpu",
    ]
    loader = ["--data", tiny_dataset, "--workers", "1", "--engine", "nvimgcodec"]
    assert main(["bench", "train", *common, *loader, "--json", str(out)]) == 0
    doc = schema.load(str(out))
    rows = schema.validate(doc)
    assert [(r.stage, r.backend) for r in rows] == [("train", "memory"), ("train", "loader")]
    assert all(r.images == 2 and r.images_per_s > 0 for r in rows)
    assert doc["summary"]["loader_vs_memory"] > 0 and doc["config"]["model"] == "test_resnet"
    assert doc["config"]["engine"] == "nvimgcodec"
    out = tmp_path / "infer.json"
    assert main(["bench", "infer", *common, "--no-loader", "--json", str(out)]) == 0
    assert [(r.stage, r.backend) for r in schema.validate(schema.load(str(out)))] == [("infer", "memory")]


@pytest.mark.gpu
def test_bench_pipeline_and_infer_on_gpu(tmp_path, tiny_dataset):
    from training.cli import main

    out = tmp_path / "pipe.json"
    assert (
        main(
            [
                "bench",
                "pipeline",
                "--data",
                tiny_dataset,
                "--limit",
                "2",
                "--size",
                "32x24",
                "--batch-size",
                "2",
                "--repeats",
                "1",
                "--workers",
                "1",
                "--device",
                "cuda",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rows = schema.validate(schema.load(str(out)))
    h2d = [r for r in rows if r.stage == "h2d"]
    assert h2d and all(r.device == "cuda" and r.images_per_s > 0 for r in h2d)
    out = tmp_path / "infer.json"
    assert (
        main(
            [
                "bench",
                "infer",
                "--model",
                "test_resnet",
                "--size",
                "64x32",
                "--batch-size",
                "2",
                "--steps",
                "2",
                "--repeats",
                "1",
                "--device",
                "cuda",
                "--data",
                tiny_dataset,
                "--workers",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rows = schema.validate(schema.load(str(out)))
    assert all(r.device == "cuda" and r.peak_gpu_mb is not None for r in rows)


#: Every benchmark is a `rsna-mammo bench` subcommand; these were stand-alone scripts before.
BENCH_MODULES = {
    "decode": "benchmarks.decode_bench",
    "pipeline": "benchmarks.pipeline_bench",
    "train": "benchmarks.model_bench",
    "infer": "benchmarks.model_bench",
    "speedup": "benchmarks.decode_speedup",
    "caches": "benchmarks.prepare_bench",
    "reduced": "benchmarks.reduced_bench",
    "reliability": "benchmarks.reliability",
    "train-reference": "benchmarks.train_reference",
    "report": "benchmarks.report",
}


def test_every_benchmark_is_a_registered_subcommand_with_add_arguments_and_run():
    import importlib

    from benchmarks.cli import SUBCOMMANDS

    assert {name: module for name, (module, _help) in SUBCOMMANDS.items()} == BENCH_MODULES
    for module in set(BENCH_MODULES.values()):
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), module
        assert not hasattr(mod, "main"), f"{module}: one entry point, `rsna-mammo bench`"
        with open(mod.__file__, encoding="utf-8") as f:
            assert "__main__" not in f.read(), f"{module}: run it as `rsna-mammo bench`, not `python -m`"


def test_bench_help_lists_every_subcommand(capsys):
    from training.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in BENCH_MODULES:
        assert name in out
        with pytest.raises(SystemExit) as e:
            main(["bench", name, "--help"])
        assert e.value.code == 0
        assert f"usage: rsna-mammo bench {name}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["speedup", "--repeats", "0"], "--repeats must be >= 1"),
        (["speedup", "--files", "0"], "--files must be >= 1"),
        (["caches", "--size", "2048"], "size '2048' is not HxW"),
        (["caches", "--repeats", "0"], "--repeats must be >= 1"),
        (["reduced", "--batch-size", "0"], "--batch-size and --holdout-patients must be >= 1"),
        (["reduced", "--size", "0x512"], "size '0x512' must be positive"),
        (["reliability", "--soak-epochs", "0"], "--soak-files and --soak-epochs >= 1"),
        (["reliability", "--fuzz", "-1"], "--fuzz must be >= 0"),
        (["train-reference", "--img-size", "256"], "size '256' is not HxW"),
        (["train-reference", "--epochs", "0"], "--patients and --epochs must be >= 1"),
    ],
)
def test_bench_subcommands_refuse_bad_options_in_one_line_before_any_work(tmp_path, capsys, argv, message):
    """A bad option is a UsageError: exit 2, one line naming the problem, nothing written or made."""
    from training.cli import main

    work = ["--out", str(tmp_path / "work")] if argv[0] == "train-reference" else []
    assert main(["bench", *argv, *work, "--json", str(tmp_path / "{machine}.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rsna-mammo bench: ") and message in err and "\n" not in err, err
    assert os.listdir(tmp_path) == []


def test_bench_decode_reports_caches_beside_raw(tmp_path):
    """--caches adds the HTJ2K transcode and tensor-cache figures to the same JSON."""
    from training.cli import main as cli_main

    out = tmp_path / "caches.json"
    rc = cli_main(
        [
            "bench",
            "decode",
            "--size",
            "96x64",
            "--files",
            "2",
            "--repeats",
            "1",
            "--caches",
            "--cache-size",
            "48x32",
            "--cache",
            str(tmp_path / "c"),
            "--no-progress",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    caches = doc["summary"]["caches"]
    assert caches["htj2k_bit_exact"] is True
    assert set(caches["ratios"]) >= {"htj2k_vs_j2k_decode", "tensor_cache_vs_j2k_decode_chain"}
    stages = {(r["stage"], r["transfer_syntax"]) for r in caches["rows"]}
    assert ("decode", "1.2.840.10008.1.2.4.201") in stages and ("read", None) in stages
    assert any(r["stage"] == "baseline" for r in doc["results"])


def test_reduced_bench_rows_loader_and_quality(tmp_path):
    """The reusable reduced-decode measurement (a GPU box's quick tier calls it) on tiny real files."""
    from benchmarks.reduced_bench import bench_loader_scales, bench_reduced_decode, image_difference, measure_quality
    from decode.syntax import JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1
    from decode.testing.synth import make_mammogram, to_stored, write_dicom

    paths = []
    for i, ts in enumerate((JPEG2000_LOSSLESS, JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1)):
        stored, (c, w) = to_stored(make_mammogram(np.random.default_rng(i), 160, 128), 12, "MONOCHROME2")
        paths.append(write_dicom(str(tmp_path / f"{i}.dcm"), stored, transfer_syntax=ts, window=([c], [w])))
    rows = bench_reduced_decode(paths, scales=("full", "1/2", "1/8"), workers=2, repeats=1)
    assert [r.backend for r in rows] == ["openjpeg@full", "openjpeg@1/2", "openjpeg@1/8"]
    assert [r.exact for r in rows] == [True, None, None]  # full checked against pydicom; lossless JPEG skipped
    assert all(r.images == 2 and r.workers == 2 and (r.height, r.width) == (160, 128) for r in rows)
    assert all(r.images_per_s > 0 and r.transfer_syntax == JPEG2000_LOSSLESS for r in rows)
    schema.make_document(dict.fromkeys(schema.MACHINE_KEYS) | {"versions": {}}, {"command": "t"}, rows)
    with pytest.raises(ValueError, match="scales must be among full, 1/2, 1/4, 1/8"):
        bench_reduced_decode(paths, scales=("1/3",))
    loader = bench_loader_scales(paths[:2], size=(40, 32), workers=1, batch_size=2, repeats=1)
    assert [(r.stage, r.backend, r.images) for r in loader] == [("loader", "auto@full", 2), ("loader", "auto@auto", 2)]
    q = measure_quality(paths, size=(40, 32))
    assert [f["auto_scale"] for f in q["files"]] == ["1/2", "1/2", "full"] and not q["errors"]
    assert q["files"][2]["mean_abs_error"] == 0.0 and q["files"][2]["psnr_db"] is None
    assert 0 < q["summary"]["reduced"]["mean_abs_error"] <= 0.01 and q["summary"]["within_bound"] is True
    assert q["summary"]["all"]["files"] == 3 and q["summary"]["reduced"]["auto_scales"] == {"1/2": 2}
    d = image_difference(np.full((4, 4), 0.5), np.full((4, 4), 0.4))
    assert d["mean_abs_error"] == 0.1 and d["max_abs_error"] == 0.1 and d["psnr_db"] == 20.0
