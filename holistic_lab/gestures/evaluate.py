"""The gesture head and the landmark-only baseline on the same held-out split: accuracy with a
bootstrap interval, per-class F1, confusion matrices, and the latency of each in the interpreter.

    train, test = split_items(items, 0.2)
    study = compare_classifiers(train, test, views=3)
    study.rows()                    # accuracy [95% interval], macro F1, per method
    study.confusion("gesture head") # K x K counts, rows = true class

Both methods see exactly the same crops: the baseline is trained on the landmarks of the very
passes that gave the head its features (same items, same views), and both are scored on the
test items' cascade ROI crops (view 0). The interval resamples photographs (file stems), since
two hands of one photograph are not two independent draws.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..convert import keras_to_tflite
from ..images import load_rgb
from ..mediapipe_models import model_path
from ..pipeline.runners import TFLiteRunner
from ..train.evaluate import bootstrap_interval
from .classifier import GestureClassifier
from .crops import roi_crop
from .encode import Encoded, encode_items
from .fit import FitReport, fit_classifier
from .landmark_mlp import build_mlp, landmark_features, mlp_probabilities

METHODS = ("gesture head", "landmark MLP")


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1)
    return matrix


def per_class_f1(matrix: np.ndarray) -> np.ndarray:
    """F1 of each class from a confusion matrix (0 where a class is never true nor predicted)."""
    hits = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(0) + matrix.sum(1)
    return np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)


@dataclass
class GestureStudy:
    labels: tuple[str, ...]
    test_items: list[tuple[Path, str]]
    true: np.ndarray                              # (N,) class index of each test item
    probabilities: dict[str, np.ndarray]          # method -> (N, K)
    hand_found: np.ndarray                        # (N,) whether the hand model found a hand (presence > 0.5)
    classifier: GestureClassifier
    mlp: object
    fits: dict[str, FitReport] = field(default_factory=dict)

    def predicted(self, method: str) -> np.ndarray:
        return self.probabilities[method].argmax(1)

    def correct(self, method: str) -> np.ndarray:
        return (self.predicted(method) == self.true).astype(np.float64)

    def accuracy(self, method: str) -> tuple[float, float, float]:
        """(accuracy, low, high): the 95% interval resamples photographs."""
        correct = self.correct(method)
        low, high = bootstrap_interval(correct, [Path(path).stem for path, _ in self.test_items])
        return float(correct.mean()), low, high

    def confusion(self, method: str) -> np.ndarray:
        return confusion_matrix(self.true, self.predicted(method), len(self.labels))

    def f1(self, method: str) -> dict[str, float]:
        return dict(zip(self.labels, per_class_f1(self.confusion(method)).tolist()))

    def mistakes(self, method: str) -> list[tuple[Path, str, str, float]]:
        """(image, true label, predicted label, score) of every wrong test item, most confident first."""
        predicted, probabilities = self.predicted(method), self.probabilities[method]
        rows = [(Path(self.test_items[i][0]), self.labels[self.true[i]], self.labels[predicted[i]],
                 float(probabilities[i, predicted[i]])) for i in np.flatnonzero(predicted != self.true)]
        return sorted(rows, key=lambda row: -row[3])

    def rows(self) -> list[dict]:
        rows = []
        for method in self.probabilities:
            accuracy, low, high = self.accuracy(method)
            f1 = self.f1(method)
            rows.append({"method": method, "n": len(self.true), "accuracy": accuracy, "low": low, "high": high,
                         "macro_f1": float(np.mean(list(f1.values()))), "worst_class": min(f1, key=f1.get),
                         "worst_f1": min(f1.values())})
        return rows


def _train_mlp(train_set: Encoded, val_set: Encoded, num_classes: int, epochs: int, seed: int, progress: bool):
    """The baseline on the views where the hand model found a hand (it has no input otherwise)."""
    mlp = build_mlp(num_classes, seed=seed)
    x, x_val = landmark_features(train_set.landmarks), landmark_features(val_set.landmarks)
    found, found_val = np.isfinite(x).all(1), np.isfinite(x_val).all(1)
    report = fit_classifier(mlp, x[found], train_set.labels[found], x_val[found_val], val_set.labels[found_val],
                            epochs, seed=seed, progress=progress)
    return mlp, report


def compare_classifiers(train_items: list, test_items: list, views: int = 3, epochs: int = 300, seed: int = 0,
                        hand_model=None, progress: bool = True) -> GestureStudy:
    """Train the gesture head (`GestureClassifier.train`) and the landmark MLP on `train_items`
    (the MLP on the same crops' landmarks), then score both on `test_items`."""
    classifier = GestureClassifier.train(train_items, hand_model=hand_model, views=views, epochs=epochs, seed=seed,
                                         progress=progress)
    record, labels = classifier.training, classifier.labels
    mlp, mlp_fit = _train_mlp(record.train_set, record.val_set, len(labels), epochs, seed, progress)
    test_set = encode_items(test_items, labels, record.pipeline, record.features, 1, progress=progress,
                            desc="gesture crops (test)")
    probabilities = {"gesture head": np.asarray(record.head(test_set.features, training=False), np.float32),
                     "landmark MLP": mlp_probabilities(mlp, test_set.landmarks, labels)}
    return GestureStudy(labels, list(test_items), test_set.labels, probabilities,
                        np.isfinite(test_set.landmarks).all((1, 2)), classifier, mlp,
                        {"gesture head": record.fit, "landmark MLP": mlp_fit})


def time_interleaved(runs: dict, repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Median and p90 ms of each callable, timed in turns (one of each per round) after `warmup` rounds."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append((time.perf_counter() - start) * 1e3)
    return {name: {"median_ms": float(np.median(values)), "p90_ms": float(np.percentile(values, 90)),
                   "n": len(values)} for name, values in timings.items()}


def classifier_latency(study: GestureStudy, repeats: int = 200, warmup: int = 20, num_threads: int = 1) -> dict:
    """Per crop, in the TFLite interpreter, in turns in one run: the shipped hand model (float16
    weights), the same model re-exported by the converter as float32 (what the gesture model is
    built from), that with the gesture head (one pass gives landmarks and gesture), and the shipped
    hand model followed by the landmark MLP (two models). Median and p90 ms per method."""
    import keras

    pipeline = study.classifier.training.pipeline
    tensor = roi_crop(pipeline, load_rgb(study.test_items[0][0])).tensor
    joint = study.classifier.training.model
    hand_only = keras.Model(joint.input, joint.outputs[:-1])   # the same graph without the head
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder, f"{name}.tflite") for name in ("hand32", "gesture", "mlp")}
        paths["hand32"].write_bytes(keras_to_tflite(hand_only))
        paths["gesture"].write_bytes(study.classifier.model)
        paths["mlp"].write_bytes(keras_to_tflite(study.mlp))
        shipped = TFLiteRunner(model_path("hand_landmark_full"), num_threads)
        hand32, gesture, mlp = (TFLiteRunner(paths[name], num_threads) for name in ("hand32", "gesture", "mlp"))

        def hand_then_mlp():
            landmarks = shipped(tensor)[0].reshape(1, 21, 3)
            return mlp(np.nan_to_num(landmark_features(landmarks)))

        return time_interleaved({"hand model (shipped file)": lambda: shipped(tensor),
                                 "hand model (float32 re-export)": lambda: hand32(tensor),
                                 "hand + gesture head (one pass)": lambda: gesture(tensor),
                                 "shipped hand model + landmark MLP": hand_then_mlp}, repeats, warmup)


