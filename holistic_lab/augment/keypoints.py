"""Run an albumentations pipeline over an image and all 543 Holistic keypoints without breaking a label.

albumentations moves points; it does not know the 543 layout. `KeypointAugmenter` does the
bookkeeping it cannot:

- Mirror twins. A transform that mirrors the image (horizontal flip, vertical flip,
  transpose, any composition with negative determinant) turns the subject's left side into
  the right, so every point must move to its twin's row (`topology.FLIP_PERMUTATION`: pose
  left/right, the face mesh's mirror pairs, left hand <-> right hand) and the hands'
  `present` flags swap. Whether the pipeline mirrored is read from three probe points
  carried through it (the sign of their triangle's orientation), so it is right for any
  transform, any probability and any order, not only for a named flip.
- NaN. albumentations cannot carry NaN: an absent point travels as (0, 0) with keypoint
  scale 0 (format "xys"; every transform multiplies the scale, so 0 stays 0) and is NaN
  again afterwards. `PartOccluder` reads the same scale to skip absent points.
- Out of frame. Points are never dropped (`remove_invisible=False`) nor clipped: a point
  outside the output frame (moved out, or outside already, like legs MediaPipe places
  below a portrait) keeps its true coordinates (outside 0..1) and gets visibility 0, the
  mask a loss weights by; its row and its part's `present` flag stay.
- z. MediaPipe's z has the scale of x, i.e. it is normalised by the image width. It travels
  in pixels (z * width), is multiplied by the geometric scale albumentations tracks per
  keypoint (affine scale, resize after a crop, the perspective warp's scale) and is
  normalised by the output width. In-plane rotation, translation and flips leave depth
  unchanged. A perspective warp of a photo is not a 3-D camera move: z gets only the
  warp's scale, not a re-projected depth, so z is approximate there.
- Pixel convention. MediaPipe's x * width is continuous (pixel i spans [i, i + 1));
  albumentations puts pixel centres on integers (its flip maps x to width - 1 - x). Points
  are shifted by half a pixel on the way in and out, so a flip maps x_norm to exactly 1 - x_norm.

Why not albumentations' own `KeypointParams(label_mapping=...)`: it is not in the pinned
albumentations 2.0.8 (it came later, in the AlbumentationsX fork), it remaps only for the
transforms it names (HorizontalFlip, VerticalFlip, D4, ...), and it works on label values
while our layout is positional (row i is always point i, absent rows included).
"""
from __future__ import annotations

import warnings

import albumentations as A
import numpy as np

from ..images import check_rgb
from ..result import HolisticResult
from ..topology import FLIP_PERMUTATION, NUM_KEYPOINTS

_PROBE_SIZE_FRAC = 0.1  # probe triangle side, as a fraction of the smaller image side


def _probe_triangle(width: int, height: int) -> np.ndarray:
    """Three pixel points at the image centre: (c, c + dx, c + dy), counter-clockwise on screen."""
    side = _PROBE_SIZE_FRAC * min(width, height)
    cx, cy = width / 2, height / 2
    return np.array([[cx, cy], [cx + side, cy], [cx, cy + side]], np.float32)


def _orientation(triangle_xy: np.ndarray) -> float:
    (x0, y0), (x1, y1), (x2, y2) = triangle_xy
    return float((x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0))


def keypoints_for_albumentations(result: HolisticResult) -> np.ndarray:
    """(543 + 3, 3) rows of x, y, scale in albumentations' pixel-centre convention.

    Rows 0..542 are the result's points (absent ones as (0, 0) with scale 0), the last three
    the orientation probes.
    """
    px = result.pixels() - 0.5
    known = np.isfinite(px).all(axis=1)
    points = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    points[known, :2] = px[known]
    points[known, 2] = 1.0
    probes = np.concatenate([_probe_triangle(result.width, result.height) - 0.5, np.ones((3, 1), np.float32)], 1)
    return np.concatenate([points, probes])


