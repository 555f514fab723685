"""`holistic-lab gestures train|eval|predict` against a hostile user: tampered classifier folders,
outputs inside the inputs, symbolic links, a --from that is no variant, two runs on one --out.
Each answer is one line naming the file or option, nothing of the user's is replaced, and a run
that would be refused is refused before any training."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys

from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from holistic_lab.cli import main  # noqa: E402
from holistic_lab.files import output_lock  # noqa: E402
from holistic_lab.gestures import GestureClassifier  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.variants import write_variant  # noqa: E402

NESTED_JSON = "[" * 100_000 + "]" * 100_000   # deeper than Python's recursion limit
QUICK = ["--views", "1", "--epochs", "2", "--no-progress"]


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-2000:]
    assert err.startswith(f"holistic-lab gestures {command}: error: "), err
    return err


@pytest.fixture(scope="module")
def crops(crops_by_class) -> dict[str, list]:
    return crops_by_class


def class_tree(root, crops, counts: dict[str, int]):
    for label, count in counts.items():
        (root / label).mkdir(parents=True)
        for path in crops[label][:count]:
            shutil.copy(path, root / label / path.name)
    return root


@pytest.fixture(scope="module")
def data(crops, tmp_path_factory):
    return class_tree(tmp_path_factory.mktemp("gestures") / "data", crops, {"fist": 5, "like": 5, "palm": 5})


@pytest.fixture(scope="module")
def trained_variant(data, tmp_path_factory):
    """One tiny training through the command line (3 classes x 5 crops, one view, two epochs)."""
    out = tmp_path_factory.mktemp("trained") / "v"
    assert main(["gestures", "train", "--data", str(data), "--out", str(out), *QUICK]) == 0
    return out


@pytest.fixture
def classifier_copy(trained_variant, tmp_path):
    return shutil.copytree(trained_variant / "gesture", tmp_path / "classifier")


def edit_json(path, edit):
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def reseal(folder):
    """Make gesture.json name the current model.tflite's checksum, as a careless edit would."""
    digest = hashlib.sha256((folder / "model.tflite").read_bytes()).hexdigest()
    edit_json(folder / "gesture.json", lambda m: m.update(sha256=digest))


def first_crop(data):
    return str(sorted((data / "palm").iterdir())[0])


# --- a tampered or foreign classifier ---------------------------------------------------------


@pytest.mark.parametrize("labels, message", [
    (["fist", "like"], "lists 2 labels but .*model.tflite gives 3 class probabilities"),
    (["fist", "like", "palm", "extra"], "lists 4 labels but .*model.tflite gives 3 class probabilities"),
])
def test_labels_edited_to_another_count_are_refused_not_an_index_error(classifier_copy, data, capsys, labels,
                                                                       message):
    """Fewer labels than probabilities crashed predict with IndexError; more were accepted and
    eval reported a class the model can never predict."""
    edit_json(classifier_copy / "gesture.json", lambda m: m.update(labels=labels))
    assert main(["gestures", "predict", "--model", str(classifier_copy), first_crop(data)]) == 2
    err = one_line_error(capsys, "predict")
    assert "gesture.json" in err and re.search(message, err)


@pytest.mark.parametrize("model", ["hand_landmark_full", "face_landmark"])
def test_another_valid_tflite_as_the_classifiers_model_is_refused_by_name(classifier_copy, data, capsys, model):
    """The shipped hand model (no class output) crashed classify_crop with IndexError; the face
    model failed with TFLite's 'Dimension mismatch', naming no file."""
    shutil.copy(model_path(model), classifier_copy / "model.tflite")
    reseal(classifier_copy)
    for command in (["predict", first_crop(data)], ["eval", "--data", str(data), "--no-progress"]):
        assert main(["gestures", command[0], "--model", str(classifier_copy), *command[1:]]) == 2
        err = one_line_error(capsys, command[0])
        assert "model.tflite: outputs of [" in err and "expected the hand model's [63, 1, 1, 63]" in err


@pytest.mark.parametrize("labels", [["fist", "li\nke", "palm"], ["fist", "like", "palm\t"], ["fist", "a/b", "c"]])
def test_labels_that_break_predicts_tab_separated_lines_are_refused(classifier_copy, data, capsys, labels):
    edit_json(classifier_copy / "gesture.json", lambda m: m.update(labels=labels))
    assert main(["gestures", "predict", "--model", str(classifier_copy), first_crop(data)]) == 2
    assert "'labels' must list at least two distinct class names" in one_line_error(capsys, "predict")
    assert capsys.readouterr().out == ""


