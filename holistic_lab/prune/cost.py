"""What a layer costs: multiply-accumulates from its shapes, and its time measured in the TFLite interpreter.

    layer_macs(model)                                  # layer name -> MACs for one image
    rows = layer_latency(model)                        # per Conv2D / DepthwiseConv2D / Dense: MACs, median, p90
    width_sweep(model, "conv2d_8", range(8, 193, 4))   # one layer at several output widths
    model_latency(model)                               # the whole model, timed the same way
    one_layer_tflite(model, "conv2d_8", 96)            # the one-layer model a row times, to inspect

MACs are counted for batch 1 from the built model's shapes: Conv2D H_out*W_out*kh*kw*(C_in/groups)*C_out,
DepthwiseConv2D H_out*W_out*kh*kw*C_in*multiplier, Dense rows*in*out (rows: the positions it is applied
at, 1 for a flat input). Every other layer counts 0 (Add, PReLU, padding, pooling, resize, reshape): it
multiplies nothing into an accumulator, though it still takes time to move its tensor through memory.

The TFLite Python interpreter has no per-op profiler, so a layer's latency is measured as a model of its
own: the layer's config (optionally with its width replaced) on an input of the layer's shape, random
weights (float32 timing does not depend on the values), converted by TensorFlow's converter to float32
and run with XNNPACK, the interpreter's default delegate. The one-layer models of one call take turns in
`quantize.measure.latency` (median and p90 of the timed invokes), so slow drift of a shared machine hits
them all alike. XNNPACK packs output channels in tiles (on x86 16 or 32 for 1x1 convolutions, 8 or 16 for
depthwise), so time can move in steps where MACs move in a line: `width_sweep` measures whether it does.
A one-layer model pays the interpreter's per-invoke overhead and none of what a whole graph shares, and the
table leaves out the 0-MAC layers: compare the sum of its rows with `model_latency`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import keras
import numpy as np

from ..convert import keras_to_tflite
from ..progress import progress_bar
from ..quantize.measure import Latency, latency

TIMED_LAYERS = (keras.layers.DepthwiseConv2D, keras.layers.Conv2D, keras.layers.Dense)


@dataclass(frozen=True)
class LayerLatency:
    """One layer timed on its own in the TFLite interpreter (batch 1)."""
    layer: str
    kind: str                       # Conv2D, DepthwiseConv2D or Dense
    input_shape: tuple[int, ...]    # with the batch axis (1)
    width: int                      # what `widths` sets: Conv2D filters, Dense units, DepthwiseConv2D channels
    macs: int
    median_ms: float
    p90_ms: float
    n: int                          # timed invokes


def layer_macs(model: keras.Model) -> dict[str, int]:
    """Layer name -> multiply-accumulates for one image (see the module docstring); a nested model
    counts as one entry, the sum of its layers."""
    return {layer.name: _macs(layer) for layer in model.layers}


def model_macs(model: keras.Model) -> int:
    return sum(layer_macs(model).values())


def _macs(layer) -> int:
    if isinstance(layer, keras.Model):
        return model_macs(layer)
    if not isinstance(layer, TIMED_LAYERS):
        return 0
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"layer {layer.name}: data_format {layer.data_format}; expected channels_last (NHWC)")
    c_in = _fixed_shape(layer.input.shape, layer.name)[-1]
    out = _fixed_shape(layer.output.shape, layer.name)
    positions, c_out = math.prod(out[:-1]), out[-1]
    if isinstance(layer, keras.layers.Dense):
        return positions * c_in * c_out
    kernel = math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return positions * kernel * c_out  # c_out = C_in * multiplier: one kernel window per output channel
    return positions * kernel * (c_in // layer.groups) * c_out


def _fixed_shape(shape, layer_name: str) -> tuple[int, ...]:
    """`shape` without its batch axis; a ValueError if any other axis is unknown."""
    if any(n is None for n in shape[1:]):
        raise ValueError(f"layer {layer_name}: shape {tuple(shape)} has unknown axes besides the batch; "
                         "costs need a model built for a fixed input size")
    return tuple(int(n) for n in shape[1:])


def _check_threads(num_threads) -> None:
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads: {num_threads!r}; expected an integer >= 1")


def _check_width(width, where: str) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"{where}: {width!r}; expected a channel count >= 1")
    return int(width)


def _timed_layer(model: keras.Model, name: str, where: str):
    try:
        layer = model.get_layer(name)
    except ValueError:
        raise ValueError(f"{where}: no layer {name!r} in model {model.name}") from None
    if not isinstance(layer, TIMED_LAYERS):
        raise ValueError(f"{where}: layer {name!r} is a {type(layer).__name__}; only Conv2D, DepthwiseConv2D "
                         "and Dense layers are timed")
    return layer


def _one_layer_model(layer, width: int | None) -> keras.Model:
    """`layer`'s config on an input of its shape (batch 1), fresh random weights; `width` replaces
    Conv2D filters, Dense units, or a DepthwiseConv2D's channels (its input's last axis)."""
    config = layer.get_config()
    shape = _fixed_shape(layer.input.shape, layer.name)
    if width is not None:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            shape = shape[:-1] + (width,)
        elif isinstance(layer, keras.layers.Conv2D):
            config["filters"] = width
        else:
            config["units"] = width
    inputs = keras.Input(shape, batch_size=1)
    return keras.Model(inputs, type(layer).from_config(config)(inputs))


def one_layer_tflite(model: keras.Model, layer_name: str, width: int | None = None) -> bytes:
    """The float32 .tflite that `layer_latency` times for `layer_name` (at `width`, if given)."""
    layer = _timed_layer(model, layer_name, "layer_name")
    if width is not None:
        width = _check_width(width, "width")
    return keras_to_tflite(_one_layer_model(layer, width))


def _width(layer) -> int:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return int(layer.input.shape[-1])
    return int(layer.output.shape[-1])


def _time_layers(entries: dict, num_threads: int, rounds: int, block: int, progress: bool, seed: int,
                 desc: str) -> list[LayerLatency]:
    """entries: key -> (layer, width or None); each key's one-layer model converted (once per distinct
    config and shape) and all of them timed taking turns."""
    rng = np.random.default_rng(seed)
    converted: dict[str, bytes] = {}
    models, inputs, built = {}, {}, {}
    for key, (layer, width) in progress_bar(entries.items(), desc, progress, total=len(entries)):
        one = _one_layer_model(layer, width)
        config = {k: v for k, v in one.layers[-1].get_config().items() if k != "name"}
        signature = json.dumps([type(layer).__name__, config, one.input_shape], sort_keys=True, default=str)
        if signature not in converted:
            converted[signature] = keras_to_tflite(one)
        models[key] = converted[signature]
        inputs[key] = rng.standard_normal(one.input_shape[1:]).astype(np.float32)
        built[key] = one
    timings = latency(models, inputs, num_threads, rounds, block)
    rows = []
    for key, one in built.items():
        timed, layer = one.layers[-1], entries[key][0]
        rows.append(LayerLatency(layer.name, type(layer).__name__, tuple(one.input_shape), _width(timed),
                                 _macs(timed), timings[key].median_ms, timings[key].p90_ms, timings[key].n))
    return rows


def layer_latency(model: keras.Model, layer_names=None, widths: dict[str, int] | None = None, num_threads: int = 1,
                  rounds: int = 10, block: int = 10, progress: bool = False, seed: int = 0) -> list[LayerLatency]:
    """One row per Conv2D / DepthwiseConv2D / Dense layer of `model` (or per name in `layer_names`), in
    graph order, each timed as its own one-layer TFLite model; `widths` (layer name -> channels) times
    a layer at another width, as pruning would leave it."""
    _check_threads(num_threads)
    if layer_names is None:
        layers = [layer for layer in model.layers if isinstance(layer, TIMED_LAYERS)]
    else:
        layers = [_timed_layer(model, name, "layer_names") for name in layer_names]
    widths = dict(widths or {})
    timed = {layer.name for layer in layers}
    for name, width in widths.items():
        if name not in timed:
            raise ValueError(f"widths: layer {name!r} is not among the timed layers of {model.name}")
        _check_width(width, f"widths[{name!r}]")
    entries = {layer.name: (layer, widths.get(layer.name)) for layer in layers}
    return _time_layers(entries, num_threads, rounds, block, progress, seed, f"timing {model.name} layers")


def width_sweep(model: keras.Model, layer_name: str, widths, num_threads: int = 1, rounds: int = 10,
                block: int = 10, progress: bool = False, seed: int = 0) -> list[LayerLatency]:
    """The layer `layer_name` timed at each of `widths` (output channels; a depthwise layer's channels),
    one row per distinct width in the given order, all widths taking turns."""
    _check_threads(num_threads)
    layer = _timed_layer(model, layer_name, "layer_name")
    widths = [_check_width(width, "widths") for width in widths]
    if not widths:
        raise ValueError("widths: empty; expected at least one channel count")
    entries = {width: (layer, width) for width in widths}
    return _time_layers(entries, num_threads, rounds, block, progress, seed, f"sweeping {layer_name}")


def model_latency(model: keras.Model, num_threads: int = 1, rounds: int = 10, block: int = 10,
                  seed: int = 0) -> Latency:
    """The whole `model` (one input) converted to float32 TFLite and timed as `layer_latency` times a layer."""
    _check_threads(num_threads)
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name}: {len(model.inputs)} inputs; model_latency times one-input models")
    shape = _fixed_shape(model.inputs[0].shape, model.name)
    crop = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return latency({model.name: keras_to_tflite(model)}, crop, num_threads, rounds, block)[model.name]