def result_from_albumentations(points: np.ndarray, source: HolisticResult, out_shape,
                               swap_twins: bool = True) -> HolisticResult:
    """Rebuild a HolisticResult from the (546, 3) x, y, scale rows a pipeline returned.

    NaN points of `source` are NaN again; points outside the output frame keep their
    coordinates and get visibility 0; if the probes say the image was mirrored and
    `swap_twins`, rows move to their mirror twins. `extras["mirrored"]` records it.
    """
    points = np.asarray(points, np.float32)
    if points.shape != (NUM_KEYPOINTS + 3, 3):
        raise ValueError(f"expected ({NUM_KEYPOINTS + 3}, 3) keypoints back from the pipeline, got {points.shape}: "
                         "a transform dropped or added points")
    height, width = out_shape[:2]
    xy = points[:NUM_KEYPOINTS, :2] + 0.5
    scale = points[:NUM_KEYPOINTS, 2]
    known = source.mask()  # x, y known; a human label's NaN z stays NaN
    z_px = source.xyz[:, 2] * source.width * scale
    xyz = np.stack([xy[:, 0] / width, xy[:, 1] / height, z_px / width], axis=1)
    xyz[~known] = np.nan
    in_frame = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    visibility = np.where(known & ~in_frame, 0.0, source.visibility).astype(np.float32)
    present = dict(source.present)
    mirrored = _orientation(points[NUM_KEYPOINTS:, :2]) < 0
    if mirrored and swap_twins:
        xyz, visibility = xyz[FLIP_PERMUTATION], visibility[FLIP_PERMUTATION]
        present["left_hand"], present["right_hand"] = present["right_hand"], present["left_hand"]
    return HolisticResult(xyz, visibility, present, width, height, extras={"mirrored": mirrored})


def check_result_matches(rgb: np.ndarray, result: HolisticResult) -> None:
    """Raise ValueError unless `result` is a HolisticResult for an image of `rgb`'s size."""
    if not isinstance(result, HolisticResult):
        raise TypeError(f"result must be a holistic_lab.HolisticResult, got {type(result).__name__}")
    height, width = rgb.shape[:2]
    if (result.width, result.height) != (width, height):
        raise ValueError(f"result is for a {result.width}x{result.height} image but the image is {width}x{height}")


class KeypointAugmenter:
    """An albumentations pipeline applied to (rgb, HolisticResult) pairs, labels kept right.

    `transforms` is a list of albumentations transforms (any mix of spatial and pixel
    ones); `swap_twins=False` turns off the left/right bookkeeping, which is wrong and
    exists only to measure and show what a layout-blind flip does. `seed` makes the
    random draws repeatable.
    """

    def __init__(self, transforms, swap_twins: bool = True, seed: int | None = None):
        self.transforms = list(transforms)
        for transform in self.transforms:
            if not isinstance(transform, (A.BasicTransform, A.BaseCompose)):
                raise TypeError(f"transforms must be albumentations transforms, got {type(transform).__name__}")
        self.swap_twins = swap_twins
        with warnings.catch_warnings():  # a pixel-only or empty pipeline is fine: points pass unchanged
            warnings.filterwarnings("ignore", message="Got processor for keypoints, but no transform")
            self.compose = A.Compose(
                self.transforms,
                keypoint_params=A.KeypointParams(format="xys", remove_invisible=False),
                seed=seed,
            )

    def __call__(self, rgb: np.ndarray, result: HolisticResult) -> tuple[np.ndarray, HolisticResult]:
        check_rgb(rgb)
        check_result_matches(rgb, result)
        out = self.compose(image=rgb, keypoints=keypoints_for_albumentations(result))
        return out["image"], result_from_albumentations(out["keypoints"], result, out["image"].shape,
                                                        self.swap_twins)

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.transforms) or "identity"
        return f"KeypointAugmenter([{names}], swap_twins={self.swap_twins})"


_FLIP = KeypointAugmenter([A.HorizontalFlip(p=1.0)])
_NAIVE_FLIP = KeypointAugmenter([A.HorizontalFlip(p=1.0)], swap_twins=False)


def flip_horizontal(rgb: np.ndarray, result: HolisticResult) -> tuple[np.ndarray, HolisticResult]:
    """Mirror an image and its 543 labels: x -> 1 - x and every point moved to its twin's row."""
    return _FLIP(rgb, result)


def naive_flip_horizontal(rgb: np.ndarray, result: HolisticResult) -> tuple[np.ndarray, HolisticResult]:
    """The flip a layout-blind pipeline does: x mirrored, rows NOT swapped. Wrong; for measuring the harm."""
    return _NAIVE_FLIP(rgb, result)
