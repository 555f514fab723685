"""Augmentation that keeps all 543 Holistic labels right (albumentations underneath).

- `keypoints`: `KeypointAugmenter` and `flip_horizontal`: the left/right, NaN, off-frame
  and z bookkeeping albumentations cannot do for the 543 layout.
- `occlusion`: `PartOccluder`, patches over the mouth or a hand placed from the keypoints.
- `presets`: `AugmentParams`, the named `PRESETS` and `make_augmenter`.
- `agreement`: the proof: the teacher run on augmented images agrees with augmented labels.
"""
from .keypoints import KeypointAugmenter, flip_horizontal, naive_flip_horizontal
from .occlusion import OCCLUDABLE_PARTS, PartOccluder
from .presets import PRESET_DOCS, PRESETS, AugmentParams, build_transforms, describe_presets, make_augmenter, preset

__all__ = [
    "AugmentParams", "KeypointAugmenter", "OCCLUDABLE_PARTS", "PRESETS", "PRESET_DOCS", "PartOccluder",
    "build_transforms", "describe_presets", "flip_horizontal", "make_augmenter", "naive_flip_horizontal", "preset",
]
