"""holistic_lab.train's core: job config, masked losses, freezing and LoRA on the real converted models."""
from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from holistic_lab.convert import keras_to_tflite, tflite_to_keras  # noqa: E402
from holistic_lab.convert.samples import real_inputs  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.train import (CHECKPOINT_MARKER, MODULES, FineTuneConfig, add_lora, freeze,  # noqa: E402
                                landmark_losses, merge_lora, named_outputs)


@pytest.fixture(scope="module")
def face_model_file():
    return model_path("face_landmark")


@pytest.fixture
def face_model(face_model_file):
    return tflite_to_keras(face_model_file)


@pytest.fixture(scope="module")
def face_batch():
    crops = real_inputs("face_landmark", 192)
    return np.stack(list(crops.values())).astype(np.float32)


# --- config ------------------------------------------------------------------------------------

def test_config_round_trips_through_json(tmp_path):
    config = FineTuneConfig(dataset_path=tmp_path / "set", module="hands", lora_rank=4,
                            checkpoint_dir=str(tmp_path / "ckpt"), loss_weights={"teacher": 2.0})
    path = tmp_path / "job.json"
    path.write_text(config.to_json())
    again = FineTuneConfig.from_json(path)
    assert again == config and again.model_name == "hand_landmark_full"
    assert again.loss_weights["teacher"] == 2.0 and again.loss_weights["landmarks"] == 1.0


@pytest.mark.parametrize("field, value", [
    ("module", "hand"), ("lora_rank", -1), ("lora_rank", 0), ("validation_split", 0.0), ("validation_split", 1.0),
    ("validation_split", 1.5), ("epochs", 0), ("batch_size", 0), ("learning_rate", 0.0),
    ("learning_rate", float("nan")), ("learning_rate", -1e-3), ("preset", "dark"), ("gradient_clip", 0.0),
    ("distributed_workers", 0), ("shard_by", "rows"), ("epochs", 2.5), ("loss_weights", {"landmark": 1.0}),
    ("loss_weights", {"z": -1.0}),
])
def test_bad_config_refused_by_field_name(tmp_path, field, value):
    fields = {"dataset_path": "set", "module": "face_mesh", "checkpoint_dir": str(tmp_path / "ckpt"), field: value}
    with pytest.raises(ValueError, match=f"'{field}'"):
        FineTuneConfig.from_json(fields)


def test_unknown_key_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="unknown field 'epoch'"):
        FineTuneConfig.from_json({"dataset_path": "set", "module": "pose", "epoch": 3,
                                  "checkpoint_dir": str(tmp_path / "c")})


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"module": "pose",')
    with pytest.raises(ValueError, match="job.json: not valid JSON"):
        FineTuneConfig.from_json(path)
    path.write_text(json.dumps({"module": "pose", "dataset_path": "x", "epochs": 0,
                                "checkpoint_dir": str(tmp_path / "c")}))
    with pytest.raises(ValueError, match="job.json: .*'epochs'"):
        FineTuneConfig.from_json(path)


def test_checkpoint_dir_holding_something_else_is_refused(tmp_path):
    from holistic_lab.train.loop import check_checkpoint_dir

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "thesis.tex").write_text("mine")
    config = FineTuneConfig(dataset_path="set", module="pose", checkpoint_dir=str(folder))   # a config is text
    with pytest.raises(ValueError, match="checkpoint_dir .*not a fine-tuning checkpoint"):
        check_checkpoint_dir(config.checkpoint_dir)
    (folder / CHECKPOINT_MARKER).write_text("{}")
    assert check_checkpoint_dir(folder) == folder
    assert (folder / "thesis.tex").read_text() == "mine"
    with pytest.raises(ValueError, match="cannot be used"):
        check_checkpoint_dir(tmp_path / ("x" * 300))


def test_missing_required_field_named(tmp_path):
    with pytest.raises(ValueError, match="field 'module': required"):
        FineTuneConfig.from_json({"dataset_path": "set", "checkpoint_dir": str(tmp_path / "c")})


