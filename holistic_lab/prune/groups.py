"""Dependency groups: which channels of a functional Keras model can only be pruned together.

Removing output channel c of a convolution also removes channel c of every tensor that is tied
to it: through an element-wise op (ADD, PReLU, ReLU, DepthwiseConv2D with in = out, pooling,
resizing, padding of H and W), through a CONCATENATION (at an offset), through the BlazeBlock
shortcut's channel PAD (the input's channels are the prefix of the output's; the padded tail is
zeros of its own), through DEPTH_TO_SPACE (block^2 input channels per output channel) and through
a RESHAPE that flattens NHWC for a Dense layer (one feature per position per channel).

The graph is read from `model.get_config()`'s inbound nodes (as `convert.layer_groups` reads it),
so this works on any functional model, converted or loaded from `.keras`. Every channel of every
layer output is a node of a union-find; the rules above join nodes. A connected component is one
*slot*: the channel indices it removes from each tensor it touches. Slots that touch the same
tensors the same number of times form a `ChannelGroup` (e.g. "the 48 channels of the residual
stream of stage 3", "the 192 expansion channels of block 7"); pruning keeps some slots of a group.

A layer this file does not understand makes every channel it reads or writes unprunable, never
guessed as element-wise; the model's inputs, and by default its outputs, are never pruned.
No maintained library does this for Keras 3 graphs (see chapter 07's notebook), hence by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from ..convert.groups import inbound_layer_names, layer_entries

# layers that weigh channels: they make (output) or read (input) channels with their own weights
WEIGHTED = ("Conv2D", "Dense", "DepthwiseConv2D")
# one output channel per input channel, same index, whatever happens over H and W
ELEMENTWISE = {"PReLU", "ReLU", "LeakyReLU", "ELU", "BatchNormalization", "Dropout", "Identity",
               "ZeroPadding2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
               "UpSampling2D", "ResizeBilinear"}
# every input and the output share channels one to one
MERGING = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
# activations known to act on each value alone; any other (softmax, glu, sparsemax, ...) may mix or
# change channels, so its layer is not understood rather than guessed element-wise
ELEMENTWISE_ACTIVATIONS = {"linear", "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish",
                           "hard_silu", "hard_swish", "mish", "sigmoid", "hard_sigmoid", "log_sigmoid", "tanh",
                           "hard_tanh", "softplus", "softsign", "exponential"}


@dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned together. `channels[layer]` has one row per slot: the channel indices
    of that layer's output the slot removes (one index per row, block^2 or H*W for the layers
    feeding depth-to-space or a flattening reshape)."""
    name: str
    channels: dict[str, np.ndarray]
    producers: tuple[str, ...]     # weighted layers whose outputs are these channels
    consumers: tuple[str, ...]     # weighted layers that read these channels
    prunable: bool
    reason: str = ""               # why not, when not prunable

    @property
    def size(self) -> int:
        return len(next(iter(self.channels.values())))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.channels)


@dataclass
class ChannelGraph:
    """A model's layers as the pruner sees them, and their channel groups."""
    model: keras.Model
    order: list[str]                        # layer names, inputs first, in model order
    parents: dict[str, list[str]]           # layer -> its input layers, in argument order
    kinds: dict[str, str]                   # layer -> class name
    widths: dict[str, int]                  # layer -> output channels (last axis)
    groups: list[ChannelGroup] = field(default_factory=list)

    def children(self, name: str) -> list[str]:
        return [layer for layer in self.order if name in self.parents[layer]]

    def group(self, name: str) -> ChannelGroup:
        for group in self.groups:
            if group.name == name:
                return group
        raise ValueError(f"no channel group named {name!r}; the model has {[g.name for g in self.groups]}")

    @property
    def prunable(self) -> list[ChannelGroup]:
        return [group for group in self.groups if group.prunable]


def channel_graph(model: keras.Model, protect_outputs: bool = True) -> ChannelGraph:
    """`model`'s channel groups (module docstring); outputs unprunable unless `protect_outputs` is False."""
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise ValueError(f"model: expected a functional keras.Model, got {type(model).__name__}")
    if isinstance(model, keras.Sequential):
        raise ValueError(f"model {model.name!r}: a Sequential model; prune its functional twin, "
                         "keras.Model(model.inputs, model.outputs)")
    config = model.get_config()
    if "layers" not in config or "input_layers" not in config:
        raise ValueError(f"model {model.name!r}: not a functional model (its config lists no layers)")
    order = [layer["name"] for layer in config["layers"]]
    parents = {layer["name"]: inbound_layer_names(layer.get("inbound_nodes", [])) for layer in config["layers"]}
    calls = {layer["name"]: len(layer.get("inbound_nodes", [])) for layer in config["layers"]}
    kinds = {name: type(model.get_layer(name)).__name__ for name in order}
    shapes = {name: _output_shape(model.get_layer(name)) for name in order}
    widths = {name: int(shape[-1]) if shape and shape[-1] is not None else 0 for name, shape in shapes.items()}
    graph = ChannelGraph(model, order, parents, kinds, widths)
    nodes = _Nodes(widths)
    for name in order:
        _tie(graph, nodes, name, shapes, calls[name])
    for entry in layer_entries(config["input_layers"]):
        nodes.fix(entry[0], "a model input")
    if protect_outputs:
        for entry in layer_entries(config["output_layers"]):
            nodes.fix(entry[0], "a model output (protected; protect_outputs=False prunes it)")
    graph.groups = _groups(graph, nodes)
    return graph


