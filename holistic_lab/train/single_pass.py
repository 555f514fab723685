"""The single-pass experiment (chapter 06): one network, the 256x256 pose ROI in, all 543 points out.

Tutorials describe Holistic as "one backbone with four heads in one forward pass". It is a
cascade (pose -> face and hand ROIs -> their own models at 192 and 224 px). This builds the
network those tutorials describe, from the real pose model, and trains it by distillation:

    model = build_single_pass()                          # pose_landmark_full + new face and hand heads
    run = train_single_pass(model, items, epochs=3)      # items: (rgb, cascade labels), single_pass_data
    save_single_pass(run.model, "out/single_pass")       # single_pass.keras + single_pass.tflite

The network is pose_landmark_full opened as Keras (`convert.tflite_to_keras`), its five
outputs kept as they are (same layers, same weights: bit-identical pose outputs), plus

  face head    468 x (x, y, z)     on `add_11`, the pose decoder's 64 x 64 x 48 map
  hands head   2 x 21 x (x, y, z)  on the same map (left hand rows first)
  part_presence (3,) logits         face, left hand, right hand
  keypoints    (543, 3)             pose 33 (x, y, z of its first 33 rows) + face + hands, crop pixels

Why `add_11`: the face in a 256 px body crop is some 20-40 px wide and a hand 15-30 px (the
measurement says how much), so a head needs the highest resolution the network has that still
carries depth. The backbone ends at 8 x 8 (32 px per cell: a whole face in one cell); the
heatmap decoder (the pose model's own, trained to find nose, eyes, mouth, wrists and finger
points) brings those 864-channel features back up through skip connections to 64 x 64 (4 px
per cell). Each head is two depthwise-separable blocks and integral regression (soft-argmax
over a heatmap per point, Sun et al., "Integral Human Pose Regression", ECCV 2018): sub-cell
x, y that stay differentiable, and z as the heatmap-weighted mean of a per-point depth map.

The pose model's own layers are frozen: training moves only the new heads, so the pose
outputs stay those of the shipped model after training too, and the experiment isolates
what one pass can do for the face and hands. Losses are chapter 05's (`losses.masked_mean`,
Charbonnier point error in crop pixels, z at 0.1), one mean per part so 468 face points do not
drown 21 hand points; absent parts are masked out, and their presence is trained towards 0.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from ..convert.layers import PACKAGE
from ..topology import NUM_KEYPOINTS, PARTS
from .losses import _charbonnier, masked_mean

INPUT_SIZE = 256
FEATURE_LAYER = "add_11"            # the pose decoder's 64 x 64 x 48 map (see the module docstring)
HEAD_WIDTH = 32                     # channels of each head's blocks: small on purpose
PRESENCE_PARTS = ("face", "left_hand", "right_hand")
POSE_OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4")
DEFAULT_PART_WEIGHTS = {"face": 1.0, "left_hand": 1.0, "right_hand": 1.0}
Z_WEIGHT = 0.1
PRESENCE_WEIGHT = 0.1


@keras.saving.register_keras_serializable(package=PACKAGE)
class IntegralKeypoints(keras.layers.Layer):
    """[heatmap logits (B, H, W, K), depth maps (B, H, W, K)] -> (B, K, 3) x, y, z in input pixels:
    softmax over the H x W cells, x and y the probability-weighted cell centres, z the
    probability-weighted depth."""

    def __init__(self, input_size: int = INPUT_SIZE, **kwargs):
        super().__init__(**kwargs)
        self.input_size = int(input_size)

    def call(self, inputs):
        logits, depth = inputs
        height, width, points = logits.shape[1], logits.shape[2], logits.shape[3]
        cells = height * width
        # (B, K, H*W): the softmax runs on the last axis, as TFLite's SOFTMAX does
        probability = ops.softmax(ops.transpose(ops.reshape(logits, (-1, cells, points)), (0, 2, 1)), axis=-1)
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        centres = np.stack([(cols.ravel() + 0.5) * self.input_size / width,
                            (rows.ravel() + 0.5) * self.input_size / height], axis=1).astype(np.float32)
        xy = ops.matmul(probability, ops.convert_to_tensor(centres))                      # (B, K, 2)
        z = ops.sum(probability * ops.transpose(ops.reshape(depth, (-1, cells, points)), (0, 2, 1)),
                    axis=-1, keepdims=True)
        return ops.concatenate([xy, z], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][3], 3)

    def get_config(self):
        return {**super().get_config(), "input_size": self.input_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Keypoints543(keras.layers.Layer):
    """[pose Identity (B, 195), face (B, 468, 3), hands (B, 42, 3)] -> (B, 543, 3) in the 543 layout."""

    def call(self, inputs):
        pose, face, hands = inputs
        pose_xyz = ops.reshape(pose, (-1, 39, 5))[:, :33, :3]
        return ops.concatenate([pose_xyz, face, hands], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], NUM_KEYPOINTS, 3)


def _part_head(features, name: str, num_points: int):
    """Two depthwise-separable blocks, then a heatmap and a depth map per point; also the
    head's pooled features (for its presence logit)."""
    x = features
    for block in range(2):
        x = keras.layers.DepthwiseConv2D(3, padding="same", name=f"{name}_depthwise_{block}")(x)
        x = keras.layers.Conv2D(HEAD_WIDTH, 1, activation="relu", name=f"{name}_pointwise_{block}")(x)
    logits = keras.layers.Conv2D(num_points, 1, name=f"{name}_heatmaps")(x)
    depth = keras.layers.Conv2D(num_points, 1, name=f"{name}_depth", kernel_initializer="zeros")(x)
    points = IntegralKeypoints(INPUT_SIZE, name=f"{name}_points")([logits, depth])
    return points, keras.layers.GlobalAveragePooling2D(name=f"{name}_pooled")(x)