def test_classification_needs_matching_classes(tmp_path):
    base = {"dataset_path": "set", "module": "hands", "task_type": "classification",
            "checkpoint_dir": str(tmp_path / "c")}
    with pytest.raises(ValueError, match="num_classes"):
        FineTuneConfig.from_json(base)
    with pytest.raises(ValueError, match="class_names"):
        FineTuneConfig.from_json({**base, "num_classes": 3, "class_names": ["a", "b"]})


# --- module layouts and losses ------------------------------------------------------------------

def test_module_layouts_match_the_converted_models():
    for module in MODULES.values():
        model = tflite_to_keras(model_path(module.model_name))
        shapes = dict(zip(model.output_names, (tuple(output.shape[1:]) for output in model.outputs)))
        assert math.prod(shapes[module.landmarks_output]) == module.num_points * module.values_per_point
        assert math.prod(shapes[module.presence_output]) == 1
        assert model.input_shape[1:3] == (module.input_size, module.input_size)
        assert set(module.teacher_only_outputs) <= set(shapes)


def test_masked_loss_ignores_masked_and_nan_points():
    rng = np.random.default_rng(0)
    predicted = tf.Variable(rng.uniform(0, 192, (2, 468, 3)).astype(np.float32))
    labels = rng.uniform(0, 192, (2, 468, 3)).astype(np.float32)
    mask = np.ones((2, 468), np.float32)
    mask[0, :400] = 0                          # unlabelled vertices
    labels[1, 10:20] = np.nan                  # labelled, but NaN
    labels[1, 30, 2] = np.nan                  # only z unknown
    targets = {"points": labels, "mask": mask, "z_mask": mask}
    with tf.GradientTape() as tape:
        outputs = {"conv2d_21": tf.reshape(predicted, (2, 1, 1, 1404)), "conv2d_31": tf.fill((2, 1, 1, 1), 5.0)}
        terms = landmark_losses(outputs, targets, "face_mesh")
    gradient = tape.gradient(terms["total"], predicted).numpy()
    assert np.isfinite(gradient).all() and np.isfinite(float(terms["total"]))
    assert (gradient[0, :400] == 0).all() and (gradient[1, 10:20] == 0).all()
    assert gradient[1, 30, 2] == 0 and (gradient[1, 30, :2] != 0).all()
    assert (gradient[0, 400:] != 0).all()
    counted = np.isfinite(labels[..., :2]).all(-1) & (mask > 0)
    distance = np.sqrt(((predicted.numpy() - np.nan_to_num(labels))[..., :2] ** 2).sum(-1) + 1) - 1
    assert float(terms["landmarks"]) == pytest.approx(distance[counted].mean(), rel=1e-5)   # denominator: counted only
    moved = labels.copy()
    moved[0, :400] += 50.0
    assert float(landmark_losses(outputs, {**targets, "points": moved}, "face_mesh")["total"]) == \
        pytest.approx(float(terms["total"]), rel=1e-6)


def _teacher_gradient(seed: int, z_labelled: bool):
    """68 labelled face points (with z or without), the teacher elsewhere: the teacher term and its gradient."""
    rng = np.random.default_rng(seed)
    predicted = tf.Variable(rng.uniform(0, 192, (1, 468, 3)).astype(np.float32))
    teacher = {"conv2d_21": rng.uniform(0, 192, (1, 1, 1, 1404)).astype(np.float32),
               "conv2d_31": np.zeros((1, 1, 1, 1), np.float32)}
    mask = np.zeros((1, 468), np.float32)
    mask[0, :68] = 1
    targets = {"points": predicted.numpy(), "mask": mask, "z_mask": mask if z_labelled else np.zeros_like(mask)}
    with tf.GradientTape() as tape:
        outputs = {"conv2d_21": tf.reshape(predicted, (1, 1, 1, 1404)), "conv2d_31": tf.zeros((1, 1, 1, 1))}
        terms = landmark_losses(outputs, targets, "face_mesh", teacher, weights={"landmarks": 0, "z": 0,
                                                                                 "presence": 0})
    return terms, tape.gradient(terms["total"], predicted).numpy()


def test_teacher_term_holds_unlabelled_points_only():
    terms, gradient = _teacher_gradient(1, z_labelled=True)
    assert float(terms["teacher"]) > 0 and (gradient[0, :68] == 0).all() and (gradient[0, 68:] != 0).all()


