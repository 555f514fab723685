"""Quantization-aware training (QAT): a landmark stage fine-tuned through int8 rounding, then converted to int8.

Post-training int8 (`modes.quantize_model`) rounds weights and activations the trained float model
never saw. QAT shows the rounding to the model while it trains, so its weights move to where the
rounding costs least (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference"), the scheme TFLite's int8 follows:

  weights      Conv2D, DepthwiseConv2D and Dense kernels: symmetric int8 per output channel,
               scale max|w| / 127, values -127..127 (`keras.quantizers.fake_quant_with_min_max_vars`
               with narrow_range: the same grid as the converter's)
  activations  every layer output that TFLite stores as its own int8 tensor, per tensor, 8 bits over
               the min..max seen on real calibration crops (the converter's calibration); layers that
               only move values (padding, max pooling, reshapes, slices, bilinear resizing) keep their
               input's range in TFLite and get none, nor does an ADD whose ReLU6 the converter fuses
Rounding has no gradient; the fake-quant op passes it straight through inside the range (the
straight-through estimator) and the ranges are fixed, so only the weights train.

Why a wrapper layer (`FakeQuant`) on a `keras.models.clone_model` of the rebuilt model: the rebuilt
stage models (`convert.tflite_to_keras`) are functional Keras models of plain Keras layers, and TF
Model Optimization, which has QAT wrappers, does not accept Keras 3 models. Keras 3 layers read their
kernel inside `call` with no hook to transform it (LoRA's kernel property exists on Conv2D and Dense,
not DepthwiseConv2D), so `FakeQuant` computes the wrapped layer's own op (`ops.conv`,
`ops.depthwise_conv`, `ops.matmul`, plus bias and activation) on the fake-quantized kernel; any other
layer it simply calls. clone_model keeps the graph, layer names and output names, so chapter 05's
`FineTuner` trains it unchanged, and the trained weights go back into a plain copy by layer name.

Training is distillation, with no labels: the float model's outputs on each real crop are the targets
(the student sees the same crop), through chapter 05's `FineTuner` and `landmark_losses` with every
point "labelled" by the float model. By default only the x, y term counts (Charbonnier point error in
crop pixels): with chapter 05's other terms (z, presence and visibility BCE, segmentation and heatmaps)
the first steps made the landmarks worse (QAT_LOSS_WEIGHTS says what was measured); `loss_weights`
turns them back on.

What the converter sees: the fake-quant ops are stripped. The plain rebuilt model with the QAT
weights (a float32 Keras model, the same layers as the source) goes through `quantize_model(model,
"int8", calibration)` like any post-training int8 conversion (PRELU kept float by default), so the
result is an ordinary int8 .tflite with float32 inputs and outputs that `variants.stage_model`
accepts. The converter computes the same per-channel weight grid the training used; it calibrates
the activation ranges again on the same crops, now through the trained weights.

Crops: real cascade inputs (`calibration.calibration_crops`). Training and calibration use the
videos pack's frames; the held-out crops every error is measured on come from the hagrid_frames
photographs, other people in other rooms, never seen by training or calibration.

    ptq_errors()                                       # stage -> post-training int8 error: pose worst
    train, held_out = qat_crops("pose_landmark")
    model, int8, report = qat_stage("pose_landmark", train, epochs=3)
    table = compare_ptq_qat("pose_landmark", train, held_out, epochs=3)   # error vs float, both int8

Which stage: post-training int8 against float on 39-40 held-out crops each (full mode, 100 training
crops or all the videos give; mean landmark error in crop pixels, 95% bootstrap interval):
pose_landmark 8.64 [8.04, 9.29] (256 px crop), hand_landmark 7.12 [4.86, 9.46] (224 px), face_landmark
0.62 [0.50, 0.80] (192 px, PRELU kept float). Pose loses most, and is the stage notebook 08 trains.
The detectors (pose_detection, face_detection, palm) are out of scope: chapter 05's engine trains
landmark models only, and their box outputs were not measured here.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from ..progress import progress_bar
from ..settings import quick_or
from ..train.modules import train_module
from .calibration import MIN_CROPS, calibration_crops, check_calibration, interleave

# landmark stages chapter 05's engine trains -> its module
QAT_STAGES = {"pose_landmark": "pose", "face_landmark": "face_mesh", "hand_landmark": "hands"}
WEIGHTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
# layers whose int8 output keeps its input's scale in TFLite (no rounding of their own)
PASS_THROUGH = {"InputLayer", "ZeroPad", "ZeroPadding2D", "MaxPooling2D", "Reshape", "StridedSlice", "DepthToSpace",
                "ResizeBilinear"}
FUSED_ACTIVATIONS = ("relu", "relu6")
HELD_OUT_CROPS = 40
# Measured on pose_landmark (16 training crops, 8 steps of 8, error on 8 held-out crops): with every
# chapter 05 term (z, presence, visibility, segmentation and heatmaps towards the float model's) Adam
# at 1e-6 raised the fake-quant landmark error (9.9 -> 11.0 px, before ADD + RELU6 were fused) and SGD
# with momentum (1e-5, 1e-3) diverged; x, y alone with Adam at 1e-6 lowered it 8.3 -> 6.6 px
QAT_LEARNING_RATE = 1e-6
QAT_LOSS_WEIGHTS = {"landmarks": 1.0, "z": 0.0, "presence": 0.0, "visibility": 0.0, "teacher": 0.0,
                    "teacher_outputs": 0.0}


def check_stage(stage: str) -> str:
    if stage not in QAT_STAGES:
        raise ValueError(f"stage: QAT trains the landmark stages {', '.join(QAT_STAGES)}; got {stage!r}")
    return stage


def float_model(stage: str) -> keras.Model:
    """The stage's shipped model rebuilt in Keras (float32): the reference and the starting point."""
    from ..convert import tflite_to_keras
    from ..mediapipe_models import model_path

    return tflite_to_keras(model_path(train_module(QAT_STAGES[check_stage(stage)]).model_name))


