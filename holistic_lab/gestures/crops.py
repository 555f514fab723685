"""A tight hand crop (HaGRID's) -> the 224 x 224 hand crop the cascade would cut around that hand.

HaGRID's crops end at the hand's box; the hand model wants the cascade's hand ROI: the tight
landmark box, rotated so the fingers point up, enlarged 2x and shifted 0.1 toward the fingers
(`pipeline.stages.hand_tracking_rect`). So the hand model first finds the hand in the crop
(`HolisticPipeline.process_hand`: four right-angle rotations, the best re-cropped on its own
landmarks) and the ROI is built from its landmarks; beyond the crop's edge the cascade's crop
repeats the edge pixels, as it does at an image border. Where the model finds no hand (a
blurred or tiny crop, often the `none` class) the ROI is the crop's box squared and enlarged
2x, unrotated.

Training views jitter that ROI (rotation, scale, shift) and mirror half of them, so the head
sees the spread of ROIs the cascade's pose-driven re-crop gives.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..images import check_rgb
from ..pipeline.roi import Crop, Rect, transform_rect
from ..pipeline.stages import hand_tracking_rect

WHOLE_CROP = Rect(0.5, 0.5, 1.0, 1.0, 0.0)


@dataclass(frozen=True)
class RoiJitter:
    """How much training views move the hand ROI: degrees, relative scale, fraction of the ROI."""
    rotate_deg: float = 20.0
    scale: float = 0.12
    shift: float = 0.06
    flip_p: float = 0.5


def hand_roi(pipeline, rgb: np.ndarray) -> tuple[Rect, np.ndarray | None]:
    """(the cascade's hand ROI in the crop, the (21, 3) landmarks found or None)."""
    rgb = check_rgb(rgb, "hand crop")
    size = (rgb.shape[1], rgb.shape[0])
    landmarks = pipeline.process_hand(rgb)
    if np.isfinite(landmarks).all():
        return hand_tracking_rect(landmarks, size), landmarks
    return transform_rect(WHOLE_CROP, size, scale=2.0), None


def jittered(rect: Rect, rng: np.random.Generator, jitter: RoiJitter) -> Rect:
    """`rect` turned, scaled and moved at random within `jitter` (a training view)."""
    scale = 1.0 + rng.uniform(-jitter.scale, jitter.scale)
    dx, dy = rng.uniform(-jitter.shift, jitter.shift, 2)
    return replace(rect, x_center=rect.x_center + dx * rect.width, y_center=rect.y_center + dy * rect.height,
                   width=rect.width * scale, height=rect.height * scale,
                   rotation=rect.rotation + np.radians(rng.uniform(-jitter.rotate_deg, jitter.rotate_deg)))


def hand_crop(pipeline, rgb: np.ndarray, rect: Rect, mirror: bool = False) -> Crop:
    """The hand landmark stage's crop of `rect`; `mirror` flips the tensor left-right (the
    other hand's view of the same gesture)."""
    model_input = pipeline.hand_landmark.crop(rgb, rect)
    if mirror:
        model_input = replace(model_input, tensor=np.ascontiguousarray(model_input.tensor[:, :, ::-1]))
    return model_input


def roi_crop(pipeline, rgb: np.ndarray) -> Crop:
    """The hand landmark crop of a tight hand crop's cascade ROI (`hand_roi`)."""
    return hand_crop(pipeline, rgb, hand_roi(pipeline, rgb)[0])
