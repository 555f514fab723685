"""holistic_lab.quantize.ai_edge: ai-edge-quantizer's static int8 beside the TFLite converter's, on
hand_recrop (124 KB, 13 PRELU) calibrated on the crops the cascade cut from real frames; and how
`measure.run_model` reads a model with quantized inputs and outputs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

STAGE = "hand_recrop"
PRELU_IN_HAND_RECROP = 13
# hand_recrop's two points in its 256-pixel crop: the converter's int8 is within ~20 px of float32 on
# these crops (test_quantize.py). An int8 output read without its scale is off by its zero point and
# a factor of ~1/scale: hundreds of pixels.
POINT_TOLERANCE_PX = 32.0


pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_quantizer", reason="the `compare` extra is not installed (make setup installs it)")

from holistic_lab.convert import tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.pipeline import HolisticPipeline  # noqa: E402
from holistic_lab.quantize.ai_edge import ai_edge_quantize, compare_quantizers, io_types  # noqa: E402
from holistic_lab.quantize.calibration import calibration_crops, default_calibration_frames  # noqa: E402
from holistic_lab.quantize.measure import interpreter, run_model  # noqa: E402
from holistic_lab.quantize.modes import op_dtypes, quantize_model  # noqa: E402
from holistic_lab.variants import stage_model  # noqa: E402
from test_quantize import recrop_points  # noqa: E402  (hand_recrop's points over frames, shared)


@pytest.fixture(scope="module")
def frames(fixtures):
    return list(itertools.islice(default_calibration_frames(), 6))


@pytest.fixture(scope="module")
def crops(frames) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, held out): the cascade's hand_recrop crops of the frames, the last two held out."""
    found = calibration_crops(frames, stages=(STAGE,), progress=False)[STAGE]
    assert len(found) >= 4, len(found)
    return found[:-2], found[-2:]


@pytest.fixture(scope="module")
def float32() -> bytes:
    return quantize_model(tflite_to_keras(model_path(STAGE)), "float32")


@pytest.fixture(scope="module")
def compared(crops):
    calibration, held_out = crops
    return compare_quantizers(STAGE, calibration, held_out, threads=(1,), rounds=1, block=1)


def reference_outputs(float32, crop):
    return run_model(interpreter(float32), crop)


def test_the_comparison_puts_float32_first_and_both_int8_files_are_smaller_with_float_io(compared):
    rows, models = compared
    assert [r["model"] for r in rows] == ["float32", "TFLite converter int8", "ai-edge-quantizer int8"]
    assert rows[0]["output error"] == 0.0
    for row in rows[1:]:
        assert row["MB"] < 0.7 * rows[0]["MB"]
        assert 0 < row["output error"] < POINT_TOLERANCE_PX
        assert row["ms@1"] > 0 and row["n"] == 1
        assert row["in -> out"] == rows[0]["in -> out"]
    assert set(rows[0]["in -> out"].replace(" -> ", ", ").split(", ")) == {"float32"}


def test_ai_edge_leaves_prelu_float_itself_and_its_file_runs_in_the_cascade(compared, frames, tmp_path):
    rows, models = compared
    model = models["ai-edge-quantizer int8"]
    ops = op_dtypes(model)
    assert ops["PRELU"] == {"FLOAT32": PRELU_IN_HAND_RECROP} and set(ops["CONV_2D"]) == {"INT8"}
    assert rows[2]["float ops"] == PRELU_IN_HAND_RECROP
    stage_model(STAGE, model, "ai-edge-quantizer's hand_recrop")  # a cascade slot takes it
    path = tmp_path / "hand_recrop.tflite"
    path.write_bytes(model)
    points = {name: recrop_points(HolisticPipeline(static_image_mode=True, **kwargs), frames)
              for name, kwargs in (("shipped", {}), ("ai-edge", dict(hand_recrop_model=str(path))))}
    assert np.abs(points["ai-edge"] - points["shipped"]).max() <= POINT_TOLERANCE_PX


