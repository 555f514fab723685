"""A fine-tuned Keras model -> a float32 `.tflite`, checked against the Keras model, in a variant folder.

    report = export_variant(run.model, "hands", "variants/hands_lowlight", made_by={"command": "finetune", ...},
                            check_inputs=validation_crops)
    HolisticPipeline.from_variant("variants/hands_lowlight")   # the cascade with the new hand model

The converter's file (TensorFlow's own TFLite converter, `convert.keras_to_tflite`) is run by
the interpreter on the check inputs (real crops when given, plus a random batch in the
model's input range) and must give the Keras model's outputs within `TOLERANCE` (relative to
each output's largest value), or, where the interpreter's own two kernel sets already disagree
by more, within twice their disagreement (`convert.verification`'s float32 floor rule: pose's
segmentation logits, up to about +-1600, need it even for the shipped weights); otherwise
nothing is written. The variant's manifest records that check next to the job's config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from ..convert import keras_to_tflite
from ..convert.samples import INPUT_RANGE
from ..convert.verification import OutputCheck, relative_error, run_keras, run_tflite
from ..variants import carried_stages, read_variant, write_variant
from .modules import train_module

TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportReport:
    manifest: Path
    stage: str
    tflite_bytes: int
    max_relative_error: float     # interpreter vs Keras, over every output and check input

    def __str__(self) -> str:
        return (f"{self.stage}.tflite ({self.tflite_bytes / 1e6:.2f} MB, float32) in {self.manifest.parent}: "
                f"interpreter vs Keras max relative error {self.max_relative_error:.1e} (tolerance {TOLERANCE:.0e})")


def checked_tflite(model: keras.Model, module: str, check_inputs: np.ndarray | None = None) -> tuple[bytes, float]:
    """(`model` as float32 .tflite bytes, the interpreter's max relative error to Keras on the
    check inputs and a random batch); a ValueError, and nothing returned, beyond the tolerance
    (module docstring)."""
    spec = train_module(module)
    low, high = INPUT_RANGE[spec.model_name]
    shape = (spec.input_size, spec.input_size, 3)
    if tuple(model.input_shape[1:]) != shape:
        raise ValueError(f"model input {model.input_shape[1:]} is not the {module} module's {shape}")
    if any(getattr(layer, "lora_enabled", False) for layer in model.layers):
        raise ValueError("the model still has LoRA adapters; merge them first (train.merge_lora)")
    batches = [np.random.default_rng(0).uniform(low, high, (2, *shape)).astype(np.float32)]
    if check_inputs is not None:
        check_inputs = np.asarray(check_inputs, np.float32)
        if check_inputs.ndim != 4 or check_inputs.shape[1:] != shape:
            raise ValueError(f"check_inputs must be (N, {', '.join(map(str, shape))}), got {check_inputs.shape}")
        batches.append(check_inputs[:8])
    import tensorflow as tf

    tflite = keras_to_tflite(model)
    checks = [OutputCheck(f"batch {index}", name, relative_error(interpreted, expected),
                          relative_error(builtin, interpreted))
              for index, batch in enumerate(batches)
              for name, interpreted, expected, builtin in zip(
                  model.output_names, run_tflite(tflite, batch), run_keras(model, batch),
                  run_tflite(tflite, batch, tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))]
    failed = [check for check in checks if not check.passed(TOLERANCE)]
    if failed:
        worst = max(failed, key=lambda check: check.error)
        raise ValueError(f"the converted {spec.stage} model differs from the Keras model by {worst.error:.1e} "
                         f"on output {worst.output} (relative; tolerance {TOLERANCE:.0e}, or twice the interpreter's "
                         f"own kernel spread {worst.floor:.1e}); nothing written")
    return tflite, max(check.error for check in checks)


def export_variant(model: keras.Model, module: str, folder, made_by: dict, name: str | None = None,
                   check_inputs: np.ndarray | None = None, source=None, metrics: dict | None = None,
                   overwrite: bool = False) -> ExportReport:
    """Convert `model` (adapters merged), check it, and write it as `module`'s stage of a variant
    folder. `source`, the variant the job started from, passes on its other stages (files, kinds
    and metrics), so fine-tuning one stage of a pruned or quantized variant keeps the rest."""
    spec = train_module(module)
    tflite, error = checked_tflite(model, module, check_inputs)
    name = name or Path(folder).name
    stages, kinds, all_metrics = carried_stages(source, replaced=spec.stage)
    stages[spec.stage], kinds[spec.stage] = tflite, "float32"
    all_metrics[spec.stage] = {"tflite_vs_keras_max_relative_error": error, **(metrics or {})}
    # a gesture classifier sits on the hand model it was trained with: kept unless that model is replaced
    gesture = read_variant(source).gesture if source is not None and spec.stage != "hand_landmark" else None
    manifest = write_variant(folder, stages, name, made_by, source=source, kinds=kinds, metrics=all_metrics,
                             overwrite=overwrite, gesture=gesture)
    return ExportReport(manifest, spec.stage, len(tflite), error)
