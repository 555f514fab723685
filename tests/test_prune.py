"""holistic_lab.prune: channel groups on hand-made graphs, pruned models that keep their outputs and
convert to TFLite, exact pruning of zero-importance channels on real stages, plans, Taylor scores,
and hostile arguments.

The reference for "pruned correctly" is the unpruned model with the dropped slots' producing
weights set to zero: those channels are then zero everywhere they flow, so the pruned model must
give the same outputs (up to float rounding). The real stages (face_landmark: PReLU and the
BlazeBlock channel pad; hand_landmark_full: Dense heads after global pooling) run on real crops
of one cascade pass over the calibration frames; each is converted to TFLite once (~20 s each on
a 2-core CPU)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from holistic_lab.convert import keras_to_tflite, run_tflite, tflite_to_keras  # noqa: E402
from holistic_lab.convert.layers import DepthToSpace, StridedSlice, ZeroPad  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.prune import (channel_graph, importance, kept_channels, magnitude, plan_pruning,  # noqa: E402
                                prune_model, rounded_width, taylor)
from holistic_lab.prune.variant import check_prune_arguments  # noqa: E402

RELATIVE_TOLERANCE = 1e-5   # pruned vs zeroed model: float32 sums in another order, nothing more
TFLITE_TOLERANCE = 1e-4     # TFLite's kernels vs Keras's, relative to the output's largest value


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def outputs(model, x) -> list[np.ndarray]:
    result = model(x, training=False)
    return [np.asarray(y) for y in (result if isinstance(result, (list, tuple)) else [result])]


def zeroed_copy(graph, keep) -> keras.Model:
    """`graph.model` with every producing weight (kernel output slice, bias) of the slots not in
    `keep` set to zero: the model a correct pruning must reproduce exactly."""
    model = graph.model
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    for name, slots in keep.items():
        group = graph.group(name)
        dropped = np.setdiff1d(np.arange(group.size), slots)
        for layer in group.producers:
            channels = group.channels[layer][dropped].ravel()
            kernel, *rest = copy.get_layer(layer).get_weights()
            by_output = kernel.reshape(*kernel.shape[:2], -1) if graph.kinds[layer] == "DepthwiseConv2D" else kernel
            by_output[..., channels] = 0       # a view: kernel changes with it
            for bias in rest:
                bias[channels] = 0
            copy.get_layer(layer).set_weights([kernel, *rest])
    return copy


def rows(group, layer) -> list[list[int]]:
    return group.channels[layer].tolist()


# --- hand-made graphs -------------------------------------------------------------------------

def blaze_block() -> keras.Model:
    """Residual + BlazeBlock shortcut: max-pool, channel pad 8 -> 16, add to the strided branch."""
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    stem = keras.layers.PReLU(shared_axes=[1, 2], name="stem_act")(stem)
    branch = keras.layers.Conv2D(8, 1, name="pw1")(keras.layers.DepthwiseConv2D(3, padding="same", name="dw1")(stem))
    block = keras.layers.ReLU(name="relu1")(keras.layers.Add(name="add1")([stem, branch]))
    branch = keras.layers.DepthwiseConv2D(3, 2, padding="same", name="dw2")(block)
    branch = keras.layers.Conv2D(16, 1, name="pw2")(branch)
    shortcut = ZeroPad(((0, 0), (0, 0), (0, 8)), name="pad")(keras.layers.MaxPooling2D(2, name="pool")(block))
    block = keras.layers.ReLU(name="relu2")(keras.layers.Add(name="add2")([shortcut, branch]))
    return keras.Model(inputs, keras.layers.Conv2D(4, 1, name="head")(block))


def pad_both_sides() -> keras.Model:
    """A channel pad with zeros before and after: the input's channels sit at offset 4."""
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(8, 1, name="a")(inputs)
    b = keras.layers.Conv2D(16, 1, name="b")(a)
    added = keras.layers.Add(name="add")([ZeroPad(((0, 0), (0, 0), (4, 4)), name="pad")(a), b])
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(added))


