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

checkpoint_dir layout: finetune_config.json (the job, the folder's marker), best.weights.h5,
log.csv (one row per epoch; a resumed run keeps its finished epochs, a new run starts a new log),
tensorboard/, backup/ (only while a run is unfinished).

Several workers or GPUs (`distributed`): the models, optimizer and compile are made under the
process's tf.distribute strategy, one code path for one CPU, several local GPUs and a cluster.
`batch_size` is per replica (a worker, or a GPU); each step trains on a global batch of
batch_size x replicas. Two ways to share the images among several workers (`shard_by`):
  file  each worker decodes and caches the training images of its own TFRecord shards only
        (every n-th file from its index, tf.data's FILE rule) and trains on its own augmented
        batches of batch_size, fed through tf.distribute's per-worker input
        (`distribute_datasets_from_function`): the training images' decoding and memory scale
        out (the validation images, below, do not), and the run is not the same as one
        worker's (other batches, other augmentations). The crops come from a Python generator (decoded and
        augmented with albumentations), so tf.data's own FILE auto-shard, which rewrites a
        TFRecordDataset source, cannot see the files; the split follows the same rule by hand.
  data  every worker runs the same seeded generator over the whole set and DATA auto-shard cuts
        each global batch into the replicas' slices, so the replicas together see exactly the
        batches one worker with the global batch would (the equivalence
        benchmarks/distributed_equivalence.py measures).
  auto  (the default) file when the set has at least one file per worker, else data.
The validation images are shared by data either way, so val_loss is the whole split's.
The chief (worker 0) alone locks and writes checkpoint_dir; the others keep their callbacks'
files in a temporary folder that is removed.
Each replica's loss terms are means over its slice; their average is the global batch's loss
when the slices label equally many points (full batches of fully labelled crops) and a close
weighting otherwise. A distributed run does not resume: each worker would restore on its own.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from ..files import atomic_write, display_path, output_lock, sha256_file
from ..mediapipe_models import model_path
from . import distributed
from .adapters import LoraReport, add_lora, freeze, merge_lora
from .config import CHECKPOINT_MARKER, FineTuneConfig
from .data import module_dataset
from .losses import landmark_losses, named_outputs
from .modules import TrainModule, train_module

BEST_WEIGHTS = "best.weights.h5"
BEST_RECORD = "best.json"
RUN_RECORD = "run.json"   # what a resumed run must share besides the config: start model, seed, data
EARLY_STOPPING_PATIENCE = 3
# config fields that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"epochs"}
WORKER_SEED_STRIDE = 1009   # shard_by 'file': worker i augments with seed + i * this


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

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.median(self.history["seconds"])) if self.history.get("seconds") else float("nan")


class FineTuner(keras.Model):
    """The student being trained and the frozen teacher, as one Keras model whose train and test
    steps compute `landmark_losses` (so `fit` and its callbacks run the loop). Subclasses with
    their own terms (`prune.recover.Distiller`) inherit the steps and these two defaults."""

    clip_norm: float | None = None   # set by _fit on several replicas (train_step clips)
    across_workers = False           # set by _fit on a cluster of several workers

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
        images, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = named_outputs(self.student, images, training=training)
        teacher = named_outputs(self.teacher, targets["clean"])
        return landmark_losses(outputs, targets, self.module, teacher, self.weights_by_term)

    def train_step(self, data):
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            terms = self._terms(data, training=True)
            # Keras's optimizer SUMS the replicas' gradients (its _all_reduce_sum_gradients), and a
            # custom train_step gets no scaling from compile's loss: 1/replicas makes the sum the
            # global batch's mean gradient (2 workers vs 1: the same curve, benchmarks/distributed_equivalence.py)
            scaled = self.optimizer.scale_loss(terms["total"] / replicas)
        variables = self.student.trainable_variables
        gradients = tape.gradient(scaled, variables)
        if replicas > 1 and self.clip_norm is not None:
            # Keras clips each replica's share before summing; clipping the global gradient, as
            # one worker does, needs it summed first (the optimizer's own sum then adds the shares)
            gradients = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_norm)
            gradients = [gradient / replicas for gradient in gradients]
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update(terms)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 (3.15) builds a model under a strategy from a first batch it reduces across the
        # replicas, which fails under MultiWorkerMirroredStrategy (a PerReplica it cannot convert)
        # and takes that batch from the stream. `_fit` builds the model before fit; only the
        # optimizer's slots are left to make, under the strategy's scope.
        with self.distribute_strategy.scope():
            if not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def test_step(self, data):
        return self._update(self._terms(data, training=False))

    def _update(self, terms: dict) -> dict:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms["total" if name == "loss" else name])
        results = {name: tracker.result() for name, tracker in self.trackers.items()}
        if self.across_workers:
            # Keras averages each logged value over the workers with strategy.reduce(MEAN, axis=0),
            # which needs an axis: one value per worker, their mean is the cluster's (equal batches),
            # so every worker logs and early-stops on the same numbers
            results = {name: keras.ops.reshape(value, (1,)) for name, value in results.items()}
        return results


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

