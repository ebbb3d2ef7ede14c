"""Library log records and warnings: one line per file, never a library traceback.

The decoders underneath log through Python logging and warn through ``warnings``:
pydicom logs every plugin that fails with ``LOGGER.exception`` (a full traceback for
each) and sends most of its warnings to both. A user must see one line naming the file,
so :func:`install` routes the loggers in :data:`LIBRARY_LOGGERS` and Python warnings:

* inside :func:`capture` (per thread), every record at WARNING or above and every
  warning is kept on the :class:`LibraryMessages` as one line without its traceback;
  the caller puts a summary in the file's error line or result record;
* outside, a record at WARNING or above goes to the root logger's handlers as one line,
  its traceback removed (lower levels are dropped); warnings are shown as usual.

:func:`install` is idempotent and cheap. The command-line entry point and every worker
process call it; :func:`capture` calls it too, so any process that reads a file through
:func:`decode.dicom.read_dicom` / :func:`decode.decoding.decode_pixels` (thread pools,
DALI's spawned source workers) is covered without further set-up.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator

#: Loggers of the libraries the decode path calls (their child loggers follow them).
LIBRARY_LOGGERS = (
    "pydicom",
    "PIL",
    "pylibjpeg",
    "openjpeg",
    "libjpeg",
    "imagecodecs",
    "dicomsdl",
    "glymur",
    "nvidia",
    "cupy",
)

_local = threading.local()
_lock = threading.Lock()


def one_line(text: object, width: int = 300) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``width`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


class LibraryMessages:
    """What the libraries said while one file was handled: one line per record or warning."""

    def __init__(self):
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        if line not in self.lines:  # pydicom both logs and warns the same text
            self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def contains(self, text: str) -> bool:
        """Whether any line contains ``text`` (case-insensitive)."""
        t = text.lower()
        return any(t in line.lower() for line in self.lines)

    def summary(self, limit: int = 2, width: int = 240) -> str:
        """At most ``limit`` lines joined with ``"; "``, then ``(+N more)``; one line."""
        if not self.lines:
            return ""
        head = "; ".join(self.lines[:limit])
        more = len(self.lines) - limit
        return one_line(head + (f" (+{more} more)" if more > 0 else ""), width)


def _active() -> LibraryMessages | None:
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


class _Router(logging.Handler):
    """Sends a library record to the active capture, or to the root handlers as one line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno < logging.WARNING:
                return
            text = one_line(record.getMessage())
            messages = _active()
            if messages is not None:
                messages.add(f"{record.name.split('.')[0]}: {text}")
                return
            root = logging.getLogger()
            if record.levelno < root.getEffectiveLevel():
                return
            clean = logging.makeLogRecord(record.__dict__)
            clean.msg, clean.args = text, None
            clean.exc_info = clean.exc_text = clean.stack_info = None
            if root.handlers:
                root.callHandlers(clean)
            elif logging.lastResort is not None and clean.levelno >= logging.lastResort.level:
                logging.lastResort.handle(clean)
        except Exception:  # a handler never raises into the library that logged
            pass


_ROUTER = _Router()


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    messages = _active()
    if messages is not None:
        messages.add(f"{getattr(category, '__name__', 'Warning')}: {one_line(message)}")
        return
    # outside a capture: the usual display (or a surrounding catch_warnings(record=True))
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    if impl is None:  # pragma: no cover - every CPython 3.10-3.13 has it
        warnings._showwarning_orig(message, category, filename, lineno, file, line)
        return
    impl(warnings.WarningMessage(message, category, filename, lineno, file, line))


def install() -> None:
    """Route the library loggers and Python warnings (see the module docstring). Idempotent."""
    with _lock:
        for name in LIBRARY_LOGGERS:
            lg = logging.getLogger(name)
            if _ROUTER not in lg.handlers:
                lg.addHandler(_ROUTER)
            lg.propagate = False
        if warnings.showwarning is not _showwarning and warnings.showwarning is warnings._showwarning_orig:
            warnings.showwarning = _showwarning


def installed() -> bool:
    """Whether the library loggers are routed here (in this process)."""
    return all(_ROUTER in logging.getLogger(n).handlers for n in LIBRARY_LOGGERS)


@contextlib.contextmanager
def capture() -> Iterator[LibraryMessages]:
    """Collect what the libraries log or warn in this thread until the block ends.

    Nested captures each see only their own block's lines (the innermost one collects).
    """
    install()
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    messages = LibraryMessages()
    stack.append(messages)
    try:
        yield messages
    finally:
        stack.pop()
