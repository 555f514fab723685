"""`holistic-lab prune` against a hostile user: bad numbers and names, an --out that holds the user's
files or is the --from variant, a --from that is no variant, a tampered one, an int8 one; then runs
that work, chained from one another and from a variant with a gesture head. Each refusal is one
line naming the option or file, exit status 2, no traceback, nothing written or replaced, and a bad
option is refused before TensorFlow is even imported. A variant it writes is one `read_variant`
accepts, says what was done, is smaller than the shipped stage, and runs in the cascade."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

import holistic_lab  # noqa: E402
from holistic_lab.cli import main  # noqa: E402
from holistic_lab.files import output_lock  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.variants import STAGES, read_variant, sha256, write_variant  # noqa: E402

REPOSITORY = Path(holistic_lab.__file__).resolve().parents[1]
PREFIX = "holistic-lab prune: error: "
HAND_RECROP_30 = ["prune", "--stage", "hand_recrop", "--sparsity", "0.3", "--no-progress"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith(PREFIX), err[-2000:]
    return err


def shipped_variant(folder: Path) -> Path:
    return write_variant(folder, {"hand_recrop": model_path("hand_recrop")}, folder.name, {"command": "test"}).parent


def files_under(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file() and not path.is_symlink()}


def shipped_size(stage: str) -> int:
    return model_path(STAGES[stage][1]).stat().st_size


# --- refused before any work, without importing TensorFlow ----------------------------------------


def _mine(tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")


def _source(tmp):
    shipped_variant(tmp / "source")
    (tmp / "link").symlink_to(tmp / "source")


def _tampered(tmp):
    """A variant whose stage file changed after its manifest was written (one bit flipped)."""
    model = shipped_variant(tmp / "source") / "hand_recrop.tflite"
    payload = bytearray(model.read_bytes())
    payload[-100] ^= 1
    model.write_bytes(bytes(payload))


NOT_IN = r"must be a number in \[0, 1\) \(the fraction of channels removed\), got "
REFUSALS = {  # on top of HAND_RECROP_30 --out v (argparse keeps an option's last value)
    "sparsity negative": (None, ["--sparsity", "-0.1"], NOT_IN + "-0.1"),
    "sparsity one": (None, ["--sparsity", "1"], NOT_IN + "1.0"),
    "sparsity above one": (None, ["--sparsity", "1.5"], NOT_IN + "1.5"),
    "sparsity nan": (None, ["--sparsity", "nan"], NOT_IN + "nan"),
    "sparsity inf": (None, ["--sparsity", "inf"], NOT_IN + "inf"),
    "unknown stage": (None, ["--stage", "palm_detection"], "stage: unknown 'palm_detection'; expected one of "
                      "pose_detection, .*hand_landmark"),
    "unknown criterion": (None, ["--criterion", "l3"], "criterion: unknown 'l3'; expected one of l1, l2, taylor"),
    "unknown allocation": (None, ["--allocation", "greedy"], "allocation: unknown 'greedy'; expected one of uniform"),
    "round-to zero": (None, ["--round-to", "0"], r"round_to must be a whole number >= 1 \(1: no rounding\), got 0"),
    "round-to negative": (None, ["--round-to", "-16"], "round_to must be a whole number >= 1.*got -16"),
    "no steps": (None, ["--steps", "0"], "steps must be a whole number from 1 to 20, got 0"),
    "runaway steps": (None, ["--steps", "100000"], "steps must be a whole number from 1 to 20, got 100000"),
    "negative recovery": (None, ["--recover-epochs", "-1"], "recover_epochs must be a whole number from 0 up, got -1"),
    "learning rate with no recovery": (None, ["--learning-rate", "0.001"], "--learning-rate applies with "
                                       "--recover-epochs 1 or more only"),
    "crops with nothing to use them": (None, ["--crops", "8"], "--crops applies with --criterion taylor or "
                                       "--recover-epochs 1 or more only"),
    "out is a file": (_mine, ["--out", "mine/notes.txt"], "variant folder mine/notes.txt is a file"),
    "out holds a user's file": (_mine, ["--out", "mine"], "variant folder mine holds files that are not a "
                                "holistic-lab variant; .* pass --overwrite"),
    "out is from": (_source, ["--from", "source", "--out", "source"], "--out source is also --from"),
    "out links to from": (_source, ["--from", "source", "--out", "link"], "--out link is also --from"),
    "from missing": (None, ["--from", "nowhere"], "variant nowhere/manifest.json: no manifest"),
    "from not a variant": (_mine, ["--from", "mine"], "variant mine/manifest.json: no manifest; expected a folder "
                           "written by a holistic-lab command"),
    "from tampered": (_tampered, ["--from", "source"], "source/hand_recrop.tflite: sha256 [0-9a-f]{64} but the "
                      "manifest says [0-9a-f]{64}: changed since the variant was written"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_arguments_are_one_line_exit_2_before_tensorflow_loads(tmp_path, case):
    """In a fresh interpreter: the refusal comes before TensorFlow or Keras is imported, and leaves
    every file as it was."""
    setup, argv, message = REFUSALS[case]
    if setup is not None:
        setup(tmp_path)
    before = files_under(tmp_path)
    code = ("import sys; from holistic_lab.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, sorted({'tensorflow', 'keras'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code, *HAND_RECROP_30, "--out", "v", *argv], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.stdout == "2 []\n", (run.stdout, run.stderr[-2000:])
    assert run.stderr.startswith(PREFIX) and len(run.stderr.splitlines()) == 1, run.stderr[-2000:]
    assert re.search(message, run.stderr), run.stderr
    assert not (tmp_path / "v").exists()
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("argv, error", [
    (["--sparsity", "abc"], "argument --sparsity: invalid float value: 'abc'"),
    (["--crops", "0"], "argument --crops: expected an integer >= 1, got '0'"),
    (["--round-to", "1.5"], "argument --round-to: invalid int value: '1.5'"),
    (["--steps", "two"], "argument --steps: invalid int value: 'two'"),
])
def test_values_of_the_wrong_type_are_argparse_errors_naming_the_option(tmp_path, capsys, argv, error):
    """argparse's refusal: its usage, then one error line naming the option; exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main([*HAND_RECROP_30, "--out", str(tmp_path / "v"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: holistic-lab prune") and "Traceback" not in err
    assert err.strip().splitlines()[-1] == PREFIX + error
    assert not (tmp_path / "v").exists()


