"""The fine-tuning job API's classification task: `task_type: "classification"` trains a gesture head.

    config = FineTuneConfig(dataset_path="gestures/", module="hands", task_type="classification",
                            num_classes=3, class_names=["open", "closed", "none"])
    run_classification_job(config, "variants/gestures")     # what `holistic-lab finetune --config` runs

The job's fields map onto `GestureClassifier.train`: `dataset_path` is a folder of class folders,
`class_names` picks and orders them (all sub-folders when absent) and `num_classes` must agree,
`epochs`, `batch_size`, `learning_rate` (default 1e-3) and `validation_split` as named. The head
trains on the frozen hand model's features, so fields that only mean something for landmark
training are refused when set to anything but their default: another module, LoRA, an unfrozen
backbone, several workers.
"""
from __future__ import annotations

from pathlib import Path

from ..files import output_lock
from ..train.config import CHECKPOINT_MARKER, FineTuneConfig
from ..train.loop import check_checkpoint_dir
from .classes import class_items
from .classifier import GestureClassifier, check_variant_out

DEFAULT_LEARNING_RATE = 1e-3


def check_classification_job(config: FineTuneConfig) -> None:
    if config.task_type != "classification":
        raise ValueError(f"task_type: {config.task_type!r}; this runs 'classification' jobs")
    refused = {"module": (config.module, "hands", "the gesture head sits on the hand model"),
               "lora_rank": (config.lora_rank, None, "the head trains on the frozen backbone's features"),
               "freeze_backbone": (config.freeze_backbone, True, "the head trains on the frozen backbone's features"),
               "distributed_workers": (config.distributed_workers, 1, "the head trains in seconds in one process")}
    for field, (value, wanted, why) in refused.items():
        if value != wanted:
            raise ValueError(f"{field}: {value!r} with task_type 'classification'; it must be {wanted!r} ({why})")


def run_classification_job(config: FineTuneConfig, out, start_from=None, command: str = "run_classification_job",
                           overwrite: bool = False, progress: bool = True, seed: int = 0) -> GestureClassifier:
    """Train the job's gesture head and write the variant folder `out` (the classifier in `gesture/`)."""
    check_classification_job(config)
    check_variant_out(out, [("--data", config.dataset_path)], start_from, overwrite)
    items = class_items(config.dataset_path, config.class_names)
    found = len(dict.fromkeys(label for _, label in items))
    if found != config.num_classes:
        raise ValueError(f"num_classes: {config.num_classes}, but {Path(config.dataset_path)} gives {found} classes")
    checkpoints = check_checkpoint_dir(config.checkpoint_dir)
    with output_lock(out, "--out"):
        checkpoints.mkdir(parents=True, exist_ok=True)  # its log.csv, as a landmark job's: the job API's /metrics
        (checkpoints / CHECKPOINT_MARKER).write_text(config.to_json() + "\n")
        classifier = GestureClassifier.train(
            items, hand_model=start_from, epochs=config.epochs, batch_size=config.batch_size, seed=seed,
            learning_rate=config.learning_rate or DEFAULT_LEARNING_RATE,
            validation_fraction=config.validation_split, progress=progress, csv_log=checkpoints / "log.csv")
        classifier.save_variant(out, {"command": command, "config": config.model_dump()}, source=start_from,
                                overwrite=overwrite)
    return classifier
