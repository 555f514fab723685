"""Images as they enter and leave the library: uint8 RGB H x W x 3, checked, decoded, encoded.

Every entry point (teacher, pipeline, augmentation, server) calls `check_rgb` so a
wrong array fails with one clear message instead of deep inside a model. Files are
read and written as bytes through Python (`np.fromfile`, `atomic_write`) and coded in
memory by OpenCV, so any file name the OS allows works, undecodable bytes included.
An image file's size is read from its header before any pixel is decoded: a 900 KB
PNG can decode to 30000 x 30000 pixels (2.7 GB), which would exhaust memory or
overflow MediaPipe's 32-bit image sizes.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np

from .files import atomic_write, display_path
from .native_logs import filtered_native_stderr

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv")

# The largest image (width x height) decoded from a file, unless the caller or the
# environment says otherwise: 50 MP is a 8660 x 5773 photograph, 150 MB as RGB.
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "HOLISTIC_LAB_MAX_PIXELS"
# An image file within the pixel limit needs at most this many bytes per pixel (16-bit RGBA,
# uncompressed) plus its metadata; a larger file is padded or damaged and is not read.
MAX_BYTES_PER_PIXEL = 8
# MediaPipe and OpenCV index image bytes with signed 32-bit integers: an RGB array of
# 2**31 bytes or more crashes them (a segmentation fault, not an exception).
MAX_RGB_BYTES = 2**31 - 1


def check_rgb(image, name: str = "image") -> np.ndarray:
    """Return `image` if it is a uint8 RGB H x W x 3 array, else raise naming the problem."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy uint8 RGB array of shape (H, W, 3), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8 (0..255 RGB), got {image.dtype}")
    if image.ndim == 2:
        raise ValueError(f"{name} is grayscale {image.shape}; expected RGB (H, W, 3): convert with cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)")
    if image.ndim != 3 or image.shape[2] != 3:
        hint = " (RGBA? drop alpha with img[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else ""
        raise ValueError(f"{name} must have shape (H, W, 3), got {image.shape}{hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    if image.size > MAX_RGB_BYTES:
        height, width = image.shape[:2]
        raise ValueError(f"{name} is too large: {width}x{height} RGB is {image.size} bytes, and MediaPipe and "
                         f"OpenCV take at most {MAX_RGB_BYTES} (2**31 - 1); downscale it first")
    return image


def pixel_limit(limit: int | None = None) -> int:
    """The pixel limit for decoding: `limit`, else $HOLISTIC_LAB_MAX_PIXELS, else MAX_PIXELS."""
    if limit is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return MAX_PIXELS
        try:
            limit = int(raw)
        except ValueError:
            raise ValueError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, got {raw!r}") from None
        source = MAX_PIXELS_ENV
    else:
        source = "max_pixels"
    if limit <= 0:
        raise ValueError(f"{source} must be a positive number of pixels, got {limit}")
    return limit


def check_image_size(width: int, height: int, what: str, limit: int | None = None) -> None:
    """Refuse an image or video frame of width x height above the pixel limit, naming `what`."""
    limit = pixel_limit(limit)
    if width * height > limit:
        raise ValueError(f"{what} is {width}x{height} ({width * height / 1e6:.3g} megapixels), over the limit of "
                         f"{limit / 1e6:g} megapixels; raise it with {MAX_PIXELS_ENV} or max_pixels if this is intended")


# EXIF orientation (tag 0x0112) says how to show the stored pixels: 1 as stored, 2-4 mirrored
# or turned half a turn, 5-8 turned a quarter (width and height swap). OpenCV's imdecode, and so
# load_rgb, applies it; TensorFlow's decode_jpeg does not.
EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)


def exif_orientation(source) -> int:
    """The EXIF orientation of an image file or its encoded bytes: 1 (show as stored) when it has none."""
    header = _read_header(source, None, read_orientation=True)
    return header[1] if header else 1