def concatenation() -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    a, b = keras.layers.Conv2D(4, 1, name="a")(inputs), keras.layers.Conv2D(6, 3, padding="same", name="b")(inputs)
    joined = keras.layers.Concatenate(name="cat")([a, b])
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(joined))


def depthwise() -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 1, name="c")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw2")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))


def depth_to_space() -> keras.Model:
    inputs = keras.Input((4, 4, 3))
    x = DepthToSpace(2, name="d2s")(keras.layers.Conv2D(12, 1, name="c")(inputs))
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))


def flatten_dense(kind: str = "Reshape") -> keras.Model:
    """(2, 3, 4) -> 24 features in NHWC order -> Dense."""
    inputs = keras.Input((2, 3, 3))
    x = keras.layers.Conv2D(4, 1, name="c")(inputs)
    x = keras.layers.Reshape((24,), name="flat")(x) if kind == "Reshape" else keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(x))


def pass_through() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.MaxPooling2D(2, name="pool")(keras.layers.Conv2D(8, 1, name="c")(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ZeroPadding2D(1, name="zp")(x))
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def spatial_slice() -> keras.Model:
    """A StridedSlice of H and W only: the channels pass through it one to one."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, name="c")(inputs)
    x = StridedSlice([1, 1, 0], [7, 7, 0], [1, 1, 1], end_mask=0b100, name="crop")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))


def squeeze_excite() -> keras.Model:
    """A channel gate: pooled, squeezed, excited back to 8 channels, multiplied in (the gate's Dense
    joins the group of the channels it scales)."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.ReLU(name="relu")(keras.layers.Conv2D(8, 1, name="c")(inputs))
    gate = keras.layers.Dense(4, activation="relu", name="squeeze")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    gate = keras.layers.Dense(8, activation="sigmoid", name="excite")(gate)
    gate = keras.layers.Reshape((1, 1, 8), name="gate")(gate)
    x = keras.layers.Multiply(name="scale")([x, gate])
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))


def pointwise_dense() -> keras.Model:
    """Dense layers on a 4-D tensor: 1x1 convolutions by another name."""
    inputs = keras.Input((4, 4, 3))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.Dense(8, name="c")(inputs)))


def through(layer) -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    x = layer(keras.layers.Conv2D(8, 1, name="c")(inputs))
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(x))


UNSUPPORTED = {
    "softmax layer": (lambda: keras.layers.Softmax(name="mix"), "Softmax"),
    "softmax activation": (lambda: keras.layers.Activation("softmax", name="mix"), "softmax"),
    "softmax in a convolution": (lambda: keras.layers.Conv2D(8, 1, activation="softmax", name="mix"), "softmax"),
    "channel slice": (lambda: StridedSlice([0, 0, 2], [0, 0, 6], [1, 1, 1], begin_mask=0b011, end_mask=0b011,
                                           name="mix"),
                      "slice of the channel axis"),
    "lambda": (lambda: keras.layers.Lambda(lambda t: t * 2.0, name="mix"), "Lambda"),
}

PRUNABLE_GRAPHS = {"blaze_block": blaze_block, "pad_both_sides": pad_both_sides, "concatenation": concatenation,
                   "depthwise": depthwise, "depth_to_space": depth_to_space, "reshape_dense": flatten_dense,
                   "flatten_dense": lambda: flatten_dense("Flatten"), "pass_through": pass_through,
                   "spatial_slice": spatial_slice, "squeeze_excite": squeeze_excite, "pointwise_dense": pointwise_dense}


def test_residual_and_channel_pad_prefix_joins_upstream_tail_is_its_own_group():
    graph = channel_graph(blaze_block())
    stream = graph.group("stem")
    assert stream.prunable and stream.size == 8
    for layer in ("stem", "stem_act", "dw1", "pw1", "add1", "relu1", "dw2", "pool"):
        assert rows(stream, layer) == [[c] for c in range(8)], layer
    assert rows(stream, "pad") == [[c] for c in range(8)]         # the prefix: the upstream channels
    assert rows(stream, "pw2") == [[c] for c in range(8)]
    assert set(stream.producers) == {"stem", "dw1", "pw1", "dw2", "pw2"}
    tail = graph.group("pw2")
    assert tail.prunable and tail.producers == ("pw2",) and tail.consumers == ("head",)
    assert rows(tail, "pad") == [[c] for c in range(8, 16)]       # the padded zeros: their own group
    assert rows(tail, "add2") == rows(tail, "pw2") == [[c] for c in range(8, 16)]
    assert "stem_act" not in tail.channels and "dw2" not in tail.channels


