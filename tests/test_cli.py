"""The holistic-lab command line."""
import os
import shutil

import numpy as np
import pytest

from holistic_lab.cli import main
from holistic_lab.datasets import SAMPLES_DIR
from holistic_lab.result import load_results


def test_info_lists_the_shipped_models(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "mediapipe                0.10.21" in out and "hand_recrop" in out


def test_label_writes_npz_and_reports_errors(fixtures, tmp_path, capsys):
    out = tmp_path / "labels.npz"
    assert main(["label", str(fixtures / "coco" / "000000040083.jpg"), "--out", str(out), "--quiet"]) == 0
    names, results = load_results(out)
    assert len(names) == 1 and results[0].present["pose"]
    assert main(["label", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "input not found" in capsys.readouterr().err


# --- outputs: nothing the user has is lost, every refusal is one line naming the argument -------


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def photo(tmp_path):
    return shutil.copy(SAMPLES_DIR / "astronaut.png", tmp_path / "photo.png")


def test_run_never_replaces_its_input_or_a_file_it_did_not_make(photo, tmp_path, capsys):
    before = photo.read_bytes()
    for out in (photo, tmp_path / "photo.png.npz"):
        if out != photo:
            out.symlink_to(photo)  # the input under another name
        assert main(["run", str(photo), "--out", str(out), "--overwrite"]) == 2
        assert "is also an input of this run" in _error(capsys)
    notes, unrelated = tmp_path / "notes.txt", tmp_path / "unrelated.npz"
    notes.write_text("my notes")
    np.savez(unrelated, weights=np.arange(3))
    kept = {path: path.read_bytes() for path in (notes, unrelated)}
    for out in kept:
        assert main(["run", str(photo), "--out", str(out)]) == 2
        assert f"--out {out} already exists and is not a holistic-lab results .npz" in _error(capsys)
    assert main(["run", str(photo), "--out", str(tmp_path / "result.jpg")]) == 2
    assert "result.jpg: a results file must end in .npz" in _error(capsys)
    assert photo.read_bytes() == before and all(path.read_bytes() == data for path, data in kept.items())
    assert main(["run", str(photo), "--out", str(unrelated), "--overwrite"]) == 0  # asked for: replaced
    assert load_results(unrelated)[0] == [str(photo)]
    assert main(["run", str(photo), "--out", str(unrelated)]) == 0  # now a results file: replaced freely


def test_a_read_only_output_folder_is_refused_before_the_work(photo, read_only_folder, capsys):
    assert main(["run", str(photo), "--out", str(read_only_folder / "out.npz")]) == 2
    assert "cannot write in" in _error(capsys)
    assert main(["label", str(photo), "--out", str(read_only_folder / "labels.npz"), "--quiet"]) == 2
    assert "cannot write in" in _error(capsys)
    assert main(["augment", str(SAMPLES_DIR / "teacher_labels.npz"), "--out", str(read_only_folder / "aug")]) == 2
    assert "cannot write in" in _error(capsys)


def test_an_os_error_on_an_output_is_one_line_naming_the_path(photo, tmp_path, capsys):
    too_long = tmp_path / ("x" * 300 + ".npz")
    assert main(["run", str(photo), "--out", str(too_long)]) == 1
    assert "File name too long" in _error(capsys)


def test_outputs_of_the_wrong_kind_are_one_line_errors(photo, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for command in (["convert", "hand_recrop"], ["augment", str(SAMPLES_DIR / "teacher_labels.npz")]):
        assert main(command + ["--out", str(notes)]) == 2
        assert f"{notes} is a file; expected a folder" in _error(capsys)
    assert main(["label", str(photo), "--out", str(notes), "--quiet"]) == 2
    assert "notes.txt already exists and is not a holistic-lab results .npz" in _error(capsys)
    labels = SAMPLES_DIR / "teacher_labels.npz"
    assert main(["export-coco", str(labels), "--out", str(notes)]) == 2
    assert "notes.txt already exists and is not a COCO-WholeBody JSON holistic-lab wrote" in _error(capsys)
    assert notes.read_text() == "my notes"
    copy = shutil.copy(labels, tmp_path / "labels.npz")
    assert main(["export-coco", str(copy), "--out", str(copy), "--overwrite"]) == 2
    assert "is also an input of this run" in _error(capsys)
    assert main(["export-coco", str(copy), "--out", str(tmp_path / "coco.json")]) == 0
    assert main(["export-coco", str(copy), "--out", str(tmp_path / "coco.json")]) == 0  # its own file: replaced


@pytest.mark.parametrize("command, option, value, expected", [
    (["augment", "labels.npz", "--out", "x"], "--seed", "-1", "an integer >= 0"),
    (["augment", "labels.npz", "--out", "x"], "--copies", "0", "an integer >= 1"),
    (["run", "photo.png", "--out", "x.npz"], "--threads", "two", f"an integer from 1 to {os.cpu_count()}"),
    (["run", "photo.png", "--out", "x.npz"], "--threads", "99999999", f"an integer from 1 to {os.cpu_count()}"),
    (["label", "photo.png", "--out", "x.npz"], "--save-every", "nan", "a number > 0"),
    (["to-tfrecord", "a.json", "--out", "x.tfrecord"], "--shard-size", "-5", "an integer >= 1"),
])
def test_numeric_options_are_refused_by_name(command, option, value, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(command + [option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: expected {expected}" in err and f"got '{value}'" in err


def test_augment_copies_are_bounded_and_a_hash_in_an_image_name_is_not_a_video_frame(tmp_path, capsys):
    from holistic_lab.augment.files import augment_labelled_files
    from holistic_lab.datasets import sample_labels
    from holistic_lab.result import save_results

    image = shutil.copy(SAMPLES_DIR / "astronaut.png", tmp_path / "a#1.png")
    labels = save_results(tmp_path / "labels.npz", [sample_labels("astronaut")], [str(image)])
    with pytest.raises(ValueError, match="copies must be from 1 to 1000, got 100000000"):
        augment_labelled_files(labels, tmp_path / "aug", copies=100_000_000)
    out, skipped = augment_labelled_files(labels, tmp_path / "aug", preset_name="light", copies=1)
    assert skipped == [] and len(load_results(out)[0]) == 1


def test_deeply_nested_json_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["to-tfrecord", str(deep), "--out", str(tmp_path / "x.tfrecord")]) == 2
    assert "deep.json: JSON nested too deeply" in _error(capsys)
