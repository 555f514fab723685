"""GestureClassifier: a gesture head on the real hand landmark model, trained on class folders.

    classifier = GestureClassifier.train("../shared/fixtures/hagrid", classes=HAGRID_NAMED)
    classifier.save("gestures/hagrid8")
    GestureClassifier.load("gestures/hagrid8").classify_crop(tight_hand_crop)   # ("victory", 0.97)
    HolisticPipeline(gesture_model="gestures/hagrid8").process(rgb).gestures       # per hand, in the cascade

Training: every image is cut to the cascade's hand ROI (`crops`), one pass of the hand model
gives its pooled backbone features (`encode`), the head learns on those (`head`, `fit`), and the
hand model with its new head is converted to one `.tflite` and checked against Keras. The saved
folder is what `pipeline.gesture` reads: `gesture.json` (labels, how it was made, the model's
sha256) and `model.tflite`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..convert import keras_to_tflite, tflite_to_keras
from ..convert.verification import relative_error, run_keras, run_tflite
from ..files import atomic_write, check_output_folder, display_path, output_lock, read_json_object, sha256_file
from ..images import check_rgb, load_rgb
from ..mediapipe_models import installed_versions, model_path
from ..pipeline import HolisticPipeline
from ..pipeline.gesture import (FORMAT, HAND_OUTPUTS, MANIFEST, MAX_MANIFEST_BYTES, MODEL_FILE, VERSION,
                                read_gesture_model, top_gesture)
from .classes import check_labels, class_items, labels_of, split_items
from .crops import RoiJitter, roi_crop
from .encode import Encoded, encode_items
from .fit import FitReport, fit_classifier
from .head import attach_head, build_head, feature_model

TOLERANCE = 1e-4  # interpreter vs Keras, relative to each output's largest value (as chapter 05's export)


def hand_model_file(hand_model) -> Path:
    """The hand landmark .tflite to build on: None (the shipped hand_landmark_full), a .tflite
    path, or a variant folder (its hand_landmark stage; the shipped model if it has none)."""
    if hand_model is None:
        return model_path("hand_landmark_full")
    path = Path(hand_model)
    if path.is_dir():
        from ..variants import read_variant

        return read_variant(path).stages.get("hand_landmark") or model_path("hand_landmark_full")
    if not path.is_file():
        raise ValueError(f"hand model {display_path(path)} not found")
    return path


def _is_earlier_gesture_folder(folder: Path) -> bool:
    lock = f".{MANIFEST}.lock"
    entries = [entry for entry in folder.iterdir() if entry.name != lock]
    if not entries:
        return True
    if {entry.name for entry in entries} - {MANIFEST, MODEL_FILE} or any(e.is_symlink() or not e.is_file() for e in entries):
        return False
    try:
        manifest = read_json_object(folder / MANIFEST, "a gesture classifier's manifest", MAX_MANIFEST_BYTES)
    except ValueError:
        return False
    return manifest.get("format") == FORMAT


def check_gesture_output(folder, overwrite: bool = False) -> Path:
    """`folder` if a classifier may be saved there (new, empty, an earlier classifier, or with
    `overwrite`); a ValueError otherwise. Call it before training, not after."""
    folder = check_output_folder(folder, "gesture folder")
    if folder.is_dir() and not overwrite and not _is_earlier_gesture_folder(folder):
        raise ValueError(f"gesture folder {display_path(folder)} holds files that are not a holistic-lab gesture "
                         "classifier; choose an empty or new folder, or pass --overwrite to write beside them")
    return folder


@dataclass
class TrainingRecord:
    """What `GestureClassifier.train` built and saw: the Keras models, the cropping pipeline, the
    encoded training and validation crops and the fit's report."""
    model: "keras.Model"          # the hand model with its gesture head
    head: "keras.Model"           # features -> probabilities
    features: "keras.Model"       # crop -> (features, landmarks, presence)
    pipeline: HolisticPipeline    # cuts the crops (the hand model the head sits on)
    train_set: Encoded
    val_set: Encoded
    fit: FitReport


