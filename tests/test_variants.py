"""Model variants: written, read back, run by HolisticPipeline.from_variant, and every bad one refused by name.

Real models throughout: the shipped hand model stored as a variant must give the plain
pipeline's results bit for bit; the face model's float32 round trip must agree within 0.5 px.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from holistic_lab.convert import keras_to_tflite, tflite_to_keras
from holistic_lab.datasets import sample_image
from holistic_lab.files import output_lock
from holistic_lab.images import load_rgb
from holistic_lab.mediapipe_models import installed_versions, model_path
from holistic_lab.pipeline import HolisticPipeline
from holistic_lab.variants import STAGES, read_variant, write_variant

MADE_BY = {"command": "holistic-lab test", "config": {"seed": 0}}


def _write_hand_variant(folder, **kwargs):
    return write_variant(folder, {"hand_landmark": model_path("hand_landmark_full")}, "shipped-hand", MADE_BY, **kwargs)


@pytest.fixture(scope="module")
def hand_variant(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hand") / "variant"
    _write_hand_variant(folder)
    return folder


@pytest.fixture
def variant_copy(hand_variant, tmp_path):
    return shutil.copytree(hand_variant, tmp_path / "copy")


def _edit_manifest(folder, edit):
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


# --- written, read, run --------------------------------------------------------------------------


def test_manifest_records_what_made_the_variant(hand_variant):
    variant = read_variant(hand_variant)
    assert variant.name == "shipped-hand"
    assert variant.stages == {"hand_landmark": hand_variant / "hand_landmark.tflite"}
    assert variant.pipeline_kwargs() == {"hand_landmark_model": str(hand_variant / "hand_landmark.tflite")}
    made_by = variant.manifest["made_by"]
    assert made_by["command"] == "holistic-lab test" and made_by["config"] == {"seed": 0}
    assert made_by["source"] is None and made_by["versions"] == installed_versions() and made_by["date"][:2] == "20"
    entry = variant.manifest["stages"]["hand_landmark"]
    assert entry["kind"] == "float32" and entry["file"] == "hand_landmark.tflite" and len(entry["sha256"]) == 64
    assert sorted(p.name for p in hand_variant.iterdir()) == ["hand_landmark.tflite", "manifest.json"]


def test_shipped_hand_model_as_a_variant_gives_bit_identical_results(hand_variant, fixtures):
    from_variant = HolisticPipeline.from_variant(hand_variant, static_image_mode=True, num_threads=1)
    assert from_variant.hand_landmark.runner.path == hand_variant / "hand_landmark.tflite"
    plain = HolisticPipeline(static_image_mode=True)
    # the astronaut shows no hands; the panoptic image runs the variant's hand model too
    for rgb in (sample_image("astronaut"), load_rgb(fixtures / "panoptic/ex2_2.flv_000040_l.jpg")):
        expected, got = plain.process(rgb), from_variant.process(rgb)
        assert got.present == expected.present
        np.testing.assert_array_equal(got.xyz, expected.xyz)
        np.testing.assert_array_equal(got.visibility, expected.visibility)
    assert got.present["left_hand"]


def test_float32_round_trip_of_the_face_model_runs_end_to_end_within_half_a_pixel(tmp_path):
    face = keras_to_tflite(tflite_to_keras(model_path("face_landmark")))
    write_variant(tmp_path / "face", {"face_landmark": face}, "face-f32", MADE_BY, source="shipped", kinds={"face_landmark": "float32"})
    rgb = sample_image("astronaut")
    plain = HolisticPipeline().process(rgb)
    ours = HolisticPipeline.from_variant(tmp_path / "face").process(rgb)
    assert ours.present["face"] and plain.present["face"]
    error_px = np.abs(ours.pixels() - plain.pixels())[~np.isnan(plain.pixels()).any(axis=1)]
    assert error_px.max() <= 0.5
    assert read_variant(tmp_path / "face").manifest["made_by"]["source"] == "shipped"


def test_rewriting_an_earlier_variant_needs_no_overwrite(variant_copy):
    _write_hand_variant(variant_copy, kinds="int8")
    assert read_variant(variant_copy).manifest["stages"]["hand_landmark"]["kind"] == "int8"


def test_variant_stage_clashing_with_a_constructor_argument_is_refused(hand_variant):
    with pytest.raises(ValueError, match="hand_landmark_model come from the variant"):
        HolisticPipeline.from_variant(hand_variant, hand_landmark_model="hand_landmark_full")


# --- refused when writing ------------------------------------------------------------------------


def test_unknown_stage_is_refused_by_name_listing_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown stage 'hand'; expected one of pose_detection, .*hand_landmark"):
        write_variant(tmp_path / "v", {"hand": model_path("hand_landmark_full")}, "x", MADE_BY)
    with pytest.raises(ValueError, match="unknown stage 'palm'"):
        _write_hand_variant(tmp_path / "v", kinds={"hand_landmark": "int8", "palm": "int8"})
    assert not (tmp_path / "v").exists()


def test_garbage_named_tflite_is_refused(tmp_path):
    garbage = tmp_path / "model.tflite"
    garbage.write_bytes(b"this is a text file, not a model")
    with pytest.raises(ValueError, match="model.tflite: not a TFLite model"):
        write_variant(tmp_path / "v", {"hand_landmark": garbage}, "x", MADE_BY)
    truncated = model_path("hand_landmark_full").read_bytes()[:5000]
    with pytest.raises(ValueError, match=r"hand_landmark model \(bytes\): the TFLite interpreter cannot load it"):
        write_variant(tmp_path / "v", {"hand_landmark": truncated}, "x", MADE_BY)
    assert not (tmp_path / "v").exists()


def test_missing_model_file_or_empty_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="hand_landmark model .*missing.tflite: cannot read it"):
        write_variant(tmp_path / "v", {"hand_landmark": tmp_path / "missing.tflite"}, "x", MADE_BY)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        write_variant(tmp_path / "v", {"hand_landmark": model_path("hand_landmark_full")}, "", MADE_BY)
    assert not (tmp_path / "v").exists()


def test_wrong_model_in_a_slot_is_refused_by_name(tmp_path):
    # the hand model's input is pose detection's (1, 224, 224, 3): the outputs tell them apart
    with pytest.raises(ValueError, match=r"do not fit the pose_detection stage; its shipped model pose_detection has"):
        write_variant(tmp_path / "v", {"pose_detection": model_path("hand_landmark_full")}, "x", MADE_BY)
    with pytest.raises(ValueError, match="do not fit the face_landmark stage"):
        write_variant(tmp_path / "v", {"face_landmark": model_path("palm_detection_full")}, "x", MADE_BY)
    assert not (tmp_path / "v").exists()


def test_folder_holding_user_files_is_refused_and_nothing_is_lost(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "hand_landmark.tflite").write_bytes(b"my own file")
    with pytest.raises(ValueError, match="holds files that are not a holistic-lab variant"):
        _write_hand_variant(folder)
    assert (folder / "hand_landmark.tflite").read_bytes() == b"my own file"
    assert sorted(p.name for p in folder.iterdir()) == ["hand_landmark.tflite", "notes.txt"]
    (folder / "hand_landmark.tflite").unlink()
    _write_hand_variant(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    assert read_variant(folder).stages.keys() == {"hand_landmark"}


def test_variant_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "v").write_text("mine")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        _write_hand_variant(tmp_path / "v", overwrite=True)
    assert (tmp_path / "v").read_text() == "mine"


def test_stage_file_symlinked_outside_is_never_written_through(variant_copy, tmp_path):
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"user data")
    (variant_copy / "hand_landmark.tflite").unlink()
    (variant_copy / "hand_landmark.tflite").symlink_to(outside)
    with pytest.raises(ValueError, match="hand_landmark.tflite is a symbolic link"):
        _write_hand_variant(variant_copy, overwrite=True)
    assert outside.read_bytes() == b"user data"


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    with output_lock(tmp_path / "v" / "manifest.json"):
        with pytest.raises(ValueError, match="being written by another run"):
            _write_hand_variant(tmp_path / "v")
    assert not (tmp_path / "v" / "manifest.json").exists()


def test_made_by_that_is_not_json_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="made_by cannot be written as JSON"):
        write_variant(tmp_path / "v", {"hand_landmark": model_path("hand_landmark_full")}, "x",
                      {"command": "c", "config": {"when": object()}})
    assert not (tmp_path / "v").exists() or not any((tmp_path / "v").iterdir())


# --- refused when reading ------------------------------------------------------------------------


def test_missing_or_malformed_manifest_is_refused_by_name(variant_copy, tmp_path):
    with pytest.raises(ValueError, match="manifest.json: no manifest"):
        read_variant(tmp_path)
    (variant_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        HolisticPipeline.from_variant(variant_copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(version=2), "not a holistic-lab-variant manifest of version 1"),
    (lambda m: m.update(format="other"), "not a holistic-lab-variant manifest"),
    (lambda m: m["stages"].update(palm_detection=m["stages"]["hand_landmark"]), "unknown stage 'palm_detection'"),
    (lambda m: m["stages"]["hand_landmark"].update(file="../../hand_landmark.tflite"), "must name its file 'hand_landmark.tflite'"),
    (lambda m: m["stages"]["hand_landmark"].update(file="hand_landmark_full.tflite"), "must name its file"),
    (lambda m: m["stages"].update(face_landmark=dict(m["stages"]["hand_landmark"], file="face_landmark.tflite")),
     "face_landmark.tflite is missing"),
    (lambda m: m["stages"]["hand_landmark"].update(sha256="0" * 64), "but the manifest says 0000"),
    (lambda m: m.pop("stages"), "expected a 'name' string and a 'stages' mapping"),
])
def test_edited_manifest_is_refused_by_name(variant_copy, edit, message):
    _edit_manifest(variant_copy, edit)
    with pytest.raises(ValueError, match=message):
        read_variant(variant_copy)


def test_swapped_model_file_fails_its_checksum(variant_copy):
    shutil.copyfile(model_path("hand_landmark_full"), variant_copy / "hand_landmark.tflite")
    read_variant(variant_copy)  # the same bytes: still the variant that was written
    (variant_copy / "hand_landmark.tflite").write_bytes(model_path("hand_recrop").read_bytes())
    with pytest.raises(ValueError, match=r"hand_landmark.tflite: sha256 [0-9a-f]{64} but the manifest says .*: "
                                         "changed since the variant was written"):
        HolisticPipeline.from_variant(variant_copy)


def test_stage_file_symlinked_outside_the_folder_is_refused_even_with_a_matching_checksum(variant_copy):
    (variant_copy / "hand_landmark.tflite").unlink()
    (variant_copy / "hand_landmark.tflite").symlink_to(model_path("hand_landmark_full"))
    with pytest.raises(ValueError, match="hand_landmark.tflite is a symbolic link"):
        read_variant(variant_copy)


def test_every_pipeline_stage_has_a_variant_file_name():
    assert list(STAGES) == ["pose_detection", "pose_landmark", "face_detection", "face_landmark",
                            "hand_recrop", "hand_landmark"]


def test_manifest_symlinked_outside_is_never_written_through(variant_copy, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("user data")
    (variant_copy / "manifest.json").unlink()
    (variant_copy / "manifest.json").symlink_to(outside)
    with pytest.raises(ValueError, match="manifest.json is a symbolic link"):
        _write_hand_variant(variant_copy, overwrite=True)
    assert outside.read_text() == "user data" and not (tmp_path / ".outside.json.lock").exists()