def test_a_deeply_nested_gesture_json_is_one_line_not_a_recursion_error(tmp_path, capsys):
    folder = tmp_path / "classifier"
    folder.mkdir()
    (folder / "gesture.json").write_text(NESTED_JSON)
    (folder / "model.tflite").write_bytes(b"x")
    assert main(["gestures", "predict", "--model", str(folder), str(tmp_path / "x.jpg")]) == 2
    assert "gesture.json: JSON nested too deeply" in one_line_error(capsys, "predict")


def test_a_deeply_nested_variant_manifest_is_one_line_not_a_recursion_error(tmp_path, data, capsys):
    variant = tmp_path / "v"
    variant.mkdir()
    (variant / "manifest.json").write_text(NESTED_JSON)
    assert main(["gestures", "eval", "--model", str(variant), "--data", str(data), "--no-progress"]) == 2
    assert "manifest.json: JSON nested too deeply" in one_line_error(capsys, "eval")
    # as --out: not an earlier variant, so refused as the user's files (it was a RecursionError)
    assert main(["gestures", "train", "--data", str(data), "--out", str(variant), *QUICK]) == 2
    assert "holds files that are not a holistic-lab variant" in one_line_error(capsys, "train")
    assert (variant / "manifest.json").read_text() == NESTED_JSON


def test_predict_names_a_non_utf8_image_on_a_strict_utf8_terminal(trained_variant, data, tmp_path, monkeypatch):
    """The path was printed raw: a name with a byte that is not UTF-8 raised UnicodeEncodeError
    on a terminal whose locale is en_US.UTF-8 (strict), after the work was done."""
    image = tmp_path / (b"hand\xff.jpg").decode("utf-8", "surrogateescape")
    shutil.copy(first_crop(data), image)
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["gestures", "predict", "--model", str(trained_variant), str(image)]) == 0
    stdout.flush()
    line = stdout.buffer.getvalue().decode("utf-8")
    assert "hand\\xff.jpg\t" in line and len(line.split("\t")) == 3


# --- refused before training -----------------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """A refusal that comes after training is a bug here: training fails the test."""
    def train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(GestureClassifier, "train", train)


def test_from_a_tflite_or_plain_folder_is_refused_before_training(data, tmp_path, capsys, no_training):
    """--from hand_landmark_full.tflite trained to the end, then failed in save_variant."""
    for start in (model_path("hand_landmark_full"), data):
        assert main(["gestures", "train", "--data", str(data), "--out", str(tmp_path / "v"), "--from", str(start),
                     *QUICK]) == 2
        assert "manifest.json: no manifest" in one_line_error(capsys, "train")
    assert not (tmp_path / "v").exists()


def test_out_equal_to_from_is_refused_like_finetune(data, tmp_path, capsys, no_training):
    variant = tmp_path / "hands"
    write_variant(variant, {"hand_landmark": model_path("hand_landmark_full")}, "hands", {"command": "test"})
    before = (variant / "manifest.json").read_text()
    assert main(["gestures", "train", "--data", str(data), "--out", str(variant), "--from", str(variant),
                 "--overwrite", *QUICK]) == 2
    assert "is also --from" in one_line_error(capsys, "train")
    assert (variant / "manifest.json").read_text() == before


@pytest.mark.parametrize("where", ["data", "data/fist", "data/new", "mine", "mine/sub"])
def test_out_inside_the_gesture_data_is_refused_even_with_overwrite(crops, tmp_path, capsys, no_training, where):
    """--out data (with --overwrite) added gesture/ to the data as a class folder with no images,
    breaking the next run; --out data/fist wrote a manifest into a class folder."""
    data = class_tree(tmp_path / "data", crops, {"fist": 4, "like": 4})
    mine = class_tree(tmp_path / "mine_root", crops, {"palm": 4}) / "palm"
    shutil.move(mine, tmp_path / "mine")
    (tmp_path / "mine" / "sub").mkdir()
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    assert main(["gestures", "train", "--data", str(data), "--add-class", f"mine={tmp_path / 'mine'}",
                 "--out", str(tmp_path / where), "--overwrite", *QUICK]) == 2
    assert "write the variant outside the gesture data" in one_line_error(capsys, "train")
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before


