"""Masked multi-output losses for fine-tuning a Holistic landmark model, in ROI (crop) pixels.

    images, targets = next(iter_module_batches(items, "face_mesh"))    # train.data: crops, labels, masks
    outputs = named_outputs(model, images)                             # {"conv2d_21": ..., "conv2d_31": ...}
    teacher = named_outputs(shipped, targets["clean"])                 # optional: the clean crop, same geometry
    terms = landmark_losses(outputs, targets, "face_mesh", teacher)    # {"landmarks": ..., "total": ...}

Terms (`DEFAULT_LOSS_WEIGHTS`, `FineTuneConfig.loss_weights` replaces any of them):
  landmarks   1.0  labelled x, y: point error in crop pixels, Charbonnier sqrt(d^2 + 1) - 1
                   (about the EPE above a pixel, smooth below it)
  z           0.1  labelled z (teacher-labelled sets; human labels are 2-D), same, in crop pixels
  presence    0.1  BCE: a crop with labelled points holds the part (face logit, hand/pose probability);
                   with a teacher, towards the teacher's presence on the clean crop instead of 1
  visibility  0.1  pose only: BCE of visibility and per-point presence logits on labelled points,
                   towards the teacher's on the clean crop (1 without a teacher)
  teacher     0.5  points without a human label: 3-D error to the shipped model's prediction on the
                   clean crop, so 68 labelled face points do not tear the other 400 mesh vertices;
                   2-D labelled points (human labels have no z): their z error to the teacher's
  teacher_outputs 0.1  mean squared error to the shipped model's outputs that have no human label
                   (hand handedness and world points; pose segmentation, heatmaps, world points),
                   logits (segmentation, heatmaps) compared as probabilities
Teacher terms are 0 when no teacher outputs are given.

A point counts only where its mask is 1 and its label is finite: other points add nothing to
the sum nor to the mean's denominator, and their gradient is exactly zero (labels are replaced
before any arithmetic, so a NaN never reaches a `where` branch). Means run over every counted
point of the batch; a batch with none gives 0. A crop without a single labelled point is a part
that is absent (the joint model's batches hold one, zeroed, for an image without a face or a
hand): it adds nothing to any term, teacher terms included.
"""
from __future__ import annotations

import keras
from keras import ops

from .modules import DEFAULT_LOSS_WEIGHTS, TrainModule, train_module

CHARBONNIER_PX = 1.0


def named_outputs(model: keras.Model, images, training: bool = False) -> dict:
    """The model's outputs on `images` by output name, as float32 (a mixed-precision model computes
    in float16 or bfloat16); a one-output model's tensor is wrapped."""
    outputs = model(images, training=training)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {name: ops.cast(value, "float32") for name, value in zip(model.output_names, outputs)}


