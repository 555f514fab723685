"""Rotated regions of interest: how the cascade computes each crop, cuts it out and maps
landmarks back to the image.

A `Rect` is MediaPipe's NormalizedRect: centre, width and height normalised to the
image, rotation in radians (clockwise in image coordinates, y down). The functions
follow these MediaPipe calculators (google-ai-edge/mediapipe, mediapipe/calculators
and mediapipe/modules/holistic_landmark/calculators):

- `rect_from_alignment_points`: util/alignment_points_to_rects_calculator (centre at
  one keypoint, side = twice the distance to another: pose and hand re-crop ROIs);
- `rect_from_box`, `rect_from_points`: util/detections_to_rects_calculator, with the
  rotation from a pair of keypoints and a target angle;
- `transform_rect`: util/rect_transformation_calculator (shift along the rotated axes,
  square on the long side in pixels, scale);
- `hand_rect_from_pose`: holistic_landmark/calculators/hand_detections_from_pose_to_rects;
- `hand_rect_from_landmarks`: hand_landmark/calculators/hand_landmarks_to_rect;
- `crop`: tensor/image_to_tensor_calculator with the OpenCV converter (letterbox by
  enlarging the ROI, bilinear warp of the uint8 image, then the value range);
- `project_landmarks`: util/landmark_letterbox_removal + landmark_projection (NORM_RECT
  without image size, the form Holistic uses: rotation applied in normalised units);
- `project_points`: util/detection_projection (the exact crop-to-image matrix).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class Rect:
    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float = 0.0

    @property
    def usable(self) -> bool:
        """Finite, with a positive size: a swapped-in model with degenerate output can break this."""
        values = (self.x_center, self.y_center, self.width, self.height, self.rotation)
        return bool(all(math.isfinite(v) for v in values) and self.width > 0 and self.height > 0)

    def to_pixels(self, image_size: tuple[int, int]) -> "PixelRect":
        width, height = image_size
        return PixelRect(self.x_center * width, self.y_center * height,
                         self.width * width, self.height * height, self.rotation)

    def corners_px(self, image_size: tuple[int, int]) -> np.ndarray:
        """(4, 2) pixel corners, top-left, top-right, bottom-right, bottom-left of the crop."""
        return self.to_pixels(image_size).corners()


@dataclass(frozen=True)
class PixelRect:
    """A rotated rectangle in pixels (ImageToTensorCalculator's RotatedRect)."""
    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float

    def corners(self) -> np.ndarray:
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float64)
        return self.from_unit(unit + 0.5)

    def from_unit(self, uv: np.ndarray) -> np.ndarray:
        """Points given as fractions (u, v) of the crop -> image pixels (exact rotation)."""
        uv = np.asarray(uv, np.float64)
        local = (uv - 0.5) * [self.width, self.height]
        return rotate(local, self.rotation) + [self.x_center, self.y_center]


def rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    """(..., 2) points rotated about the origin by `angle` radians (x right, y down, as MediaPipe)."""
    xy = np.asarray(xy)
    cos, sin = math.cos(angle), math.sin(angle)
    return np.stack([cos * xy[..., 0] - sin * xy[..., 1], sin * xy[..., 0] + cos * xy[..., 1]], axis=-1)


def normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def rotation_to_target(start_xy: np.ndarray, end_xy: np.ndarray, image_size: tuple[int, int],
                       target_degrees: float) -> float:
    """Rotation that turns the start->end vector (normalised points, measured in pixels)
    to `target_degrees` (90 = pointing up)."""
    width, height = image_size
    dx = (end_xy[0] - start_xy[0]) * width
    dy = (end_xy[1] - start_xy[1]) * height
    return normalize_radians(math.radians(target_degrees) - math.atan2(-dy, dx))


def rect_from_alignment_points(center_xy: np.ndarray, scale_xy: np.ndarray, image_size: tuple[int, int],
                               target_degrees: float) -> Rect:
    """Square centred on `center_xy`, side twice its pixel distance to `scale_xy`, rotated so
    that center->scale points at `target_degrees`."""
    width, height = image_size
    side_px = 2.0 * math.hypot((scale_xy[0] - center_xy[0]) * width, (scale_xy[1] - center_xy[1]) * height)
    return Rect(float(center_xy[0]), float(center_xy[1]), side_px / width, side_px / height,
                rotation_to_target(center_xy, scale_xy, image_size, target_degrees))


