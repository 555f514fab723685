"""Labelled hand crops -> what one pass of the hand model gives for each: pooled backbone features
(the gesture head's input) and the 21 landmarks (the landmark-only baseline's input).

    encoded = encode_items(items, labels, pipeline, feature_model(hand), views=3)

View 0 of an item is the cascade's own hand ROI; further views jitter and mirror it
(`crops.RoiJitter`). Images are decoded one at a time, so memory stays at one batch of crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import load_rgb
from ..progress import progress_bar
from .crops import RoiJitter, hand_crop, hand_roi, jittered


@dataclass
class Encoded:
    features: np.ndarray     # (N, C) float32 pooled backbone features, one row per view
    landmarks: np.ndarray    # (N, 21, 3) float32 pixels of the source image; NaN where the model found no hand
    labels: np.ndarray       # (N,) int class index
    item: np.ndarray         # (N,) int index of the item the view came from
    view: np.ndarray         # (N,) int 0 = the cascade's ROI, >0 a jittered view

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows) -> "Encoded":
        return Encoded(self.features[rows], self.landmarks[rows], self.labels[rows], self.item[rows], self.view[rows])


def encode_items(items: list[tuple[Path, str]], labels: tuple[str, ...], pipeline, features, views: int = 1,
                 jitter: RoiJitter = RoiJitter(), seed: int = 0, batch_size: int = 32, progress: bool = True,
                 desc: str = "gesture crops") -> Encoded:
    """Every item's `views` crops through `features` (a `head.feature_model`); labels must name
    every item's class."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({label for _, label in items} - set(index))
    if unknown:
        raise ValueError(f"items have classes {unknown} that are not among the labels {list(labels)}")
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {"features": [], "landmarks": [], "labels": [], "item": [], "view": []}
    pending: list[tuple] = []

    def flush():
        if not pending:
            return
        # a direct call: predict_on_batch retraces for every model and last-batch size, and says so
        batch = np.concatenate([p[0].tensor for p in pending])
        pooled, raw_landmarks, presence = (np.asarray(output) for output in features(batch, training=False))
        for (model_input, size, label, item, view), pool, raw, score in zip(pending, pooled, raw_landmarks, presence):
            _, xyz = pipeline.hand_landmark.decode([raw, score], model_input)
            found = float(np.ravel(score)[0]) > 0.5
            columns["features"].append(np.asarray(pool, np.float32))
            columns["landmarks"].append(xyz * np.array([*size, size[0]], np.float32) if found
                                        else np.full((21, 3), np.nan, np.float32))
            columns["labels"].append(index[label])
            columns["item"].append(item)
            columns["view"].append(view)
        pending.clear()

    for item, (path, label) in enumerate(progress_bar(items, desc, progress)):
        rgb = load_rgb(path)
        size = (rgb.shape[1], rgb.shape[0])
        rect, _ = hand_roi(pipeline, rgb)
        for view in range(views):
            if view == 0:
                model_input = hand_crop(pipeline, rgb, rect)
            else:
                model_input = hand_crop(pipeline, rgb, jittered(rect, rng, jitter), mirror=rng.random() < jitter.flip_p)
            pending.append((model_input, size, label, item, view))
            if len(pending) >= batch_size:
                flush()
    flush()
    if not columns["labels"]:
        raise ValueError("no items to encode")
    return Encoded(np.stack(columns["features"]), np.stack(columns["landmarks"]), np.array(columns["labels"]),
                   np.array(columns["item"]), np.array(columns["view"]))