def image_size(source, what: str | None = None, oriented: bool = False) -> tuple[int, int] | None:
    """(width, height) from an image's header, without decoding pixels: `source` is a file path or
    the encoded bytes; None if Pillow cannot read the header (not an image, or a damaged one).
    The size is as stored, or with `oriented` as shown and as `load_rgb` decodes it (width and
    height swapped for the EXIF orientations that turn the image a quarter)."""
    header = _read_header(source, what, read_orientation=oriented)
    if header is None:
        return None
    (width, height), orientation = header
    return (height, width) if oriented and orientation in _QUARTER_TURNS else (width, height)


def _read_header(source, what: str | None, read_orientation: bool) -> tuple[tuple[int, int], int] | None:
    """((width, height) as stored, EXIF orientation or 1 unless `read_orientation`) from the header
    of a file path or encoded bytes, or None if Pillow cannot read it; over Pillow's own ceiling
    is a ValueError."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, np.ndarray):
        source = source.tobytes()
    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else Path(source)
    what = what or (f"image {display_path(source)}" if isinstance(opened, Path) else "image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
        warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)  # then there is no orientation
        try:
            with Image.open(opened) as image:
                return image.size, image.getexif().get(EXIF_ORIENTATION, 1) if read_orientation else 1
        except Image.DecompressionBombError as exc:  # over Pillow's own ceiling, which hides width and height
            raise ValueError(f"{what} is over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, too large to "
                             f"decode ({exc})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return None  # not a format Pillow knows, or a damaged header: OpenCV's decoder decides


def load_rgb(path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file into uint8 RGB; a missing, corrupt or oversized file raises ValueError naming it.

    The size in the file's header is checked against the pixel limit (`max_pixels`, else
    $HOLISTIC_LAB_MAX_PIXELS, else MAX_PIXELS) before any pixel is decoded. Pillow, which
    reads the header, refuses over 2 * PIL.Image.MAX_IMAGE_PIXELS (179 MP) by itself. A
    file whose header Pillow cannot read is refused too, never handed to OpenCV unchecked:
    OpenCV picks its decoder by content, and some formats it reads (Radiance HDR, say) can
    be a few KB on disk and decode to gigabytes. Every suffix in IMAGE_SUFFIXES is one
    Pillow reads.
    """
    path = Path(path)
    what = f"image {display_path(path)}"
    if not path.is_file():
        raise ValueError(f"{what} is not a regular file" if path.exists() else f"image file not found: {display_path(path)}")
    limit = pixel_limit(max_pixels)
    size = image_size(path, what)  # from the file: nothing is read into memory before the checks
    if size is None:
        raise ValueError(f"cannot decode {what}: not a valid image file ({', '.join(IMAGE_SUFFIXES)})")
    check_image_size(*size, what, limit)
    file_bytes = path.stat().st_size
    if file_bytes > MAX_BYTES_PER_PIXEL * limit + 2**24:
        raise ValueError(f"{what} is {file_bytes / 1e6:.0f} MB on disk, more than any image within the pixel limit "
                         f"needs ({limit / 1e6:g} megapixels): damaged or padded")
    return _decode_checked(np.fromfile(path, dtype=np.uint8), what, limit)


