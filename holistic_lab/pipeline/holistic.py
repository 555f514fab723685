"""HolisticPipeline: MediaPipe Holistic's cascade in readable Python over swappable models.

Reproduces `mp.solutions.holistic` at model_complexity=1 (graph
mediapipe/modules/holistic_landmark/holistic_landmark_cpu.pbtxt and its sub-graphs):

1. pose detection on the letterboxed image -> rotated pose ROI (skipped in video mode
   while the previous frame's landmarks track the pose);
2. pose landmarks (33 + 2 auxiliary) in that ROI;
3. face: ROI from the pose's 11 face points -> face detection inside it re-crops the
   face -> 468 face landmarks;
4. each hand: ROI from the pose's wrist, pinky and index -> hand re-crop model -> 21 hand
   landmarks; the pose side decides left/right (no handedness classifier).

Parts at once: with `workers=2` (or 3), once the pose is known the face and the two hands
are processed in a small thread pool, as MediaPipe's graph scheduler runs them on its
executor threads. TFLite's `invoke` releases the GIL, so the branches' models really run
on separate cores. Each thread gets its own interpreters (the right hand a second copy of
the hand models); results are identical to one after another.

Several people: like MediaPipe, the pipeline follows one person, the pose detection
with the highest score after weighted NMS (the most prominent person); in video mode it
keeps tracking that person until the pose presence score drops, then detects again.
"""
from __future__ import annotations

import contextlib
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Iterable, Iterator

import numpy as np

from ..images import check_rgb, iter_video_frames
from ..result import HolisticResult
from .gesture import GestureStage
from .roi import Rect, transform_rect
from .runners import TFLiteRunner
from .smoothing import POSE_AUXILIARY_FILTER, POSE_LANDMARKS_FILTER, LandmarkSmoother
from .stages import (FaceDetection, FaceLandmark, HandLandmark, HandRecrop, PoseDetection, PoseLandmark,
                     face_rect_from_landmarks, face_rect_from_pose, hand_rect_from_pose_landmarks,
                     hand_tracking_rect, pose_alignment_rect, pose_rect_from_detection,
                     pose_rect_from_landmarks)
from .tracking import FACE_TRACKING, HAND_TRACKING, keep_tracking

HANDS = ("left_hand", "right_hand")
# HolisticPipeline's model arguments and the shipped model each one replaces, e.g. to run
# the whole cascade on converted models:
# HolisticPipeline(**{arg: tflite_to_keras(model_path(name)) for arg, name in STAGE_MODELS.items()})
STAGE_MODELS = {
    "pose_detection_model": PoseDetection.default_model,
    "pose_landmark_model": PoseLandmark.default_model,
    "face_detection_model": FaceDetection.default_model,
    "face_landmark_model": FaceLandmark.default_model,
    "hand_recrop_model": HandRecrop.default_model,
    "hand_landmark_model": HandLandmark.default_model,
}
FRAME_INTERVAL_S = 0.033333  # mp.solutions feeds frames 33333 us apart (30 fps) whatever the video's rate


STAGE_THREADS_KEYS = (*(argument.removesuffix("_model") for argument in STAGE_MODELS), "gesture")


PARTS = ("face", *HANDS)
MAX_WORKERS = len(PARTS)


