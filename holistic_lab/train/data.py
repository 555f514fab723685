"""Training samples for one Holistic landmark model: a labelled image -> the model's input
cropped exactly as the cascade crops it, and the labels in that crop's pixels.

The ROI comes from the LABELLED points through the same functions the cascade uses when it
tracks a part from the previous frame's landmarks (`pipeline.stages`), so a model trained
on these crops sees at training time what it sees at inference:

- face_mesh -> face_landmark, 192x192 stretched: `face_rect_from_landmarks` (box around the
  468 points levelled on the eye corners 33 -> 263, 1.5x);
- hands -> hand_landmark_full, 224x224 letterboxed: `hand_tracking_rect` (rotated tight box,
  2x, shifted toward the fingers). Holistic feeds both hands to the same model unmirrored
  (no handedness flip in hand_recrop_by_roi / hand_landmark_cpu), so neither is mirrored here;
- pose -> pose_landmark_full, 256x256 letterboxed: `pose_rect_from_landmarks` on the two
  auxiliary points. Labels have no auxiliary points, so they are rebuilt from the 33 as
  BlazePose defines them (hip midpoint; a point at the radius of the circle around the whole
  body, toward the shoulder midpoint): the nearest a label can get to the tracked pose ROI,
  not an exact copy of it (tests/test_train_data.py measures the difference).

Labels go into the crop by the inverse of the cascade's own `project_landmarks` (letterbox
included), so a model output equal to `points` projects back onto the label. `points` are
in the model's raw output units: x, y in crop pixels, z in crop pixels times the model's z
unit (hand_landmark_full outputs 0.4 of a pixel per pixel of depth). `mask` is 1 where x, y
are known (finite, and in a Sample's mask), `z_mask` where z is known too; a point outside
the crop keeps its true place and its mask: the model still predicts it there.
"""
from __future__ import annotations

import dataclasses
import itertools

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..augment import make_augmenter
from ..augment.presets import AugmentParams
from ..convert.samples import INPUT_RANGE
from ..formats.sample import Sample
from ..images import check_rgb
from ..pipeline.roi import Crop, Rect, crop, project_landmarks, rotate
from ..pipeline.stages import face_rect_from_landmarks, hand_tracking_rect, pose_rect_from_landmarks
from ..result import HolisticResult
from ..topology import NUM_KEYPOINTS, PARTS
from .modules import MODULES, train_module


HAND_SIDES = ("left_hand", "right_hand")


