"""Milliseconds per image of the cascade's Python pre/post-processing (everything but the models).

    python benchmarks/prepost.py [--rounds 10] [--warmup 3] [--video pose_squats.mp4] [--frames 30]
    python benchmarks/prepost.py --compare OTHER_CHECKOUT [--turns 3] ...

HolisticPipeline.last_timings["pre_post_processing"] (total minus model time) and "total",
num_threads=1, after warm-up: static mode over `profile.latency_images()` and video mode over
the first frames of a fixture clip (`datasets.fixture_videos()`, needs HOLISTIC_LAB_DATA's
sibling videos pack). Prints median and p90 with n. `--compare DIR` alternates child processes
on this checkout and on the checkout at DIR (e.g. a `git worktree` of an older commit), `--turns`
times each, so both see the same machine load; the numbers are pooled per checkout.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve()
KEYS = ("pre_post_processing", "total")


def measure(rounds: int, warmup: int, video: str, frames: int) -> dict[str, dict[str, list[float]]]:
    """{"static" | "video": {timing key: ms per image}} of the holistic_lab on sys.path."""
    from holistic_lab.datasets import fixture_videos
    from holistic_lab.images import iter_video_frames
    from holistic_lab.pipeline.holistic import HolisticPipeline
    from holistic_lab.pipeline.profile import latency_images

    sets = {"static": (True, latency_images()),
            "video": (False, [f for _, f in itertools.islice(iter_video_frames(fixture_videos()[video]), frames)])}
    timings = {}
    for name, (static, images) in sets.items():
        pipeline = HolisticPipeline(static_image_mode=static, num_threads=1)
        samples = {key: [] for key in KEYS}
        for round_index in range(warmup + rounds):
            pipeline.reset()
            for rgb in images:
                pipeline.process(rgb)
                if round_index >= warmup:
                    for key in KEYS:
                        samples[key].append(pipeline.last_timings[key])
        timings[name] = samples
    return timings


def child(checkout: Path, args) -> dict:
    command = [sys.executable, str(HERE), "--json", "--rounds", str(args.rounds), "--warmup", str(args.warmup),
               "--video", args.video, "--frames", str(args.frames)]
    env = dict(os.environ, PYTHONPATH=str(checkout))
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)


def summary(samples: list[float]) -> str:
    import numpy as np

    return f"{np.median(samples):6.2f} / {np.percentile(samples, 90):6.2f} (n={len(samples)})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--video", default="pose_squats.mp4")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--compare", type=Path, help="another checkout of holistic-lab to alternate with")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the raw timings as JSON (one checkout)")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure(args.rounds, args.warmup, args.video, args.frames)))
        return 0
    checkouts = {"this": HERE.parents[1]}
    if args.compare:
        checkouts["other"] = args.compare.resolve()
    pooled = {label: {} for label in checkouts}
    for _ in range(args.turns if args.compare else 1):
        for label, checkout in checkouts.items():
            for mode, samples in child(checkout, args).items():
                for key, values in samples.items():
                    pooled[label].setdefault(mode, {}).setdefault(key, []).extend(values)
    print(f"median / p90 ms per image, num_threads=1, {args.rounds} rounds x {args.turns if args.compare else 1} "
          f"turns after {args.warmup} warm-up; video: first {args.frames} frames of {args.video}")
    for label, checkout in checkouts.items():
        for mode, samples in pooled[label].items():
            print(f"{label:5s} {mode:6s} " + "  ".join(f"{key} {summary(values)}" for key, values in samples.items())
                  + f"  [{checkout}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
