"""Checks on the PNG files the library draws (decoded, not just found)."""

from __future__ import annotations

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path, *, min_size=(300, 200)) -> tuple[int, int]:
    """Assert ``path`` is a PNG of at least ``min_size`` (width, height) that is not one flat colour.

    Returns:
        ``(width, height)`` in pixels.
    """
    from PIL import Image

    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, f"{path} is not a PNG"
    with Image.open(path) as im:
        im.load()
        size = im.size
        px = np.asarray(im.convert("L"))
    assert size[0] >= min_size[0] and size[1] >= min_size[1], f"{path}: {size[0]}x{size[1]} is too small"
    assert px.std() > 5, f"{path} is (nearly) one colour"
    return size
