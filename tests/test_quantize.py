"""holistic_lab.quantize: real-crop calibration, the five converter modes, PRELU and chosen layers
kept float, the per-layer error table, and quantized variants the cascade runs.

Conversions are the slow part (~10-30 s each on a 2-core CPU), so only the two small stage
models are converted: hand_recrop (124 KB, has PRELU) and face_detection_short_range (230 KB),
each (model, mode) once per session; the calibration crops come from one cascade run over a
few real frames (the videos pack and the hagrid_frames photographs)."""
from __future__ import annotations

import functools
import itertools
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.pipeline import HolisticPipeline  # noqa: E402
from holistic_lab.quantize.calibration import (STAGES, calibration_crops, check_calibration,  # noqa: E402
                                               default_calibration_frames, folder_images)
from holistic_lab.quantize.modes import MODES, float_ops, op_dtypes, quantize_model  # noqa: E402
from holistic_lab.quantize.selective import layer_errors, sensitive_layers  # noqa: E402
from holistic_lab.quantize.variant import check_stages, quantize_variant  # noqa: E402
from holistic_lab.variants import read_variant, shipped_signature, stage_model, write_variant  # noqa: E402

FRAMES = 6            # real frames: every stage gets at least one crop (hands: up to two per frame)
PRELU_IN_HAND_RECROP = 13
# max |quantized - shipped| of hand_recrop's two points, in pixels of its 256-pixel crop, on the
# cascade's crops of the 6 frames (measured: float32 0.1, float16 0.14, dynamic 2.3, int16x8 3.2,
# int8 20: int8 costs this small regressor that much). A broken model is off by ~100 pixels.
POINT_TOLERANCE_PX = {"float32": 0.5, "float16": 0.5, "dynamic": 6.0, "int8": 32.0, "int16x8": 8.0}


@pytest.fixture(scope="session")
def frames(fixtures) -> list[np.ndarray]:
    return list(itertools.islice(default_calibration_frames(), FRAMES))


@pytest.fixture(scope="session")
def crops(frames) -> dict[str, np.ndarray]:
    return calibration_crops(frames, progress=False)


@functools.cache
def keras_model(name: str):
    from holistic_lab.convert import tflite_to_keras

    return tflite_to_keras(model_path(name))


@pytest.fixture(scope="session")
def converted(crops):
    """(model name, stage, mode, float_ops) -> the converted .tflite bytes, each made once."""
    @functools.cache
    def convert(name: str, stage: str, mode: str, ops: tuple[str, ...] | None = None) -> bytes:
        calibration = crops[stage] if mode in ("int8", "int16x8") else None
        return quantize_model(keras_model(name), mode, calibration, float_ops=ops)

    return convert


def recrop_points(pipeline: HolisticPipeline, frames) -> np.ndarray:
    """hand_recrop's outputs (two points, 256-pixel units) for every hand the cascade re-crops in `frames`."""
    points = []
    for frame in frames:
        pipeline.process(frame)
        points += [pipeline.last_outputs[key][0].ravel() for key in pipeline.last_crops if key.endswith("_recrop")]
    assert points, "the frames hold no hand to re-crop"
    return np.stack(points)


@pytest.fixture(scope="session")
def shipped_points(frames) -> np.ndarray:
    return recrop_points(HolisticPipeline(static_image_mode=True), frames)


def compute_dtypes(model: bytes) -> dict[str, set[str]]:
    """op -> the dtypes of its first input, quantize/dequantize left out."""
    return {op: set(counts) for op, counts in op_dtypes(model).items() if op not in ("QUANTIZE", "DEQUANTIZE")}


# --- the representative data set is the cascade's own crops --------------------------------------


def test_calibration_crops_are_exactly_what_the_cascade_gave_each_stage(frames, crops):
    pipeline = HolisticPipeline(static_image_mode=True)
    seen: dict[str, list] = {stage: [] for stage in STAGES}
    for frame in frames:
        pipeline.process(frame)
        for key, crop in pipeline.last_crops.items():
            seen[key.removeprefix("left_").removeprefix("right_")].append(crop.tensor[0])
    assert set(crops) == set(STAGES)
    for stage in STAGES:
        assert len(crops[stage]) >= 1 and np.array_equal(crops[stage], np.stack(seen[stage])), stage


