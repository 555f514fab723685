"""quantize.measure: side-by-side latency, output error and ROI drift, on the shipped hand_recrop model."""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.pipeline.profile import latency_images  # noqa: E402
from holistic_lab.quantize.measure import latency, output_error, roi_drift, stage_rows  # noqa: E402


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
