"""Gestures (chapter 06): a gesture head on the real hand landmark model, and a landmark-only baseline.

In the order the data flows:
- `classes`: class folders -> (image, label) items, checked; `HAGRID_NAMED`, `add_class`, `split_items`.
- `crops`: a tight hand crop -> the hand ROI crop the cascade would cut (`hand_roi`, `roi_crop`).
- `head`: the hand model's backbone features and the gesture head on them (`attach_head`).
- `encode`: items -> one hand-model pass each: features for the head, landmarks for the baseline.
- `fit`: training a small classifier on those with early stopping.
- `landmark_mlp`: the baseline, an MLP on the 21 normalised landmarks (MediaPipe's approach).
- `classifier`: `GestureClassifier` (train, save, load, classify_crop).
- `evaluate`: accuracy with intervals, per-class F1, confusion matrix, latency, both classifiers on one split.

The cascade reads a saved classifier itself (`pipeline.gesture`): `HolisticPipeline(gesture_model=dir)`.
"""
from .classes import HAGRID_ALL, HAGRID_NAMED, add_class, class_items, labels_of, parse_classes, split_items
from .classifier import GestureClassifier

__all__ = ["GestureClassifier", "HAGRID_ALL", "HAGRID_NAMED", "add_class", "class_items", "labels_of", "parse_classes", "split_items"]
