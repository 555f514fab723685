"""Where a conversion writes to: a `.keras` file, saved atomically, and which existing files it may replace."""
from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from ..files import atomic_write, check_output_file


def is_keras_file(path) -> bool:
    """True for a Keras 3 `.keras` archive (a zip holding config.json and metadata.json)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {"config.json", "metadata.json"} <= set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def is_tflite_file(path) -> bool:
    """True for a TFLite flatbuffer (file identifier "TFL3" at bytes 4..8)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8)[4:] == b"TFL3"
    except OSError:
        return False


def check_model_output(path, inputs=(), overwrite: bool = False) -> Path:
    """`files.check_output_file` for a model file: an existing file is replaced only if it is a model of that kind."""
    path = Path(path)
    if path.suffix == ".keras":
        return check_output_file(path, is_ours=is_keras_file, inputs=inputs, overwrite=overwrite,
                                 kind="a Keras model (.keras archive)")
    return check_output_file(path, is_ours=is_tflite_file, inputs=inputs, overwrite=overwrite,
                             kind="a TFLite model")


def save_keras(model: keras.Model, path) -> Path:
    """Save `model` as a `.keras` file (custom layers are registered, so `keras.saving.load_model` reads it)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: a Keras model file must end in .keras")
    return atomic_write(path, model.save)
