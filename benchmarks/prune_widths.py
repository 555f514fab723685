"""Where MACs and TFLite latency disagree: layer widths against XNNPACK's channel tiles, and layers against the model.

Two measurements behind chapter 07's width rounding (`holistic_lab.prune.cost`):
1. width sweeps of mid-network pose_landmark_full layers, each width its own one-layer model, all widths
   of a layer taking turns: a 1x1 Conv2D and a 5x5 DepthwiseConv2D at 32x32 (8..full in steps of 4), and
   the same two plus a 3x3 depthwise at 16x16 in steps of 1 over 112..144 (where tile edges fall);
2. hand_landmark_full: the sum of its per-layer medians (Conv2D, DepthwiseConv2D, Dense) against the whole
   model's median, alternated `--repeats` times (a shared machine drifts; the whole model's single long
   invoke is the one a busy scheduler interrupts).

    python benchmarks/prune_widths.py            # 30 x 20 invokes per model, 3 repeats
    python benchmarks/prune_widths.py --quick    # 3 x 5 invokes, 1 repeat
"""
from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.convert import tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.prune import layer_latency, model_latency, width_sweep  # noqa: E402

SWEEPS = {"conv2d_8": range(8, 193, 4), "depthwise_conv2d_4": range(8, 193, 4)}
ZOOMS = {"conv2d_8": range(112, 145), "depthwise_conv2d_4": range(112, 145), "depthwise_conv2d_6": range(112, 145)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer invokes and one repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="whole model / layer table alternations")
    args = parser.parse_args(argv)
    rounds, block, repeats = (3, 5, 1) if args.quick else (30, 20, 3)
    repeats = args.repeats or repeats
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.threads} thread(s); "
          f"{rounds} x {block} invokes per model\n")
    pose = tflite_to_keras(model_path("pose_landmark_full"))
    for name, widths in [*SWEEPS.items(), *ZOOMS.items()]:
        rows = width_sweep(pose, name, widths, args.threads, rounds, block)
        print(f"{name} ({rows[0].kind}, {rows[-1].input_shape[1]}x{rows[-1].input_shape[2]}): width median ms (p90)")
        print(" ".join(f"{r.width}:{r.median_ms:.3f}({r.p90_ms:.3f})" for r in rows) + "\n")
    hand = tflite_to_keras(model_path("hand_landmark_full"))
    print("| repeat | whole model median ms | p90 | sum of layer medians ms | layers |")
    print("| --- | --- | --- | --- | --- |")
    for repeat in range(repeats):
        whole = model_latency(hand, args.threads, rounds, block)
        rows = layer_latency(hand, num_threads=args.threads, rounds=rounds, block=block)
        print(f"| {repeat} | {whole.median_ms:.2f} | {whole.p90_ms:.2f} | {sum(r.median_ms for r in rows):.2f} | {len(rows)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
