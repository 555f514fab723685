"""MediaPipeTeacher: the real MediaPipe Holistic (`mp.solutions.holistic`), wrapped.

It is the reference every other model in the course is measured against and the
labeller that turns unlabelled images and video into 543-point training targets.
Only model_complexity=1 is possible offline: 0 and 2 make mediapipe download
pose_landmark_lite/heavy at run time, which these machines cannot do.

In static_image_mode MediaPipe's graph still tracks the face and hand ROIs from one call
to the next (holistic_landmark/face_tracking.pbtxt and hand_tracking.pbtxt take the
previous landmarks whatever the mode), so the same image labelled twice can differ by
pixels and a dataset's labels would depend on its order. The teacher resets the graph
before every static image (about 5 ms), which makes each label a function of its image
alone.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .images import check_rgb
from .native_logs import filtered_native_stderr
from .result import HolisticResult

# Context around a hand box for `process_hand`: palm detection needs the whole palm plus
# some wrist and background inside its 192 x 192 input, so the crop is a square 2x the
# box's long side.
HAND_CROP_SCALE = 2.0

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
        self._hands = None  # mp.solutions.hands, created on the first process_hand call
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
            # TFLite announces its XNNPACK delegate at the first inference, from a graph
            # thread that can outlive process(); a blank frame here keeps that inside the filter
            self._holistic.process(np.zeros((64, 64, 3), np.uint8))
            self._holistic.reset()

    def process(self, rgb: np.ndarray) -> HolisticResult:
        """Run Holistic on one uint8 RGB image; parts not found are absent (NaN), never an error."""
        check_rgb(rgb)
        height, width = rgb.shape[:2]
        with filtered_native_stderr():
            if self.static_image_mode:
                self._holistic.reset()
            mp_result = self._holistic.process(np.ascontiguousarray(rgb))
        return result_from_mediapipe(mp_result, width, height)

    def process_frames(self, frames: Iterable[np.ndarray]) -> Iterator[HolisticResult]:
        """Process consecutive frames in order (tracking when static_image_mode=False)."""
        for frame in frames:
            yield self.process(frame)

    def close(self) -> None:
        self._holistic.close()
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def process_hand(self, rgb: np.ndarray, box=None, side: str = "right") -> np.ndarray:
        """MediaPipe's hand stage alone on one region: (21, 3) points normalised to the full
        image (z scaled like x), all NaN if no hand is found.

        `box` is (x0, y0, x1, y1) in pixels (default: the whole image); it is grown to a
        square of HAND_CROP_SCALE x its long side, clipped to the image, and
        `mp.solutions.hands.Hands(static_image_mode=True, model_complexity=1, max_num_hands=1)`
        (palm_detection_full + hand_landmark_full, the models Holistic uses) runs on that
        crop. `side` ("left" or "right", the subject's hand) names which hand the caller
        expects; with one hand per crop the teacher keeps whatever hand it finds.
        """
        check_rgb(rgb)
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        height, width = rgb.shape[:2]
        if box is None:
            x0, y0, x1, y1 = 0, 0, width, height
        else:
            bx0, by0, bx1, by1 = (float(v) for v in box)
            if not (np.isfinite([bx0, by0, bx1, by1]).all() and bx1 > bx0 and by1 > by0):
                raise ValueError(f"box must be finite (x0, y0, x1, y1) pixels with x1 > x0 and y1 > y0, got {box}")
            half = max(bx1 - bx0, by1 - by0) * HAND_CROP_SCALE / 2
            cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"box {box} lies outside the {width}x{height} image")
        with filtered_native_stderr():
            if self._hands is None:
                import mediapipe as mp

                self._hands = mp.solutions.hands.Hands(static_image_mode=True, model_complexity=1, max_num_hands=1)
            self._hands.reset()
            found = self._hands.process(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if not found.multi_hand_landmarks:
            return np.full((21, 3), np.nan, np.float32)
        local = np.array([(p.x, p.y, p.z) for p in found.multi_hand_landmarks[0].landmark], np.float64)
        crop_w, crop_h = x1 - x0, y1 - y0
        return np.stack([(local[:, 0] * crop_w + x0) / width, (local[:, 1] * crop_h + y0) / height,
                         local[:, 2] * crop_w / width], axis=1).astype(np.float32)