@pytest.mark.parametrize("stage", STAGES)
def test_calibration_crops_have_the_models_input_shape_and_range_and_are_photographs(crops, stage):
    batch = crops[stage]
    ((input_shape, input_type),), _ = shipped_signature(stage)
    assert input_type == "float32"
    assert batch.dtype == np.float32 and batch.shape[1:] == input_shape[1:]
    low = -1.0 if stage in ("pose_detection", "face_detection") else 0.0  # the two detectors take [-1, 1]
    assert batch.min() >= low and batch.max() <= 1.0 and batch.max() - batch.min() > 0.5
    # a photograph is smooth: neighbouring pixels differ far less than noise's (~1/3 of the range)
    step = np.abs(np.diff(batch, axis=2)).mean() / (1.0 - low)
    assert step < 0.05, step
    assert len({crop.tobytes() for crop in batch}) == len(batch)  # different crops, not one repeated


def test_calibration_limit_keeps_the_first_crops_of_the_stages_asked(frames, crops):
    few = calibration_crops(frames, ["hand_landmark", "face_detection"], limit=2, progress=False)
    assert set(few) == {"hand_landmark", "face_detection"}
    for stage, batch in few.items():
        assert np.array_equal(batch, crops[stage][:2])


def test_images_with_no_person_are_refused_naming_the_empty_stages(fixtures):
    """Two FreiHAND photographs: a hand on a table, no body the pose detector finds."""
    from holistic_lab.datasets import fixture_path

    photos = [fixture_path(f"freihand/{name}.jpg") for name in ("00000355", "00017620")]
    with pytest.raises(ValueError, match="found nothing to crop for pose_landmark, hand_recrop") as info:
        calibration_crops(photos, ["pose_landmark", "hand_recrop"], progress=False)
    assert "pose_detection" not in str(info.value)  # the detector did get both images


def test_unknown_calibration_stage_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown stages \['hand'\]"):
        calibration_crops([], ["hand"], progress=False)


def test_calibration_folder_missing_empty_a_file_or_corrupt_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="calibration folder not found: .*missing"):
        folder_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty holds no images"):
        folder_images(tmp_path / "empty")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="file.jpg is not a folder"):
        folder_images(tmp_path / "file.jpg")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "photo.jpg").write_text("this is not a JPEG")
    with pytest.raises(ValueError, match="cannot decode image .*corrupt/photo.jpg"):
        calibration_crops(folder_images(tmp_path / "corrupt"), progress=False)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 128, 128, 3), np.float32), r"expected shape \(n, 256, 256, 3\)"),
    (np.zeros((256, 256, 3), np.float32), r"expected shape \(n, 256, 256, 3\)"),
    (np.zeros((0, 256, 256, 3), np.float32), r"expected shape .* with n >= 1, got \(0, 256, 256, 3\)"),
    (np.zeros((2, 256, 256, 3), np.uint8), "expected finite float values, got dtype uint8"),
    (np.full((2, 256, 256, 3), np.nan, np.float32), "expected finite float values"),
])
def test_calibration_crops_of_the_wrong_shape_type_or_nan_are_refused(bad, message):
    with pytest.raises(ValueError, match=f"calibration crops for hand_recrop: {message}"):
        check_calibration(bad, (1, 256, 256, 3), "hand_recrop")
    with pytest.raises(ValueError, match=message):  # before the converter sees them
        quantize_model(keras_model("hand_recrop"), "int8", bad)