@dataclass
class ModuleCrop:
    """One training sample: `input` (S, S, 3) float32 in the model's input range, `points`
    (n, 3) float32 labels in the model's raw output units (x, y crop pixels; 0 where
    unknown), `mask` (n,) bool (x, y known), `z_mask` (n,) bool (z known too: teacher labels
    have z, human ones do not), `roi` the Rect (image-normalised) the crop was cut from, and
    the cascade's `crop` record (padding, pixel ROI) for projecting predictions back."""
    input: np.ndarray
    points: np.ndarray
    mask: np.ndarray
    z_mask: np.ndarray
    roi: Rect
    crop: Crop
    module: str
    part: str
    clean: np.ndarray | None = None   # the crop before `degrade_crop` (None: `input` is clean)

    def __post_init__(self):
        if self.clean is None:
            self.clean = self.input

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) points in raw model units (a model's output, say) -> image-normalised, as the cascade projects them."""
        spec = MODULES[self.module]
        normalised = np.asarray(points, np.float32) / np.array([1.0, 1.0, spec.z_per_pixel], np.float32) / spec.input_size
        return project_landmarks(normalised, self.roi, self.crop.padding)


def labelled_points(labels: Sample | HolisticResult) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(543, 3) image-normalised labels, (543,) known mask and (width, height) of a Sample or result."""
    if not isinstance(labels, (Sample, HolisticResult)):
        raise ValueError(f"labels must be a Sample or a HolisticResult, got {type(labels).__name__}")
    if np.shape(labels.xyz) != (NUM_KEYPOINTS, 3):
        raise ValueError(f"labels.xyz must be ({NUM_KEYPOINTS}, 3), got {np.shape(labels.xyz)}")
    known = np.isfinite(labels.xyz[:, :2]).all(axis=1)
    if isinstance(labels, Sample):
        if np.shape(labels.mask) != (NUM_KEYPOINTS,):
            raise ValueError(f"labels.mask must be ({NUM_KEYPOINTS},), got {np.shape(labels.mask)}")
        known &= labels.mask
    return labels.xyz.astype(np.float64), known, (labels.width, labels.height)


def pose_auxiliary_from_landmarks(pose_xy: np.ndarray, known: np.ndarray, image_size) -> np.ndarray:
    """(2, 3) BlazePose auxiliary points from 33 labelled pose points (normalised): the hip
    midpoint, and the point one body-circle radius from it toward the shoulder midpoint,
    the radius reaching the farthest known point (in pixels)."""
    scale = np.asarray(image_size, np.float64)
    px = pose_xy[:, :2] * scale
    hips, shoulders = px[[23, 24]].mean(0), px[[11, 12]].mean(0)
    radius = np.linalg.norm(px[known] - hips, axis=1).max()
    up = shoulders - hips
    top = hips + radius * up / np.linalg.norm(up)
    auxiliary = np.zeros((2, 3))
    auxiliary[:, :2] = np.stack([hips, top]) / scale
    return auxiliary


def part_rect(module: str, part_xyz: np.ndarray, known: np.ndarray, image_size) -> Rect:
    """The cascade's tracking ROI for one part's labelled points (unknown rows left out of the box)."""
    if module == "pose":
        return pose_rect_from_landmarks(pose_auxiliary_from_landmarks(part_xyz, known, image_size), image_size)
    # the ROI functions read the rotation rows by index, so the layout stays and unknown rows
    # repeat a known point (which leaves the box over the known points unchanged)
    filled = np.where(known[:, None], part_xyz, part_xyz[known][0])
    tracking_rect = face_rect_from_landmarks if module == "face_mesh" else hand_tracking_rect
    return tracking_rect(filled, image_size)


def to_crop_pixels(xyz: np.ndarray, rect: Rect, padding: np.ndarray, size: int) -> np.ndarray:
    """Image-normalised (n, 3) points -> crop pixels: the exact inverse of `project_landmarks`."""
    out = np.array(xyz, np.float64, copy=True)
    out[:, :2] = rotate((out[:, :2] - [rect.x_center, rect.y_center]) / [rect.width, rect.height],
                        -rect.rotation) + 0.5
    out[:, 2] = out[:, 2] / rect.width
    left, top, right, bottom = (float(v) for v in padding)
    out[:, 0] = out[:, 0] * (1 - left - right) + left
    out[:, 1] = out[:, 1] * (1 - top - bottom) + top
    out[:, 2] = out[:, 2] * (1 - left - right)
    return (out * size).astype(np.float32)


def module_crop(rgb: np.ndarray, labels: Sample | HolisticResult, module: str, side: str | None = None,
                roi_labels: Sample | HolisticResult | None = None) -> ModuleCrop | None:
    """The `module`'s model input cut from `rgb` around the labelled part, and the labels in
    crop pixels; None when the part has too few known points to place its ROI.

    `side` ("left_hand" / "right_hand") picks the hand for module "hands" (required there,
    refused elsewhere). `labels` is a Sample (human or converted labels, its mask kept) or a
    HolisticResult (teacher labels), of the same image size as `rgb`. `roi_labels` (default
    `labels`) places the ROI instead: 68 human face points do not span the 468-point box the
    cascade crops, so give the teacher's labels of the same image there.
    """
    check_rgb(rgb)
    spec = train_module(module)
    if module == "hands":
        if side not in HAND_SIDES:
            raise ValueError(f"side must be one of {HAND_SIDES} for module 'hands', got {side!r}")
        part = side
    else:
        if side is not None:
            raise ValueError(f"side is only for module 'hands', got side={side!r} for {module!r}")
        part = spec.part
    xyz, known, image_size = labelled_points(labels)
    height, width = rgb.shape[:2]
    if image_size != (width, height):
        raise ValueError(f"labels are for a {image_size[0]}x{image_size[1]} image, rgb is {width}x{height}")
    part_xyz, part_known = xyz[PARTS[part]], known[PARTS[part]]
    if roi_labels is None:
        roi_xyz, roi_known = part_xyz, part_known
    else:
        roi_xyz, roi_known, roi_size = labelled_points(roi_labels)
        if roi_size != image_size:
            raise ValueError(f"roi_labels are for a {roi_size[0]}x{roi_size[1]} image, labels for "
                             f"{image_size[0]}x{image_size[1]}")
        roi_xyz, roi_known = roi_xyz[PARTS[part]], roi_known[PARTS[part]]
    if not part_known.any() or roi_known.sum() < spec.min_known or not roi_known[list(spec.required)].all():
        return None
    rect = part_rect(module, roi_xyz, roi_known, image_size)
    if not rect.usable:
        return None
    model_input = crop(rgb, rect, (spec.input_size, spec.input_size), keep_aspect=spec.keep_aspect, value_range=INPUT_RANGE[spec.model_name])
    points = to_crop_pixels(part_xyz, rect, model_input.padding, spec.input_size)
    points[:, 2] *= spec.z_per_pixel
    z_known = part_known & np.isfinite(points[:, 2])
    points[~part_known] = 0.0
    points[~z_known, 2] = 0.0  # 0 rather than NaN: a masked term must not turn a loss into NaN
    missing = spec.num_points - len(points)  # pose: the model's 6 auxiliary points have no label
    points = np.pad(points, [(0, missing), (0, 0)])
    part_known, z_known = (np.pad(known_mask, (0, missing)) for known_mask in (part_known, z_known))
    return ModuleCrop(model_input.tensor[0], points, part_known, z_known, rect, model_input, module, part)


def iter_labelled(path) -> Iterator[tuple[np.ndarray, Sample]]:
    """(rgb, Sample) pairs of a TFRecord set (a file, its shards or a list of files)."""
    from ..formats import tfrecord

    for sample in tfrecord.read(path):
        yield tfrecord.decode_image(sample), sample


def augment_labelled(augmenter, rgb: np.ndarray, labels: Sample | HolisticResult) -> tuple[np.ndarray, HolisticResult]:
    """`augmenter(rgb, labels)` for a Sample or a HolisticResult; 2-D human labels keep their
    x, y and their unknown (NaN) z, on the twin's row if the image was mirrored."""
    return augmenter(rgb, labels.to_result() if isinstance(labels, Sample) else labels)


GEOMETRY_KNOBS = ("flip_p", "geometric_p", "rotate_deg", "scale_delta", "shift_frac", "perspective", "crop_frac")


def split_preset(params: str | AugmentParams) -> tuple[AugmentParams, AugmentParams]:
    """(geometry, appearance): the preset's knobs that move points (applied to the whole image
    before the crop, labels following) and the ones that only change pixels (light, noise,
    blur, JPEG, cut-outs, occluders: applied to the crop, so the shipped model can see the
    same crop clean and be the teacher of the degraded one)."""
    from ..augment.presets import preset as named_preset

    params = named_preset(params) if isinstance(params, str) else params
    if not isinstance(params, AugmentParams):
        raise ValueError(f"preset must be a preset name or AugmentParams, got {type(params).__name__}")
    defaults = AugmentParams()
    geometry = defaults.replace(**{name: getattr(params, name) for name in GEOMETRY_KNOBS})
    appearance = params.replace(**{name: getattr(defaults, name) for name in GEOMETRY_KNOBS})
    return geometry, appearance


def crop_labels(sample: ModuleCrop) -> HolisticResult:
    """The crop's labels as a HolisticResult of the crop image (the part's rows set, the rest
    NaN), for the transforms that place a patch by the labels (mouth and hand occluders)."""
    spec = MODULES[sample.module]
    n = PARTS[sample.part].stop - PARTS[sample.part].start
    points = sample.points[:n] / np.array([1.0, 1.0, spec.z_per_pixel], np.float32) / spec.input_size
    points[~sample.z_mask[:n], 2] = np.nan
    points[~sample.mask[:n]] = np.nan
    return part_result(sample.part, points, spec.input_size, spec.input_size)


def part_result(part: str, xyz: np.ndarray, width: int, height: int) -> HolisticResult:
    """A HolisticResult holding one part's points (image-normalised), every other part absent."""
    full = np.full((NUM_KEYPOINTS, 3), np.nan, np.float32)
    full[PARTS[part]] = xyz
    return HolisticResult(full, np.zeros(NUM_KEYPOINTS, np.float32), {name: name == part for name in PARTS},
                          width, height)


def degrade_crop(sample: ModuleCrop, augmenter) -> ModuleCrop:
    """The crop with `augmenter` (an appearance-only KeypointAugmenter) applied to its pixels;
    `clean` keeps the crop before it. Labels do not move (no geometry in the augmenter)."""
    low, high = sample.crop.value_range
    pixels = np.clip(np.rint((sample.input - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
    degraded, _ = augmenter(pixels, crop_labels(sample))
    tensor = degraded.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    return dataclasses.replace(sample, input=tensor, clean=sample.input)


def preset_augmenters(preset: str | AugmentParams | None, seed: int | None, geometry: bool = True):
    """(moves, looks): the preset's geometry augmenter for whole images (None without a preset or
    when `geometry` is False) and its appearance augmenter for crops (None without a preset)."""
    if preset is None:
        return None, None
    geometry_params, appearance_params = split_preset(preset)
    moves = make_augmenter(geometry_params, seed=seed) if geometry else None
    return moves, make_augmenter(appearance_params, seed=None if seed is None else seed + 1)


def iter_module_crops(items: Iterable[tuple[np.ndarray, Sample | HolisticResult]], module: str,
                      preset: str | AugmentParams | None = None, seed: int | None = 0,
                      geometry: bool = True) -> Iterator[ModuleCrop]:
    """Every usable crop of `module` in (rgb, labels) pairs (both hands of each for "hands").

    `preset`'s geometry (`split_preset`) moves the whole image and its labels first (skipped
    when `geometry` is False, as for validation); its appearance part then degrades the crop,
    whose `clean` field keeps the crop as it was. Seeded: the same seed gives the same crops."""
    train_module(module)
    moves, looks = preset_augmenters(preset, seed, geometry)
    sides = HAND_SIDES if module == "hands" else (None,)
    for rgb, labels in items:
        check_rgb(rgb)
        if moves is not None:
            rgb, labels = augment_labelled(moves, rgb, labels)
        for side in sides:
            sample = module_crop(rgb, labels, module, side)
            if sample is not None:
                yield sample if looks is None else degrade_crop(sample, looks)


def iter_module_batches(items: Iterable[tuple[np.ndarray, Sample | HolisticResult]], module: str,
                        batch_size: int = 32, preset: str | AugmentParams | None = None, seed: int | None = 0,
                        drop_remainder: bool = False, geometry: bool = True
                        ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Batches (inputs (B, S, S, 3), targets) of `iter_module_crops`, all float32: targets are
    {"points": (B, n, 3), "mask": (B, n), "z_mask": (B, n), "clean": (B, S, S, 3)}, n the
    model's point count, the ModuleCrop fields stacked; the last batch may be smaller unless
    `drop_remainder`."""
    return in_batches(iter_module_crops(items, module, preset, seed, geometry), batch_size, stack_batch,
                      drop_remainder)


def in_batches(samples: Iterable, batch_size: int, stack, drop_remainder: bool = False) -> Iterator:
    """`stack(list)` of each `batch_size` consecutive samples; the last may be smaller unless `drop_remainder`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    return _in_batches(samples, batch_size, stack, drop_remainder)


def _in_batches(samples, batch_size, stack, drop_remainder):
    batch = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == batch_size:
            yield stack(batch)
            batch = []
    if batch and not drop_remainder:
        yield stack(batch)


def stack_batch(crops: list[ModuleCrop]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    def stacked(name):
        return np.stack([getattr(c, name) for c in crops]).astype(np.float32)

    return stacked("input"), {"points": stacked("points"), "mask": stacked("mask"), "z_mask": stacked("z_mask"),
                              "clean": stacked("clean")}


def batch_signature(module: str):
    """The tf.TensorSpec structure of `iter_module_batches`' batches for `module`."""
    import tensorflow as tf

    spec = train_module(module)
    n, image = spec.num_points, tf.TensorSpec((None, spec.input_size, spec.input_size, 3), tf.float32)
    return (image, {"points": tf.TensorSpec((None, n, 3), tf.float32), "mask": tf.TensorSpec((None, n), tf.float32),
                    "z_mask": tf.TensorSpec((None, n), tf.float32), "clean": image})


def module_dataset(make_items, module: str, batch_size: int = 32, preset: str | AugmentParams | None = None,
                   seed: int | None = 0, drop_remainder: bool = False, geometry: bool = True,
                   reseed_each_epoch: bool = True):
    """The same batches as a tf.data.Dataset; `make_items()` returns a fresh (rgb, labels)
    iterable each pass (e.g. `lambda: iter_labelled(path)`). With `reseed_each_epoch` each
    pass augments with seed `seed + 2 * epoch`, so epochs differ and runs repeat; without
    it every pass gives the same batches (a validation set)."""
    return epoch_dataset(make_items, lambda items, epoch_seed: iter_module_batches(
        items, module, batch_size, preset, epoch_seed, drop_remainder, geometry), batch_signature(module), seed,
        reseed_each_epoch)


def epoch_dataset(make_items, make_batches, signature, seed: int | None = 0, reseed_each_epoch: bool = True):
    """A tf.data.Dataset of `make_batches(items, epoch_seed)` over a fresh `make_items()` each
    pass: shuffled and augmented with seed `seed + 2 * epoch` with `reseed_each_epoch`, the same
    batches every pass without it."""
    import tensorflow as tf

    epochs = itertools.count()

    def batches():
        epoch = next(epochs) if reseed_each_epoch else 0
        epoch_seed = None if seed is None else seed + 2 * epoch
        items = make_items()
        if reseed_each_epoch:   # a new order each pass, so batches mix differently every epoch
            items = list(items)
            np.random.default_rng(epoch_seed).shuffle(items)
        return make_batches(items, epoch_seed)

    return tf.data.Dataset.from_generator(batches, output_signature=signature)