def decode_rgb(data: bytes, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Decode an encoded image (bytes, e.g. an upload) into uint8 RGB with its EXIF orientation
    applied, as `load_rgb` does for a file: the header's size is checked against the pixel limit
    before any pixel is decoded, and bytes Pillow cannot read as an image header are refused
    (ValueError naming `what`)."""
    limit = pixel_limit(max_pixels)
    if not data:
        raise ValueError(f"cannot decode {what}: it is empty")
    size = image_size(bytes(data), what)
    if size is None:
        raise ValueError(f"cannot decode {what}: not a valid image file ({', '.join(IMAGE_SUFFIXES)})")
    check_image_size(*size, what, limit)
    # no fd 2 capture here: it swaps a process-wide file descriptor, which concurrent server
    # threads would tangle (a server's stderr may show libpng's warnings instead)
    return _decode_checked(np.frombuffer(data, dtype=np.uint8), what, limit, contextlib.nullcontext)


def _decode_checked(data: np.ndarray, what: str, limit: int, quiet=filtered_native_stderr) -> np.ndarray:
    """OpenCV's decode of bytes whose header was checked; the decoded size is checked again."""
    try:
        with quiet():  # libpng's benign iCCP warnings
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:  # OpenCV's own limits, for formats Pillow cannot read
        raise ValueError(f"cannot decode {what}: {str(exc).strip().splitlines()[-1]}") from None
    if bgr is None:
        raise ValueError(f"cannot decode {what}: not a valid image file")
    check_image_size(bgr.shape[1], bgr.shape[0], what, limit)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def save_rgb(path, rgb: np.ndarray) -> Path:
    """Encode a uint8 RGB image in the format its suffix names and write it atomically; returns the path."""
    path = Path(path)
    check_rgb(rgb)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write image {display_path(path)}: expected a suffix in {IMAGE_SUFFIXES}")
    try:
        ok, encoded = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error as exc:
        raise ValueError(f"cannot encode image {display_path(path)}: {str(exc).strip().splitlines()[-1]}") from None
    if not ok:
        raise ValueError(f"cannot encode image {display_path(path)} as {suffix}")
    return atomic_write(path, lambda temporary: temporary.write_bytes(encoded.tobytes()))


@contextlib.contextmanager
def _opencv_openable(path: Path):
    """A name OpenCV's VideoCapture can open for `path`: OpenCV needs UTF-8 and crashes on
    other bytes, so such a file is opened through a symbolic link with a plain name."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeError:
        pass
    else:
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="holistic-lab-video-") as folder:
        link = Path(folder) / f"video{path.suffix.encode('ascii', 'ignore').decode()}"
        try:
            link.symlink_to(path.resolve())
        except OSError as exc:
            raise ValueError(f"cannot open video {display_path(path)}: its name is not UTF-8 ({exc}); rename it") from None
        yield str(link)


class VideoFrames:
    """The frames of one video file, in order, as (index, uint8 RGB frame).

    After iterating, `frames_read` and `frames_declared` (the container's frame count,
    0 if it declares none) tell whether the file ended early: `shortfall()` says so in
    words, None when every declared frame was read.
    """

    def __init__(self, path, max_pixels: int | None = None):
        self.path = Path(path)
        self.frames_read = 0
        self.frames_declared = 0
        self._max_pixels = max_pixels
        if not self.path.is_file():
            raise ValueError(f"video file not found: {display_path(self.path)}")

    def __iter__(self):
        what = f"video {display_path(self.path)}"
        self.frames_read = 0
        with _opencv_openable(self.path) as name:
            capture = cv2.VideoCapture(name)
            try:
                if not capture.isOpened():
                    raise ValueError(f"cannot open {what}: not a readable video file")
                width, height = (int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
                check_image_size(width, height, f"{what}'s frame size", self._max_pixels)
                self.frames_declared = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    yield self.frames_read, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    self.frames_read += 1
            finally:
                capture.release()
        if self.frames_read == 0:
            raise ValueError(f"{what} has no decodable frames")

    def shortfall(self) -> str | None:
        """'video X ended early: read N of the M frames its container declares', or None."""
        if self.frames_read >= self.frames_declared:
            return None
        return (f"video {display_path(self.path)} ended early: read {self.frames_read} of the "
                f"{self.frames_declared} frames its container declares (damaged or cut short)")


def iter_video_frames(path, max_pixels: int | None = None):
    """Yield (frame_index, uint8 RGB frame) from a video file; raise ValueError if it cannot be opened.

    A file that ends before the frame count its container declares gives a warning saying so.
    """
    frames = VideoFrames(path, max_pixels)
    yield from frames
    if frames.shortfall():
        warnings.warn(frames.shortfall(), stacklevel=2)
