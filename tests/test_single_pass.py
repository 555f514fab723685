"""The single-pass network (`train.single_pass`, chapter 06): one forward pass gives 543 points,
the pose outputs are the shipped model's own, absent parts teach nothing, the labels land on the
crop's pixels and come back, the network converts to TFLite, and the measurement beside the
cascade runs on human-labelled people."""
from __future__ import annotations

import numpy as np
import pytest

from holistic_lab.datasets import sample_image, sample_labels
from holistic_lab.topology import IBUG68_TO_FACE_MESH, NUM_KEYPOINTS, PARTS


@pytest.fixture(scope="module")
def pose_model():
    from holistic_lab.convert import tflite_to_keras
    from holistic_lab.mediapipe_models import model_path

    return tflite_to_keras(model_path("pose_landmark_full"))


@pytest.fixture(scope="module")
def network(pose_model):
    from holistic_lab.train.single_pass import build_single_pass

    return build_single_pass(pose_model)


@pytest.fixture(scope="module")
def astronaut_sample():
    from holistic_lab.train.single_pass_data import pose_crop_sample

    sample = pose_crop_sample(sample_image("astronaut"), sample_labels("astronaut"))
    assert sample is not None
    return sample


@pytest.fixture(scope="module")
def saved(network, tmp_path_factory):
    from holistic_lab.train.single_pass import save_single_pass

    return save_single_pass(network, tmp_path_factory.mktemp("single_pass"))


def test_one_pass_gives_543_points_and_three_presences(network, astronaut_sample):
    from holistic_lab.convert import run_keras

    outputs = dict(zip(network.output_names, run_keras(network, astronaut_sample.input[None])))
    assert outputs["keypoints"].shape == (1, NUM_KEYPOINTS, 3)
    assert outputs["part_presence"].shape == (1, 3)
    assert np.isfinite(outputs["keypoints"]).all()


def test_pose_outputs_are_the_shipped_models_bit_for_bit(pose_model, network, astronaut_sample):
    from holistic_lab.convert import run_keras

    batch = np.stack([astronaut_sample.input, np.flip(astronaut_sample.input, 1)])
    shipped, ours = run_keras(pose_model, batch), run_keras(network, batch)[:5]
    for name, expected, got in zip(pose_model.output_names, shipped, ours):
        assert np.array_equal(expected, got), name
    # and the pose's 33 points are the first rows of the 543
    keypoints = run_keras(network, batch)[5]
    assert np.array_equal(keypoints[:, :33], shipped[0].reshape(2, 39, 5)[:, :33, :3])


def test_labels_map_into_the_pose_crop_and_back(astronaut_sample):
    labels = sample_labels("astronaut")
    known = astronaut_sample.mask
    assert known[PARTS["face"]].all() and known[PARTS["pose"]].all()   # the teacher found them
    back = astronaut_sample.to_image(astronaut_sample.points)
    np.testing.assert_allclose(back[known, :2], labels.xyz[known, :2], atol=1e-5)
    np.testing.assert_allclose(back[astronaut_sample.z_mask, 2], labels.xyz[astronaut_sample.z_mask, 2], atol=1e-5)
    # the face sits inside the 256 px crop, and the crop's pixels are what the cascade cuts
    face = astronaut_sample.points[PARTS["face"], :2]
    assert (face > 0).all() and (face < 256).all()
    assert astronaut_sample.input.shape == (256, 256, 3)
    assert list(astronaut_sample.present) == [float(labels.present[p]) for p in ("face", "left_hand", "right_hand")]


def test_absent_parts_contribute_nothing_to_the_loss_or_its_gradient(astronaut_sample):
    import tensorflow as tf

    from holistic_lab.train.single_pass import keypoint_loss

    target = astronaut_sample.target()[None].copy()
    target[0, PARTS["left_hand"], :] = np.nan          # unknown labels, even NaN, ...
    target[0, PARTS["left_hand"], 3:] = 0.0            # ... under a mask of 0
    predicted = tf.Variable(np.random.default_rng(0).uniform(0, 256, (1, NUM_KEYPOINTS, 3)).astype(np.float32))
    loss = keypoint_loss()
    with tf.GradientTape() as tape:
        value = loss(tf.constant(target), predicted)
    gradient = tape.gradient(value, predicted).numpy()
    assert np.isfinite(float(value))
    assert not gradient[0, PARTS["left_hand"]].any()   # exactly zero
    assert not gradient[0, PARTS["pose"]].any()        # pose rows are not trained
    assert gradient[0, PARTS["face"]].any()
    moved = predicted.numpy()
    moved[0, PARTS["left_hand"]] += 50.0
    assert float(loss(tf.constant(target), tf.constant(moved))) == pytest.approx(float(value))


def test_a_training_step_moves_the_heads_and_not_the_pose_model(astronaut_sample):
    from holistic_lab.train.single_pass import build_single_pass, train_single_pass
    from holistic_lab.train.single_pass_data import single_pass_dataset

    model = build_single_pass()
    pose_before = [w.numpy().copy() for w in model.get_layer("conv2d").weights]
    head_before = model.get_layer("face_heatmaps").weights[0].numpy().copy()
    items = [(sample_image(name), sample_labels(name)) for name in ("astronaut", "grace_hopper")]
    run = train_single_pass(model, single_pass_dataset(items, batch_size=2, preset="light"), epochs=1, steps_per_epoch=1)
    assert np.isfinite(run.history["loss"]).all()
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(pose_before, model.get_layer("conv2d").weights))
    assert not np.array_equal(head_before, model.get_layer("face_heatmaps").weights[0].numpy())