def test_channel_pad_with_zeros_before_and_after():
    graph = channel_graph(pad_both_sides())
    assert rows(graph.group("a"), "pad") == [[c] for c in range(4, 12)]
    assert rows(graph.group("b"), "pad") == [[c] for c in [0, 1, 2, 3, 12, 13, 14, 15]]


def test_concatenation_offsets_the_second_input():
    graph = channel_graph(concatenation())
    assert rows(graph.group("a"), "cat") == [[c] for c in range(4)]
    assert rows(graph.group("b"), "cat") == [[c] for c in range(4, 10)]
    assert graph.group("b").consumers == ("head",)


def test_depthwise_multiplier_one_and_two():
    group = channel_graph(depthwise()).group("c")
    assert group.size == 4 and set(group.producers) == {"c", "dw1", "dw2"}
    assert rows(group, "dw1") == [[0], [1], [2], [3]]
    assert rows(group, "dw2") == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_depth_to_space_ties_block_squared_channels_per_slot():
    group = channel_graph(depth_to_space()).group("c")
    assert group.size == 3
    assert rows(group, "c") == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]]   # DCR order
    assert rows(group, "d2s") == [[0], [1], [2]]


@pytest.mark.parametrize("kind", ["Reshape", "Flatten"])
def test_flatten_to_dense_in_nhwc_order(kind):
    group = channel_graph(flatten_dense(kind)).group("c")
    assert group.size == 4 and group.consumers == ("head",)
    assert rows(group, "flat") == [[c + 4 * position for position in range(6)] for c in range(4)]


def test_a_channel_gate_ties_the_gate_to_the_channels_it_scales():
    group = channel_graph(squeeze_excite()).group("c")
    assert group.producers == ("c", "excite") and group.consumers == ("squeeze", "head")
    assert rows(group, "gate") == rows(group, "scale") == [[c] for c in range(8)]


def test_pooling_and_spatial_padding_pass_channels_through():
    group = channel_graph(pass_through()).group("c")
    assert group.layers == ("c", "pool", "zp", "gap") and group.consumers == ("head",) and group.prunable
    assert channel_graph(spatial_slice()).group("c").layers == ("c", "crop")


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_a_layer_it_does_not_understand_leaves_its_channels_unpruned(case):
    make_layer, named = UNSUPPORTED[case]
    model = through(make_layer())
    graph = channel_graph(model)
    group = graph.group("c")
    assert not group.prunable and named in group.reason and "mix" in group.reason
    assert not any(g.prunable for g in graph.groups)
    pruned = prune_model(graph, plan_pruning(graph, magnitude(graph), 0.5, round_to=1).keep)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    assert pruned.count_params() == model.count_params()
    np.testing.assert_array_equal(outputs(pruned, x)[0], outputs(model, x)[0])


def test_outputs_protected_by_default_prunable_on_request():
    model = concatenation()
    head = channel_graph(model).group("head")
    assert not head.prunable and "model output" in head.reason
    graph = channel_graph(model, protect_outputs=False)
    assert graph.group("head").prunable
    with pytest.raises(ValueError, match="output shapes"):   # a narrower output is refused, not returned
        prune_model(graph, {"head": [0, 2]})


# --- pruned hand-made models: same outputs as the zeroed model, and the same in TFLite ---------

