"""Training data for the single-pass network: the whole cascade's 543 labels, mapped into the
pose crop the cascade cuts (`single_pass`).

    items = distillation_items(frames_per_video=12)              # (rgb, cascade labels) pairs
    dataset = single_pass_dataset(items, batch_size=8, preset="train")
    sample = pose_crop_sample(rgb, labels)                        # one crop: input, 543 points, masks

The crop is chapter 05's pose crop (`data.module_crop(..., "pose")`: the pose ROI from the
labelled pose, 256x256 letterboxed) and every one of the 543 labelled points goes into that
crop's pixels by the same inverse projection (`data.to_crop_pixels`), so a network output equal
to `points` projects back onto the labels (`SinglePassCrop.to_image`). A part the cascade did
not find is masked (its rows 0, mask 0) and its presence target is 0. Augmentation is chapter
05's preset split: geometry on the whole image and its labels before the crop, appearance on
the crop (`data.split_preset`).

Labels come from the cascade in static image mode (`teacher_data.frame_items`) on the fixture
videos' frames, HaGRID's full photographs and the mmpose pack's images, leaving out every
image of the evaluation set (COCO-WholeBody, `single_pass_eval`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..augment.presets import AugmentParams
from ..formats.sample import Sample
from ..images import load_rgb
from ..pipeline.roi import project_landmarks
from ..result import HolisticResult
from ..topology import NUM_KEYPOINTS, PARTS
from .data import (ModuleCrop, augment_labelled, degrade_crop, in_batches, labelled_points, module_crop,
                   preset_augmenters, to_crop_pixels)
from .single_pass import INPUT_SIZE, PRESENCE_PARTS

EVALUATION_SET = "coco_wholebody"
TRAINING_SETS = ("coco", "aic", "posetrack18")   # the mmpose images with whole people in them


@dataclass
class SinglePassCrop:
    """One training sample: `input` (256, 256, 3) float32 (the pose model's input range), `points`
    (543, 3) float32 in crop pixels (0 where unknown), `mask` / `z_mask` (543,) bool, `present`
    (3,) float32 (face, left hand, right hand found), and the pose crop it was cut as."""
    input: np.ndarray
    points: np.ndarray
    mask: np.ndarray
    z_mask: np.ndarray
    present: np.ndarray
    pose_crop: ModuleCrop

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(543, 3) crop pixels (the network's `keypoints`) -> image-normalised, as the cascade projects."""
        crop = self.pose_crop
        return project_landmarks(np.asarray(points, np.float32) / INPUT_SIZE, crop.roi, crop.crop.padding)

    def target(self) -> np.ndarray:
        """(543, 5): x, y, z, xy known, z known, what `single_pass.keypoint_loss` reads."""
        return np.concatenate([self.points, self.mask[:, None], self.z_mask[:, None]], axis=1).astype(np.float32)


def pose_crop_sample(rgb: np.ndarray, labels: Sample | HolisticResult) -> SinglePassCrop | None:
    """The pose crop of `rgb` and all 543 labels in its pixels; None when the labelled pose
    cannot place the ROI (too few pose points)."""
    pose = module_crop(rgb, labels, "pose")
    if pose is None:
        return None
    xyz, known, _ = labelled_points(labels)
    points = to_crop_pixels(np.where(known[:, None], xyz, 0.0), pose.roi, pose.crop.padding, INPUT_SIZE)
    z_known = known & np.isfinite(xyz[:, 2])
    points[~known] = 0.0
    points[~z_known, 2] = 0.0   # 0, not NaN: a masked term must not turn the loss into NaN
    present = np.array([known[PARTS[part]].any() for part in PRESENCE_PARTS], np.float32)
    return SinglePassCrop(pose.input, points, known, z_known, present, pose)


def iter_single_pass_crops(items: Iterable[tuple[np.ndarray, Sample | HolisticResult]],
                           preset: str | AugmentParams | None = None, seed: int | None = 0) -> Iterator[SinglePassCrop]:
    """Every usable pose crop of the (rgb, labels) pairs, augmented by `preset` (geometry on the
    image before the crop, appearance on the crop); seeded, so the same seed gives the same crops."""
    moves, looks = preset_augmenters(preset, seed)
    for rgb, labels in items:
        if moves is not None:
            rgb, labels = augment_labelled(moves, rgb, labels)
        sample = pose_crop_sample(rgb, labels)
        if sample is None:
            continue
        if looks is not None:
            degraded = degrade_crop(sample.pose_crop, looks)
            sample.input, sample.pose_crop = degraded.input, degraded
        yield sample


def single_pass_batches(items, batch_size: int = 8, preset=None, seed: int | None = 0
                        ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(inputs (B, 256, 256, 3), {"keypoints": (B, 543, 5), "part_presence": (B, 3)}) batches."""
    def stack(batch):
        return (np.stack([c.input for c in batch]).astype(np.float32),
                {"keypoints": np.stack([c.target() for c in batch]), "part_presence": np.stack([c.present for c in batch])})

    return in_batches(iter_single_pass_crops(items, preset, seed), batch_size, stack)


def single_pass_dataset(items: list, batch_size: int = 8, preset: str | AugmentParams | None = "train",
                        seed: int = 0):
    """A repeating tf.data.Dataset of `single_pass_batches`: each pass shuffles the items and
    augments with a new seed (seed + 2 * pass), so passes differ and runs repeat."""
    import tensorflow as tf

    if not items:
        raise ValueError("items: no (rgb, labels) pairs to train on")
    passes = itertools.count()

    def batches():
        for epoch in passes:
            order = np.random.default_rng(seed + 2 * epoch).permutation(len(items))
            yield from single_pass_batches([items[i] for i in order], batch_size, preset, seed + 2 * epoch)

    image = tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)
    return tf.data.Dataset.from_generator(batches, output_signature=(
        image, {"keypoints": tf.TensorSpec((None, NUM_KEYPOINTS, 5), tf.float32),
                "part_presence": tf.TensorSpec((None, len(PRESENCE_PARTS)), tf.float32)}))


def evaluation_image_names() -> set[str]:
    """File names of the evaluation set's images, which training must never see."""
    from .. import datasets

    return {Path(path).name for path in datasets.load_fixture(EVALUATION_SET).by_image()}


def training_images(limit_per_source: int | None = None) -> list[np.ndarray]:
    """HaGRID's full photographs and the mmpose pack's whole-person images, evaluation images left out."""
    from .. import datasets

    held_out = evaluation_image_names()
    paths = [path for path, _ in datasets.hagrid_frames()][:limit_per_source]
    for name in TRAINING_SETS:
        found = [Path(p) for p in datasets.load_fixture(name).by_image() if Path(p).name not in held_out]
        paths += found[:limit_per_source]
    return [load_rgb(path) for path in paths]


def distillation_items(frames_per_video: int = 12, limit_per_source: int | None = None, pipeline=None,
                       progress: bool = False) -> list[tuple[np.ndarray, HolisticResult]]:
    """(rgb, cascade labels) for `frames_per_video` evenly spaced frames of each fixture video and
    the training images, where the cascade (static image mode) found a pose."""
    import cv2

    from .. import datasets
    from .teacher_data import frame_items, video_frames

    if isinstance(frames_per_video, bool) or not isinstance(frames_per_video, int) or frames_per_video < 0:
        raise ValueError(f"frames_per_video must be a whole number >= 0, got {frames_per_video!r}")
    frames = []
    for path in datasets.fixture_videos().values() if frames_per_video else ():
        capture = cv2.VideoCapture(str(path))
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        frames += video_frames(path, every=max(1, frame_count // frames_per_video), limit=frames_per_video)
    frames += training_images(limit_per_source)
    return frame_items(frames, "pose", pipeline=pipeline, progress=progress, total=len(frames))