def build_single_pass(pose_model: keras.Model | None = None) -> keras.Model:
    """pose_landmark_full (opened from the shipped file unless given) with the face and hand
    heads added; outputs: the pose model's five, then `keypoints` (B, 543, 3) in crop pixels and
    `part_presence` (B, 3) logits (face, left hand, right hand). The pose layers are frozen."""
    if pose_model is None:
        from ..convert import tflite_to_keras
        from ..mediapipe_models import model_path

        pose_model = tflite_to_keras(model_path("pose_landmark_full"))
    if not isinstance(pose_model, keras.Model):
        raise ValueError(f"pose_model must be a keras.Model (pose_landmark_full opened), got {type(pose_model).__name__}")
    if tuple(pose_model.output_names) != POSE_OUTPUTS or tuple(pose_model.input_shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"pose_model must be pose_landmark_full opened with tflite_to_keras (outputs {POSE_OUTPUTS}, "
                         f"input {INPUT_SIZE}x{INPUT_SIZE}x3), got outputs {tuple(pose_model.output_names)}, "
                         f"input {pose_model.input_shape[1:]}")
    for layer in pose_model.layers:
        layer.trainable = False
    features = pose_model.get_layer(FEATURE_LAYER).output
    face, face_pooled = _part_head(features, "face", PARTS["face"].stop - PARTS["face"].start)
    hands, hands_pooled = _part_head(features, "hands", 42)
    keypoints = Keypoints543(name="keypoints")([pose_model.outputs[0], face, hands])
    face_presence = keras.layers.Dense(1, name="face_presence")(face_pooled)
    hand_presence = keras.layers.Dense(2, name="hand_presence")(hands_pooled)
    presence = keras.layers.Concatenate(name="part_presence")([face_presence, hand_presence])
    return keras.Model(pose_model.input, [*pose_model.outputs, keypoints, presence], name="single_pass")


# --- loss ------------------------------------------------------------------------------------

