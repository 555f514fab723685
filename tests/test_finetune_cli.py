"""`holistic-lab finetune`: a labelled TFRecord set in, a variant the pipeline runs out; the job
JSON and the options laid over it; every refusal before an hour of training, in one line."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from holistic_lab.cli import main  # noqa: E402
from holistic_lab.datasets import sample_image, sample_names  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.train import job  # noqa: E402
from holistic_lab.variants import read_variant, write_variant  # noqa: E402

QUICK = ["--module", "face_mesh", "--epochs", "1", "--batch-size", "2", "--validation-split", "0.5",
         "--steps-per-epoch", "1", "--no-progress"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("holistic-lab finetune: error: ")
    return err


class Called(Exception):
    pass


@pytest.fixture
def no_training(monkeypatch):
    """finetune replaced: each call records its config and start model, then stops the command."""
    calls = []

    def record(config, start_model=None, **kwargs):
        calls.append((config, start_model))
        raise Called

    monkeypatch.setattr(job, "finetune", record)
    return calls


def test_finetune_writes_a_variant_the_pipeline_runs(sample_face_set, tmp_path, capsys):
    from holistic_lab.pipeline import HolisticPipeline

    out = tmp_path / "faces_v1"
    argv = ["finetune", "--data", str(sample_face_set), "--out", str(out), *QUICK, "--loss-weight", "teacher=2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "best epoch 1" in printed and "trainable" in printed
    variant = read_variant(out)
    assert set(variant.stages) == {"face_landmark"}
    made_by = variant.manifest["made_by"]
    assert made_by["command"].startswith("holistic-lab finetune --data ")
    config = made_by["config"]
    assert config["module"] == "face_mesh" and config["epochs"] == 1 and config["batch_size"] == 2
    assert config["loss_weights"]["teacher"] == 2.0 and config["checkpoint_dir"] == f"{out}.checkpoints"
    metrics = variant.manifest["stages"]["face_landmark"]["metrics"]
    assert metrics["best_epoch"] == 1 and metrics["train_crops"] == 1 and metrics["trainable_params"] > 0
    assert metrics["val_loss"] > 0
    assert (tmp_path / "faces_v1.checkpoints" / "best.weights.h5").is_file()
    result = HolisticPipeline.from_variant(out).process(sample_image(sample_names()[0]))
    assert result.present["face"]


def test_options_given_override_the_job_json(sample_face_set, tmp_path, no_training):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"dataset_path": str(sample_face_set), "module": "hands", "epochs": 5,
                                    "batch_size": 4, "loss_weights": {"z": 0.5, "teacher": 3.0},
                                    "gradient_clip": 2.0}))
    with pytest.raises(Called):
        main(["finetune", "--config", str(job_file), "--out", str(tmp_path / "v"), "--epochs", "1",
              "--loss-weight", "teacher=0", "--gradient-clip", "none", "--no-freeze-backbone"])
    ((config, start_model),) = no_training
    assert (config.module, config.epochs, config.batch_size) == ("hands", 1, 4)
    assert config.loss_weights["z"] == 0.5 and config.loss_weights["teacher"] == 0.0
    assert config.gradient_clip is None and config.freeze_backbone is False and start_model is None
    assert config.checkpoint_dir == f"{tmp_path / 'v'}.checkpoints"


def test_from_starts_at_the_variants_model_for_the_stage(sample_face_set, tmp_path, no_training):
    face = write_variant(tmp_path / "face_v0", {"face_landmark": model_path("face_landmark")}, "face_v0",
                         {"command": "test"}).parent
    hands = write_variant(tmp_path / "hands_v0", {"hand_landmark": model_path("hand_landmark_full")}, "hands_v0",
                          {"command": "test"}).parent
    for start, expected in ((face, face / "face_landmark.tflite"), (hands, None)):
        with pytest.raises(Called):
            main(["finetune", "--data", str(sample_face_set), "--out", str(tmp_path / f"from_{start.name}"),
                  "--from", str(start), *QUICK])
        assert no_training[-1][1] == expected


@pytest.mark.parametrize("text, words", [
    ('{"module": "face_mesh", "epochs": 2', "job.json: not valid JSON"),
    ('["face_mesh"]', "expected a JSON object (a job config of FineTuneConfig fields)"),
    ('{"module": "face_mesh", "epoch": 2}', "unknown field 'epoch'"),
    ('{"module": "face_mesh", "learning_rate": -1}', "field 'learning_rate': Input should be greater than 0"),
    ('{"module": "face", "epochs": 2}', "field 'module'"),
])
def test_a_bad_job_json_is_one_line_naming_the_field_and_writes_nothing(sample_face_set, tmp_path, capsys, text, words,
                                                                           no_training):
    job_file = tmp_path / "job.json"
    job_file.write_text(text)
    out = tmp_path / "variant"
    assert main(["finetune", "--config", str(job_file), "--data", str(sample_face_set), "--out", str(out)]) == 2
    assert words in one_line_error(capsys)
    assert not no_training and sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


@pytest.mark.parametrize("extra, words", [
    ([], "--data is required"),
    (["--data", "set.tfrecord", "--loss-weight", "teeth=1"], "loss_weights"),
    (["--data", "set.tfrecord", "--loss-weight", "teacher=-1"], "weights must be finite and >= 0"),
])
def test_missing_data_and_bad_loss_weights_are_refused_by_name(tmp_path, capsys, extra, words, no_training):
    assert main(["finetune", "--module", "face_mesh", "--out", str(tmp_path / "v"), *extra]) == 2
    assert words in one_line_error(capsys)
    assert not no_training


@pytest.mark.parametrize("option, value, expected", [
    ("--loss-weight", "teacher", "NAME=VALUE such as teacher=2.0"), ("--validation-split", "1",
                                                                    "a number between 0 and 1"),
    ("--lora-rank", "0", "an integer >= 1"), ("--gradient-clip", "off", "a number > 0"),
])
def test_bad_option_values_are_refused_by_name(tmp_path, capsys, option, value, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--module", "face_mesh", "--data", "set", "--out", str(tmp_path / "v"), option, value])
    assert exit_info.value.code == 2
    assert f"error: argument {option}: expected {expected}" in capsys.readouterr().err


def test_an_out_folder_holding_a_users_file_is_refused_before_training(sample_face_set, tmp_path, capsys, no_training):
    out = tmp_path / "my_models"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["finetune", "--data", str(sample_face_set), "--out", str(out), *QUICK]) == 2
    assert "holds files that are not a holistic-lab variant" in one_line_error(capsys)
    assert not no_training and not (tmp_path / "my_models.checkpoints").exists()
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_out_may_not_be_the_from_variant_nor_the_checkpoint_dir(sample_face_set, tmp_path, capsys, no_training):
    face = write_variant(tmp_path / "face_v0", {"face_landmark": model_path("face_landmark")}, "face_v0",
                         {"command": "test"}).parent
    assert main(["finetune", "--data", str(sample_face_set), "--out", str(face), "--from", str(face), *QUICK]) == 2
    assert "--out" in one_line_error(capsys)
    out = tmp_path / "v"
    assert main(["finetune", "--data", str(sample_face_set), "--out", str(out), "--checkpoint-dir", str(out),
                 *QUICK]) == 2
    assert "--checkpoint-dir" in one_line_error(capsys)
    assert not no_training


def test_the_command_line_loads_no_keras_until_a_command_needs_it():
    code = "import sys; from holistic_lab.cli import build_parser; build_parser(); print(sorted({'keras', " \
           "'tensorflow'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_an_unknown_module_is_refused_by_name(tmp_path, capsys, no_training):
    assert main(["finetune", "--module", "hand", "--data", "set", "--out", str(tmp_path / "v")]) == 2
    assert "field 'module'" in one_line_error(capsys) and not no_training


def test_every_job_field_has_an_option(tmp_path, capsys, no_training):
    """Each FineTuneConfig field can be given on the command line; the trainer refuses, by name,
    what it cannot do (a classification job's data that is no folder of class folders, more local
    workers than the bound) before any training."""
    from holistic_lab.cli import FINETUNE_FIELDS
    from holistic_lab.train import FineTuneConfig

    assert set(FINETUNE_FIELDS.values()) | {"loss_weights"} == set(FineTuneConfig.model_fields)
    base = ["finetune", "--module", "hands", "--data", "set.tfrecord", "--out", str(tmp_path / "v")]
    assert main([*base, "--task-type", "classification", "--num-classes", "2", "--class-names", "a,b"]) == 2
    assert "not a folder of class folders" in one_line_error(capsys)
    assert main([*base, "--distributed-workers", "99"]) == 2   # more local workers than the bound
    assert "distributed_workers: 99 local workers" in one_line_error(capsys)
    job = tmp_path / "job.json"
    job.write_text('{"loss_weights": "oops"}')
    assert main([*base, "--config", str(job), "--loss-weight", "teacher=1"]) == 2
    assert "'loss_weights'" in one_line_error(capsys)
    assert not no_training