@pytest.mark.parametrize("bits, dtype", [(8, "int8"), (16, "int16")])
def test_with_quantized_io_run_model_reads_its_outputs_in_crop_pixels(float32, crops, bits, dtype):
    calibration, held_out = crops
    model = ai_edge_quantize(float32, calibration, activation_bits=bits, float_io=False, stage=STAGE)
    assert io_types(model).split(" -> ")[0] == dtype
    assert set(op_dtypes(model)["CONV_2D"]) == {dtype.upper()}
    loaded = interpreter(model)
    output = loaded.get_output_details()[0]
    scale, zero = output["quantization_parameters"]["scales"][0], output["quantization_parameters"]["zero_points"][0]
    got = run_model(loaded, held_out[0])
    raw = loaded.get_tensor(output["index"])
    assert raw.dtype == np.dtype(dtype) and got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], (raw.astype(np.float32) - zero) * scale, rtol=1e-6)
    reference = reference_outputs(float32, held_out[0])
    assert [o.shape for o in got] == [o.shape for o in reference]
    assert np.abs(got[0] - reference[0]).mean() < POINT_TOLERANCE_PX
    with pytest.raises(ValueError, match=dtype):  # a cascade slot takes float32 in and out only
        stage_model(STAGE, model, "ai-edge-quantizer's hand_recrop")


@pytest.mark.parametrize("bad, message", [
    (dict(activation_bits=4), "activation_bits"),
    (dict(calibration=np.zeros((2, 224, 224, 3), np.float32)), "hand_recrop: expected shape"),
    (dict(calibration=np.zeros((0, 256, 256, 3), np.float32)), "n >= 1"),
    (dict(calibration=np.full((1, 256, 256, 3), np.nan, np.float32)), "finite float"),
    (dict(calibration=np.zeros((1, 256, 256, 3), np.uint8)), "finite float"),
])
def test_bad_arguments_are_refused_by_name(float32, crops, bad, message):
    kwargs = dict(calibration=crops[0], stage=STAGE) | bad
    with pytest.raises(ValueError, match=message):
        ai_edge_quantize(float32, **kwargs)


def test_files_that_are_not_a_float32_tflite_with_a_signature_are_refused_naming_why(crops, compared, tmp_path):
    calibration = crops[0]
    with pytest.raises(ValueError, match="hand_recrop: not a TFLite model"):
        ai_edge_quantize(b"\x00" * 64, calibration, stage=STAGE)
    with pytest.raises(ValueError, match="hand_recrop: the model has no signature"):
        ai_edge_quantize(model_path(STAGE), calibration, stage=STAGE)  # a shipped MediaPipe file
    for already in ("TFLite converter int8", "ai-edge-quantizer int8"):
        with pytest.raises(ValueError, match="expected a float32 model, but .* tensors are already quantized"):
            ai_edge_quantize(compared[1][already], calibration, stage=STAGE)
    path = tmp_path / "float32.tflite"
    path.write_bytes(compared[1]["float32"])
    assert set(op_dtypes(ai_edge_quantize(path, calibration, stage=STAGE))["CONV_2D"]) == {"INT8"}


def test_compare_quantizers_refuses_bad_stages_and_crops_before_converting(crops, monkeypatch):
    import holistic_lab.convert as convert

    monkeypatch.setattr(convert, "tflite_to_keras", lambda *a: pytest.fail("converted before checking"))
    calibration, held_out = crops
    with pytest.raises(ValueError, match="unknown stage 'palm'"):
        compare_quantizers("palm", calibration, held_out)
    with pytest.raises(ValueError, match=r"hand_recrop \(held out\): expected shape"):
        compare_quantizers(STAGE, calibration, held_out[:, :128])
    with pytest.raises(ValueError, match="calibration crops for hand_recrop: expected shape"):
        compare_quantizers(STAGE, calibration[:0], held_out)
    with pytest.raises(ValueError, match="activation_bits"):
        compare_quantizers(STAGE, calibration, held_out, activation_bits=12)
