"""Which slots to keep: a sparsity, per-group widths rounded for XNNPACK, the most important slots.

XNNPACK packs a convolution's output channels in tiles (on x86, 16 or 32 for 1x1 convolutions,
8 or 16 for depthwise), so a width that is not a multiple of the tile computes the padded tile
anyway: pruning 48 channels to 40 removes MACs and buys no time. Each group keeps a multiple of
`round_to` slots (default 16; `round_to=1` turns rounding off): the nearest multiple to
`size * (1 - sparsity)`, at least one tile, never more than the group has. Most tensors belong to
one group, so their widths become multiples of the tile; a group smaller than a tile (or not a
multiple of it, such as 24) keeps all its slots or one tile, so small models prune less.

allocation "uniform" prunes every group by the same fraction; "global" ranks every slot of the
model by its score divided by its group's mean score (scores of different groups are on
different scales) and prunes the lowest `sparsity` of all slots, so unimportant groups give more.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .groups import ChannelGraph

ALLOCATIONS = ("uniform", "global")


@dataclass
class PrunePlan:
    keep: dict[str, np.ndarray]                 # group -> kept slot indices, ascending
    sizes: dict[str, int]                       # group -> slots before any pruning (`original_sizes`)
    sparsity: float
    round_to: int
    allocation: str
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def slots_kept(self) -> int:
        return int(sum(len(slots) for slots in self.keep.values()))

    @property
    def slots_before(self) -> int:
        return int(sum(self.sizes.values()))

    @property
    def achieved_sparsity(self) -> float:
        """Fraction of the prunable slots removed (rounding makes it differ from the target)."""
        return 1.0 - self.slots_kept / max(self.slots_before, 1)

    def rows(self) -> list[dict]:
        return [{"group": name, "slots": self.sizes[name], "kept": len(slots),
                 "pruned": self.sizes[name] - len(slots)} for name, slots in self.keep.items()]


def check_sparsity(sparsity) -> float:
    if isinstance(sparsity, (bool, np.bool_)) or not isinstance(sparsity, numbers.Real) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1) (the fraction of channels removed), got {sparsity!r}")
    return float(sparsity)


def check_round_to(round_to) -> int:
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(f"round_to must be a whole number >= 1 (1: no rounding), got {round_to!r}")
    return int(round_to)


def rounded_width(size: int, target: float, round_to: int) -> int:
    """`target` slots rounded to the nearest multiple of `round_to`, kept within [one tile, size]."""
    width = int(round_to * np.floor(target / round_to + 0.5))
    return int(min(size, max(width, min(round_to, size))))


def plan_pruning(graph: ChannelGraph, scores: dict[str, np.ndarray], sparsity: float, round_to: int = 16,
                 allocation: str = "uniform", original_sizes: dict[str, int] | None = None) -> PrunePlan:
    """Keep, in each prunable group, its highest-scoring slots at the rounded width (module docstring).
    `original_sizes` (group -> slots before any pruning) makes `sparsity` count from those, for
    iterative schedules that prune an already pruned model further."""
    sparsity, round_to = check_sparsity(sparsity), check_round_to(round_to)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation: unknown {allocation!r}; expected one of {', '.join(ALLOCATIONS)}")
    groups = graph.prunable
    missing = [group.name for group in groups if group.name not in scores]
    if missing:
        raise ValueError(f"scores: no scores for groups {missing}")
    for group in groups:
        if np.shape(scores[group.name]) != (group.size,):
            raise ValueError(f"scores[{group.name!r}]: expected {group.size} scores, got shape {np.shape(scores[group.name])}")
        if not np.all(np.isfinite(np.asarray(scores[group.name], dtype=float))):
            raise ValueError(f"scores[{group.name!r}]: expected finite scores, got {scores[group.name]}")
    original = {group.name: (original_sizes or {}).get(group.name, group.size) for group in groups}
    targets = _targets(groups, scores, sparsity, allocation, original)
    keep = {}
    for group in groups:
        width = min(group.size, rounded_width(original[group.name], targets[group.name], round_to))
        order = np.argsort(-np.asarray(scores[group.name], dtype=float), kind="stable")
        keep[group.name] = np.sort(order[:width])
    return PrunePlan(keep, original, sparsity, round_to, allocation, dict(scores))


def _targets(groups, scores, sparsity: float, allocation: str, original: dict[str, int]) -> dict[str, float]:
    """group -> how many slots it should keep, before rounding."""
    if allocation == "uniform" or not groups:
        return {group.name: original[group.name] * (1 - sparsity) for group in groups}
    relative = {group.name: np.asarray(scores[group.name], float) / max(float(np.mean(scores[group.name])), 1e-30)
                for group in groups}
    everything = np.concatenate(list(relative.values()))
    total = sum(original.values())
    removed_already = total - len(everything)
    to_remove = max(0, int(round(total * sparsity)) - removed_already)
    # by rank, not by a score threshold: tied scores (equal slots) must not all go at once
    removed = np.zeros(len(everything), bool)
    removed[np.argsort(everything, kind="stable")[:to_remove]] = True
    kept, start = {}, 0
    for name, values in relative.items():
        kept[name] = float(len(values) - removed[start:start + len(values)].sum())
        start += len(values)
    return kept
