"""PReLU models in int8: float PRELU (the default) vs int8 PRELU vs the shipped float model.

XNNPACK has no int8 PReLU kernel, so a fully int8 face_landmark or hand_recrop (the cascade's
PReLU stages; notebook 08 also measures palm_detection_full) runs its PRELU ops outside the
delegate. This measures it: for each of the two stages the shipped model, `quantize_model(..., "int8")` (PRELU float) and the same with
`float_ops=()` (PRELU int8) take turns on one real crop, at 1 and 2 threads; median and p90 and
the ratio to shipped. The tests assert only that PRELU is float in the default model; this is
where "not slower than full int8" is measured.

    python benchmarks/quantize_prelu.py            # 100 crops of calibration, 10 x 10 invokes
    python benchmarks/quantize_prelu.py --quick    # 16 crops, 3 x 5 invokes
"""
from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.convert import tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.quantize import float_ops, quantize_model  # noqa: E402
from holistic_lab.quantize.measure import latency  # noqa: E402
from holistic_lab.quantize.variant import stage_calibration  # noqa: E402
from holistic_lab.variants import STAGES  # noqa: E402

PRELU_STAGES = ("face_landmark", "hand_recrop")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration crops and invokes")
    args = parser.parse_args(argv)
    count, rounds, block = (16, 3, 5) if args.quick else (100, 10, 10)
    crops = stage_calibration(PRELU_STAGES, count=count + 1, progress=False)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {rounds} x {block} invokes per model\n")
    print("| stage | threads | model | float ops | median ms | p90 ms | vs shipped |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for stage in PRELU_STAGES:
        shipped = model_path(STAGES[stage][1])
        model = tflite_to_keras(shipped)
        models = {"shipped": shipped.read_bytes(),
                  "int8, PRELU float": quantize_model(model, "int8", crops[stage][:count]),
                  "int8, PRELU int8": quantize_model(model, "int8", crops[stage][:count], float_ops=())}
        for threads in (1, 2):
            table = latency(models, crops[stage][-1], threads, rounds, block)
            for name, row in table.items():
                kept = "-" if name == "shipped" else ", ".join(f"{op} x{n}" for op, n in float_ops(models[name]).items()) or "none"
                print(f"| {stage} | {threads} | {name} | {kept} | {row.median_ms:.2f} | {row.p90_ms:.2f} | "
                      f"{table['shipped'].median_ms / row.median_ms:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
