"""prune.cost: MACs counted by hand and from the .tflite graph; per-layer latency in the TFLite interpreter."""
import math
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.convert import read_tflite, tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.prune import (layer_latency, layer_macs, model_latency, model_macs, one_layer_tflite,  # noqa: E402
                                width_sweep)
from holistic_lab.variants import load_interpreter  # noqa: E402

import keras  # noqa: E402

# MACs by hand for `tiny` below (batch 1):
HAND_MACS = {
    "conv": 4 * 4 * 3 * 3 * 3 * 4,       # 8x8x3 -> stride 2 -> 4x4x4, 3x3 kernel
    "dw": 4 * 4 * 3 * 3 * 4 * 2,         # 4 channels, multiplier 2 -> 4x4x8
    "grouped": 4 * 4 * 1 * 1 * (8 // 2) * 6,   # groups=2: each output sees 4 of the 8 inputs
    "add": 0,
    "dense_nhwc": 4 * 4 * 6 * 3,         # applied at each of the 4x4 positions
    "flatten": 0,
    "dense": 48 * 5,
}


@pytest.fixture(scope="module")
def tiny():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    y = keras.layers.Conv2D(6, 1, groups=2, name="grouped")(x)
    x = keras.layers.Add(name="add")([y, y])
    x = keras.layers.Dense(3, name="dense_nhwc")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="dense")(x), name="tiny")


def test_macs_of_a_hand_made_graph_are_the_hand_counted_ones(tiny):
    macs = layer_macs(tiny)
    assert {name: macs[name] for name in HAND_MACS} == HAND_MACS and macs["image"] == 0
    assert model_macs(tiny) == sum(HAND_MACS.values())


def tflite_graph_macs(path) -> int:
    """An independent count from the .tflite itself: each output position of CONV_2D (weight: out, kh, kw,
    in / groups), DEPTHWISE_CONV_2D (1, kh, kw, channels x multiplier) and FULLY_CONNECTED (out, in) does
    one multiply-accumulate per weight."""
    graph = read_tflite(path)
    return sum(math.prod(graph.tensor_shapes[op.outputs[0]][1:-1]) * math.prod(graph.constants[op.inputs[1]].shape)
               for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))


def test_macs_of_the_rebuilt_hand_model_match_its_tflite_graph():
    path = model_path("hand_landmark_full")
    total = model_macs(tflite_to_keras(path))
    print(f"hand_landmark_full: {total / 1e6:.1f} M MACs")
    assert total == tflite_graph_macs(path)
    assert 1e8 < total < 1e9  # a MobileNetV2-like 224x224 backbone: a few hundred million


def test_latency_table_has_a_row_per_weighted_layer(tiny):
    rows = layer_latency(tiny, rounds=2, block=3)
    assert [r.layer for r in rows] == ["conv", "dw", "grouped", "dense_nhwc", "dense"]
    assert [r.kind for r in rows] == ["Conv2D", "DepthwiseConv2D", "Conv2D", "Dense", "Dense"]
    assert all(0 < r.median_ms <= r.p90_ms and r.n == 6 for r in rows)
    assert {r.layer: r.macs for r in rows} == {name: HAND_MACS[name] for name in [r.layer for r in rows]}
    assert rows[1].input_shape == (1, 4, 4, 4) and rows[1].width == 4


def test_widths_change_the_timed_model(tiny):
    rows = layer_latency(tiny, ["conv", "dw", "dense"], widths={"conv": 7, "dw": 5, "dense": 2}, rounds=1, block=2)
    assert [(r.layer, r.width) for r in rows] == [("conv", 7), ("dw", 5), ("dense", 2)]
    assert [r.macs for r in rows] == [HAND_MACS["conv"] // 4 * 7, HAND_MACS["dw"] // 4 * 5, 48 * 2]
    for name, width, shape in [("conv", 7, [1, 4, 4, 7]), ("dw", 5, [1, 4, 4, 10]), ("dense", 2, [1, 2])]:
        loaded = load_interpreter(one_layer_tflite(tiny, name, width))
        assert list(loaded.get_output_details()[0]["shape"]) == shape
    assert list(load_interpreter(one_layer_tflite(tiny, "dw", 5)).get_input_details()[0]["shape"]) == [1, 4, 4, 5]


def test_width_sweep_times_each_distinct_width(tiny):
    rows = width_sweep(tiny, "grouped", [2, 4, 4, 6], rounds=1, block=2)
    assert [r.width for r in rows] == [2, 4, 6]
    assert [r.macs for r in rows] == [HAND_MACS["grouped"] // 6 * w for w in (2, 4, 6)]
    assert all(0 < r.median_ms <= r.p90_ms for r in rows)


def test_whole_model_latency(tiny):
    timed = model_latency(tiny, rounds=2, block=2)
    assert timed.n == 4 and 0 < timed.median_ms <= timed.p90_ms


@pytest.mark.parametrize("call, match", [
    (lambda m: layer_latency(m, ["nope"]), "layer_names: no layer 'nope'"),
    (lambda m: layer_latency(m, ["add"]), "layer_names: layer 'add' is a Add"),
    (lambda m: layer_latency(m, widths={"add": 3}), "widths: layer 'add' is not among the timed layers"),
    (lambda m: layer_latency(m, widths={"conv": 0}), r"widths\['conv'\]: 0; expected a channel count >= 1"),
    (lambda m: layer_latency(m, num_threads=0), "num_threads: 0"),
    (lambda m: width_sweep(m, "nope", [4]), "layer_name: no layer 'nope'"),
    (lambda m: width_sweep(m, "conv", [4, -1]), "widths: -1"),
    (lambda m: width_sweep(m, "conv", []), "widths: empty"),
    (lambda m: width_sweep(m, "conv", [4], num_threads=0), "num_threads: 0"),
    (lambda m: model_latency(m, num_threads=0), "num_threads: 0"),
    (lambda m: one_layer_tflite(m, "conv", 0), "width: 0"),
])
def test_bad_arguments_are_refused_by_name(tiny, call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny)


def test_costs_need_a_fixed_input_size():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="conv")(inputs))
    with pytest.raises(ValueError, match="layer conv: shape .* unknown axes"):
        layer_macs(model)
