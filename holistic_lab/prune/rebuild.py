"""A smaller Keras model with the kept channels' weights sliced out of the original's.

    small = prune_model(graph, keep={"conv2d_4": [0, 2, 5, ...], ...})   # slots kept per group

Each layer's kept output channels follow from the slots kept in every group that touches it;
its config is rewritten for the new width (Conv2D filters, Dense units, the channel PAD's
tail, a flattening reshape's size), the model is rebuilt from that config, and
each weight is the original's sliced on its input and output channel axes. Groups not named in
`keep` keep every slot. The pruned model has the original's inputs, outputs, names and output
shapes (checked).
"""
from __future__ import annotations

import copy

import keras
import numpy as np

from .groups import ChannelGraph


def kept_channels(graph: ChannelGraph, keep: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """layer -> the indices of its output channels that stay, in order."""
    removed: dict[str, set[int]] = {name: set() for name in graph.order}
    for group_name, slots in keep.items():
        group = graph.group(group_name)
        if np.asarray(slots).size and np.asarray(slots).dtype.kind not in "iu":   # a mask or floats, not indices
            raise ValueError(f"group {group_name}: kept slots must be whole-number slot indices, "
                             f"got {np.asarray(slots).dtype} values")
        slots = np.asarray(slots, dtype=int)
        if not group.prunable and len(slots) != group.size:
            raise ValueError(f"group {group_name}: not prunable ({group.reason})")
        if slots.ndim != 1 or len(slots) == 0 or len(set(slots.tolist())) != len(slots) or \
                slots.min() < 0 or slots.max() >= group.size:
            raise ValueError(f"group {group_name}: kept slots must be 1 to {group.size} distinct indices in "
                             f"[0, {group.size}), got {slots.tolist()[:8]}{'...' if len(slots) > 8 else ''}")
        dropped = np.setdiff1d(np.arange(group.size), slots)
        for layer, rows in group.channels.items():
            removed[layer].update(rows[dropped].ravel().tolist())
    return {name: np.setdiff1d(np.arange(graph.widths[name]), sorted(removed[name])) for name in graph.order}


def prune_model(graph: ChannelGraph, keep: dict[str, np.ndarray], name: str | None = None) -> keras.Model:
    """The model of `graph` with only the slots in `keep` (group name -> kept slot indices)."""
    kept = kept_channels(graph, keep)
    model = graph.model
    serialized = copy.deepcopy(keras.saving.serialize_keras_object(model))
    for key in ("build_config", "compile_config"):
        serialized.pop(key, None)
    config = serialized["config"]
    if name:
        config["name"] = name
    for layer_config in config["layers"]:
        layer_config.pop("build_config", None)    # built again on its new input when the model is rebuilt
        _resize(graph, layer_config, kept)
    # The config is the live model's own, so a Lambda's function is code already running here; safe
    # mode (it guards loading files) would only refuse to rebuild a model with a Lambda anywhere.
    pruned = keras.saving.deserialize_keras_object(serialized, safe_mode=False)
    for layer_name in graph.order:
        weights = model.get_layer(layer_name).get_weights()
        if weights:
            pruned.get_layer(layer_name).set_weights(_sliced(graph, layer_name, weights, kept))
    original_shapes = [tuple(shape) for shape in _as_list(model.output_shape)]
    pruned_shapes = [tuple(shape) for shape in _as_list(pruned.output_shape)]
    if original_shapes != pruned_shapes:
        raise ValueError(f"pruning changed the output shapes {original_shapes} -> {pruned_shapes}; "
                         "protect the outputs (protect_outputs=True)")
    return pruned


def _as_list(shape) -> list:
    return shape if isinstance(shape, list) else [shape]


def _resize(graph: ChannelGraph, layer_config: dict, kept: dict[str, np.ndarray]) -> None:
    """Rewrite one layer's config for its kept channels."""
    name, settings = layer_config["name"], layer_config["config"]
    kind, width = graph.kinds[name], len(kept[name])
    if width == graph.widths[name]:
        return      # left alone: its config is right as it is, even where its channels are not the last axis
    if kind == "Conv2D":
        settings["filters"] = width
    elif kind == "Dense":
        settings["units"] = width
    elif kind == "ZeroPad":
        parent = graph.parents[name][0]
        before, _ = settings["paddings"][-1]
        in_width = graph.widths[parent]
        channels = kept[name]
        settings["paddings"][-1] = [int(np.sum(channels < before)), int(np.sum(channels >= before + in_width))]
    elif kind == "Reshape":
        target = list(settings["target_shape"])
        if len(target) == 1:                       # NHWC flattening
            settings["target_shape"] = [width]
        else:
            settings["target_shape"] = target[:-1] + [width]


def _sliced(graph: ChannelGraph, name: str, weights: list[np.ndarray], kept: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One layer's weights on its kept input and output channels."""
    kind = graph.kinds[name]
    parents = graph.parents[name]
    # whole axes stay whole: a layer the pruner left alone keeps its weights as they are, whatever its axes
    out = _changed(graph, name, kept)
    into = _changed(graph, parents[0], kept) if parents else slice(None)
    if kind == "Conv2D":
        return [weights[0][:, :, into][..., out], *(bias[out] for bias in weights[1:])]
    if kind == "Dense":
        return [weights[0][into][:, out], *(bias[out] for bias in weights[1:])]
    if kind == "DepthwiseConv2D":
        return [weights[0][:, :, into, :], *(bias[out] for bias in weights[1:])]
    if kind == "PReLU":
        return [alpha[..., out] if alpha.shape[-1] == graph.widths[name] else alpha for alpha in weights]
    if kind == "BatchNormalization":
        return [vector[out] for vector in weights]
    if not (isinstance(out, slice) and isinstance(into, slice)):
        raise ValueError(f"layer {name} ({kind}) has weights the pruner does not know how to slice")
    return weights


def _changed(graph: ChannelGraph, name: str, kept: dict[str, np.ndarray]):
    """The kept channel indices of `name`'s output, or a whole slice when it keeps all of them."""
    return slice(None) if len(kept[name]) == graph.widths[name] else kept[name]