def rect_from_box(box: np.ndarray, rotation: float = 0.0) -> Rect:
    """Rect around a normalised (xmin, ymin, xmax, ymax) box."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    return Rect((xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin, rotation)


def bounding_box(points_xy: np.ndarray) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) of (N, 2+) normalised points."""
    xy = np.asarray(points_xy)[:, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def rect_from_points(points_xy: np.ndarray, image_size: tuple[int, int], start: int, end: int,
                     target_degrees: float) -> Rect:
    """Box around the points, rotated by the start->end keypoint vector (DetectionsToRects on
    LandmarksToDetection, or on a detection's keypoints in USE_KEYPOINTS mode)."""
    return rect_from_box(bounding_box(points_xy),
                         rotation_to_target(points_xy[start], points_xy[end], image_size, target_degrees))


def transform_rect(rect: Rect, image_size: tuple[int, int], scale: float, shift_y: float = 0.0) -> Rect:
    """Shift along the rect's own (rotated) y axis by `shift_y` heights, make it square on its
    long side in pixels, then scale both sides."""
    width_px, height_px = image_size
    x, y, w, h = rect.x_center, rect.y_center, rect.width, rect.height
    x -= height_px * h * shift_y * math.sin(rect.rotation) / width_px
    y += h * shift_y * math.cos(rect.rotation)
    long_px = max(w * width_px, h * height_px)
    w, h = long_px / width_px, long_px / height_px
    return Rect(x, y, w * scale, h * scale, rect.rotation)


def hand_rect_from_pose(wrist: np.ndarray, pinky: np.ndarray, index: np.ndarray,
                        image_size: tuple[int, int]) -> Rect:
    """Hand ROI from the pose's wrist, pinky and index: centred on the point 2/3 of the way
    from pinky to index, side twice its distance to the wrist, wrist -> centre pointing up."""
    middle = (2.0 * np.asarray(index[:2], np.float64) + np.asarray(pinky[:2], np.float64)) / 3.0
    return rect_from_alignment_points(middle, np.asarray(wrist[:2], np.float64), image_size, -90.0)


def hand_rect_from_landmarks(landmarks: np.ndarray, image_size: tuple[int, int]) -> Rect:
    """Tight rotated box around 21 hand landmarks, oriented wrist -> finger base.

    Holistic feeds all 21 landmarks to a calculator written for the 7 palm landmarks, so
    its "index, middle, ring PIP" indices 4, 6, 8 pick the thumb tip, index PIP and index
    tip of the full hand; we reproduce that to keep the same tracking ROI.
    """
    width, height = image_size
    xy = np.asarray(landmarks, np.float64)[:, :2]
    toward = ((xy[4] + xy[8]) / 2 + xy[6]) / 2
    rotation = rotation_to_target(xy[0], toward, image_size, 90.0)
    center = (xy.min(0) + xy.max(0)) / 2
    local = (xy - center) * [width, height]
    projected = rotate(local, -rotation)
    mid = (projected.min(0) + projected.max(0)) / 2
    cx, cy = rotate(mid, rotation) / [width, height] + center
    size = projected.max(0) - projected.min(0)
    return Rect(float(cx), float(cy), float(size[0] / width), float(size[1] / height), rotation)


def letterbox_padding(roi: PixelRect, tensor_size: tuple[int, int]) -> tuple[PixelRect, np.ndarray]:
    """Enlarge `roi` to the tensor's aspect ratio; padding = (left, top, right, bottom) fractions."""
    tensor_w, tensor_h = tensor_size
    tensor_aspect, roi_aspect = tensor_h / tensor_w, roi.height / roi.width
    if tensor_aspect > roi_aspect:
        vertical = (1 - roi_aspect / tensor_aspect) / 2
        return replace(roi, height=roi.width * tensor_aspect), np.array([0, vertical, 0, vertical], np.float32)
    horizontal = (1 - tensor_aspect / roi_aspect) / 2
    return replace(roi, width=roi.height / tensor_aspect), np.array([horizontal, 0, horizontal, 0], np.float32)


@dataclass
class Crop:
    """A model input cut from the image: tensor (1, h, w, 3) float32 in `value_range`, the
    letterbox padding (left, top, right, bottom), the rect it came from and the pixel ROI
    actually sampled (the rect enlarged by the padding)."""
    tensor: np.ndarray
    padding: np.ndarray
    rect: Rect
    roi_px: PixelRect
    value_range: tuple[float, float]

    def image(self) -> np.ndarray:
        """The crop as uint8 RGB, for showing what the model saw."""
        low, high = self.value_range
        return np.clip((self.tensor[0] - low) / (high - low) * 255 + 0.5, 0, 255).astype(np.uint8)


def crop(rgb: np.ndarray, rect: Rect, tensor_size: tuple[int, int], keep_aspect: bool = True,
         border_zero: bool = False, value_range: tuple[float, float] = (0.0, 1.0)) -> Crop:
    """Cut the rotated `rect` out of `rgb` into a (1, h, w, 3) float32 tensor in `value_range`.

    The uint8 image is warped bilinearly (the ROI's corners land on the tensor's outer
    pixel edges), then scaled to the float range, as MediaPipe's CPU converter does.
    Outside the image: zeros (border_zero, detectors) or the edge pixels repeated.
    """
    height, width = rgb.shape[:2]
    if not rect.usable:
        raise ValueError(f"ROI must be finite with a positive size, got {rect}")
    roi = rect.to_pixels((width, height))
    padding = np.zeros(4, np.float32)
    if keep_aspect:
        roi, padding = letterbox_padding(roi, tensor_size)
    tensor_w, tensor_h = tensor_size
    src = cv2.boxPoints(((roi.x_center, roi.y_center), (roi.width, roi.height), math.degrees(roi.rotation)))
    dst = np.array([[0, tensor_h], [0, 0], [tensor_w, 0], [tensor_w, tensor_h]], np.float32)
    matrix = cv2.getPerspectiveTransform(src.astype(np.float32), dst)
    warped = cv2.warpPerspective(rgb, matrix, (tensor_w, tensor_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT if border_zero else cv2.BORDER_REPLICATE)
    low, high = value_range
    tensor = warped.astype(np.float32)  # scaled in place: one float32 buffer per crop, not three
    tensor *= np.float32((high - low) / 255.0)
    if low:
        tensor += np.float32(low)
    return Crop(tensor[None], padding, rect, roi, (low, high))


def project_landmarks(points: np.ndarray, rect: Rect, padding: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) landmarks normalised to the model's tensor -> normalised to the image.

    Letterbox removal first, then MediaPipe's LandmarkProjection: rotate about the crop
    centre in normalised units and scale by the rect's normalised size; z scales like x.
    """
    out = np.array(points, np.float32, copy=True)
    if padding is not None and np.any(padding):
        left, top, right, bottom = (float(v) for v in padding)
        out[:, 0] = (out[:, 0] - left) / (1 - left - right)
        out[:, 1] = (out[:, 1] - top) / (1 - top - bottom)
        out[:, 2] = out[:, 2] / (1 - left - right)
    cos, sin = math.cos(rect.rotation), math.sin(rect.rotation)
    x, y = out[:, 0] - 0.5, out[:, 1] - 0.5
    # rotated in float32 as `rotate` does, then scaled and moved in float64
    out[:, 0] = (cos * x - sin * y).astype(np.float64) * rect.width + rect.x_center
    out[:, 1] = (sin * x + cos * y).astype(np.float64) * rect.height + rect.y_center
    out[:, 2] = out[:, 2] * rect.width
    return out


def project_points(points_uv: np.ndarray, roi_px: PixelRect, image_size: tuple[int, int]) -> np.ndarray:
    """(N, 2) points normalised to a crop's tensor -> normalised to the image, exactly
    (DetectionProjection with the crop's transform matrix)."""
    return roi_px.from_unit(points_uv) / np.asarray(image_size, np.float64)
