"""Recovery after pruning: the pruned model (student) distilled from the unpruned one (teacher).

A pruned model has the unpruned model's inputs and named outputs but fewer channels, and loses
accuracy. It recovers by learning to give the teacher's outputs on unlabelled crops: the real
crops the cascade hands this stage (`recovery_crops`), lightly augmented on the fly, the teacher
frozen and fed the very same augmented crop.

    crops = recovery_crops("hand_landmark", 64)                         # (64, 224, 224, 3), real crops
    run = distill(pruned, shipped, crops, epochs=5)                     # run.model, run.history
    run = distill(pruned, shipped, crops, epochs=5, feature_layers=["conv2d_10"],
                  kept={"conv2d_10": kept_channels})                    # also match a layer's activations

The loss (`distillation_loss`), one term per output, each about 1 when the student is as far off
as the teacher's own spread:
  regression  landmarks, world points, heatmaps, segmentation: mean squared error divided by the
              teacher output's variance over the batch (all its values), so a 256 x 256
              segmentation map weighs what 21 landmarks weigh
  score       presence, handedness, pose visibility and per-point presence: binary cross-entropy
              less the teacher's own entropy (the Bernoulli KL divergence: BCE's gradient, 0 when
              the student gives the teacher's probability), logits compared as probabilities
  features    (optional) the named layers' activations, the teacher's on the channels the student
              kept, MSE divided by the teacher activation's variance, averaged over the layers
  total       the sum of the terms
Which output is which comes from `train.modules.MODULES` (presence_is_logit, logit_outputs: the
pose segmentation and heatmaps are logits, compared as probabilities as chapter 05 does, since raw
logits reach -1500 where the sigmoid is flat) for the three landmark models the chapter measures
(pose_landmark_full, face_landmark, hand_landmark_full; `convert.OUTPUT_MEANINGS` describes each
output). Every other stage (the detectors, hand_recrop) gets the regression term on every output,
score logits included.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from ..convert import OUTPUT_MEANINGS
from ..train.loop import EARLY_STOPPING_PATIENCE, EpochExtras, FineTuner, split_indices
from ..train.modules import MODULES, TrainModule
from ..variants import STAGES

# the teacher's variance never divides by less: a constant output (a blank crop's) cannot blow a term up
MIN_VARIANCE = 1e-6
# probabilities are clipped this far from 0 and 1 before their logarithm
PROBABILITY_EPSILON = 1e-7
# on-the-fly augmentation: brightness and contrast change by up to this fraction, shift by up to this
# fraction of the crop side (the cascade's crops wobble by a few pixels from frame to frame)
BRIGHTNESS, CONTRAST, SHIFT = 0.1, 0.1, 0.03


@dataclass
class DistillRun:
    """What a distillation produced and what it cost."""
    model: keras.Model                 # the student, holding the weights of its best epoch
    history: dict[str, list[float]]    # per epoch: loss (the total), each term (train and val_), learning_rate, seconds
    best_epoch: int                    # 1-based epoch whose weights `model` holds (lowest val_loss); 0: none
                                       # beat the starting weights' val_loss_before, which it keeps

    @property
    def seconds_per_epoch(self) -> list[float]:
        return list(self.history.get("seconds", []))


# --- which model, which outputs ----------------------------------------------------------------

def model_name_of(stage_or_module: str) -> str:
    """The shipped model's name for a stage ("hand_landmark"), a chapter 05 module ("hands") or a
    model name ("hand_landmark_full")."""
    if stage_or_module in MODULES:
        return MODULES[stage_or_module].model_name
    if stage_or_module in STAGES:
        return STAGES[stage_or_module][1]
    if stage_or_module in OUTPUT_MEANINGS:
        return stage_or_module
    raise ValueError(f"stage_or_module: unknown {stage_or_module!r}; expected a stage ({', '.join(STAGES)}), "
                     f"a module ({', '.join(MODULES)}) or a model ({', '.join(OUTPUT_MEANINGS)})")


def _module_of(model_name: str) -> TrainModule | None:
    return next((module for module in MODULES.values() if module.model_name == model_name), None)


def landmark_model_of(model: keras.Model) -> str | None:
    """The landmark model (pose_landmark_full, face_landmark, hand_landmark_full) whose input size and
    output names `model` has, or None (a model of another stage, or a hand-made one)."""
    size = tuple(model.inputs[0].shape[1:3])
    for module in MODULES.values():
        if size == (module.input_size, module.input_size) and \
                list(model.output_names) == list(OUTPUT_MEANINGS[module.model_name]):
            return module.model_name
    return None


# --- the loss ----------------------------------------------------------------------------------

def distillation_loss(student_outputs: dict, teacher_outputs: dict, stage_or_module: str | None) -> dict:
    """Each term (scalar tensors, by output name; the pose landmarks' visibility and presence
    scores as "<name>_scores") and their sum under "total", for the outputs given (all or some of
    the model's). `stage_or_module` None: the regression term on every output (module docstring)."""
    if set(student_outputs) != set(teacher_outputs):
        raise ValueError(f"student_outputs: outputs {sorted(student_outputs)} differ from teacher_outputs' "
                         f"{sorted(teacher_outputs)}")
    module = None
    if stage_or_module is not None:
        model_name = model_name_of(stage_or_module)
        unknown = sorted(set(teacher_outputs) - set(OUTPUT_MEANINGS.get(model_name, {})))
        if unknown:
            raise ValueError(f"teacher_outputs: {unknown} are not outputs of {model_name} "
                             f"({', '.join(OUTPUT_MEANINGS[model_name])})")
        module = _module_of(model_name)
    terms = {}
    for name, taught in teacher_outputs.items():
        output = ops.cast(student_outputs[name], "float32")
        taught = ops.stop_gradient(ops.cast(taught, "float32"))
        if module is None:
            terms[name] = normalised_mse(output, taught)
        elif name == module.landmarks_output and module.values_per_point == 5:
            # pose: x, y, z in pixels, then visibility and presence logits per point
            points = ops.reshape(output, (-1, module.num_points, 5))
            taught_points = ops.reshape(taught, (-1, module.num_points, 5))
            terms[name] = normalised_mse(points[..., :3], taught_points[..., :3])
            terms[f"{name}_scores"] = bernoulli_kl(points[..., 3:], taught_points[..., 3:], from_logits=True)
        elif name == module.presence_output:
            terms[name] = bernoulli_kl(output, taught, from_logits=module.presence_is_logit)
        elif name in module.logit_outputs:
            terms[name] = normalised_mse(ops.sigmoid(output), ops.sigmoid(taught))
        elif "sigmoid" in OUTPUT_MEANINGS[module.model_name][name]:   # hand_landmark_full's handedness
            terms[name] = bernoulli_kl(output, taught, from_logits=False)
        else:
            terms[name] = normalised_mse(output, taught)
    terms["total"] = sum(terms.values())
    return terms


def normalised_mse(output, taught):
    """Mean squared error over every value, divided by the teacher's variance over the whole batch."""
    variance = ops.maximum(ops.var(taught), MIN_VARIANCE)
    return ops.mean(ops.square(output - taught)) / ops.stop_gradient(variance)


def bernoulli_kl(output, taught, from_logits: bool):
    """Mean over every value of BCE(teacher probability, student probability) less the teacher's
    entropy: the same gradient as BCE, and 0 where the student matches the teacher."""
    log_p, log_not_p = _log_probabilities(output, from_logits)
    log_t, log_not_t = _log_probabilities(taught, from_logits)
    t = ops.exp(log_t)
    return ops.mean(t * (log_t - log_p) + (1.0 - t) * (log_not_t - log_not_p))


def _log_probabilities(values, from_logits: bool):
    """(log p, log (1 - p)), computed from logits without overflow, from probabilities clipped."""
    if from_logits:
        return ops.log_sigmoid(values), ops.log_sigmoid(-values)
    p = ops.clip(values, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    return ops.log(p), ops.log(1.0 - p)


def feature_loss(student_features: list, teacher_features: list, kept: list) -> object:
    """Mean over the layers of `normalised_mse` between the student's activation and the teacher's
    on the student's channels (`kept`: per layer the teacher channel indices, or None for all)."""
    values = []
    for output, taught, channels in zip(student_features, teacher_features, kept):
        taught = taught if channels is None else ops.take(taught, channels, axis=-1)
        values.append(normalised_mse(ops.cast(output, "float32"), ops.stop_gradient(ops.cast(taught, "float32"))))
    return sum(values) / len(values)


# --- the trainer -------------------------------------------------------------------------------

class Distiller(FineTuner):
    """The student being trained and the frozen teacher, as one Keras model whose train and test
    steps (chapter 05's `train.loop.FineTuner`'s) compute `distillation_loss` on the same crops,
    augmented in training, so `fit` runs the loop. Its logs: "loss" (the total) and each term."""

    def __init__(self, student: keras.Model, teacher: keras.Model, stage_or_module: str | None,
                 feature_layers=(), kept: dict | None = None, value_range=(0.0, 1.0), seed: int = 0):
        keras.Model.__init__(self)   # FineTuner's own takes a fine-tuning module and its label terms
        self.student, self.teacher, self.stage_or_module = student, teacher, stage_or_module
        self.teacher.trainable = False
        self.feature_layers = list(feature_layers)
        self.kept = [None if kept is None or name not in kept else np.asarray(kept[name], np.int32)
                     for name in self.feature_layers]
        # one model per network giving its outputs and the layers' activations, sharing its layers
        self.student_view = _with_features(student, self.feature_layers)
        self.teacher_view = _with_features(teacher, self.feature_layers)
        self.augment = keras.Sequential([
            keras.layers.RandomBrightness(BRIGHTNESS, value_range=value_range, seed=seed),
            keras.layers.RandomContrast(CONTRAST, value_range=value_range, seed=seed + 1),
            keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="nearest", seed=seed + 2)])
        self.trackers: dict[str, keras.metrics.Mean] = {}

    def build_trackers(self, images) -> None:
        """One mean per term `terms` gives on `images` ("loss" for the total); builds both views."""
        names = ["loss" if name == "total" else name for name in self.terms(images)]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def _terms(self, data, training: bool) -> dict:
        # student and teacher see the very same augmented crops
        return self.terms(self.augment(data, training=True) if training else data, training)

    def terms(self, images, training: bool = False) -> dict:
        count = len(self.student.outputs)
        student = _as_list(self.student_view(images, training=training))
        teacher = _as_list(self.teacher_view(images, training=False))
        names = self.student.output_names
        terms = distillation_loss(dict(zip(names, student[:count])), dict(zip(names, teacher[:count])),
                                  self.stage_or_module)
        if self.feature_layers:
            terms["features"] = feature_loss(student[count:], teacher[count:], self.kept)
            terms["total"] = terms["total"] + terms["features"]
        return terms


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _with_features(model: keras.Model, layer_names: list[str]) -> keras.Model:
    if not layer_names:
        return keras.Model(model.input, list(model.outputs))
    return keras.Model(model.input, list(model.outputs) + [model.get_layer(name).output for name in layer_names])


# --- checks ------------------------------------------------------------------------------------

def check_distillation(student: keras.Model, teacher: keras.Model, crops, epochs: int, batch_size: int,
                       learning_rate: float, validation_split: float, feature_layers, kept) -> np.ndarray:
    """`crops` as float32 (n, H, W, 3); a ValueError naming the argument that is wrong."""
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected a whole number >= 1, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a whole number >= 1, got {batch_size!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a number > 0, got {learning_rate!r}")
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split: expected a fraction between 0 and 1, got {validation_split!r}")
    if list(student.output_names) != list(teacher.output_names):
        raise ValueError(f"student: outputs {list(student.output_names)} differ from the teacher's "
                         f"{list(teacher.output_names)}; a pruned model keeps the unpruned model's outputs")
    expected, given = tuple(teacher.inputs[0].shape[1:]), tuple(student.inputs[0].shape[1:])
    if given != expected:
        raise ValueError(f"student: input shape {given} differs from the teacher's {expected}")
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != expected or len(crops) == 0:
        raise ValueError(f"crops: expected shape (n, {', '.join(map(str, expected))}) with n >= 2, got {crops.shape}")
    if len(crops) < 2:
        raise ValueError(f"crops: {len(crops)} crop; at least 2 are needed to hold some out for validation")
    if not np.issubdtype(crops.dtype, np.floating) or not np.isfinite(crops).all():
        raise ValueError(f"crops: expected finite float values, got dtype {crops.dtype}")
    for name in feature_layers:
        for role, model in (("student", student), ("teacher", teacher)):
            if name not in {layer.name for layer in model.layers}:
                raise ValueError(f"feature_layers: the {role} has no layer {name!r}")
        student_channels = int(student.get_layer(name).output.shape[-1])
        teacher_channels = int(teacher.get_layer(name).output.shape[-1])
        channels = np.arange(teacher_channels) if kept is None or name not in kept else np.asarray(kept[name])
        if channels.ndim != 1 or len(channels) != student_channels or \
                (len(channels) and (channels.min() < 0 or channels.max() >= teacher_channels)):
            raise ValueError(f"kept[{name!r}]: expected {student_channels} channel indices of the teacher's "
                             f"{teacher_channels} (the student's channels), got {channels.tolist()}")
    unknown = sorted(set(kept or {}) - set(feature_layers))
    if unknown:
        raise ValueError(f"kept: names layers {unknown} that are not in feature_layers")
    return crops.astype(np.float32, copy=False)


# --- the run -----------------------------------------------------------------------------------

def distill(student: keras.Model, teacher: keras.Model, crops: np.ndarray, epochs: int, batch_size: int = 16,
            learning_rate: float = 1e-5, validation_split: float = 0.2, feature_layers=(), kept: dict | None = None,
            progress: bool = True, seed: int = 0, stage_or_module: str | None = None) -> DistillRun:
    """Train `student` (in place) towards the frozen `teacher` on `crops` (the stage's real inputs,
    `recovery_crops`) and return it with its history.

    Adam at `learning_rate`: 1e-5 by default, because Adam first moves every weight by about the
    step (on hand_landmark_full with one convolution halved, two steps at 1e-4 or 3e-5 raised the
    loss, 0.75 -> 2.0 and 0.79, while 1e-5 lowered it to 0.59; chapter 05 found the same for pose).
    A seeded `validation_split` is held out, not augmented (neighbouring video frames may fall on
    both sides: its loss guides early stopping, it is no accuracy figure); EarlyStopping on it
    restores the best epoch's weights, and if no epoch beats the starting weights on it, those stay. `stage_or_module` None: the teacher's landmark model if its
    input size and outputs are one's (`landmark_model_of`), else every output by mean squared error.
    `kept`: layer -> the teacher's channel indices the student kept (a layer not named: all)."""
    feature_layers = list(feature_layers)
    crops = check_distillation(student, teacher, crops, epochs, batch_size, learning_rate, validation_split,
                               feature_layers, kept)
    if stage_or_module is None:
        stage_or_module = landmark_model_of(teacher)
    keras.utils.set_random_seed(seed)
    if not student.trainable_weights:
        raise ValueError(f"student {student.name!r}: no trainable weights (every layer is frozen); nothing to recover")
    # the teacher is frozen for the run only: pruned again afterwards, a frozen source gives a frozen model
    flags = (teacher.trainable, [layer.trainable for layer in teacher.layers])
    try:
        return _fit(student, teacher, crops, epochs, batch_size, learning_rate, validation_split, feature_layers,
                    kept, progress, seed, stage_or_module)
    finally:
        teacher.trainable = flags[0]
        for layer, flag in zip(teacher.layers, flags[1]):
            layer.trainable = flag


def _fit(student, teacher, crops, epochs, batch_size, learning_rate, validation_split, feature_layers, kept,
         progress, seed, stage_or_module) -> DistillRun:
    train_indices, val_indices = split_indices(len(crops), validation_split, seed)
    value_range = (min(0.0, float(crops.min())), max(1.0, float(crops.max())))
    trainer = Distiller(student, teacher, stage_or_module, feature_layers, kept, value_range, seed)
    trainer.build_trackers(crops[:1])
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))

    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices(crops[train_indices]).shuffle(
        len(train_indices), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    validation = tf.data.Dataset.from_tensor_slices(crops[val_indices]).batch(batch_size)
    stopping = keras.callbacks.EarlyStopping("val_loss", patience=EARLY_STOPPING_PATIENCE,
                                             restore_best_weights=True)
    callbacks = [EpochExtras(), stopping]
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="distil"))
    start = [weight.copy() for weight in student.get_weights()]
    logger = logging.getLogger("tensorflow")   # each new student retraces fit's step; TF warns of it every time
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        before = float(trainer.evaluate(validation, verbose=0, return_dict=True)["loss"])
        history = trainer.fit(train, validation_data=validation, epochs=int(epochs), callbacks=callbacks, verbose=0,
                              shuffle=False)   # the dataset reshuffles itself each epoch
    finally:
        logger.setLevel(level)
    whole = {name: [float(value) for value in values] for name, values in history.history.items()}
    whole["val_loss_before"] = [before]
    if min(whole["val_loss"]) >= before:   # no epoch beat the start (a step too large): keep the start
        student.set_weights(start)
        return DistillRun(student, whole, 0)
    return DistillRun(student, whole, stopping.best_epoch + 1)


def recovery_crops(stage: str, count: int, every: int = 3, progress: bool = True) -> np.ndarray:
    """(n <= count, H, W, 3) float32: `stage`'s real inputs as the shipped cascade cuts them from the
    default frames (the videos pack's clips, every `every`-th frame, and the hagrid_frames photographs;
    `quantize.calibration`), blank crops left out."""
    from ..quantize.calibration import STAGES as CROP_STAGES, calibration_crops, default_calibration_frames

    if stage not in CROP_STAGES:
        raise ValueError(f"stage: unknown stage {stage!r}; expected one of {', '.join(CROP_STAGES)}")
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count: expected a whole number >= 1, got {count!r}")
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every: expected a whole number >= 1, got {every!r}")
    frames = default_calibration_frames(every=every)
    return calibration_crops(frames, stages=[stage], limit=count, progress=progress)[stage]
