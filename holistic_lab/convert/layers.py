"""Keras layers for the TFLite ops that have no exact built-in Keras twin.

Everything else maps to a stock layer (Conv2D, DepthwiseConv2D, PReLU, Add, MaxPooling2D,
ZeroPadding2D, Dense, ...). These four keep the TFLite semantics exactly and are registered,
so a converted model saves and loads as `.keras` without `custom_objects`:

- `ZeroPad`: PAD on any non-batch axis. BlazeFace/BlazePalm-style blocks pad *channels*
  ("channel padding") so a residual add matches a wider block; ZeroPadding2D pads only H, W.
- `ResizeBilinear`: RESIZE_BILINEAR with its `align_corners` / `half_pixel_centers` flags
  kept (keras.layers.UpSampling2D and Resizing fix them).
- `DepthToSpace`: DEPTH_TO_SPACE (TFLite and TensorFlow share the DCR channel order).
- `StridedSlice`: STRIDED_SLICE on the non-batch axes, the batch axis taken whole.
"""
from __future__ import annotations

import keras
import tensorflow as tf

PACKAGE = "holistic_lab"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPad(keras.layers.Layer):
    """Zero padding of the non-batch axes: `paddings[i] = (before, after)` for axis i + 1."""

    def __init__(self, paddings, **kwargs):
        super().__init__(**kwargs)
        self.paddings = tuple(tuple(int(p) for p in pair) for pair in paddings)

    def call(self, inputs):
        return keras.ops.pad(inputs, ((0, 0),) + self.paddings)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(
            None if size is None else size + before + after
            for size, (before, after) in zip(input_shape[1:], self.paddings))

    def get_config(self):
        return {**super().get_config(), "paddings": [list(pair) for pair in self.paddings]}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResizeBilinear(keras.layers.Layer):
    """Bilinear resize of NHWC images to a fixed `size` (height, width) with TFLite's flags."""

    def __init__(self, size, align_corners=False, half_pixel_centers=False, **kwargs):
        super().__init__(**kwargs)
        self.size = (int(size[0]), int(size[1]))
        self.align_corners = bool(align_corners)
        self.half_pixel_centers = bool(half_pixel_centers)

    def call(self, inputs):
        return tf.raw_ops.ResizeBilinear(images=inputs, size=self.size, align_corners=self.align_corners,
                                         half_pixel_centers=self.half_pixel_centers)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "align_corners": self.align_corners,
                "half_pixel_centers": self.half_pixel_centers}


@keras.saving.register_keras_serializable(package=PACKAGE)
class DepthToSpace(keras.layers.Layer):
    """Move `block_size` x `block_size` channel groups into space (NHWC, DCR order)."""

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        block = self.block_size
        return (batch, None if height is None else height * block, None if width is None else width * block,
                channels // (block * block))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class StridedSlice(keras.layers.Layer):
    """`begin`, `end`, `strides` and the masks cover the non-batch axes (TFLite semantics)."""

    def __init__(self, begin, end, strides, begin_mask=0, end_mask=0, shrink_axis_mask=0, **kwargs):
        super().__init__(**kwargs)
        self.begin, self.end, self.strides = (tuple(int(v) for v in values) for values in (begin, end, strides))
        self.begin_mask, self.end_mask, self.shrink_axis_mask = int(begin_mask), int(end_mask), int(shrink_axis_mask)

    def call(self, inputs):
        # Prepend the batch axis, taken whole: bit 0 set in both masks, mask bits shifted by one.
        return tf.strided_slice(inputs, (0,) + self.begin, (0,) + self.end, (1,) + self.strides,
                                begin_mask=(self.begin_mask << 1) | 1, end_mask=(self.end_mask << 1) | 1,
                                shrink_axis_mask=self.shrink_axis_mask << 1)

    def compute_output_shape(self, input_shape):
        shape = [input_shape[0]]
        for axis, size in enumerate(input_shape[1:]):
            if self.shrink_axis_mask >> axis & 1:
                continue
            start = None if self.begin_mask >> axis & 1 else self.begin[axis]
            stop = None if self.end_mask >> axis & 1 else self.end[axis]
            shape.append(None if size is None else len(range(size)[slice(start, stop, self.strides[axis])]))
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "begin": list(self.begin), "end": list(self.end), "strides": list(self.strides),
                "begin_mask": self.begin_mask, "end_mask": self.end_mask, "shrink_axis_mask": self.shrink_axis_mask}
