"""`holistic-lab finetune` against a hostile user: absurd numbers, a job JSON that never ends,
a run refused late, two runs on the same folders. Each answer is one line, nothing hangs, and
nothing is left behind or clobbered."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")

from holistic_lab.cli import main  # noqa: E402
from holistic_lab.files import output_lock  # noqa: E402
from holistic_lab.train.config import FineTuneConfig, read_job_fields  # noqa: E402

HUGE = "1" + "0" * 400   # an integer no float (and no TensorFlow int64) holds
QUICK = ["--module", "face_mesh", "--epochs", "1", "--batch-size", "2", "--validation-split", "0.5",
         "--steps-per-epoch", "1", "--no-progress"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert err.startswith("holistic-lab finetune: error: ")
    return err


@pytest.mark.parametrize("option", ["--epochs", "--batch-size", "--lora-rank", "--steps-per-epoch", "--seed"])
def test_a_huge_integer_option_is_refused_by_name_not_an_overflow_traceback(sample_face_set, tmp_path, capsys, option):
    argv = ["finetune", "--data", str(sample_face_set), "--out", str(tmp_path / "v"), "--module", "face_mesh",
            option, HUGE]
    try:
        code = main(argv)
    except SystemExit as stop:   # argparse's refusal of the option
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and option.lstrip("-").replace("-", "_") in err.replace("-", "_")
    assert not (tmp_path / "v").exists() and not (tmp_path / "v.checkpoints").exists()


@pytest.mark.parametrize("field", ["epochs", "batch_size", "lora_rank"])
def test_a_job_json_with_an_absurd_count_is_refused_before_training(sample_face_set, tmp_path, capsys, field):
    """A batch of 10**400 crops used to make 0 steps per epoch and hang the run; a LoRA rank of
    10**400 would allocate adapters no memory holds."""
    job = tmp_path / "job.json"
    job.write_text(f'{{"dataset_path": "{sample_face_set}", "module": "face_mesh", "{field}": {HUGE}}}')
    assert main(["finetune", "--config", str(job), "--out", str(tmp_path / "v"), "--no-progress"]) == 2
    assert f"field {field!r}" in one_line_error(capsys)
    assert not (tmp_path / "v.checkpoints").exists()


def test_a_job_json_that_never_ends_is_refused_without_reading_it_all(tmp_path):
    """/dev/zero or a runaway file would fill memory: a job config is a few hundred bytes."""
    job = tmp_path / "job.json"
    job.write_text('{"epochs": 1' + " " * (4 << 20) + "}")
    with pytest.raises(ValueError, match="job.json.*too large"):
        read_job_fields(job)


def test_a_huge_bad_value_is_not_echoed_whole_in_the_error(sample_face_set, tmp_path, capsys):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"dataset_path": str(sample_face_set), "module": "face_mesh", "preset": "x" * 100_000}))
    assert main(["finetune", "--config", str(job), "--out", str(tmp_path / "v")]) == 2
    err = one_line_error(capsys)
    assert "field 'preset'" in err and len(err) < 2000


def test_a_set_without_the_modules_points_is_refused_before_the_checkpoint_folder_is_made(sample_face_set, tmp_path,
                                                                                         capsys):
    """The sample portraits have no hand labels: refused by name, with no checkpoint folder left behind."""
    argv = ["finetune", "--data", str(sample_face_set), "--out", str(tmp_path / "v"), *QUICK, "--module", "hands"]
    assert main(argv) == 2
    assert "0 training and 0 validation hands crops" in one_line_error(capsys)
    assert not (tmp_path / "v.checkpoints").exists() and not (tmp_path / "v").exists()


@pytest.mark.parametrize("held", ["checkpoints", "out"])
def test_a_second_run_on_the_same_folders_is_refused_at_once(sample_face_set, tmp_path, capsys, held):
    """Another run writing the same checkpoint folder (or variant) would mix its backup, log and
    best weights with this one's, or replace its variant an hour later: refused before training."""
    out, checkpoints = tmp_path / "v", tmp_path / "runs"
    busy = checkpoints if held == "checkpoints" else out
    argv = ["finetune", "--data", str(sample_face_set), "--out", str(out), "--checkpoint-dir", str(checkpoints), *QUICK]
    with output_lock(busy):   # the other run
        assert main(argv) == 2
    assert "another run" in one_line_error(capsys)
    assert not out.exists() and not (checkpoints / "log.csv").exists()


def test_the_config_refuses_absurd_counts_directly():
    with pytest.raises(ValueError, match="batch_size"):
        FineTuneConfig(dataset_path="x", module="face_mesh", batch_size=10**400, checkpoint_dir="/nonexistent/ck")


def test_resuming_an_interrupted_run_with_another_seed_is_refused(sample_face_set, tmp_path, monkeypatch):
    """The seed chooses the validation images: resuming with another one would train on images
    the earlier epochs validated on, and pick the best epoch by losses of two different splits."""
    import keras

    from holistic_lab.train.loop import finetune

    config = FineTuneConfig(dataset_path=str(sample_face_set), module="face_mesh", epochs=3, batch_size=2,
                            validation_split=0.5, checkpoint_dir=str(tmp_path / "runs"))
    logged = keras.callbacks.CSVLogger.on_epoch_end

    def interrupted(self, epoch, logs=None):   # the first epoch is backed up and logged, then the run is killed
        logged(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, progress=False, seed=0, steps_per_epoch=1)
    monkeypatch.undo()
    assert (tmp_path / "runs" / "backup").is_dir()
    with pytest.raises(ValueError, match=r"unfinished run.*seed differ"):
        finetune(config, progress=False, seed=7, steps_per_epoch=1)
