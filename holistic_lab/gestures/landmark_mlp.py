"""The landmark-only baseline: a small MLP on the 21 hand landmarks, MediaPipe's gesture
recognizer's approach (its classifier reads landmarks, not pixels).

The landmarks are made independent of where the hand is and how big it is: relative to the
wrist, divided by the largest wrist-to-point distance in the image plane. They keep the hand's
orientation in the image (thumb up and thumb down differ), which the gesture head, reading a
crop that the ROI has already turned fingers-up, has to infer from the pixels.
"""
from __future__ import annotations

import keras
import numpy as np


def landmark_features(landmarks: np.ndarray) -> np.ndarray:
    """(N, 21, 3) landmarks in pixels -> (N, 63) normalised; rows of a hand not found stay NaN."""
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (21, 3):
        raise ValueError(f"landmarks must be (N, 21, 3), got {landmarks.shape}")
    relative = landmarks - landmarks[:, :1]
    scale = np.linalg.norm(relative[:, :, :2], axis=-1).max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = relative / scale[:, None, None]
    return normalised.reshape(len(landmarks), 63)


def build_mlp(num_classes: int, hidden: tuple[int, ...] = (64, 32), dropout: float = 0.2, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((63,), name="landmarks")
    x = inputs
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation="relu", name=f"mlp_hidden_{i}")(x)
        x = keras.layers.Dropout(dropout, name=f"mlp_dropout_{i}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="mlp_probabilities")(x)
    return keras.Model(inputs, outputs, name="landmark_mlp")


def mlp_probabilities(mlp: keras.Model, landmarks: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """(N, K) class probabilities; a hand the landmark model did not find has no landmarks, so
    the baseline answers `none` for it (all mass on `none`, or uniform if there is no such class)."""
    features = landmark_features(landmarks)
    found = np.isfinite(features).all(axis=1)
    probabilities = np.zeros((len(features), len(labels)), np.float32)
    if found.any():
        probabilities[found] = np.asarray(mlp(features[found], training=False))
    if "none" in labels:
        probabilities[~found, labels.index("none")] = 1.0
    else:
        probabilities[~found] = 1.0 / len(labels)
    return probabilities
