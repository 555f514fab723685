"""How much each slot of each channel group matters: weight magnitude or a first-order Taylor score.

    scores = magnitude(graph, p=1)            # group name -> one score per slot
    scores = taylor(graph, crops)             # the same, from gradients on real crops

Magnitude (L1 or L2) multiplies how strongly a slot is made (the norms of the producers' weights
that make its channels: kernel slice and bias) by how strongly it is read (the norms of the
consumers' weights that read them), as a channel's effect is its size times the weights reading
it: a channel whose producing weights are zero is zero whatever reads it, and scores zero (a sum
would rank it above live channels with small weights). Batch norm is folded into every shipped
convolution, so layers' weight scales differ by orders of magnitude: each layer's norms are
divided by their mean over the group's slots and averaged with the other layers on its side, so
every layer has one vote. (The common recipe, ranking channels by
their BatchNorm gamma, does not apply: no gamma survives the folding.)

Taylor estimates how much the outputs move when a slot is removed: zeroing the slot's channels
is scaling each producer's output channel by m = 0, whose first-order effect on a scalar of the
outputs is -sum over producers of dL/dm, and dL/dm = sum(w * dL/dw) over the channel's kernel
slice and bias (so plain weight gradients give it). With L = r . y for a random Gaussian r the
square of that is, in expectation over r, the squared output change |J v|^2 (Hutchinson's
trick), averaged over crops; each output is divided by its spread over the crops and its size,
so a 256 x 256 segmentation map counts as much as 39 landmarks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..progress import progress_bar

if TYPE_CHECKING:
    from .groups import ChannelGraph, ChannelGroup

CRITERIA = ("l1", "l2", "taylor")
MIN_SPREAD = 1e-3   # an output's spread over the crops is floored here (as recover floors the teacher's variance)


def magnitude(graph: ChannelGraph, p: int = 1) -> dict[str, np.ndarray]:
    """group -> per-slot score: the L`p` norms of producing times consuming weights, per layer normalised."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (L1) or 2 (L2), got {p!r}")
    scores = {}
    for group in graph.prunable:
        pairs = _weighted_layers(graph, group)
        made = [_layer_norms(graph, group, layer, p, None) for layer, reads in pairs if reads is None]
        read = [_layer_norms(graph, group, layer, p, reads) for layer, reads in pairs if reads is not None]
        scores[group.name] = _normalised_mean(made, group.size) * _normalised_mean(read, group.size)
    return scores


def _weighted_layers(graph: ChannelGraph, group: ChannelGroup) -> list[tuple[str, str | None]]:
    """(layer, None) for each producer; (consumer, the group layer it reads) for each consumer."""
    pairs = [(layer, None) for layer in group.producers]
    for consumer in group.consumers:
        pairs += [(consumer, parent) for parent in graph.parents[consumer] if parent in group.channels]
    return pairs


def _channel_weights(graph: ChannelGraph, layer: str, reads: str | None) -> list[np.ndarray]:
    """A layer's weights with the channel axis of interest last: output channels (`reads` None)
    or the input channels it reads from `reads`."""
    kind = graph.kinds[layer]
    weights = graph.model.get_layer(layer).get_weights()
    kernel = weights[0]
    if reads is not None:   # a consumer: its input channels
        return [np.moveaxis(kernel, -2, -1)] if kind == "Conv2D" else [kernel.T]
    if kind == "DepthwiseConv2D":
        kernel = kernel.reshape(*kernel.shape[:2], -1)
    return [kernel, *weights[1:]]


def _layer_norms(graph: ChannelGraph, group: ChannelGroup, layer: str, p: int, reads: str | None) -> np.ndarray:
    weights = _channel_weights(graph, layer, reads)
    per_channel = sum(np.sum(np.abs(w.reshape(-1, w.shape[-1])) ** p, axis=0) for w in weights)
    rows = group.channels[reads or layer]
    return per_channel[rows].sum(axis=1) ** (1.0 / p)


