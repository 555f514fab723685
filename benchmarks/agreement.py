"""Agreement of holistic_lab's Python cascade with mp.solutions.holistic (model_complexity=1).

    python benchmarks/agreement.py [--out agreement.json] [--limit N] [--data DIR]

Runs both on data_samples and every fixture image (HOLISTIC_LAB_DATA), prints a markdown
table per part (presence agreement, median and max pixel deviation) and checks the
targets: presence equal on >= 90% of (image, part) pairs, median <= 1.5 px for pose and
face, <= 2 px for hands.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.pipeline import HolisticPipeline  # noqa: E402
from holistic_lab.pipeline.compare import agreement_images, agreement_table, run_agreement  # noqa: E402

MEDIAN_TARGET_PX = {"pose": 1.5, "face": 1.5, "left_hand": 2.0, "right_hand": 2.0}
PRESENCE_TARGET = 0.9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the rows as JSON here")
    parser.add_argument("--limit", type=int, help="use at most N images (evenly spread)")
    parser.add_argument("--data", help="fixture folder (default: HOLISTIC_LAB_DATA)")
    args = parser.parse_args(argv)
    images = agreement_images(args.data, args.limit)
    rows, _, _ = run_agreement(images, HolisticPipeline(static_image_mode=True))
    print(f"{len(images)} images\n")
    print(agreement_table(rows))
    presence = sum(r.presence_equal for r in rows) / sum(r.pairs for r in rows)
    failures = [f"presence {presence:.0%} < {PRESENCE_TARGET:.0%}"] if presence < PRESENCE_TARGET else []
    failures += [f"{r.part} median {r.median_px:.2f} px > {MEDIAN_TARGET_PX[r.part]} px"
                 for r in rows if r.both_present and r.median_px > MEDIAN_TARGET_PX[r.part]]
    print("\ntargets met" if not failures else "\ntargets missed: " + "; ".join(failures))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"images": [name for name, _ in images], "parts": [asdict(r) for r in rows],
                       "presence_rate": presence, "targets_met": not failures}, fh, indent=2)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
