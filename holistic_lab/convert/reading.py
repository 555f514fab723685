"""Reading a .tflite file into a plain graph: named tensors, constants as float32, ops in order.

The flatbuffer is parsed with TensorFlow's own schema utilities
(`tensorflow.lite.tools.flatbuffer_utils` over `schema_py_generated`), never by hand.
Weight-decoding ops are folded away here, so the graph the Keras builder sees holds only
compute ops: DEQUANTIZE of a float16 constant becomes a float32 constant (exact: every
float16 value is a float32), and DENSIFY of a sparse constant becomes a dense one
(see `sparsity.py`). The Holistic models store their weights this way (notebook 04, section 1).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from .sparsity import densify

OP_NAMES: dict[int, str] = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
TENSOR_TYPES: dict[int, str] = {code: name for name, code in vars(schema.TensorType).items() if not name.startswith("_")}
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT64": np.int64,
                "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16}
WEIGHT_DECODING_OPS = ("DEQUANTIZE", "DENSIFY")


class UnsupportedOpError(ValueError):
    """An op the converter cannot rebuild; the message names the model, op index and op."""


@dataclass(frozen=True)
class TFLiteOp:
    index: int                  # position in the subgraph's operator list
    kind: str                   # builtin op name, e.g. "CONV_2D" (custom ops: "CUSTOM:<code>")
    inputs: tuple[int, ...]     # tensor indices, -1 for an omitted optional input
    outputs: tuple[int, ...]
    options: object             # the schema's *OptionsT object, or None


@dataclass
class TFLiteGraph:
    """One subgraph of a .tflite model with its weights decoded to float32 numpy arrays."""

    name: str
    tensor_names: list[str]
    tensor_shapes: list[tuple[int, ...]]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    ops: list[TFLiteOp]                       # compute ops only, in execution order
    constants: dict[int, np.ndarray]          # tensor index -> value, weight decoding folded in
    op_counts: Counter = field(default_factory=Counter)   # every op in the file, folded ones too

    def constant(self, tensor: int, op: TFLiteOp) -> np.ndarray:
        """The value of a constant input of `op`, or an UnsupportedOpError if it is computed."""
        if tensor not in self.constants:
            raise UnsupportedOpError(
                f"{self.name}: op {op.index} {op.kind} needs tensor {self.tensor_names[tensor]!r} to be a "
                f"constant (weights, shape or axes) but it is computed at run time")
        return self.constants[tensor]

    def unsupported(self, op: TFLiteOp, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.name}: op {op.index} {op.kind} "
                                  f"(output {self.tensor_names[op.outputs[0]]!r}) is not supported: {why}")


def read_tflite(source) -> TFLiteGraph:
    """Read a .tflite path (or its bytes) into a TFLiteGraph; a non-TFLite file raises ValueError."""
    if isinstance(source, (bytes, bytearray)):
        data, name, where = bytes(source), "model", "model bytes"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"TFLite model not found: {path}")
        data, name, where = path.read_bytes(), path.stem, str(path)
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"{where}: not a TFLite model (no 'TFL3' flatbuffer identifier in bytes 4-8)")
    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    except Exception as exc:  # the flatbuffer runtime raises struct/index errors on damaged files
        raise ValueError(f"{where}: damaged TFLite model ({type(exc).__name__}: {exc}); is the file truncated?") from exc
    if len(model.subgraphs) != 1:
        raise ValueError(f"{where}: {len(model.subgraphs)} subgraphs; only single-subgraph models "
                         "(no control flow) can be rebuilt")
    return _graph_from_model(model, name)


def _graph_from_model(model, name: str) -> TFLiteGraph:
    subgraph = model.subgraphs[0]
    tensors = subgraph.tensors
    graph = TFLiteGraph(
        name=name,
        tensor_names=[t.name.decode() if isinstance(t.name, bytes) else str(t.name) for t in tensors],
        tensor_shapes=[tuple(int(d) for d in (t.shape if t.shape is not None else ())) for t in tensors],
        inputs=tuple(int(i) for i in subgraph.inputs),
        outputs=tuple(int(i) for i in subgraph.outputs),
        ops=[],
        constants={},
    )
    raw = {}  # tensor index -> stored value (float16 or sparse data are decoded by the folding ops)
    for index, tensor in enumerate(tensors):
        buffer = model.buffers[tensor.buffer]
        if buffer.data is not None and len(buffer.data):
            raw[index] = _buffer_array(graph, index, tensor, buffer.data)
    for index, op in enumerate(subgraph.operators or []):
        tflite_op = TFLiteOp(index, _op_kind(model, op), tuple(int(i) for i in op.inputs),
                             tuple(int(i) for i in op.outputs), op.builtinOptions)
        graph.op_counts[tflite_op.kind] += 1
        if tflite_op.kind in WEIGHT_DECODING_OPS:
            _fold_weight_decoding(graph, tflite_op, tensors, raw)
        else:
            graph.ops.append(tflite_op)
    graph.constants = {index: value.astype(np.float32) if value.dtype == np.float16 else value
                       for index, value in raw.items()}
    return graph


def _op_kind(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    # Files written before the schema grew past 127 ops keep the code in deprecatedBuiltinCode.
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if OP_NAMES.get(builtin) == "CUSTOM":
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        return f"CUSTOM:{custom}"
    return OP_NAMES.get(builtin, f"UNKNOWN_OP_{builtin}")


def _buffer_array(graph: TFLiteGraph, index: int, tensor, data) -> np.ndarray:
    type_name = TENSOR_TYPES.get(tensor.type, str(tensor.type))
    if type_name not in _NUMPY_TYPES:
        raise ValueError(f"{graph.name}: constant tensor {graph.tensor_names[index]!r} has type {type_name}, "
                         f"expected one of {sorted(_NUMPY_TYPES)}")
    quantization = getattr(tensor, "quantization", None)
    if type_name in ("INT8", "UINT8", "INT16") and quantization is not None and quantization.scale is not None \
            and len(quantization.scale):  # int8 weights with a scale: their float values are not these numbers
        raise ValueError(f"{graph.name}: constant tensor {graph.tensor_names[index]!r} holds {type_name}-quantized "
                         "weights (an int8 or dynamic-range model); only float models (float32 or float16 weights) "
                         "can be opened")
    values = np.frombuffer(bytes(data), dtype=np.dtype(_NUMPY_TYPES[type_name]).newbyteorder("<"))
    if tensor.sparsity is not None:
        return values  # flat stored values; DENSIFY gives them their shape
    shape = graph.tensor_shapes[index]
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{graph.name}: constant tensor {graph.tensor_names[index]!r} holds {values.size} values, "
                         f"its shape {shape} needs {int(np.prod(shape))}")
    return values.reshape(shape)


def _fold_weight_decoding(graph: TFLiteGraph, op: TFLiteOp, tensors, raw: dict) -> None:
    """Turn DEQUANTIZE(float16 constant) and DENSIFY(sparse constant) into constant outputs."""
    source, target = op.inputs[0], op.outputs[0]
    if source not in raw:
        raise graph.unsupported(op, "only constant (weight) inputs can be decoded; this one is computed at run time")
    value = raw[source]
    if op.kind == "DENSIFY":
        sparsity = tensors[source].sparsity
        if sparsity is None:
            raise graph.unsupported(op, f"input {graph.tensor_names[source]!r} carries no sparsity parameters")
        value = densify(value, graph.tensor_shapes[target], sparsity)
    elif value.dtype == np.float16:
        value = value.astype(np.float32)
    else:
        raise graph.unsupported(op, f"only float16 weights are dequantized, got {value.dtype} "
                                    "(integer-quantized models are not supported)")
    raw[target] = value