def test_a_gesture_symlink_in_out_is_refused_even_with_overwrite(classifier_copy, data, tmp_path, capsys,
                                                                  no_training):
    """With --overwrite, save() wrote the new classifier through out/gesture -> another classifier,
    replacing its files, and only then write_variant refused the link."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "gesture").symlink_to(classifier_copy)
    before = {path.name: path.read_bytes() for path in classifier_copy.iterdir()}
    assert main(["gestures", "train", "--data", str(data), "--out", str(out), "--overwrite", *QUICK]) == 2
    assert "gesture/ is a symbolic link" in one_line_error(capsys, "train")
    assert {path.name: path.read_bytes() for path in classifier_copy.iterdir()} == before


def test_save_variant_refuses_a_gesture_symlink_before_writing_through_it(classifier_copy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "gesture").symlink_to(classifier_copy)
    before = {path.name: path.read_bytes() for path in classifier_copy.iterdir()}
    with pytest.raises(ValueError, match="gesture/ is a symbolic link"):
        GestureClassifier(["a", "b"], b"another model").save_variant(out, {"command": "test"}, overwrite=True)
    assert {path.name: path.read_bytes() for path in classifier_copy.iterdir()} == before


def test_a_second_run_on_the_same_out_is_refused_at_once(data, tmp_path, capsys, no_training):
    """Two runs trained side by side and the last to finish replaced the other's variant (its
    manifest could name one run's command over the other's classifier)."""
    out = tmp_path / "v"
    with output_lock(out):   # the other run
        assert main(["gestures", "train", "--data", str(data), "--out", str(out), *QUICK]) == 2
    assert "another run" in one_line_error(capsys, "train")
    assert not out.exists()


def test_many_classes_too_small_to_split_give_one_short_line(crops, tmp_path, capsys):
    """3000 one-image classes gave a 26 KB error line listing every one."""
    data = tmp_path / "data"
    for i in range(300):
        (data / f"c{i}").mkdir(parents=True)
        shutil.copy(crops["fist"][0], data / f"c{i}" / "x.jpg")
    assert main(["gestures", "train", "--data", str(data), "--out", str(tmp_path / "v"), *QUICK]) == 2
    err = one_line_error(capsys, "train")
    assert "and 290 more have too few images for a validation split of 0.15" in err and len(err) < 500


def test_out_a_symlink_to_nowhere_is_refused_before_training(data, tmp_path, capsys, no_training):
    """It trained to the end, then failed with 'File exists' (mkdir on the link), leaving the
    link target's parent folder created."""
    out = tmp_path / "v"
    out.symlink_to(tmp_path / "nowhere" / "deeper")
    assert main(["gestures", "train", "--data", str(data), "--out", str(out), *QUICK]) == 2
    assert "is a symbolic link to" in one_line_error(capsys, "train")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("split", ["0.95", "0.99"])
def test_a_split_that_leaves_a_class_nothing_to_train_on_is_named(data, tmp_path, capsys, split):
    """It said 'no items to encode' after loading and converting the hand model (or, with one
    class emptied, failed in the fit after every crop was encoded)."""
    assert main(["gestures", "train", "--data", str(data), "--out", str(tmp_path / "v"), "--validation-split", split,
                 *QUICK]) == 2
    err = one_line_error(capsys, "train")
    assert "have no training images left after a validation split of" in err and "'fist'" in err
    assert not (tmp_path / "v").exists()


def test_eval_scores_a_trained_classifier_and_refuses_unknown_classes(trained_variant, data, capsys, tmp_path):
    assert main(["gestures", "eval", "--model", str(trained_variant / "gesture"), "--data", str(data),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy ([0-9.]+) \[95% interval ([0-9.]+), ([0-9.]+)\] on 15 images", out).group(1))
    assert 0 <= accuracy <= 1 and "true/predicted" in out
    palm = Path(first_crop(data))
    other = class_tree(tmp_path / "other", {"rock": [palm], "palm": [palm]}, {"rock": 1, "palm": 1})
    assert main(["gestures", "eval", "--model", str(trained_variant / "gesture"), "--data", str(other),
                 "--no-progress"]) == 2
    assert "classes ['rock'] the classifier does not know" in one_line_error(capsys, "eval")