# --- crops ------------------------------------------------------------------------------------

def qat_crops(stage: str, train_count: int | None = None, held_out_count: int | None = None,
              progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) real crops of `stage`: the videos pack's frames (every 10th) for training
    and calibration, the hagrid_frames photographs for measuring (module docstring)."""
    from ..datasets import fixture_videos, hagrid_frames
    from ..images import load_rgb
    from ..train.teacher_data import video_frames

    check_stage(stage)
    train_count = train_count or quick_or(MIN_CROPS, 16)
    held_out_count = held_out_count or quick_or(HELD_OUT_CROPS, 8)
    clips = [video_frames(path, every=10) for path in fixture_videos().values()]
    train = calibration_crops(interleave(clips), [stage], limit=train_count, progress=progress)[stage]
    photos = (load_rgb(path) for path, _ in hagrid_frames())
    held_out = calibration_crops(photos, [stage], limit=held_out_count, progress=progress)[stage]
    return train, held_out


# --- the fake-quantized model -----------------------------------------------------------------

def int8_kernel(kernel, channel_axis: int):
    """`kernel` rounded to TFLite's int8 grid per output channel (symmetric, max|w| / 127), as float."""
    other_axes = tuple(axis for axis in range(len(kernel.shape)) if axis != channel_axis % len(kernel.shape))
    # the range follows the weights but is not trained through: rounding has no useful gradient for it
    bound = ops.stop_gradient(ops.maximum(ops.max(ops.abs(kernel), axis=other_axes), 1e-8))
    return keras.quantizers.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8, narrow_range=True,
                                                         axis=channel_axis)


