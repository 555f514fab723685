"""SSD detection decoding and weighted non-maximum suppression, as MediaPipe's detectors use them.

Follows mediapipe/calculators/tensor/tensors_to_detections_calculator (box and
keypoint decoding with `reverse_output_order`, i.e. x, y, w, h per box, keypoints as
x, y pairs, sigmoid scores clipped at +-100), util/non_max_suppression_calculator
(WEIGHTED algorithm: each kept box is the score-weighted mean of the boxes it
suppresses) and util/detection_letterbox_removal_calculator. Written by hand because
no library does MediaPipe's weighted NMS with keypoints; OpenCV's NMSBoxes keeps the
top box unchanged, which moves the pose ROI by several pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    """One detection, normalised to the tensor or the image: box = (xmin, ymin, xmax, ymax),
    keypoints (K, 2) as x, y, score 0..1."""
    box: np.ndarray
    keypoints: np.ndarray
    score: float


@dataclass(frozen=True)
class DetectorSpec:
    """How to read one SSD detector's two outputs (boxes (N, 4 + 2K), scores (N, 1))."""
    input_size: int
    num_keypoints: int
    min_score: float = 0.5
    nms_iou: float = 0.3
    score_clip: float = 100.0


@dataclass
class DetectionArrays:
    """Detections side by side: boxes (N, 4) and keypoints (N, K, 2) float32, scores (N,) float64."""
    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def to_list(self) -> list[Detection]:
        return [Detection(box, kps, float(score)) for box, kps, score in zip(self.boxes, self.keypoints, self.scores)]


def decode_detection_arrays(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_centers: np.ndarray,
                            spec: DetectorSpec) -> DetectionArrays:
    """Raw SSD outputs -> the detections above `spec.min_score` as arrays, in tensor-normalised coordinates."""
    n = len(anchor_centers)
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(n, -1)
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(n), -spec.score_clip, spec.score_clip)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(scores >= spec.min_score)
    raw, anchors = raw_boxes[keep] / spec.input_size, anchor_centers[keep]
    centers = raw[:, 0:2] + anchors
    half_sizes = raw[:, 2:4] / 2
    boxes = np.concatenate([centers - half_sizes, centers + half_sizes], axis=1)
    keypoints = raw[:, 4:4 + 2 * spec.num_keypoints].reshape(-1, spec.num_keypoints, 2) + anchors[:, None, :]
    valid = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    return DetectionArrays(boxes[valid], keypoints[valid], scores[keep][valid])


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_centers: np.ndarray,
                      spec: DetectorSpec) -> list[Detection]:
    """Raw SSD outputs -> detections above `spec.min_score`, in tensor-normalised coordinates."""
    return decode_detection_arrays(raw_boxes, raw_scores, anchor_centers, spec).to_list()


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (4,) box with (N, 4) boxes, all xmin, ymin, xmax, ymax."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms_arrays(detections: DetectionArrays, iou_threshold: float) -> list[Detection]:
    """`weighted_nms` on detections held as arrays (no per-detection objects until the merged ones)."""
    remaining = np.argsort(-detections.scores, kind="stable")  # best first; ties keep their order
    merged = []
    while remaining.size:
        best = remaining[0]
        overlapping = box_iou(detections.boxes[best], detections.boxes[remaining]) > iou_threshold
        overlapping[0] = True  # a zero-area best box has IoU 0 with itself: it still forms its own group
        group = remaining[overlapping]
        weights = detections.scores[group].astype(np.float32)[:, None]
        box = (detections.boxes[group] * weights).sum(0) / weights.sum()
        keypoints = (detections.keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        merged.append(Detection(box, keypoints, float(detections.scores[best])))
        remaining = remaining[~overlapping]
    return merged


def weighted_nms(detections: list[Detection], iou_threshold: float) -> list[Detection]:
    """MediaPipe's WEIGHTED non-max suppression: best first; every detection overlapping the
    best by more than `iou_threshold` is merged into it (score-weighted mean of boxes and
    keypoints; the merged detection keeps the best score)."""
    if not detections:
        return []
    arrays = DetectionArrays(np.stack([d.box for d in detections]), np.stack([d.keypoints for d in detections]),
                             np.array([d.score for d in detections], np.float64))
    return weighted_nms_arrays(arrays, iou_threshold)


def detections_from_outputs(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_centers: np.ndarray,
                            spec: DetectorSpec) -> list[Detection]:
    """A detector's raw outputs -> its detections after weighted NMS, best first, tensor-normalised."""
    return weighted_nms_arrays(decode_detection_arrays(raw_boxes, raw_scores, anchor_centers, spec), spec.nms_iou)


def remove_letterbox(detection: Detection, padding: np.ndarray) -> Detection:
    """Map a detection from the letterboxed tensor to the image: padding = (left, top, right, bottom)."""
    left, top, right, bottom = padding
    offset = np.array([left, top], np.float32)
    scale = np.array([1 - left - right, 1 - top - bottom], np.float32)
    box = np.concatenate([(detection.box[:2] - offset) / scale, (detection.box[2:] - offset) / scale])
    return Detection(box, (detection.keypoints - offset) / scale, detection.score)