def split_indices(count: int, validation_split: float, seed: int = 0, groups=None) -> tuple[list[int], list[int]]:
    """(train, validation) item indices, a seeded shuffle; at least one on each side. With
    `groups` (a label per item: its video, photograph or person) whole groups go to one side,
    so near-identical frames of one clip cannot sit on both and flatter the validation loss."""
    if count < 2:
        raise ValueError(f"need at least 2 labelled images to hold some out for validation, got {count}")
    labels = np.arange(count) if groups is None else np.asarray(list(groups))
    if len(labels) != count:
        raise ValueError(f"groups: {len(labels)} labels for {count} items")
    names = np.unique(labels)
    if len(names) < 2:
        raise ValueError("groups: every item is in one group; validation needs at least two groups")
    sizes = {name: int(size) for name, size in zip(*np.unique(labels, return_counts=True))}
    order = np.random.default_rng(seed).permutation(len(names))
    # whole groups in a seeded order, each taken if it still fits the split's share of the items
    # (a clip of 60 frames counts 60, a photograph 1), never every group
    budget = max(1.0, validation_split * count)
    validation, held = set(), 0
    for name in names[order]:
        if held + sizes[name] <= budget and len(validation) < len(names) - 1:
            validation.add(name)
            held += sizes[name]
    if not validation:   # every group is larger than the split: hold out the smallest
        validation.add(min(names, key=lambda name: sizes[name]))
    inside = np.isin(labels, list(validation))
    return np.flatnonzero(~inside).tolist(), np.flatnonzero(inside).tolist()


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
    """The student's weights at the lowest val_loss so far, written atomically, then `best.json`
    (its epoch and val_loss). A resumed run starts from `best.json`, which names the weights the
    file holds even if the run died between saving them and backing the epoch up."""

    def __init__(self, path: Path, resumed: bool):
        super().__init__()
        self.path, self.record, self.best, self.best_epoch = path, path.with_name(BEST_RECORD), float("inf"), 0
        if resumed and self.record.is_file():
            try:
                record = json.loads(self.record.read_text())
                self.best, self.best_epoch = float(record["val_loss"]), int(record["epoch"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{display_path(self.record)}: unreadable ({error}); remove the checkpoint "
                                 "folder's backup/ to start afresh") from None

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get("val_loss", float("nan")))
        if np.isfinite(value) and value < self.best:
            self.best, self.best_epoch = value, epoch + 1
            atomic_write(self.path, lambda path: self.model.student.save_weights(str(path)))
            atomic_write(self.record, lambda path: path.write_text(json.dumps({"epoch": epoch + 1, "val_loss": value})))


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
        outputs = named_outputs(self.model.student, images[:1])
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

