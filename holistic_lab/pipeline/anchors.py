"""SSD anchors for MediaPipe's BlazePose and BlazeFace detectors.

Follows mediapipe/calculators/tflite/ssd_anchors_calculator (the options used in
mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt and
face_detection/face_detection_short_range.pbtxt). With `fixed_anchor_size` every
anchor is a unit box; only the centres matter, and the raw box offsets are decoded
relative to them. Layers that share a stride are merged into one grid with several
anchors per cell, which is why 5 layers give 2254 anchors for pose detection.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorOptions:
    input_size: int
    strides: tuple[int, ...]
    offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0


POSE_DETECTION_ANCHORS = AnchorOptions(input_size=224, strides=(8, 16, 32, 32, 32))
FACE_DETECTION_ANCHORS = AnchorOptions(input_size=128, strides=(8, 16, 16, 16))


def anchors_per_cell(options: AnchorOptions, first_layer: int, last_layer: int) -> int:
    """Anchors in one grid cell for layers first..last-1 (same stride): each layer adds one per
    aspect ratio plus one interpolated-scale anchor."""
    per_layer = len(options.aspect_ratios) + (1 if options.interpolated_scale_aspect_ratio > 0 else 0)
    return per_layer * (last_layer - first_layer)


def ssd_anchor_centers(options: AnchorOptions) -> np.ndarray:
    """(N, 2) float32 anchor centres (x, y), normalised 0..1, in the model's output order:
    grid by grid (coarser strides last), row-major, all anchors of one cell together."""
    centers = []
    layer, strides = 0, options.strides
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        size = math.ceil(options.input_size / strides[layer])
        ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
        grid = np.stack([(xs + options.offset) / size, (ys + options.offset) / size], axis=-1).reshape(-1, 2)
        centers.append(np.repeat(grid, anchors_per_cell(options, layer, last), axis=0))
        layer = last
    return np.concatenate(centers).astype(np.float32)
