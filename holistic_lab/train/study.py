"""Chapter 05's measured story as functions: a target domain where the shipped model fails, a
self-distillation set for it, the fine-tuning methods trained on it, and their comparison with
the shipped model on held-out human labels.

    domain = DOMAINS["hands_occluded"]
    items = domain_items(domain, count=400)                   # teacher-labelled clean images
    runs = train_methods(domain, items, METHODS, epochs=5, root="runs")
    comparison = compare_models({"shipped": shipped, **{m: r.model for m, r in runs.items()}},
                                human_cases(domain.module), domain.module, domain.preset)
    method_rows(runs, comparison, domain.preset)              # params, s/epoch, gain, forgetting

Nothing the evaluation scores is trained on: training images are HaGRID crops, HaGRID
photographs and the videos pack's clips; evaluation uses the MMPose pack's FreiHAND, Panoptic,
COCO-WholeBody, 300-W and dlib's faces.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import FineTuneConfig
from .evaluate import Comparison
from .loop import FineTuneRun, finetune
from .teacher_data import frame_items, hand_crop_items, video_frames


@dataclass(frozen=True)
class Domain:
    name: str
    module: str
    preset: str          # the augmentation preset whose appearance part is the domain
    description: str


DOMAINS = {
    "hands_occluded": Domain("hands_occluded", "hands", "occlusion",
                             "hands partly hidden: cut-outs and a patch over the hand"),
    "faces_at_night": Domain("faces_at_night", "face_mesh", "night",
                             "faces in very low light: dark, low gamma, strong sensor noise"),
}

# learning rates: LoRA's adapters start at zero and take a larger step (1e-3 measured harmless on
# clean images); the frozen backbone's heads hold 5% (hands) to 81% (face) of the weights, so they
# get the full model's step (1e-3 tore the face heads: +39% clean error in a quick run)
METHODS = {
    "full": {"freeze_backbone": False, "learning_rate": 3e-4},
    "frozen backbone": {"freeze_backbone": True, "learning_rate": 3e-4},
    "LoRA r4": {"lora_rank": 4, "freeze_backbone": False, "learning_rate": 1e-3},
}


# clips whose people the whole cascade finds (the hand-only clips have no body, so no hands either)
HAND_CLIPS = ("gesture_face_hands.mp4", "pose_1.mp4", "pose_squats.mp4")
FACE_CLIPS, FACE_FRAMES_PER_CLIP = HAND_CLIPS, 8


def domain_items(domain: Domain, count: int, progress: bool = True, every: int = 3) -> tuple[list, list[str]]:
    """(items, groups): teacher-labelled clean training images for the domain's module and, per
    item, its group (a HaGRID crop or photograph is its own; a clip's frames share the clip's),
    so that validation never holds a frame whose neighbour is trained on. For hands: `count`
    HaGRID crops spread over the 13 classes, plus HaGRID's photographs and every `every`-th frame
    of the whole-body clips (hands in context); for faces at most `count` of HaGRID's photographs
    and a few frames of each clip (one person's face must not outweigh forty others)."""
    from .. import datasets
    from ..images import load_rgb

    videos = datasets.fixture_videos()
    photographs = {str(path): load_rgb(path) for path, _ in datasets.hagrid_frames()}

    def labelled(frames_by_group: dict, parts, limit=None) -> tuple[list, list[str]]:
        items, groups = [], []
        for group, frames in frames_by_group.items():
            found = frame_items(frames, parts, progress=progress)
            items += found
            groups += [group] * len(found)
            if limit is not None and len(items) >= limit:
                break
        return items[:limit], groups[:limit]

    if domain.module == "hands":
        crops = datasets.hagrid_crops()
        picked = [path for path, _ in crops[::max(1, len(crops) // count)][:count]]
        items = hand_crop_items(picked, progress=progress)
        groups = [f"hagrid crop {index}" for index in range(len(items))]
        sources = {path: [rgb] for path, rgb in photographs.items()}
        sources.update({clip: list(video_frames(videos[clip], every)) for clip in HAND_CLIPS})
        more, more_groups = labelled(sources, ("left_hand", "right_hand"))
        return items + more, groups + more_groups
    if domain.module == "face_mesh":
        # many people, few frames of each: a first full run with 48 frames of one woman beside 40
        # photographs gained less at night than a quick run on 30 photographs alone
        sources = {path: [rgb] for path, rgb in photographs.items()}
        sources.update({clip: list(video_frames(videos[clip], every=every * 4, limit=FACE_FRAMES_PER_CLIP))
                        for clip in FACE_CLIPS})
        return labelled(sources, "face", limit=count)
    raise ValueError(f"no training images for module {domain.module!r}")


def train_methods(domain: Domain, items: list, methods: dict, epochs: int, root, batch_size: int = 16,
                  progress: bool = True, steps_per_epoch: int | None = None, groups=None) -> dict[str, FineTuneRun]:
    """One fine-tune per method on the same items (validation split by `groups`) and the
    domain's preset; checkpoints under `root`."""
    runs = {}
    for name, fields in methods.items():
        folder = Path(root) / f"{domain.name}-{name.replace(' ', '_')}"
        config = FineTuneConfig(dataset_path="(in memory)", module=domain.module, epochs=epochs,
                                batch_size=batch_size, preset=domain.preset, checkpoint_dir=str(folder), **fields)
        runs[name] = finetune(config, items, progress=progress, steps_per_epoch=steps_per_epoch, groups=groups)
    return runs


def method_rows(runs: dict[str, FineTuneRun], comparison: Comparison, condition: str,
                baseline: str = "shipped", reference: str = "full") -> list[dict]:
    """Per method: trainable parameters, median seconds per epoch, the target-domain error and
    its change against the shipped model (with interval), the share of `reference`'s gain it
    keeps, and the change on clean images (forgetting)."""
    rows = {(row["condition"], row["model"]): row for row in comparison.rows(baseline)}
    gain = {name: -rows[(condition, name)]["change"] for name in runs}
    out = []
    for name, run in runs.items():
        target, clean = rows[(condition, name)], rows[("clean", name)]
        out.append({"method": name, "trainable_params": run.trainable_params,
                    "trainable_share": run.trainable_params / run.total_params,
                    "seconds_per_epoch": run.seconds_per_epoch, "best_epoch": run.best_epoch,
                    "error": target["error"], "change": target["change"], "change_ci": target["change_ci"],
                    "relative_change": target["relative_change"],
                    # undefined (nan, printed n/a) when the reference method gained nothing
                    "share_of_full_gain": gain[name] / gain[reference] if reference in gain and gain[reference] > 0
                    else float("nan"),
                    "clean_error": clean["error"], "clean_shipped_error": clean["error"] - clean["change"],
                    "clean_change": clean["change"], "clean_change_ci": clean["change_ci"],
                    "clean_relative_change": clean["relative_change"]})
    return out


def format_method_rows(rows: list[dict]) -> str:
    lines = [f"{'method':>16s} {'trainable':>10s} {'share':>6s} {'s/epoch':>8s} {'target change [95% CI]':>30s} "
             f"{'of full':>8s} {'clean change [95% CI]':>30s}"]
    for r in rows:
        lines.append(f"{r['method']:>16s} {r['trainable_params']:>10,d} {r['trainable_share']:>6.1%} "
                     f"{r['seconds_per_epoch']:>8.1f} "
                     f"{r['relative_change']:>+8.1%} [{r['change_ci'][0]:+.4f}, {r['change_ci'][1]:+.4f}] "
                     f"{_share(r['share_of_full_gain']):>8s} "
                     f"{r['clean_relative_change']:>+8.1%} [{r['clean_change_ci'][0]:+.4f}, "
                     f"{r['clean_change_ci'][1]:+.4f}]")
    return "\n".join(lines)


def _share(value: float) -> str:
    return "n/a" if value != value else f"{value:.0%}"


def within_tolerance(rows: list[dict], tolerance: float) -> dict[str, bool]:
    """Per method: the clean-image error rose by no more than `tolerance` (relative) at the
    upper end of its interval? (catastrophic forgetting measured, not assumed)"""
    return {r["method"]: bool(r["clean_change_ci"][1] <= tolerance * r["clean_shipped_error"]) for r in rows}
