"""Selective int8: measure each layer's quantization error, keep the worst layers (and PRELU) in float.

TFLite's QuantizationDebugger runs a debug build of the int8 model next to the float one on real
crops and reports, for every quantized tensor, the error of int8 against float (mean square,
max abs) and its scale. RMSE / scale is the error in quantization steps: about 0.29 (the
rounding of a uniform value, 1/sqrt(12)) is as good as int8 gets; several steps means the
layer's range does not fit its values (a long tail, a few huge channels).

    table = layer_errors(model, crops)              # rows sorted by rmse/scale, worst first
    nodes = output_layers(model) + sensitive_layers(table, count=3)   # heads and the worst layers
    int8 = quantize_model(model, "int8", crops, float_nodes=nodes)

RMSE/scale finds layers whose values do not fit their range; it cannot see a layer whose scale is
fine for its range but too coarse for what the next stage needs. The output heads are that case:
a pose detector's scores span hundreds of logits, so one int8 step is about two logits, and the
decision near 0 has two steps to live on. Notebook 08 shows what keeping them float buys.

`selective_model` is the converter's own selective quantization (denylisted ops and nodes), the
route the QuantizationDebugger exposes; nothing here rewrites the flatbuffer by hand.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..native_logs import import_tensorflow
from .calibration import check_calibration
from .modes import converter_for, quiet, representative

if TYPE_CHECKING:
    import keras

DEBUG_STEPS = 16   # crops the debugger compares float and int8 on (each runs the debug model once)


@dataclass(frozen=True)
class LayerError:
    tensor: str            # the TFLite tensor name (what `float_nodes` takes)
    op: str                # the op that produced it
    rmse_per_scale: float  # error in quantization steps
    max_abs_error: float
    scale: float


def _debugger(converter, calibration: np.ndarray, float_ops=(), float_nodes=(), steps: int | None = None):
    tf = import_tensorflow()
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops) or None,
                                                            denylisted_nodes=list(float_nodes) or None)
    with quiet():
        return tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=representative(calibration, steps),
                                                         debug_options=options)


def selective_model(converter, calibration: np.ndarray, float_ops=(), float_nodes=()) -> bytes:
    """The int8 model with `float_ops` (op names such as PRELU) and `float_nodes` (tensor names) in float."""
    from ..convert.verification import outputs_in_signature_order

    debugger = _debugger(converter, calibration, float_ops, float_nodes, steps=1)
    with quiet():
        return outputs_in_signature_order(debugger.get_nondebug_quantized_model())


def layer_errors(model: keras.Model, calibration: np.ndarray, steps: int = DEBUG_STEPS) -> list[LayerError]:
    """Per quantized tensor of the fully int8 model: its error against float on `steps` real crops,
    worst (most quantization steps) first."""
    crops = check_calibration(calibration, model.inputs[0].shape, model.name)
    debugger = _debugger(converter_for(model, "int8", crops, restrict_to_int8=False), crops, steps=steps)
    with quiet():
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        if scale > 0:
            rows.append(LayerError(row["tensor_name"], row["op_name"], float(np.sqrt(float(row["mean_squared_error"]))) / scale,
                                   float(row["max_abs_error"]), scale))
    return sorted(rows, key=lambda r: -r.rmse_per_scale)


def sensitive_layers(table: list[LayerError], count: int = 3, min_steps: float = 0.5) -> tuple[str, ...]:
    """Tensor names of the `count` worst layers whose error is above `min_steps` quantization steps."""
    return tuple(row.tensor for row in table[:count] if row.rmse_per_scale > min_steps)


HEAD_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def output_layers(model: keras.Model) -> tuple[str, ...]:
    """Tensor names of the ops that make the model's outputs: from each output back through
    reshapes, concatenations and activations to (and including) the convolutions or dense
    layers that compute it. The outputs are read in the model's own units (pixels, logits), so
    one int8 scale for, say, a detector's box regressors over +-600 px is 4.7 px a step."""
    from tensorflow.lite.tools import flatbuffer_utils

    from ..convert.reading import _op_kind
    from .modes import converter_for, quiet_convert

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(quiet_convert(converter_for(model, "float32"))))
    graph = flat.subgraphs[0]
    producer = {int(out): op for op in graph.operators for out in op.outputs}
    names, pending, seen = [], [int(i) for i in graph.outputs], set()
    while pending:
        tensor = pending.pop()
        op = producer.get(tensor)
        if op is None or tensor in seen:
            continue
        seen.add(tensor)
        names.append(graph.tensors[tensor].name.decode())
        if _op_kind(flat, op) not in HEAD_OPS:
            pending += [int(i) for i in op.inputs if i >= 0 and int(i) in producer]
    return tuple(names)
