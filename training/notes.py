"""``notes.csv``: what was noted about images that were used (one line each).

The loader notes FOR PROCESSING images, a header laterality that the image content
contradicts, header elements ignored as malformed and what the libraries said while
reading; ``train`` and ``predict`` write them beside ``errors.csv`` (``prepare --format
tensor`` keeps each row's notes in its ``tensor_index.json`` entry).
"""

from __future__ import annotations

import csv
import io
import os

from decode.atomic import atomic_write

COLUMNS = ("image_id", "path", "note")


def write_notes(path: str, notes: dict, *, keep_existing: bool = False) -> str:
    """Write ``notes`` (``(path, note) → (image_id, path, note)``) as a sorted CSV, atomically.

    Args:
        keep_existing: first read the rows already in ``path`` (a resumed run adds to them).
    """
    rows = {}
    if keep_existing and os.path.exists(path):
        with open(path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                rows[(r["path"], r["note"])] = (r["image_id"], r["path"], r["note"])
    rows.update(notes)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows(sorted(rows.values(), key=lambda v: (v[1], v[2])))
    return atomic_write(path, buf.getvalue())


def collect(loader_notes: list[dict], image_ids) -> dict:
    """A loader's ``notes`` (``{"index", "path", "note"}``) keyed for :func:`write_notes`."""
    return {(n["path"], n["note"]): (str(image_ids[n["index"]]), n["path"], n["note"]) for n in loader_notes}
