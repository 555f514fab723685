"""Prune one stage of the cascade, recover it by distillation, and write it as a model variant.

    result = prune_stage(model, 0.3, criterion="l1", steps=3, recover_epochs=2, crops=crops)
    prune_variant("variants/pose_pruned30", "pose_landmark", 0.3, recover_epochs=2)
    HolisticPipeline.from_variant("variants/pose_pruned30")

A schedule of `steps` prunes towards the target in equal steps (0.1, 0.2, 0.3 of each group's
original slots), each step scoring the current model, pruning it and, with `recover_epochs`,
distilling it from the unpruned model on real crops of the stage (the cascade's own inputs,
`quantize.stage_calibration`) before the next. The stage starts from the model the source
variant runs (the shipped one by default) and leaves as a .tflite that stores its weights as the
source did: float16 for the shipped stages but hand_recrop (a pruned model written in float32 would
be larger than the float16 one it came from), float32 for a float32 source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import display_path
from ..progress import progress_bar
from ..settings import quick_or
from ..variants import STAGES, carried_stages, check_variant_output, read_variant, write_variant
from .scoring import CRITERIA, importance
from .plan import ALLOCATIONS, PrunePlan, check_round_to, check_sparsity, plan_pruning

DEFAULT_CROPS, QUICK_CROPS = 256, 24   # real crops per stage for Taylor scores and recovery
MAX_STEPS = 20                          # each step rebuilds the model: more is a typo, not a schedule
# Adam's step for recovery: a pruned model starts far from its teacher (on hand_landmark_full at 30%,
# 6 epochs on 128 crops: 1e-5 PCK 0.12, 1e-4 0.23, 1e-3 0.00 from 0.15 unrecovered; notebook 07)
RECOVERY_LEARNING_RATE = 1e-4


@dataclass
class PruneResult:
    model: object                                        # the pruned (and recovered) keras.Model
    plans: list[PrunePlan]                               # one per step
    history: list[dict] = field(default_factory=list)    # per step: sparsity, params, recovery losses

    @property
    def plan(self) -> PrunePlan:
        return self.plans[-1]


def check_prune_arguments(stage: str, sparsity, criterion: str, round_to, steps, recover_epochs,
                          allocation: str = "uniform") -> None:
    """Every argument of a prune job checked by name, before any model is opened."""
    if stage not in STAGES:
        raise ValueError(f"stage: unknown {stage!r}; expected one of {', '.join(STAGES)}")
    check_sparsity(sparsity)
    check_round_to(round_to)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion: unknown {criterion!r}; expected one of {', '.join(CRITERIA)}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation: unknown {allocation!r}; expected one of {', '.join(ALLOCATIONS)}")
    _check_counts(steps, recover_epochs)


def _check_counts(steps, recover_epochs) -> None:
    for name, value, low, high in (("steps", steps, 1, MAX_STEPS), ("recover_epochs", recover_epochs, 0, None)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
                (high is not None and value > high):
            raise ValueError(f"{name} must be a whole number from {low}" + (f" to {high}" if high else " up")
                             + f", got {value!r}")


def prune_stage(model, sparsity: float, criterion: str = "l1", round_to: int = 16, allocation: str = "uniform",
                steps: int = 1, recover_epochs: int = 0, crops: np.ndarray | None = None,
                protect_outputs: bool = True, progress: bool = True, **distill_options) -> PruneResult:
    """`model` (a Keras stage model) pruned to `sparsity` in `steps`, recovered after each step by
    `recover_epochs` of distillation from `model` on `crops`; the unpruned model is not changed."""
    from .groups import channel_graph
    from .rebuild import prune_model

    check_sparsity(sparsity)
    _check_counts(steps, recover_epochs)
    if (criterion == "taylor" or recover_epochs) and crops is None:
        raise ValueError("crops (real inputs of the stage) are needed for Taylor scores and for recovery")
    original = {group.name: group.size for group in channel_graph(model, protect_outputs).prunable}
    current, plans, history = model, [], []
    for step in range(1, steps + 1):
        graph = channel_graph(current, protect_outputs)
        scores = importance(graph, criterion, crops, progress=progress)
        plan = plan_pruning(graph, scores, sparsity * step / steps, round_to, allocation, original_sizes=original)
        current = prune_model(graph, plan.keep, name=model.name)
        record = {"step": step, "target_sparsity": sparsity * step / steps,
                  "slot_sparsity": 1 - plan.slots_kept / sum(original.values()), "params": int(current.count_params())}
        if recover_epochs:
            from .recover import distill

            options = {"learning_rate": RECOVERY_LEARNING_RATE, **distill_options}
            run = distill(current, model, crops, recover_epochs, progress=progress, **options)
            current = run.model
            record["recovery"] = run.history
        plans.append(plan)
        history.append(record)
    return PruneResult(current, plans, history)


def manifest_step(record: dict) -> dict:
    """A schedule step as a manifest keeps it: of its recovery, the total loss per epoch, train and validation."""
    step = {key: value for key, value in record.items() if key != "recovery"}
    if "recovery" in record:
        step["recovery"] = {name: [float(value) for value in record["recovery"][name]]
                            for name in ("loss", "val_loss") if name in record["recovery"]}
    return step


def prune_variant(out, stage: str, sparsity: float, criterion: str = "l1", round_to: int = 16,
                  allocation: str = "uniform", steps: int = 1, recover_epochs: int = 0, source=None,
                  crop_count: int | None = None, learning_rate: float = RECOVERY_LEARNING_RATE,
                  overwrite: bool = False, command: str | None = None, progress: bool = True) -> Path:
    """Write a variant at `out` whose `stage` is pruned (`prune_stage`); the other stages and a gesture
    head come from `source` (a gesture head is dropped when the hand stage it sits on is pruned).
    Returns the manifest's path. Everything is checked before the slow part."""
    check_prune_arguments(stage, sparsity, criterion, round_to, steps, recover_epochs, allocation)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float)) or not 0 < learning_rate < 1:
        raise ValueError(f"learning_rate must be a number in (0, 1), got {learning_rate!r}")
    check_variant_output(out, overwrite)
    if source is not None and Path(source).resolve() == Path(out).resolve():
        raise ValueError(f"--out {display_path(out)} is also --from, the variant this starts from; "
                         "write the pruned variant to a new folder")
    carried, kinds, metrics = carried_stages(source, replaced=stage)
    from ..convert import tflite_to_keras
    from ..quantize.modes import op_dtypes, quantize_model
    from ..quantize.variant import source_model_file, stage_calibration
    from .cost import model_macs

    source_file = source_model_file(stage, source)
    try:
        model = tflite_to_keras(source_file)
    except ValueError as exc:
        raise ValueError(f"{stage}: cannot open {display_path(source_file)} as a float model to prune ({exc}); "
                         "start from a float variant (or the shipped models)") from None
    weights = "float16" if op_dtypes(source_file.read_bytes()).get("DEQUANTIZE", {}).get("FLOAT16") else "float32"
    crops = None
    if criterion == "taylor" or recover_epochs:
        count = crop_count or quick_or(DEFAULT_CROPS, QUICK_CROPS)
        crops = stage_calibration([stage], source, count=count, progress=progress)[stage]
    result = prune_stage(model, sparsity, criterion, round_to, allocation, steps, recover_epochs, crops,
                         progress=progress, learning_rate=learning_rate)
    for _ in progress_bar([stage], f"convert {stage}", progress):
        tflite = quantize_model(result.model, weights)
    carried[stage] = tflite
    earlier = read_variant(source).manifest["stages"].get(stage, {}).get("kind") if source is not None else None
    kind = f"pruned-{sparsity:g}"
    kinds[stage] = kind if earlier in (None, "float32", "float16") else f"{earlier}+{kind}"
    metrics[stage] = {"bytes": len(tflite), "weights": weights, "params_before": int(model.count_params()),
                      "params": int(result.model.count_params()), "macs_before": model_macs(model),
                      "macs": model_macs(result.model), "slot_sparsity": result.history[-1]["slot_sparsity"],
                      "crops": 0 if crops is None else int(len(crops)), "from": display_path(source_file),
                      "steps": [manifest_step(record) for record in result.history]}
    config = {"stage": stage, "sparsity": sparsity, "criterion": criterion, "round_to": round_to,
              "allocation": allocation, "steps": steps, "recover_epochs": recover_epochs,
              "learning_rate": learning_rate if recover_epochs else None}
    gesture = read_variant(source).gesture if source is not None and stage != "hand_landmark" else None
    return write_variant(out, carried, Path(out).name or "pruned", {"command": command or "prune_variant",
                                                                     "config": config},
                         source=source, kinds=kinds, metrics=metrics, overwrite=overwrite, gesture=gesture)