# --- every mode converts and runs in the cascade -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_converts_and_runs_in_the_cascade(converted, frames, shipped_points, tmp_path, mode):
    model = converted("hand_recrop", "hand_recrop", mode)
    stage_model("hand_recrop", model, mode)  # TFLite loads it, with the shipped inputs and outputs
    path = tmp_path / f"hand_recrop_{mode}.tflite"
    path.write_bytes(model)
    pipeline = HolisticPipeline(static_image_mode=True, hand_recrop_model=str(path))
    interpreter = pipeline.hand_recrop.runner.interpreter
    assert {d["dtype"] for d in interpreter.get_input_details() + interpreter.get_output_details()} == {np.float32}
    error_px = np.abs(recrop_points(pipeline, frames) - shipped_points).max()
    assert error_px <= POINT_TOLERANCE_PX[mode], (mode, error_px)
    dtypes = compute_dtypes(model)
    if mode in ("float32", "dynamic"):
        assert "DEQUANTIZE" not in op_dtypes(model) and set().union(*dtypes.values()) == {"FLOAT32"}
    if mode == "float16":  # float16 weights, decoded to float32 at load
        assert op_dtypes(model)["DEQUANTIZE"].keys() == {"FLOAT16"}
    if mode == "dynamic":  # the weights are stored as int8: a smaller file than the float32 one
        assert len(model) < 0.6 * len(converted("hand_recrop", "hand_recrop", "float32"))
    if mode == "int8":
        assert dtypes["CONV_2D"] == {"INT8"}
    if mode == "int16x8":  # 16x8 has no PRELU kernel: the converter keeps it float, float_ops says so
        assert dtypes["CONV_2D"] == {"INT16"} and float_ops(model) == {"PRELU": PRELU_IN_HAND_RECROP}


# --- ops and layers kept float --------------------------------------------------------------------


def test_int8_keeps_prelu_float_by_default_and_quantizes_it_when_asked(converted):
    default = converted("hand_recrop", "hand_recrop", "int8")
    assert float_ops(default) == {"PRELU": PRELU_IN_HAND_RECROP}
    assert all(dtypes == {"INT8"} for op, dtypes in compute_dtypes(default).items() if op != "PRELU")
    everything = converted("hand_recrop", "hand_recrop", "int8", ())
    assert float_ops(everything) == {} and compute_dtypes(everything)["PRELU"] == {"INT8"}


def test_float_ops_and_nodes_apply_to_int8_only():
    for kwargs in ({"float_ops": ("PRELU",)}, {"float_nodes": ("some_tensor",)}):
        with pytest.raises(ValueError, match="apply to int8 only, not to mode dynamic"):
            quantize_model(keras_model("hand_recrop"), "dynamic", **kwargs)
    with pytest.raises(ValueError, match="unknown quantization mode 'int4'"):
        quantize_model(keras_model("hand_recrop"), "int4")
    with pytest.raises(ValueError, match="mode int8 needs calibration crops"):
        quantize_model(keras_model("hand_recrop"), "int8")


@pytest.fixture(scope="session")
def error_table(crops):
    return layer_errors(keras_model("face_detection_short_range"), crops["face_detection"], steps=4)


def test_layer_errors_are_sorted_worst_first_with_positive_scales(error_table):
    assert len(error_table) > 10
    steps = [row.rmse_per_scale for row in error_table]
    assert steps == sorted(steps, reverse=True) and all(np.isfinite(steps))
    assert all(row.scale > 0 and row.max_abs_error >= 0 and row.tensor and row.op for row in error_table)
    assert sensitive_layers(error_table, count=3, min_steps=0.0) == tuple(row.tensor for row in error_table[:3])
    assert sensitive_layers(error_table, min_steps=float("inf")) == ()


def test_a_denylisted_node_stays_float(error_table, crops):
    """The worst CONV_2D of the table, kept float by name: exactly that op runs in float (the model
    has no PRELU; float_ops=() only skips looking for one)."""
    from tensorflow.lite.tools import flatbuffer_utils

    node = next(row for row in error_table if row.op == "CONV_2D")
    model = quantize_model(keras_model("face_detection_short_range"), "int8", crops["face_detection"],
                           float_ops=(), float_nodes=(node.tensor,))
    stage_model("face_detection", model, "selective int8")
    assert float_ops(model) == {"CONV_2D": 1}
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = flat.subgraphs[0]
    names = [tensor.name.decode() for tensor in graph.tensors]
    (producer,) = [op for op in graph.operators if names[op.outputs[0]] == node.tensor]
    float32 = 0  # schema TensorType.FLOAT32
    assert graph.tensors[producer.inputs[0]].type == float32 and graph.tensors[producer.outputs[0]].type == float32