@pytest.mark.parametrize("case", list(PRUNABLE_GRAPHS))
def test_pruned_graph_equals_zeroed_model_and_converts_to_tflite(case):
    model = PRUNABLE_GRAPHS[case]()
    graph = channel_graph(model)
    plan = plan_pruning(graph, magnitude(graph), 0.5, round_to=1)
    assert plan.keep and all(len(slots) < graph.group(name).size for name, slots in plan.keep.items())
    pruned = prune_model(graph, plan.keep)
    assert pruned.output_shape == model.output_shape
    assert pruned.count_params() < model.count_params()
    x = np.random.default_rng(1).normal(size=(3, *model.input_shape[1:])).astype(np.float32)
    expected = outputs(zeroed_copy(graph, plan.keep), x)[0]
    got = outputs(pruned, x)[0]
    assert relative_error(got, expected) < RELATIVE_TOLERANCE
    assert relative_error(got, outputs(model, x)[0]) > 1e-3      # something was really pruned
    interpreted = run_tflite(keras_to_tflite(pruned), x)[0]
    assert interpreted.shape == got.shape and relative_error(interpreted, got) < TFLITE_TOLERANCE


def test_kept_channels_of_a_pruned_pad_and_depth_to_space():
    graph = channel_graph(blaze_block())
    kept = kept_channels(graph, {"stem": [1, 5], "pw2": [0, 7]})
    assert kept["pad"].tolist() == [1, 5, 8, 15] and kept["add2"].tolist() == [1, 5, 8, 15]
    assert kept["stem_act"].tolist() == [1, 5] and kept["head"].tolist() == [0, 1, 2, 3]
    pruned = prune_model(graph, {"stem": [1, 5], "pw2": [0, 7]})
    assert pruned.get_layer("pad").paddings[-1] == (0, 2)
    graph = channel_graph(depth_to_space())
    assert kept_channels(graph, {"c": [0, 2]})["c"].tolist() == [0, 2, 3, 5, 6, 8, 9, 11]


# --- real stages: zero-importance slots pruned -> the same outputs, in Keras and in TFLite ------

@pytest.fixture(scope="module")
def real_crops(fixtures) -> dict[str, np.ndarray]:
    from holistic_lab.quantize.calibration import calibration_crops, default_calibration_frames

    return calibration_crops(default_calibration_frames(), ["face_landmark", "hand_landmark"], limit=4, progress=False)


@pytest.mark.parametrize("model_name, stage", [("face_landmark", "face_landmark"),
                                               ("hand_landmark_full", "hand_landmark")])
def test_zero_importance_slots_of_a_real_stage_prune_exactly(real_crops, model_name, stage):
    model = tflite_to_keras(model_path(model_name))
    graph = channel_graph(model)
    chosen = {group.name: np.arange(0, group.size, 4) for group in graph.prunable}   # a quarter of each group
    zeroed = zeroed_copy(graph, {name: np.setdiff1d(np.arange(graph.group(name).size), slots)
                                 for name, slots in chosen.items()})
    zeroed_graph = channel_graph(zeroed)
    scores = importance(zeroed_graph, "l1")
    for name, slots in chosen.items():   # ranked lowest (with any slot the model itself never reads)
        assert np.all(scores[name][slots] == 0), name
    keep = {name: np.flatnonzero(values > 0) for name, values in scores.items()}   # every zero-score slot goes
    assert all(np.intersect1d(keep[name], slots).size == 0 for name, slots in chosen.items())
    pruned = prune_model(zeroed_graph, keep)
    assert pruned.output_shape == model.output_shape
    assert pruned.count_params() < 0.8 * model.count_params()
    crops = real_crops[stage]
    expected, got = outputs(zeroed, crops), outputs(pruned, crops)
    for index, (a, b) in enumerate(zip(got, expected)):
        assert relative_error(a, b) < RELATIVE_TOLERANCE, f"output {index}"
    interpreted = run_tflite(keras_to_tflite(pruned), crops)
    for index, (a, b) in enumerate(zip(interpreted, got)):
        assert a.shape == b.shape and relative_error(a, b) < TFLITE_TOLERANCE, f"TFLite output {index}"


