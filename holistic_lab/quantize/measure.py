"""What each quantization mode costs and buys, measured side by side in one run.

    models = {"shipped": model_path("face_landmark"), "int8": "variants/int8/face_landmark.tflite"}
    stage_rows("face_landmark", models, crops)      # size, latency 1/2 threads, peak memory, output error
    module_accuracy("face_landmark", models)        # error on human annotations, paired, with intervals
    cascade_accuracy({"shipped": None, "int8": "variants/int8"})   # the whole cascade, fixture sets
    roi_drift({"shipped": None, "pose int8": "variants/pose_int8"}, images)  # error carried down the cascade

Latency: the TFLite interpreter (XNNPACK) on one real crop; the models take turns in blocks of
`block` invokes, the first of each block not timed (it wakes the model's thread pool, which an
idle pool's spin-wait would otherwise charge to the next model), for `rounds` rounds; median
and p90 of the timed invokes, ratio to the first model's median. Peak memory: a fresh Python
process loads TensorFlow, resets its peak-RSS mark (Linux `/proc/self/clear_refs`), loads the
model and runs it once; the new peak above the RSS before the model, so the interpreter's arena
and decoded weights count, the TensorFlow library does not (Linux only).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..mediapipe_models import model_path
from ..variants import STAGES, load_interpreter

STAGE_MODULES = {"hand_landmark": "hands", "face_landmark": "face_mesh", "pose_landmark": "pose"}


def model_bytes(model) -> bytes:
    """`model` (bytes, or a .tflite path) as bytes."""
    return bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()


def interpreter(model, num_threads: int = 1):
    """`model` (bytes or a .tflite path) loaded in the TFLite interpreter."""
    return load_interpreter(model_bytes(model), num_threads)


def run_model(loaded, crop: np.ndarray) -> list[np.ndarray]:
    """One crop (H, W, 3) through a loaded interpreter -> its outputs in graph order. A model with
    quantized inputs or outputs (ai-edge-quantizer with float_io=False) gets its input quantized and
    its outputs dequantized with the scale and zero point stored in the model."""
    detail = loaded.get_input_details()[0]
    loaded.set_tensor(detail["index"], _to_input(np.asarray(crop, np.float32)[None], detail))
    loaded.invoke()
    return [_dequantized(loaded.get_tensor(d["index"]), d) for d in loaded.get_output_details()]


def _scale_and_zero(detail) -> tuple[float, int] | None:
    """The (scale, zero point) of an integer input or output: None if it is not quantized (plain
    integers pass through); a ValueError naming it if its scale is per channel or not positive."""
    params = detail.get("quantization_parameters", {})
    scales, zeros = np.asarray(params.get("scales", [])), np.asarray(params.get("zero_points", []))
    if scales.size == 0:
        return None
    if scales.size != 1 or not scales[0] > 0:
        raise ValueError(f"tensor {detail['name']!r}: expected one positive quantization scale, got {scales.tolist()}")
    return float(scales[0]), int(zeros[0]) if zeros.size else 0


def _to_input(tensor: np.ndarray, detail) -> np.ndarray:
    quantization = None if np.issubdtype(detail["dtype"], np.floating) else _scale_and_zero(detail)
    if quantization is None:
        return tensor.astype(detail["dtype"], copy=False)
    scale, zero = quantization
    limits = np.iinfo(detail["dtype"])
    # half away from zero, as TFLite's QUANTIZE rounds (np.round would round half to even)
    steps = np.sign(tensor / scale) * np.floor(np.abs(tensor / scale) + 0.5)
    return np.clip(steps + zero, limits.min, limits.max).astype(detail["dtype"])


def _dequantized(tensor: np.ndarray, detail) -> np.ndarray:
    quantization = None if np.issubdtype(tensor.dtype, np.floating) else _scale_and_zero(detail)
    if quantization is None:
        return tensor.copy()
    scale, zero = quantization
    return (tensor.astype(np.float32) - zero) * np.float32(scale)


class TFLiteModel:
    """A .tflite stage model behind the Keras call that chapter 05's scoring uses
    (`model(batch) -> outputs`, `model.output_names`), one crop at a time."""

    def __init__(self, model, output_names):
        self.loaded = interpreter(model)
        self.output_names = list(output_names)

    def __call__(self, batch, training: bool = False):
        outputs = [run_model(self.loaded, crop) for crop in np.asarray(batch, np.float32)]
        return [np.concatenate([o[i] for o in outputs]) for i in range(len(outputs[0]))]


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    n: int


def latency(models: dict, crop, num_threads: int = 1, rounds: int = 10, block: int = 10) -> dict[str, Latency]:
    """name -> Latency of each model on `crop` (one input for all, or a dict name -> input for models
    whose inputs differ), the models taking turns (see the module docstring)."""
    if rounds < 1 or block < 1:
        raise ValueError(f"rounds and block must be >= 1, got {rounds}, {block}")
    crops = crop if isinstance(crop, dict) else dict.fromkeys(models, crop)
    if set(crops) != set(models):
        raise ValueError(f"crop: inputs for {sorted(crops)}, expected one per model: {sorted(models)}")
    loaded = {name: interpreter(model, num_threads) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in loaded.items():
            run_model(model, crops[name])  # wakes this model's pool; not timed
            for _ in range(block):
                start = time.perf_counter()
                model.invoke()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: Latency(float(np.median(t)), float(np.percentile(t, 90)), len(t)) for name, t in times.items()}


_MEMORY_PROBE = """
import sys, warnings
import numpy as np
import tensorflow as tf
warnings.simplefilter("ignore")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS: what importing TensorFlow peaked at is forgotten
before = status("VmRSS:")
interpreter = tf.lite.Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interpreter.invoke()
print(status("VmHWM:") - before)
"""


def peak_memory_mb(model) -> float:
    """Peak resident memory (MB) that loading and running `model` adds to a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(model_bytes(model))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path)], capture_output=True, text=True,
                              env=env, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe failed: {done.stderr.strip().splitlines()[-1:]}")
    return int(done.stdout.strip().splitlines()[-1]) / 1024  # /proc reports KB


