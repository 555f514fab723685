"""Training samples for the joint model (`joint.HolisticModel`): one labelled image -> the four
crops the cascade cuts from it, each with its labels and mask, as one sample.

    batches = iter_joint_batches(items, batch_size=8, preset="train")   # (rgb, labels) pairs
    inputs, targets = next(batches)
    inputs["face"].shape            # (8, 192, 192, 3); likewise pose (256), left_hand, right_hand (224)
    targets["face"]["mask"]         # (8, 468): all 0 on an image without a face

Each head's crop is `data.module_crop`'s (the cascade's tracking ROI from the labelled points),
both hands through the one unmirrored hand model as Holistic runs them. A part an image lacks
(no face, one hand out of view, or too few labelled points to place its ROI) becomes a zeroed
crop with a zero mask, which `losses.landmark_losses` counts in no term: images with missing
parts train the heads they have. Augmentation follows chapter 05's split (`data.split_preset`):
the preset's geometry moves the whole image once, so the four crops stay one consistent
picture, then its appearance part degrades each crop, `clean` keeping it for the teacher.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..augment.presets import AugmentParams
from ..formats.sample import Sample
from ..images import check_rgb
from ..result import HolisticResult
from .data import (ModuleCrop, augment_labelled, batch_signature, degrade_crop, epoch_dataset, in_batches,
                   module_crop, preset_augmenters, stack_batch)
from .modules import MODULES

# head -> the chapter 05 module that trains it; both hands run the one hand model
HEAD_MODULES: dict[str, str] = {"pose": "pose", "face": "face_mesh", "left_hand": "hands", "right_hand": "hands"}


def head_crop(rgb: np.ndarray, labels: Sample | HolisticResult, head: str) -> ModuleCrop | None:
    """The head's crop and labels as the cascade cuts them, or None when the image lacks the part."""
    module = HEAD_MODULES[head]
    return module_crop(rgb, labels, module, head if module == "hands" else None)


def absent_crop(head: str) -> ModuleCrop:
    """What an image without the head's part gives: a zeroed crop, zero labels, zero masks."""
    spec = MODULES[HEAD_MODULES[head]]
    zeros = np.zeros((spec.input_size, spec.input_size, 3), np.float32)
    return ModuleCrop(zeros, np.zeros((spec.num_points, 3), np.float32), np.zeros(spec.num_points, bool),
                      np.zeros(spec.num_points, bool), roi=None, crop=None, module=spec.name, part=head)


def iter_joint_samples(items: Iterable[tuple[np.ndarray, Sample | HolisticResult]],
                       preset: str | AugmentParams | None = None, seed: int | None = 0,
                       geometry: bool = True) -> Iterator[dict[str, ModuleCrop]]:
    """Per (rgb, labels) pair, head -> its crop (`absent_crop` where the part is missing);
    an image with none of the four parts is left out. Seeded like `data.iter_module_crops`."""
    moves, looks = preset_augmenters(preset, seed, geometry)
    for rgb, labels in items:
        check_rgb(rgb)
        if moves is not None:
            rgb, labels = augment_labelled(moves, rgb, labels)
        crops = {head: head_crop(rgb, labels, head) for head in HEAD_MODULES}
        if all(crop is None for crop in crops.values()):
            continue
        yield {head: absent_crop(head) if crop is None else crop if looks is None else degrade_crop(crop, looks)
               for head, crop in crops.items()}


def stack_joint(samples: list[dict[str, ModuleCrop]]) -> tuple[dict, dict]:
    """(inputs, targets): head -> (B, S, S, 3) crops, and head -> `data.stack_batch`'s targets."""
    stacked = {head: stack_batch([sample[head] for sample in samples]) for head in HEAD_MODULES}
    return {head: images for head, (images, _) in stacked.items()}, \
        {head: targets for head, (_, targets) in stacked.items()}


def iter_joint_batches(items, batch_size: int = 8, preset: str | AugmentParams | None = None, seed: int | None = 0,
                       geometry: bool = True, drop_remainder: bool = False) -> Iterator[tuple[dict, dict]]:
    """`stack_joint` batches of `iter_joint_samples`; the last may be smaller unless `drop_remainder`."""
    return in_batches(iter_joint_samples(items, preset, seed, geometry), batch_size, stack_joint, drop_remainder)


def joint_signature():
    """The tf.TensorSpec structure of `iter_joint_batches`' batches."""
    specs = {head: batch_signature(module) for head, module in HEAD_MODULES.items()}
    return {head: image for head, (image, _) in specs.items()}, {head: targets for head, (_, targets) in specs.items()}


def joint_dataset(make_items, batch_size: int = 8, preset: str | AugmentParams | None = None, seed: int | None = 0,
                  geometry: bool = True, reseed_each_epoch: bool = True):
    """The joint batches as a tf.data.Dataset over `make_items()` each pass (`data.epoch_dataset`)."""
    return epoch_dataset(make_items, lambda items, epoch_seed: iter_joint_batches(
        items, batch_size, preset, epoch_seed, geometry), joint_signature(), seed, reseed_each_epoch)