def check_variant_out(out, data_folders, start_from=None, overwrite: bool = False) -> Path:
    """Refuse, before minutes of work, a variant `out` that cannot be written: one holding the
    user's files, inside one of the `data_folders` (it would become a class folder of the data,
    even with overwrite), or the `start_from` variant itself (its record would be lost); and a
    `start_from` that is not a variant. Returns `out`."""
    from ..variants import check_variant_output, read_variant

    resolved = check_variant_output(out, overwrite).resolve()
    for option, folder in data_folders:
        if resolved == Path(folder).resolve() or Path(folder).resolve() in resolved.parents:
            raise ValueError(f"--out {display_path(out)} is inside {option} {display_path(folder)}; "
                             "write the variant outside the gesture data")
    if start_from is not None:
        read_variant(start_from)  # a .tflite or a folder that is not a variant: refused now, not after training
        if Path(start_from).resolve() == resolved:
            raise ValueError(f"--out {display_path(out)} is also --from, the variant this run starts from; "
                             "write the new variant to a new folder")
    return Path(out)


class GestureClassifier:
    """Class labels plus the hand model with a gesture head, as one `.tflite`."""

    def __init__(self, labels, model: bytes, manifest: dict | None = None, num_threads: int = 1):
        self.labels = tuple(labels)
        self.model = bytes(model)
        self.manifest = dict(manifest or {})
        self.num_threads = num_threads
        self.training: TrainingRecord | None = None   # set by train
        self.folder: Path | None = None   # where it was saved or loaded from: classify_crop runs that file
        self._pipeline = None

    # --- training -------------------------------------------------------------------------
    @classmethod
    def train(cls, data, classes=None, hand_model=None, views: int = 3, epochs: int = 300,
              validation_fraction: float = 0.15, learning_rate: float = 1e-3, batch_size: int = 64,
              jitter: RoiJitter = RoiJitter(), seed: int = 0, progress: bool = True,
              csv_log=None) -> "GestureClassifier":
        """Train on `data`: a folder of class folders (`classes` picks and renames them, see
        `classes.class_items`) or a list of (image path, label). A grouped, stratified
        `validation_fraction` of the items picks the epoch; `views` crops per training item
        (the cascade's ROI, then jittered and mirrored ones); `csv_log`: a CSV file of each epoch's
        losses and accuracies, written as training goes."""
        items = class_items(data, classes) if isinstance(data, (str, os.PathLike)) else list(data)
        labels = check_labels(labels_of(items), "gesture training items")
        fit_items, val_items = split_items(items, validation_fraction, seed)
        missing = sorted(set(labels) - set(labels_of(val_items)))
        if missing:
            raise ValueError(f"classes {_first_ten(missing)} have too few images for a validation split of "
                             f"{validation_fraction}")
        untrained = sorted(set(labels) - set(labels_of(fit_items)))
        if untrained:  # found here, not as 'no items to encode' or a fit error after the crops are encoded
            raise ValueError(f"classes {_first_ten(untrained)} have no training images left after a validation "
                             f"split of {validation_fraction}; lower --validation-split or add images")
        hand_path = hand_model_file(hand_model)
        hand = tflite_to_keras(hand_path)
        pipeline = HolisticPipeline(hand_landmark_model=str(hand_path))
        features = feature_model(hand)
        train_set = encode_items(fit_items, labels, pipeline, features, views, jitter, seed, progress=progress,
                                 desc="gesture crops (train)")
        val_set = encode_items(val_items, labels, pipeline, features, 1, seed=seed, progress=progress,
                               desc="gesture crops (validation)")
        head = build_head(len(labels), train_set.features, seed=seed)
        report = fit_classifier(head, train_set.features, train_set.labels, val_set.features, val_set.labels,
                                epochs, learning_rate, batch_size, seed=seed, progress=progress, csv_log=csv_log)
        model = attach_head(hand, head)
        check_crops = np.concatenate([roi_crop(pipeline, load_rgb(path)).tensor for path, _ in val_items[:4]])
        tflite = _verified_tflite(model, check_crops)
        counts = {label: sum(1 for _, item_label in fit_items if item_label == label) for label in labels}
        manifest = {
            "made_by": {"hand_model": str(hand_path), "hand_model_sha256": sha256_file(hand_path),
                        "data": str(data) if isinstance(data, (str, os.PathLike)) else "items",
                        "train_images": counts, "validation_images": len(val_items), "views": views,
                        "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
                        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "versions": installed_versions()},
            "training": {"epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                         "validation_accuracy": report.best_val_accuracy, "validation_loss": report.best_val_loss},
        }
        classifier = cls(labels, tflite, manifest)
        # what training saw, for comparisons on the same crops (`evaluate`); not saved
        classifier.training = TrainingRecord(model, head, features, pipeline, train_set, val_set, report)
        return classifier

    # --- saving and loading ---------------------------------------------------------------
    def save(self, folder, overwrite: bool = False) -> Path:
        """Write `gesture.json` and `model.tflite` into `folder`; returns the manifest's path.
        A folder holding anything but an earlier classifier is refused unless `overwrite`."""
        folder = check_gesture_output(folder, overwrite)
        manifest = {"format": FORMAT, "version": VERSION, "labels": list(self.labels),
                    "sha256": hashlib.sha256(self.model).hexdigest(), **self.manifest}
        text = json.dumps(manifest, indent=2)
        for name in (MANIFEST, MODEL_FILE):
            if (folder / name).is_symlink():
                raise ValueError(f"gesture folder {display_path(folder)}: {name} is a symbolic link; remove it first")
        with output_lock(folder / MANIFEST, "gesture classifier") as manifest_path:
            check_gesture_output(folder, overwrite)
            atomic_write(folder / MODEL_FILE, lambda path: path.write_bytes(self.model))
            written = atomic_write(manifest_path, lambda path: path.write_text(text + "\n"))
        self.folder, self._pipeline = folder, None
        return written

    def save_variant(self, folder, made_by: dict, source=None, overwrite: bool = False) -> Path:
        """Write a model-variant folder holding this classifier in `gesture/` (and the stages of
        `source`, the variant it started from); returns the variant manifest's path."""
        from ..variants import GESTURE_FOLDER, carried_stages, check_variant_output, write_variant

        folder = check_variant_output(folder, overwrite)
        stages, kinds, metrics = carried_stages(source)
        self.save(folder / GESTURE_FOLDER, overwrite=overwrite)
        return write_variant(folder, stages, Path(folder).name, made_by, source=source, kinds=kinds, metrics=metrics,
                             overwrite=overwrite, gesture=folder / GESTURE_FOLDER)

    @classmethod
    def load(cls, folder, num_threads: int = 1) -> "GestureClassifier":
        """A saved classifier: its own folder, or a variant folder that has one in `gesture/`."""
        folder = Path(folder)
        if (folder / "manifest.json").is_file() and not (folder / MANIFEST).is_file():
            from ..variants import read_variant

            variant = read_variant(folder)
            if variant.gesture is None:
                raise ValueError(f"variant {display_path(folder)} has no gesture classifier (no gesture/ folder)")
            folder = variant.gesture
        saved = read_gesture_model(folder)
        manifest = {k: v for k, v in saved.manifest.items() if k not in ("format", "version", "labels", "sha256")}
        classifier = cls(saved.labels, saved.model_path.read_bytes(), manifest, num_threads)
        classifier.folder = saved.folder
        return classifier

    # --- classifying ----------------------------------------------------------------------
    @property
    def pipeline(self) -> HolisticPipeline:
        """A cascade whose hand stage is this classifier's model (loaded on first use)."""
        if self._pipeline is None:
            if self.folder is None:
                raise ValueError("save the classifier first (classify_crop runs the saved model)")
            self._pipeline = HolisticPipeline(gesture_model=self.folder,
                                              num_threads={"hand_landmark": self.num_threads})
        return self._pipeline

    def crop_probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """(K,) class probabilities for one tight hand crop (uint8 RGB)."""
        pipeline = self.pipeline
        outputs = pipeline.hand_landmark.infer(roi_crop(pipeline, check_rgb(rgb, "hand crop")))
        return np.asarray(outputs[len(HAND_OUTPUTS)], np.float32).reshape(-1)

    def classify_crop(self, rgb: np.ndarray) -> tuple[str, float]:
        """(label, score) for a tight hand crop, cut to the hand ROI the way the cascade would."""
        return top_gesture(self.crop_probabilities(rgb), self.labels)


def _first_ten(labels: list[str]) -> str:
    """A list of classes for an error: one readable line also for a thousand."""
    return f"{labels[:10]}" + (f" and {len(labels) - 10} more" if len(labels) > 10 else "")


def _verified_tflite(model, check_crops: np.ndarray) -> bytes:
    """The model as a float32 .tflite that gives Keras's outputs on real crops within TOLERANCE."""
    tflite = keras_to_tflite(model)
    error = max(relative_error(interpreted, expected)
                for interpreted, expected in zip(run_tflite(tflite, check_crops), run_keras(model, check_crops)))
    if not error <= TOLERANCE:
        raise ValueError(f"the converted gesture model differs from the Keras model by {error:.1e} "
                         f"(relative; tolerance {TOLERANCE:.0e})")
    return tflite
