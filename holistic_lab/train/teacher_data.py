"""Training pairs labelled by the shipped models themselves (self-distillation): the labels of
a clean image, the student then learns to give them on a degraded copy.

    items = hand_crop_items(datasets.hagrid_crops()[:400])      # tight hand crops -> right_hand rows
    items += frame_items(video_frames(clip, every=5))           # the whole cascade on full frames

Labels are HolisticResults (x, y and z on every point of the parts found), the same object
`label`/`run` write; pairs whose part was not found are left out and counted.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..images import iter_video_frames, load_rgb
from ..progress import progress_bar
from ..result import HolisticResult
from ..topology import PARTS
from .data import part_result


def hand_crop_items(paths: Iterable, pipeline=None, min_side: int = 48, progress: bool = True
                    ) -> list[tuple[np.ndarray, HolisticResult]]:
    """(rgb, labels) for tight hand crops (HaGRID): the hand model alone on the whole crop
    (`HolisticPipeline.process_hand`: four rotations, the best re-cropped on its own landmarks),
    stored as the right hand (Holistic runs one unmirrored model for both). Crops whose short
    side is under `min_side` pixels, or where the model finds no hand, are left out."""
    from ..pipeline import HolisticPipeline

    pipeline = pipeline or HolisticPipeline()
    paths = [path[0] if isinstance(path, tuple) else path for path in paths]
    items = []
    for path in progress_bar(paths, "teacher: hand crops", progress):
        rgb = load_rgb(path)
        if min(rgb.shape[:2]) < min_side:
            continue
        hand = pipeline.process_hand(rgb)
        if not np.isfinite(hand).all():
            continue
        items.append((rgb, part_result("right_hand", hand, rgb.shape[1], rgb.shape[0])))
    return items


def frame_items(frames: Iterable[np.ndarray], part: str | tuple[str, ...], pipeline=None, progress: bool = True,
                total=None) -> list[tuple[np.ndarray, HolisticResult]]:
    """(rgb, labels) for full frames where the whole cascade (static image mode: each frame on
    its own) found `part` ("face", "left_hand", "right_hand", "pose"; a tuple: any of them)."""
    from ..pipeline import HolisticPipeline

    parts = (part,) if isinstance(part, str) else tuple(part)
    unknown = [name for name in parts if name not in PARTS]
    if unknown or not parts:
        raise ValueError(f"part must be one of {tuple(PARTS)} (or a tuple of them), got {part!r}")
    pipeline = pipeline or HolisticPipeline(static_image_mode=True)
    items = []
    for rgb in progress_bar(frames, f"teacher: {'/'.join(parts)} in frames", progress, total):
        result = pipeline.process(rgb)
        if any(result.present[name] for name in parts):
            items.append((rgb, result))
    return items


def video_frames(path, every: int = 5, limit: int | None = None) -> Iterator[np.ndarray]:
    """Every `every`-th frame of a video (at most `limit` of them)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    count = 0
    for index, frame in iter_video_frames(path):
        if index % every == 0:
            yield frame
            count += 1
            if limit is not None and count >= limit:
                return
