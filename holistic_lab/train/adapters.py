"""Which weights a fine-tune may change: freezing by layer group, LoRA adapters and merging them back.

    frozen = freeze(model, "backbone")          # layer_groups' backbone: trainable = False
    report = add_lora(model, rank=4)            # Keras 3's layer.enable_lora on every Conv2D / Dense
    print(report)                               # which layers, how many parameters it adds
    plain = merge_lora(model)                   # original layers and parameter count, same outputs

Keras 3 has `enable_lora` on Dense, EinsumDense, Embedding and Conv1D/2D/3D, not on
DepthwiseConv2D nor PReLU, so those keep their own weights (trainable unless frozen). A LoRA
layer's kernel becomes kernel + (alpha / rank) A @ B with A, B the only new (trainable)
weights; B starts at zero, so the model's outputs do not change until training moves it.
Keras's `save` writes the merged kernel but keeps `lora_rank` in the layer config (a reloaded
model is still a LoRA model, adapters zeroed); `merge_lora` rebuilds the plain layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import keras

from ..convert import layer_groups


def freeze(model: keras.Model, groups: str | Iterable[str] = "backbone") -> list[str]:
    """Set `trainable = False` on the layers of the named groups ("backbone", "heads" for every
    head, or a head's own name from `layer_groups`) and True on all others; the frozen names."""
    names = [groups] if isinstance(groups, str) else list(groups)
    available = layer_groups(model)
    known = {group.name for group in available} | {"heads"}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown layer group(s) {unknown}; expected some of {sorted(known)}")
    frozen = [layer for group in available
              if group.name in names or ("heads" in names and not group.is_backbone) for layer in group.layers]
    for layer in model.layers:
        layer.trainable = layer.name not in frozen
    return frozen


@dataclass(frozen=True)
class LoraReport:
    rank: int
    layers: tuple[str, ...]          # layers that got adapters
    without_lora: tuple[str, ...]    # weighted layers Keras has no adapter for (DepthwiseConv2D, PReLU)
    added_params: int                # the adapters' A and B
    model_params: int                # the model's parameters before adapters

    @property
    def added_fraction(self) -> float:
        return self.added_params / self.model_params

    def __str__(self) -> str:
        return (f"LoRA rank {self.rank}: adapters on {len(self.layers)} layers add {self.added_params:,} parameters "
                f"({self.added_fraction:.1%} of {self.model_params:,}); no adapter on {len(self.without_lora)} "
                f"weighted layers")


def add_lora(model: keras.Model, rank: int) -> LoraReport:
    """Rank-`rank` adapters on every layer Keras can give one (in place); what was added."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"lora rank must be an integer >= 1, got {rank!r}")
    before = model.count_params()
    adapted, without = [], []
    for layer in model.layers:
        if hasattr(layer, "enable_lora"):
            layer.enable_lora(rank)
            adapted.append(layer.name)
        elif layer.weights:
            without.append(layer.name)
    return LoraReport(rank, tuple(adapted), tuple(without), model.count_params() - before, before)


def merge_lora(model: keras.Model) -> keras.Model:
    """A new model with the original layers (no adapters) whose kernels are the merged ones."""
    config = model.get_config()
    for layer_config in config["layers"]:
        layer_config["config"].pop("lora_rank", None)
        layer_config["config"].pop("lora_alpha", None)
    merged = model.__class__.from_config(config)
    for layer in model.layers:
        if getattr(layer, "lora_enabled", False):
            values = [layer.kernel] + ([layer.bias] if layer.use_bias else [])
            merged.get_layer(layer.name).set_weights([keras.ops.convert_to_numpy(value) for value in values])
        else:
            merged.get_layer(layer.name).set_weights(layer.get_weights())
    return merged
