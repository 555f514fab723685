"""Fit a small classifier (the gesture head, the landmark MLP) on cached inputs, with early stopping.

Both classifiers of chapter 06 train the same way: Adam on sparse cross-entropy, classes
weighted by inverse frequency (a user's added class may have fewer images), early stopping on a
held-out part of the training items with the best epoch's weights restored.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


@dataclass(frozen=True)
class FitReport:
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    history: dict


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        missing = [int(i) for i in np.flatnonzero(counts == 0)]
        raise ValueError(f"classes {missing} have no training examples")
    return {i: float(len(labels) / (num_classes * count)) for i, count in enumerate(counts)}


def fit_classifier(model: keras.Model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                   epochs: int, learning_rate: float = 1e-3, batch_size: int = 64, patience: int = 15,
                   seed: int = 0, progress: bool = True, csv_log=None) -> FitReport:
    """Train `model` (softmax outputs) in place; the weights of the epoch with the lowest
    validation loss are kept. `csv_log`: a file Keras's CSVLogger writes each epoch's losses and
    accuracies to as training goes (what the job API's /metrics reads)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not len(x_val):
        raise ValueError("no validation examples: early stopping needs some")
    num_classes = int(model.output_shape[-1])
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    callbacks = [stop]
    if csv_log is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(csv_log)))
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="gesture classifier"))
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=batch_size, shuffle=True,
                        class_weight=class_weights(y, num_classes), callbacks=callbacks, verbose=0).history
    best = int(np.argmin(history["val_loss"]))
    return FitReport(len(history["val_loss"]), best + 1, float(history["val_loss"][best]),
                     float(history["val_accuracy"][best]), {k: [float(v) for v in vs] for k, vs in history.items()})