def test_help_names_every_option_with_its_default():
    run = subprocess.run([sys.executable, "-m", "holistic_lab.cli", "prune", "--help"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    text = " ".join(run.stdout.split())
    assert run.returncode == 0 and "Traceback" not in run.stderr
    for says in ("--stage STAGE the stage to prune (pose_detection", "in [0, 1)", "l1, l2 (weight magnitude) or taylor",
                 "XNNPACK's tile (default 16; 1: no rounding)", "uniform (every group by --sparsity, default) or global",
                 "(default 0: no recovery)", "(default 256; 24 in quick mode)",
                 "gesture head is dropped when --stage is hand_landmark"):
        assert says in text, says


def test_an_int8_source_stage_is_refused_by_name_before_anything_is_written(fixtures, tmp_path, capsys):
    """Chapter 08's int8 hand_recrop holds int8 weights: no float model to prune."""
    from holistic_lab.quantize.variant import quantize_variant

    quantize_variant(tmp_path / "int8", "int8", stages=["hand_recrop"], crop_count=2, progress=False)
    assert main([*HAND_RECROP_30, "--from", str(tmp_path / "int8"), "--out", str(tmp_path / "v")]) == 2
    err = one_line_error(capsys)
    assert f"hand_recrop: cannot open {tmp_path / 'int8' / 'hand_recrop.tflite'} as a float model to prune" in err
    assert "INT8-quantized weights" in err and err.endswith("start from a float variant (or the shipped models)")
    assert not (tmp_path / "v").exists()


def test_a_second_run_on_the_same_out_is_refused_at_once(tmp_path, capsys):
    """Two runs side by side both pruned, and the last to finish replaced the other's variant."""
    out = tmp_path / "v"
    with output_lock(out):   # the other run
        assert main([*HAND_RECROP_30, "--out", str(out)]) == 2
    assert "is being written by another run" in one_line_error(capsys)
    assert not out.exists()


# --- runs that work ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_variant(tmp_path_factory) -> tuple[Path, list[str]]:
    """face_landmark pruned by 30% (L1, no recovery): (the variant, the command's printed lines)."""
    out = tmp_path_factory.mktemp("face") / "face30"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["prune", "--stage", "face_landmark", "--sparsity", "0.3", "--out", str(out), "--no-progress"]) == 0
    return out, printed.getvalue().splitlines()


@pytest.fixture(scope="module")
def recovered_run(fixtures, tmp_path_factory) -> tuple[Path, list[str]]:
    """hand_recrop pruned by 30%, then two epochs of distillation on 8 real crops."""
    out = tmp_path_factory.mktemp("recrop") / "recrop30"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*HAND_RECROP_30, "--recover-epochs", "2", "--crops", "8", "--out", str(out)]) == 0
    return out, printed.getvalue().splitlines()


