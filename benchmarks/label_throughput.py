"""Labelling frames/s: one process (`label_paths`) against Ray Data with 1 and 2 local workers (`label_sharded`).

    python benchmarks/label_throughput.py [--workers 1,2] [--rounds 3] [--out label_throughput.json]

Labels the videos fixture pack's five clips (907 frames; each clip is one work unit, so two
workers can run two clips at once) into a fresh temporary output each round. In every round,
the configurations run one after another (single process first, then each worker count) so
machine load hits them alike. For Ray, the start of a local Ray (`ray.init`) is timed apart
from the labelling; the labelling time includes starting the worker processes and their
MediaPipe, which a long run pays once. Prints a markdown table (median frames/s and the
range over rounds) and writes everything to the JSON: the machine, the settings, each
round's times. Measure on a quiet machine: every worker wants a core of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def worker_counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected worker counts >= 1 such as 1,2; got {text!r}")
    return counts


def time_single(clips: list[Path], folder: Path) -> dict:
    from holistic_lab.label import label_paths
    from holistic_lab.result import load_results

    start = time.perf_counter()
    out = label_paths(clips, folder / "single.npz", progress=False)
    seconds = time.perf_counter() - start
    return {"frames": len(load_results(out)[0]), "label_s": seconds}


def time_sharded(clips: list[Path], folder: Path, workers: int) -> dict:
    from holistic_lab.label_sharded import _ray_session, label_sharded, load_sharded

    start = time.perf_counter()
    with _ray_session(workers, None):
        started = time.perf_counter()
        out = label_sharded(clips, folder / f"shards-{workers}", workers=workers, progress=False)
        finished = time.perf_counter()
    return {"frames": len(load_sharded(out)[0]), "ray_start_s": started - start, "label_s": finished - started}


def summary(rounds: list[dict]) -> dict:
    rates = [r["frames"] / r["label_s"] for r in rounds]
    row = {"frames": rounds[0]["frames"], "frames_per_s_median": statistics.median(rates),
           "frames_per_s_min": min(rates), "frames_per_s_max": max(rates)}
    if "ray_start_s" in rounds[0]:
        row["ray_start_s_median"] = statistics.median(r["ray_start_s"] for r in rounds)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=worker_counts, default=[1, 2], help="Ray worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("label_throughput.json"))
    parser.add_argument("--clips", nargs="*", type=Path, help="videos to label (default: the videos fixture pack)")
    args = parser.parse_args()

    from holistic_lab.datasets import fixture_videos

    clips = args.clips or list(fixture_videos().values())
    configs = ["single process"] + [f"ray, {n} worker{'s' if n > 1 else ''}" for n in args.workers]
    times: dict[str, list[dict]] = {config: [] for config in configs}
    for round_index in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="label-throughput-") as folder:
            times["single process"].append(time_single(clips, Path(folder)))
            for config, workers in zip(configs[1:], args.workers):
                times[config].append(time_sharded(clips, Path(folder), workers))
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{config} {rounds[-1]['frames'] / rounds[-1]['label_s']:.1f} frames/s" for config, rounds in times.items()))

    rows = {config: summary(rounds) for config, rounds in times.items()}
    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count()},
              "clips": [str(c) for c in clips], "rounds": args.rounds, "summary": rows, "times": times}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n{len(clips)} clips, {rows['single process']['frames']} frames, {args.rounds} rounds, "
          f"{os.cpu_count()} cores\n")
    print("| configuration | frames/s (median) | range over rounds | Ray start-up s (median) |")
    print("| --- | --- | --- | --- |")
    for config, row in rows.items():
        start = f"{row['ray_start_s_median']:.1f}" if "ray_start_s_median" in row else "-"
        print(f"| {config} | {row['frames_per_s_median']:.1f} | {row['frames_per_s_min']:.1f}-"
              f"{row['frames_per_s_max']:.1f} | {start} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