# --- variants ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shifted_source(tmp_path_factory):
    """A variant whose hand_recrop is not the shipped one (its points moved by 20 pixels) and whose
    face_detection is the shipped file, both of kind pruned-0.3."""
    import keras

    from holistic_lab.convert import keras_to_tflite

    model = keras_model("hand_recrop")
    shifted = keras.models.clone_model(model)
    shifted.set_weights(model.get_weights())
    last = [layer for layer in shifted.layers if getattr(layer, "bias", None) is not None][-1]
    assert tuple(last.bias.shape) == (4,)  # the two points' output layer
    last.bias.assign(last.bias.numpy() + 20.0)
    return write_variant(tmp_path_factory.mktemp("shifted") / "source", {"hand_recrop": keras_to_tflite(shifted),
                                               "face_detection": model_path("face_detection_short_range")},
                         "source", {"command": "test"}, kinds="pruned-0.3").parent


def test_quantize_variant_on_a_source_quantizes_its_stage_file_and_carries_the_others(shifted_source, frames,
                                                                                        shipped_points, tmp_path):
    """The variant's manifest says what was done, read_variant accepts it, the cascade runs it, and
    its hand_recrop reproduces the source's (shifted) points, not the shipped model's."""
    manifest_path = quantize_variant(tmp_path / "v", "dynamic", stages=["hand_recrop"], source=shifted_source,
                                     command="test", progress=False)
    variant = read_variant(manifest_path.parent)
    assert set(variant.stages) == {"hand_recrop", "face_detection"}
    entries = variant.manifest["stages"]
    assert entries["hand_recrop"]["kind"] == "pruned-0.3+dynamic"
    metrics = entries["hand_recrop"]["metrics"]
    assert metrics["from"].endswith("source/hand_recrop.tflite") and metrics["calibration_crops"] == 0
    assert metrics["bytes"] == variant.stages["hand_recrop"].stat().st_size and metrics["float_layers"] == []
    assert variant.manifest["made_by"]["command"] == "test"
    assert variant.manifest["made_by"]["config"]["mode"] == "dynamic"
    assert variant.manifest["made_by"]["config"]["stages"] == ["hand_recrop"]
    assert entries["face_detection"]["kind"] == "pruned-0.3"
    assert (variant.stages["face_detection"].read_bytes()
            == model_path("face_detection_short_range").read_bytes())
    assert variant.manifest["made_by"]["source"] == str(shifted_source)
    source_points = recrop_points(HolisticPipeline.from_variant(shifted_source), frames)
    points = recrop_points(HolisticPipeline.from_variant(variant.folder), frames)
    assert np.abs(points - source_points).max() <= POINT_TOLERANCE_PX["dynamic"]
    assert np.abs(source_points - shipped_points).mean() > 10  # the source really differs from shipped


def test_an_int8_source_stage_is_refused_naming_its_file(converted, tmp_path):
    """An int8 stage has no float weights to quantize again: the error names the file and what to do."""
    source = write_variant(tmp_path / "int8_source", {"hand_recrop": converted("hand_recrop", "hand_recrop", "int8")},
                           "int8_source", {"command": "test"}, kinds="int8").parent
    with pytest.raises(ValueError, match=r"hand_recrop: cannot open .*int8_source/hand_recrop.tflite as a float model"
                                         r".*start from a float variant"):
        quantize_variant(tmp_path / "again", "dynamic", stages=["hand_recrop"], source=source, progress=False)
    assert not (tmp_path / "again" / "manifest.json").exists()