@pytest.fixture(scope="module")
def recovered_variant(recovered_run) -> Path:
    return recovered_run[0]


def test_a_pruned_variant_says_what_was_done_and_is_smaller_than_the_shipped_stage(face_variant):
    out, lines = face_variant
    variant = read_variant(out)
    entry = variant.manifest["stages"]["face_landmark"]
    metrics = entry["metrics"]
    assert list(variant.stages) == ["face_landmark"] and variant.gesture is None
    assert entry["kind"] == "pruned-0.3" and metrics["weights"] == "float16"  # as shipped
    assert metrics["params"] < metrics["params_before"] == 604_685 and metrics["macs"] < metrics["macs_before"]
    assert 0.25 < metrics["slot_sparsity"] < 0.35 and metrics["crops"] == 0
    assert metrics["bytes"] == variant.stages["face_landmark"].stat().st_size < shipped_size("face_landmark")
    made_by = variant.manifest["made_by"]
    assert made_by["command"] == f"holistic-lab prune --stage face_landmark --sparsity 0.3 --out {out} --no-progress"
    assert made_by["source"] is None
    assert made_by["config"] == {"stage": "face_landmark", "sparsity": 0.3, "criterion": "l1", "round_to": 16,
                                 "allocation": "uniform", "steps": 1, "recover_epochs": 0, "learning_rate": None}
    assert lines[0].startswith(f"face_landmark: 604,685 -> {metrics['params']:,} parameters, ")
    assert "% of the prunable channels removed" in lines[0] and lines[-1] == f"variant {out}"


def test_a_pruned_face_model_finds_the_parts_the_shipped_cascade_finds_on_a_real_photograph(fixtures,
                                                                                         face_variant):
    from holistic_lab.datasets import hagrid_frames
    from holistic_lab.images import load_rgb
    from holistic_lab.pipeline import HolisticPipeline

    rgb = load_rgb(hagrid_frames()[0][0])
    shipped = HolisticPipeline(static_image_mode=True).process(rgb)
    pruned = HolisticPipeline.from_variant(face_variant[0], static_image_mode=True).process(rgb)
    assert shipped.present["face"] and pruned.present == shipped.present


def test_recovery_on_real_crops_is_recorded_and_the_variant_runs(recovered_run):
    """The manifest keeps the recovery's loss per epoch and the command prints it: how else would
    a user see whether the distillation did anything."""
    from holistic_lab.datasets import sample_image
    from holistic_lab.pipeline import HolisticPipeline

    recovered_variant, lines = recovered_run
    variant = read_variant(recovered_variant)
    entry = variant.manifest["stages"]["hand_recrop"]
    assert entry["kind"] == "pruned-0.3" and entry["metrics"]["weights"] == "float32"  # hand_recrop ships float32
    assert entry["metrics"]["crops"] == 8 and variant.manifest["made_by"]["config"]["recover_epochs"] == 2
    (step,) = entry["metrics"]["steps"]
    losses = step["recovery"]["val_loss"]
    assert len(losses) == len(step["recovery"]["loss"]) == 2 and all(0 < loss < 10 for loss in losses)
    assert lines[1] == f"step 1: recovery's validation loss {losses[0]:.3f} after epoch 1, {min(losses):.3f} at best of 2"
    assert entry["metrics"]["params"] < entry["metrics"]["params_before"] == 27_012
    assert variant.stages["hand_recrop"].stat().st_size < shipped_size("hand_recrop")
    pipeline = HolisticPipeline.from_variant(recovered_variant, static_image_mode=True)
    assert pipeline.process(sample_image("astronaut")).present["face"]


