"""One fine-tuning job from start to variant: what `holistic-lab finetune` and the job API both run.

    result = run_job(FineTuneConfig.from_json("job.json"), "variants/faces_v1", start_from="variants/faces_v0")
    print(result)          # the variant's path, best epoch and its val loss, trainable parameters

Everything that can refuse the job is checked before training starts (the output folder, the
starting variant, the config's supported fields), so no hour of training ends in a refused
output. The variant holds the module's new stage and the starting variant's other stages; its
manifest records the job (`made_by`), the variant it started from (`source`) and the run's metrics.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import display_path, output_lock
from ..variants import check_variant_output, read_variant
from . import distributed
from .config import FineTuneConfig
from .export import ExportReport, export_variant
from .loop import FineTuneRun, check_supported, finetune
from .modules import train_module

CHECK_CROPS = 8   # real crops the exported .tflite is checked on (besides a random batch)


@dataclass(frozen=True)
class JobResult:
    run: FineTuneRun
    export: ExportReport | None   # None on a worker other than the chief (the chief writes the variant)
    metrics: dict

    def __str__(self) -> str:
        val_loss = self.metrics["val_loss"]
        wrote = (f"wrote {display_path(self.export.manifest.parent)} ({self.export.stage}.tflite, manifest.json)"
                 if self.export is not None else "trained as a worker; the chief (worker 0) writes the variant")
        return "\n".join([
            wrote,
            f"best epoch {self.run.best_epoch} of {len(self.run.history.get('loss', []))}: val_loss "
            + ("n/a" if val_loss is None else f"{val_loss:.4g}"),
            f"trainable params {self.run.trainable_params:,} of {self.run.total_params:,}",
            f"checkpoints in {display_path(self.run.checkpoint_dir)}",
        ])


def start_model(start_from, module: str) -> Path | None:
    """The starting variant's model for the module's stage; None (the shipped model) when it has none."""
    if start_from is None:
        return None
    return read_variant(start_from).stages.get(train_module(module).stage)


def check_job_outputs(config: FineTuneConfig, out, start_from=None, overwrite: bool = False) -> Path:
    """Refuse, before any training, an output folder the variant cannot be written to."""
    out = check_variant_output(out, overwrite)
    resolved = out.resolve()
    if start_from is not None and Path(start_from).resolve() == resolved:
        raise ValueError(f"--out {display_path(out)} is also --from, the variant this job starts from; "
                         "write the fine-tuned variant to a new folder")
    checkpoints = Path(config.checkpoint_dir).resolve()
    if checkpoints == resolved or resolved in checkpoints.parents or checkpoints in resolved.parents:
        raise ValueError(f"--checkpoint-dir {config.checkpoint_dir} and --out {display_path(out)} must be separate "
                         "folders (a variant holds only its models and manifest)")
    return out


def run_metrics(run: FineTuneRun) -> dict:
    val_losses = run.history.get("val_loss", [])
    val_loss = val_losses[run.best_epoch - 1] if 1 <= run.best_epoch <= len(val_losses) else None
    return {"best_epoch": run.best_epoch, "val_loss": val_loss, "train_crops": run.train_crops,
            "trainable_params": run.trainable_params}


def check_crops(config: FineTuneConfig) -> np.ndarray | None:
    """A few of the data set's clean crops, the inputs the exported model is checked on."""
    from .data import iter_labelled, iter_module_crops

    crops = [crop.input for crop in itertools.islice(
        iter_module_crops(iter_labelled(config.dataset_path), config.module), CHECK_CROPS)]
    return np.stack(crops) if crops else None


def run_job(config: FineTuneConfig, out, start_from=None, command: str = "run_job", overwrite: bool = False,
            progress: bool = True, seed: int = 0, steps_per_epoch: int | None = None) -> JobResult:
    """Fine-tune `config`'s module (from `start_from`'s model for that stage, when it is a variant
    with one) and write the result as the variant folder `out`; `command` is recorded as what made it."""
    check_supported(config)
    starting = start_model(start_from, config.module)
    if not distributed.is_chief():   # trains in step with the chief, which alone writes checkpoints and the variant
        run = finetune(config, start_model=starting, progress=progress, seed=seed, steps_per_epoch=steps_per_epoch)
        return JobResult(run, None, run_metrics(run))
    check_job_outputs(config, out, start_from, overwrite)
    with output_lock(out, "--out"):   # a second run on the same variant is refused now, not an hour later
        run = finetune(config, start_model=starting, progress=progress, seed=seed, steps_per_epoch=steps_per_epoch)
        metrics = run_metrics(run)
        made_by = {"command": command, "config": json.loads(config.to_json())}
        report = export_variant(run.model, config.module, out, made_by, check_inputs=check_crops(config),
                                source=start_from, metrics=metrics, overwrite=overwrite)
    return JobResult(run, report, metrics)
