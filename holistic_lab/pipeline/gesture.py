"""The gesture stage of the cascade: a saved gesture classifier read back and run on a hand crop.

A gesture classifier folder (written by `holistic_lab.gestures.GestureClassifier.save`) holds
`gesture.json` (format, version, the class labels in output order, the model file's sha256, how
it was made and measured) and `model.tflite`: the hand landmark model with a gesture head on
its backbone, so one forward pass gives the hand model's four outputs (landmarks, presence,
handedness, world landmarks, in the shipped order) and then the class probabilities.

The cascade runs it on the hand's 224 x 224 landmark crop. With the shipped hand model it *is*
the hand landmark stage (one pass per hand); beside another hand model it is a second pass.
This file only reads the folder; training and writing live in `holistic_lab.gestures`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import display_path, read_manifest, sha256_file
from .roi import Crop
from .runners import check_outputs, make_runner

FORMAT, VERSION = "holistic-lab-gesture", 1
MANIFEST, MODEL_FILE = "gesture.json", "model.tflite"
HAND_INPUT = (1, 224, 224, 3)  # the hand landmark crop
HAND_OUTPUTS = (63, 1, 1, 63)  # the hand landmark model's outputs, before the gesture probabilities
# a label is printed in tab-separated lines and names a class folder: no spaces, tabs, newlines or slashes
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_MANIFEST_BYTES = 1 << 20  # labels and how it was made: a few KB


@dataclass(frozen=True)
class GestureModel:
    """A gesture classifier folder read back and checked."""
    folder: Path
    labels: tuple[str, ...]
    model_path: Path
    manifest: dict


def read_gesture_model(folder) -> GestureModel:
    """Read and check a gesture classifier folder; anything missing, malformed or changed since it
    was written is a ValueError naming the file."""
    folder = Path(folder)
    manifest_path, model_path = folder / MANIFEST, folder / MODEL_FILE
    where = f"gesture model {display_path(manifest_path)}"
    manifest = read_manifest(manifest_path, where, "a gesture classifier's manifest", FORMAT, VERSION,
                             MAX_MANIFEST_BYTES,
                             "no such file; expected a folder written by `holistic-lab gestures train`")
    labels = manifest.get("labels")
    if (not isinstance(labels, list) or len(labels) < 2
            or not all(isinstance(label, str) and LABEL_PATTERN.fullmatch(label) for label in labels)
            or len({label.casefold() for label in labels}) != len(labels)):
        raise ValueError(f"{where}: 'labels' must list at least two distinct class names (letters, digits, "
                         f"'_' or '-'), got {labels!r}"[:2000])
    if model_path.is_symlink() or not model_path.is_file():
        raise ValueError(f"{where}: {display_path(model_path)} is missing (or a symbolic link)")
    actual = sha256_file(model_path)
    if actual != manifest.get("sha256"):
        raise ValueError(f"{display_path(model_path)}: sha256 {actual} but {MANIFEST} says {manifest.get('sha256')}: "
                         "changed since the classifier was written")
    return GestureModel(folder, tuple(labels), model_path, manifest)


def check_signature(interpreter, model: GestureModel) -> None:
    """A ValueError naming the file unless the model takes the hand crop and gives the hand model's
    outputs, then one probability per label (another model, or labels edited, would mislabel)."""
    inputs = [tuple(int(n) for n in detail["shape"]) for detail in interpreter.get_input_details()]
    sizes = [int(np.prod(detail["shape"])) for detail in interpreter.get_output_details()]
    if inputs != [HAND_INPUT] or len(sizes) != len(HAND_OUTPUTS) + 1 or tuple(sizes[:-1]) != HAND_OUTPUTS:
        raise ValueError(f"{display_path(model.model_path)}: outputs of {sizes} values, expected the hand model's "
                         f"{list(HAND_OUTPUTS)} then the class probabilities (input {inputs}, expected [{HAND_INPUT}])")
    if sizes[-1] != len(model.labels):
        raise ValueError(f"gesture model {display_path(model.folder / MANIFEST)}: lists {len(model.labels)} labels but "
                         f"{display_path(model.model_path)} gives {sizes[-1]} class probabilities")


def top_gesture(probabilities: np.ndarray, labels: tuple[str, ...]) -> tuple[str, float]:
    """(label, probability) of the most likely class."""
    index = int(np.argmax(probabilities))
    return labels[index], float(probabilities[index])


class GestureStage:
    """A gesture classifier run on hand landmark crops; `classify(crop)` -> (label, score)."""
    name = "gesture"

    def __init__(self, folder, num_threads: int = 1):
        self.model = read_gesture_model(folder)
        self.runner = make_runner(str(self.model.model_path), "", num_threads)
        check_signature(self.runner.interpreter, self.model)
        self.last_inference_ms = 0.0

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    def decode(self, outputs: list[np.ndarray]) -> tuple[str, float]:
        """(label, score) from the model's outputs (the hand outputs, then the probabilities)."""
        probabilities = check_outputs(outputs, [*HAND_OUTPUTS, len(self.labels)], "gesture")[len(HAND_OUTPUTS)]
        return top_gesture(probabilities, self.labels)

    def classify(self, model_input: Crop) -> tuple[str, float]:
        start = time.perf_counter()
        outputs = self.runner(model_input.tensor)
        self.last_inference_ms = (time.perf_counter() - start) * 1e3
        return self.decode(outputs)
