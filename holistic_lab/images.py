"""Images as they enter the library: uint8 RGB H x W x 3, checked and decoded.

Every entry point (teacher, pipeline, augmentation, server) calls `check_rgb` so a
wrong array fails with one clear message instead of deep inside a model.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .native_logs import filtered_native_stderr

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".flv")


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
    return image


def load_rgb(path) -> np.ndarray:
    """Decode an image file into uint8 RGB; a missing or corrupt file raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    with filtered_native_stderr():  # libpng's benign iCCP warnings
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ValueError(f"cannot decode image {path}: not a valid image file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def iter_video_frames(path):
    """Yield (frame_index, uint8 RGB frame) from a video file; raise ValueError if it cannot be opened."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise ValueError(f"video {path} has no decodable frames")
