"""An image's size from its header alone, without decoding its pixels (for checking annotations).

Private to the data formats until `holistic_lab.images` has a header-size reader to fold this into.
PIL reads only the header on `Image.open`; the pixels are decoded on first access, which never happens here.
"""
from __future__ import annotations

import io
from pathlib import Path


def image_header_size(source) -> tuple[int, int] | None:
    """(width, height) of an image file (a path) or of encoded bytes as stored, ignoring EXIF
    orientation; None when it is not an image PIL can read the header of."""
    from PIL import Image, UnidentifiedImageError

    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
    try:
        with Image.open(opened) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):  # PIL raises SyntaxError on some broken headers
        return None
