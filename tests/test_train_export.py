"""Export of a fine-tuned model: a verified float32 .tflite in a variant folder the cascade runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from holistic_lab.convert import run_tflite, tflite_to_keras  # noqa: E402
from holistic_lab.datasets import sample_image, sample_names  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.pipeline import HolisticPipeline  # noqa: E402
from holistic_lab.train import add_lora, named_outputs  # noqa: E402
from holistic_lab.train.export import export_variant  # noqa: E402
from holistic_lab.variants import read_variant, write_variant  # noqa: E402


@pytest.fixture(scope="module")
def moved_face_model():
    """The face model with its landmark head's bias moved: a stand-in for a fine-tuned model."""
    model = tflite_to_keras(model_path("face_landmark"))
    layer = model.get_layer("conv2d_21")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias + 2.0])
    return model


def test_round_trip_gives_the_keras_outputs_and_the_cascade_runs_it(moved_face_model, tmp_path):
    report = export_variant(moved_face_model, "face_mesh", tmp_path / "v", {"command": "test"},
                            metrics={"best_epoch": 3})
    variant = read_variant(tmp_path / "v")
    assert list(variant.stages) == ["face_landmark"] and report.max_relative_error <= 1e-4
    batch = np.random.default_rng(0).random((2, 192, 192, 3)).astype(np.float32)
    expected = np.asarray(named_outputs(moved_face_model, batch)["conv2d_21"])
    np.testing.assert_allclose(run_tflite(variant.stages["face_landmark"], batch)[0].reshape(expected.shape),
                               expected, rtol=1e-4, atol=1e-3)
    stage = variant.manifest["stages"]["face_landmark"]
    assert stage["kind"] == "float32" and stage["metrics"]["best_epoch"] == 3
    rgb = sample_image(sample_names()[0])
    shipped, ours = HolisticPipeline().process(rgb), HolisticPipeline.from_variant(tmp_path / "v").process(rgb)
    assert ours.present["face"]
    moved = np.abs(ours.pixels()[33:501] - shipped.pixels()[33:501]).mean()
    assert moved > 0.5   # the bias moved every vertex by 2 crop pixels: the variant's model is the one that ran


def test_the_source_variants_other_stages_are_carried_over(moved_face_model, tmp_path):
    hand_file = model_path("hand_landmark_full")
    source = write_variant(tmp_path / "src", {"hand_landmark": hand_file, "face_landmark": model_path("face_landmark")},
                           "src", {"command": "test"}, kinds={"hand_landmark": "pruned-0.3", "face_landmark": "int8"},
                           metrics={"hand_landmark": {"pck": 0.9}}).parent
    export_variant(moved_face_model, "face_mesh", tmp_path / "v", {"command": "test"}, source=source)
    variant = read_variant(tmp_path / "v")
    assert set(variant.stages) == {"face_landmark", "hand_landmark"}
    assert variant.stages["hand_landmark"].read_bytes() == (source / "hand_landmark.tflite").read_bytes()
    stages = json.loads((tmp_path / "v" / "manifest.json").read_text())["stages"]
    assert stages["hand_landmark"]["kind"] == "pruned-0.3" and stages["hand_landmark"]["metrics"] == {"pck": 0.9}
    assert stages["face_landmark"]["kind"] == "float32"   # the new stage, not the source's int8
    assert variant.manifest["made_by"]["source"] == str(source)


def test_unmerged_adapters_and_wrong_check_inputs_are_refused_before_writing(tmp_path):
    model = tflite_to_keras(model_path("face_landmark"))
    with pytest.raises(ValueError, match="check_inputs must be"):
        export_variant(model, "face_mesh", tmp_path / "v", {"command": "t"}, check_inputs=np.zeros((2, 64, 64, 3)))
    with pytest.raises(ValueError, match="is not the hands module's"):
        export_variant(model, "hands", tmp_path / "v", {"command": "t"})
    add_lora(model, 2)
    with pytest.raises(ValueError, match="merge them first"):
        export_variant(model, "face_mesh", tmp_path / "v", {"command": "t"})
    assert not (tmp_path / "v").exists()
