"""The fine-tuning loop: one module of the real Holistic cascade trained on labelled crops.

    run = finetune(FineTuneConfig(dataset_path="sets/hands", module="hands", preset="low_light",
                                  checkpoint_dir="runs/hands_lowlight"))
    run.model            # the trained Keras model, adapters merged: the shipped model's layers
    run.history          # per epoch: loss and val_loss per term, learning_rate, seconds

What trains (the three methods chapter 05 compares):
  full             freeze_backbone=False            every weight
  frozen backbone  freeze_backbone=True (default)   the heads (`convert.layer_groups`)
  LoRA             lora_rank=r                      only the rank-r adapters of every Conv2D and
                                                    Dense; every shipped weight stays as it was
                                                    (LoRA's definition, so freeze_backbone does not apply)

Each step the student sees the degraded crop; a frozen copy of the starting model sees the
clean crop and is the teacher of every point without a label (`losses`). Keras's own `fit`
runs the epochs with its callbacks: EarlyStopping, BackupAndRestore (an interrupted run
resumes from its last finished epoch when started again with the same checkpoint_dir),
CSVLogger, TensorBoard (scalars per loss term and the learning rate; a validation crop with
labelled and predicted points) and tqdm's bar. The best weights by validation loss are
written atomically (a crash mid-save leaves the previous best).

checkpoint_dir layout: finetune_config.json (the job, the folder's marker), finetune_run.json (the
seed and starting model), best.weights.h5, log.csv (one row per epoch; a resumed run keeps its
finished epochs, a new run starts a new log), tensorboard/, backup/ (only while a run is unfinished).
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import keras
import numpy as np

from ..files import atomic_write, display_path, output_lock
from ..mediapipe_models import model_path
from .adapters import LoraReport, add_lora, freeze, merge_lora
from .config import CHECKPOINT_MARKER, FineTuneConfig
from .data import iter_labelled, module_dataset
from .losses import landmark_losses
from .modules import TrainModule, train_module

BEST_WEIGHTS = "best.weights.h5"
EARLY_STOPPING_PATIENCE = 3
# config fields that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"epochs"}
# beside the job: what else decides the run (the seed picks the validation images), so a resumption matches it
RUN_SETTINGS = "finetune_run.json"


@dataclass
class FineTuneRun:
    """What a fine-tune produced and what it cost."""
    model: keras.Model                 # adapters merged: the starting model's layers, trained weights
    config: FineTuneConfig
    history: dict[str, list[float]]    # per epoch: loss terms (train and val_), learning_rate, seconds
    trainable_params: int
    total_params: int                  # the model's, adapters not counted (they are merged away)
    lora: LoraReport | None
    best_epoch: int                    # 1-based epoch whose weights `model` holds
    checkpoint_dir: Path
    train_crops: int = 0
    validation_crops: int = 0
    extras: dict = field(default_factory=dict)

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.median(self.history["seconds"])) if self.history.get("seconds") else float("nan")


class FineTuner(keras.Model):
    """The student being trained and the frozen teacher, as one Keras model whose train and test
    steps compute `landmark_losses` (so `fit` and its callbacks run the loop)."""

    def __init__(self, student: keras.Model, teacher: keras.Model, module: TrainModule, weights: dict[str, float]):
        super().__init__()
        self.student, self.teacher, self.module, self.weights_by_term = student, teacher, module, dict(weights)
        self.teacher.trainable = False
        terms = ["loss", "landmarks", "z", "presence"] + (["visibility"] if module.values_per_point == 5 else []) + \
            ["teacher"] + (["teacher_outputs"] if module.teacher_only_outputs else [])
        self.trackers = {name: keras.metrics.Mean(name=name) for name in terms}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.student(images, training=training)

    def _terms(self, data, training: bool) -> dict:
        images, targets = data
        outputs = _as_float32(self.student.output_names, self.student(images, training=training))
        teacher = _as_float32(self.teacher.output_names, self.teacher(targets["clean"], training=False))
        return landmark_losses(outputs, targets, self.module, teacher, self.weights_by_term)

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            terms = self._terms(data, training=True)
            scaled = self.optimizer.scale_loss(terms["total"])
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._update(terms)

    def test_step(self, data):
        return self._update(self._terms(data, training=False))

    def _update(self, terms: dict) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms["total" if name == "loss" else name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def _as_float32(names, outputs) -> dict:
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {name: keras.ops.cast(value, "float32") for name, value in zip(names, outputs)}


# --- what trains -----------------------------------------------------------------------------

def choose_trainable(model: keras.Model, config: FineTuneConfig) -> LoraReport | None:
    """Set what trains for the config's method (module docstring); the LoRA report if any."""
    if config.lora_rank is None:
        if config.freeze_backbone:
            freeze(model, "backbone")
        else:
            for layer in model.layers:
                layer.trainable = True
        return None
    report = add_lora(model, config.lora_rank)
    adapters = {id(getattr(model.get_layer(name), attr)) for name in report.layers
                for attr in ("lora_kernel_a", "lora_kernel_b")}
    for weight in model.weights:
        weight.trainable = id(weight) in adapters
    return report


