"""Seconds per distillation epoch (holistic_lab.prune.distill) for the three landmark models.

    python benchmarks/distill_epoch.py [--crops 64] [--epochs 7] [--batch-size 16] [--out times.json]

Each model distils a copy of itself with one convolution's kernel halved (the unpruned size: a
pruned student is smaller, so this is an upper bound) on `recovery_crops` of its stage. Prints per
model the first epoch (it includes tracing the step) and the median, min and max of the others.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from holistic_lab.convert import tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.prune import distill, recovery_crops  # noqa: E402

MODELS = {"hand_landmark": "hand_landmark_full", "face_landmark": "face_landmark", "pose_landmark": "pose_landmark_full"}


def halved_copy(model_name: str, index: int = 6) -> keras.Model:
    model = tflite_to_keras(model_path(model_name))
    convolution = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D][index]
    kernel, *rest = convolution.get_weights()
    convolution.set_weights([kernel * 0.5, *rest])
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", help="write the rows as JSON here")
    arguments = parser.parse_args(argv)
    rows = []
    for stage, model_name in MODELS.items():
        crops = recovery_crops(stage, arguments.crops, progress=False)
        run = distill(halved_copy(model_name), tflite_to_keras(model_path(model_name)), crops, arguments.epochs,
                      batch_size=arguments.batch_size, progress=False)
        later = run.seconds_per_epoch[1:]
        rows.append({"model": model_name, "crops": len(crops), "seconds": run.seconds_per_epoch,
                     "val_loss": run.history["val_loss"]})
        spread = f"median {statistics.median(later):.1f} s (min {min(later):.1f}, max {max(later):.1f}, " \
                 f"n={len(later)})" if later else "no later epoch"
        print(f"{model_name}: {len(crops)} crops, first epoch {run.seconds_per_epoch[0]:.1f} s, later {spread}")
    if arguments.out:
        with open(arguments.out, "w") as file:
            json.dump(rows, file, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