def check_workers(workers) -> int:
    """`workers` checked: a whole number of threads for the face and hand branches, 1..3."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be a whole number from 1 (parts one after another) to {MAX_WORKERS} "
                         f"(face and both hands at once), got {workers!r}")
    return workers


def part_rank(key: str) -> int:
    """Where a timing/ROI key belongs in the sequential order pose, face, left hand, right hand,
    then the gestures (classified after both hands)."""
    if key.endswith("_gesture"):
        return len(PARTS) + 1
    for rank, part in enumerate(("pose", *PARTS)):
        if key.startswith(part):
            return rank
    return len(PARTS) + 2


def in_part_order(record: dict) -> dict:
    """`record` with its keys in the order the sequential cascade writes them (a stable sort by
    part: within one branch a thread writes in a fixed order; only branches interleave)."""
    return dict(sorted(record.items(), key=lambda item: part_rank(item[0])))


def own_copy(stage):
    """The same stage over a second interpreter of the same .tflite (an interpreter must not be
    used by two threads at once), or None when its model is not a .tflite file (a Keras model or
    a callable: the caller then runs both hands in one thread)."""
    runner = stage.runner
    if not isinstance(runner, TFLiteRunner):
        return None
    return type(stage)(TFLiteRunner(runner.path, runner.num_threads))


def threads_per_stage(num_threads: int | dict[str, int]) -> dict[str, int]:
    """Stage name -> interpreter threads, from one number or a partial mapping (default 1)."""
    if isinstance(num_threads, dict):
        unknown = set(num_threads) - set(STAGE_THREADS_KEYS)
        if unknown:
            raise ValueError(f"num_threads names unknown stages {sorted(unknown)}; expected some of {STAGE_THREADS_KEYS}")
        threads = {stage: num_threads.get(stage, 1) for stage in STAGE_THREADS_KEYS}
    else:
        threads = dict.fromkeys(STAGE_THREADS_KEYS, num_threads)
    for stage, count in threads.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"num_threads for {stage} must be a whole number >= 1, got {count!r}")
    return threads


class HolisticPipeline:
    """The Holistic cascade; `process(rgb) -> HolisticResult`, `last_timings` per stage (ms).

    Each `*_model` argument replaces one stage's model: None (the shipped .tflite), a
    shipped model name (`holistic_lab.mediapipe_models.HOLISTIC_MODELS`), a path to any
    .tflite (a quantized one, say), a keras.Model, or a callable; the model takes one
    float32 (1, H, W, 3) tensor and returns its outputs in the TFLite output order.

    static_image_mode=True: every image is independent (detection each time, no state).
    False: consecutive video frames; the pose ROI comes from the previous landmarks,
    face and hand ROIs follow the previous landmarks while they agree with this frame's
    re-crop, and (smooth_landmarks) pose landmarks are one-euro filtered, as MediaPipe.
    num_threads: TFLite interpreter threads, one number for every stage or a mapping from
    stage name (STAGE_THREADS_KEYS) to threads, the rest getting 1. Each interpreter owns
    its XNNPACK thread pool and an idle pool's worker spin-waits for a while, so on a
    2-core machine threads in every stage make the pools fight for the second core;
    {"pose_landmark": 2} gives it to the one stage where it pays (see notebook 01).
    gesture_model: a gesture classifier folder (`holistic_lab.gestures`); each result then has
    `gestures = {"left_hand": (label, score) | None, "right_hand": ...}`. Its model is the hand
    landmark model with a gesture head, so without a hand_landmark_model it runs as the hand
    stage, one pass per hand giving landmarks and gesture; beside another hand model it is a
    second pass on the same crop.
    workers: 1 runs face, left hand and right hand one after another; 2 or 3 run them at once
    in that many threads (results identical; `last_timings` then holds each model's time, the
    pre/post-processing summed over threads, and the wall `total`; `last_parts_ms` is the wall
    time of the face-and-hands section). With TFLite models the right hand gets its own copy of
    the hand models' interpreters; with Keras models or callables both hands share one thread.
    Use `close()` or `with HolisticPipeline(...) as pipeline:` to stop the threads early.
    """

    def __init__(self, static_image_mode: bool = True, num_threads: int | dict[str, int] = 1,
                 smooth_landmarks: bool = True, workers: int = 1,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 pose_detection_model=None, pose_landmark_model=None, face_detection_model=None,
                 face_landmark_model=None, hand_recrop_model=None, hand_landmark_model=None, gesture_model=None):
        for name, value in (("min_detection_confidence", min_detection_confidence),
                            ("min_tracking_confidence", min_tracking_confidence)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in 0..1, got {value}")
        self.static_image_mode = static_image_mode
        self.smooth_landmarks = smooth_landmarks
        self.workers = check_workers(workers)
        threads = threads_per_stage(num_threads)
        self.pose_detection = PoseDetection(pose_detection_model, threads["pose_detection"],
                                            min_score=min_detection_confidence)
        self.pose_landmark = PoseLandmark(pose_landmark_model, threads["pose_landmark"],
                                          min_presence=min_tracking_confidence)
        self.face_detection = FaceDetection(face_detection_model, threads["face_detection"])
        self.face_landmark = FaceLandmark(face_landmark_model, threads["face_landmark"])
        self.hand_recrop = HandRecrop(hand_recrop_model, threads["hand_recrop"])
        self._gesture_is_hand_stage = gesture_model is not None and hand_landmark_model is None
        self.gesture = None if gesture_model is None else GestureStage(
            gesture_model, threads["hand_landmark" if self._gesture_is_hand_stage else "gesture"])
        if self._gesture_is_hand_stage:
            hand_landmark_model = self.gesture.runner
        self.hand_landmark = HandLandmark(hand_landmark_model, threads["hand_landmark"])
        self._hand_stages = {"left_hand": (self.hand_recrop, self.hand_landmark)}
        self._hand_stages["right_hand"] = self._hand_stages["left_hand"]
        self._pool, self._closed, self._busy = None, False, threading.Lock()
        if self.workers > 1:
            copies = (own_copy(self.hand_recrop), own_copy(self.hand_landmark))
            if None not in copies:
                self._hand_stages["right_hand"] = copies
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="holistic-part")
            self._closer = weakref.finalize(self, self._pool.shutdown, wait=False)
        self.last_timings: dict[str, float] = {}
        self.last_parts_ms = 0.0
        self.last_rois: dict[str, Rect] = {}
        self.last_roi_sources: dict[str, str] = {}
        self.last_crops: dict = {}
        self.last_outputs: dict[str, list[np.ndarray]] = {}
        self.reset()

    @classmethod
    def from_variant(cls, folder, **kwargs) -> "HolisticPipeline":
        """The pipeline over a variant folder's stage models (the shipped model for the others);
        `kwargs` are the other constructor arguments (static_image_mode, num_threads, ...)."""
        from ..variants import read_variant  # variants reads this module's STAGE_MODELS table

        variant_models = read_variant(folder).pipeline_kwargs()
        clashes = sorted(set(variant_models) & set(kwargs))
        if clashes:
            raise ValueError(f"from_variant: {', '.join(clashes)} come from the variant {folder}; do not pass them too")
        return cls(**kwargs, **variant_models)

    def close(self) -> None:
        """Stop the face/hand worker threads (workers > 1); the pipeline cannot process after this."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._closer.detach()

    def __enter__(self) -> "HolisticPipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self) -> None:
        """Forget the previous frame (start of a new video)."""
        self._frame_index = 0
        self._pose_rect: Rect | None = None
        self._previous: dict[str, np.ndarray | None] = {"face": None, "left_hand": None, "right_hand": None}
        self._pose_smoother = LandmarkSmoother(POSE_LANDMARKS_FILTER)
        self._auxiliary_smoother = LandmarkSmoother(POSE_AUXILIARY_FILTER)

    @contextlib.contextmanager
    def _one_caller(self):
        # two threads in one pipeline would share its interpreters (TFLite then fails with an
        # unrelated "reference to internal data" error) and mix their timings and tracking state
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("this HolisticPipeline is already processing an image in another thread; it serves "
                               "one thread at a time: make one pipeline per thread (workers=2|3 runs its parts at once)")
        try:
            yield
        finally:
            self._busy.release()

    def process(self, rgb: np.ndarray) -> HolisticResult:
        """Run the cascade on one uint8 RGB image; parts not found are absent (NaN). One thread
        at a time: a call while another thread's call runs raises RuntimeError."""
        check_rgb(rgb)
        if self._closed:
            raise RuntimeError("this HolisticPipeline was closed; make a new one")
        with self._one_caller():
            return self._process(rgb)

    def _process(self, rgb: np.ndarray) -> HolisticResult:
        start = time.perf_counter()
        height, width = rgb.shape[:2]
        self._image_size = (width, height)
        self.last_timings, self.last_rois, self.last_roi_sources, self.last_crops = {}, {}, {}, {}
        self.last_outputs = {}
        result = HolisticResult.empty(width, height)
        self.last_parts_ms = 0.0
        pose = self._pose(rgb)
        branch_pre_post_ms = 0.0
        if pose is not None:
            result.set_part("pose", pose.xyz)
            result.visibility[:33] = pose.visibility
            parts, branch_pre_post_ms = self._parts(rgb, pose)
            for part, landmarks in parts.items():
                if landmarks is not None:
                    result.set_part(part, landmarks)
        if self.gesture is not None:
            result.gestures = {side: self._gesture(side) if result.present[side] else None for side in HANDS}
        if not self.static_image_mode:
            self._frame_index += 1
        total_ms = (time.perf_counter() - start) * 1e3
        self.last_timings = in_part_order(self.last_timings)
        self.last_rois, self.last_roi_sources = in_part_order(self.last_rois), in_part_order(self.last_roi_sources)
        self.last_crops, self.last_outputs = in_part_order(self.last_crops), in_part_order(self.last_outputs)
        outside_parts_ms = total_ms - self.last_parts_ms
        models_outside_parts_ms = sum(ms for key, ms in self.last_timings.items() if part_rank(key) in (0, 4))
        self.last_timings["pre_post_processing"] = outside_parts_ms - models_outside_parts_ms + branch_pre_post_ms
        self.last_timings["total"] = total_ms
        result.extras.update(rois=dict(self.last_rois), roi_sources=dict(self.last_roi_sources))
        return result

    def _parts(self, rgb, pose) -> tuple[dict[str, np.ndarray | None], float]:
        """Face, left and right hand landmarks once the pose is known (one after another or in
        the thread pool), and the pre/post-processing milliseconds of those branches summed."""
        start = time.perf_counter()
        if self._pool is None:
            branches = {part: self._part(rgb, pose, part) for part in PARTS}
        else:
            if self._hand_stages["right_hand"] is self._hand_stages["left_hand"]:  # one set of hand models: one thread
                jobs = {"face": (self._part, rgb, pose, "face"), "hands": (self._hands_in_turn, rgb, pose)}
            else:
                jobs = {part: (self._part, rgb, pose, part) for part in (*HANDS, "face")}  # the longer branches first
            futures = {name: self._pool.submit(*job) for name, job in jobs.items()}
            wait(futures.values())  # every branch has finished before anything is raised or returned
            done = {name: future.result() for name, future in futures.items()}
            branches = {"face": done["face"], **(done["hands"] if "hands" in done else
                                                  {side: done[side] for side in HANDS})}
        self.last_parts_ms = (time.perf_counter() - start) * 1e3
        pre_post_ms = sum(wall_ms for _, wall_ms in branches.values()) - sum(
            ms for key, ms in self.last_timings.items() if part_rank(key) in (1, 2, 3))
        return {part: landmarks for part, (landmarks, _) in branches.items()}, pre_post_ms

    def _hands_in_turn(self, rgb, pose) -> dict[str, tuple]:
        return {side: self._part(rgb, pose, side) for side in HANDS}

    def _part(self, rgb, pose, part: str) -> tuple[np.ndarray | None, float]:
        """One branch: (landmarks of the face or one hand or None, its wall milliseconds)."""
        start = time.perf_counter()
        recrop_rect = self._face_recrop_rect(rgb, pose) if part == "face" else self._hand_recrop_rect(rgb, pose, part)
        landmarks = self._tracked_part(rgb, part, recrop_rect)
        return landmarks, (time.perf_counter() - start) * 1e3

    def _infer(self, stage, key: str, model_input, decode, *args):
        """Decode one stage's model output, recording its crop, raw outputs and model time under `key`."""
        self.last_crops[key] = model_input
        output = decode(model_input, *args)
        self.last_outputs[key] = stage.last_outputs
        self.last_timings[key] = stage.last_inference_ms
        return output

    def _gesture(self, side: str) -> tuple[str, float]:
        """The gesture of a hand just found: read from the hand stage's own pass, or a second pass."""
        if self._gesture_is_hand_stage:
            return self.gesture.decode(self.last_outputs[f"{side}_landmark"])
        gesture = self.gesture.classify(self.last_crops[f"{side}_landmark"])
        self.last_timings[f"{side}_gesture"] = self.gesture.last_inference_ms
        return gesture

    def _pose(self, rgb):
        size = self._image_size
        if self.static_image_mode or self._pose_rect is None:
            detections = self._infer(self.pose_detection, "pose_detection", self.pose_detection.crop(rgb),
                                     self.pose_detection.detect)
            if not detections:
                self._lose_pose()
                return None
            rect, source = pose_rect_from_detection(detections[0], size), "detection"
            if not rect.usable:  # degenerate detector output (a swapped-in model): no person
                self._lose_pose()
                return None
        else:
            rect, source = self._pose_rect, "tracking"
        self.last_rois["pose"], self.last_roi_sources["pose"] = rect, source
        pose = self._infer(self.pose_landmark, "pose_landmark", self.pose_landmark.crop(rgb, rect),
                           self.pose_landmark.landmarks)
        if pose is None:
            self._lose_pose()
            return None
        if not self.static_image_mode:
            self._smooth_and_track(pose)
        return pose

    def _lose_pose(self) -> None:
        """Pose lost: the next frame detects again; filters and part tracking restart."""
        self._pose_rect = None
        self._pose_smoother.reset()
        self._auxiliary_smoother.reset()
        self._previous = dict.fromkeys(self._previous)

    def _smooth_and_track(self, pose) -> None:
        size = self._image_size
        scale_rect = pose_alignment_rect(pose.auxiliary, size)
        object_scale_px = (scale_rect.width * size[0] + scale_rect.height * size[1]) / 2
        timestamp_s = (self._frame_index + 1) * FRAME_INTERVAL_S
        auxiliary, _ = self._auxiliary_smoother.apply(pose.auxiliary, None, timestamp_s, object_scale_px, size)
        if self.smooth_landmarks:
            pose.xyz, pose.visibility = self._pose_smoother.apply(pose.xyz, pose.visibility, timestamp_s,
                                                                  object_scale_px, size)
        self._pose_rect = pose_rect_from_landmarks(auxiliary, size)

    def _face_recrop_rect(self, rgb, pose) -> Rect | None:
        rect = face_rect_from_pose(pose.xyz, self._image_size)
        if not rect.usable:
            return None
        self.last_rois["face_from_pose"] = rect
        return self._infer(self.face_detection, "face_detection", self.face_detection.crop(rgb, rect),
                           self.face_detection.recrop_rect, self._image_size)

    def _hand_recrop_rect(self, rgb, pose, side: str) -> Rect | None:
        rect = hand_rect_from_pose_landmarks(pose, side, self._image_size)
        if rect is None or not rect.usable:
            return None
        self.last_rois[f"{side}_from_pose"] = rect
        hand_recrop = self._hand_stages[side][0]
        return self._infer(hand_recrop, f"{side}_recrop", hand_recrop.crop(rgb, rect), hand_recrop.recrop_rect,
                           self._image_size)

    def _tracked_part(self, rgb, part: str, recrop_rect: Rect | None) -> np.ndarray | None:
        """Landmarks of the face or one hand in this frame's ROI: the re-crop ROI, or in
        video mode the previous landmarks' ROI while it still agrees with the re-crop."""
        size = self._image_size
        landmarks = None
        if recrop_rect is not None and recrop_rect.usable:  # a degenerate re-crop means the part is absent
            rect, source = recrop_rect, "recrop"
            previous = self._previous[part]
            if not self.static_image_mode and previous is not None:
                is_face = part == "face"
                tracking_rect = face_rect_from_landmarks(previous, size) if is_face else hand_tracking_rect(previous, size)
                if keep_tracking(tracking_rect, previous, recrop_rect, size, FACE_TRACKING if is_face else HAND_TRACKING):
                    rect, source = tracking_rect, "tracking"
            self.last_rois[part], self.last_roi_sources[part] = rect, source
            stage = self.face_landmark if part == "face" else self._hand_stages[part][1]
            key = "face_landmark" if part == "face" else f"{part}_landmark"
            landmarks = self._infer(stage, key, stage.crop(rgb, rect), stage.landmarks)
        if not self.static_image_mode:
            self._previous[part] = landmarks
        return landmarks

    def process_hand(self, rgb: np.ndarray, box=None, side: str = "right", scale: float | None = None) -> np.ndarray:
        """Hand landmark stage alone on one hand box -> (21, 3) normalised to the full image,
        NaN if the hand presence score is not above 0.5.

        box = (x0, y0, x1, y1) in pixels, a tight hand box, is squared on its long side and
        enlarged `scale` (default 2) times, like MediaPipe's hand tracking ROI (2x the tight
        landmark box). Without a box the whole image is the (squared) ROI at scale 1: a hand
        crop (FreiHAND, say) already has the margin; enlarging it twice more leaves the hand
        too small for the model (presence fails on most FreiHAND crops). In Holistic the ROI's rotation (wrist -> fingers up) comes from the
        pose; a bare box has none, so the four right-angle rotations are tried and the most
        confident kept, then the hand is re-cropped once on its own landmarks, exactly as
        MediaPipe's hand tracking ROI (hand_landmarks_to_roi). `side` names the hand for
        the caller: Holistic runs the same model, unmirrored, on both hands.
        """
        check_rgb(rgb)
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        height, width = rgb.shape[:2]
        if scale is None:
            scale = 1.0 if box is None else 2.0
        box = (0.0, 0.0, float(width), float(height)) if box is None else box
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1) in pixels, got {box!r}") from None
        if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
            raise ValueError(f"box must be finite with x1 > x0 and y1 > y0, got {(x0, y0, x1, y1)}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        with self._one_caller():  # the same hand interpreter as process()
            return self._hand_in_box(rgb, (x0, y0, x1, y1), scale, width, height)

    def _hand_in_box(self, rgb, box: tuple[float, float, float, float], scale: float, width: int,
                     height: int) -> np.ndarray:
        x0, y0, x1, y1 = box
        size, stage = (width, height), self.hand_landmark
        square = transform_rect(Rect((x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                                     (x1 - x0) / width, (y1 - y0) / height), size, scale=scale)
        candidates = [stage.scored_landmarks(stage.crop(rgb, replace(square, rotation=np.pi / 2 * k)))
                      for k in range(4)]
        score, landmarks = max(candidates, key=lambda c: c[0])
        if not score > 0.5:
            return np.full((21, 3), np.nan, np.float32)
        refined = stage.landmarks(stage.crop(rgb, hand_tracking_rect(landmarks, size)))
        return landmarks if refined is None else refined

    def process_frames(self, frames: Iterable[np.ndarray]) -> Iterator[HolisticResult]:
        """Process consecutive frames in order (tracking unless static_image_mode)."""
        for frame in frames:
            yield self.process(frame)

    def process_video(self, path) -> Iterator[HolisticResult]:
        """Process a video file frame by frame; starts a fresh track."""
        self.reset()
        for _, frame in iter_video_frames(path):
            yield self.process(frame)
