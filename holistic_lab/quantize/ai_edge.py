"""The other int8 route: Google's ai-edge-quantizer (LiteRT), measured against the TFLite converter.

ai-edge-quantizer rewrites a float32 `.tflite` flatbuffer by recipe (regex over tensor names x op
kinds -> int8/int16 weights and activations), calibrating on the same real crops. Chapter 08 uses it
as the comparison the choice of quantizer rests on, not as a second way to build variants:

    float32 = quantize_model(tflite_to_keras(model_path("face_landmark")), "float32")
    int8 = ai_edge_quantize(float32, crops)                # static int8 (activation_bits=16: 16x8)
    rows, models = compare_quantizers("face_landmark", crops, held_out)   # size, speed, error, float ops

Its static recipe leaves the ops it has no integer policy for (PRELU among them) in float32 by itself.
It would also quantize the model's input and output; `float_io=True` (the default) keeps them float32
with a no-quantize rule for INPUT and OUTPUT, as the converter's files are, so both fit a cascade slot
and both pay their QUANTIZE / DEQUANTIZE inside the timed invoke.

ai-edge-quantizer is an optional dependency (`pip install -e ".[compare]"`; `make` installs it).
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from ..native_logs import filtered_native_stderr
from ..variants import STAGES, TFLITE_IDENTIFIER, load_interpreter, shipped_signature
from .calibration import check_calibration
from .measure import model_bytes, stage_rows
from .modes import float_ops, quantize_model
from .variant import source_model_file

ACTIVATION_BITS = (8, 16)   # static_wi8_ai8, static_wi8_ai16 (the 16x8 mode)
_TOOL = ("ai-edge-quantizer is not installed: pip install -e '.[compare]' (or `make setup`), "
         "which adds ai-edge-quantizer and its LiteRT runtime")


def _loaded_float_model(model: bytes, stage: str):
    """`model` loaded, or a ValueError naming `stage` if it is not a float32 .tflite with one signature
    of one input (what a recipe is applied to)."""
    if model[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{stage}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier at bytes 4..8)")
    loaded = load_interpreter(model)
    signatures = loaded.get_signature_list()
    if not signatures:
        raise ValueError(f"{stage}: the model has no signature (the shipped MediaPipe files have none); pass the "
                         "float32 export, quantize_model(tflite_to_keras(path), 'float32')")
    if len(signatures) != 1 or len(next(iter(signatures.values()))["inputs"]) != 1:
        raise ValueError(f"{stage}: expected one signature with one input, got {len(signatures)} signatures "
                         f"with inputs {[list(s['inputs']) for s in signatures.values()]}")
    quantized = [t["name"] for t in loaded.get_tensor_details() if len(t["quantization_parameters"]["scales"])]
    if quantized:
        raise ValueError(f"{stage}: expected a float32 model, but {len(quantized)} tensors are already quantized "
                         f"(first: {quantized[0]!r}); quantize the float32 export instead")
    return loaded


def ai_edge_quantize(float_model, calibration: np.ndarray, activation_bits: int = 8, float_io: bool = True,
                     stage: str = "the model") -> bytes:
    """`float_model` (a float32 .tflite: bytes or path) quantized by ai-edge-quantizer's static recipe:
    int8 weights and `activation_bits` activations, ranges calibrated on `calibration` (real crops,
    (n, H, W, 3)); inputs and outputs float32 unless `float_io` is False."""
    if activation_bits not in ACTIVATION_BITS:
        raise ValueError(f"activation_bits: expected one of {ACTIVATION_BITS}, got {activation_bits!r}")
    model = model_bytes(float_model)
    loaded = _loaded_float_model(model, stage)
    key, signature = next(iter(loaded.get_signature_list().items()))
    crops = check_calibration(calibration, loaded.get_input_details()[0]["shape"], stage)
    try:
        from ai_edge_quantizer import algorithm_manager, qtyping, quantizer, recipe
    except ImportError as exc:
        raise ImportError(_TOOL) from exc

    tool = quantizer.Quantizer(model)
    tool.load_quantization_recipe(recipe.static_wi8_ai8() if activation_bits == 8 else recipe.static_wi8_ai16())
    if float_io:
        for end in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            tool.update_quantization_recipe(regex=".*", operation_name=end,
                                            algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
    output = io.StringIO()
    try:
        with contextlib.redirect_stderr(output), contextlib.redirect_stdout(output), warnings.catch_warnings(), \
                filtered_native_stderr():
            # its progress bars and size report, its LiteRT runtime's start-up line, and its notice that
            # calibration keeps every tensor (it must)
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            ranges = tool.calibrate({key: [{signature["inputs"][0]: crop[None]} for crop in crops]}, num_threads=1)
            result = tool.quantize(ranges, enable_progress_bar=False, enable_progress_report=False)
    except Exception as exc:
        tail = output.getvalue().strip()[-2000:]
        raise RuntimeError(f"{stage}: ai-edge-quantizer failed: {exc}" + (f"\nits output:\n{tail}" if tail else "")) \
            from exc
    return bytes(result.quantized_model)


def io_types(model) -> str:
    """'float32 -> float32, float32': the dtype of each input, then of each output in graph order."""
    loaded = load_interpreter(model_bytes(model))
    names = [[np.dtype(d["dtype"]).name for d in details]
             for details in (loaded.get_input_details(), loaded.get_output_details())]
    return " -> ".join(", ".join(side) for side in names)


def compare_quantizers(stage: str, calibration: np.ndarray, held_out: np.ndarray, threads=(1,), rounds: int = 10,
                       block: int = 10, memory: bool = False, activation_bits: int = 8
                       ) -> tuple[list[dict], dict[str, bytes]]:
    """The float32 export of `stage`, the TFLite converter's int8 (this chapter's default: PRELU float)
    and ai-edge-quantizer's static int8, both calibrated on `calibration` (activation_bits=16: both in
    16x8): `measure.stage_rows` (size, latency, output error against float32 on `held_out`) plus, per
    model, the ops left in float32 and its input/output types. Returns (rows, label -> model bytes)."""
    from ..convert import tflite_to_keras

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if activation_bits not in ACTIVATION_BITS:
        raise ValueError(f"activation_bits: expected one of {ACTIVATION_BITS}, got {activation_bits!r}")
    shape = shipped_signature(stage)[0][0][0]
    calibration = check_calibration(calibration, shape, stage)
    held_out = check_calibration(held_out, shape, f"{stage} (held out)")
    mode = "int8" if activation_bits == 8 else "int16x8"
    keras_model = tflite_to_keras(source_model_file(stage))
    reference = quantize_model(keras_model, "float32")
    models = {"float32": reference,
              f"TFLite converter {mode}": quantize_model(keras_model, mode, calibration),
              f"ai-edge-quantizer {mode}": ai_edge_quantize(reference, calibration, activation_bits, stage=stage)}
    rows = stage_rows(stage, models, held_out, threads=threads, rounds=rounds, block=block, memory=memory)
    for row in rows:
        model = models[row["model"]]
        row["float ops"] = sum(float_ops(model).values())
        row["in -> out"] = io_types(model)
    return rows, models