def output_error(reference, candidate, crops: np.ndarray) -> list[float]:
    """Per output: mean |candidate - reference| over `crops`, in the output's own units (crop pixels
    for landmark and box outputs, logits for scores)."""
    ref, cand = interpreter(reference), interpreter(candidate)
    diffs = [[np.abs(c - r).mean() for c, r in zip(run_model(cand, crop), run_model(ref, crop))] for crop in crops]
    return [float(v) for v in np.mean(diffs, axis=0)]


def stage_rows(stage: str, models: dict, crops: np.ndarray, threads=(1, 2), rounds: int = 10, block: int = 10,
               memory: bool = True) -> list[dict]:
    """One row per model of `stage` (a label: any model name): MB on disk, latency at each thread count (median, p90, ratio to the
    first model), peak memory, and output 0's mean error against the first model on `crops`."""
    names = list(models)
    timings = {n: latency(models, crops[0], n, rounds, block) for n in threads}
    rows = []
    for name in names:
        row = {"stage": stage, "model": name, "MB": len(model_bytes(models[name])) / 1e6}
        for n, table in timings.items():
            base = table[names[0]].median_ms
            row[f"ms@{n}"], row[f"p90@{n}"] = table[name].median_ms, table[name].p90_ms
            row[f"speedup@{n}"] = base / table[name].median_ms
        row["n"] = timings[threads[0]][name].n
        if memory:
            row["peak MB"] = peak_memory_mb(models[name])
        row["output error"] = 0.0 if name == names[0] else output_error(models[names[0]], models[name], crops)[0]
        rows.append(row)
    return rows


def module_accuracy(stage: str, models: dict, cases=None):
    """Chapter 05's human-annotation scoring of a landmark stage's models (name -> .tflite) on the same
    crops, paired: a `train.evaluate.Comparison` (its summary: error, interval, change vs the first)."""
    from ..convert import tflite_to_keras
    from ..train.evaluate import Comparison, case_inputs, human_cases, score_model

    if stage not in STAGE_MODULES:
        raise ValueError(f"module_accuracy: {stage} is not a landmark stage; expected one of {', '.join(STAGE_MODULES)}")
    module = STAGE_MODULES[stage]
    cases = human_cases(module) if cases is None else cases
    names = tflite_to_keras(model_path(STAGES[stage][1])).output_names
    inputs = case_inputs(cases, None, 1)
    scores = {name: score_model(TFLiteModel(model, names), cases, module, inputs) for name, model in models.items()}
    baseline = next(iter(models))
    comparison = Comparison(module, {"clean": scores}, [c.source for c in cases],
                            [c.image or str(i) for i, c in enumerate(cases)])
    return comparison, baseline