def test_a_second_stage_pruned_from_the_first_variant_keeps_it_and_the_users_files(face_variant, tmp_path, capsys):
    """--from the face variant into a folder of the user's with --overwrite: the face model is
    carried unchanged (checksum), hand_recrop pruned beside it, the user's file kept."""
    first = read_variant(face_variant[0])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main([*HAND_RECROP_30, "--from", str(face_variant[0]), "--out", str(out), "--overwrite"]) == 0
    variant = read_variant(out)
    assert sorted(variant.stages) == ["face_landmark", "hand_recrop"]
    assert sha256(variant.stages["face_landmark"]) == first.manifest["stages"]["face_landmark"]["sha256"]
    assert variant.manifest["stages"]["face_landmark"] == first.manifest["stages"]["face_landmark"]
    assert variant.manifest["stages"]["hand_recrop"]["kind"] == "pruned-0.3"
    assert variant.manifest["made_by"]["source"] == str(face_variant[0])
    assert (out / "notes.txt").read_text() == "keep me"


def test_pruning_a_pruned_stage_again_records_both_and_starts_from_the_pruned_model(recovered_variant, tmp_path):
    """With the default tile of 16 hand_recrop's groups (8 to 32 channels) are already at their
    rounded minimum; --round-to 1 prunes further."""
    first = read_variant(recovered_variant).manifest["stages"]["hand_recrop"]["metrics"]
    out = tmp_path / "again"
    assert main(["prune", "--stage", "hand_recrop", "--sparsity", "0.2", "--round-to", "1", "--from",
                 str(recovered_variant), "--out", str(out), "--no-progress"]) == 0
    entry = read_variant(out).manifest["stages"]["hand_recrop"]
    assert entry["kind"] == "pruned-0.3+pruned-0.2"
    assert entry["metrics"]["params_before"] == first["params"] > entry["metrics"]["params"]
    assert entry["metrics"]["from"] == str(recovered_variant / "hand_recrop.tflite")


@pytest.fixture(scope="module")
def gesture_variant(crops_by_class, tmp_path_factory) -> Path:
    """A variant with a tiny gesture head (3 classes x 4 crops, one view, two epochs), as chapter 06 makes it."""
    data = tmp_path_factory.mktemp("gestures") / "data"
    for label in ("fist", "like", "palm"):
        (data / label).mkdir(parents=True)
        for path in crops_by_class[label][:4]:
            shutil.copy(path, data / label / path.name)
    out = data.parent / "gestures"
    assert main(["gestures", "train", "--data", str(data), "--out", str(out), "--views", "1", "--epochs", "2",
                 "--no-progress"]) == 0
    return out


@pytest.mark.parametrize("stage, kept", [("hand_recrop", True), ("hand_landmark", False)])
def test_a_gesture_head_is_kept_unless_the_hand_model_it_sits_on_is_pruned(gesture_variant, tmp_path, stage, kept):
    head = read_variant(gesture_variant).manifest["gesture"]
    out = tmp_path / "v"
    assert main(["prune", "--stage", stage, "--sparsity", "0.3", "--from", str(gesture_variant), "--out", str(out),
                 "--no-progress"]) == 0
    variant = read_variant(out)
    assert stage in variant.stages
    if kept:
        assert variant.gesture == out / "gesture" and variant.manifest["gesture"] == head
    else:
        assert variant.gesture is None and "gesture" not in variant.manifest and not (out / "gesture").exists()


def test_a_pruned_pose_stage_is_quantized_from_its_variant(tmp_path):
    """pruned + int8 for the pose model: chapter 07's full run failed here, because the pruned file
    held SHAPE ops (a Reshape of a free batch) that quantize could not open as a float model."""
    pruned, quantized = tmp_path / "pose30", tmp_path / "pose30_dynamic"
    assert main(["prune", "--stage", "pose_landmark", "--sparsity", "0.3", "--out", str(pruned), "--no-progress"]) == 0
    assert main(["quantize", "--mode", "dynamic", "--stage", "pose_landmark", "--from", str(pruned), "--out",
                 str(quantized), "--no-progress"]) == 0
    entry = read_variant(quantized).manifest["stages"]["pose_landmark"]
    assert entry["kind"] == "pruned-0.3+dynamic"
