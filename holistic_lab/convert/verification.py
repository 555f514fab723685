"""Checking a converted model number for number against the TFLite interpreter.

The error of one output is `max|a - b| / max(max|b|, 1e-6)`: the worst absolute difference
over the whole output tensor, relative to the tensor's largest magnitude (b is the TFLite
interpreter's output). One scale per output, not per element, so outputs near zero do not
blow the ratio up; the worst element, not an average, so one bad pixel shows.

Float32 sets a floor under any such check: the interpreter's own two kernel sets (XNNPACK,
the default, and the plain builtin kernels) disagree with each other. `verify` measures
that floor on the same inputs and reports it beside the error. An output passes when its
error is within the tolerance (1e-4), or, where the interpreter's two kernel sets already
disagree by more than that, within twice their disagreement: no float32 rebuild can be
closer to XNNPACK than TFLite's own kernels are. Of the seven Holistic models only
pose_landmark_full's segmentation logits (values up to about +-1600) need the second rule;
the report marks them and notebook 04 shows why.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..native_logs import filtered_native_stderr
from ..pipeline.runners import as_output_list
from .samples import INPUT_RANGE, real_inputs

TOLERANCE = 1e-4
FLOOR_FACTOR = 2.0
_EPS = 1e-6


def relative_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    """max|candidate - reference| / max(max|reference|, 1e-6), in float64."""
    candidate, reference = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
    if candidate.shape != reference.shape:
        raise ValueError(f"output shapes differ: {candidate.shape} vs reference {reference.shape}")
    return float(np.abs(candidate - reference).max() / max(np.abs(reference).max(), _EPS))


def run_tflite(model, batch: np.ndarray, op_resolver=tf.lite.experimental.OpResolverType.AUTO) -> list[np.ndarray]:
    """Outputs of a .tflite (path or bytes) on a float32 NHWC batch, in the model's output order.

    Converter-written files (with a signature) give their outputs in the Keras order output_0,
    output_1, ...; files without one in the subgraph's output order.
    """
    with filtered_native_stderr():  # the first invoke prints TFLite's delegate notice
        return _run_interpreter(_interpreter(model, op_resolver), batch)


def _run_interpreter(interpreter, batch: np.ndarray) -> list[np.ndarray]:
    signatures = interpreter.get_signature_list()
    rows = []
    if signatures:
        key = next(iter(signatures))
        runner = interpreter.get_signature_runner(key)
        input_name = signatures[key]["inputs"][0]
        order = sorted(signatures[key]["outputs"], key=lambda name: (len(name), name))
        for row in batch:
            result = runner(**{input_name: row[None].astype(np.float32)})
            rows.append([result[name] for name in order])
    else:
        interpreter.allocate_tensors()
        input_index = interpreter.get_input_details()[0]["index"]
        output_indices = [detail["index"] for detail in interpreter.get_output_details()]
        for row in batch:
            interpreter.set_tensor(input_index, row[None].astype(np.float32))
            interpreter.invoke()
            rows.append([interpreter.get_tensor(index).copy() for index in output_indices])
    return [np.concatenate(parts) for parts in zip(*rows)]


def run_keras(model: keras.Model, batch: np.ndarray) -> list[np.ndarray]:
    """Outputs of a Keras model on a float32 NHWC batch as a list of numpy arrays, in the
    original TFLite order, also for a single-output model (what the pipeline's KerasRunner
    does for one image)."""
    return as_output_list(model(np.asarray(batch, np.float32), training=False))


def keras_to_tflite(model: keras.Model) -> bytes:
    """A float32 .tflite flatbuffer of `model`, written by TensorFlow's own TFLite converter, with
    its graph outputs in the Keras order (`outputs_in_signature_order`), so it is a drop-in for the
    shipped file wherever outputs are read by index (MediaPipe, the pipeline's runners)."""
    return quiet_convert(tf.lite.TFLiteConverter.from_keras_model(batch_of_one(model)))


def batch_of_one(model: keras.Model) -> keras.Model:
    """`model` called on inputs whose batch is 1, as the shipped files' are (the same layers and
    weights; a model whose batch is 1 already comes back as it is). With a free batch, every Keras
    Reshape computes its target shape at run time, so the converter writes SHAPE, STRIDED_SLICE and
    PACK ops (pose_landmark_full has three such Reshapes), which `tflite_to_keras` cannot open again
    (a pruned or fine-tuned pose model could not be quantized); a batch of 1 folds them to constants."""
    if all(tensor.shape[0] == 1 for tensor in model.inputs):
        return model
    inputs = [keras.Input(batch_shape=(1, *tensor.shape[1:]), dtype=tensor.dtype, name=tensor.name)
              for tensor in model.inputs]
    return keras.Model(inputs, model(inputs[0] if len(inputs) == 1 else inputs), name=model.name)


@contextlib.contextmanager
def quiet_tensorflow():
    """No console noise from the TFLite converter (or the QuantizationDebugger, which converts too)."""
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # "Assets written to ..." for the temporary SavedModel the converter makes
    try:
        # the export prints every captured variable; the converter logs ignored legacy flags
        with contextlib.redirect_stdout(io.StringIO()), filtered_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the calibrator's own interpreter warns about TF 2.20
            yield
    finally:
        logger.setLevel(level)


def quiet_convert(converter: tf.lite.TFLiteConverter) -> bytes:
    """`converter.convert()` without its console noise, graph outputs in signature order."""
    with quiet_tensorflow():
        return outputs_in_signature_order(converter.convert())


def outputs_in_signature_order(model: bytes) -> bytes:
    """`model` with its graph outputs listed in its signature's order (output_0, output_1, ...).

    The TFLite converter lists a Keras model's outputs in the graph by internal tensor name
    (face_landmark's score before its landmarks) and keeps the Keras order only in the
    signature; MediaPipe and the pipeline's runners read the graph's list. A model without
    a signature (the shipped files) is returned as it is.
    """
    interpreter = _interpreter(model)
    signatures = interpreter.get_signature_list()
    if not signatures:
        return model
    details = interpreter.get_signature_runner(next(iter(signatures))).get_output_details()
    order = [details[name]["index"] for name in sorted(details, key=lambda name: (len(name), name))]
    if order == [detail["index"] for detail in interpreter.get_output_details()]:
        return model
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    flat.subgraphs[0].outputs = np.array(order, np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


@dataclass(frozen=True)
class OutputCheck:
    inputs: str          # which input set: "random" or a real image name
    output: str          # output name (the TFLite tensor name)
    error: float         # relative_error(candidate, interpreter)
    floor: float         # relative_error(builtin kernels, XNNPACK kernels): float32's own spread

    def passed(self, tolerance: float) -> bool:
        return self.error <= max(tolerance, FLOOR_FACTOR * self.floor)

    def mark(self, tolerance: float) -> str:
        """'' within tolerance, '*' above it but within float32's floor rule, 'FAIL' otherwise."""
        return "" if self.error <= tolerance else "*" if self.passed(tolerance) else "FAIL"


@dataclass(frozen=True)
class VerificationReport:
    model: str
    checks: tuple[OutputCheck, ...]
    tolerance: float = TOLERANCE

    @property
    def max_error(self) -> float:
        return max(check.error for check in self.checks)

    @property
    def passed(self) -> bool:
        return all(check.passed(self.tolerance) for check in self.checks)

    def worst_by_inputs(self) -> dict[str, float]:
        """Largest error over the outputs, per input set."""
        worst: dict[str, float] = {}
        for check in self.checks:
            worst[check.inputs] = max(worst.get(check.inputs, 0.0), check.error)
        return worst

    def __str__(self) -> str:
        lines = [f"{self.model}: max relative error {self.max_error:.1e}, "
                 f"{'PASSED' if self.passed else 'FAILED'} (tolerance {self.tolerance:.0e}, "
                 f"or {FLOOR_FACTOR:g} x the float32 floor where that is larger: *)",
                 f"  {'inputs':24s} {'output':16s} {'error':>9s} {'fp32 floor':>11s}"]
        lines += [f"  {c.inputs:24s} {c.output:16s} {c.error:9.1e} {c.floor:11.1e} {c.mark(self.tolerance)}".rstrip()
                  for c in self.checks]
        return "\n".join(lines)


def verify(path, candidate, inputs: dict[str, np.ndarray] | None = None, tolerance: float = TOLERANCE,
           data_dir=None) -> VerificationReport:
    """Compare `candidate` (a keras.Model, or .tflite bytes) with the interpreter running `path`.

    `inputs` maps a label to a float32 batch (N, H, W, 3); by default one random batch in the
    model's input range and the real crops of `samples.real_inputs`.
    """
    path = Path(path)
    reference_outputs_names = _output_names(path)
    if inputs is None:
        inputs = default_inputs(path, data_dir=data_dir)
    checks = []
    for label, batch in inputs.items():
        batch = np.asarray(batch, np.float32)
        reference = run_tflite(path, batch)
        builtin = run_tflite(path, batch, tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        outputs = run_keras(candidate, batch) if isinstance(candidate, keras.Model) else run_tflite(candidate, batch)
        if len(outputs) != len(reference):
            raise ValueError(f"{path.stem}: candidate gives {len(outputs)} outputs, the interpreter {len(reference)}")
        checks += [OutputCheck(label, name, relative_error(out, ref), relative_error(other, ref))
                   for name, out, ref, other in zip(reference_outputs_names, outputs, reference, builtin)]
    return VerificationReport(path.stem, tuple(checks), tolerance)


def default_inputs(path, data_dir=None, seed: int = 0, random_count: int = 2) -> dict[str, np.ndarray]:
    """A random batch in the model's input range plus one batch per real image (for the 7 Holistic models)."""
    path = Path(path)
    shape = tuple(_interpreter(path).get_input_details()[0]["shape"][1:])
    low, high = INPUT_RANGE.get(path.stem, (-1.0, 1.0))
    inputs = {"random": np.random.default_rng(seed).uniform(low, high, (random_count,) + shape).astype(np.float32)}
    if path.stem in INPUT_RANGE:
        inputs.update({label: crop[None] for label, crop in real_inputs(path.stem, shape[0], data_dir).items()})
    return inputs


def _output_names(path: Path) -> list[str]:
    return [detail["name"] for detail in _interpreter(path).get_output_details()]


def _interpreter(model, op_resolver=tf.lite.experimental.OpResolverType.AUTO) -> tf.lite.Interpreter:
    """tf.lite.Interpreter for a path or flatbuffer bytes, without its TF 2.20 deprecation notice
    (the project pins TF 2.19, whose interpreter is the reference every check here is made against)."""
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        with filtered_native_stderr():
            return tf.lite.Interpreter(**source, experimental_op_resolver_type=op_resolver)
