"""Rebuilding a TFLite graph op by op as a trainable Keras functional model.

Each compute op becomes one Keras layer holding its weights as trainable float32 variables
(CONV_2D -> Conv2D, DEPTHWISE_CONV_2D -> DepthwiseConv2D, PRELU -> PReLU with shared
spatial axes, FULLY_CONNECTED -> Dense, ...). A fused activation stays inside the layer
where Keras has an `activation` argument, and becomes its own layer after ADD, MAX_POOL_2D
and CONCATENATION. TFLite 'SAME' padding is TensorFlow's 'same' (the extra row/column goes
after), so conv and pool padding maps one to one; explicit PAD ops become ZeroPadding2D or
`ZeroPad`. The batch axis is left free (None) so the model trains on batches; ops whose
constants fix it to 1 (RESHAPE, STRIDED_SLICE) are rebuilt on the non-batch axes.

Layer names follow the TFLite tensor names: the model outputs keep theirs exactly
(`Identity_1`, `conv2d_21`, ...), other layers take the original Keras layer name found
in the (often fused, ';'-joined) name of their weight or output tensor, e.g.
`depthwise_conv2d_2` out of the weight
`model_1/model/batch_normalization_7/FusedBatchNormV3;model_1/model/depthwise_conv2d_2/depthwise;...`.
"""
from __future__ import annotations

import re

import keras
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

from .layers import DepthToSpace, ResizeBilinear, StridedSlice, ZeroPad
from .reading import TFLiteGraph, TFLiteOp, read_tflite

_ACTIVATIONS = {schema.ActivationFunctionType.NONE: None, schema.ActivationFunctionType.RELU: "relu",
                schema.ActivationFunctionType.RELU6: "relu6", schema.ActivationFunctionType.TANH: "tanh"}
_PADDING = {schema.Padding.SAME: "same", schema.Padding.VALID: "valid"}
# Where a layer's original name is found. A TFLite tensor is named after every TF op folded
# into it ('re_lu_3/Relu6;batch_normalization_4/...;depthwise_conv2d_1/depthwise'), and
# constants shared between ops add names of unrelated layers. A weighted op's own layer is
# the first part of its *weight* tensor's name with the op's name prefix (the weight's own
# batch norm and conv come first); other ops use the last matching part of their output name.
_WEIGHT_NAME_PREFIX = {"CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "MatMul",
                       "PRELU": "mul"}
_OUTPUT_NAME_PREFIX = {"ADD": "add", "MAX_POOL_2D": "MaxPool", "CONCATENATION": "concat"}
_WRAPPER_SCOPE = re.compile(r"^model(_\d+)?$")


def tflite_to_keras(path) -> keras.Model:
    """Rebuild the .tflite model at `path` (or its bytes) as a keras.Model with the same weights.

    The model takes float32 NHWC batches (batch size free) in the original's input range and
    returns its outputs in the TFLite output order, named as in the file. `model(x)` gives a
    list for a multi-output model and a single tensor for a one-output model (Keras unwraps
    it); `verification.run_keras(model, x)` always gives a list of numpy arrays, the same as
    the interpreter. Unsupported ops raise UnsupportedOpError naming the op and its index.
    """
    graph = read_tflite(path)
    return KerasBuilder(graph).build()


