"""An upload becomes an RGB image, or a clear refusal: recognised by its content (the first bytes),
never by its file name or declared type; its pixel count read from the header and checked before
any pixel is decoded (a few KB of PNG can claim 100000 x 100000); EXIF orientation applied; a
truncated JPEG or PNG refused rather than served half grey."""
from __future__ import annotations

import numpy as np

from ..images import decode_rgb, image_size, pixel_limit
from .errors import ApiError

# first bytes -> format, for the formats Pillow reads and OpenCV decodes
SIGNATURES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"),
              (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
JPEG_START_OF_SCAN, JPEG_END = b"\xff\xda", b"\xff\xd9"
PNG_END = b"IEND\xaeB`\x82"  # the end chunk's type and its fixed CRC
# OpenCV's warps (every crop of the cascade) refuse an image with a side of SHRT_MAX or more:
# a 1 x 100000 strip is few pixels but cannot be served.
MAX_SIDE = 32766


def image_format(data: bytes) -> str | None:
    """'jpeg', 'png', 'bmp', 'tiff' or 'webp' from the first bytes, None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((name for signature, name in SIGNATURES if data.startswith(signature)), None)


def truncated(data: bytes, kind: str) -> bool:
    """A JPEG with no end marker after its last scan, or a PNG without its end chunk. Inside a
    JPEG scan a 0xFF byte is always escaped, so an end marker after the last scan marker is the
    image's own (an EXIF thumbnail's comes before)."""
    if kind == "jpeg":
        return data.rfind(JPEG_END) < data.rfind(JPEG_START_OF_SCAN)
    if kind == "png":
        return PNG_END not in data
    return False


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """The uploaded image as uint8 RGB as shown (EXIF orientation applied). ApiError 400 (empty, damaged, truncated), 415 (not an image format served) or 413
    (over `max_pixels`, read from the header before decoding)."""
    if not data:
        raise ApiError(400, "empty_image", "the 'image' upload is empty")
    kind = image_format(data)
    if kind is None:
        raise ApiError(415, "unsupported_image", "the 'image' upload is not a JPEG, PNG, WebP, BMP or TIFF image "
                       "(recognised by its content, not its name or declared type)")
    try:
        size = image_size(data, "the uploaded image")
    except ValueError as error:  # over Pillow's own ceiling
        raise ApiError(413, "too_many_pixels", str(error)) from None
    if size is None:
        raise ApiError(400, "corrupt_image", f"the uploaded {kind.upper()} image is damaged: its header cannot be read")
    width, height = size
    if width * height > pixel_limit(max_pixels):
        raise ApiError(413, "too_many_pixels", f"the uploaded image is {width}x{height} "
                       f"({width * height / 1e6:.3g} megapixels); this server decodes at most {max_pixels / 1e6:g}")
    if max(width, height) > MAX_SIDE:
        raise ApiError(413, "image_too_large", f"the uploaded image is {width}x{height}; this server takes at most "
                       f"{MAX_SIDE} pixels a side")
    if truncated(data, kind):
        raise ApiError(400, "corrupt_image", f"the uploaded {kind.upper()} image is truncated: its end is missing")
    try:
        return decode_rgb(data, "the uploaded image", max_pixels)
    except ValueError as error:
        raise ApiError(400, "corrupt_image", str(error)) from None
