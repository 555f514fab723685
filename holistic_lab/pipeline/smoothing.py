"""Video-mode landmark smoothing: the one-euro filter with MediaPipe's settings.

Follows util/filtering/one_euro_filter, calculators/util/landmarks_smoothing_calculator
(pixel units, velocity scaled by 1 / object size) and visibility_smoothing_calculator,
with the options of modules/pose_landmark/pose_landmark_filtering.pbtxt. One-euro filter:
Casiez, Roussel, Vogel, "1 euro filter", CHI 2012. Hand-written because it is ~30 lines
and must match MediaPipe's variant (raw-value derivative, object-scale normalisation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroSettings:
    min_cutoff: float
    beta: float
    derivative_cutoff: float = 1.0


POSE_LANDMARKS_FILTER = OneEuroSettings(min_cutoff=0.05, beta=80.0)
POSE_AUXILIARY_FILTER = OneEuroSettings(min_cutoff=0.01, beta=10.0)
VISIBILITY_ALPHA = 0.1


def _alpha(cutoff: float, frequency: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * frequency)


class LandmarkSmoother:
    """One-euro filter over (N, 3) normalised landmarks plus a low-pass on visibility.

    `apply(xyz, visibility, timestamp_s, object_scale_px, image_size)`; `reset()` when the
    part is lost, as MediaPipe resets on an empty frame.
    """

    def __init__(self, settings: OneEuroSettings, frequency: float = 30.0):
        self.settings, self.initial_frequency = settings, frequency
        self.reset()

    def reset(self) -> None:
        self.last_time = None
        self.frequency = self.initial_frequency
        self.value = self.raw = self.derivative = self.visibility = None

    def apply(self, xyz: np.ndarray, visibility: np.ndarray | None, timestamp_s: float,
              object_scale_px: float, image_size) -> tuple[np.ndarray, np.ndarray | None]:
        width, height = image_size
        units = np.array([width, height, width], np.float64)
        value = np.asarray(xyz, np.float64) * units
        if object_scale_px < 1e-6 or (self.last_time is not None and timestamp_s <= self.last_time):
            return np.asarray(xyz, np.float32), visibility
        if self.last_time is not None:
            self.frequency = 1.0 / (timestamp_s - self.last_time)
        self.last_time = timestamp_s
        derivative = np.zeros_like(value) if self.raw is None else (value - self.raw) / object_scale_px * self.frequency
        a_d = _alpha(self.settings.derivative_cutoff, self.frequency)
        self.derivative = derivative if self.derivative is None else a_d * derivative + (1 - a_d) * self.derivative
        cutoff = self.settings.min_cutoff + self.settings.beta * np.abs(self.derivative)
        a = 1.0 / (1.0 + self.frequency / (2 * np.pi * cutoff))
        self.value = value if self.value is None else a * value + (1 - a) * self.value
        self.raw = value
        if visibility is not None:
            visibility = np.asarray(visibility, np.float32)
            self.visibility = visibility if self.visibility is None else (
                VISIBILITY_ALPHA * visibility + (1 - VISIBILITY_ALPHA) * self.visibility)
            visibility = self.visibility
        return (self.value / units).astype(np.float32), visibility
