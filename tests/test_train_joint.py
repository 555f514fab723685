"""The joint multi-head model on real video frames labelled by the cascade: four named heads that
are the opened stage models, one hand model for both hands, masked absent parts, per-head loss
weights checked by name, one training step, and the split back into a variant the cascade runs."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from holistic_lab import datasets  # noqa: E402
from holistic_lab.convert import run_tflite, tflite_to_keras  # noqa: E402
from holistic_lab.convert.verification import relative_error  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.pipeline import HolisticPipeline  # noqa: E402
from holistic_lab.train import MODULES, named_outputs  # noqa: E402
from holistic_lab.train.data import module_crop  # noqa: E402
from holistic_lab.train.joint import HEAD_LOSS_WEIGHTS, HolisticModel, export_joint, head_loss_weights  # noqa: E402
from holistic_lab.train.joint_data import HEAD_MODULES, iter_joint_batches, stack_joint  # noqa: E402
from holistic_lab.train.losses import landmark_losses  # noqa: E402
from holistic_lab.train.teacher_data import frame_items, video_frames  # noqa: E402
from holistic_lab.variants import read_variant  # noqa: E402


@pytest.fixture(scope="module")
def items():
    """Three frames of the face-and-hands clip, labelled by the cascade: the first has no hand."""
    frames = video_frames(datasets.fixture_videos()["gesture_face_hands.mp4"], every=40, limit=3)
    found = frame_items(frames, tuple(HEAD_MODULES), progress=False)
    assert len(found) == 3 and not found[0][1].present["left_hand"] and not found[0][1].present["right_hand"]
    assert found[1][1].present["right_hand"] and all(labels.present["face"] for _, labels in found)
    return found


@pytest.fixture(scope="module")
def batch(items):
    return next(iter_joint_batches(items, batch_size=len(items)))


@pytest.fixture(scope="module")
def shipped_joint():
    return HolisticModel()


@pytest.fixture(scope="module")
def trained(items, batch):
    """A joint model after one train step, and every stage's weights before it."""
    model = HolisticModel()
    model.compile()
    before = {module: [np.array(w) for w in stage.weights] for module, stage in model.stages.items()}
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False)
    return model, before, history.history


def test_crops_are_the_cascades_and_an_absent_hand_is_a_zero_crop_with_a_zero_mask(items, batch):
    inputs, targets = batch
    assert {head: images.shape[1:3] for head, images in inputs.items()} == {
        "pose": (256, 256), "face": (192, 192), "left_hand": (224, 224), "right_hand": (224, 224)}
    rgb, labels = items[1]
    np.testing.assert_array_equal(inputs["face"][1], module_crop(rgb, labels, "face_mesh").input)
    np.testing.assert_array_equal(inputs["right_hand"][1], module_crop(rgb, labels, "hands", "right_hand").input)
    assert not inputs["left_hand"][0].any() and not targets["left_hand"]["mask"][0].any()
    assert targets["right_hand"]["mask"][1].all() and targets["pose"]["mask"][:, :33].all()


def test_four_named_heads_give_the_opened_stage_models_outputs_bit_identically(shipped_joint, batch):
    inputs, _ = batch
    outputs = shipped_joint(inputs)
    assert list(outputs) == ["pose", "face", "left_hand", "right_hand"]
    for head, module in HEAD_MODULES.items():
        opened = tflite_to_keras(model_path(MODULES[module].model_name))
        expected = named_outputs(opened, inputs[head])
        assert list(outputs[head]) == opened.output_names
        for name, value in expected.items():
            np.testing.assert_array_equal(np.asarray(outputs[head][name]), np.asarray(value), err_msg=f"{head} {name}")


def test_both_hand_heads_are_one_hand_model(shipped_joint, batch):
    hand = shipped_joint.stage_model("left_hand")
    assert hand is shipped_joint.stage_model("right_hand") and hand is not shipped_joint.stage_model("pose")
    assert len({id(stage) for stage in shipped_joint.stages.values()}) == 3
    inputs, _ = batch
    swapped = {**inputs, "left_hand": inputs["right_hand"], "right_hand": inputs["left_hand"]}
    outputs, again = shipped_joint(inputs), shipped_joint(swapped)
    np.testing.assert_array_equal(np.asarray(outputs["left_hand"]["Identity"]),
                                  np.asarray(again["right_hand"]["Identity"]))
    with pytest.raises(ValueError, match="unknown head 'nose'"):
        shipped_joint.stage_model("nose")


def test_an_absent_part_adds_nothing_to_any_loss_term(shipped_joint, batch):
    """The batch [frame with a right hand, frame without one] gives the hand head's terms of the
    first frame alone, teacher terms included; a batch of absent hands gives 0 and no gradient."""
    inputs, targets = batch
    hand = shipped_joint.stage_model("right_hand")
    teacher = shipped_joint.teachers["hands"]

    def terms(rows):
        images = tf.constant(inputs["right_hand"][rows])
        picked = {name: value[rows] for name, value in targets["right_hand"].items()}
        with tf.GradientTape() as tape:
            result = landmark_losses(named_outputs(hand, images, training=True), picked, "hands",
                                     named_outputs(teacher, picked["clean"]))
        return {name: float(value) for name, value in result.items()}, tape.gradient(result["total"],
                                                                                      hand.trainable_variables)

    with_absent, _ = terms([1, 0])
    alone, _ = terms([1])
    assert with_absent.keys() == alone.keys() >= {"landmarks", "presence", "teacher", "teacher_outputs"}
    for name in alone:
        assert with_absent[name] == pytest.approx(alone[name], rel=1e-5), name
    assert alone["total"] > 0
    nothing, gradients = terms([0])
    assert all(value == 0 for value in nothing.values())
    assert all(not np.asarray(g).any() for g in gradients if g is not None)


