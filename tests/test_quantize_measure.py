"""quantize.measure: side-by-side latency, output error and ROI drift, on the shipped hand_recrop model."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.pipeline.profile import latency_images  # noqa: E402
from holistic_lab.quantize.measure import (_dequantized, _to_input, latency, output_error, roi_drift,  # noqa: E402
                                           stage_rows)


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    return rng.random((3, 256, 256, 3), dtype=np.float32)


def test_latency_times_every_model_the_same_number_of_times(crops):
    table = latency({"path": model_path("hand_recrop"), "bytes": model_path("hand_recrop").read_bytes()},
                    crops[0], num_threads=1, rounds=2, block=3)
    assert set(table) == {"path", "bytes"} and all(row.n == 6 for row in table.values())
    assert all(0 < row.median_ms <= row.p90_ms for row in table.values())
    with pytest.raises(ValueError, match="rounds and block must be >= 1"):
        latency({"a": model_path("hand_recrop")}, crops[0], rounds=0)


def test_latency_takes_one_input_per_model(crops):
    models = {"a": model_path("hand_recrop"), "b": model_path("hand_recrop")}
    table = latency(models, {"a": crops[0], "b": crops[1]}, rounds=1, block=2)
    assert set(table) == {"a", "b"} and all(row.n == 2 for row in table.values())
    with pytest.raises(ValueError, match="crop: inputs for"):
        latency(models, {"a": crops[0]}, rounds=1, block=1)


def test_output_error_and_stage_rows_of_a_model_against_itself(crops):
    shipped = model_path("hand_recrop")
    assert output_error(shipped, shipped.read_bytes(), crops) == [0.0]  # one output: the two points
    rows = stage_rows("hand_recrop", {"shipped": shipped, "again": shipped}, crops, threads=(1,), rounds=1, block=2,
                      memory=False)
    assert [r["model"] for r in rows] == ["shipped", "again"] and rows[1]["output error"] == 0.0
    assert rows[0]["speedup@1"] == 1.0 and rows[0]["MB"] == pytest.approx(shipped.stat().st_size / 1e6)


def test_the_shipped_cascade_does_not_drift_from_itself(fixtures):
    rows = roi_drift({"shipped": None, "again": None}, latency_images()[:2], parts=("face",))
    assert len(rows) == 1 and rows[0]["lost"] == 0 and rows[0]["n"] >= 1
    assert rows[0]["roi shift"] == 0.0 and rows[0]["landmark shift"] == 0.0


# --- quantized inputs and outputs (ai-edge-quantizer's float_io=False files) ------------------------


def detail(dtype, scales=(), zeros=()):
    return {"name": "t", "dtype": dtype, "quantization_parameters": {"scales": np.array(scales, np.float32),
                                                                     "zero_points": np.array(zeros, np.int32)}}


# --- quantized inputs and outputs in run_model (no TensorFlow) -------------------------------------


def test_a_quantized_input_rounds_half_away_from_zero_adds_its_zero_point_and_clips():
    got = _to_input(np.array([0.25, -0.25, 0.75, 100.0, -100.0], np.float32), detail(np.int8, [0.5], [-3]))
    assert got.dtype == np.int8 and got.tolist() == [-2, -4, -1, 127, -128]


def test_a_quantized_output_is_dequantized_with_its_scale_and_zero_point():
    got = _dequantized(np.array([-128, 0, 127], np.int8), detail(np.int8, [0.5], [-128]))
    assert got.dtype == np.float32 and got.tolist() == [0.0, 64.0, 127.5]
    assert _dequantized(np.array([-2, 3], np.int16), detail(np.int16, [0.25], [0])).tolist() == [-0.5, 0.75]


def test_float_and_unquantized_integer_tensors_pass_through():
    indices = np.array([1, 2, 3], np.int32)
    assert _dequantized(indices, detail(np.int32)).tolist() == [1, 2, 3]
    values = np.array([0.5], np.float32)
    assert _to_input(values, detail(np.float32)) is values


@pytest.mark.parametrize("scales, message", [([0.5, 0.25], r"one positive quantization scale, got \[0.5, 0.25\]"),
                                             ([0.0], "one positive quantization scale"),
                                             ([-1.0], "one positive quantization scale")])
def test_per_channel_or_non_positive_scales_are_refused_naming_the_tensor(scales, message):
    with pytest.raises(ValueError, match=f"tensor 't': expected {message}"):
        _dequantized(np.zeros(2, np.int8), detail(np.int8, scales, [0] * len(scales)))
    with pytest.raises(ValueError, match=message):
        _to_input(np.zeros(2, np.float32), detail(np.int8, scales, [0] * len(scales)))
