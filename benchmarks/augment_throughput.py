"""Augmented samples per second per preset at 256x256, with and without our keypoint bookkeeping.

For each preset the same albumentations pipeline runs two ways, interleaved in one run so
machine load hits both alike:
  ours:  KeypointAugmenter(rgb, HolisticResult): NaN substitution, orientation probes,
         twin swap, off-frame masking, z scaling, a new HolisticResult;
  plain: the pipeline's own A.Compose on the image and the 546 prepared keypoint rows
         (prepared once, outside the timing): what albumentations alone costs.
Inputs: the two sample portraits and two fixture photos with hands (if HOLISTIC_LAB_DATA
is set), resized to 256x256, with MediaPipe labels. Prints a markdown table: per-sample
median and p90 latency, samples/s from the median, and the bookkeeping overhead.

    python benchmarks/augment_throughput.py            # full: 7 repeats of 200 samples
    python benchmarks/augment_throughput.py --quick    # 3 repeats of 40 samples
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np

from holistic_lab.augment import PRESETS, make_augmenter
from holistic_lab.augment.keypoints import keypoints_for_albumentations
from holistic_lab.datasets import data_dir, fixture_image, sample_image, sample_labels
from holistic_lab.result import HolisticResult
from holistic_lab.settings import QUICK

FIXTURES_WITH_HANDS = ("panoptic/ex2_2.flv_000040_l.jpg", "aic/ff945ae2e729f24eea992814639d59b3bdec8bd8.jpg")


def resize_sample(rgb: np.ndarray, labels: HolisticResult, size: int) -> tuple[np.ndarray, HolisticResult]:
    """Stretch to size x size: normalised x and y stay, and so does z, which is in units of the width."""
    return (cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA),
            HolisticResult(labels.xyz, labels.visibility, labels.present, size, size))


def load_inputs(size: int) -> list[tuple[np.ndarray, HolisticResult]]:
    inputs = [(sample_image(n), sample_labels(n)) for n in ("astronaut", "grace_hopper")]
    if data_dir() is not None:
        from holistic_lab.teacher import MediaPipeTeacher

        with MediaPipeTeacher() as teacher:
            inputs += [(rgb, teacher.process(rgb)) for rgb in map(fixture_image, FIXTURES_WITH_HANDS)]
    return [resize_sample(rgb, labels, size) for rgb, labels in inputs]


def time_per_sample_ms(run, inputs, samples: int) -> float:
    start = time.perf_counter()
    for i in range(samples):
        run(*inputs[i % len(inputs)])
    return (time.perf_counter() - start) * 1000 / samples


def benchmark(preset_names, inputs, repeats: int, samples: int, warmup: int) -> list[dict]:
    rows = []
    for name in preset_names:
        ours = make_augmenter(name, seed=0)
        plain_compose = make_augmenter(name, seed=0).compose
        prepared = [(rgb, keypoints_for_albumentations(labels)) for rgb, labels in inputs]

        def plain(rgb, keypoints):
            return plain_compose(image=rgb, keypoints=keypoints)

        for run, data in ((ours, inputs), (plain, prepared)):
            time_per_sample_ms(run, data, warmup)
        ours_ms, plain_ms = [], []
        for _ in range(repeats):
            ours_ms.append(time_per_sample_ms(ours, inputs, samples))
            plain_ms.append(time_per_sample_ms(plain, prepared, samples))
        rows.append(dict(preset=name, ours_ms=np.array(ours_ms), plain_ms=np.array(plain_ms)))
    return rows


def to_markdown(rows, size: int, repeats: int, samples: int) -> str:
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    lines = [
        f"Augmentation throughput at {size}x{size}, {repeats} repeats of {samples} samples; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"OpenCV threads {cv2.getNumThreads()}, OMP_NUM_THREADS={threads}",
        "",
        "| preset | ours samples/s | plain samples/s | ours ms median / p90 | plain ms median / p90 | bookkeeping ms (%) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, plain = row["ours_ms"], row["plain_ms"]
        extra = np.median(ours) - np.median(plain)
        lines.append(
            f"| {row['preset']} | {1000 / np.median(ours):.0f} | {1000 / np.median(plain):.0f} | "
            f"{np.median(ours):.2f} / {np.percentile(ours, 90):.2f} | "
            f"{np.median(plain):.2f} / {np.percentile(plain, 90):.2f} | "
            f"{extra:.2f} ({100 * extra / np.median(plain):.0f}%) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=QUICK, help="fewer repeats and samples")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--presets", nargs="+", default=[p for p in PRESETS if p != "none"], choices=tuple(PRESETS))
    args = parser.parse_args(argv)
    repeats, samples, warmup = (3, 40, 10) if args.quick else (7, 200, 30)
    rows = benchmark(args.presets, load_inputs(args.size), repeats, samples, warmup)
    print(to_markdown(rows, args.size, repeats, samples))


if __name__ == "__main__":
    main()