class FakeQuant(keras.layers.Layer):
    """`layer` as int8 inference computes it: kernel on the per-channel int8 grid (Conv2D,
    DepthwiseConv2D, Dense), output rounded to 8 bits over [low, high] (the calibrated range)."""

    def __init__(self, layer: keras.layers.Layer, low: float, high: float, **kwargs):
        super().__init__(name=layer.name, **kwargs)
        self.layer, self.range = layer, (float(low), float(high))

    def build(self, input_shape):
        if not self.layer.built:  # PReLU too: clone_model leaves a layer with compute_output_shape unbuilt
            self.layer.build(input_shape)
        self.low = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.range[0]),
                                   trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.range[1]),
                                    trainable=False, name="high")

    def call(self, inputs, training=None):
        outputs = self._weighted(inputs) if isinstance(self.layer, WEIGHTED) else self.layer(inputs)
        return keras.quantizers.fake_quant_with_min_max_vars(outputs, self.low, self.high, num_bits=8)

    def _weighted(self, inputs):
        layer = self.layer
        if isinstance(layer, keras.layers.Dense):
            outputs = ops.matmul(inputs, int8_kernel(layer.kernel, -1))
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            # (kh, kw, channels, multiplier): TFLite's output channels are channels x multiplier
            kernel = layer.kernel
            shape = ops.shape(kernel)
            flat = int8_kernel(ops.reshape(kernel, (shape[0], shape[1], 1, -1)), -1)
            outputs = ops.depthwise_conv(inputs, ops.reshape(flat, shape), layer.strides, layer.padding,
                                         layer.data_format, layer.dilation_rate)
        else:
            outputs = ops.conv(inputs, int8_kernel(layer.kernel, -1), layer.strides, layer.padding,
                               layer.data_format, layer.dilation_rate)
        if layer.use_bias:
            outputs = outputs + layer.bias
        return layer.activation(outputs)

    def compute_output_spec(self, inputs):
        if isinstance(self.layer, WEIGHTED):
            return keras.KerasTensor(self.layer.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        return self.layer.compute_output_spec(inputs)


def quantized_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers whose output int8 stores with a range of its own: all but PASS_THROUGH and those
    whose only reader is a ReLU / ReLU6 (the converter fuses it: ADD + RELU6 is one int8 op)."""
    readers: dict[str, list] = {}
    for layer in model.layers:
        for tensor in keras.tree.flatten(layer.input) if not isinstance(layer, keras.layers.InputLayer) else []:
            readers.setdefault(tensor._keras_history.operation.name, []).append(layer)
    fused = {name for name, found in readers.items()
             if len(found) == 1 and isinstance(found[0], keras.layers.Activation)
             and found[0].get_config()["activation"] in FUSED_ACTIVATIONS}
    return [layer for layer in model.layers if type(layer).__name__ not in PASS_THROUGH and layer.name not in fused]


def activation_ranges(model: keras.Model, crops: np.ndarray, batch_size: int = 8) -> dict[str, tuple[float, float]]:
    """layer name -> (min, max) of its output over `crops`, 0 included (int8 represents 0 exactly)."""
    layers = quantized_layers(model)
    probe = keras.Model(model.inputs[0], [ops.stack([ops.min(layer.output), ops.max(layer.output)]) for layer in layers])
    low, high = np.zeros(len(layers)), np.zeros(len(layers))
    for start in range(0, len(crops), batch_size):
        found = np.array(probe(crops[start:start + batch_size], training=False))
        low, high = np.minimum(low, found[:, 0]), np.maximum(high, found[:, 1])
    return {layer.name: (float(a), float(b)) for layer, a, b in zip(layers, low, high)}


def fake_quant_model(model: keras.Model, crops: np.ndarray) -> keras.Model:
    """A copy of `model` (the source keeps its weights) with every quantized layer in a `FakeQuant`,
    activation ranges calibrated on `crops`; the same layer and output names, the same output shapes."""
    crops = check_calibration(crops, model.inputs[0].shape, model.name)
    ranges = activation_ranges(model, crops)

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        return FakeQuant(copy, *ranges[layer.name]) if layer.name in ranges else copy

    quantized = keras.models.clone_model(model, clone_function=clone)
    copy_weights(model, quantized)
    return quantized


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Each weighted layer's weights into `target`'s layer of the same name (a `FakeQuant` on either
    side is looked through: its ranges are not copied)."""
    for layer in source.layers:
        inner = layer.layer if isinstance(layer, FakeQuant) else layer
        if inner.weights:
            other = target.get_layer(layer.name)
            (other.layer if isinstance(other, FakeQuant) else other).set_weights(inner.get_weights())


def stripped_model(quantized: keras.Model, stage: str) -> keras.Model:
    """The plain rebuilt model (no fake-quant) holding `quantized`'s trained weights."""
    plain = float_model(stage)
    copy_weights(quantized, plain)
    return plain


# --- training ---------------------------------------------------------------------------------

def distillation_targets(teacher: keras.Model, crops: np.ndarray, module: str, batch_size: int = 8) -> dict:
    """chapter 05's batch targets with the float model as the labeller: every point known, x, y, z
    its prediction; the teacher's other outputs come from `FineTuner` on the same crop ("clean")."""
    from ..train.evaluate import predicted_points

    points = np.concatenate([predicted_points(teacher, crops[i:i + batch_size], module)
                             for i in range(0, len(crops), batch_size)])
    known = np.ones(points.shape[:2], np.float32)
    return {"points": points.astype(np.float32), "mask": known, "z_mask": known, "clean": crops}


class QATResult(NamedTuple):
    model: keras.Model    # the fake-quantized model after training
    int8: bytes           # the stripped model converted to int8 (float32 inputs and outputs)
    report: dict          # crops, epochs, steps, loss per epoch, seconds, int8 bytes


def qat_stage(stage: str, crops: np.ndarray, epochs: int | None = None, batch_size: int = 8,
              learning_rate: float = QAT_LEARNING_RATE, steps_per_epoch: int | None = None, seed: int = 0,
              loss_weights: dict[str, float] | None = None, progress: bool = True) -> QATResult:
    """`stage`'s shipped model trained with fake quantization on `crops` (real, unlabelled: the float
    model is the teacher), then converted to int8 calibrated on the same crops. Adam at
    `learning_rate`; `loss_weights` replace QAT_LOSS_WEIGHTS' (chapter 05's term names)."""
    from ..train.loop import FineTuner
    from .modes import quantize_model

    check_stage(stage)
    epochs = quick_or(6, 1) if epochs is None else epochs
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1 or None, got {steps_per_epoch!r}")
    module = train_module(QAT_STAGES[stage])
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    teacher = float_model(stage)
    crops = check_calibration(crops, teacher.inputs[0].shape, stage)
    keras.utils.set_random_seed(seed)
    student = fake_quant_model(teacher, crops)
    targets = distillation_targets(teacher, crops, module.name, batch_size)
    trainer = FineTuner(student, teacher, module, {**QAT_LOSS_WEIGHTS, **(loss_weights or {})})
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    steps = -(-len(crops) // batch_size) if steps_per_epoch is None else steps_per_epoch
    dataset = _batches(crops, targets, batch_size, seed)
    callbacks = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc=f"QAT {stage}"))
    started = time.perf_counter()
    history = trainer.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - started
    int8 = quantize_model(stripped_model(student, stage), "int8", crops)
    report = {"stage": stage, "crops": int(len(crops)), "epochs": epochs, "steps_per_epoch": steps,
              "batch_size": batch_size, "learning_rate": learning_rate,
              "loss_weights": {**QAT_LOSS_WEIGHTS, **(loss_weights or {})}, "train_seconds": round(seconds, 1),
              "loss": [float(v) for v in history.history["loss"]], "int8_bytes": len(int8)}
    return QATResult(student, int8, report)


