"""`HolisticModel`: the three Holistic landmark models as ONE Keras model with four named heads,
trained in one `fit` with a loss weight per head, and split back into the cascade's stage files.

    model = HolisticModel()                                   # the opened shipped models
    outputs = model({"pose": p, "face": f, "left_hand": l, "right_hand": r})
    outputs["face"]["conv2d_21"]                              # each head keeps its model's named outputs
    model.compile()                                           # per-stage Adam, the module's learning rate
    model.fit(joint_dataset(lambda: items), epochs=2)         # joint_data: four crops per image, masks
    export_joint(model, "variants/joint", {"command": "joint"})   # pose_, face_, hand_landmark.tflite

Heads and what runs them (`joint_data.HEAD_MODULES`): pose -> pose_landmark_full (256x256),
face -> face_landmark (192x192), left_hand and right_hand -> ONE hand_landmark_full (224x224):
the cascade runs the same unmirrored hand model on both hands, so both heads share its weights.
Holistic is a cascade, not one backbone with four heads: the "joint" model is three networks
side by side that share nothing but the hand model and the batch.

The loss is sum_head loss_weight[head] x chapter 05's `landmark_losses` for the head's module
(masked: a sample without the part adds nothing; a frozen copy of the starting models on the
clean crops is the teacher). Defaults are the tutorials' weights, pose 1.0, face 0.8, hands 0.6.
Each stage model has its own Adam (chapter 05's learning rate per module, gradient norm clipped
per stage), so training jointly is chapter 05's per-module training on the same images. It
follows that the head weights change next to nothing here: Adam divides each weight's step by
its own gradient's running size, so scaling a head's whole loss (with no weights shared across
heads) scales its gradients and leaves its steps as they were, up to Adam's epsilon and, once
its norm is under the clip, nothing else. They would matter with shared weights or plain SGD.
"""
from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from ..convert import tflite_to_keras
from ..mediapipe_models import model_path
from ..variants import write_variant
from .adapters import freeze
from .export import checked_tflite
from .joint_data import HEAD_MODULES
from .losses import landmark_losses, named_outputs
from .modules import MODULES, train_module

HEAD_LOSS_WEIGHTS: dict[str, float] = {"pose": 1.0, "face": 0.8, "left_hand": 0.6, "right_hand": 0.6}
STAGE_MODULES = ("pose", "face_mesh", "hands")   # the three models, in the order the cascade runs them


def head_loss_weights(weights: dict[str, float] | None = None) -> dict[str, float]:
    """The four heads' weights: the defaults with `weights`' replacing theirs; a ValueError
    naming an unknown head or a weight that is not a finite number >= 0."""
    weights = {} if weights is None else weights
    if not isinstance(weights, dict):
        raise ValueError(f"loss_weights must be a mapping head -> weight, got {type(weights).__name__}")
    unknown = sorted(map(str, set(weights) - set(HEAD_LOSS_WEIGHTS)))
    if unknown:
        raise ValueError(f"loss_weights: unknown head(s) {unknown}; expected some of {tuple(HEAD_LOSS_WEIGHTS)}")
    for head, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"loss_weights[{head!r}]: must be a finite number >= 0, got {weight!r}")
    return {**HEAD_LOSS_WEIGHTS, **{head: float(weight) for head, weight in weights.items()}}


