"""Atomic file output: write to a temporary name in the same folder, fsync, rename.

A kill -9 at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def atomic_write(path: str, data: bytes | str | Callable, *, verify: Callable[[str], None] | None = None) -> str:
    """Write ``data`` (bytes, text, or ``writer(binary_file)``) to ``path`` atomically.

    ``verify(temporary_path)``, when given, runs after the data is fsynced and before the
    rename; if it raises, the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def remove_stale_temps(folder: str) -> list:
    """Delete temporary files :func:`atomic_write` left in ``folder`` when a writer was killed.

    Only call when no other process is writing there. Returns the removed paths.
    """
    import re

    pattern = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if pattern.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed.append(os.path.join(folder, name))
                except OSError:
                    pass
    return removed