# --- freezing, LoRA, a real fine-tune step -----------------------------------------------------

def _shifted_targets(model, batch, shift_px=3.0):
    """The model's own points moved by `shift_px` on 68 vertices (labelled), the rest unlabelled."""
    points = np.asarray(named_outputs(model, batch)["conv2d_21"]).reshape(len(batch), 468, 3).copy()
    points[:, :68, :2] += shift_px
    mask = np.zeros((len(batch), 468), np.float32)
    mask[:, :68] = 1
    return {"points": points, "mask": mask, "z_mask": np.zeros_like(mask)}


def _train(model, batch, targets, teacher, steps, learning_rate=1e-4):
    optimizer = keras.optimizers.Adam(learning_rate)
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            terms = landmark_losses(named_outputs(model, batch), targets, "face_mesh", teacher)
        losses.append(float(terms["total"]))
        optimizer.apply_gradients(zip(tape.gradient(terms["total"], model.trainable_variables),
                                      model.trainable_variables))
    return losses + [float(landmark_losses(named_outputs(model, batch), targets, "face_mesh", teacher)["total"])]


def test_frozen_backbone_is_bit_identical_after_training(face_model, face_batch):
    frozen = set(freeze(face_model, "backbone"))
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in face_model.layers}
    teacher = named_outputs(face_model, face_batch)
    _train(face_model, face_batch, _shifted_targets(face_model, face_batch), teacher, steps=3)
    changed = {layer.name for layer in face_model.layers
               if any(not np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))}
    assert frozen and not (changed & frozen)
    assert "conv2d_21" in changed
    # independent of layer_groups' own answer: the stem is backbone, both output heads are not
    assert {"conv2d_1", "depthwise_conv2d_1"} <= frozen and not {"conv2d_21", "conv2d_31"} & frozen


def test_freeze_refuses_unknown_group(face_model):
    with pytest.raises(ValueError, match="unknown layer group"):
        freeze(face_model, "neck")


def test_lora_adds_the_reported_parameters_and_merges_to_the_same_outputs(face_model, face_batch):
    plain_size = len(keras_to_tflite(face_model))
    original_params = face_model.count_params()
    original_classes = [type(layer).__name__ for layer in face_model.layers]
    original = named_outputs(face_model, face_batch)
    report = add_lora(face_model, rank=4)
    expected = sum(4 * (math.prod(layer._kernel.shape[:-1]) + layer._kernel.shape[-1])
                   for layer in face_model.layers if getattr(layer, "lora_enabled", False))
    assert report.added_params == expected == face_model.count_params() - original_params
    assert len(report.layers) == 25 and all(face_model.get_layer(n).__class__.__name__ == "Conv2D"
                                            for n in report.layers)
    rng = np.random.default_rng(0)
    for name in report.layers:   # trained adapters: B moved away from its zero start
        layer = face_model.get_layer(name)
        layer.lora_kernel_b.assign(rng.normal(0, 0.02, layer.lora_kernel_b.shape).astype(np.float32))
    adapted = named_outputs(face_model, face_batch)
    assert not np.allclose(adapted["conv2d_21"], original["conv2d_21"], atol=1e-3)
    merged = merge_lora(face_model)
    assert merged.count_params() == original_params
    assert [type(layer).__name__ for layer in merged.layers] == original_classes
    for name, values in named_outputs(merged, face_batch).items():
        np.testing.assert_allclose(values, adapted[name], rtol=1e-4, atol=1e-3)
    assert len(keras_to_tflite(merged)) == plain_size


def test_two_step_finetune_lowers_the_loss(face_model, face_batch):
    targets = _shifted_targets(face_model, face_batch)
    teacher = named_outputs(face_model, face_batch)
    losses = _train(face_model, face_batch, targets, teacher, steps=2)
    assert losses[-1] < losses[0]


