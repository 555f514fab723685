"""Where a conversion reads from and writes to: a model named by short name or path, saved atomically."""
from __future__ import annotations

from pathlib import Path

import keras

from ..files import atomic_write
from ..mediapipe_models import HOLISTIC_MODELS, model_path


def resolve_tflite(model: str) -> Path:
    """A Holistic short name (e.g. 'hand_landmark_full') or a path to a .tflite file -> its path."""
    if model in HOLISTIC_MODELS:
        return model_path(model)
    path = Path(model)
    if not path.is_file():
        raise ValueError(f"{model!r} is neither a Holistic model name ({', '.join(HOLISTIC_MODELS)}) "
                         "nor an existing .tflite file")
    return path


def save_keras(model: keras.Model, path) -> Path:
    """Save `model` as a `.keras` file (custom layers are registered, so `keras.saving.load_model` reads it)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    return atomic_write(path, model.save)