def prepare_checkpoint_dir(config: FineTuneConfig, identity: dict) -> Path:
    """Create checkpoint_dir and write the job (and `identity`: start model, seed, data
    fingerprint) into it. A folder holding an unfinished run of another job (a config field
    other than `epochs`, or the identity, differs) is refused by what differs."""
    folder = Path(config.checkpoint_dir)
    marker, record = folder / CHECKPOINT_MARKER, folder / RUN_RECORD
    check_checkpoint_dir(folder)
    if marker.is_file() and (folder / "backup").exists():
        try:
            earlier = json.loads(marker.read_text())
            earlier_identity = json.loads(record.read_text()) if record.is_file() else {}
        except (OSError, ValueError) as error:
            raise ValueError(f"{display_path(marker)}: unreadable ({error}); choose a new checkpoint_dir") from None
        now = json.loads(config.to_json())
        changed = sorted(name for name in set(now) | set(earlier)
                         if now.get(name) != earlier.get(name) and name not in RESUMABLE_CHANGES)
        changed += sorted(name for name in set(identity) | set(earlier_identity)
                          if identity.get(name) != earlier_identity.get(name))
        if changed:
            raise ValueError(f"checkpoint_dir {display_path(folder)} holds an unfinished run of another job "
                             f"({', '.join(changed)} differ); resume it with the same job or choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, lambda path: path.write_text(config.to_json() + "\n"))
    atomic_write(record, lambda path: path.write_text(json.dumps(identity, indent=2) + "\n"))
    return folder


def check_checkpoint_dir(folder) -> Path:
    """A checkpoint folder must be new, empty or a fine-tuning checkpoint (it holds CHECKPOINT_MARKER)."""
    folder = Path(folder)
    where = f"checkpoint_dir {display_path(folder)}"
    try:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{where} exists and is not a folder")
        if folder.is_dir() and any(folder.iterdir()) and not (folder / CHECKPOINT_MARKER).is_file():
            raise ValueError(f"{where} exists and holds files that are not a fine-tuning checkpoint (no "
                             f"{CHECKPOINT_MARKER}); choose a new or empty folder")
    except OSError as error:
        raise ValueError(f"{where}: cannot be used ({error.strerror or error})") from None
    return folder


def fingerprint(items=None, files=()) -> str:
    """sha256 over the training data: each (rgb, labels) pair's pixels and points, or the data set's files."""
    import hashlib

    digest = hashlib.sha256()
    for rgb, labels in items or ():
        digest.update(np.ascontiguousarray(rgb).tobytes())
        digest.update(np.ascontiguousarray(labels.xyz, np.float32).tobytes())
    for path in files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


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
    distributed.check_local_workers(config.distributed_workers)


def data_source(config: FineTuneConfig) -> tuple[list[int], Callable, list[Path]]:
    """(records in each of the set's files, `select(indices)` -> a function giving those (rgb,
    labels) pairs each time it is called, the files). Indices count through the files in order;
    only files holding a chosen index are read. `cache_dataset` decodes the chosen pairs once and
    keeps them in memory; without it every call reads and decodes them again (memory for one batch)."""
    from ..formats import tfrecord

    files = [Path(path) for path in tfrecord.set_file_names(config.dataset_path)]
    per_file = [tfrecord.count_records(file) for file in files]   # framing and crc only, no decoding
    starts = np.cumsum([0] + per_file)

    def stream(indices):
        wanted = np.unique(np.asarray(indices, np.int64))
        for number, file in enumerate(files):
            inside = set((wanted[(wanted >= starts[number]) & (wanted < starts[number + 1])] - starts[number]).tolist())
            if inside:   # only the chosen records' images are decoded
                yield from ((tfrecord.decode_image(sample), sample)
                            for index, sample in enumerate(tfrecord.read([file])) if index in inside)

    def select(indices):
        if config.cache_dataset:
            chosen = list(stream(indices))
            return lambda: chosen
        return lambda: stream(indices)

    return per_file, select, files


def shard_policy(config: FineTuneConfig, file_count: int | None, workers: int) -> str:
    """'file' or 'data' (module docstring): config.shard_by, 'auto' resolved as tf.data's AUTO
    policy does (by file when every worker can have a file of its own); `file_count` None: the
    images came as Python items, not a TFRecord set."""
    if workers == 1:
        return "data"
    if config.shard_by == "file":
        if file_count is None:
            raise ValueError("shard_by 'file': the images were given as items, not a TFRecord set; use 'data'")
        if file_count < workers:
            raise ValueError(f"shard_by 'file': {config.dataset_path} has {file_count} file(s) for {workers} "
                             "workers; write it in at least one shard per worker (to-tfrecord --shard-size) or "
                             "use 'data'")
    if config.shard_by == "auto":
        return "file" if file_count is not None and file_count >= workers else "data"
    return config.shard_by


def finetune(config: FineTuneConfig, items: list | None = None, start_model=None, progress: bool = True,
             seed: int = 0, steps_per_epoch: int | None = None, groups=None) -> FineTuneRun:
    """Fine-tune the config's module; `items` (a list of (rgb, Sample or HolisticResult) pairs)
    replaces reading config.dataset_path, `groups` (a label per item) keeps each group on one
    side of the validation split. `steps_per_epoch` caps batches per epoch (quick runs)."""
    check_supported(config)
    module = train_module(config.module)
    distribution = distributed.strategy()   # first: MultiWorkerMirroredStrategy must precede any TF op
    chief = distributed.is_chief()
    if chief:
        check_checkpoint_dir(config.checkpoint_dir)
    if distributed.num_workers() > 1:
        check_not_resuming(config.checkpoint_dir)
    workers, worker = distributed.num_workers(), distributed.worker_index()
    if items is None:
        per_file, select, files = data_source(config)
        count, policy = sum(per_file), shard_policy(config, len(files), workers)
    else:
        items, files = list(items), []
        count, policy = len(items), shard_policy(config, None, workers)

        def select(indices):
            chosen = [items[i] for i in indices]
            return lambda: chosen
    train_indices, val_indices = split_indices(count, config.validation_split, seed, groups)
    if policy == "file":   # this worker decodes, caches and trains on its own files' images only
        mine = set(distributed.files_of_worker(len(files), worker, workers))
        file_of = np.repeat(np.arange(len(files)), per_file)
        train_indices = [index for index in train_indices if file_of[index] in mine]
    make_train, make_val = select(train_indices), select(val_indices)
    train_crops, validation_crops = count_crops(make_train(), config.module), count_crops(make_val(), config.module)
    if policy == "file":
        by_worker = distributed.counts_of_workers(distribution, train_crops)   # the same list on every worker
        idle = [index for index, crops in enumerate(by_worker) if not crops]
        if idle:
            raise ValueError(f"shard_by 'file': worker(s) {idle} have no training {config.module} crops in their "
                             f"files of {config.dataset_path}; write the set in more, evenly filled shards or use "
                             "'data'")
        train_crops = sum(by_worker)
    if not train_crops or not validation_crops:   # before the checkpoint folder and the models are made
        raise ValueError(f"{config.dataset_path}: {train_crops} training and {validation_crops} validation "
                         f"{config.module} crops; every image's {module.part} lacks the points its ROI needs")
    start = Path(start_model) if start_model is not None else model_path(config.model_name)
    fit = functools.partial(_fit, config, module, distribution, make_train=make_train, make_val=make_val,
                            crops=(train_crops, validation_crops), by_file=policy == "file", start=start,
                            start_model=start_model, progress=progress and chief, seed=seed, steps_per_epoch=steps_per_epoch)
    if not chief:   # trains in step with the chief; its callbacks' files go to a folder removed afterwards
        with tempfile.TemporaryDirectory(prefix="holistic-lab-worker-") as scratch:
            return dataclasses.replace(fit(folder=Path(scratch)), checkpoint_dir=Path(config.checkpoint_dir))
    identity = {"start_model_sha256": sha256_file(start), "seed": seed, "groups": groups is not None,
                "data_sha256": fingerprint(items, files)}
    # another run writing the same folder would mix its backup, log and best weights with this one's
    with output_lock(Path(config.checkpoint_dir), "checkpoint_dir"):
        return fit(folder=prepare_checkpoint_dir(config, identity))


def check_not_resuming(checkpoint_dir) -> None:
    """A run on several workers cannot resume an unfinished run (each worker would restore on its own)."""
    backup = Path(checkpoint_dir) / "backup"
    if backup.exists():
        raise ValueError(f"checkpoint_dir {display_path(checkpoint_dir)} holds an unfinished run; a run on several "
                         f"workers does not resume one: choose a new checkpoint_dir, or remove "
                         f"{display_path(backup)} to start afresh")


def sharded(dataset):
    """`dataset` (of global batches) set to be cut batch by batch among the replicas (module docstring)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _fit(config: FineTuneConfig, module: TrainModule, distribution, folder: Path, make_train, make_val,
         crops: tuple[int, int], by_file: bool, start: Path, start_model, progress: bool, seed: int,
         steps_per_epoch: int | None) -> FineTuneRun:
    """`finetune`'s training, its data split and counted, the checkpoint folder locked and prepared."""
    train_crops, validation_crops = crops
    keras.utils.set_random_seed(seed)

    replicas = distribution.num_replicas_in_sync
    with distribution.scope():
        student, teacher = build_models(config, start_model)
        lora = choose_trainable(student, config)
        trainer = FineTuner(student, teacher, module, config.loss_weights)
        clip = {} if config.gradient_clip is None else {"global_clipnorm": config.gradient_clip}
        if replicas > 1:
            trainer.clip_norm, clip = config.gradient_clip, {}
        trainer.across_workers = distributed.num_workers() > 1
        optimizer = keras.optimizers.Adam(config.step_size, **clip)
        if student.dtype_policy.name == "mixed_float16":   # float16 gradients underflow without loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        trainer.compile(optimizer=optimizer)

    # repeated streams with a fixed number of steps: Keras knows each epoch's length (each pass of
    # the training stream draws new augmentations; the validation stream is the same every pass)
    batch = config.batch_size * replicas   # the global batch
    steps = -(-train_crops // batch)   # whole numbers: a float ceil of 1 / 10**400 is 0 steps
    steps = steps if steps_per_epoch is None else min(steps, steps_per_epoch)
    validation_steps = -(-validation_crops // batch)
    if by_file:   # each worker's own images, batch_size per replica, its own augmentation seed
        train = distribution.distribute_datasets_from_function(lambda context: module_dataset(
            make_train, config.module, context.get_per_replica_batch_size(batch), config.preset,
            seed + WORKER_SEED_STRIDE * context.input_pipeline_id).repeat())
    else:
        train = sharded(module_dataset(make_train, config.module, batch, config.preset, seed).repeat())
    validation = sharded(module_dataset(make_val, config.module, batch, config.preset,
                                        seed + 10_000, geometry=False, reseed_each_epoch=False))
    first_validation = next(iter(validation))
    validation_batch = (first_validation[0].numpy(), {k: v.numpy() for k, v in first_validation[1].items()})
    with distribution.scope():
        trainer(validation_batch[0][:1])   # built before fit: BackupAndRestore restores into built models only

    earlier = finished_epochs(folder)
    best = AtomicBestCheckpoint(folder / BEST_WEIGHTS, resumed=(folder / "backup").exists())
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
        model = float32_copy(model, start)
    # a resumed run's history is the whole run: the earlier epochs' log rows, then this fit's
    whole = {name: [row.get(name, float("nan")) for row in earlier] + [float(v) for v in values]
             for name, values in history.history.items()}
    return FineTuneRun(model, config, whole, trainable, model.count_params(), lora, best.best_epoch, folder,
                       train_crops, validation_crops)
