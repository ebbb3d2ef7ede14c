"""Library log records and warnings: captured per file, one line each, never a traceback."""

from __future__ import annotations

import io
import logging
import threading
import warnings

import pytest

from decode import liblog


def _pydicom_logs_exception(text: str = "plugin failed") -> None:
    try:
        raise RuntimeError(text)
    except RuntimeError as exc:
        logging.getLogger("pydicom.pixels.decoders.base").exception(exc)


@pytest.fixture
def root_stream():
    """The root logger writing to a buffer (as the CLI's basicConfig does to stderr)."""
    root = logging.getLogger()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_capture_keeps_exception_records_as_one_line_without_traceback(root_stream):
    with liblog.capture() as said:
        _pydicom_logs_exception("Error decoding the J2K data:\n failed to read the header")
        logging.getLogger("PIL.Image").warning("cannot identify image file")
    assert said.lines == [
        "pydicom: Error decoding the J2K data: failed to read the header",
        "PIL: cannot identify image file",
    ]
    assert root_stream.getvalue() == ""  # nothing reached the terminal
    assert said.summary(limit=1) == "pydicom: Error decoding the J2K data: failed to read the header (+1 more)"


def test_outside_a_capture_a_record_is_one_line_on_the_root_handlers(root_stream):
    liblog.install()
    _pydicom_logs_exception("boom")
    logging.getLogger("pydicom").info("below WARNING: dropped")
    out = root_stream.getvalue()
    assert out == "ERROR pydicom.pixels.decoders.base: boom\n"
    assert "Traceback" not in out


def test_library_loggers_do_not_propagate_their_tracebacks():
    liblog.install()
    assert liblog.installed()
    for name in liblog.LIBRARY_LOGGERS:
        assert logging.getLogger(name).propagate is False
    liblog.install()  # idempotent: one router per logger
    assert sum(isinstance(h, liblog._Router) for h in logging.getLogger("pydicom").handlers) == 1


def test_capture_takes_warnings_and_dedups_pydicom_warn_and_log():
    from pydicom.misc import warn_and_log

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with liblog.capture() as said:
            warn_and_log("Invalid value for VR IS: '1A'")
    assert said.lines == ["pydicom: Invalid value for VR IS: '1A'", "UserWarning: Invalid value for VR IS: '1A'"]
    assert said.contains("invalid value for vr is")


def test_captures_are_per_thread_and_nest():
    seen = {}

    def work(k):
        with liblog.capture() as said:
            logging.getLogger("pydicom").warning("file %d", k)
            seen[k] = list(said.lines)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {k: [f"pydicom: file {k}"] for k in range(8)}
    with liblog.capture() as outer:
        with liblog.capture() as inner:
            logging.getLogger("pydicom").warning("inner")
        logging.getLogger("pydicom").warning("outer")
    assert inner.lines == ["pydicom: inner"] and outer.lines == ["pydicom: outer"]


def test_one_line_and_summary_bounds():
    assert liblog.one_line("a\n  b\tc") == "a b c"
    assert liblog.one_line("x" * 50, width=10) == "x" * 9 + "…"
    m = liblog.LibraryMessages()
    assert m.summary() == "" and not m
    for k in range(3):
        m.add(f"line {k}")
    m.add("line 0")
    assert m.lines == ["line 0", "line 1", "line 2"]
    assert m.summary(limit=2) == "line 0; line 1 (+1 more)"
    assert m.summary(limit=3) == "line 0; line 1; line 2"
