"""Model runners: one interface over a .tflite file, a Keras model or any callable.

Every stage of the cascade hands its runner one float32 tensor of shape
(1, H, W, 3) and gets back the model's outputs as a list of numpy arrays in the
TFLite output order (MediaPipe's InferenceCalculator order, which its graphs split
by index). That contract is what makes a stage swappable: the shipped .tflite, a
quantized .tflite, a converted Keras model (`holistic_lab.convert.tflite_to_keras`
keeps the TFLite output order) or a plain Python function all fit.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..mediapipe_models import resolve_model
from ..native_logs import filtered_native_stderr, import_tensorflow


def as_output_list(outputs) -> list[np.ndarray]:
    """A model's outputs as a list of numpy arrays, also when it returns a single tensor."""
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


class TFLiteRunner:
    """A .tflite model in the TensorFlow Lite interpreter (XNNPACK CPU kernels, like MediaPipe)."""

    def __init__(self, path, num_threads: int = 1):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        tf = import_tensorflow()
        with warnings.catch_warnings(), filtered_native_stderr():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter warns it moves to ai_edge_litert in TF 2.20
            try:
                self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
            except ValueError as exc:
                raise ValueError(f"cannot load {path} as a TFLite model: {exc}") from exc
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            # TFLite builds its XNNPACK delegate, and says so once per process, at the first invoke
            self.interpreter.set_tensor(self._input["index"], np.zeros(self._input["shape"], self._input["dtype"]))
            self.interpreter.invoke()
        self.path, self.num_threads = path, num_threads
        self._outputs = [d["index"] for d in self.interpreter.get_output_details()]

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self._input["index"], tensor.astype(self._input["dtype"], copy=False))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index) for index in self._outputs]


class KerasRunner:
    """A keras.Model whose outputs are in the TFLite output order (as `tflite_to_keras` builds them)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        return as_output_list(self.model(tensor, training=False))


class CallableRunner:
    """Any function tensor -> output or list of outputs (TFLite output order)."""

    def __init__(self, function: Callable):
        self.function = function

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        return as_output_list(self.function(tensor))


def make_runner(model, default_name: str, num_threads: int = 1):
    """Runner for `model`: None (the shipped model `default_name`), a short model name
    (`hand_landmark_full`), a path to a .tflite file, a keras.Model, or a callable."""
    if model is None:
        model = default_name
    if isinstance(model, (TFLiteRunner, KerasRunner, CallableRunner)):
        return model
    if isinstance(model, (str, os.PathLike)):
        return TFLiteRunner(resolve_model(model), num_threads)
    if hasattr(model, "inputs") and hasattr(model, "outputs") and callable(model):
        return KerasRunner(model)
    if callable(model):
        return CallableRunner(model)
    raise ValueError(f"cannot run {type(model).__name__}: expected a model name, a .tflite path, "
                     "a keras.Model or a callable")


def check_outputs(outputs: Sequence[np.ndarray], expected_sizes: Sequence[int], stage: str) -> list[np.ndarray]:
    """Flatten each output and check its element count, so a wrong model fails with a clear message."""
    if len(outputs) < len(expected_sizes):
        raise ValueError(f"{stage} model returned {len(outputs)} outputs, expected at least {len(expected_sizes)} "
                         "(in the TFLite output order)")
    flat = [np.asarray(o, np.float32).reshape(-1) for o in outputs]
    for i, (array, size) in enumerate(zip(flat, expected_sizes)):
        if size and array.size != size:
            raise ValueError(f"{stage} model output {i} has {array.size} values, expected {size}")
    return flat
