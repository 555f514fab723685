"""One stage model -> a quantized .tflite, by TensorFlow's own TFLite converter, in one of five modes.

The converter cannot read a .tflite, so a stage starts from its Keras rebuild (`convert.tflite_to_keras`,
verified number for number against the shipped file in chapter 04) or from a variant's stage file
opened the same way. Inputs and outputs stay float32 in every mode, so any stage can be swapped into
the cascade (`variants.stage_model` checks that).

    model = tflite_to_keras(model_path("face_landmark"))
    int8 = quantize_model(model, "int8", calibration=crops["face_landmark"])   # PRELU kept float
    float_ops(int8)                                                            # {'PRELU': 23, ...}

Int8 and 16x8 need calibration crops (`calibration.calibration_crops`: real crops through the
cascade's ROI code). Ops named in `float_ops` (default: PRELU, see FLOAT_BY_DEFAULT) or layers named
in `float_nodes` stay in float: the converter's selective quantization, reached through TFLite's
QuantizationDebugger (`selective.py` measures which layers deserve it).
"""
from __future__ import annotations

import collections

from typing import TYPE_CHECKING

import numpy as np

from ..native_logs import import_tensorflow
from .calibration import check_calibration

if TYPE_CHECKING:  # TensorFlow loads only when a model is converted, so bad arguments fail fast
    import keras

MODES = {
    "float32": "float32 weights and math: the Keras rebuild exported as it is (the reference for errors)",
    "float16": "float16 weights dequantized at load, float32 math: what Google ships",
    "dynamic": "int8 weights; activations quantized on the fly inside each op (hybrid kernels)",
    "int8": "int8 weights and activations, ranges calibrated on real crops; float32 inputs and outputs",
    "int16x8": "int16 activations with int8 weights (the converter's experimental 16x8 mode; PRELU stays float)",
}
CALIBRATED = ("int8", "int16x8")
# XNNPACK has no int8 PReLU kernel: a quantized PRELU runs in TFLite's reference kernel and every
# op around it leaves the delegate too (measured in notebook 08). Kept float unless asked.
FLOAT_BY_DEFAULT = ("PRELU",)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode


def representative(crops: np.ndarray, steps: int | None = None):
    """The converter's representative_dataset: one crop per step, as a batch of one."""
    def dataset():
        for crop in crops[:steps]:
            yield [crop[None]]

    return dataset


def checked_calibration(model: keras.Model, mode: str, calibration: np.ndarray | None) -> np.ndarray | None:
    """The calibration crops of a calibrated mode, checked against the model input (None for the others)."""
    if mode not in CALIBRATED:
        return None
    if calibration is None:
        raise ValueError(f"mode {mode} needs calibration crops (real model inputs); got none")
    return check_calibration(calibration, model.inputs[0].shape, model.name)


def converter_for(model: keras.Model, mode: str, calibration: np.ndarray | None = None,
                  restrict_to_int8: bool = True):
    """A tf.lite.TFLiteConverter set up for `mode` (calibration crops checked against the model input)."""
    tf = import_tensorflow()
    check_mode(mode)
    from ..convert.verification import batch_of_one

    converter = tf.lite.TFLiteConverter.from_keras_model(batch_of_one(model))
    if mode == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode in CALIBRATED:
        converter.representative_dataset = representative(checked_calibration(model, mode, calibration))
        if mode == "int16x8":  # its quantizer has no PRELU: that op (listed by `float_ops`) stays float
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        else:  # restricted: an op the quantizer cannot handle is an error, never silently left float
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
                [] if restrict_to_int8 else [tf.lite.OpsSet.TFLITE_BUILTINS])
    return converter


def quiet_convert(converter, what: str = "the model") -> bytes:
    """The conversion, quiet; the converter's own refusal (an op with no kernel in the mode) as a ValueError."""
    from ..convert.verification import quiet_convert as convert

    try:
        return convert(converter)
    except Exception as exc:  # tf.lite's ConverterError (or the calibrator's RuntimeError), not a ValueError
        if type(exc).__name__ not in ("ConverterError", "RuntimeError"):
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ValueError(f"the TFLite converter refused {what}: {first}") from None


def check_op_names(names) -> tuple[str, ...]:
    """`names` as TFLite builtin op names (PRELU, ADD, ...); an unknown name is refused (a typo would
    silently quantize everything)."""
    from tensorflow.lite.python import schema_py_generated as schema

    known = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"float ops: {', '.join(map(repr, unknown))} are not TFLite op names (such as PRELU, ADD, "
                         "CONV_2D)")
    return tuple(names)


def model_has_op(model: keras.Model, op: str) -> bool:
    """Whether a TFLite export of `model` has `op` (PRELU read from the Keras layers, any other op
    from a float32 export)."""
    import keras

    if op == "PRELU":
        return any(isinstance(layer, keras.layers.PReLU) for layer in model.layers)
    return op in op_dtypes(quiet_convert(converter_for(model, "float32"), model.name))


def quantize_model(model: keras.Model, mode: str, calibration: np.ndarray | None = None,
                   float_ops: tuple[str, ...] | None = None, float_nodes: tuple[str, ...] = ()) -> bytes:
    """`model` converted in `mode`. For int8: `float_ops` (default FLOAT_BY_DEFAULT, those the model
    has) and `float_nodes` (TFLite tensor names, as `selective.layer_errors` lists them) stay float."""
    check_mode(mode)
    calibration = checked_calibration(model, mode, calibration)  # refused before the slow conversions
    if mode != "int8":
        if float_nodes or float_ops:
            raise ValueError(f"float_ops and float_nodes apply to int8 only, not to mode {mode}")
        return quiet_convert(converter_for(model, mode, calibration), f"{model.name} in mode {mode}")
    wanted = tuple(FLOAT_BY_DEFAULT if float_ops is None else check_op_names(float_ops))
    denied = tuple(op for op in wanted if model_has_op(model, op)) if float_ops is None else wanted
    if not denied and not float_nodes:
        return quiet_convert(converter_for(model, mode, calibration), f"{model.name} in mode int8")
    from .selective import selective_model

    return selective_model(converter_for(model, mode, calibration, restrict_to_int8=False),
                           calibration, denied, tuple(float_nodes))


def op_dtypes(model: bytes) -> dict[str, collections.Counter]:
    """op name -> Counter of the dtype of its first input ('FLOAT32', 'INT8', ...), read from the flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    from ..convert.reading import _op_kind

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    types = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    graph = flat.subgraphs[0]
    found: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op in graph.operators:
        first = next((int(i) for i in op.inputs if i >= 0), None)
        found[_op_kind(flat, op)][types.get(graph.tensors[first].type, "?") if first is not None else "-"] += 1
    return dict(found)


def float_ops(model: bytes) -> dict[str, int]:
    """Compute ops that run in float32 (their first input is float32), quantize/dequantize excepted."""
    return {op: counts["FLOAT32"] for op, counts in op_dtypes(model).items()
            if counts.get("FLOAT32") and op not in ("QUANTIZE", "DEQUANTIZE")}


def quiet():
    """The converter's and debugger's console output silenced (`convert.verification.quiet_tensorflow`)."""
    from ..convert.verification import quiet_tensorflow

    return quiet_tensorflow()
