"""Sample: one annotated person (or face, or hand) in one image, in the 543 layout.

Every dataset format (COCO-WholeBody, COCO-17, AIC, 300-W, FreiHAND, Panoptic,
PoseTrack, teacher labels, TFRecord) is read into Samples, so training, metrics and
writers see one shape. Human annotations are 2-D: their z is NaN and `mask` says which
x, y are known. Points of the source layout that the 543 layout cannot hold (COCO's small
toes, AIC's head top) survive in `source_keypoints`, so writers can give them back.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..result import HolisticResult
from ..topology import NUM_KEYPOINTS, PART_NAMES, PARTS

BOX_NAMES = ("body", "face", "left_hand", "right_hand")


@dataclass
class Sample:
    """One person: `xyz` (543, 3) float32 normalised to the image, NaN where unknown.

    `mask` (543,) bool marks the rows whose x, y are known. `boxes` maps "body", "face",
    "left_hand", "right_hand" to (x, y, w, h) pixel boxes (only the ones known).
    `source` names the layout it came from; `source_keypoints` (K, 3) keeps that layout's
    raw x, y, v in pixels (None for teacher labels); `extras` keeps other source fields.
    """
    image_path: str
    width: int
    height: int
    xyz: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    ann_id: int = -1
    image_id: int = -1
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    source: str = ""
    source_keypoints: np.ndarray | None = field(default=None, repr=False)
    extras: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.xyz = np.asarray(self.xyz, np.float32)
        self.mask = np.asarray(self.mask, bool)
        if self.xyz.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"sample {self.ann_id}: xyz must be ({NUM_KEYPOINTS}, 3), got {self.xyz.shape}")
        if self.mask.shape != (NUM_KEYPOINTS,):
            raise ValueError(f"sample {self.ann_id}: mask must be ({NUM_KEYPOINTS},), got {self.mask.shape}")
        if not np.isfinite(self.xyz[self.mask, :2]).all():
            raise ValueError(f"sample {self.ann_id}: mask marks points whose x, y are NaN")
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"sample {self.ann_id}: width and height must be positive, got {self.width}x{self.height}")
        unknown = set(self.boxes) - set(BOX_NAMES)
        if unknown:
            raise ValueError(f"sample {self.ann_id}: unknown boxes {sorted(unknown)}; expected some of {BOX_NAMES}")

    def pixels(self) -> np.ndarray:
        """(543, 2) float64 pixel x, y; NaN where the mask is False."""
        px = self.xyz[:, :2].astype(np.float64) * np.array([self.width, self.height])
        px[~self.mask] = np.nan
        return px

    def parts_present(self) -> dict[str, bool]:
        """Per part: does it have at least one known point."""
        return {name: bool(self.mask[sl].any()) for name, sl in PARTS.items()}

    def to_result(self) -> HolisticResult:
        """A HolisticResult for drawing and comparing: unknown points NaN, z as stored."""
        xyz = np.where(self.mask[:, None], self.xyz, np.nan).astype(np.float32)
        present = self.parts_present()
        visibility = np.where(self.mask, 1.0, 0.0).astype(np.float32)
        return HolisticResult(xyz, visibility, present, self.width, self.height)

    @classmethod
    def from_result(cls, result: HolisticResult, image_path: str, ann_id: int = -1, image_id: int = -1,
                    source: str = "teacher") -> "Sample":
        """A Sample from teacher labels: every point of a present part is known; boxes from the points."""
        mask = np.isfinite(result.xyz[:, :2]).all(axis=1)
        sample = cls(str(image_path), result.width, result.height, result.xyz.copy(), mask,
                     ann_id=ann_id, image_id=image_id, source=source)
        sample.boxes = {name: box for name, box in boxes_from_points(sample).items() if box is not None}
        return sample


def box_of_points(px: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight (x, y, w, h) box around the finite rows of (N, 2) pixel points; None if there are none."""
    px = px[np.isfinite(px).all(axis=1)]
    if len(px) == 0:
        return None
    (x0, y0), (x1, y1) = px.min(axis=0), px.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def boxes_from_points(sample: Sample) -> dict[str, tuple[float, float, float, float] | None]:
    """Tight (x, y, w, h) pixel boxes around the known points of the body and of each part."""
    px = sample.pixels()
    boxes = {"body": box_of_points(px)}
    for name in PART_NAMES[1:]:
        boxes[name] = box_of_points(px[PARTS[name]])
    return boxes