def test_slots_the_shipped_hand_model_never_reads_prune_for_free(real_crops):
    """hand_landmark_full: 2164 of its 9384 prunable slots (about 40% of each of the last four
    expansion layers) have no weight reading them (or none making them), so their L1 score is
    exactly zero and removing them (30% of the parameters) changes nothing."""
    model = tflite_to_keras(model_path("hand_landmark_full"))
    graph = channel_graph(model)
    scores = magnitude(graph)
    keep = {name: np.flatnonzero(values > 0) for name, values in scores.items()}
    dead = sum(len(values) - len(keep[name]) for name, values in scores.items())
    assert dead > 0.2 * sum(len(values) for values in scores.values())     # 2164 of 9384
    pruned = prune_model(graph, keep)
    assert pruned.count_params() < 0.75 * model.count_params()
    for index, (a, b) in enumerate(zip(outputs(pruned, real_crops["hand_landmark"]),
                                       outputs(model, real_crops["hand_landmark"]))):
        assert relative_error(a, b) < RELATIVE_TOLERANCE, f"output {index}"


# --- plans -----------------------------------------------------------------------------------

def two_groups(size_a: int = 64, size_b: int = 32) -> keras.Model:
    inputs = keras.Input((4, 4, 3))
    a = keras.layers.Conv2D(size_a, 1, name="a")(inputs)
    b = keras.layers.Conv2D(size_b, 1, name="b")(a)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(b))


def test_rounded_width():
    assert rounded_width(48, 48 * 0.7, 16) == 32
    assert rounded_width(48, 40, 16) == 48           # nearest multiple, never above the group
    assert rounded_width(64, 3, 16) == 16            # never below one tile
    assert rounded_width(10, 7, 16) == 10            # a group smaller than a tile stays whole
    assert rounded_width(48, 33.6, 1) == 34          # round_to=1: the target itself


def test_plan_keeps_the_highest_scores_at_rounded_widths():
    graph = channel_graph(two_groups())
    rng = np.random.default_rng(2)
    scores = {"a": rng.uniform(size=64), "b": rng.uniform(size=32)}
    plan = plan_pruning(graph, scores, 0.3)
    assert {name: len(slots) for name, slots in plan.keep.items()} == {"a": 48, "b": 16}
    assert all(len(slots) % 16 == 0 for slots in plan.keep.values())
    assert plan.keep["a"].tolist() == sorted(np.argsort(-scores["a"])[:48].tolist())
    exact = plan_pruning(graph, scores, 0.3, round_to=1)
    assert {name: len(slots) for name, slots in exact.keep.items()} == {"a": 45, "b": 22}
    assert plan_pruning(graph, scores, 0.0).slots_kept == 96
    assert {name: len(slots) for name, slots in plan_pruning(graph, scores, 0.99).keep.items()} == {"a": 16, "b": 16}


def test_global_allocation_takes_more_from_groups_with_unimportant_slots():
    graph = channel_graph(two_groups(32, 32))
    rng = np.random.default_rng(3)
    uneven = np.where(np.arange(32) % 2 == 0, 0.01, 2.0) * rng.uniform(0.9, 1.1, 32)
    even = rng.uniform(0.9, 1.1, 32)
    plan = plan_pruning(graph, {"a": uneven, "b": even}, 0.3, round_to=1, allocation="global")
    removed = {name: 32 - len(slots) for name, slots in plan.keep.items()}
    assert removed["a"] == 16 and removed["b"] == 3 and sum(removed.values()) == round(64 * 0.3)
    assert set(plan.keep["a"].tolist()) == set(range(1, 32, 2))
    tied = plan_pruning(graph, {"a": np.ones(32), "b": np.ones(32)}, 0.25, round_to=1, allocation="global")
    assert tied.slots_kept == 48                     # equal scores: exactly the fraction asked


def test_original_sizes_count_sparsity_from_before_the_first_step():
    graph = channel_graph(two_groups(48, 32))
    scores = {"a": np.linspace(1, 2, 48), "b": np.linspace(1, 2, 32)}
    step = plan_pruning(graph, scores, 0.25, original_sizes={"a": 64, "b": 32})
    assert len(step.keep["a"]) == 48                 # 64 * 0.75: already there
    assert len(plan_pruning(graph, scores, 0.25).keep["a"]) == 32    # 48 * 0.75 = 36 -> 32
    global_step = plan_pruning(graph, scores, 0.25, round_to=1, allocation="global",
                               original_sizes={"a": 64, "b": 32})
    assert global_step.slots_kept == 72              # 96 * 0.75, of which 16 went in an earlier step


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, float("nan"), True, "0.3", None])
def test_bad_sparsity_refused_by_name(sparsity):
    graph = channel_graph(two_groups())
    with pytest.raises(ValueError, match="sparsity"):
        plan_pruning(graph, magnitude(graph), sparsity)


