"""Representative data for int8 calibration: the exact tensors each stage sees in the cascade.

The shipped cascade (static image mode) runs over real images and every stage's input is kept
as it was handed to the model (`HolisticPipeline.last_crops`): the letterboxed whole image for
pose_detection, the rotated pose ROI for pose_landmark, the face and hand re-crops, the landmark
crops. So the activation ranges int8 is calibrated on are those of real people seen through the
cascade's own ROI code, never random noise (noise would give ranges no real crop has).

    crops = calibration_crops(default_calibration_frames(), stages=STAGES)   # stage -> (n, H, W, 3)
    crops = calibration_crops(folder_images("my_photos/"))                  # your own photographs

The default images are the videos pack's clips (every 3rd frame: every 10th gives about 50 face
crops, and 100 per stage are wanted) and the hagrid_frames photographs: neither is used to score
accuracy (that is the mmpose pack's human annotations).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..images import IMAGE_SUFFIXES, load_rgb
from ..progress import progress_bar

MIN_CROPS = 100   # per stage, for the full-mode variants; quick mode calibrates on fewer
# A blank crop (a black frame, a ROI wholly outside the image) is a real cascade input but says nothing
# about real activation ranges: face_detection answers one with logits of -30000 and boxes of +-12000 px,
# and int8 calibration (min/max per tensor) would then make its score step 120 logits wide.
BLANK_STD = 1e-3
STAGES = ("pose_detection", "pose_landmark", "face_detection", "face_landmark", "hand_recrop", "hand_landmark")
# HolisticPipeline.last_crops key -> stage (both hands go through the same two models)
CROP_KEYS = {"pose_detection": "pose_detection", "pose_landmark": "pose_landmark",
             "face_detection": "face_detection", "face_landmark": "face_landmark",
             "left_hand_recrop": "hand_recrop", "right_hand_recrop": "hand_recrop",
             "left_hand_landmark": "hand_landmark", "right_hand_landmark": "hand_landmark"}


def folder_images(folder) -> list[Path]:
    """The image files directly in `folder`, sorted; a ValueError naming the folder if it is
    missing or has none. Each file is decoded (and refused by name if corrupt) when it is used."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"calibration folder {folder} is not a folder" if folder.exists()
                         else f"calibration folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def default_calibration_frames(every: int = 3, limit_per_clip: int | None = None) -> Iterator[np.ndarray]:
    """Real frames no evaluation scores: the videos pack's clips and the hagrid_frames photographs,
    taken in turn (one from each source), so that any first n frames mix every source."""
    from ..datasets import fixture_videos, hagrid_frames
    from ..train.teacher_data import video_frames

    sources = [video_frames(path, every=every, limit=limit_per_clip) for path in fixture_videos().values()]
    sources.append(load_rgb(path) for path, _ in hagrid_frames())
    return interleave(sources)


def interleave(sources: Iterable[Iterator]) -> Iterator:
    """One item from each source in turn until all are spent (any first n items mix every source)."""
    sources = list(sources)
    while sources:
        for source in list(sources):
            item = next(source, None)
            if item is None:
                sources.remove(source)
            else:
                yield item


def calibration_crops(images: Iterable, stages: Iterable[str] = STAGES, limit: int | None = None,
                      pipeline=None, progress: bool = True) -> dict[str, np.ndarray]:
    """stage -> (n, H, W, 3) float32: each stage's model inputs while the cascade runs on `images`
    (RGB arrays or image paths), at most `limit` per stage, blank (constant) crops left out. A stage
    that got no crop at all (no person found in any image) is a ValueError naming it: there is
    nothing to calibrate it on."""
    from ..pipeline import HolisticPipeline

    stages = tuple(stages)
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise ValueError(f"calibration: unknown stages {unknown}; expected some of {', '.join(STAGES)}")
    pipeline = pipeline or HolisticPipeline(static_image_mode=True)
    found: dict[str, list[np.ndarray]] = {stage: [] for stage in stages}
    for image in progress_bar(images, "calibration crops", progress):
        rgb = load_rgb(image) if isinstance(image, (str, Path)) else image
        pipeline.process(rgb)
        for key, crop in pipeline.last_crops.items():
            stage = CROP_KEYS.get(key)
            tensor = np.asarray(crop.tensor, np.float32)[0]
            if stage in found and (limit is None or len(found[stage]) < limit) and tensor.std() > BLANK_STD:
                found[stage].append(tensor)
        if limit is not None and all(len(crops) >= limit for crops in found.values()):
            break
    empty = [stage for stage, crops in found.items() if not crops]
    if empty:
        raise ValueError(f"calibration: the cascade found nothing to crop for {', '.join(empty)} in these images "
                         "(no person, face or hand found); give photographs of people")
    return {stage: np.stack(crops) for stage, crops in found.items()}


def check_calibration(crops: np.ndarray, input_shape, stage: str) -> np.ndarray:
    """`crops` as float32 (n, H, W, 3) matching the model input; a ValueError naming the stage if not."""
    crops = np.asarray(crops)
    expected = tuple(int(n) for n in input_shape[1:])
    if crops.ndim != 4 or crops.shape[1:] != expected or len(crops) == 0:
        raise ValueError(f"calibration crops for {stage}: expected shape (n, {', '.join(map(str, expected))}) "
                         f"with n >= 1, got {crops.shape}")
    if not np.issubdtype(crops.dtype, np.floating) or not np.isfinite(crops).all():
        raise ValueError(f"calibration crops for {stage}: expected finite float values, got dtype {crops.dtype}")
    return crops.astype(np.float32, copy=False)


PALM_DETECTION_SIZE = (192, 192)


def palm_detection_crops(images: Iterable, limit: int | None = None) -> np.ndarray:
    """(n, 192, 192, 3) float32: palm_detection_full's input for each image, the whole image letterboxed
    into [0, 1] as MediaPipe's palm_detection_cpu graph cuts it. Holistic does not run this model (it
    finds hands from the pose), so its calibration crops are the images themselves, not cascade crops."""
    from ..pipeline.roi import crop
    from ..pipeline.stages import WHOLE_IMAGE

    crops = []
    for image in images:
        rgb = load_rgb(image) if isinstance(image, (str, Path)) else image
        tensor = crop(rgb, WHOLE_IMAGE, PALM_DETECTION_SIZE, keep_aspect=True, border_zero=True,
                      value_range=(0.0, 1.0)).tensor[0].astype(np.float32)
        if tensor.std() > BLANK_STD:  # a black frame
            crops.append(tensor)
        if limit is not None and len(crops) >= limit:
            break
    if not crops:
        raise ValueError("palm detection calibration: no image with content given (none, or only black frames)")
    return np.stack(crops)
