"""Quantization-aware training (quantize/qat.py) on real cascade crops: the fake-quant model, one
training step, the int8 conversion, bad arguments."""
from __future__ import annotations

import numpy as np
import pytest

STAGE = "hand_landmark"   # the smallest landmark model: the checks are the same for the others


@pytest.fixture(scope="module")
def crops(fixtures):
    from holistic_lab.quantize.qat import qat_crops

    return qat_crops(STAGE, train_count=4, held_out_count=2, progress=False)


@pytest.fixture(scope="module")
def reference():
    from holistic_lab.quantize.qat import float_model

    return float_model(STAGE)


@pytest.fixture(scope="module")
def trained(crops):
    from holistic_lab.quantize.qat import qat_stage

    return qat_stage(STAGE, crops[0], epochs=1, steps_per_epoch=1, batch_size=2, learning_rate=1e-4, progress=False)


def test_int8_kernel_is_tflites_per_channel_grid():
    from holistic_lab.quantize.qat import int8_kernel

    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32) * np.arange(1, 6)
    rounded = np.asarray(int8_kernel(kernel, -1))
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    steps = rounded / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3) and np.abs(steps).max() <= 127 + 1e-3
    assert (np.abs(rounded - kernel).max(axis=(0, 1, 2)) <= scale / 2 + 1e-6).all()   # rounding, never clipping


def test_fake_quant_model_keeps_outputs_and_leaves_the_source_alone(crops, reference):
    from holistic_lab.quantize.qat import FakeQuant, fake_quant_model, landmark_error_px

    train, held_out = crops
    before = [w.copy() for w in reference.get_weights()]
    quantized = fake_quant_model(reference, train)
    assert quantized.output_names == reference.output_names
    for got, expected in zip(quantized(held_out), reference(held_out)):
        assert got.shape == expected.shape
    assert sum(isinstance(layer, FakeQuant) for layer in quantized.layers) > 40
    errors = landmark_error_px(quantized, reference, held_out, STAGE)
    assert 0 < errors.mean() < 30   # int8 rounding moves points, by pixels, not across the crop
    assert all(np.array_equal(a, b) for a, b in zip(before, reference.get_weights()))


def test_one_training_step_changes_weights_with_a_finite_loss(trained, reference):
    from holistic_lab.quantize.qat import FakeQuant

    assert np.isfinite(trained.report["loss"]).all()
    changed = [layer.name for layer in trained.model.layers if isinstance(layer, FakeQuant) and layer.layer.weights
               and not np.array_equal(layer.layer.get_weights()[0], reference.get_layer(layer.name).get_weights()[0])]
    assert len(changed) > 10


def test_the_qat_result_is_an_int8_stage_model_that_runs(trained, crops, reference):
    from holistic_lab.quantize.modes import op_dtypes
    from holistic_lab.quantize.qat import landmark_error_px
    from holistic_lab.variants import stage_model

    stage_model(STAGE, trained.int8, "qat int8")   # float32 inputs and outputs, the shipped signature
    assert op_dtypes(trained.int8)["CONV_2D"] == {"INT8": op_dtypes(trained.int8)["CONV_2D"].total()}
    errors = landmark_error_px(trained.int8, reference, crops[1], STAGE)
    assert np.isfinite(errors).all() and errors.mean() < 30


@pytest.mark.parametrize("arguments, named", [
    ({"stage": "pose_detection"}, "stage"),
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"steps_per_epoch": 0}, "steps_per_epoch"),
    ({"learning_rate": -1.0}, "learning_rate"),
])
def test_bad_arguments_are_refused_by_name(arguments, named):
    from holistic_lab.quantize.qat import qat_stage

    call = {"stage": STAGE, "crops": np.zeros((1, 224, 224, 3), np.float32), "progress": False, **arguments}
    with pytest.raises(ValueError, match=named):
        qat_stage(**call)


def test_crops_of_the_wrong_size_are_refused(crops):
    from holistic_lab.quantize.qat import qat_stage

    with pytest.raises(ValueError, match=r"hand_landmark.*\(n, 224, 224, 3\)"):
        qat_stage(STAGE, crops[0][:, :100], epochs=1, progress=False)


def test_a_prelu_stage_gets_a_fake_quant_copy_with_its_alphas(fixtures):
    """face_landmark has 23 PReLU layers: the copy builds them and carries their learned slopes."""
    import itertools

    from holistic_lab.quantize.calibration import calibration_crops, default_calibration_frames
    from holistic_lab.quantize.qat import FakeQuant, fake_quant_model, float_model, stripped_model

    reference = float_model("face_landmark")
    crops = calibration_crops(itertools.islice(default_calibration_frames(), 12), ["face_landmark"],
                              limit=2, progress=False)["face_landmark"]
    quantized = fake_quant_model(reference, crops)
    import keras

    prelu = [layer for layer in quantized.layers if isinstance(getattr(layer, "layer", layer), keras.layers.PReLU)]
    assert len(prelu) == 23 and all(layer.built for layer in prelu)
    assert any(isinstance(layer, FakeQuant) for layer in prelu)  # its output is an 8-bit activation too
    outputs = quantized(crops)
    assert [tuple(o.shape) for o in outputs] == [tuple(o.shape) for o in reference(crops)]
    plain = stripped_model(quantized, "face_landmark")
    assert all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), reference.get_weights()))
