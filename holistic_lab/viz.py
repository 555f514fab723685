"""Draw a HolisticResult on its image: matplotlib for notebooks, OpenCV for arrays and video.

One colour legend, PART_COLORS, for every figure of the course. The body's two sides get
their own colours (the subject's left and right, like the hands), because left/right is
what a wrong flip or a swapped label gets wrong; points and edges on the body's centre line
(nose, the shoulder and hip lines) keep the body colour. The face is drawn with its
contours (eyes, brows, lips, oval) by default and with the full 468-point tessellation
when mesh=True.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from .images import check_rgb
from .result import HolisticResult
from .topology import (COCO_FOOT_NAMES, COCO_WHOLEBODY_PARTS, COCO_WHOLEBODY_TO_543, LANDMARK_NAMES, NUM_KEYPOINTS,
                       PART_NAMES, PARTS, edges, part_of)

# RGB, 0..255. "left"/"right" are the subject's own sides.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "pose": (30, 144, 255),
    "pose_left": (255, 105, 180),
    "pose_right": (0, 206, 209),
    "face": (255, 215, 0),
    "left_hand": (255, 64, 64),
    "right_hand": (50, 205, 50),
}
PART_LABELS: dict[str, str] = {
    "pose": "body (centre)",
    "pose_left": "body, left side",
    "pose_right": "body, right side",
    "face": "face",
    "left_hand": "left hand",
    "right_hand": "right hand",
}
_PART_EDGE_SET = {"pose": "pose", "left_hand": "left_hand", "right_hand": "right_hand"}


def color_group(index: int) -> str:
    """The PART_COLORS key of keypoint `index`: its part, or for a body point its side."""
    part = part_of(index)
    if part != "pose":
        return part
    name = LANDMARK_NAMES[index].removeprefix("pose/")
    return "pose_left" if "left" in name else "pose_right" if "right" in name else "pose"


POINT_GROUPS: tuple[str, ...] = tuple(color_group(i) for i in range(NUM_KEYPOINTS))


def edge_group(a: int, b: int) -> str:
    """The PART_COLORS key of the edge a-b: one side's when it stays on that side (or leaves
    the centre line for it), the centre's when it joins the two sides."""
    groups = {POINT_GROUPS[a], POINT_GROUPS[b]}
    if len(groups) == 1:
        return groups.pop()
    sides = groups - {"pose"}
    return sides.pop() if len(sides) == 1 else "pose"


def coco_wholebody_color_groups() -> tuple[str, ...]:
    """The PART_COLORS key of each of the 133 COCO-WholeBody points: that of its 543 row, and
    for the two small toes (no 543 row) their body side."""
    foot = COCO_WHOLEBODY_PARTS["foot"]
    groups = []
    for coco_index, row in enumerate(COCO_WHOLEBODY_TO_543):
        if row >= 0:
            groups.append(POINT_GROUPS[row])
        else:
            side = COCO_FOOT_NAMES[coco_index - foot.start].split("_")[0]
            groups.append(f"pose_{side}")
    return tuple(groups)


def rgb01(group: str) -> np.ndarray:
    """PART_COLORS[group] as matplotlib's 0..1 RGB."""
    return np.array(PART_COLORS[group]) / 255