def test_bad_plan_arguments_refused_by_name():
    graph = channel_graph(two_groups())
    scores = magnitude(graph)
    assert plan_pruning(graph, scores, np.float32(0.25)).sparsity == 0.25
    with pytest.raises(ValueError, match="round_to"):
        plan_pruning(graph, scores, 0.3, round_to=0)
    with pytest.raises(ValueError, match="round_to"):
        plan_pruning(graph, scores, 0.3, round_to=2.5)
    with pytest.raises(ValueError, match="allocation"):
        plan_pruning(graph, scores, 0.3, allocation="greedy")
    with pytest.raises(ValueError, match="criterion"):
        importance(graph, "gamma")
    with pytest.raises(ValueError, match=r"scores\['a'\]: expected 64"):
        plan_pruning(graph, {**scores, "a": np.ones(63)}, 0.3)
    with pytest.raises(ValueError, match=r"scores\['b'\]: expected 32"):
        plan_pruning(graph, {**scores, "b": np.ones((32, 1))}, 0.3)
    with pytest.raises(ValueError, match=r"scores: no scores for groups \['b'\]"):
        plan_pruning(graph, {"a": scores["a"]}, 0.3)
    with pytest.raises(ValueError, match=r"scores\['a'\]: expected finite"):
        plan_pruning(graph, {**scores, "a": np.full(64, np.nan)}, 0.3)
    with pytest.raises(ValueError, match="p must be"):
        magnitude(graph, p=3)


def test_check_prune_arguments():
    check_prune_arguments("face_landmark", 0.3, "l1", 16, 3, 0)
    for arguments, named in [(("faces", 0.3, "l1", 16, 1, 0), "stage"),
                             (("face_landmark", 1.0, "l1", 16, 1, 0), "sparsity"),
                             (("face_landmark", 0.3, "gamma", 16, 1, 0), "criterion"),
                             (("face_landmark", 0.3, "l1", 0, 1, 0), "round_to"),
                             (("face_landmark", 0.3, "l1", 16, 0, 0), "steps"),
                             (("face_landmark", 0.3, "l1", 16, True, 0), "steps"),
                             (("face_landmark", 0.3, "l1", 16, 1, -1), "recover_epochs")]:
        with pytest.raises(ValueError, match=named):
            check_prune_arguments(*arguments)
    with pytest.raises(ValueError, match="allocation"):
        check_prune_arguments("face_landmark", 0.3, "l1", 16, 1, 0, allocation="greedy")


def test_prune_stage_in_steps_reaches_the_one_step_widths():
    from holistic_lab.prune import prune_stage

    model = two_groups(64, 32)
    stepped = prune_stage(model, 0.5, round_to=1, steps=2, progress=False)
    once = prune_stage(model, 0.5, round_to=1, progress=False)
    assert [round(record["target_sparsity"], 2) for record in stepped.history] == [0.25, 0.5]
    assert [round(record["slot_sparsity"], 2) for record in stepped.history] == [0.25, 0.5]
    assert {name: len(slots) for name, slots in stepped.plan.keep.items()} == {"a": 32, "b": 16}
    assert stepped.plan.achieved_sparsity == pytest.approx(0.5)   # counted from the unpruned sizes, not step 2's
    assert stepped.model.count_params() == once.model.count_params() < model.count_params()
    assert model.get_layer("a").get_weights()[0].shape[-1] == 64       # the unpruned model is not changed
    for criterion, recover_epochs in (("taylor", 0), ("l1", 1)):
        with pytest.raises(ValueError, match="crops"):
            prune_stage(model, 0.3, criterion=criterion, recover_epochs=recover_epochs, progress=False)


