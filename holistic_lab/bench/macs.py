"""Multiply-accumulates of a .tflite model, counted from its flatbuffer's ops and tensor shapes.

Counted for one image (batch 1) the way `prune.cost.layer_macs` counts a Keras layer, so a
variant that cannot be read back into Keras (an int8 model) is counted too:
CONV_2D H_out*W_out*C_out*kh*kw*C_in, DEPTHWISE_CONV_2D H_out*W_out*C_out*kh*kw,
FULLY_CONNECTED (output elements)*C_in, TRANSPOSE_CONV H_in*W_in*C_in*kh*kw*C_out and
BATCH_MATMUL (output elements)*(shared dimension, without adjoints: no Holistic model has one);
quantized ops count the same. Every other op
counts 0 (adds, activations, padding, pooling, resize, reshape, (de)quantize).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..native_logs import filtered_native_stderr, import_tensorflow

MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL")


def op_macs(op: str, shapes: list[tuple[int, ...]], output: tuple[int, ...]) -> int:
    """MACs of one op from its input shapes (in TFLite's operand order) and its output shape."""
    out = int(np.prod(output))
    if op == "CONV_2D":  # filter (C_out, kh, kw, C_in)
        _, kh, kw, c_in = shapes[1]
        return out * kh * kw * c_in
    if op == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, C_out)
        _, kh, kw, _ = shapes[1]
        return out * kh * kw
    if op == "FULLY_CONNECTED":  # weights (C_out, C_in)
        return out * shapes[1][-1]
    if op == "TRANSPOSE_CONV":  # operands (output shape, filter (C_out, kh, kw, C_in), input)
        c_out, kh, kw, _ = shapes[1]
        return int(np.prod(shapes[2])) * kh * kw * c_out
    if op == "BATCH_MATMUL":
        return out * shapes[0][-1]
    return 0


def tflite_macs(path) -> dict[str, int]:
    """"OP_NAME #index" -> MACs for every op of the .tflite at `path` that multiplies (others omitted)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"tflite_macs: model file not found: {path}")
    tf = import_tensorflow()
    with filtered_native_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter says it moves to ai_edge_litert in TF 2.20
        try:  # no delegate: the op list stays the model's own
            interpreter = tf.lite.Interpreter(
                model_path=str(path),
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        except ValueError as exc:
            raise ValueError(f"tflite_macs: cannot read {path} as a TFLite model: {exc}") from exc
    shapes = {t["index"]: tuple(int(v) for v in t["shape"]) for t in interpreter.get_tensor_details()}
    macs = {}
    for op in interpreter._get_ops_details():  # the public API lists tensors, not ops
        name = op["op_name"]
        if name in MAC_OPS:
            inputs = [shapes.get(int(i), ()) for i in op["inputs"] if int(i) >= 0]
            macs[f"{name} #{op['index']}"] = op_macs(name, inputs, shapes[int(op["outputs"][0])])
    return macs


def total_macs(path) -> int:
    """All MACs of one image through the .tflite at `path`."""
    return sum(tflite_macs(path).values())
