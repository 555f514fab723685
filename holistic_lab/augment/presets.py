"""Named augmentation presets: one flat, validated parameter set and the pipeline it builds.

Every knob is a field of `AugmentParams` with its range and meaning in the field's
metadata; 0 turns a transform off. A preset is just named values for those fields, so
the explorer widget can put a slider on each one, and `describe_presets()` prints the
table the README and notebook 03 show. Transforms run in the order an image meets them:
flip, affine (rotate, scale, shift), perspective, crop; then light and sensor
(brightness/contrast, gamma, low light, noise, blur, JPEG); then occlusion.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import albumentations as A
import cv2

from .keypoints import KeypointAugmenter
from .occlusion import PartOccluder


def _knob(default: float, low: float, high: float, step: float, doc: str, integer: bool = False):
    return field(default=default, metadata=dict(low=low, high=high, step=step, doc=doc, integer=integer))


@dataclass(frozen=True)
class AugmentParams:
    """All augmentation knobs; each is checked against its range (ValueError names it)."""

    flip_p: float = _knob(0.0, 0, 1, 0.05, "probability of a horizontal flip (left/right twins swapped)")
    geometric_p: float = _knob(0.0, 0, 1, 0.05, "probability of each of affine, perspective and crop")
    rotate_deg: float = _knob(0.0, 0, 45, 1, "rotation drawn from -rotate_deg..rotate_deg degrees")
    scale_delta: float = _knob(0.0, 0, 0.5, 0.01, "zoom drawn from 1 - scale_delta..1 + scale_delta")
    shift_frac: float = _knob(0.0, 0, 0.3, 0.01, "shift up to this fraction of width and height")
    perspective: float = _knob(0.0, 0, 0.2, 0.01, "perspective corner jitter (std, fraction of the size)")
    crop_frac: float = _knob(0.0, 0, 0.4, 0.01, "each side cropped by up to this fraction, then resized back")
    photometric_p: float = _knob(0.0, 0, 1, 0.05, "probability of each light and sensor transform")
    brightness: float = _knob(0.0, 0, 0.5, 0.01, "brightness shift up to +-this fraction of 255")
    contrast: float = _knob(0.0, 0, 0.5, 0.01, "contrast factor drawn from 1 +- contrast")
    gamma: float = _knob(0.0, 0, 0.6, 0.01, "gamma drawn from 1 +- gamma")
    darken: float = _knob(0.0, 0, 0.9, 0.01, "low light: exposure multiplied by 1 - darken..1 - darken/2")
    noise_std: float = _knob(0.0, 0, 0.2, 0.005, "Gaussian sensor noise, std up to this fraction of 255")
    blur_px: int = _knob(0, 0, 15, 2, "Gaussian blur kernel up to this size in pixels (odd; <3 = off)", integer=True)
    jpeg_quality: int = _knob(100, 5, 100, 5, "JPEG re-encoding at quality drawn from this..100 (100 = off)", integer=True)
    dropout_holes: int = _knob(0, 0, 8, 1, "random rectangles cut out (CoarseDropout), up to this many", integer=True)
    dropout_size: float = _knob(0.1, 0.02, 0.3, 0.01, "cut-out side up to this fraction of the image side")
    occlude_mouth_p: float = _knob(0.0, 0, 1, 0.05, "probability of a patch over the mouth")
    occlude_hand_p: float = _knob(0.0, 0, 1, 0.05, "probability of a patch over one hand")

    def __post_init__(self):
        for knob in dataclasses.fields(self):
            value, meta = getattr(self, knob.name), knob.metadata
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"augment parameter {knob.name} must be a number, got {value!r}")
            if meta["integer"] and value != int(value):
                raise ValueError(f"augment parameter {knob.name} must be a whole number, got {value}")
            if not meta["low"] <= value <= meta["high"]:
                kind = "a probability" if knob.name.endswith("_p") else "a value"
                raise ValueError(f"augment parameter {knob.name} must be {kind} in "
                                 f"{meta['low']}..{meta['high']}, got {value}")

    def replace(self, **changes) -> "AugmentParams":
        """A copy with some knobs changed; an unknown knob raises ValueError naming the known ones."""
        unknown = set(changes) - set(knob_names())
        if unknown:
            raise ValueError(f"unknown augment parameters {sorted(unknown)}; expected some of {knob_names()}")
        return dataclasses.replace(self, **changes)


def knob_names() -> tuple[str, ...]:
    return tuple(knob.name for knob in dataclasses.fields(AugmentParams))


def knob_specs() -> dict[str, dict]:
    """Per knob: low, high, step, doc, integer, default (what the explorer builds sliders from)."""
    return {knob.name: dict(knob.metadata, default=knob.default) for knob in dataclasses.fields(AugmentParams)}


PRESETS: dict[str, AugmentParams] = {
    "none": AugmentParams(),
    "light": AugmentParams(flip_p=0.5, geometric_p=0.5, rotate_deg=10, scale_delta=0.1, shift_frac=0.05,
                           photometric_p=0.5, brightness=0.15, contrast=0.15),
    "train": AugmentParams(flip_p=0.5, geometric_p=0.6, rotate_deg=30, scale_delta=0.25, shift_frac=0.1,
                           perspective=0.05, crop_frac=0.15, photometric_p=0.3, brightness=0.25, contrast=0.25,
                           gamma=0.3, noise_std=0.03, blur_px=5, jpeg_quality=60, dropout_holes=2,
                           dropout_size=0.1, occlude_mouth_p=0.1, occlude_hand_p=0.1),
    "geometric": AugmentParams(flip_p=0.5, geometric_p=1.0, rotate_deg=45, scale_delta=0.3, shift_frac=0.15,
                               perspective=0.08, crop_frac=0.25),
    "low_light": AugmentParams(flip_p=0.5, photometric_p=0.9, darken=0.7, gamma=0.4, noise_std=0.05,
                               blur_px=3, jpeg_quality=70),
    "occlusion": AugmentParams(flip_p=0.5, dropout_holes=3, dropout_size=0.15, occlude_mouth_p=0.5,
                               occlude_hand_p=0.5),
    "night": AugmentParams(flip_p=0.5, photometric_p=1.0, darken=0.9, gamma=0.3, noise_std=0.12),
}
PRESET_DOCS = {
    "none": "identity: no transform (the explorer's starting point)",
    "light": "mild geometry and light, safe for any fine-tuning",
    "train": "the default for fine-tuning: every family at moderate strength",
    "geometric": "strong geometry only, to stress the label bookkeeping",
    "low_light": "dark, noisy, soft images (cf. the ExLPose fixture)",
    "occlusion": "cut-outs and patches over the mouth or a hand",
    "night": "very dark with strong sensor noise: where the shipped face model fails (chapter 05)",
}


def preset(name: str, **overrides) -> AugmentParams:
    """The named preset's parameters, with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; expected one of {tuple(PRESETS)}")
    return PRESETS[name].replace(**overrides)


