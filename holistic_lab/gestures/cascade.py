"""Gestures through the whole cascade: photographs and a video, image -> pose -> hand ROI -> gesture.

    rows = photo_gestures("variants/gestures13", datasets.hagrid_frames())   # one label per photograph
    track = video_gestures("variants/gestures8", clip)                         # per frame, per hand

A photograph gets one label: the most confident hand whose gesture is not `none`; `none` when
every hand found says so; no label when the cascade finds no hand (then it cannot be right).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import iter_video_frames, load_rgb
from ..pipeline import HolisticPipeline
from ..progress import progress_bar

NO_HAND = "(no hand)"


def photo_label(gestures: dict | None) -> str:
    """One label for a photograph from its per-hand gestures."""
    found = [value for value in (gestures or {}).values() if value is not None]
    if not found:
        return NO_HAND
    gesturing = [value for value in found if value[0] != "none"]
    return max(gesturing, key=lambda value: value[1])[0] if gesturing else "none"


def photo_gestures(model, photos: list[tuple[Path, str]], progress: bool = True) -> list[dict]:
    """The cascade (static images) with the gesture model on labelled photographs: per photo its
    label, the cascade's label, and each hand's (label, score)."""
    pipeline = gesture_pipeline(model)
    rows = []
    for path, label in progress_bar(photos, "cascade gestures", progress):
        result = pipeline.process(load_rgb(path))
        rows.append({"image": Path(path), "label": label, "predicted": photo_label(result.gestures),
                     **{side: value for side, value in result.gestures.items()}, "result": result})
    return rows


def video_gestures(model, video, every: int = 1, limit: int | None = None) -> list[dict]:
    """The cascade in video mode (tracking) on a clip: per processed frame its index and each hand's
    (label, score) or None. Every frame is tracked; `every` only thins what is returned."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    pipeline = gesture_pipeline(model, static_image_mode=False)
    frames = []
    for index, frame in iter_video_frames(video):
        if limit is not None and index >= limit:
            break
        result = pipeline.process(frame)
        if index % every == 0:
            frames.append({"frame": index, **result.gestures, "ms": pipeline.last_timings["total"]})
    return frames


def label_counts(frames: list[dict], side: str) -> dict[str, int]:
    """How many frames each label was the `side` hand's gesture (None: hand not found)."""
    labels = [None if frame[side] is None else frame[side][0] for frame in frames]
    values, counts = np.unique(np.array([str(label) for label in labels]), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def gesture_pipeline(model, **kwargs) -> HolisticPipeline:
    """The cascade for `model`: a variant folder (all its stages, its gesture head) or a bare
    gesture classifier folder (the shipped models around it)."""
    if (Path(model) / "manifest.json").is_file():
        pipeline = HolisticPipeline.from_variant(model, **kwargs)
        if pipeline.gesture is None:
            raise ValueError(f"variant {model} has no gesture classifier (no gesture/ folder)")
        return pipeline
    return HolisticPipeline(gesture_model=model, **kwargs)