@dataclass
class GestureScore:
    """A classifier on labelled images: per image the true and predicted class index, and the
    accuracy with its 95% bootstrap interval (photographs, i.e. file stems, resampled)."""
    labels: tuple[str, ...]
    true: np.ndarray
    predicted: np.ndarray
    accuracy: float
    low: float
    high: float

    @property
    def n(self) -> int:
        return len(self.true)


def score_classifier(classifier: GestureClassifier, items: list[tuple[Path, str]], progress: bool = False) -> GestureScore:
    """Classify each (image path, label) the way `classify_crop` does; a label the classifier does not
    know is refused by name before anything runs."""
    from ..progress import progress_bar

    if not items:
        raise ValueError("no labelled images to score the gesture classifier on")
    unknown = sorted({label for _, label in items} - set(classifier.labels))
    if unknown:
        raise ValueError(f"classes {unknown} the classifier does not know ({', '.join(classifier.labels)}); "
                         "rename them with --classes")
    index = {label: i for i, label in enumerate(classifier.labels)}
    true, predicted = [], []
    for path, label in progress_bar(items, "gestures eval", progress):
        true.append(index[label])
        predicted.append(index[classifier.classify_crop(load_rgb(path))[0]])
    correct = [float(t == p) for t, p in zip(true, predicted)]
    low, high = bootstrap_interval(correct, [Path(path).stem for path, _ in items])
    return GestureScore(classifier.labels, np.array(true), np.array(predicted), float(np.mean(correct)), low, high)