def build_transforms(params: AugmentParams) -> list[A.BasicTransform]:
    """The albumentations transforms `params` asks for, in image order; knobs at 0 add nothing."""
    if not isinstance(params, AugmentParams):
        raise TypeError(f"params must be AugmentParams, got {type(params).__name__}")
    p = params
    border = dict(border_mode=cv2.BORDER_CONSTANT, fill=0)
    transforms: list[A.BasicTransform] = []
    if p.flip_p > 0:
        transforms.append(A.HorizontalFlip(p=p.flip_p))
    if p.geometric_p > 0:
        if p.rotate_deg or p.scale_delta or p.shift_frac:
            transforms.append(A.Affine(rotate=(-p.rotate_deg, p.rotate_deg),
                                       scale=(1 - p.scale_delta, 1 + p.scale_delta),
                                       translate_percent=(-p.shift_frac, p.shift_frac), p=p.geometric_p, **border))
        if p.perspective:
            transforms.append(A.Perspective(scale=(0, p.perspective), p=p.geometric_p, **border))
        if p.crop_frac:
            transforms.append(A.CropAndPad(percent=(-p.crop_frac, 0.0), keep_size=True, sample_independently=True,
                                           p=p.geometric_p, **border))
    if p.photometric_p > 0:
        if p.brightness or p.contrast:
            transforms.append(A.RandomBrightnessContrast(brightness_limit=p.brightness, contrast_limit=p.contrast,
                                                         p=p.photometric_p))
        if p.darken:
            transforms.append(A.MultiplicativeNoise(multiplier=(1 - p.darken, 1 - p.darken / 2), p=p.photometric_p))
        if p.gamma:
            transforms.append(A.RandomGamma(gamma_limit=(100 * (1 - p.gamma), 100 * (1 + p.gamma)),
                                            p=p.photometric_p))
        if p.noise_std:
            transforms.append(A.GaussNoise(std_range=(0.0, p.noise_std), p=p.photometric_p))
        if p.blur_px >= 3:
            transforms.append(A.GaussianBlur(blur_limit=(3, int(p.blur_px) // 2 * 2 + 1), p=p.photometric_p))
        if p.jpeg_quality < 100:
            transforms.append(A.ImageCompression(quality_range=(int(p.jpeg_quality), 100), p=p.photometric_p))
    if p.dropout_holes:
        transforms.append(A.CoarseDropout(num_holes_range=(1, int(p.dropout_holes)),
                                          hole_height_range=(p.dropout_size / 3, p.dropout_size),
                                          hole_width_range=(p.dropout_size / 3, p.dropout_size), fill="random", p=1.0))
    if p.occlude_mouth_p:
        transforms.append(PartOccluder(parts=("mouth",), p=p.occlude_mouth_p))
    if p.occlude_hand_p:
        transforms.append(PartOccluder(parts=("left_hand", "right_hand"), p=p.occlude_hand_p))
    return transforms


def make_augmenter(params: str | AugmentParams = "train", seed: int | None = None, **overrides) -> KeypointAugmenter:
    """A KeypointAugmenter for a preset name or AugmentParams, with knob `overrides`."""
    if isinstance(params, str):
        params = preset(params, **overrides)
    elif overrides:
        params = params.replace(**overrides)
    return KeypointAugmenter(build_transforms(params), seed=seed)


def describe_presets() -> str:
    """A markdown table: one row per knob, one column per preset (knob defaults in the first)."""
    names = list(PRESETS)
    lines = ["| knob | meaning | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for name, spec in knob_specs().items():
        values = " | ".join(f"{getattr(PRESETS[n], name):g}" for n in names)
        lines.append(f"| `{name}` | {spec['doc']} | {values} |")
    return "\n".join(lines)