def cascade_accuracy(variants: dict, sets=None, progress: bool = False) -> list[dict]:
    """name -> variant folder (None: shipped): each cascade over the fixture sets (`metrics.evaluate`).
    One row per set and part: its metric (PCK for bodies and hands, NME for faces), then per variant
    the value and how many annotated parts it found."""
    from ..metrics import evaluate_fixtures
    from ..pipeline import HolisticPipeline

    table: dict[tuple, dict] = {}
    for name, folder in variants.items():
        pipeline = HolisticPipeline() if folder is None else HolisticPipeline.from_variant(folder)
        for row in evaluate_fixtures(pipeline, sets, progress=progress).rows:
            metric = next(key for key in row if key.startswith("PCK") or key == "NME")
            entry = table.setdefault((row["dataset"], row["part"]), {"set": row["dataset"], "part": row["part"],
                                                                     "metric": metric})
            entry[name] = row[metric]
            entry[f"found {name}"] = row["found"]
    return list(table.values())


def roi_drift(variants: dict, images: list[np.ndarray], parts=("face", "left_hand", "right_hand")) -> list[dict]:
    """How far each variant's ROIs and landmarks move from the first variant's (the shipped cascade,
    say) on the same images: ROI centre shift (median, p90) and landmark shift (median) as a share of
    the first variant's ROI side, per part, over the images where both found the part; `lost`: found by
    the first, not by this one. Medians: a hand given to the other person is one huge shift."""
    from ..pipeline import HolisticPipeline

    pipelines = {name: HolisticPipeline() if folder is None else HolisticPipeline.from_variant(folder)
                 for name, folder in variants.items()}
    runs = {name: [] for name in variants}
    for rgb in images:
        for name, pipeline in pipelines.items():
            result = pipeline.process(rgb)
            runs[name].append((result, dict(pipeline.last_rois)))
    base = next(iter(variants))
    rows = []
    for name in list(variants)[1:]:
        for part in parts:
            centre, points, missed = [], [], 0
            for (ref, ref_rois), (got, got_rois) in zip(runs[base], runs[name]):
                if not ref.present[part]:
                    continue
                if not got.present[part] or part not in got_rois:
                    missed += 1
                    continue
                width, height = ref.width, ref.height
                a, b = ref_rois[part], got_rois[part]
                side = a.width * width
                centre.append(np.hypot((a.x_center - b.x_center) * width, (a.y_center - b.y_center) * height) / side)
                diff = (got[part] - ref[part])[:, :2] * [width, height]
                points.append(np.linalg.norm(diff, axis=1).mean() / side)
            rows.append({"variant": name, "part": part, "n": len(centre), "lost": missed,
                         "roi shift": float(np.median(centre)) if centre else None,
                         "roi shift p90": float(np.percentile(centre, 90)) if centre else None,
                         "landmark shift": float(np.median(points)) if points else None})
    return rows


def cascade_latency(variants: dict, images: list[np.ndarray], num_threads: int = 1, repeats: int = 5,
                    warmup: int = 1) -> list[dict]:
    """End to end, image -> 543 points, for each variant's cascade (name -> folder, None: shipped):
    the pipelines take turns on each image; median and p90 of `HolisticPipeline.last_timings["total"]`
    and of the models' own time (the sum of the stage inferences), ratio to the first variant."""
    from ..pipeline import HolisticPipeline

    pipelines = {name: HolisticPipeline(num_threads=num_threads) if folder is None else
                 HolisticPipeline.from_variant(folder, num_threads=num_threads) for name, folder in variants.items()}
    total = {name: [] for name in variants}
    models = {name: [] for name in variants}
    for round_index in range(warmup + repeats):
        for rgb in images:
            for name, pipeline in pipelines.items():
                pipeline.process(rgb)
                if round_index >= warmup:
                    timings = pipeline.last_timings
                    total[name].append(timings["total"])
                    models[name].append(sum(v for k, v in timings.items() if k not in ("total", "pre_post_processing")))
    base = float(np.median(total[next(iter(variants))]))
    return [{"variant": name, "threads": num_threads, "n": len(total[name]), "ms": float(np.median(total[name])),
             "p90": float(np.percentile(total[name], 90)), "models ms": float(np.median(models[name])),
             "speedup": base / float(np.median(total[name]))} for name in variants]