def _batches(crops: np.ndarray, targets: dict, batch_size: int, seed: int):
    import tensorflow as tf

    return (tf.data.Dataset.from_tensor_slices((crops, targets)).shuffle(len(crops), seed=seed)
            .batch(batch_size).repeat())


# --- measuring --------------------------------------------------------------------------------

def landmark_error_px(model, reference: keras.Model, crops: np.ndarray, stage: str) -> np.ndarray:
    """Per crop: mean x, y distance in crop pixels between `model` (.tflite bytes or Keras) and
    `reference` (the float Keras model) over the stage's landmark points."""
    from ..convert import run_tflite
    from ..train.evaluate import predicted_points

    module = train_module(QAT_STAGES[check_stage(stage)])
    expected = predicted_points(reference, crops, module.name)
    if isinstance(model, (bytes, bytearray)):
        outputs = run_tflite(bytes(model), crops)[reference.output_names.index(module.landmarks_output)]
        got = outputs.reshape(len(crops), module.num_points, module.values_per_point)[..., :3]
    else:
        got = np.concatenate([predicted_points(model, crops[i:i + 8], module.name) for i in range(0, len(crops), 8)])
    return np.linalg.norm(got[..., :2] - expected[..., :2], axis=-1).mean(axis=1)


def summary(errors: np.ndarray) -> dict:
    """mean, median, spread (standard deviation), 95% bootstrap interval of the mean, n."""
    from ..train.evaluate import bootstrap_interval

    return {"n": int(len(errors)), "mean_px": float(errors.mean()), "median_px": float(np.median(errors)),
            "std_px": float(errors.std()), "ci95_px": bootstrap_interval(errors)}


def ptq_errors(stages=tuple(QAT_STAGES), train_count: int | None = None, held_out_count: int | None = None,
               progress: bool = True) -> dict[str, dict]:
    """stage -> post-training int8's landmark error vs float on held-out crops (calibrated on the
    training crops): which stage loses most, the one QAT is for."""
    from .modes import quantize_model

    table = {}
    for stage in progress_bar([check_stage(stage) for stage in stages], "post-training int8", progress):
        train, held_out = qat_crops(stage, train_count, held_out_count, progress=False)
        reference = float_model(stage)
        table[stage] = summary(landmark_error_px(quantize_model(reference, "int8", train), reference, held_out, stage))
    return table


def compare_ptq_qat(stage: str, train: np.ndarray, held_out: np.ndarray, epochs: int | None = None,
                    progress: bool = True, **training) -> dict:
    """Post-training int8 and QAT int8 of `stage` (both calibrated on `train`) against the float
    model on `held_out`: per-crop landmark error in crop pixels, summarised, and their paired difference."""
    from ..train.evaluate import bootstrap_interval
    from .modes import quantize_model

    reference = float_model(stage)
    ptq = landmark_error_px(quantize_model(reference, "int8", train), reference, held_out, stage)
    result = qat_stage(stage, train, epochs, progress=progress, **training)
    qat = landmark_error_px(result.int8, reference, held_out, stage)
    qat_float = landmark_error_px(result.model, reference, held_out, stage)
    return {"stage": stage, "ptq_int8": summary(ptq), "qat_int8": summary(qat), "qat_fake_quant": summary(qat_float),
            "qat_minus_ptq_px": float((qat - ptq).mean()), "qat_minus_ptq_ci95": bootstrap_interval(qat - ptq),
            "training": result.report}
