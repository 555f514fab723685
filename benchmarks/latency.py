"""Per-stage latency of holistic_lab's cascade, end to end beside mp.solutions.holistic.

    python benchmarks/latency.py [--out latency.json] [--threads 1 2 pose_landmark=2] [--repeats 30] [--warmup 3]

Times the data_samples portraits and two fixture images with people and hands (when
HOLISTIC_LAB_DATA is there), interleaving both pipelines in one process, and prints a
markdown table per thread setting plus the end-to-end ratio (aim: ours <= 1.2x MediaPipe).
A thread setting is a number for every stage, or stage=N[,stage=N] for chosen stages only.
HOLISTIC_LAB_QUICK=1 lowers the default repeats to 10.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.pipeline.profile import latency_images, latency_table, machine_info, profile_latency  # noqa: E402
from holistic_lab.settings import quick_or  # noqa: E402

def thread_setting(text: str) -> int | dict[str, int]:
    """"2" -> 2; "pose_landmark=2,pose_detection=2" -> {"pose_landmark": 2, "pose_detection": 2}."""
    if "=" not in text:
        return int(text)
    pairs = [item.split("=", 1) for item in text.split(",")]
    return {stage.strip(): int(count) for stage, count in pairs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the profiles as JSON here")
    parser.add_argument("--threads", type=thread_setting, nargs="+", default=[1, 2, {"pose_landmark": 2}])
    parser.add_argument("--repeats", type=int, default=quick_or(30, 10))
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)
    images = latency_images()
    profiles = [profile_latency(images, n, args.repeats, args.warmup) for n in args.threads]
    print(f"{machine_info()}; {len(images)} images x {args.repeats} runs after {args.warmup} warm-up rounds\n")
    print(latency_table(profiles))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": machine_info(), "repeats": args.repeats,
                       "profiles": [asdict(p) | {"ratio": p.ratio} for p in profiles]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
