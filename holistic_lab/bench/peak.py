"""The machine's measured multiply-accumulate peak: one large matrix product through XNNPACK.

A stage's achieved rate (its MACs over its median time) only means something beside what this
machine can do at all through the same kernels. `gemm_peak` builds one Dense layer, converts it
with TensorFlow's TFLite converter (float32, as `keras_to_tflite` converts the stages), and times
it in the interpreter with XNNPACK (`quantize.measure.latency`: blocks of timed invokes after a
wake-up invoke). A 256 x 1024 by 1024 x 1024 product is large enough that packing and the call
overhead vanish beside the arithmetic, and its 4 MB of weights sit in L2/L3 as a stage's do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..native_logs import import_tensorflow

GEMM_SHAPE = (256, 1024, 1024)  # rows x depth times depth x width


@dataclass(frozen=True)
class Peak:
    threads: int
    macs: int
    median_ms: float
    p90_ms: float
    n: int

    @property
    def gmacs(self) -> float:
        """Billions of multiply-accumulates per second at the median time."""
        return self.macs / (self.median_ms * 1e-3) / 1e9


def gemm_tflite(rows: int, depth: int, width: int) -> bytes:
    """A float32 .tflite of one (rows, depth) @ (depth, width) product: a Dense layer without bias."""
    import_tensorflow()
    import keras

    from ..convert import keras_to_tflite

    inputs = keras.Input((rows, depth), batch_size=1)
    dense = keras.layers.Dense(width, use_bias=False)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.random.default_rng(0).standard_normal((depth, width)).astype(np.float32) / depth ** 0.5])
    return keras_to_tflite(model)


def gemm_peak(threads=(1, 2), shape=GEMM_SHAPE, rounds: int = 5, block: int = 10) -> dict[int, Peak]:
    """threads -> the measured Peak of one large product at that many interpreter threads."""
    from ..quantize.measure import latency

    rows, depth, width = (int(v) for v in shape)
    if min(rows, depth, width) < 1:
        raise ValueError(f"gemm_peak: shape must be three positive sizes (rows, depth, width), got {shape}")
    model = gemm_tflite(rows, depth, width)
    data = np.random.default_rng(1).standard_normal((rows, depth)).astype(np.float32)
    peaks = {}
    for count in threads:
        timed = latency({"gemm": model}, data, num_threads=count, rounds=rounds, block=block)["gemm"]
        peaks[count] = Peak(count, rows * depth * width, timed.median_ms, timed.p90_ms, timed.n)
    return peaks
