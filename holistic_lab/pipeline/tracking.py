"""Video-mode ROI tracking: when the previous frame's landmarks may place this frame's crop.

Follows holistic_landmark/calculators/roi_tracking_calculator and the options in
holistic_landmark/face_tracking.pbtxt and hand_tracking.pbtxt (google-ai-edge/mediapipe).
Each frame still computes the re-crop ROI (face detection, hand re-crop); the ROI from
the previous landmarks is kept only while it agrees with it in rotation, position and
size, and the previous landmarks lie inside the (shrunk) re-crop ROI.
The pose ROI needs no check: the previous frame's auxiliary landmarks place it, and
detection runs again only after the pose presence score drops (pose_landmark_cpu).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .roi import Rect, rotate


@dataclass(frozen=True)
class TrackingRequirements:
    rotation_degrees: float
    translation: float
    scale: float
    recrop_margin: float


FACE_TRACKING = TrackingRequirements(rotation_degrees=15.0, translation=0.1, scale=0.3, recrop_margin=-0.2)
HAND_TRACKING = TrackingRequirements(rotation_degrees=40.0, translation=0.2, scale=0.4, recrop_margin=-0.1)


def _rotate_px(xy_norm: np.ndarray, image_size, angle: float) -> np.ndarray:
    """Normalised points -> pixels rotated by `angle` (into the re-crop rect's frame)."""
    px = np.atleast_2d(np.asarray(xy_norm, np.float64)[..., :2]) * np.asarray(image_size, np.float64)
    return rotate(px, angle)


def keep_tracking(prev_rect: Rect, prev_landmarks: np.ndarray, recrop_rect: Rect, image_size,
                  requirements: TrackingRequirements) -> bool:
    """True when the ROI from the previous landmarks may replace this frame's re-crop ROI."""
    width, height = image_size
    angle = -recrop_rect.rotation
    centers = _rotate_px(np.array([[prev_rect.x_center, prev_rect.y_center],
                                   [recrop_rect.x_center, recrop_rect.y_center]]), image_size, angle)
    rotation_diff = math.degrees(prev_rect.rotation - recrop_rect.rotation)
    rotation_diff = abs((rotation_diff + 180.0) % 360.0 - 180.0)
    recrop_w, recrop_h = recrop_rect.width * width, recrop_rect.height * height
    rect_ok = (rotation_diff <= requirements.rotation_degrees
               and abs(centers[0, 0] - centers[1, 0]) <= recrop_w * requirements.translation
               and abs(centers[0, 1] - centers[1, 1]) <= recrop_h * requirements.translation
               and abs(prev_rect.width * width - recrop_w) <= recrop_w * requirements.scale
               and abs(prev_rect.height * height - recrop_h) <= recrop_h * requirements.scale)
    if not rect_ok:
        return False
    half = np.array([recrop_w, recrop_h]) * (1 + requirements.recrop_margin) / 2
    points = _rotate_px(prev_landmarks, image_size, angle)
    return bool(np.all(np.abs(points - centers[1]) < half))