def test_saved_lora_model_keeps_its_outputs_with_the_merged_kernel(face_model, face_batch, tmp_path):
    report = add_lora(face_model, rank=2)
    layer = face_model.get_layer(report.layers[-1])
    layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.01, np.float32))
    adapted = named_outputs(face_model, face_batch)
    face_model.save(tmp_path / "lora.keras")
    reloaded = keras.saving.load_model(tmp_path / "lora.keras")
    again = reloaded.get_layer(layer.name)
    assert again.lora_enabled and not np.asarray(again.lora_kernel_b).any()   # Keras stores kernel + A @ B
    for name, values in named_outputs(reloaded, face_batch).items():
        np.testing.assert_allclose(values, adapted[name], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("module", ["hands", "pose"])
def test_losses_run_on_the_hand_and_pose_models_outputs(module):
    spec = MODULES[module]
    model = tflite_to_keras(model_path(spec.model_name))
    images = np.random.default_rng(0).random((2, spec.input_size, spec.input_size, 3)).astype(np.float32)
    outputs = named_outputs(model, images)
    points = np.random.default_rng(1).random((2, spec.num_points, 3)).astype(np.float32) * spec.input_size
    mask = np.zeros((2, spec.num_points), np.float32)
    mask[:, :5] = 1
    targets = {"points": points, "mask": mask, "z_mask": mask}
    terms = landmark_losses(outputs, targets, module, teacher=outputs)
    expected = {"landmarks", "z", "presence", "teacher", "teacher_outputs", "total"} | (
        {"visibility"} if module == "pose" else set())
    assert set(terms) == expected
    assert all(np.isfinite(float(value)) for value in terms.values())
    assert float(terms["teacher"]) == 0 and float(terms["teacher_outputs"]) == 0   # the teacher is the model itself
    assert float(terms["landmarks"]) > 0


def test_presence_follows_the_teacher_not_a_constant_one(face_model, face_batch):
    """With a teacher, the presence target is the teacher's probability on the clean crop: a
    student that copies the teacher has the BCE's minimum for that target (its entropy)."""
    outputs = named_outputs(face_model, face_batch)
    targets = _shifted_targets(face_model, face_batch)
    low = {**outputs, "conv2d_31": tf.fill(tf.shape(outputs["conv2d_31"]), -2.0)}
    copy = landmark_losses(low, targets, "face_mesh", teacher=low)["presence"]
    p = 1 / (1 + np.exp(2.0))
    assert float(copy) == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)), rel=1e-3)
    pushed_to_one = {**low, "conv2d_31": tf.fill(tf.shape(outputs["conv2d_31"]), 8.0)}
    assert float(landmark_losses(pushed_to_one, targets, "face_mesh", teacher=low)["presence"]) > float(copy)


def test_a_2d_human_point_takes_its_z_from_the_teacher_and_nothing_else():
    _, gradient = _teacher_gradient(2, z_labelled=False)              # 68 human points: x, y only
    assert (gradient[0, :68, :2] == 0).all() and (gradient[0, :68, 2] != 0).all()   # labelled x, y: theirs
    assert (gradient[0, 68:] != 0).all()


def test_pose_visibility_follows_the_teachers():
    spec = MODULES["pose"]
    model = tflite_to_keras(model_path(spec.model_name))
    images = np.random.default_rng(0).random((1, 256, 256, 3)).astype(np.float32)
    outputs = named_outputs(model, images)
    points = np.asarray(outputs["Identity"]).reshape(1, 39, 5)[..., :3].copy()
    mask = np.zeros((1, 39), np.float32)
    mask[0, :33] = 1
    targets = {"points": points, "mask": mask, "z_mask": mask}
    own = float(landmark_losses(outputs, targets, "pose", teacher=outputs)["visibility"])
    raw = np.asarray(outputs["Identity"]).reshape(1, 39, 5).copy()
    raw[..., 3:5] = 30.0                                   # everything visible and present: not what the teacher says
    confident = {**outputs, "Identity": tf.constant(raw.reshape(np.asarray(outputs["Identity"]).shape))}
    assert float(landmark_losses(confident, targets, "pose", teacher=outputs)["visibility"]) > own


def test_learning_rate_defaults_to_the_modules_own():
    assert FineTuneConfig(dataset_path="s", module="pose").step_size == 1e-5
    assert FineTuneConfig(dataset_path="s", module="hands").step_size == 1e-4
    assert FineTuneConfig(dataset_path="s", module="pose", learning_rate=3e-4).step_size == 3e-4