class KerasBuilder:
    """Walks a TFLiteGraph in execution order, turning each op into Keras layers."""

    def __init__(self, graph: TFLiteGraph):
        self.graph = graph
        self.tensors: dict[int, keras.KerasTensor] = {}
        output_names = [_sanitise(graph.tensor_names[i]) for i in graph.outputs]
        self.reserved = {index: name for index, name in zip(graph.outputs, output_names)}
        self.used_names: set[str] = set(output_names)

    def build(self) -> keras.Model:
        graph = self.graph
        for index in graph.inputs:
            shape = graph.tensor_shapes[index]
            name = self._unique(_sanitise(graph.tensor_names[index]))
            self.tensors[index] = keras.Input(shape=shape[1:], name=name)
        for op in graph.ops:
            convert = getattr(self, f"_op_{op.kind.lower()}", None)
            if convert is None:
                raise graph.unsupported(op, f"no Keras equivalent is implemented; supported ops: {supported_ops()}")
            if len(op.outputs) != 1:
                raise graph.unsupported(op, f"{len(op.outputs)} outputs (every rebuilt op has one)")
            self.tensors[op.outputs[0]] = convert(op)
        missing = [graph.tensor_names[i] for i in graph.outputs if i not in self.tensors]
        if missing:
            raise ValueError(f"{graph.name}: outputs {missing} are not computed by any op")
        inputs = [self.tensors[i] for i in graph.inputs]
        return keras.Model(inputs=inputs[0] if len(inputs) == 1 else inputs,
                           outputs=[self.tensors[i] for i in graph.outputs], name=_sanitise(graph.name))

    # --- naming ---------------------------------------------------------------------------

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.used_names:
            candidate, n = f"{name}_{n}", n + 1
        self.used_names.add(candidate)
        return candidate

    def _name(self, op: TFLiteOp, activation: str | None = None, last: bool = True) -> str:
        """Layer name for `op` (or its separate `activation` layer); `last` is False if one follows."""
        tensor = op.outputs[0]
        if last and tensor in self.reserved:
            return self.reserved[tensor]
        names = self.graph.tensor_names
        if activation:
            return self._unique(_own_layer_name(names[tensor], activation.capitalize(), pick=-1))
        if op.kind in _WEIGHT_NAME_PREFIX:
            return self._unique(_own_layer_name(names[op.inputs[1]], _WEIGHT_NAME_PREFIX[op.kind], pick=0))
        return self._unique(_own_layer_name(names[tensor], _OUTPUT_NAME_PREFIX.get(op.kind), pick=-1))

    def _input(self, op: TFLiteOp, position: int = 0) -> keras.KerasTensor:
        tensor = op.inputs[position]
        if tensor not in self.tensors:
            raise self.graph.unsupported(op, f"input {self.graph.tensor_names[tensor]!r} is a constant or "
                                             "unknown tensor where a computed one was expected")
        return self.tensors[tensor]

    def _options(self, op: TFLiteOp):
        if op.options is None:
            raise self.graph.unsupported(op, "the op carries no options")
        return op.options

    def _activation(self, op: TFLiteOp):
        code = self._options(op).fusedActivationFunction
        if code not in _ACTIVATIONS:
            raise self.graph.unsupported(op, f"fused activation {code} (only NONE, RELU, RELU6, TANH)")
        return _ACTIVATIONS[code]

    def _apply(self, op: TFLiteOp, layer_type, *args, weights=None, inputs=None, fused_activation=False, **kwargs):
        """Create a layer named after `op`, call it, set its weights, add a separate activation if fused."""
        activation = self._activation(op) if fused_activation else None
        layer = layer_type(*args, name=self._name(op, last=activation is None), **kwargs)
        output = layer(self._input(op) if inputs is None else inputs)
        if weights is not None:
            layer.set_weights(weights)
        if activation is None:
            return output
        return keras.layers.Activation(activation, name=self._name(op, activation=activation))(output)

    def _bias(self, op: TFLiteOp, filters: int) -> list[np.ndarray]:
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            return [self.graph.constant(op.inputs[2], op).reshape(filters)]
        return []

    # --- one method per op ------------------------------------------------------------------

    def _op_conv_2d(self, op: TFLiteOp):
        options = self._options(op)
        kernel = self.graph.constant(op.inputs[1], op)          # (out, kh, kw, in)
        in_channels = self._input(op).shape[-1]
        if kernel.shape[3] != in_channels:
            raise self.graph.unsupported(op, f"grouped convolution ({in_channels} input channels, kernel {kernel.shape})")
        bias = self._bias(op, kernel.shape[0])
        return self._apply(
            op, keras.layers.Conv2D, filters=kernel.shape[0], kernel_size=kernel.shape[1:3],
            strides=(options.strideH, options.strideW), padding=_PADDING[options.padding],
            dilation_rate=(options.dilationHFactor, options.dilationWFactor), activation=self._activation(op),
            use_bias=bool(bias), weights=[kernel.transpose(1, 2, 3, 0)] + bias)

    def _op_depthwise_conv_2d(self, op: TFLiteOp):
        options = self._options(op)
        kernel = self.graph.constant(op.inputs[1], op)          # (1, kh, kw, in * multiplier)
        in_channels = self._input(op).shape[-1]
        multiplier = kernel.shape[3] // in_channels
        bias = self._bias(op, kernel.shape[3])
        return self._apply(
            op, keras.layers.DepthwiseConv2D, kernel_size=kernel.shape[1:3], depth_multiplier=multiplier,
            strides=(options.strideH, options.strideW), padding=_PADDING[options.padding],
            dilation_rate=(options.dilationHFactor, options.dilationWFactor), activation=self._activation(op),
            use_bias=bool(bias), weights=[kernel.reshape(*kernel.shape[1:3], in_channels, multiplier)] + bias)

    def _op_fully_connected(self, op: TFLiteOp):
        options = self._options(op)
        kernel = self.graph.constant(op.inputs[1], op)          # (out, in)
        if len(self._input(op).shape) != 2 or options.keepNumDims:
            raise self.graph.unsupported(op, f"input of shape {self._input(op).shape} (only (batch, features))")
        bias = self._bias(op, kernel.shape[0])
        return self._apply(op, keras.layers.Dense, kernel.shape[0], activation=self._activation(op),
                           use_bias=bool(bias), weights=[kernel.T] + bias)

    def _op_prelu(self, op: TFLiteOp):
        alpha = self.graph.constant(op.inputs[1], op)
        feature_shape = tuple(self._input(op).shape[1:])
        alpha = alpha.reshape((1,) * (len(feature_shape) - alpha.ndim) + alpha.shape)
        shared_axes = [axis + 1 for axis, size in enumerate(alpha.shape) if size == 1 and feature_shape[axis] != 1]
        alpha = np.broadcast_to(alpha, [1 if axis + 1 in shared_axes else size for axis, size in enumerate(feature_shape)])
        return self._apply(op, keras.layers.PReLU, shared_axes=shared_axes or None, weights=[alpha])

    def _op_add(self, op: TFLiteOp):
        return self._apply(op, keras.layers.Add, inputs=[self._input(op, 0), self._input(op, 1)], fused_activation=True)

    def _op_concatenation(self, op: TFLiteOp):
        inputs = [self._input(op, position) for position in range(len(op.inputs))]
        return self._apply(op, keras.layers.Concatenate, axis=self._options(op).axis, inputs=inputs,
                           fused_activation=True)

    def _op_max_pool_2d(self, op: TFLiteOp):
        options = self._options(op)
        return self._apply(op, keras.layers.MaxPooling2D, pool_size=(options.filterHeight, options.filterWidth),
                           strides=(options.strideH, options.strideW), padding=_PADDING[options.padding],
                           fused_activation=True)

    def _op_pad(self, op: TFLiteOp):
        paddings = self.graph.constant(op.inputs[1], op).reshape(-1, 2).tolist()
        if paddings[0] != [0, 0]:
            raise self.graph.unsupported(op, f"padding of the batch axis {paddings[0]}")
        if len(paddings) == 4 and paddings[3] == [0, 0]:
            return self._apply(op, keras.layers.ZeroPadding2D, padding=tuple(map(tuple, paddings[1:3])))
        return self._apply(op, ZeroPad, paddings=paddings[1:])

    def _op_resize_bilinear(self, op: TFLiteOp):
        options = self._options(op)
        size = self.graph.constant(op.inputs[1], op).tolist()
        return self._apply(op, ResizeBilinear, size=size, align_corners=options.alignCorners,
                           half_pixel_centers=options.halfPixelCenters)

    def _op_depth_to_space(self, op: TFLiteOp):
        return self._apply(op, DepthToSpace, block_size=self._options(op).blockSize)

    def _op_reshape(self, op: TFLiteOp):
        if len(op.inputs) > 1 and op.inputs[1] >= 0:
            target = self.graph.constant(op.inputs[1], op).tolist()
        else:
            target = self._options(op).newShape.tolist()
        if target[0] not in (1, -1) or target[1:].count(-1) > (0 if target[0] == -1 else 1):
            raise self.graph.unsupported(op, f"reshape to {target} mixes the batch axis with the features")
        return self._apply(op, keras.layers.Reshape, target_shape=tuple(target[1:]))

    def _op_strided_slice(self, op: TFLiteOp):
        options = self._options(op)
        begin, end, strides = (self.graph.constant(op.inputs[i], op).tolist() for i in (1, 2, 3))
        if options.ellipsisMask or options.newAxisMask or options.shrinkAxisMask & 1 or getattr(options, "offset", False):
            raise self.graph.unsupported(op, "ellipsis, new-axis, offset or batch-shrinking slices")
        batch_whole = (begin[0] == 0 or options.beginMask & 1) and (end[0] >= 1 or options.endMask & 1) and strides[0] == 1
        if not batch_whole:
            raise self.graph.unsupported(op, f"slice of the batch axis (begin {begin[0]}, end {end[0]})")
        return self._apply(op, StridedSlice, begin=begin[1:], end=end[1:], strides=strides[1:],
                           begin_mask=options.beginMask >> 1, end_mask=options.endMask >> 1,
                           shrink_axis_mask=options.shrinkAxisMask >> 1)

    def _op_mean(self, op: TFLiteOp):
        axes = sorted(int(a) % 4 for a in np.atleast_1d(self.graph.constant(op.inputs[1], op)))
        if len(self._input(op).shape) != 4 or axes != [1, 2]:
            raise self.graph.unsupported(op, f"mean over axes {axes} (only the spatial axes of an NHWC tensor)")
        return self._apply(op, keras.layers.GlobalAveragePooling2D, keepdims=bool(self._options(op).keepDims))

    def _op_logistic(self, op: TFLiteOp):
        return self._apply(op, keras.layers.Activation, "sigmoid")

    def _op_relu(self, op: TFLiteOp):
        return self._apply(op, keras.layers.ReLU)


def supported_ops() -> list[str]:
    """The TFLite builtin ops the converter rebuilds (DEQUANTIZE and DENSIFY are folded into weights)."""
    return sorted(name[len("_op_"):].upper() for name in vars(KerasBuilder) if name.startswith("_op_"))


def _sanitise(name: str) -> str:
    """A Keras-legal layer name: '/' and other punctuation become '_'."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip("_") or "tensor"


def _own_layer_name(tensor_name: str, op_prefix: str | None, pick: int) -> str:
    """The original Keras layer name inside a (fused, ';'-joined) TFLite tensor name.

    Of the parts whose op name starts with `op_prefix`, the first (`pick` 0) or last (-1);
    the last part where none matches.
    """
    parts = []
    for component in tensor_name.split(";"):
        scopes = component.split("/")
        while len(scopes) > 1 and _WRAPPER_SCOPE.match(scopes[0]):
            scopes = scopes[1:]
        parts.append((scopes[0], scopes[1] if len(scopes) > 1 else ""))
    own = [layer for layer, op_name in parts if op_prefix and op_name.startswith(op_prefix)]
    return _sanitise(own[pick] if own else parts[-1][0])
