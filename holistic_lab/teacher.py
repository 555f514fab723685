"""MediaPipeTeacher: the real MediaPipe Holistic (`mp.solutions.holistic`), wrapped.

It is the reference every other model in the course is measured against and the
labeller that turns unlabelled images and video into 543-point training targets.
Only model_complexity=1 is possible offline: 0 and 2 make mediapipe download
pose_landmark_lite/heavy at run time, which these machines cannot do.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .images import check_rgb
from .native_logs import filtered_native_stderr
from .result import HolisticResult

_MEDIAPIPE_PARTS = {
    "pose": "pose_landmarks",
    "face": "face_landmarks",
    "left_hand": "left_hand_landmarks",
    "right_hand": "right_hand_landmarks",
}


def result_from_mediapipe(mp_result, width: int, height: int) -> HolisticResult:
    """Convert the NamedTuple `mp.solutions.holistic.Holistic.process` returns."""
    parts, pose_visibility = {}, None
    for part, attribute in _MEDIAPIPE_PARTS.items():
        landmarks = getattr(mp_result, attribute, None)
        if landmarks is None:
            continue
        parts[part] = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float32)
        if part == "pose":
            pose_visibility = np.array([p.visibility for p in landmarks.landmark], np.float32)
    return HolisticResult.from_parts(parts, width, height, pose_visibility=pose_visibility)


class MediaPipeTeacher:
    """`mp.solutions.holistic.Holistic` at model_complexity=1, returning HolisticResult.

    static_image_mode=True runs detection on every image (photos, shuffled datasets);
    False tracks across consecutive frames of one video, as MediaPipe does.
    """

    def __init__(self, static_image_mode: bool = True, model_complexity: int = 1,
                 smooth_landmarks: bool = True, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        if model_complexity != 1:
            raise ValueError(
                f"model_complexity={model_complexity} is not available offline: mediapipe downloads "
                "pose_landmark_lite (0) or pose_landmark_heavy (2) at run time; only 1 (pose_landmark_full) "
                "ships in the mediapipe==0.10.21 wheel")
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {value}")
        self.static_image_mode = static_image_mode
        with filtered_native_stderr():
            import mediapipe as mp

            self._holistic = mp.solutions.holistic.Holistic(
                static_image_mode=static_image_mode,
                model_complexity=1,
                smooth_landmarks=smooth_landmarks,
                refine_face_landmarks=False,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )

    def process(self, rgb: np.ndarray) -> HolisticResult:
        """Run Holistic on one uint8 RGB image; parts not found are absent (NaN), never an error."""
        check_rgb(rgb)
        height, width = rgb.shape[:2]
        with filtered_native_stderr():
            mp_result = self._holistic.process(np.ascontiguousarray(rgb))
        return result_from_mediapipe(mp_result, width, height)

    def process_frames(self, frames: Iterable[np.ndarray]) -> Iterator[HolisticResult]:
        """Process consecutive frames in order (tracking when static_image_mode=False)."""
        for frame in frames:
            yield self.process(frame)

    def close(self) -> None:
        self._holistic.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
