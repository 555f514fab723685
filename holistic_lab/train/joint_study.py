"""Does joint training with the tutorials' head weights give chapter 05's per-module result?

    items, groups = video_items(every=5)                      # teacher-labelled frames, all parts
    study = joint_vs_per_module(items, groups, epochs=4, root="runs/joint")
    print(format_joint_rows(study.rows))                      # per head: per-module vs joint error

On the same teacher-labelled training frames, (a) `joint.train_joint` trains the joint model
with the default head weights (pose 1.0, face 0.8, hands 0.6) and (b) chapter 05's `finetune`
trains each module on its own, the same epochs, batch size, augmentation and training split
(`loop.split_indices` with the same seed and groups). Both are scored per module with
chapter 05's `evaluate.compare_models` on the packs' held-out human labels (bodies: COCO, AI
Challenger, PoseTrack; hands: FreiHAND, Panoptic, COCO-WholeBody; faces: 300-W, dlib,
COCO-WholeBody), clean and degraded by the preset, with a paired bootstrap interval of
joint minus per-module. What differs by design: `finetune` keeps its best epoch by validation
loss, the joint run its last; per-module hand batches hold `batch_size` hand crops, joint ones
`batch_size` images (up to two hands each), so the joint hand model takes fewer, larger steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .config import FineTuneConfig
from .evaluate import Comparison, compare_models, human_cases
from .joint import STAGE_MODULES, HolisticModel, train_joint
from .joint_data import HEAD_MODULES
from .loop import finetune, split_indices
from .teacher_data import frame_items, video_frames

# clips in which the whole cascade finds a body, a face and hands (study.HAND_CLIPS)
JOINT_CLIPS = ("gesture_face_hands.mp4", "pose_1.mp4", "pose_squats.mp4")
VALIDATION_SPLIT = 0.1


@dataclass
class JointStudy:
    rows: list[dict]                         # `joint_rows`
    comparisons: dict[str, Comparison]       # module -> shipped, per-module and joint on its human cases
    seconds: dict[str, float]                # "joint", and each module's finetune
    train_items: int
    joint_history: dict[str, list[float]]
    best_epochs: dict[str, int]              # module -> the epoch `finetune` kept
    joint: HolisticModel                     # the trained joint model (`joint.export_joint` splits it back)


def video_items(every: int = 5, limit_per_clip: int | None = None, progress: bool = True) -> tuple[list, list[str]]:
    """(items, groups): every `every`-th frame of the JOINT_CLIPS where the cascade finds any
    part, labelled by it, and each item's clip (so validation holds whole clips)."""
    from .. import datasets

    videos = datasets.fixture_videos()
    items, groups = [], []
    for clip in JOINT_CLIPS:
        found = frame_items(video_frames(videos[clip], every, limit_per_clip), tuple(HEAD_MODULES), progress=progress)
        items += found
        groups += [clip] * len(found)
    return items, groups


def joint_vs_per_module(items: list, groups: list[str], epochs: int, root, batch_size: int = 8,
                        preset: str = "train", draws: int = 2, seed: int = 0, progress: bool = True,
                        cases: dict | None = None) -> JointStudy:
    """Train both ways on `items` (checkpoints of the per-module runs under `root`) and compare
    them per module on human labels (`cases`: module -> `evaluate.human_cases`, made if absent)."""
    from ..convert import tflite_to_keras
    from ..mediapipe_models import model_path
    from .modules import MODULES

    train_indices, _ = split_indices(len(items), VALIDATION_SPLIT, seed, groups)
    seconds = {}
    start = time.perf_counter()
    joint, history = train_joint([items[i] for i in train_indices], epochs, batch_size, preset, seed,
                                 progress=progress)
    seconds["joint"] = time.perf_counter() - start
    runs = {}
    for module in STAGE_MODULES:
        start = time.perf_counter()
        config = FineTuneConfig(dataset_path="(in memory)", module=module, epochs=epochs, batch_size=batch_size,
                                preset=preset, validation_split=VALIDATION_SPLIT,
                                checkpoint_dir=str(Path(root) / module))
        runs[module] = finetune(config, items, progress=progress, seed=seed, groups=groups)
        seconds[module] = time.perf_counter() - start
    comparisons = {}
    for module in STAGE_MODULES:
        module_cases = (cases or {}).get(module) or human_cases(module)
        shipped = tflite_to_keras(model_path(MODULES[module].model_name))
        comparisons[module] = compare_models({"shipped": shipped, "per-module": runs[module].model,
                                              "joint": joint.stages[module]}, module_cases, module, preset, draws,
                                             seed)
    return JointStudy(joint_rows(comparisons), comparisons, seconds, len(train_indices), history,
                      {module: run.best_epoch for module, run in runs.items()}, joint)


def joint_rows(comparisons: dict[str, Comparison]) -> list[dict]:
    """Per module and condition: n, the shipped, per-module and joint errors, joint minus
    per-module (relative, and its 95% paired bootstrap interval over images)."""
    out = []
    for module, comparison in comparisons.items():
        rows = {(row["condition"], row["model"]): row for row in comparison.rows(baseline="per-module")}
        for condition in comparison.conditions:
            joint = rows[(condition, "joint")]
            out.append({"module": module, "condition": condition, "n": comparison.n,
                        "shipped": rows[(condition, "shipped")]["error"],
                        "per_module": rows[(condition, "per-module")]["error"], "joint": joint["error"],
                        "relative_difference": joint["relative_change"], "difference_ci": joint["change_ci"]})
    return out


def format_joint_rows(rows: list[dict]) -> str:
    lines = [f"{'module':>9s} {'condition':>9s} {'n':>4s} {'shipped':>8s} {'per-module':>10s} {'joint':>8s} "
             f"{'joint vs per-module [95% CI of the difference]':>48s}"]
    for r in rows:
        low, high = r["difference_ci"]
        lines.append(f"{r['module']:>9s} {r['condition']:>9s} {r['n']:>4d} {r['shipped']:>8.4f} "
                     f"{r['per_module']:>10.4f} {r['joint']:>8.4f} {r['relative_difference']:>+20.1%} "
                     f"[{low:+.4f}, {high:+.4f}]")
    return "\n".join(lines)