def _output_shape(layer) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):   # a layer called more than once has no single output
        return ()


class _Nodes:
    """One union-find node per (layer, output channel); fixed nodes are never pruned."""

    def __init__(self, widths: dict[str, int]):
        self.offset, total = {}, 0
        for name, width in widths.items():
            self.offset[name], total = total, total + width
        self.widths = widths
        self.root = np.arange(total)
        self.fixed: dict[int, str] = {}

    def id(self, layer: str, channel: int) -> int:
        return self.offset[layer] + channel

    def find(self, node: int) -> int:
        root = node
        while self.root[root] != root:
            root = self.root[root]
        while self.root[node] != root:
            self.root[node], node = root, self.root[node]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.root[max(ra, rb)] = min(ra, rb)

    def tie(self, a: str, a_channels, b: str, b_channels) -> None:
        for ca, cb in zip(a_channels, b_channels):
            self.union(self.id(a, int(ca)), self.id(b, int(cb)))

    def fix(self, layer: str, reason: str) -> None:
        for channel in range(self.widths[layer]):
            self.fixed.setdefault(self.id(layer, channel), f"{layer}: {reason}")


def _tie(graph: ChannelGraph, nodes: _Nodes, name: str, shapes: dict, calls: int) -> None:
    """Join `name`'s output channels to its inputs' by the rule for its kind; fix them if there is none."""
    kind, parents, width = graph.kinds[name], graph.parents[name], graph.widths[name]
    layer = graph.model.get_layer(name)
    in_widths = [graph.widths[parent] for parent in parents]
    if kind == "InputLayer":
        return
    reason = _not_understood(graph, name, shapes, calls)
    if reason:
        nodes.fix(name, reason)
        for parent in parents:
            nodes.fix(parent, f"read by {name} ({reason})")
        return
    if kind in ("Conv2D", "Dense"):
        return    # new channels out of all the input's: nothing tied
    if kind == "DepthwiseConv2D":
        multiplier = layer.depth_multiplier
        nodes.tie(name, range(width), parents[0], np.repeat(np.arange(in_widths[0]), multiplier))
    elif kind in ELEMENTWISE or kind == "Activation" or kind in MERGING:
        for parent in parents:
            nodes.tie(name, range(width), parent, range(width))
    elif kind == "Concatenate":
        if _concatenates_channels(layer, shapes[name]):
            offset = 0
            for parent, parent_width in zip(parents, in_widths):
                nodes.tie(name, range(offset, offset + parent_width), parent, range(parent_width))
                offset += parent_width
        else:
            for parent in parents:
                nodes.tie(name, range(width), parent, range(width))
    elif kind == "ZeroPad":
        before = layer.paddings[-1][0]
        nodes.tie(name, range(before, before + in_widths[0]), parents[0], range(in_widths[0]))
    elif kind == "DepthToSpace":
        block_area = layer.block_size ** 2
        for k in range(block_area):
            nodes.tie(name, range(width), parents[0], range(k * width, (k + 1) * width))
    elif kind in ("Reshape", "Flatten"):
        in_shape = shapes[parents[0]]
        if shapes[name][-1] == in_shape[-1] and len(shapes[name]) > 2:
            nodes.tie(name, range(width), parents[0], range(width))
        else:   # NHWC flattening: feature p * C + c is channel c at position p
            channels = in_widths[0]
            nodes.tie(name, range(width), parents[0], np.tile(np.arange(channels), width // channels))
    elif kind == "StridedSlice":
        nodes.tie(name, range(width), parents[0], range(width))


def _not_understood(graph: ChannelGraph, name: str, shapes: dict, calls: int) -> str:
    """Why `name`'s channels cannot be followed ('' when they can)."""
    kind, layer = graph.kinds[name], graph.model.get_layer(name)
    parents = graph.parents[name]
    shape = shapes[name]
    if calls != 1 or not shape:
        return f"{kind} called {calls} times (a shared layer)"
    in_shapes = [shapes[parent] for parent in parents]
    if any(not in_shape for in_shape in in_shapes):
        return "reads a layer with no single output"
    if kind in ("Conv2D", "Dense", "DepthwiseConv2D", "ZeroPad", "DepthToSpace", "Reshape", "Flatten",
                "StridedSlice") or kind in ELEMENTWISE or kind == "Activation":
        if len(parents) != 1:
            return f"{kind} with {len(parents)} inputs"
    if getattr(layer, "data_format", "channels_last") == "channels_first":   # the channels are not the last axis
        return f"{kind} with data_format channels_first"
    if kind == "Conv2D" and getattr(layer, "groups", 1) != 1:
        return f"grouped convolution (groups={layer.groups})"
    if kind in ELEMENTWISE and in_shapes[0][-1] != shape[-1]:
        return f"{kind} changes the channel count"
    if kind == "BatchNormalization" and layer.axis not in (-1, len(shape) - 1, [len(shape) - 1]):
        return f"batch normalisation over axis {layer.axis}, not the channels"
    activation = getattr(getattr(layer, "activation", None), "__name__", "")   # Activation, or fused in Conv2D/Dense
    if hasattr(layer, "activation") and activation not in ELEMENTWISE_ACTIVATIONS:
        return f"activation {activation or type(layer.activation).__name__} is not known to act on each channel alone"
    if kind in MERGING and any(in_shape[-1] != shape[-1] for in_shape in in_shapes):
        return f"{kind} broadcasts over channels"
    if kind == "Concatenate" and not _concatenates_channels(layer, shape) and \
            any(in_shape[-1] != shape[-1] for in_shape in in_shapes):
        return "concatenation of tensors with different channel counts along another axis"
    if kind == "ZeroPad" and len(layer.paddings) != len(shape) - 1:
        return "padding of an unexpected rank"
    if kind == "Reshape" or kind == "Flatten":
        in_shape = in_shapes[0]
        keeps_channels = shape[-1] == in_shape[-1] and len(shape) > 2
        flattens = len(shape) == 2 and in_shape[-1] and shape[-1] == int(np.prod(in_shape[1:]))
        if not (keeps_channels or flattens):
            return f"reshape {in_shape[1:]} -> {shape[1:]} mixes channels with other axes"
    if kind == "StridedSlice":
        axis = len(shape) - 2          # the channel axis among the non-batch axes
        whole = ((layer.begin_mask >> axis & 1 or layer.begin[axis] == 0)
                 and (layer.end_mask >> axis & 1 or layer.end[axis] >= in_shapes[0][-1])
                 and layer.strides[axis] == 1 and not layer.shrink_axis_mask >> axis & 1)
        if not whole or len(shape) != len(in_shapes[0]):
            return "slice of the channel axis"
    known = {"Conv2D", "Dense", "DepthwiseConv2D", "Concatenate", "ZeroPad", "DepthToSpace", "Reshape", "Flatten",
             "StridedSlice", "Activation"} | ELEMENTWISE | MERGING
    if kind not in known:
        return f"{kind} is not a layer the pruner understands"
    return ""


def _concatenates_channels(layer, shape: tuple) -> bool:
    return layer.axis in (-1, len(shape) - 1)


def _groups(graph: ChannelGraph, nodes: _Nodes) -> list[ChannelGroup]:
    """Components of the union-find, gathered into groups of slots with the same footprint."""
    members: dict[int, list[tuple[str, int]]] = {}
    for name in graph.order:
        for channel in range(graph.widths[name]):
            members.setdefault(nodes.find(nodes.id(name, channel)), []).append((name, channel))
    by_footprint: dict[tuple, list[int]] = {}
    for root, nodes_of in members.items():
        footprint = tuple(sorted({layer: sum(1 for other, _ in nodes_of if other == layer)
                                  for layer, _ in nodes_of}.items(), key=lambda item: graph.order.index(item[0])))
        by_footprint.setdefault(footprint, []).append(root)
    position = {name: index for index, name in enumerate(graph.order)}
    groups = []
    for footprint, roots in by_footprint.items():
        layers = [layer for layer, _ in footprint]
        slots = sorted(roots, key=lambda root: min(channel for layer, channel in members[root] if layer == layers[0]))
        channels = {layer: np.array([[channel for other, channel in members[root] if other == layer] for root in slots])
                    for layer in layers}
        reasons = [nodes.fixed[nodes.id(layer, int(channel))] for layer in layers for channel in channels[layer].ravel()
                   if nodes.id(layer, int(channel)) in nodes.fixed]
        producers = tuple(layer for layer in layers if graph.kinds[layer] in WEIGHTED)
        consumers = tuple(child for layer in layers for child in graph.children(layer)
                          if graph.kinds[child] in WEIGHTED and child not in producers)
        if not reasons and not producers and not any(graph.kinds[layer] == "ZeroPad" for layer in layers):
            reasons = ["no layer makes these channels"]
        groups.append(ChannelGroup(_group_name(graph, layers, producers), channels, producers,
                                   tuple(dict.fromkeys(consumers)), not reasons, reasons[0] if reasons else ""))
    groups.sort(key=lambda group: position[group.layers[0]])
    names = {}
    for index, group in enumerate(groups):   # names unique: a second group led by the same layer gets a suffix
        count = names.get(group.name, 0)
        names[group.name] = count + 1
        if count:
            groups[index] = ChannelGroup(f"{group.name}#{count}", group.channels, group.producers, group.consumers,
                                         group.prunable, group.reason)
    return groups


def _group_name(graph: ChannelGraph, layers: list[str], producers: tuple[str, ...]) -> str:
    """The first producing layer (in model order), else the first layer: the group's handle."""
    return producers[0] if producers else layers[0]