def test_check_stages_reads_all_lists_and_refuses_unknown_names():
    assert check_stages("all") == tuple(STAGES) and check_stages(None) == tuple(STAGES)
    assert check_stages(" hand_recrop , face_detection,hand_recrop") == ("hand_recrop", "face_detection")
    for bad in ("hand", "hand_recrop,palm_detection", "", []):
        with pytest.raises(ValueError, match="unknown stage .*expected 'all' or some of pose_detection"):
            check_stages(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "int4"}, "unknown quantization mode 'int4'"),
    ({"stages": "hands"}, "unknown stage 'hands'"),
    ({"mode": "float16", "selective": True}, "selective and float ops apply to mode int8 only, not float16"),
    ({"mode": "dynamic", "float_op_names": ("PRELU",)}, "apply to mode int8 only, not dynamic"),
    ({"selective": True, "selective_layers": -1}, "selective_layers must be >= 0, got -1"),
    ({"calibration": "missing_folder"}, "calibration folder not found: .*missing_folder"),
    ({"stages": "hand_recrop", "calibration": {"face_detection": np.zeros((1, 128, 128, 3), np.float32)}},
     "calibration crops given for face_detection but not for hand_recrop"),
    ({"stages": "hand_recrop", "calibration": {"hand_recrop": np.zeros((1, 128, 128, 3), np.float32)}},
     r"calibration crops for hand_recrop: expected shape \(n, 256, 256, 3\)"),
])
def test_quantize_variant_refuses_bad_arguments_by_name_before_any_work(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    arguments = {"mode": "int8", **kwargs}
    with pytest.raises(ValueError, match=message):
        quantize_variant(tmp_path / "v", progress=False, **arguments)
    assert not (tmp_path / "v").exists()


def test_quantize_variant_refuses_an_occupied_out_and_its_own_source(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds files that are not a holistic-lab variant"):
        quantize_variant(out, "float16", stages="hand_recrop", progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    source = write_variant(tmp_path / "source", {"hand_recrop": model_path("hand_recrop")}, "source",
                           {"command": "test"}, kinds="pruned-0.3").parent
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    (tmp_path / "link").symlink_to(source)
    (tmp_path / "sub").mkdir()
    for out in (source, tmp_path / "link", tmp_path / "sub" / ".." / "source"):
        with pytest.raises(ValueError, match="is also --from"):
            quantize_variant(out, "float16", stages="hand_recrop", source=source, progress=False)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    not_variant = tmp_path / "plain"
    not_variant.mkdir()
    with pytest.raises(ValueError, match="no manifest"):
        quantize_variant(tmp_path / "v", "float16", stages="hand_recrop", source=not_variant, progress=False)


def test_a_dynamic_range_source_stage_is_refused_not_opened_as_garbage(converted, tmp_path):
    """A dynamic-range file keeps int8 kernels with a scale and no DEQUANTIZE: read as numbers they
    would be weights of -127..127. Refused by name, like an int8 one."""
    source = write_variant(tmp_path / "dynamic_source",
                           {"hand_recrop": converted("hand_recrop", "hand_recrop", "dynamic")},
                           "dynamic_source", {"command": "test"}, kinds="dynamic").parent
    with pytest.raises(ValueError, match=r"hand_recrop: cannot open .*dynamic_source/hand_recrop.tflite as a float "
                                         r"model .*INT8-quantized weights"):
        quantize_variant(tmp_path / "again", "int8", stages=["hand_recrop"], source=source,
                         calibration={"hand_recrop": np.zeros((1, 256, 256, 3), np.float32)}, progress=False)
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())


def test_float_op_names_that_are_not_tflite_ops_are_refused(tmp_path):
    """`--float-ops PRLEU` (a typo) would quantize PRELU after all: refused before any work."""
    with pytest.raises(ValueError, match=r"'PRLEU' are not TFLite op names"):
        quantize_variant(tmp_path / "v", "int8", stages=["hand_recrop"], float_op_names=("PRLEU",), progress=False)
    assert not (tmp_path / "v").exists()


def test_a_calibration_folder_with_an_uncalibrated_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"calibration folder applies to the calibrated modes .* not float16"):
        quantize_variant(tmp_path / "v", "float16", stages=["hand_recrop"], calibration=tmp_path, progress=False)


def test_palm_detection_crops_are_whole_images_letterboxed_into_0_1_and_skip_black_frames(frames):
    from holistic_lab.quantize.calibration import palm_detection_crops

    black = np.zeros_like(frames[0])
    crops = palm_detection_crops([black, frames[0], frames[1]])
    assert crops.shape == (2, 192, 192, 3) and crops.dtype == np.float32
    assert crops.min() >= 0.0 and crops.max() <= 1.0 and crops.std() > 0.05
    assert palm_detection_crops(frames, limit=1).shape[0] == 1
    with pytest.raises(ValueError, match="palm detection calibration"):
        palm_detection_crops([black])
