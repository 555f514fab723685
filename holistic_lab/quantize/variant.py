"""Quantize several stages at once into a model-variant folder the cascade runs.

    quantize_variant("variants/int8", "int8")                                  # every stage, PRELU float
    quantize_variant("variants/int8s", "int8", selective=True)                 # + the worst layers float
    quantize_variant("variants/pose_int8", "int8", stages=["pose_landmark"],
                     source="variants/pose_pruned30")                          # on top of another variant
    HolisticPipeline.from_variant("variants/int8")

Each stage starts from the float model the source variant runs (its stage file when it has one, the
shipped model otherwise), opened as Keras. Calibration crops come from the cascade the source variant
makes (its own stages crop for the next), on real images: the default frames, or `calibration`,
an iterable of images or a folder of photographs. Stages not quantized are carried from the source.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import display_path
from ..mediapipe_models import model_path
from ..progress import progress_bar
from ..settings import quick_or
from ..variants import STAGES, carried_stages, check_variant_output, read_variant, write_variant
from .calibration import MIN_CROPS, calibration_crops, default_calibration_frames, folder_images
from .modes import CALIBRATED, FLOAT_BY_DEFAULT, check_mode, check_op_names, float_ops, quantize_model
from .selective import layer_errors, output_layers, sensitive_layers

QUICK_CROPS = 16      # per stage in quick mode (CI): the checks are the same, the ranges rougher
SELECTIVE_LAYERS = 3  # how many of the worst layers (by the debugger) `selective` keeps float, beside the heads


def check_stages(stages) -> tuple[str, ...]:
    """`stages` ("all", a comma-separated string or a list) as a tuple of stage names; unknown ones refused."""
    names = list(STAGES) if stages in (None, "all") else stages.split(",") if isinstance(stages, str) else list(stages)
    names = [name.strip() for name in names]
    unknown = [name for name in names if name not in STAGES]
    if unknown or not names:
        raise ValueError(f"unknown stage {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"expected 'all' or some of {', '.join(STAGES)}")
    return tuple(dict.fromkeys(names))


def source_model_file(stage: str, source=None) -> Path:
    """The .tflite the cascade of `source` (None: the shipped models) runs for `stage`."""
    if source is not None:
        variant = read_variant(source)
        if stage in variant.stages:
            return variant.stages[stage]
    return model_path(STAGES[stage][1])


def default_crop_count() -> int:
    return quick_or(MIN_CROPS, QUICK_CROPS)


def stage_calibration(stages, source=None, calibration=None, count: int | None = None,
                      progress: bool = True) -> dict[str, np.ndarray]:
    """stage -> real crops through `source`'s cascade, from `calibration` (images, paths or a folder)
    or the default frames; at most `count` per stage (default: 100, 16 in quick mode). `quantize_variant`
    also takes the result itself as its `calibration` (stage -> crops), to reuse it across modes."""
    from ..pipeline import HolisticPipeline

    count = count or default_crop_count()
    if isinstance(calibration, (str, Path)):
        calibration = folder_images(calibration)
    images = default_calibration_frames() if calibration is None else calibration
    pipeline = HolisticPipeline.from_variant(source, static_image_mode=True) if source is not None else None
    return calibration_crops(images, stages, limit=count, pipeline=pipeline, progress=progress)


def quantize_variant(out, mode: str, stages="all", source=None, calibration=None, selective: bool = False,
                     float_op_names: tuple[str, ...] | None = None, selective_layers: int = SELECTIVE_LAYERS,
                     crop_count: int | None = None, overwrite: bool = False, command: str | None = None,
                     progress: bool = True) -> Path:
    """Write a variant at `out` with `stages` quantized in `mode` (see `modes.MODES`); returns its manifest.

    selective (int8 only): the output heads stay float (`selective.output_layers`), and so do the
    QuantizationDebugger's `selective_layers` worst layers above half a quantization step.
    float_op_names (int8 only): op names kept float (default PRELU where the model has it; () for
    none). Checked before any work: `out`, the mode, the stages, the source variant, the folder."""
    check_mode(mode)
    stages = check_stages(stages)
    if (selective or float_op_names is not None) and mode != "int8":
        raise ValueError(f"selective and float ops apply to mode int8 only, not {mode}")
    if selective_layers < 0:
        raise ValueError(f"selective_layers must be >= 0, got {selective_layers}")
    if isinstance(calibration, (str, Path)) and mode not in CALIBRATED:
        raise ValueError(f"a calibration folder applies to the calibrated modes ({', '.join(CALIBRATED)}), not {mode}")
    check_variant_output(out, overwrite)
    if source is not None and Path(source).resolve() == Path(out).resolve():  # its stage files would be replaced
        raise ValueError(f"--out {display_path(out)} is also --from, the variant this starts from; "
                         "write the quantized variant to a new folder")
    if float_op_names:
        check_op_names(float_op_names)  # a typo would quantize everything: refused before the slow part
    carried, kinds, metrics = carried_stages(source) if source is not None else ({}, {}, {})
    if isinstance(calibration, (str, Path)):
        folder_images(calibration)  # an empty or missing folder is refused before the slow part
    if isinstance(calibration, dict):  # stage -> crops already made (a notebook reuses them across modes)
        missing = [stage for stage in stages if stage not in calibration]
        if mode in CALIBRATED and missing:
            raise ValueError(f"calibration crops given for {', '.join(calibration) or 'no stage'} but not for "
                             f"{', '.join(missing)}")
        crops = {stage: calibration[stage][:crop_count] for stage in stages if stage in calibration}
    else:
        crops = stage_calibration(stages, source, calibration, crop_count, progress) if mode in CALIBRATED else {}
    from ..convert import tflite_to_keras

    models = dict(carried)
    for stage in progress_bar(stages, f"quantize {mode}", progress):
        source_file = source_model_file(stage, source)
        try:
            model = tflite_to_keras(source_file)
        except ValueError as exc:  # an int8 file has no float weights to quantize again
            raise ValueError(f"{stage}: cannot open {display_path(source_file)} as a float model to quantize ({exc}); "
                             "start from a float variant (or the shipped models)") from None
        float_layers: tuple[str, ...] = ()
        if selective:
            kept_ops = FLOAT_BY_DEFAULT if float_op_names is None else float_op_names  # already float: no pick
            table = [row for row in layer_errors(model, crops[stage]) if row.op not in kept_ops] if selective_layers else []
            worst = sensitive_layers(table, selective_layers)
            float_layers = tuple(dict.fromkeys(output_layers(model) + worst))
        models[stage] = quantize_model(model, mode, crops.get(stage), float_ops=float_op_names, float_nodes=float_layers)
        earlier_kind = kinds.get(stage) if stage in carried else None
        kind = "int8-selective" if selective else mode
        kinds[stage] = kind if earlier_kind in (None, "float32", "float16") else f"{earlier_kind}+{kind}"
        metrics[stage] = {"bytes": len(models[stage]), "float_ops": float_ops(models[stage]),
                          "float_layers": list(float_layers),
                          "calibration_crops": int(len(crops[stage])) if stage in crops else 0,
                          "from": display_path(source_file)}
    config = {"mode": mode, "stages": list(stages), "selective": selective, "selective_layers": selective_layers,
              "float_ops": None if float_op_names is None else list(float_op_names),
              "calibration": (None if mode not in CALIBRATED else "default frames" if calibration is None else
                              str(calibration) if isinstance(calibration, (str, Path)) else "crops given")}
    name = Path(out).name or "quantized"
    gesture = read_variant(source).gesture if source is not None else None  # carried as it is (float)
    return write_variant(out, models, name, {"command": command or "quantize_variant", "config": config},
                         source=source, kinds=kinds, metrics=metrics, overwrite=overwrite, gesture=gesture)

