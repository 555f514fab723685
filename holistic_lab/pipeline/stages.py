"""The six model stages of MediaPipe Holistic (model_complexity=1), each a small object
around a swappable model runner, in the order an image flows through them.

Numbers come from the graphs in google-ai-edge/mediapipe, mediapipe/modules:
pose_detection/pose_detection_cpu, pose_landmark/{pose_detection_to_roi,
pose_landmark_by_roi_cpu, tensors_to_pose_landmarks_and_segmentation,
pose_landmarks_to_roi}, holistic_landmark/{face_landmarks_from_pose_to_recrop_roi,
face_detection_front_detections_to_roi, face_landmarks_to_roi,
hand_landmarks_from_pose_to_recrop_roi, hand_recrop_by_roi_cpu, hand_landmarks_to_roi,
hand_visibility_from_hand_landmarks_from_pose}, face_detection/face_detection(.pbtxt,
_short_range), face_landmark/face_landmark_cpu and hand_landmark/hand_landmark_cpu.

Each stage: `crop(...)` cuts its input from the image, `infer(crop)` runs the model
(timed in `last_inference_ms`), a decode step turns outputs into image-normalised
landmarks or the next ROI. A stage accepts any model whose outputs come in the TFLite
output order (see runners.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .anchors import FACE_DETECTION_ANCHORS, POSE_DETECTION_ANCHORS, ssd_anchor_centers
from .detection import Detection, DetectorSpec, detections_from_outputs, remove_letterbox
from .roi import (Crop, Rect, crop, hand_rect_from_landmarks, hand_rect_from_pose, project_landmarks,
                  project_points, rect_from_alignment_points, rect_from_points, transform_rect)
from .runners import check_outputs, make_runner

WHOLE_IMAGE = Rect(0.5, 0.5, 1.0, 1.0, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float32)))


class Stage:
    """A model runner plus the timing and outputs of its last call."""
    default_model: str
    name: str

    def __init__(self, model=None, num_threads: int = 1):
        self.runner = make_runner(model, self.default_model, num_threads)
        self.last_inference_ms = 0.0
        self.last_outputs: list[np.ndarray] = []

    def infer(self, model_input: Crop) -> list[np.ndarray]:
        start = time.perf_counter()
        outputs = self.runner(model_input.tensor)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        self.last_outputs = outputs
        return outputs


class PoseDetection(Stage):
    """BlazePose detector on the whole letterboxed image; its first detection (the highest
    score after weighted NMS: the most prominent person) becomes the pose ROI."""
    name, default_model = "pose_detection", "pose_detection"

    def __init__(self, model=None, num_threads: int = 1, min_score: float = 0.5):
        super().__init__(model, num_threads)
        self.spec = DetectorSpec(224, 4, min_score=min_score)
        self.anchors = ssd_anchor_centers(POSE_DETECTION_ANCHORS)

    def crop(self, rgb: np.ndarray) -> Crop:
        return crop(rgb, WHOLE_IMAGE, (224, 224), keep_aspect=True, border_zero=True, value_range=(-1.0, 1.0))

    def detect(self, model_input: Crop) -> list[Detection]:
        """All people found, best first, normalised to the image."""
        n = len(self.anchors)
        boxes, scores = check_outputs(self.infer(model_input), [n * 12, n], self.name)
        detections = detections_from_outputs(boxes, scores, self.anchors, self.spec)
        return [remove_letterbox(d, model_input.padding) for d in detections]


def pose_rect_from_detection(detection: Detection, image_size) -> Rect:
    """Keypoint 0 (hip centre) and 1 (full-body circle) -> upright square, enlarged 1.25x."""
    raw = rect_from_alignment_points(detection.keypoints[0], detection.keypoints[1], image_size, 90.0)
    return transform_rect(raw, image_size, scale=1.25)


def pose_rect_from_landmarks(auxiliary: np.ndarray, image_size) -> Rect:
    """The same ROI from the 2 auxiliary landmarks (video tracking)."""
    return transform_rect(pose_alignment_rect(auxiliary, image_size), image_size, scale=1.25)


def pose_alignment_rect(auxiliary: np.ndarray, image_size) -> Rect:
    return rect_from_alignment_points(auxiliary[0], auxiliary[1], image_size, 90.0)


@dataclass
class PoseLandmarks:
    xyz: np.ndarray          # (33, 3) image-normalised
    visibility: np.ndarray   # (33,)
    auxiliary: np.ndarray    # (2, 3) image-normalised: the next frame's ROI
    score: float             # pose presence


def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel_size: int = 7,
                        min_confidence: float = 0.5) -> np.ndarray:
    """Move each landmark to the sigmoid-weighted mean of its heatmap around it
    (util/refine_landmarks_from_heatmap_calculator; cell indices, not centres, as MediaPipe).

    Landmarks go in groups of one window shape (the heatmap's edge cuts some windows), each
    group's windows gathered at once: the sums then run over the same cells in the same order
    as one window at a time, bit for bit (a video track amplifies the slightest difference).
    """
    out = xy.copy()
    rows, cols = heatmap.shape[:2]
    half = (kernel_size - 1) // 2
    col_f, row_f = xy[:, 0] * cols, xy[:, 1] * rows
    # C++ int conversion truncates toward zero: the cell lies on the map exactly when -1 < index < size
    on_map = (col_f > -1) & (col_f < cols) & (row_f > -1) & (row_f < rows)
    col, row = np.where(on_map, col_f, 0).astype(np.int64), np.where(on_map, row_f, 0).astype(np.int64)
    row0, col0 = np.maximum(row - half, 0), np.maximum(col - half, 0)
    heights, widths = np.minimum(row + half + 1, rows) - row0, np.minimum(col + half + 1, cols) - col0
    shapes = heights * (kernel_size + 1) + widths
    for shape in np.unique(shapes[on_map]):
        members = np.flatnonzero(on_map & (shapes == shape))
        height, width = divmod(int(shape), kernel_size + 1)
        window_rows = row0[members, None] + np.arange(height)
        window_cols = col0[members, None] + np.arange(width)
        with np.errstate(over="ignore"):  # exp overflows to inf for very negative logits: sigmoid 0
            confidence = sigmoid(heatmap[window_rows[:, :, None], window_cols[:, None, :], members[:, None, None]])
        total = confidence.sum(axis=(1, 2))
        refined = (confidence.max(axis=(1, 2)) >= min_confidence) & (total > 0)
        weights = confidence.astype(np.float64)
        x = (weights * window_cols[:, None, :]).sum(axis=(1, 2)) / cols / total
        y = (weights * window_rows[:, :, None]).sum(axis=(1, 2)) / rows / total
        out[members[refined], 0], out[members[refined], 1] = x[refined], y[refined]
    return out


class PoseLandmark(Stage):
    """BlazePose GHUM full: 33 landmarks + 2 auxiliary (39 rows of x, y, z, visibility,
    presence in 256-pixel units), refined by the 64x64 heatmap; `None` when the pose
    presence score is not above `min_presence` (min_tracking_confidence)."""
    name, default_model = "pose_landmark", "pose_landmark_full"

    def __init__(self, model=None, num_threads: int = 1, min_presence: float = 0.5):
        super().__init__(model, num_threads)
        self.min_presence = min_presence

    def crop(self, rgb: np.ndarray, rect: Rect) -> Crop:
        return crop(rgb, rect, (256, 256), keep_aspect=True)

    def landmarks(self, model_input: Crop) -> PoseLandmarks | None:
        landmarks, flag, _, heatmap = check_outputs(self.infer(model_input), [195, 1, 0, 64 * 64 * 39],
                                                    self.name)[:4]
        score = float(flag[0])
        if not score > self.min_presence:
            return None
        raw = landmarks.reshape(39, 5)
        xyz = raw[:, :3] / 256.0
        xyz[:, :2] = refine_from_heatmap(xyz[:, :2], heatmap.reshape(64, 64, 39))
        xyz = project_landmarks(xyz, model_input.rect, model_input.padding)
        return PoseLandmarks(xyz[:33], sigmoid(raw[:33, 3]), xyz[33:35], score)


FACE_FROM_POSE = slice(0, 11)  # nose .. mouth: the pose's face landmarks


def face_rect_from_pose(pose_xyz: np.ndarray, image_size) -> Rect:
    """Box around the pose's 11 face points, levelled on the eyes (5 -> 2), enlarged 3x."""
    raw = rect_from_points(pose_xyz[FACE_FROM_POSE], image_size, start=5, end=2, target_degrees=0.0)
    return transform_rect(raw, image_size, scale=3.0)


def face_rect_from_landmarks(face_xyz: np.ndarray, image_size) -> Rect:
    """Tracking ROI: box around the 468 points, levelled on the eye corners 33 -> 263, 1.5x."""
    raw = rect_from_points(face_xyz, image_size, start=33, end=263, target_degrees=0.0)
    return transform_rect(raw, image_size, scale=1.5)


class FaceDetection(Stage):
    """BlazeFace short range inside the ROI from pose: re-crops the face (its 6 keypoints
    give a tighter, level ROI); no face found means no face landmarks, as in MediaPipe."""
    name, default_model = "face_detection", "face_detection_short_range"

    def __init__(self, model=None, num_threads: int = 1, min_score: float = 0.5):
        super().__init__(model, num_threads)
        self.spec = DetectorSpec(128, 6, min_score=min_score)
        self.anchors = ssd_anchor_centers(FACE_DETECTION_ANCHORS)

    def crop(self, rgb: np.ndarray, rect: Rect) -> Crop:
        return crop(rgb, rect, (128, 128), keep_aspect=True, border_zero=True, value_range=(-1.0, 1.0))

    def recrop_rect(self, model_input: Crop, image_size) -> Rect | None:
        n = len(self.anchors)
        boxes, scores = check_outputs(self.infer(model_input), [n * 16, n], self.name)
        detections = detections_from_outputs(boxes, scores, self.anchors, self.spec)
        if not detections:
            return None
        keypoints = project_points(detections[0].keypoints, model_input.roi_px, image_size)
        raw = rect_from_points(keypoints, image_size, start=0, end=1, target_degrees=0.0)
        return transform_rect(raw, image_size, scale=2.0, shift_y=-0.1)


class FaceLandmark(Stage):
    """Face mesh: 468 points (x, y, z in 192-pixel units) on a stretched 192x192 crop;
    `None` when sigmoid(face flag) is not above 0.5."""
    name, default_model = "face_landmark", "face_landmark"

    def crop(self, rgb: np.ndarray, rect: Rect) -> Crop:
        return crop(rgb, rect, (192, 192), keep_aspect=False)

    def landmarks(self, model_input: Crop) -> np.ndarray | None:
        landmarks, flag = check_outputs(self.infer(model_input), [468 * 3, 1], self.name)[:2]
        if not float(sigmoid(flag[0])) > 0.5:
            return None
        return project_landmarks(landmarks.reshape(468, 3) / 192.0, model_input.rect)


# The pose points that place each hand: wrist, pinky, index (subject's own side).
HAND_FROM_POSE = {"left_hand": (15, 17, 19), "right_hand": (16, 18, 20)}
MIN_WRIST_VISIBILITY = 0.1


def hand_rect_from_pose_landmarks(pose: PoseLandmarks, side: str, image_size) -> Rect | None:
    """ROI of one hand from the pose, or None when the pose's wrist is not visible (> 0.1)."""
    wrist, pinky, index = HAND_FROM_POSE[side]
    if not pose.visibility[wrist] > MIN_WRIST_VISIBILITY:
        return None
    raw = hand_rect_from_pose(pose.xyz[wrist], pose.xyz[pinky], pose.xyz[index], image_size)
    return transform_rect(raw, image_size, scale=2.7, shift_y=-0.1)


def hand_tracking_rect(hand_xyz: np.ndarray, image_size) -> Rect:
    """Tracking ROI from 21 hand landmarks: rotated tight box, 2x, shifted 0.1 toward the fingers."""
    return transform_rect(hand_rect_from_landmarks(hand_xyz, image_size), image_size, scale=2.0, shift_y=-0.1)


class HandRecrop(Stage):
    """Holistic's hand re-crop model: two points (hand centre and a point fixing size and
    direction) that turn the rough ROI from pose into a tight, rotated hand ROI."""
    name, default_model = "hand_recrop", "hand_recrop"

    def crop(self, rgb: np.ndarray, rect: Rect) -> Crop:
        return crop(rgb, rect, (256, 256), keep_aspect=True)

    def recrop_rect(self, model_input: Crop, image_size) -> Rect:
        (points,) = check_outputs(self.infer(model_input), [4], self.name)[:1]
        xyz = np.zeros((2, 3), np.float32)
        xyz[:, :2] = points.reshape(2, 2) / 256.0
        aligned = project_landmarks(xyz, model_input.rect, model_input.padding)
        raw = rect_from_alignment_points(aligned[0], aligned[1], image_size, -90.0)
        return transform_rect(raw, image_size, scale=1.0, shift_y=-0.1)


class HandLandmark(Stage):
    """Hand landmarks full: 21 points (x, y in 224-pixel units, z scaled by 1/0.4); `None`
    when the hand presence score is not above 0.5."""
    name, default_model = "hand_landmark", "hand_landmark_full"

    def crop(self, rgb: np.ndarray, rect: Rect) -> Crop:
        return crop(rgb, rect, (224, 224), keep_aspect=True)

    def scored_landmarks(self, model_input: Crop) -> tuple[float, np.ndarray]:
        """(hand presence score, (21, 3) image-normalised landmarks) whatever the score."""
        return self.decode(self.infer(model_input), model_input)

    def decode(self, outputs: list[np.ndarray], model_input: Crop) -> tuple[float, np.ndarray]:
        """(hand presence score, (21, 3) image-normalised landmarks) from the model's outputs on `model_input`."""
        landmarks, flag = check_outputs(outputs, [63, 1], self.name)[:2]
        xyz = landmarks.reshape(21, 3) / np.array([224.0, 224.0, 224.0 * 0.4], np.float32)
        return float(flag[0]), project_landmarks(xyz, model_input.rect, model_input.padding)

    def landmarks(self, model_input: Crop) -> np.ndarray | None:
        score, xyz = self.scored_landmarks(model_input)
        return xyz if score > 0.5 else None
