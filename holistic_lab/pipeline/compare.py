"""How closely the Python cascade agrees with `mp.solutions.holistic` (the agreement benchmark).

Per part: on how many (image, part) pairs both agree on presence, and over the pairs
where both found the part, the median and max pixel distance between the same points.
The reference is `MediaPipeTeacher`, which resets MediaPipe's graph before each static
image (its face and hand ROI tracking otherwise carries state from one image to the next).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import fixture_image, fixture_registry, sample_image, sample_names
from ..images import IMAGE_SUFFIXES
from ..result import HolisticResult
from ..topology import PART_NAMES, PARTS

# Fixture folders with people in them (freihand, 300w and lapa are tight crops where
# Holistic mostly finds no pose; they still count for presence agreement).
FIXTURE_FOLDERS = ("coco", "aic", "exlpose", "300w", "lapa", "panoptic", "freihand",
                   "posetrack18/images/val", "posetrack18/videos")


def agreement_images(data_dir=None, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, rgb) for the data_samples portraits and every fixture image, sorted by name;
    `limit` keeps an even spread (quick mode)."""
    images = [(f"data_samples/{name}", sample_image(name)) for name in sample_names()]
    folders = tuple(f"{folder}/" for folder in FIXTURE_FOLDERS)
    names = sorted(n for n in fixture_registry() if n.startswith(folders) and Path(n).suffix.lower() in IMAGE_SUFFIXES)
    images += [(name, fixture_image(name, data_dir)) for name in names]
    if limit is not None and limit < len(images):
        images = [images[i] for i in np.linspace(0, len(images) - 1, limit).round().astype(int)]
    return images


@dataclass
class PartAgreement:
    part: str
    pairs: int
    presence_equal: int
    both_present: int
    median_px: float
    p99_px: float
    max_px: float

    @property
    def presence_rate(self) -> float:
        return self.presence_equal / self.pairs if self.pairs else float("nan")


def compare(reference: list[HolisticResult], ours: list[HolisticResult]) -> list[PartAgreement]:
    """Per part presence agreement and pixel deviation (median, 99th percentile and max over
    all points of the images where both found the part)."""
    rows = []
    for part in PART_NAMES:
        sl, distances, equal = PARTS[part], [], 0
        for ref, mine in zip(reference, ours, strict=True):
            equal += ref.present[part] == mine.present[part]
            if ref.present[part] and mine.present[part]:
                distances.append(np.linalg.norm(ref.pixels()[sl] - mine.pixels()[sl], axis=1))
        flat = np.concatenate(distances) if distances else np.array([np.nan])
        rows.append(PartAgreement(part, len(reference), equal, len(distances),
                                  float(np.median(flat)), float(np.percentile(flat, 99)), float(np.max(flat))))
    return rows


def worst_images(reference: list[HolisticResult], ours: list[HolisticResult], count: int = 2) -> list[tuple[int, float]]:
    """(image index, largest pixel deviation over the parts both found) of the `count` images
    where `ours` is furthest from `reference`, worst first; images with no part in common are left out."""
    worst = []
    for index, (ref, mine) in enumerate(zip(reference, ours, strict=True)):
        both = [PARTS[p] for p in PART_NAMES if ref.present[p] and mine.present[p]]
        if both:
            rows = np.concatenate([np.arange(sl.start, sl.stop) for sl in both])
            worst.append((index, float(np.nanmax(np.linalg.norm(ref.pixels()[rows] - mine.pixels()[rows], axis=1)))))
    return sorted(worst, key=lambda pair: -pair[1])[:count]


def run_agreement(images, pipeline) -> tuple[list[PartAgreement], list[HolisticResult], list[HolisticResult]]:
    """Run MediaPipe (reset for every image) and `pipeline` on every image and compare."""
    from ..teacher import MediaPipeTeacher

    reference, ours = [], []
    with MediaPipeTeacher(static_image_mode=True) as teacher:
        for _, rgb in images:
            reference.append(teacher.process(rgb))
            ours.append(pipeline.process(rgb))
    return compare(reference, ours), reference, ours


def agreement_table(rows: list[PartAgreement]) -> str:
    """Markdown table of `compare`'s rows plus the overall presence agreement."""
    lines = ["| part | presence equal | both present | median px | p99 px | max px |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.part} | {r.presence_equal}/{r.pairs} ({r.presence_rate:.0%}) | {r.both_present} "
                     f"| {r.median_px:.2f} | {r.p99_px:.2f} | {r.max_px:.2f} |")
    equal, pairs = sum(r.presence_equal for r in rows), sum(r.pairs for r in rows)
    lines.append(f"| all | {equal}/{pairs} ({equal / pairs if pairs else float('nan'):.0%}) | | | | |")
    return "\n".join(lines)