def legend_handles(groups=None) -> list:
    """Legend entries (line and marker in the group's colour, PART_LABELS text) for `groups`
    (default: all of PART_COLORS); pass them to `ax.legend(handles=...)`."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=rgb01(g), marker="o", markersize=4, lw=1.5, label=PART_LABELS[g])
            for g in (PART_COLORS if groups is None else groups)]


def _selected(parts) -> tuple[str, ...]:
    parts = PART_NAMES if parts is None else tuple(parts)
    unknown = set(parts) - set(PART_NAMES)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; expected some of {PART_NAMES}")
    return parts


@functools.lru_cache(maxsize=None)
def _edges_by_group(part: str, mesh: bool) -> dict[str, np.ndarray]:
    name = _PART_EDGE_SET.get(part) or ("face_mesh" if mesh else "face_contours")
    by_group: dict[str, list] = {}
    for a, b in edges(name):
        by_group.setdefault(edge_group(a, b), []).append((a, b))
    return {group: np.array(pairs) for group, pairs in by_group.items()}


def _drawing(result: HolisticResult, parts, mesh: bool):
    """(group, (E, 2, 2) pixel segments, (N, 2) pixel points) per colour group of the
    present `parts`, skipping edges with a NaN end."""
    px = result.pixels()
    for part in _selected(parts):
        if not result.present[part]:
            continue
        rows = np.arange(PARTS[part].start, PARTS[part].stop)
        edge_groups = _edges_by_group(part, mesh)
        for group in dict.fromkeys([POINT_GROUPS[i] for i in rows] + list(edge_groups)):
            pairs = edge_groups.get(group, np.empty((0, 2), int))
            seg = np.stack([px[pairs[:, 0]], px[pairs[:, 1]]], axis=1)
            points = px[[i for i in rows if POINT_GROUPS[i] == group]]
            yield group, seg[np.isfinite(seg).all(axis=(1, 2))], points


def draw(rgb: np.ndarray, result: HolisticResult, ax=None, mesh: bool = False, parts=None,
         point_size: float = 6.0, line_width: float = 1.0, title: str | None = None):
    """Show `rgb` with `result` on a matplotlib axis (created if None); returns the axis.

    Each colour group drawn gets one legend entry (`ax.legend()` shows them)."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    check_rgb(rgb)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * rgb.shape[0] / rgb.shape[1]))
    ax.imshow(rgb)
    for group, segments, points in _drawing(result, parts, mesh):
        color = rgb01(group)
        width = line_width * (0.4 if group == "face" and mesh else 1.0)
        ax.add_collection(LineCollection(segments, colors=[color], linewidths=width))
        if group != "face":  # the face reads better as lines alone
            ax.scatter(points[:, 0], points[:, 1], s=point_size, color=color, zorder=3)
        ax.plot([], [], color=color, marker="o", markersize=4, lw=1.5, label=PART_LABELS[group])
    # MediaPipe extrapolates points outside the frame (legs below a portrait); keep the view on the image
    ax.set_xlim(-0.5, rgb.shape[1] - 0.5)
    ax.set_ylim(rgb.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def draw_offsets(ax, result: HolisticResult, reference: HolisticResult, parts=None, line_width: float = 1.5) -> None:
    """Draw, for every point known in both, a line from where `reference` puts it to where
    `result` does (in the point's colour): how far and where each label is off."""
    from matplotlib.collections import LineCollection

    a, b = reference.pixels(), result.pixels()
    for part in _selected(parts):
        rows = np.arange(PARTS[part].start, PARTS[part].stop)
        rows = rows[np.isfinite(a[rows]).all(1) & np.isfinite(b[rows]).all(1)]
        for group in dict.fromkeys(POINT_GROUPS[i] for i in rows):
            own = [i for i in rows if POINT_GROUPS[i] == group]
            ax.add_collection(LineCollection(np.stack([a[own], b[own]], axis=1), colors=[rgb01(group)],
                                             linewidths=line_width))


def zoom(ax, result: HolisticResult, part: str = "face", margin: float = 0.15) -> None:
    """Limit `ax`'s view to `part`'s points, grown by `margin` of their box on every side."""
    points = result.pixels()[PARTS[_selected([part])[0]]]
    points = points[np.isfinite(points).all(1)]
    if not len(points):
        raise ValueError(f"cannot zoom to {part}: none of its points is known")
    low, high = points.min(0), points.max(0)
    pad = (high - low).max() * margin
    ax.set_xlim(low[0] - pad, high[0] + pad)
    ax.set_ylim(high[1] + pad, low[1] - pad)


def draw_cv2(rgb: np.ndarray, result: HolisticResult, mesh: bool = False, parts=None,
             thickness: int | None = None) -> np.ndarray:
    """Return a copy of `rgb` with `result` drawn in (RGB colours, anti-aliased lines)."""
    canvas = check_rgb(rgb).copy()
    thickness = thickness or max(1, round(max(rgb.shape[:2]) / 400))
    for group, segments, points in _drawing(result, parts, mesh):
        color = PART_COLORS[group]
        line = 1 if group == "face" else thickness
        for (x0, y0), (x1, y1) in segments:
            cv2.line(canvas, (round(x0), round(y0)), (round(x1), round(y1)), color, line, cv2.LINE_AA)
        if group != "face":
            for x, y in points[np.isfinite(points).all(1)]:
                cv2.circle(canvas, (round(x), round(y)), thickness + 1, color, -1, cv2.LINE_AA)
    return canvas