def keypoint_loss(part_weights: dict[str, float] | None = None, z_weight: float = Z_WEIGHT):
    """A Keras loss on `keypoints`: y_true (B, 543, 5) = x, y, z in crop pixels, xy known, z known.
    Per part (face, each hand) the masked Charbonnier mean of chapter 05, weighted by
    `part_weights`; pose rows are not trained (frozen). Unknown rows add nothing, gradient included."""
    weights = {**DEFAULT_PART_WEIGHTS, **(part_weights or {})}
    unknown = set(weights) - set(DEFAULT_PART_WEIGHTS)
    if unknown:
        raise ValueError(f"part_weights: unknown parts {sorted(unknown)}; expected some of {tuple(DEFAULT_PART_WEIGHTS)}")

    def loss(y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        total = 0.0
        for part, weight in weights.items():
            rows = PARTS[part]
            labels, predicted = y_true[:, rows], y_pred[:, rows]
            xy_known = ops.cast(labels[..., 3] > 0, "float32")
            z_known = xy_known * ops.cast(labels[..., 4] > 0, "float32")
            # unknown labels replaced before any arithmetic: a NaN there must not reach a gradient
            xy = ops.where(xy_known[..., None] > 0, labels[..., :2], 0.0)
            z = ops.where(z_known[..., None] > 0, labels[..., 2:3], 0.0)
            total += weight * (masked_mean(_charbonnier(predicted[..., :2] - xy), xy_known)
                               + z_weight * masked_mean(_charbonnier(predicted[..., 2:3] - z), z_known))
        return total

    return loss


# --- training --------------------------------------------------------------------------------

@dataclass
class SinglePassRun:
    model: keras.Model
    history: dict = field(default_factory=dict)   # Keras' per-epoch losses
    wall_s: float = 0.0                            # the `fit` call, wall clock


def train_single_pass(model: keras.Model, dataset, epochs: int = 1, steps_per_epoch: int | None = None,
                      learning_rate: float = 1e-3, part_weights: dict[str, float] | None = None,
                      validation=None, callbacks=None, verbose: int = 0) -> SinglePassRun:
    """Keras `fit` on the heads: `dataset` yields (inputs, {"keypoints": (B, 543, 5), "part_presence":
    (B, 3)}) batches (`single_pass_data.single_pass_dataset`). The model's weights change in place;
    `callbacks` go to `fit`."""
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    trainer = keras.Model(model.input, {"keypoints": model.get_layer("keypoints").output,
                                         "part_presence": model.get_layer("part_presence").output})
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss={"keypoints": keypoint_loss(part_weights),
                          "part_presence": keras.losses.BinaryCrossentropy(from_logits=True)},
                    loss_weights={"keypoints": 1.0, "part_presence": PRESENCE_WEIGHT})
    start = time.perf_counter()
    history = trainer.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=validation,
                          callbacks=callbacks, verbose=verbose)
    wall_s = time.perf_counter() - start
    return SinglePassRun(model, {k: [float(v) for v in values] for k, values in history.history.items()}, wall_s)


def save_single_pass(model: keras.Model, folder, overwrite: bool = False, float16: bool = True) -> dict[str, Path]:
    """`folder/single_pass.keras` and `folder/single_pass.tflite` (float32, outputs in the Keras
    order: the pose model's five, keypoints, part_presence), with `float16` also
    `single_pass_float16.tflite` (float16 weights, as the shipped files store theirs: the size to
    compare). An existing file of another kind is refused (`convert.files.check_model_output`)."""
    from ..convert import keras_to_tflite
    from ..convert.files import save_keras
    from ..files import atomic_write

    paths = single_pass_paths(folder, overwrite, float16)
    files = {"tflite": keras_to_tflite(model)}
    if float16:
        files["tflite_float16"] = _float16_tflite(model)
    save_keras(model, paths["keras"])
    for kind, content in files.items():
        atomic_write(paths[kind], lambda target, content=content: Path(target).write_bytes(content))
    return paths


def single_pass_paths(folder, overwrite: bool = False, float16: bool = True) -> dict[str, Path]:
    """The model files `save_single_pass` writes in `folder`, each checked first: a file there
    that is not a model of that kind is refused unless `overwrite` (ValueError naming it)."""
    from ..convert.files import check_model_output
    from ..files import check_output_folder

    folder = check_output_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"keras": folder / "single_pass.keras", "tflite": folder / "single_pass.tflite"}
    if float16:
        paths["tflite_float16"] = folder / "single_pass_float16.tflite"
    for path in paths.values():
        check_model_output(path, overwrite=overwrite)
    return paths


def _float16_tflite(model: keras.Model) -> bytes:
    """TensorFlow's converter with float16 weights (the interpreter computes in float32)."""
    import contextlib
    import io

    import tensorflow as tf

    from ..convert import outputs_in_signature_order
    from ..native_logs import filtered_native_stderr

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    with contextlib.redirect_stdout(io.StringIO()), filtered_native_stderr():
        return outputs_in_signature_order(converter.convert())
