"""Real model inputs for checking a converted model: crops of real images, scaled as MediaPipe does.

Each Holistic model sees a square crop resized to its input size and scaled to a float
range set by its ImageToTensorCalculator (`output_tensor_float_range` in
mediapipe/modules/{pose_detection/pose_detection_cpu, pose_landmark/pose_landmark_by_roi_cpu,
face_detection/face_detection, face_landmark/face_landmark_cpu, palm_detection/palm_detection_cpu,
hand_landmark/hand_landmark_cpu, holistic_landmark/hand_recrop_by_roi_cpu}.pbtxt).

The crops are simple and fixed, good enough to put real image statistics through each network:
detectors see the whole portrait letterboxed, landmark models a square around the teacher's
points for that part (data_samples/teacher_labels.npz), hand models FreiHAND hand crops from
the fixture folder (`HOLISTIC_LAB_DATA`) when it is there. The cascade's exact ROIs are the
pipeline's job, not this file's.
"""
from __future__ import annotations


import cv2
import numpy as np

from ..datasets import data_dir as fixtures_dir
from ..datasets import fixture_path, sample_image, sample_labels, sample_names
from ..images import check_rgb, load_rgb
from ..topology import PARTS

INPUT_RANGE: dict[str, tuple[float, float]] = {
    "pose_detection": (-1.0, 1.0),
    "pose_landmark_full": (0.0, 1.0),
    "face_detection_short_range": (-1.0, 1.0),
    "face_landmark": (0.0, 1.0),
    "palm_detection_full": (0.0, 1.0),
    "hand_landmark_full": (0.0, 1.0),
    "hand_recrop": (0.0, 1.0),
}
# Which teacher part a landmark model's crop is centred on, and how much wider than the
# part's bounding box the square crop is (MediaPipe's ROI scales are of the same order).
_PART_CROP = {"pose_landmark_full": ("pose", 1.5), "face_landmark": ("face", 1.5)}
_HAND_MODELS = ("palm_detection_full", "hand_landmark_full", "hand_recrop")
FREIHAND_IMAGES = ("freihand/00000355.jpg", "freihand/00017620.jpg")


def square_crop(rgb: np.ndarray, center_xy_px, side_px: float, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The square of `side_px` around `center_xy_px`, resized to `size_px`; zero outside the image.

    Returns the crop and the 2x3 affine matrix that maps image pixels to crop pixels.
    """
    check_rgb(rgb)
    scale = size_px / float(side_px)
    cx, cy = center_xy_px
    matrix = np.array([[scale, 0.0, size_px / 2 - cx * scale], [0.0, scale, size_px / 2 - cy * scale]])
    crop = cv2.warpAffine(rgb, matrix, (size_px, size_px), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, matrix


def to_model_input(crop: np.ndarray, model_name: str) -> np.ndarray:
    """uint8 RGB crop -> float32 in the model's input range, as MediaPipe's ImageToTensorCalculator does."""
    low, high = INPUT_RANGE[model_name]
    return (check_rgb(crop).astype(np.float32) / 255.0 * (high - low) + low).astype(np.float32)


def part_crop(image_name: str, model_name: str, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop of a sample portrait around the teacher's points for `model_name`'s part.

    Returns the uint8 crop and those points in crop pixels (n, 2).
    """
    part, widen = _PART_CROP[model_name]
    rgb, labels = sample_image(image_name), sample_labels(image_name)
    if not labels.present[part]:
        raise RuntimeError(f"teacher labels of {image_name} have no {part}; regenerate data_samples/teacher_labels.npz")
    points_px = labels.pixels()[PARTS[part]]
    low, high = points_px.min(axis=0), points_px.max(axis=0)
    crop, matrix = square_crop(rgb, (low + high) / 2, widen * float((high - low).max()), size_px)
    return crop, points_px @ matrix[:, :2].T + matrix[:, 2]


def real_inputs(model_name: str, size_px: int, data_dir=None) -> dict[str, np.ndarray]:
    """Labelled real inputs (float32, size x size x 3, in the model's range) for one Holistic model."""
    crops = {}
    for image_name in sample_names():
        if model_name in _PART_CROP:
            crops[image_name] = part_crop(image_name, model_name, size_px)[0]
        else:
            rgb = sample_image(image_name)
            crops[image_name] = square_crop(rgb, (rgb.shape[1] / 2, rgb.shape[0] / 2), max(rgb.shape[:2]), size_px)[0]
    if model_name in _HAND_MODELS and fixtures_dir(data_dir) is not None:  # local fixtures only, never a download
        for relative in FREIHAND_IMAGES:
            rgb = load_rgb(fixture_path(relative, data_dir))
            crops[relative] = cv2.resize(rgb, (size_px, size_px), interpolation=cv2.INTER_AREA)
    return {label: to_model_input(crop, model_name) for label, crop in crops.items()}
