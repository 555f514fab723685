"""Backbone and heads of a functional Keras model, found from which outputs each layer feeds.

A layer that feeds every output is the shared backbone; layers that feed only some of the
outputs form a head, one head per distinct set of outputs. Later chapters use the groups
to freeze a backbone (`model.get_layer(name).trainable = False`) or prune a block by name.
The graph is read from `model.get_config()`, so this works on any functional model,
converted or reloaded from `.keras`, not only on what `tflite_to_keras` just built.

`OUTPUT_MEANINGS` says what each Holistic model output is, read from the MediaPipe graphs
that consume them (the TensorsTo* calculators in mediapipe/modules/*/..._cpu.pbtxt).
"""
from __future__ import annotations

from dataclasses import dataclass

import keras

OUTPUT_MEANINGS: dict[str, dict[str, str]] = {
    "pose_detection": {"Identity": "box + 4 keypoint regressors per anchor (2254 x 12)",
                       "Identity_1": "person score logit per anchor"},
    "pose_landmark_full": {"Identity": "39 points (33 landmarks + 6 auxiliary) x (x, y, z, visibility, presence)",
                           "Identity_1": "pose presence (sigmoid)", "Identity_2": "segmentation logits 256 x 256",
                           "Identity_3": "heatmaps of the 39 points, 64 x 64",
                           "Identity_4": "39 world points (x, y, z in metres)"},
    "face_detection_short_range": {"regressors": "box + 6 keypoint regressors per anchor (896 x 16)",
                                   "classificators": "face score logit per anchor"},
    "face_landmark": {"conv2d_21": "468 mesh landmarks x (x, y, z)", "conv2d_31": "face presence logit"},
    "palm_detection_full": {"Identity": "box + 7 keypoint regressors per anchor (2016 x 18)",
                            "Identity_1": "palm score logit per anchor"},
    "hand_landmark_full": {"Identity": "21 landmarks x (x, y, z)", "Identity_1": "hand presence (sigmoid)",
                           "Identity_2": "handedness (sigmoid)", "Identity_3": "21 world landmarks (x, y, z in metres)"},
    "hand_recrop": {"output_crop": "2 virtual keypoints: recrop centre and scale"},
}


@dataclass(frozen=True)
class LayerGroup:
    name: str                   # "backbone" or "head:<output>+<output>"
    layers: tuple[str, ...]     # layer names, in model order
    outputs: tuple[str, ...]    # the model outputs these layers feed

    @property
    def is_backbone(self) -> bool:
        return self.name == "backbone"


def layer_groups(model: keras.Model) -> list[LayerGroup]:
    """The backbone (feeds every output) then one head per set of outputs fed; input layers left out."""
    config = model.get_config()
    parents = {layer["name"]: set(inbound_layer_names(layer.get("inbound_nodes", []))) for layer in config["layers"]}
    input_names = {entry[0] for entry in layer_entries(config["input_layers"])}
    output_names = [entry[0] for entry in layer_entries(config["output_layers"])]
    fed: dict[str, set[str]] = {name: set() for name in parents}
    for output in output_names:
        stack, seen = [output], set()
        while stack:
            layer = stack.pop()
            if layer in seen:
                continue
            seen.add(layer)
            fed[layer].add(output)
            stack.extend(parents[layer])
    by_outputs: dict[tuple[str, ...], list[str]] = {}
    for layer in parents:
        if layer in input_names:
            continue
        key = tuple(name for name in output_names if name in fed[layer])
        by_outputs.setdefault(key, []).append(layer)
    groups = [LayerGroup("backbone" if set(key) == set(output_names) else "head:" + "+".join(key), tuple(layers), key)
              for key, layers in by_outputs.items()]
    return sorted(groups, key=lambda group: (not group.is_backbone, -len(group.outputs), output_names.index(group.outputs[0])))


def layer_entries(value) -> list:
    """A config's input/output layers as a list of [name, node, tensor] (one entry is stored bare)."""
    return [value] if value and isinstance(value[0], str) else list(value)


def inbound_layer_names(node) -> list[str]:
    """Names of the layers whose tensors a serialised inbound node reads, in argument order
    (a layer read twice, e.g. an ADD of a tensor with itself, appears twice)."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            return [node["config"]["keras_history"][0]]
        return [name for value in node.values() for name in inbound_layer_names(value)]
    if isinstance(node, (list, tuple)):
        return [name for value in node for name in inbound_layer_names(value)]
    return []