def count_params(weights) -> int:
    return int(sum(np.prod(weight.shape) for weight in weights))


# --- data ------------------------------------------------------------------------------------

def split_items(items: list, validation_split: float, seed: int = 0) -> tuple[list, list]:
    """(train, validation) by image, a seeded shuffle; at least one image on each side."""
    if len(items) < 2:
        raise ValueError(f"need at least 2 labelled images to hold some out for validation, got {len(items)}")
    order = np.random.default_rng(seed).permutation(len(items))
    held_out = min(max(1, int(round(len(items) * validation_split))), len(items) - 1)
    return [items[i] for i in order[held_out:]], [items[i] for i in order[:held_out]]


def count_crops(items, module: str) -> int:
    from .data import iter_module_crops

    return sum(1 for _ in iter_module_crops(items, module))


# --- callbacks -------------------------------------------------------------------------------

class EpochExtras(keras.callbacks.Callback):
    """Adds the learning rate and the epoch's seconds to the logs (before CSV and TensorBoard see them)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["seconds"] = time.perf_counter() - self._start


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """The student's weights at the lowest val_loss so far, written atomically; a resumed run
    starts from the best of its `earlier` epochs (log rows), whose weights the file holds."""

    def __init__(self, path: Path, earlier: list[dict] = ()):
        super().__init__()
        self.path, self.best, self.best_epoch = path, float("inf"), 0
        for row in earlier:
            if np.isfinite(row.get("val_loss", float("nan"))) and row["val_loss"] < self.best:
                self.best, self.best_epoch = row["val_loss"], int(row["epoch"]) + 1

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get("val_loss", float("nan")))
        if np.isfinite(value) and value < self.best:
            self.best, self.best_epoch = value, epoch + 1
            atomic_write(self.path, lambda path: self.model.student.save_weights(str(path)))


class ValidationImages(keras.callbacks.Callback):
    """TensorBoard image per epoch: the first validation crop, labelled points green, predicted red."""

    def __init__(self, log_dir: Path, batch, module: TrainModule):
        super().__init__()
        self.log_dir, self.batch, self.module, self.writer = log_dir, batch, module, None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self.writer = tf.summary.create_file_writer(str(self.log_dir / "images"))

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        images, targets = self.batch
        outputs = _as_float32(self.model.student.output_names, self.model.student(images[:1]))
        predicted = keras.ops.convert_to_numpy(outputs[self.module.landmarks_output]).reshape(
            self.module.num_points, self.module.values_per_point)[:, :2]
        picture = draw_points(images[0], targets["points"][0, :, :2], targets["mask"][0] > 0, predicted)
        with self.writer.as_default():
            tf.summary.image("validation crop: labelled (green) vs predicted (red)", picture[None], step=epoch)


def draw_points(crop: np.ndarray, labelled: np.ndarray, known: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8: the crop (any value range) with labelled points green and predicted red."""
    import cv2

    low, high = float(crop.min()), float(crop.max())
    picture = np.ascontiguousarray(((crop - low) / max(high - low, 1e-6) * 255).astype(np.uint8))
    radius = max(1, crop.shape[0] // 96)
    for x, y in labelled[known]:
        cv2.circle(picture, (int(round(x)), int(round(y))), radius + 1, (0, 255, 0), -1)
    for x, y in predicted:
        cv2.circle(picture, (int(round(x)), int(round(y))), radius, (255, 0, 0), -1)
    return picture


# --- the run ---------------------------------------------------------------------------------

def prepare_checkpoint_dir(config: FineTuneConfig, settings: dict | None = None) -> Path:
    """Create checkpoint_dir and write the job (and the run's `settings` outside the config: its
    seed and starting model) into it; a folder holding another job's unfinished run (a different
    config or settings) is refused by the fields that differ."""
    folder = Path(config.checkpoint_dir)
    marker, settings_file = folder / CHECKPOINT_MARKER, folder / RUN_SETTINGS
    now = {**json.loads(config.to_json()), **(settings or {})}
    if marker.is_file() and (folder / "backup").exists():
        earlier = {}
        for file in (marker, settings_file) if settings_file.exists() else (marker,):  # older runs wrote no settings
            try:
                earlier.update(json.loads(file.read_text()))
            except (OSError, ValueError, TypeError) as error:
                raise ValueError(f"{display_path(file)}: unreadable ({error}); choose a new checkpoint_dir") from None
        changed = sorted(name for name in set(now) | set(earlier)
                         if now.get(name) != earlier.get(name) and name not in RESUMABLE_CHANGES
                         and (name not in (settings or {}) or settings_file.exists()))
        if changed:
            raise ValueError(f"checkpoint_dir {display_path(folder)} holds an unfinished run of another job "
                             f"(fields {changed} differ); resume it with the same config or choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, lambda path: path.write_text(config.to_json() + "\n"))
    atomic_write(settings_file, lambda path: path.write_text(json.dumps(settings or {}) + "\n"))
    return folder


def finished_epochs(folder: Path) -> list[dict]:
    """The log.csv rows (numbers) of the epochs an interrupted run in `folder` finished and
    backed up, the log rewritten to hold just those; [] (a new run, a new log) without a backup."""
    metadata, log = folder / "backup" / "training_metadata.json", folder / "log.csv"
    try:
        finished = int(json.loads(metadata.read_text())["epoch"])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{display_path(metadata)}: unreadable ({error}); remove {display_path(folder / 'backup')} "
                         "to start the run afresh") from None
    try:
        with open(log, newline="") as file:
            rows = [row for row in csv.DictReader(file) if int(row["epoch"]) < finished]
    except FileNotFoundError:
        rows = []
    # an epoch logged after the last backup runs again: its row must not appear twice
    columns = list(rows[0]) if rows else []

    def write(path):
        with open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    if rows:
        atomic_write(log, write)
    else:
        log.unlink(missing_ok=True)
    return [{name: float(value) if value else float("nan") for name, value in row.items()} for row in rows]


def build_models(config: FineTuneConfig, start_model=None) -> tuple[keras.Model, keras.Model]:
    """(student, teacher): two copies of the starting model (`start_model`: a .tflite path; the
    shipped model by default), the student in the config's precision policy."""
    from ..convert import tflite_to_keras
    source = model_path(config.model_name) if start_model is None else start_model
    teacher = tflite_to_keras(source)
    if not config.mixed_precision:
        return tflite_to_keras(source), teacher
    import tensorflow as tf

    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        return tflite_to_keras(source), teacher
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def float32_copy(model: keras.Model, source) -> keras.Model:
    """The starting model rebuilt in float32 with `model`'s (float32-stored) weights, layer by layer."""
    from ..convert import tflite_to_keras

    plain = tflite_to_keras(source)
    for layer in model.layers:
        plain.get_layer(layer.name).set_weights(layer.get_weights())
    return plain


def check_supported(config: FineTuneConfig) -> None:
    if config.task_type != "landmarks":
        raise ValueError("task_type 'classification' is the gesture head's job (chapter 06: holistic-lab gestures "
                         "train); finetune trains landmarks")
    if config.distributed_workers != 1:
        raise ValueError(f"distributed_workers: {config.distributed_workers} workers asked; this trainer runs one "
                         "process (multi-worker training is the scale-out chapter's)")


def load_items(config: FineTuneConfig) -> Callable[[], Iterable]:
    """A function giving the (rgb, labels) pairs of the config's data set each time it is called;
    `cache_dataset` decodes the set once and keeps it in memory."""
    path = config.dataset_path
    if config.cache_dataset:
        items = list(iter_labelled(path))
        return lambda: items
    return lambda: iter_labelled(path)


def finetune(config: FineTuneConfig, items: list | None = None, start_model=None, progress: bool = True,
             seed: int = 0, steps_per_epoch: int | None = None) -> FineTuneRun:
    """Fine-tune the config's module; `items` (a list of (rgb, Sample or HolisticResult) pairs)
    replaces reading config.dataset_path. `steps_per_epoch` caps batches per epoch (quick runs)."""
    check_supported(config)
    module = train_module(config.module)
    if items is None:
        items = list(load_items(config)())
    train_items, val_items = split_items(list(items), config.validation_split, seed)
    train_crops, validation_crops = count_crops(train_items, config.module), count_crops(val_items, config.module)
    if not train_crops or not validation_crops:   # before the checkpoint folder and the models are made
        raise ValueError(f"{config.dataset_path}: {train_crops} training and {validation_crops} validation "
                         f"{config.module} crops; every image's {module.part} lacks the points its ROI needs")
    # another run writing the same folder would mix its backup, log and best weights with this one's
    with output_lock(Path(config.checkpoint_dir), "checkpoint_dir"):
        return _fit(config, module, train_items, val_items, (train_crops, validation_crops), start_model,
                    progress, seed, steps_per_epoch)


def _fit(config: FineTuneConfig, module: TrainModule, train_items: list, val_items: list, crops: tuple[int, int],
         start_model, progress: bool, seed: int, steps_per_epoch: int | None) -> FineTuneRun:
    """`finetune`'s training, its data split and counted, the checkpoint folder locked."""
    train_crops, validation_crops = crops
    settings = {"seed": seed, "start_model": None if start_model is None else str(start_model)}
    folder = prepare_checkpoint_dir(config, settings)
    keras.utils.set_random_seed(seed)

    student, teacher = build_models(config, start_model)
    lora = choose_trainable(student, config)
    trainer = FineTuner(student, teacher, module, config.loss_weights)
    clip = {} if config.gradient_clip is None else {"global_clipnorm": config.gradient_clip}
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate, **clip))

    # repeated streams with a fixed number of steps: Keras knows each epoch's length (each pass of
    # the training stream draws new augmentations; the validation stream is the same every pass)
    steps = -(-train_crops // config.batch_size)   # whole numbers: a float ceil of 1 / 10**400 is 0 steps
    steps = steps if steps_per_epoch is None else min(steps, steps_per_epoch)
    validation_steps = -(-validation_crops // config.batch_size)
    train = module_dataset(lambda: train_items, config.module, config.batch_size, config.preset, seed).repeat()
    validation = module_dataset(lambda: val_items, config.module, config.batch_size, config.preset,
                                seed + 10_000, geometry=False, reseed_each_epoch=False)
    first_validation = next(iter(validation))
    validation_batch = (first_validation[0].numpy(), {k: v.numpy() for k, v in first_validation[1].items()})
    trainer(validation_batch[0][:1])   # built before fit: BackupAndRestore restores into built models only

    earlier = finished_epochs(folder)
    best = AtomicBestCheckpoint(folder / BEST_WEIGHTS, earlier)
    callbacks = [EpochExtras(), best,
                 keras.callbacks.EarlyStopping("val_loss", patience=EARLY_STOPPING_PATIENCE),
                 keras.callbacks.BackupAndRestore(str(folder / "backup")),
                 keras.callbacks.CSVLogger(str(folder / "log.csv"), append=bool(earlier)),
                 keras.callbacks.TensorBoard(str(folder / "tensorboard"), write_graph=False),
                 ValidationImages(folder / "tensorboard", validation_batch, module)]
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc=f"fine-tune {config.module}"))
    history = trainer.fit(train, validation_data=validation.repeat(), epochs=config.epochs, callbacks=callbacks,
                          steps_per_epoch=steps, validation_steps=validation_steps, verbose=0, shuffle=False)
    if best.best_epoch:
        student.load_weights(folder / BEST_WEIGHTS)
    trainable = count_params(student.trainable_weights)
    model = merge_lora(student) if lora is not None else student
    if config.mixed_precision:   # float16/bfloat16 compute, float32 weights: export needs a float32 graph
        model = float32_copy(model, start_model or model_path(config.model_name))
    # a resumed run's history is the whole run: the earlier epochs' log rows, then this fit's
    whole = {name: [row.get(name, float("nan")) for row in earlier] + [float(v) for v in values]
             for name, values in history.history.items()}
    return FineTuneRun(model, config, whole, trainable, model.count_params(), lora, best.best_epoch, folder,
                       train_crops, validation_crops)