def _normalised_mean(votes: list[np.ndarray], size: int) -> np.ndarray:
    """The votes, each divided by its mean, averaged; all ones when there is none (e.g. no consumer)."""
    if not votes:
        return np.ones(size)
    total = np.zeros(size)
    for vote in votes:
        mean = float(np.mean(vote))
        total += vote / mean if mean > 0 else vote
    return total / len(votes)


def taylor(graph: ChannelGraph, crops: np.ndarray, seed: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """group -> per-slot mean squared first-order output change when the slot is removed (module docstring)."""
    import tensorflow as tf

    model = graph.model
    if isinstance(model.input_shape, list):
        raise ValueError(f"model {model.name!r} has {len(model.input_shape)} inputs; Taylor scores take crops "
                         "for a model with one input")
    crops = np.asarray(crops, np.float32)
    expected = tuple(model.input_shape[1:])
    if crops.ndim != 4 or crops.shape[1:] != expected or len(crops) < 2:
        raise ValueError(f"crops: expected at least 2 model inputs of shape (N, {', '.join(map(str, expected))}), "
                         f"got {crops.shape}")
    producers = sorted({layer for group in graph.prunable for layer in group.producers}, key=graph.order.index)
    variables = {layer: model.get_layer(layer).weights for layer in producers}   # frozen layers' too
    flat = [v for layer in producers for v in variables[layer]]
    outputs = _as_list(model.predict(crops, batch_size=16, verbose=0))   # in batches: 256 pose crops at once take GBs
    scales = [max(float(np.std(y)), MIN_SPREAD) * np.sqrt(y[0].size) for y in outputs]   # a constant output: no blow-up
    rng = np.random.default_rng(seed)

    @tf.function(reduce_retracing=True)
    def gradients(crop, projections):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in flat])
            ys = _as_list(model(crop, training=False))
            loss = tf.add_n([tf.reduce_sum(y * r) / s for y, r, s in zip(ys, projections, scales)])
        return tape.gradient(loss, [v.value for v in flat], unconnected_gradients=tf.UnconnectedGradients.ZERO)

    totals = {group.name: np.zeros(group.size) for group in graph.prunable}
    for crop in progress_bar(crops, "Taylor scores", enabled=progress):
        projections = [rng.standard_normal((1, *y.shape[1:])).astype(np.float32) for y in outputs]
        grads = iter(g.numpy() for g in gradients(crop[None], projections))
        derivative = {}
        for layer in producers:   # d loss / d (scale of each output channel) = sum of weight * gradient
            pieces = [w.numpy() * next(grads) for w in variables[layer]]
            derivative[layer] = sum(_per_output_channel(graph, layer, piece) for piece in pieces)
        for group in graph.prunable:
            change = sum(derivative[layer][group.channels[layer]].sum(axis=1) for layer in group.producers)
            totals[group.name] += np.square(change)
    return {name: total / len(crops) for name, total in totals.items()}


def _per_output_channel(graph: ChannelGraph, layer: str, piece: np.ndarray) -> np.ndarray:
    if piece.ndim == 1:
        return piece
    if graph.kinds[layer] == "DepthwiseConv2D":
        piece = piece.reshape(*piece.shape[:2], -1)
    return piece.reshape(-1, piece.shape[-1]).sum(axis=0)


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def importance(graph: ChannelGraph, criterion: str, crops: np.ndarray | None = None,
               progress: bool = False) -> dict[str, np.ndarray]:
    """Scores by `criterion` ('l1', 'l2' or 'taylor'; Taylor needs `crops`)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: unknown {criterion!r}; expected one of {', '.join(CRITERIA)}")
    if criterion == "taylor":
        if crops is None:
            raise ValueError("criterion 'taylor' needs crops (real model inputs) to take gradients on")
        return taylor(graph, crops, progress=progress)
    return magnitude(graph, p=1 if criterion == "l1" else 2)