# --- Taylor ----------------------------------------------------------------------------------

def taylor_model() -> keras.Model:
    """Slot 0 reaches no output (its consumer weights are zero); slot 2 is slot 1 read 10x harder."""
    inputs = keras.Input((4, 4, 3))
    hidden = keras.layers.Conv2D(3, 1, name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(hidden))
    rng = np.random.default_rng(4)
    kernel = np.repeat(rng.normal(size=(1, 1, 3, 1)), 3, axis=-1).astype(np.float32)
    model.get_layer("h").set_weights([kernel, np.full(3, 0.5, np.float32)])
    reads = rng.normal(size=(1, 1, 1, 2)).astype(np.float32)
    head = np.concatenate([np.zeros_like(reads), reads, 10 * reads], axis=2)
    model.get_layer("head").set_weights([head, np.zeros(2, np.float32)])
    return model


def test_taylor_scores_what_reaches_the_outputs():
    graph = channel_graph(taylor_model())
    crops = np.random.default_rng(5).normal(size=(4, 4, 4, 3)).astype(np.float32)
    scores = taylor(graph, crops)["h"]
    assert scores[0] == 0 and scores[2] > 10 * scores[1] > 0
    assert np.array_equal(importance(graph, "taylor", crops)["h"], scores)
    graph.model.get_layer("h").trainable = False     # a frozen layer is scored all the same
    assert np.allclose(taylor(graph, crops)["h"], scores)


@pytest.mark.parametrize("shape", [(4, 4, 5, 3), (4, 4, 4), (1, 4, 4, 3), (4, 4, 4, 1)])
def test_taylor_refuses_crops_of_the_wrong_shape(shape):
    graph = channel_graph(taylor_model())
    with pytest.raises(ValueError, match="crops"):
        taylor(graph, np.zeros(shape, np.float32))


def test_taylor_needs_crops():
    graph = channel_graph(taylor_model())
    with pytest.raises(ValueError, match="crops"):
        importance(graph, "taylor")


# --- hostile ---------------------------------------------------------------------------------

def shared_layer_model() -> keras.Model:
    inputs = keras.Input((6, 6, 3))
    first = keras.layers.Conv2D(8, 1, name="first")(inputs)
    shared = keras.layers.Conv2D(8, 1, name="shared")
    joined = keras.layers.Add(name="join")([shared(first), shared(keras.layers.ReLU(name="relu")(first))])
    wide = keras.layers.Conv2D(16, 1, name="wide")(joined)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="head")(wide))


def test_a_shared_layer_is_left_whole_and_the_rest_prunes_exactly():
    graph = channel_graph(shared_layer_model())
    assert "shared" in graph.group("shared").reason and not graph.group("shared").prunable
    assert not graph.group("first").prunable and "shared" in graph.group("first").reason
    assert [group.name for group in graph.prunable] == ["wide"]
    keep = {"wide": np.arange(0, 16, 2)}
    pruned = prune_model(graph, keep)
    x = np.random.default_rng(6).normal(size=(2, 6, 6, 3)).astype(np.float32)
    assert relative_error(outputs(pruned, x)[0], outputs(zeroed_copy(graph, keep), x)[0]) < RELATIVE_TOLERANCE
    with pytest.raises(ValueError, match="not prunable"):
        prune_model(graph, {"shared": [0, 1]})


def test_channels_first_layers_are_left_whole():
    inputs = keras.Input((3, 6, 10))     # the last axis is W here, not channels
    hidden = keras.layers.Conv2D(8, 1, data_format="channels_first", name="h")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1, data_format="channels_first", name="o")(hidden))
    graph = channel_graph(model, protect_outputs=False)
    assert not graph.prunable and "channels_first" in graph.group("h").reason
    pruned = prune_model(graph, plan_pruning(graph, magnitude(graph), 0.5).keep)
    assert all(np.array_equal(a, b) for a, b in itertools.zip_longest(pruned.get_weights(), model.get_weights()))


