"""Proof that augmented labels are right: the teacher, run on the augmented image, agrees with them.

For each geometric check (a transform with fixed parameters) and each real image: label
the image with MediaPipe Holistic (the teacher), augment image and labels together, run
the teacher again on the augmented image, and measure per part how many pixels the
augmented labels lie from what the teacher sees. A right flip agrees to within the
teacher's own jitter; a layout-blind flip (rows not swapped) is off by the distance
between left and right twins.

Compared points: known in both results and inside the augmented frame; pose points also
need visibility >= 0.5 in the labels (MediaPipe's guesses for hidden joints move with
any change of the image, right or wrong labels alike).
"""
from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np

from ..result import HolisticResult
from ..topology import PART_NAMES, PARTS
from .keypoints import KeypointAugmenter

POSE_MIN_VISIBILITY = 0.5

# Real photos whose people MediaPipe Holistic finds (pose and face; hands on the panoptic
# and aic ones), relative to HOLISTIC_LAB_DATA (the MMPose fixture pack).
AGREEMENT_FIXTURES = (
    "panoptic/005880453_01_l.jpg",
    "panoptic/ex2_2.flv_000040_l.jpg",
    "aic/fa436c914fe4a8ec1ec5474af4d3820b84d17561.jpg",
    "aic/ff945ae2e729f24eea992814639d59b3bdec8bd8.jpg",
    "coco/000000000785.jpg",
    "lapa/13609937564_5.jpg",
    "300w/indoor_029.png",
)


def geometric_checks() -> dict[str, KeypointAugmenter]:
    """One augmenter per geometric transform, fixed parameters, plus the naive (no swap) flip.

    The first, a JPEG re-encode that moves nothing, is the baseline: how much the teacher
    itself moves when the image changes a little.
    """
    flip = [A.HorizontalFlip(p=1.0)]
    return {
        "baseline: JPEG q90, no move": KeypointAugmenter([A.ImageCompression(quality_range=(90, 90), p=1.0)]),
        "flip": KeypointAugmenter(flip),
        "flip, no swap (naive)": KeypointAugmenter(flip, swap_twins=False),
        "rotate +15": KeypointAugmenter([A.Affine(rotate=(15, 15), p=1.0)]),
        "rotate -30": KeypointAugmenter([A.Affine(rotate=(-30, -30), p=1.0)]),
        "scale 0.8 + shift": KeypointAugmenter([A.Affine(scale=(0.8, 0.8), translate_percent=(0.06, 0.06), p=1.0)]),
        "scale 1.25": KeypointAugmenter([A.Affine(scale=(1.25, 1.25), p=1.0)]),
        "perspective": KeypointAugmenter([A.Perspective(scale=(0.06, 0.06), p=1.0)], seed=0),
        "crop 15%": KeypointAugmenter([A.CropAndPad(percent=(-0.15, -0.15), keep_size=True, p=1.0)]),
        "flip + rotate +10": KeypointAugmenter([A.HorizontalFlip(p=1.0), A.Affine(rotate=(10, 10), p=1.0)]),
    }


def comparable(labels: HolisticResult, seen: HolisticResult) -> np.ndarray:
    """(543,) bool: points both results know, inside the frame, pose points visible enough."""
    both = labels.mask() & seen.mask()
    inside = ((labels.xyz[:, :2] >= 0) & (labels.xyz[:, :2] < 1)).all(axis=1)
    visible = np.ones_like(both)
    visible[PARTS["pose"]] = labels.visibility[PARTS["pose"]] >= POSE_MIN_VISIBILITY
    return both & inside & visible


def deviation_px(labels: HolisticResult, seen: HolisticResult) -> np.ndarray:
    """(543,) pixel distance between labels and what the teacher sees; NaN where not comparable."""
    distance = np.linalg.norm(labels.pixels() - seen.pixels(), axis=1)
    return np.where(comparable(labels, seen), distance, np.nan)


@dataclass
class AgreementTable:
    """Per check and part: all compared point deviations (px), pooled over images."""

    deviations: dict[str, dict[str, np.ndarray]]
    images: list[str]

    def median_px(self, check: str, part: str) -> float:
        values = self.deviations[check][part]
        return float(np.median(values)) if values.size else float("nan")

    def to_markdown(self) -> str:
        """Median px deviation per check (rows) and part (columns), with the number of points."""
        lines = ["| transform | " + " | ".join(PART_NAMES) + " |", "|---|" + "---:|" * len(PART_NAMES)]
        for check, parts in self.deviations.items():
            cells = [f"{self.median_px(check, p):.1f} (n={parts[p].size})" if parts[p].size else "- (n=0)"
                     for p in PART_NAMES]
            lines.append(f"| {check} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def teacher_agreement(images: dict[str, np.ndarray], teacher, checks: dict[str, KeypointAugmenter] | None = None,
                      labels: dict[str, HolisticResult] | None = None) -> AgreementTable:
    """Run every check on every image; `labels` default to the teacher's labels of the originals."""
    checks = geometric_checks() if checks is None else checks
    labels = dict(labels or {})
    pooled = {check: {part: [] for part in PART_NAMES} for check in checks}
    for name, rgb in images.items():
        original = labels.get(name) or teacher.process(rgb)
        for check, augment in checks.items():
            aug_rgb, aug_labels = augment(rgb, original)
            distance = deviation_px(aug_labels, teacher.process(aug_rgb))
            for part, sl in PARTS.items():
                pooled[check][part].append(distance[sl][np.isfinite(distance[sl])])
    deviations = {check: {part: np.concatenate(values) for part, values in parts.items()}
                  for check, parts in pooled.items()}
    return AgreementTable(deviations, list(images))