def landmark_losses(outputs: dict, targets: dict, module: str | TrainModule, teacher: dict | None = None,
                    weights: dict[str, float] | None = None) -> dict:
    """Each loss term (scalar tensors) and their weighted sum under "total"."""
    module = train_module(module) if isinstance(module, str) else module
    weights = {**DEFAULT_LOSS_WEIGHTS, **(weights or {})}
    predicted = _points(outputs, module)
    labels = ops.cast(targets["points"], "float32")
    xy_known = _known(targets["mask"], labels[..., :2])
    z_known = _known(targets["z_mask"], labels[..., 2:3]) * xy_known
    to_pixels = ops.convert_to_tensor([1.0, 1.0, 1.0 / module.z_per_pixel], "float32")
    predicted_px, labels_px = predicted[..., :3] * to_pixels, _replace_unknown(labels, xy_known) * to_pixels

    terms = {"landmarks": masked_mean(_charbonnier(predicted_px[..., :2] - labels_px[..., :2]), xy_known),
             "z": masked_mean(_charbonnier(predicted_px[..., 2:3] - _replace_unknown(labels_px[..., 2:3], z_known)),
                              z_known)}
    part_labelled = ops.cast(ops.max(xy_known, axis=1) > 0, "float32")
    presence = ops.reshape(outputs[module.presence_output], (-1,))
    present = ops.ones_like(presence)
    if teacher is not None:
        # the teacher's own presence on the clean crop: a presence pushed to 1 on every training
        # crop would teach the cascade never to lose a track
        taught = ops.reshape(ops.cast(teacher[module.presence_output], "float32"), (-1,))
        present = ops.stop_gradient(ops.sigmoid(taught) if module.presence_is_logit else taught)
    terms["presence"] = masked_mean(_bce(present, presence, module.presence_is_logit), part_labelled)
    taught_points = None if teacher is None else _points(teacher, module)
    if module.values_per_point == 5:
        # visibility and per-point presence (logits): the teacher's on the clean crop where there is
        # one (a point the teacher sees as hidden stays hidden), else 1 for a labelled point
        scores = predicted[..., 3:5]
        wanted = ops.ones_like(scores) if taught_points is None else \
            ops.stop_gradient(ops.sigmoid(ops.cast(taught_points[..., 3:5], "float32")))
        terms["visibility"] = masked_mean(ops.sum(_bce(wanted, scores, True), axis=-1), xy_known)
    if teacher is not None:
        taught = ops.stop_gradient(taught_points[..., :3] * to_pixels)
        # unlabelled points of a crop that holds the part: all of x, y, z; 2-D labelled points
        # (human labels): z only
        in_part = part_labelled[:, None] > 0
        terms["teacher"] = (ops.sum(ops.where((xy_known == 0) & in_part, _charbonnier(predicted_px - taught), 0.0))
                            + ops.sum(ops.where((xy_known > 0) & (z_known == 0),
                                                _charbonnier(predicted_px[..., 2:3] - taught[..., 2:3]), 0.0))
                            ) / ops.maximum(ops.sum(ops.where(in_part, 1.0 - z_known, 0.0)), 1.0)
        if module.teacher_only_outputs:
            terms["teacher_outputs"] = sum(
                masked_mean(_per_sample_mean(ops.square(
                    _as_probability(outputs[name], name, module)
                    - ops.stop_gradient(_as_probability(teacher[name], name, module)))), part_labelled)
                for name in module.teacher_only_outputs)
    terms["total"] = sum(weights[name] * value for name, value in terms.items())
    return terms


def _as_probability(values, name: str, module: TrainModule):
    return ops.sigmoid(values) if name in module.logit_outputs else values


def masked_mean(values, mask):
    """Mean of `values` over the entries where `mask` is 1; masked entries add nothing, gradient included."""
    mask = ops.cast(mask, "float32")
    return ops.sum(ops.where(mask > 0, values, 0.0)) / ops.maximum(ops.sum(mask), 1.0)


def _per_sample_mean(values):
    """(B, ...) -> (B,): each sample's mean (equal-sized samples: their mean is the batch's mean)."""
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=1)


def _points(outputs: dict, module: TrainModule):
    return ops.reshape(outputs[module.landmarks_output], (-1, module.num_points, module.values_per_point))


def _known(mask, labels):
    """(B, N) 1 where the mask is set and every given coordinate is finite."""
    finite = ops.all(ops.isfinite(labels), axis=-1)
    return ops.cast(ops.logical_and(ops.cast(mask, "float32") > 0, finite), "float32")


def _replace_unknown(labels, known):
    """Unknown labels set to 0 before any arithmetic, so neither a NaN nor its gradient can leak."""
    return ops.where(known[..., None] > 0, labels, 0.0)


def _charbonnier(difference_px):
    """Per point: sqrt(|d|^2 + c^2) - c, c = CHARBONNIER_PX (differentiable at 0)."""
    return ops.sqrt(ops.sum(ops.square(difference_px), axis=-1) + CHARBONNIER_PX ** 2) - CHARBONNIER_PX


def _bce(target, output, from_logits: bool):
    return ops.binary_crossentropy(target, ops.cast(output, "float32"), from_logits=from_logits)