def test_a_nested_model_is_left_whole_and_the_rest_prunes_exactly():
    inner_inputs = keras.Input((6, 6, 8))
    inner = keras.Model(inner_inputs, keras.layers.Conv2D(8, 1, name="inner_conv")(inner_inputs), name="inner")
    inputs = keras.Input((6, 6, 3))
    wide = keras.layers.Conv2D(16, 1, name="wide")(inner(keras.layers.Conv2D(8, 1, name="a")(inputs)))
    graph = channel_graph(keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(wide)))
    assert [group.name for group in graph.prunable] == ["wide"] and "Functional" in graph.group("inner").reason
    keep = {"wide": np.arange(0, 16, 2)}
    x = np.random.default_rng(7).normal(size=(2, 6, 6, 3)).astype(np.float32)
    expected = outputs(zeroed_copy(graph, keep), x)[0]
    assert relative_error(outputs(prune_model(graph, keep), x)[0], expected) < RELATIVE_TOLERANCE


def test_taylor_refuses_a_model_with_two_inputs():
    first, second = keras.Input((6, 6, 3)), keras.Input((6, 6, 3))
    joined = keras.layers.Add(name="join")([keras.layers.Conv2D(8, 1, name="a")(first),
                                            keras.layers.Conv2D(8, 1, name="b")(second)])
    wide = keras.layers.Conv2D(16, 1, name="wide")(joined)
    graph = channel_graph(keras.Model([first, second], keras.layers.Conv2D(2, 1, name="head")(wide)))
    assert [group.name for group in graph.prunable] == ["a", "wide"]     # a and b: one group, through the add
    with pytest.raises(ValueError, match="2 inputs"):
        taylor(graph, np.zeros((2, 6, 6, 3), np.float32))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


def test_models_that_are_not_functional_are_refused():
    sequential = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(8, 1), keras.layers.Conv2D(2, 1)])
    with pytest.raises(ValueError, match="Sequential"):
        channel_graph(sequential)
    functional = keras.Model(sequential.inputs, sequential.outputs)   # the twin the message names
    assert len(channel_graph(functional).prunable) == 1
    subclassed = Subclassed()
    subclassed(np.zeros((1, 4), np.float32))
    for not_functional in (subclassed, "model.keras", keras.layers.Dense(3), None):
        with pytest.raises(ValueError, match="model"):
            channel_graph(not_functional)


@pytest.mark.parametrize("slots", [[0, 0, 1], [0, 64], [-1, 2], [], [[0, 1]], [0.5, 1.7], [True, False] * 32])
def test_bad_kept_slots_refused(slots):
    graph = channel_graph(two_groups())
    with pytest.raises(ValueError, match="group a: kept slots"):
        prune_model(graph, {"a": slots})


def test_keep_for_an_unprunable_or_unknown_group_refused():
    graph = channel_graph(two_groups())
    with pytest.raises(ValueError, match="group head: not prunable"):
        prune_model(graph, {"head": [0]})
    with pytest.raises(ValueError, match="no channel group named 'nope'"):
        prune_model(graph, {"nope": [0]})
    whole = prune_model(graph, {"head": [0, 1], "a": np.arange(64)})   # keeping everything is no change
    assert whole.count_params() == graph.model.count_params()


def test_pruning_leaves_the_original_model_alone():
    model = blaze_block()
    before = [w.copy() for w in model.get_weights()]
    graph = channel_graph(model)
    prune_model(graph, plan_pruning(graph, magnitude(graph), 0.5, round_to=1).keep)
    assert all(np.array_equal(a, b) for a, b in itertools.zip_longest(before, model.get_weights()))


def test_an_activation_not_known_to_be_elementwise_is_not_guessed():
    """glu halves the channels: its channels, and those it reads, stay unpruned with the reason."""
    image = keras.Input((8, 8, 4))
    made = keras.layers.Conv2D(8, 1, name="made")(image)
    gated = keras.layers.Activation("glu", name="gated")(made)
    out = keras.layers.Conv2D(2, 1, name="out")(gated)
    graph = channel_graph(keras.Model(image, out))
    assert not graph.prunable
    assert "glu" in graph.group("made").reason
