"""Progress bars on a terminal only.

In a log file or CI (stderr not a TTY) a bar's carriage-return redraws become one line per
refresh; there the commands log one line per epoch or phase instead, and no bar is made.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_factory(enabled: bool = True, *, stream=None) -> Callable | None:
    """A ``tqdm`` factory (``factory(total=..., desc=..., unit=...)``) writing to stderr, or None.

    None when ``enabled`` is false, stderr (or ``stream``) is not a terminal, or tqdm is missing.
    """
    stream = sys.stderr if stream is None else stream
    if not enabled or not getattr(stream, "isatty", lambda: False)():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    from functools import partial

    return partial(tqdm, file=stream, dynamic_ncols=True, mininterval=0.5, leave=False)
