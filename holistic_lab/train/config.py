"""`FineTuneConfig`: one fine-tuning job, the JSON of DESIGN.md's job API, validated field by field.

    config = FineTuneConfig.from_json("job.json")          # or a dict, as the HTTP API receives it
    config = FineTuneConfig(dataset_path="sets/hands", module="hands", lora_rank=4)
    Path("job.json").write_text(config.to_json())

Defaults suit a small data set on a laptop: a frozen backbone (the safest against forgetting
when there are a few hundred labelled crops), no LoRA, 10 epochs of 32 crops at 1e-4 (Adam; pose 1e-5),
gradient norm clipped at 1.0, 10% held out, the "train" augmentation preset. Every bad value
raises one ValueError naming the field and what was expected; unknown keys are refused by name.
"""
from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..files import read_json_object
from .modules import DEFAULT_LOSS_WEIGHTS, MODULES

# A checkpoint folder the training loop wrote holds this file (the job's config); a folder that
# exists, is not empty and lacks it belongs to something else and is refused when the job runs
# (`loop.check_checkpoint_dir`), not when a config is read: a config is only text.
CHECKPOINT_MARKER = "finetune_config.json"
# Bounds on what a job may ask: beyond them a count overflows TensorFlow's int32 step counters
# (a batch of 10**400 crops made 0 steps per epoch and hung), adapters fill memory, a config
# file is not a job's few hundred bytes (/dev/zero would be read for ever).
MAX_COUNT = 2**31 - 1
MAX_LORA_RANK = 1024
MAX_JOB_BYTES = 1 << 20


class FineTuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    dataset_path: str = Field(min_length=1, description="TFRecord set to train on: its file, or the name its "
                                                        "shards share (from to-tfrecord)")
    module: Literal["face_mesh", "hands", "pose"] = Field(
        description="face_mesh -> face_landmark, hands -> hand_landmark_full, pose -> pose_landmark_full")
    epochs: int = Field(10, ge=1, le=MAX_COUNT)
    batch_size: int = Field(32, ge=1, le=MAX_COUNT)
    learning_rate: float | None = Field(None, gt=0, allow_inf_nan=False,
                                        description="Adam's; None: the module's default (1e-4; pose 1e-5)")
    lora_rank: int | None = Field(None, ge=1, le=MAX_LORA_RANK,
                                  description="None: no LoRA; r: rank-r adapters on every Conv2D and Dense")
    freeze_backbone: bool = True
    validation_split: float = Field(0.1, gt=0, lt=1)
    checkpoint_dir: str = Field("checkpoints", min_length=1)
    gradient_clip: float | None = Field(1.0, gt=0, allow_inf_nan=False, description="global norm; None: off")
    task_type: Literal["landmarks", "classification"] = "landmarks"
    num_classes: int | None = Field(None, ge=2)
    class_names: list[str] | None = None
    mixed_precision: bool = False
    cache_dataset: bool = True
    distributed_workers: int = Field(1, ge=1)
    shard_by: Literal["auto", "data", "file"] = Field(
        "auto", description="how several workers share the training data: 'file' (each reads its own "
                            "TFRecord shards), 'data' (each cuts its slice of every global batch), 'auto' "
                            "(file when the set has a shard per worker, else data)")
    loss_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS),
                                           description="per loss term (losses.DEFAULT_LOSS_WEIGHTS); given "
                                                       "ones replace the defaults, the rest keep theirs")
    preset: str = Field("train", description="augmentation preset (holistic_lab.augment.PRESETS)")

    @field_validator("dataset_path", "checkpoint_dir", mode="before")
    @classmethod
    def _path_as_text(cls, value):
        return str(value) if isinstance(value, Path) else value

    @field_validator("loss_weights")
    @classmethod
    def _known_finite_weights(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; expected some of {tuple(DEFAULT_LOSS_WEIGHTS)}")
        bad = {name: weight for name, weight in weights.items() if not (math.isfinite(weight) and weight >= 0)}
        if bad:
            raise ValueError(f"weights must be finite and >= 0, got {bad}")
        return {**DEFAULT_LOSS_WEIGHTS, **weights}

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        from ..augment.presets import PRESETS  # albumentations: only when a config is built

        if name not in PRESETS:
            raise ValueError(f"unknown augmentation preset {reprlib.repr(name)}; expected one of {tuple(PRESETS)}")
        return name

    @model_validator(mode="after")
    def _classification_fields(self) -> FineTuneConfig:
        if self.task_type == "classification":
            if self.num_classes is None:
                raise ValueError("num_classes: required when task_type is 'classification'")
            if self.class_names is not None and len(self.class_names) != self.num_classes:
                raise ValueError(f"class_names: {len(self.class_names)} names, expected num_classes = "
                                 f"{self.num_classes}")
        return self

    def __init__(self, **fields):
        try:
            super().__init__(**fields)
        except ValidationError as error:
            raise ValueError(f"FineTuneConfig: {_one_line(error)}") from None

    @property
    def step_size(self) -> float:
        """The learning rate the job trains with: its own, else its module's default."""
        return self.learning_rate if self.learning_rate is not None else MODULES[self.module].default_learning_rate

    @property
    def model_name(self) -> str:
        """The shipped model this job fine-tunes."""
        return MODULES[self.module].model_name

    @classmethod
    def from_json(cls, source) -> FineTuneConfig:
        """A config from a dict (the HTTP API's body) or a JSON file's path; ValueError naming the file or field."""
        if isinstance(source, dict):
            return cls(**source)
        path = Path(source)
        fields = read_job_fields(path)
        try:
            return cls(**fields)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def to_json(self) -> str:
        """The config as the JSON `from_json` reads back (every field, defaults included)."""
        return self.model_dump_json(indent=2)


def read_job_fields(path) -> dict:
    """A job JSON file's fields, not yet validated (the CLI lays its options over them);
    a ValueError naming the file when it cannot be read or is not a JSON object."""
    return read_json_object(path, "a job config of FineTuneConfig fields", max_bytes=MAX_JOB_BYTES)


def _one_line(error: ValidationError) -> str:
    """Pydantic's errors as one line per field: `field 'epochs': Input should be >= 1 (got 0)`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r}; expected some of {tuple(FineTuneConfig.model_fields)}")
        elif item["type"] == "missing":
            parts.append(f"field {where!r}: required")
        elif where:
            parts.append(f"field {where!r}: {message} (got {reprlib.repr(item.get('input'))})")  # a 10 MB value: cut
        else:
            parts.append(message)
    return "; ".join(parts)