def test_loss_weights_default_to_the_tutorials_and_are_checked_by_name():
    assert head_loss_weights() == HEAD_LOSS_WEIGHTS == {"pose": 1.0, "face": 0.8, "left_hand": 0.6,
                                                        "right_hand": 0.6}
    assert head_loss_weights({"face": 2})["face"] == 2.0
    with pytest.raises(ValueError, match=r"unknown head\(s\) \['nose'\]"):
        head_loss_weights({"nose": 1.0})
    for bad in (-0.5, float("nan"), True, "1"):
        with pytest.raises(ValueError, match=r"loss_weights\['face'\]: must be a finite number >= 0"):
            head_loss_weights({"face": bad})
    with pytest.raises(ValueError, match="unknown head"):
        HolisticModel(loss_weights={"hands": 1.0})


def test_one_train_step_moves_the_heads_and_nothing_frozen(trained):
    model, before, history = trained
    assert set(history) == {"loss", *HEAD_MODULES} and np.isfinite(history["loss"][0])
    for module, stage in model.stages.items():
        trainable = {id(w) for w in stage.trainable_weights}
        moved = [not np.array_equal(old, np.asarray(w)) for old, w in zip(before[module], stage.weights)]
        assert any(moved), module
        assert all(not was_moved for was_moved, w in zip(moved, stage.weights) if id(w) not in trainable), module
        teacher = model.teachers[module]
        assert all(np.array_equal(old, np.asarray(w)) for old, w in zip(before[module], teacher.weights)), module


def test_head_weights_leave_adam_steps_as_they_are(batch):
    """No weight is shared across heads, so a head's loss weight only scales its gradients, which
    Adam's step divides out: weights (1, .8, .6, .6) and (1, 1, 1, 1) train the same model."""
    def one_step(weights):
        model = HolisticModel(loss_weights=weights)
        model.compile(gradient_clip=None)
        before = [np.array(w) for w in model.stages["face_mesh"].trainable_weights]
        model.train_step(batch)   # eagerly: fit's tracing would cost more than the step
        return [np.asarray(w) - old for w, old in zip(model.stages["face_mesh"].trainable_weights, before)]

    default, equal = one_step(None), one_step(dict.fromkeys(HEAD_LOSS_WEIGHTS, 1.0))
    step = np.sqrt(sum(np.sum(np.square(moved)) for moved in equal))
    difference = np.sqrt(sum(np.sum(np.square(a - b)) for a, b in zip(default, equal)))
    # plain SGD: 20% (face weight 0.8 against 1.0); Adam: 2.4% measured, where |gradient| nears its epsilon
    assert step > 0 and difference < 0.05 * step, (step, difference)


def test_split_back_is_a_variant_of_three_stages_the_cascade_runs(trained, batch, items, tmp_path):
    model, _, _ = trained
    inputs, _ = batch
    manifest = export_joint(model, tmp_path / "joint", {"command": "test"}, check_inputs=inputs)
    variant = read_variant(manifest.parent)
    assert set(variant.stages) == {"pose_landmark", "face_landmark", "hand_landmark"}
    for head in ("pose", "face", "right_hand"):
        module = MODULES[HEAD_MODULES[head]]
        interpreted = run_tflite(variant.stages[module.stage], inputs[head])
        expected = named_outputs(model.stage_model(head), inputs[head])
        landmarks = interpreted[model.stage_model(head).output_names.index(module.landmarks_output)]
        assert relative_error(landmarks, np.asarray(expected[module.landmarks_output]).reshape(landmarks.shape)) <= 1e-4
    rgb, labels = items[1]
    result = HolisticPipeline.from_variant(manifest.parent).process(rgb)
    assert all(result.present[part] for part in ("pose", "face", "right_hand"))
    shipped = HolisticPipeline().process(rgb)
    assert not np.array_equal(result.xyz[33:501], shipped.xyz[33:501])   # the variant's face model ran


def test_joint_rows_give_joint_against_per_module_with_a_paired_interval():
    from holistic_lab.train.evaluate import Comparison
    from holistic_lab.train.joint_study import format_joint_rows, joint_rows

    per_module = np.array([0.10, 0.20, 0.30, 0.40])
    scores = {"shipped": per_module + 0.05, "per-module": per_module, "joint": per_module * 1.1}
    comparison = Comparison("hands", {"clean": {name: {"error": errors, "pck": np.ones(4)}
                                                for name, errors in scores.items()}},
                            ["freihand"] * 4, ["a", "b", "c", "c"])
    (row,) = joint_rows({"hands": comparison})
    assert row["n"] == 4 and row["per_module"] == pytest.approx(0.25) and row["shipped"] == pytest.approx(0.30)
    assert row["relative_difference"] == pytest.approx(0.1)
    low, high = row["difference_ci"]
    assert 0 < low <= 0.025 <= high   # joint is worse on every image: the interval excludes 0
    assert "+10.0%" in format_joint_rows([row])
