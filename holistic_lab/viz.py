"""Draw a HolisticResult on its image: matplotlib for notebooks, OpenCV for arrays and video.

Each part has its own colour (PART_COLORS). The face is drawn with its contours (eyes,
brows, lips, oval) by default and with the full 468-point tessellation when mesh=True.
"""
from __future__ import annotations

import cv2
import numpy as np

from .images import check_rgb
from .result import HolisticResult
from .topology import PART_NAMES, PARTS, edges

PART_COLORS: dict[str, tuple[int, int, int]] = {
    "pose": (30, 144, 255),
    "face": (255, 215, 0),
    "left_hand": (255, 64, 64),
    "right_hand": (50, 205, 50),
}
_PART_EDGE_SET = {"pose": "pose", "left_hand": "left_hand", "right_hand": "right_hand"}


def _selected(parts) -> tuple[str, ...]:
    parts = PART_NAMES if parts is None else tuple(parts)
    unknown = set(parts) - set(PART_NAMES)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; expected some of {PART_NAMES}")
    return parts


def _segments(result: HolisticResult, part: str, mesh: bool) -> np.ndarray:
    """(E, 2, 2) pixel segments of `part`'s skeleton, skipping edges with a NaN end."""
    name = _PART_EDGE_SET.get(part) or ("face_mesh" if mesh else "face_contours")
    pairs = np.array(edges(name))
    px = result.pixels()
    seg = np.stack([px[pairs[:, 0]], px[pairs[:, 1]]], axis=1)
    return seg[np.isfinite(seg).all(axis=(1, 2))]


def draw(rgb: np.ndarray, result: HolisticResult, ax=None, mesh: bool = False, parts=None,
         point_size: float = 6.0, line_width: float = 1.0, title: str | None = None):
    """Show `rgb` with `result` on a matplotlib axis (created if None); returns the axis."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    check_rgb(rgb)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * rgb.shape[0] / rgb.shape[1]))
    ax.imshow(rgb)
    px = result.pixels()
    for part in _selected(parts):
        if not result.present[part]:
            continue
        color = np.array(PART_COLORS[part]) / 255
        width = line_width * (0.4 if part == "face" and mesh else 1.0)
        ax.add_collection(LineCollection(_segments(result, part, mesh), colors=[color], linewidths=width))
        pts = px[PARTS[part]]
        size = 0.0 if part == "face" else point_size  # the face reads better as lines alone
        ax.scatter(pts[:, 0], pts[:, 1], s=size, color=color, label=part, zorder=3)
    # MediaPipe extrapolates points outside the frame (legs below a portrait); keep the view on the image
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def draw_cv2(rgb: np.ndarray, result: HolisticResult, mesh: bool = False, parts=None,
             thickness: int | None = None) -> np.ndarray:
    """Return a copy of `rgb` with `result` drawn in (RGB colours, anti-aliased lines)."""
    canvas = check_rgb(rgb).copy()
    thickness = thickness or max(1, round(max(rgb.shape[:2]) / 400))
    px = result.pixels()
    for part in _selected(parts):
        if not result.present[part]:
            continue
        color = PART_COLORS[part]
        line = 1 if part == "face" else thickness
        for (x0, y0), (x1, y1) in _segments(result, part, mesh):
            cv2.line(canvas, (round(x0), round(y0)), (round(x1), round(y1)), color, line, cv2.LINE_AA)
        if part != "face":
            for x, y in px[PARTS[part]]:
                cv2.circle(canvas, (round(x), round(y)), thickness + 1, color, -1, cv2.LINE_AA)
    return canvas