class HolisticModel(keras.Model):
    """Four heads over the three landmark models; `call` maps head -> crops to head -> {output name: tensor}.

    `start_models`: module ("pose", "face_mesh", "hands") -> a .tflite path to start from (the
    shipped model by default; a variant's stage file, say). `term_weights` are chapter 05's per
    term (`losses.DEFAULT_LOSS_WEIGHTS`); `freeze_backbone` freezes each model's backbone as
    chapter 05's default does (`adapters.freeze`), else every weight trains."""

    def __init__(self, start_models: dict | None = None, loss_weights: dict[str, float] | None = None,
                 term_weights: dict[str, float] | None = None, freeze_backbone: bool = True, **kwargs):
        super().__init__(**kwargs)
        start_models = dict(start_models or {})
        unknown = sorted(set(start_models) - set(STAGE_MODULES))
        if unknown:
            raise ValueError(f"start_models: unknown module(s) {unknown}; expected some of {STAGE_MODULES}")
        self.head_weights = head_loss_weights(loss_weights)
        self.term_weights = term_weights
        sources = {module: start_models.get(module) or model_path(MODULES[module].model_name)
                   for module in STAGE_MODULES}
        self.stages = {module: tflite_to_keras(source) for module, source in sources.items()}
        self.teachers = {module: tflite_to_keras(source) for module, source in sources.items()}
        for module, stage in self.stages.items():
            self.teachers[module].trainable = False
            if freeze_backbone:
                freeze(stage, "backbone")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *HEAD_MODULES)}
        self.stage_optimizers: dict = {}

    def stage_model(self, head: str) -> keras.Model:
        """The Keras model that runs `head` (the same object for both hands)."""
        if head not in HEAD_MODULES:
            raise ValueError(f"head: unknown head {head!r}; expected one of {tuple(HEAD_MODULES)}")
        return self.stages[HEAD_MODULES[head]]

    def call(self, inputs: dict, training=False) -> dict:
        missing = [head for head in HEAD_MODULES if head not in inputs]
        if missing:
            raise ValueError(f"inputs: missing head(s) {missing}; expected a crop batch for each of "
                             f"{tuple(HEAD_MODULES)}")
        return {head: named_outputs(self.stage_model(head), inputs[head], training=training) for head in HEAD_MODULES}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, learning_rates: dict[str, float] | None = None, gradient_clip: float | None = 1.0, **kwargs):
        """One Adam per stage model: module -> learning rate (default: the module's own, pose 1e-5,
        face and hands 1e-4, as chapter 05 trains them), each clipping its gradient's norm."""
        rates = {module: MODULES[module].default_learning_rate for module in STAGE_MODULES}
        unknown = sorted(set(learning_rates or {}) - set(STAGE_MODULES))
        if unknown:
            raise ValueError(f"learning_rates: unknown module(s) {unknown}; expected some of {STAGE_MODULES}")
        rates.update(learning_rates or {})
        clip = {} if gradient_clip is None else {"global_clipnorm": gradient_clip}
        super().compile(optimizer=None, **kwargs)
        self.stage_optimizers = {module: keras.optimizers.Adam(rate, **clip) for module, rate in rates.items()}
        for module, optimizer in self.stage_optimizers.items():
            optimizer.build(self.stages[module].trainable_variables)

    def head_losses(self, data, training: bool) -> dict:
        """head -> chapter 05's loss terms on its crops, and "loss": the head-weighted total."""
        inputs, targets, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self(inputs, training=training)
        terms = {}
        for head, module in HEAD_MODULES.items():
            teacher = named_outputs(self.teachers[module], targets[head]["clean"])
            terms[head] = landmark_losses(outputs[head], targets[head], module, teacher, self.term_weights)
        terms["loss"] = sum(self.head_weights[head] * terms[head]["total"] for head in HEAD_MODULES)
        return terms

    def train_step(self, data):
        import tensorflow as tf

        if not self.stage_optimizers:
            raise ValueError("HolisticModel: call compile() before fit (it makes the per-stage optimizers)")
        with tf.GradientTape() as tape:
            terms = self.head_losses(data, training=True)
        variables = {module: self.stages[module].trainable_variables for module in STAGE_MODULES}
        gradients = tape.gradient(terms["loss"], variables)
        for module, optimizer in self.stage_optimizers.items():
            optimizer.apply_gradients(zip(gradients[module], variables[module]))
        return self._update(terms)

    def test_step(self, data):
        return self._update(self.head_losses(data, training=False))

    def _update(self, terms: dict) -> dict:
        self.trackers["loss"].update_state(terms["loss"])
        for head in HEAD_MODULES:
            self.trackers[head].update_state(terms[head]["total"])
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def train_joint(items: list, epochs: int = 2, batch_size: int = 8, preset: str | None = "train", seed: int = 0,
                steps_per_epoch: int | None = None, loss_weights: dict[str, float] | None = None,
                learning_rates: dict[str, float] | None = None, freeze_backbone: bool = True,
                progress: bool = False) -> tuple[HolisticModel, dict[str, list[float]]]:
    """(trained HolisticModel, per-epoch history): `epochs` passes over (rgb, labels) `items`,
    augmented by `preset` (reseeded each epoch), at most `steps_per_epoch` batches each."""
    from .joint_data import iter_joint_samples, joint_dataset

    items = list(items)
    count = sum(1 for _ in iter_joint_samples(items))
    if not count:
        raise ValueError(f"items: none of the {len(items)} images has a part whose ROI can be placed")
    keras.utils.set_random_seed(seed)
    model = HolisticModel(loss_weights=loss_weights, freeze_backbone=freeze_backbone)
    model.compile(learning_rates=learning_rates)
    steps = -(-count // batch_size)
    steps = steps if steps_per_epoch is None else min(steps, steps_per_epoch)
    data = joint_dataset(lambda: items, batch_size, preset, seed).repeat()
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="joint"))
    history = model.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=callbacks, shuffle=False)
    return model, {name: [float(v) for v in values] for name, values in history.history.items()}


def export_joint(model: HolisticModel, folder, made_by: dict, name: str | None = None,
                 check_inputs: dict[str, np.ndarray] | None = None, overwrite: bool = False) -> Path:
    """Split the joint model back: each stage model -> a float32 .tflite checked against its Keras
    model (`export.checked_tflite`, on `check_inputs[head]` when given), all three written as one
    variant folder (pose_landmark, face_landmark, hand_landmark) that `HolisticPipeline.from_variant`
    runs. Nothing is written unless every stage passes. Returns the manifest's path."""
    check_inputs = check_inputs or {}
    stages, metrics = {}, {}
    for module in STAGE_MODULES:
        spec = train_module(module)
        heads = [head for head, head_module in HEAD_MODULES.items() if head_module == module and head in check_inputs]
        crops = np.concatenate([check_inputs[head] for head in heads]) if heads else None
        stages[spec.stage], error = checked_tflite(model.stages[module], module, crops)
        metrics[spec.stage] = {"tflite_vs_keras_max_relative_error": error}
    return write_variant(folder, stages, name or Path(folder).name, made_by, kinds="float32", metrics=metrics,
                         overwrite=overwrite)