def test_teacher_fit_measures_the_distance_to_the_cascades_points(network):
    from holistic_lab.train.single_pass_eval import teacher_fit

    items = [(sample_image(name), sample_labels(name)) for name in ("astronaut", "grace_hopper")]
    fit = teacher_fit(network, items)
    assert set(fit) == {"face", "left_hand", "right_hand"}
    assert fit["face"]["n"] == 2                           # both portraits: the cascade found the face
    assert 5 < fit["face"]["median_size_px"] < 256
    assert fit["face"]["median_error_px"] > 0              # untrained heads are off
    with pytest.raises(ValueError, match="items"):
        teacher_fit(network, [])


def test_the_network_converts_to_tflite_and_runs(network, saved, astronaut_sample):
    from holistic_lab.convert import run_keras
    from holistic_lab.pipeline.runners import TFLiteRunner

    import keras

    outputs = TFLiteRunner(saved["tflite"])(astronaut_sample.input[None])
    expected = run_keras(network, astronaut_sample.input[None])
    assert [o.shape for o in outputs] == [e.shape for e in expected]
    np.testing.assert_allclose(outputs[5], expected[5], atol=0.05)   # keypoints, crop pixels
    # the float16-weight file (the shipped files' format, for sizes) runs too, at half the size
    half = TFLiteRunner(saved["tflite_float16"])(astronaut_sample.input[None])
    np.testing.assert_allclose(half[5], expected[5], atol=2.0)
    assert saved["tflite_float16"].stat().st_size < 0.6 * saved["tflite"].stat().st_size
    reloaded = keras.saving.load_model(saved["keras"])
    assert np.array_equal(run_keras(reloaded, astronaut_sample.input[None])[5], expected[5])


def test_measurement_puts_both_side_by_side_on_a_human_labelled_person(saved, fixtures):
    from holistic_lab.train.single_pass_eval import evaluation_people, measure_single_pass

    face_rows = np.asarray(IBUG68_TO_FACE_MESH)
    people = [p for p in evaluation_people() if np.isfinite(p.labels_px[PARTS["face"]][face_rows]).all()][:1]
    comparison = measure_single_pass(saved["tflite"], people, repeats=1, warmup=1)
    methods = {(row["part"], row["method"]) for row in comparison.rows()}
    assert {("pose", "cascade"), ("pose", "single_pass"), ("face", "single_pass")} <= methods
    face = {row["part"]: row for row in comparison.size_rows()}["face"]
    # the explanation: the cascade gives the face several times the pixels the body crop has for it
    assert face["cascade_crop_px"] > 2 * face["single_pass_crop_px"]
    assert {"cascade end to end", "single pass end to end"} <= set(comparison.latency_ms)
    assert comparison.size_bytes["single pass (float32)"] == saved["tflite"].stat().st_size
    assert "single pass vs cascade" in comparison.summary()
    assert len(comparison.figure().axes) == 3


def test_bad_arguments_are_refused_by_name(pose_model, network, tmp_path):
    from holistic_lab.convert import tflite_to_keras
    from holistic_lab.mediapipe_models import model_path
    from holistic_lab.pipeline.roi import Crop
    from holistic_lab.train.single_pass import build_single_pass, keypoint_loss, save_single_pass, train_single_pass
    from holistic_lab.train.single_pass_data import distillation_items, single_pass_batches, single_pass_dataset
    from holistic_lab.train.single_pass_eval import SinglePassPipeline, measure_single_pass
    from holistic_lab.train.single_pass_experiment import make_single_pass

    with pytest.raises(ValueError, match="pose_model"):
        build_single_pass(tflite_to_keras(model_path("hand_landmark_full")))
    with pytest.raises(ValueError, match="pose_model"):
        build_single_pass("pose_landmark_full")
    with pytest.raises(ValueError, match="part_weights.*feet"):
        keypoint_loss({"feet": 1.0})
    with pytest.raises(ValueError, match="epochs"):
        train_single_pass(network, None, epochs=0)
    with pytest.raises(ValueError, match="learning_rate"):
        train_single_pass(network, None, learning_rate=0)
    with pytest.raises(ValueError, match="batch_size"):
        next(single_pass_batches([], batch_size=0))
    with pytest.raises(ValueError, match="items"):
        single_pass_dataset([])
    with pytest.raises(ValueError, match="frames_per_video"):
        distillation_items(frames_per_video=-1)
    with pytest.raises(ValueError, match="settings.*epoch"):
        make_single_pass(tmp_path / "out", settings={"epoch": 3})
    with pytest.raises(ValueError, match="repeats"):
        measure_single_pass(tmp_path / "none.tflite", people=[], repeats=0)
    with pytest.raises(ValueError, match="pose_crop"):
        SinglePassPipeline(network).process_crop(Crop(np.zeros((1, 224, 224, 3), np.float32), np.zeros(4), None, None,
                                                      (0.0, 1.0)), (224, 224))
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "report.json").write_text("{}")
    with pytest.raises(ValueError, match="report.json"):   # refused before any labelling or training
        make_single_pass(tmp_path / "earlier")
    assert (tmp_path / "earlier" / "report.json").read_text() == "{}"
    not_a_model = tmp_path / "single_pass.tflite"
    not_a_model.write_text("my notes")
    with pytest.raises(ValueError, match="single_pass.tflite"):
        save_single_pass(network, tmp_path)
    assert not_a_model.read_text() == "my notes"
