"""The fine-tuning job API's classification task: `holistic-lab finetune --task-type classification`
trains a gesture head from class folders into a variant, and refuses, by field, what it cannot do."""
from __future__ import annotations

import shutil

import pytest

from holistic_lab import datasets
from holistic_lab.cli import main
from holistic_lab.gestures import GestureClassifier


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("holistic-lab finetune: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("gesture_job")
    crops = datasets.hagrid_crops()
    for label in ("palm", "fist"):
        (root / label).mkdir()
        for path, _ in [item for item in crops if item[1] == label][:6]:
            shutil.copy(path, root / label / path.name)
    return root


def test_a_classification_job_writes_a_gesture_variant(class_folders, tmp_path, capsys):
    out = tmp_path / "v"
    argv = ["finetune", "--task-type", "classification", "--module", "hands", "--data", str(class_folders),
            "--num-classes", "2", "--class-names", "fist,palm", "--epochs", "2", "--validation-split", "0.34",
            "--checkpoint-dir", str(tmp_path / "ck"), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "validation accuracy" in capsys.readouterr().out
    classifier = GestureClassifier.load(out)
    assert classifier.labels == ("fist", "palm")
    assert classifier.manifest["made_by"]["epochs"] == 2
    from holistic_lab.serve.jobs_api import read_metrics  # what the job API's /metrics answers for this job

    metrics = read_metrics(tmp_path / "ck")
    assert metrics["epoch"] == 2 and metrics["history"]["epoch"] == [1, 2]
    assert all(0 < value for value in metrics["history"]["loss"] + metrics["history"]["val_loss"])


@pytest.mark.parametrize("extra, field", [
    (["--module", "face_mesh"], "module"),
    (["--lora-rank", "4"], "lora_rank"),
    (["--no-freeze-backbone"], "freeze_backbone"),
    (["--num-classes", "3"], "num_classes"),
])
def test_what_a_gesture_head_cannot_do_is_refused_by_field(class_folders, tmp_path, capsys, extra, field):
    argv = ["finetune", "--task-type", "classification", "--module", "hands", "--data", str(class_folders),
            "--num-classes", "2", "--out", str(tmp_path / "v"), "--no-progress", *extra]
    assert main(argv) == 2
    assert field in one_line_error(capsys)
    assert not (tmp_path / "v").exists()
