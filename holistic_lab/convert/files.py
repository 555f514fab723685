"""Where a conversion writes to: a `.keras` file, saved atomically."""
from __future__ import annotations

from pathlib import Path

import keras

from ..files import atomic_write


def save_keras(model: keras.Model, path) -> Path:
    """Save `model` as a `.keras` file (custom layers are registered, so `keras.saving.load_model` reads it)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    return atomic_write(path, model.save)
