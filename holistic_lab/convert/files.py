"""Where a conversion reads from and writes to: a model named by short name or path, saved atomically."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import keras

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


def write_atomically(path, write) -> Path:
    """Call `write(temporary_path)` then move the result onto `path`, so a failure leaves any old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial-") as folder:
        temporary = Path(folder) / path.name
        write(temporary)
        os.replace(temporary, path)
    return path


def save_keras(model: keras.Model, path) -> Path:
    """Save `model` as a `.keras` file (custom layers are registered, so `keras.saving.load_model` reads it)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    return write_atomically(path, model.save)
