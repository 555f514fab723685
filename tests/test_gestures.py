"""Gestures (chapter 06): class folders checked, the head on the real hand model, a saved
classifier read back, the cascade's `gestures`, variants carrying one, the landmark baseline.

Real HaGRID crops and photographs throughout (skipped without the fixture packs). One small
classifier is trained for the whole module (3 classes x 6 crops, 1 view, 2 epochs): its labels
are not expected to be right, only to come back identically from every path that reads it.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from holistic_lab import datasets
from holistic_lab.gestures import GestureClassifier, add_class, class_items, labels_of, parse_classes, split_items
from holistic_lab.gestures.classes import HAGRID_NAMED
from holistic_lab.gestures.evaluate import confusion_matrix, per_class_f1
from holistic_lab.gestures.landmark_mlp import build_mlp, landmark_features, mlp_probabilities
from holistic_lab.files import sha256_file
from holistic_lab.images import load_rgb
from holistic_lab.mediapipe_models import model_path
from holistic_lab.pipeline import HolisticPipeline
from holistic_lab.variants import check_variant_output, read_variant, write_variant

CLASSES = ("palm", "fist", "peace")
PER_CLASS = 6
HANDS = ("left_hand", "right_hand")
MADE_BY = {"command": "holistic-lab test", "config": {}}




@pytest.fixture(scope="module")
def trained(crops_by_class, tmp_path_factory) -> GestureClassifier:
    """The module's one classifier, trained and saved (its folder: `trained.folder`)."""
    items = [(path, label) for label in CLASSES for path in crops_by_class[label][:PER_CLASS]]
    classifier = GestureClassifier.train(items, views=1, epochs=2, progress=False)
    classifier.save(tmp_path_factory.mktemp("gesture") / "classifier")
    return classifier


@pytest.fixture(scope="module")
def classifier_folder(trained):
    """The trained classifier's folder (`trained.folder` moves when a test saves it elsewhere)."""
    return trained.folder


@pytest.fixture
def unsaved(trained) -> GestureClassifier:
    """A copy of the trained classifier that a test may save anywhere."""
    return GestureClassifier(trained.labels, trained.model, trained.manifest)


@pytest.fixture
def saved_copy(classifier_folder, tmp_path):
    return shutil.copytree(classifier_folder, tmp_path / "classifier")


def _class_tree(root, crops_by_class, counts: dict[str, int]):
    """root/<class>/<n>.jpg: copies of real HaGRID crops."""
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i, path in enumerate(crops_by_class[name][:count]):
            shutil.copy(path, root / name / f"{name}_{i}.jpg")
    return root


# --- class folders ------------------------------------------------------------------------------


def test_class_folders_become_labelled_items_in_the_order_asked(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 3, "fist": 2, "peace": 1})
    items = class_items(root, {"fist": "closed", "palm": "open"})
    assert labels_of(items) == ("closed", "open")
    assert [(path.parent.name, label) for path, label in items] == [("fist", "closed")] * 2 + [("palm", "open")] * 3
    assert labels_of(class_items(root)) == ("fist", "palm", "peace")   # every sub-folder, by name
    assert labels_of(class_items(root, ["peace", "palm"])) == ("peace", "palm")


def test_real_hagrid_folder_gives_the_eight_named_classes(crops_by_class):
    root = crops_by_class["palm"][0].parent.parent
    items = class_items(root, parse_classes("hagrid8"))
    assert sorted(labels_of(items)) == sorted(HAGRID_NAMED.values()) and len(labels_of(items)) == 8
    assert len(items) == 8 * 200


@pytest.mark.parametrize("classes, message", [
    ({"palm": "open", "pinch": "pinch"}, r"no class folder 'pinch'; it has empty, fist, palm"),
    ({"palm": "open", "fist": "open"}, r"class name 'open' given twice"),
    ({"palm": "Open", "fist": "open"}, r"class name 'open' given twice \(as 'Open'\)"),
    ({"palm": "open hand", "fist": "closed"}, r"class name 'open hand' must be 1-64 letters"),
    ({"palm": "../up", "fist": "closed"}, r"class name '../up' must be"),
    ({"palm": "", "fist": "closed"}, r"class name '' must be"),
    (["palm"], r"at least two classes, got \['palm'\]"),
    (["palm", "empty"], r"class 'empty': .*data/empty holds no images"),
])
def test_bad_class_choices_are_refused_naming_the_folder_and_class(tmp_path, crops_by_class, classes, message):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 2, "fist": 2})
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=message) as error:
        class_items(root, classes)
    assert "data" in str(error.value)


def test_hidden_entries_other_files_and_sub_folders_are_not_examples(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 2, "fist": 1})
    (root / ".ipynb_checkpoints").mkdir()   # Jupyter leaves these beside a user's folders
    (root / "palm" / ".hidden.jpg").write_bytes(b"not an image")
    (root / "palm" / "notes.txt").write_text("taken on Monday")
    (root / "palm" / "rejected").mkdir()
    shutil.copy(crops_by_class["palm"][5], root / "palm" / "rejected" / "blurred.jpg")
    shutil.copy(crops_by_class["palm"][6], root / "palm" / "UPPER.JPG")
    items = class_items(root)
    assert labels_of(items) == ("fist", "palm")
    assert sorted(path.name for path, label in items if label == "palm") == ["UPPER.JPG", "palm_0.jpg", "palm_1.jpg"]


def test_folders_differing_only_in_case_are_one_class_twice(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 1, "fist": 1})
    (root / "palm").rename(root / "Fist")
    with pytest.raises(ValueError, match=r"data: class name 'fist' given twice \(as 'Fist'\)"):
        class_items(root)


def test_a_jpg_that_is_not_an_image_is_named_before_any_training(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 2, "fist": 2})
    (root / "fist" / "broken.jpg").write_bytes(b"this is a text file saved as .jpg")
    with pytest.raises(ValueError, match=r"class 'fist': .*fist/broken.jpg is not an image"):
        class_items(root)
    with pytest.raises(ValueError, match=r"class 'fist': .*fist/broken.jpg is not an image"):
        GestureClassifier.train(root, progress=False)


def test_data_that_is_not_a_folder_is_refused(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"gesture data .*file.jpg is not a folder of class folders"):
        class_items(tmp_path / "file.jpg")
    with pytest.raises(ValueError, match=r"gesture data .*missing is not a folder"):
        class_items(tmp_path / "missing")


def test_add_class_appends_a_users_folder_and_refuses_a_clash_or_an_empty_folder(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 2, "fist": 2})
    items = class_items(root, {"palm": "open", "fist": "closed"})
    mine = _class_tree(tmp_path / "mine", crops_by_class, {"peace": 3}) / "peace"
    added = add_class(items, mine, "pinch")
    assert added[:4] == items and labels_of(added) == ("open", "closed", "pinch")
    assert [label for _, label in added[4:]] == ["pinch"] * 3
    with pytest.raises(ValueError, match=r"new class from .*mine/peace: class name 'open' given twice"):
        add_class(items, mine, "open")
    with pytest.raises(ValueError, match=r"class name 'Closed' given twice \(as 'closed'\)"):
        add_class(items, mine, "Closed")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match=r"class 'pinch': .*nothing holds no images"):
        add_class(items, tmp_path / "nothing", "pinch")
    with pytest.raises(ValueError, match=r"new class 'pinch': .*absent is not a folder of images"):
        add_class(items, tmp_path / "absent", "pinch")
    with pytest.raises(ValueError, match=r"new class from .*mine/peace: class name 'pinch!' must be"):
        add_class(items, mine, "pinch!")


def test_parse_classes_reads_presets_all_and_folder_label_lists():
    assert parse_classes(None) is None and parse_classes("all") is None
    assert parse_classes("hagrid8") == HAGRID_NAMED and parse_classes("hagrid8") is not HAGRID_NAMED
    every = parse_classes("hagrid13")
    assert sorted(every) == sorted(datasets.HAGRID_CLASSES) and len(set(every.values())) == 13
    assert every["palm"] == "open" and every["call"] == "call"
    assert parse_classes("palm:open, fist") == {"palm": "open", "fist": "fist"}
    assert parse_classes("palm:open,fist:closed,none") == {"palm": "open", "fist": "closed", "none": "none"}
    with pytest.raises(ValueError, match=r"--classes: empty entry in 'palm:open,,fist'"):
        parse_classes("palm:open,,fist")
    with pytest.raises(ValueError, match=r"--classes: empty entry in ':open'"):
        parse_classes(":open")
    with pytest.raises(ValueError, match=r"--classes: folder 'palm' named twice"):
        parse_classes("palm:open,palm:stop")


def test_split_is_stratified_seeded_and_keeps_one_photos_hands_together(tmp_path, crops_by_class):
    # HaGRID crops both hands of one photograph into two class folders under one file stem
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    for i in range(10):
        shutil.copy(crops_by_class["palm"][i], root / "a" / f"photo{i}.jpg")
        shutil.copy(crops_by_class["fist"][i], root / "b" / f"photo{i}.jpg")   # the same photograph's other hand
    shutil.copy(crops_by_class["palm"][10], root / "a" / "alone.jpg")
    items = class_items(root)
    splits = {seed: split_items(items, 0.2, seed) for seed in range(5)}
    for train, test in splits.values():
        assert sorted(train + test) == sorted(items)
        assert not {path.stem for path, _ in train} & {path.stem for path, _ in test}
        # 20% of 11 and of 10 is 2 each; a photograph's pair can only go whole, so a class may get one less
        assert {label: sum(1 for _, l in test if l == label) for label in "ab"} in ({"a": 2, "b": 2}, {"a": 2, "b": 1})
    assert splits[0] == split_items(items, 0.2, 0)
    assert len({tuple(test) for _, test in splits.values()}) > 1
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1, got 1.0"):
        split_items(items, 1.0)


def test_split_without_shared_photographs_takes_each_class_exact_share(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 10, "fist": 5, "peace": 20})
    for seed in range(3):
        train, test = split_items(class_items(root), 0.2, seed)
        assert [sum(1 for _, l in test if l == label) for label in ("fist", "palm", "peace")] == [1, 2, 4]
        assert len(train) == 35 - 7


def test_split_of_all_hagrid_crops_never_straddles_a_photograph(crops_by_class):
    items = [(path, label) for label, paths in crops_by_class.items() for path in paths]
    stems = [path.stem for path, _ in items]
    assert len(set(stems)) < len(stems)   # the pack has photographs cropped into two classes
    train, test = split_items(items, 0.2, seed=3)
    assert not {path.stem for path, _ in train} & {path.stem for path, _ in test}
    for label in crops_by_class:
        assert abs(sum(1 for _, l in test if l == label) - 40) <= 2


def test_training_refuses_too_few_images_and_a_missing_hand_model_before_any_work(tmp_path, crops_by_class):
    root = _class_tree(tmp_path / "data", crops_by_class, {"palm": 1, "fist": 6})
    with pytest.raises(ValueError, match=r"classes \['palm'\] have too few images for a validation split of 0.15"):
        GestureClassifier.train(root, progress=False)
    root = _class_tree(tmp_path / "more", crops_by_class, {"palm": 6, "fist": 6})
    with pytest.raises(ValueError, match=r"hand model .*nothing.tflite not found"):
        GestureClassifier.train(root, hand_model=tmp_path / "nothing.tflite", progress=False)


# --- the head on the hand model -----------------------------------------------------------------


def test_attached_head_keeps_the_hand_models_outputs_bit_for_bit(crops_by_class):
    from holistic_lab.convert import tflite_to_keras
    from holistic_lab.gestures.crops import roi_crop
    from holistic_lab.gestures.head import attach_head, build_head, feature_model

    hand = tflite_to_keras(model_path("hand_landmark_full"))
    pooled = feature_model(hand).output_shape[0][-1]
    head = build_head(5, np.random.default_rng(0).normal(size=(20, pooled)).astype(np.float32))
    model = attach_head(hand, head)
    assert model.output_names[-1] == "gesture" and len(model.outputs) == 5
    pipeline = HolisticPipeline()
    for label in CLASSES:
        tensor = roi_crop(pipeline, load_rgb(crops_by_class[label][0])).tensor
        expected = [np.asarray(o) for o in hand(tensor, training=False)]
        outputs = [np.asarray(o) for o in model(tensor, training=False)]
        assert [o.shape for o in outputs[:4]] == [o.shape for o in expected] == [(1, 63), (1, 1), (1, 1), (1, 63)]
        for got, want in zip(outputs[:4], expected):
            assert np.array_equal(got, want)
        probabilities = outputs[4]
        assert probabilities.shape == (1, 5) and (probabilities >= 0).all()
        assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="at least two classes, got 1"):
        build_head(1, np.zeros((4, pooled), np.float32))


# --- saved, loaded ------------------------------------------------------------------------------


def test_a_feature_dead_in_training_does_not_swamp_the_head_on_a_new_crop():
    from holistic_lab.gestures.head import build_head

    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, (12, 6)).astype(np.float32)
    features[:, 2] = 0.0                     # never active on the training crops
    head = build_head(3, features)
    standardise = head.get_layer("gesture_standardise")
    probe = features[:1].copy()
    probe[0, 2] = 1.0                        # active on a crop never seen
    z = np.asarray(standardise(probe))
    assert np.abs(z).max() < 100             # keras's own epsilon would give ~1e7
    assert np.isfinite(np.asarray(head(probe))).all()


def test_item_lists_are_checked_like_folders(crops_by_class):
    items = [(path, "Palm") for path in crops_by_class["palm"][:3]] + [(path, "palm") for path in crops_by_class["fist"][:3]]
    with pytest.raises(ValueError, match="given twice"):
        GestureClassifier.train(items, epochs=1, progress=False)
    with pytest.raises(ValueError, match="class name"):
        GestureClassifier.train([(p, "a/b") for p, _ in items[:3]] + items[3:], epochs=1, progress=False)


def test_trained_classifier_records_how_it_was_made(trained):
    assert trained.labels == CLASSES
    made_by = trained.manifest["made_by"]
    assert made_by["train_images"] == {label: PER_CLASS - 1 for label in CLASSES}   # one each validates
    assert made_by["validation_images"] == 3 and made_by["views"] == 1 and made_by["epochs"] == 2
    assert made_by["hand_model_sha256"] == sha256_file(model_path("hand_landmark_full"))
    assert trained.manifest["training"]["epochs_run"] == 2
    saved = json.loads((trained.folder / "gesture.json").read_text())
    assert saved["labels"] == list(CLASSES) and saved["format"] == "holistic-lab-gesture" and len(saved["sha256"]) == 64
    assert sorted(p.name for p in trained.folder.iterdir()) == ["gesture.json", "model.tflite"]


def test_loaded_classifier_classifies_crops_exactly_as_the_trained_one(trained, crops_by_class):
    loaded = GestureClassifier.load(trained.folder)
    assert loaded.labels == trained.labels and loaded.model == trained.model
    assert loaded.manifest == trained.manifest
    record = trained.training
    from holistic_lab.gestures.crops import roi_crop

    for label in CLASSES:
        for path in crops_by_class[label][PER_CLASS:PER_CLASS + 2]:   # crops it never saw
            rgb = load_rgb(path)
            answer = trained.classify_crop(rgb)
            assert loaded.classify_crop(rgb) == answer
            assert answer[0] in CLASSES and 0.0 < answer[1] <= 1.0
            # the .tflite gives the Keras model's probabilities (the export's check, on a new crop)
            keras_probabilities = np.asarray(record.model(roi_crop(record.pipeline, rgb).tensor, training=False)[4])[0]
            np.testing.assert_allclose(trained.crop_probabilities(rgb), keras_probabilities, atol=1e-4)


def test_classify_crop_needs_a_saved_classifier(unsaved, crops_by_class):
    with pytest.raises(ValueError, match="save the classifier first"):
        unsaved.classify_crop(load_rgb(crops_by_class["palm"][0]))


def _edit_json(path, edit):
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("tamper, message", [
    (lambda f: _edit_json(f / "gesture.json", lambda m: m.update(labels=["palm", "fist"])),
     r"gesture.json: lists 2 labels but .*model.tflite gives 3 class probabilities"),
    (lambda f: _edit_json(f / "gesture.json", lambda m: m.update(labels=["palm", "fist", "peace", "ok"])),
     r"gesture.json: lists 4 labels but .*model.tflite gives 3 class probabilities"),
    (lambda f: _edit_json(f / "gesture.json", lambda m: m.update(labels=["palm", "palm", "fist"])),
     r"gesture.json: 'labels' must list at least two distinct class names"),
    (lambda f: _edit_json(f / "gesture.json", lambda m: m.pop("labels")),
     r"gesture.json: 'labels' must list"),
    (lambda f: _edit_json(f / "gesture.json", lambda m: m.update(version=2)),
     r"gesture.json: not a holistic-lab-gesture file of version 1"),
    (lambda f: (f / "gesture.json").write_text('{"format": "holistic-lab-gesture",'),
     r"gesture.json: not valid JSON"),
    (lambda f: (f / "gesture.json").write_bytes(b"\xff\xfe\x00"),
     r"gesture.json: not valid JSON"),
    (lambda f: (f / "gesture.json").unlink(),
     r"gesture.json: no such file"),
    (lambda f: (f / "model.tflite").write_bytes((f / "model.tflite").read_bytes()[:-8] + bytes(8)),
     r"model.tflite: sha256 [0-9a-f]{64} but gesture.json says [0-9a-f]{64}: changed since"),
    (lambda f: (f / "model.tflite").unlink(),
     r"model.tflite is missing"),
])
def test_a_changed_classifier_folder_is_refused_naming_the_file(saved_copy, tamper, message):
    tamper(saved_copy)
    with pytest.raises(ValueError, match=message):
        GestureClassifier.load(saved_copy).classify_crop(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=message):
        HolisticPipeline(gesture_model=saved_copy)


def test_a_model_file_that_is_not_a_hand_model_with_a_head_is_refused(saved_copy):
    shutil.copy(model_path("face_landmark"), saved_copy / "model.tflite")
    _edit_json(saved_copy / "gesture.json", lambda m: m.update(
        sha256=sha256_file(saved_copy / "model.tflite")))
    with pytest.raises(ValueError, match=r"model.tflite: outputs of \[.*\] values, expected the hand model's "
                                         r"\[63, 1, 1, 63\] then the class probabilities"):
        HolisticPipeline(gesture_model=saved_copy)


def test_saving_through_a_symbolic_link_is_refused(unsaved, tmp_path):
    folder, outside = tmp_path / "classifier", tmp_path / "outside.tflite"
    folder.mkdir()
    outside.write_bytes(b"someone else's file")
    (folder / "model.tflite").symlink_to(outside)
    with pytest.raises(ValueError, match=r"gesture folder .*classifier: model.tflite is a symbolic link; remove it"):
        unsaved.save(folder, overwrite=True)
    assert outside.read_bytes() == b"someone else's file"


def test_saving_beside_a_users_file_is_refused_and_overwrite_keeps_it(unsaved, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match=r"gesture folder .*mine holds files that are not a holistic-lab gesture "
                                         r"classifier; .* --overwrite"):
        unsaved.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    unsaved.save(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "my notes"
    assert GestureClassifier.load(folder).labels == CLASSES
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        unsaved.save(folder / "notes.txt")
    assert (folder / "notes.txt").read_text() == "my notes"


def test_saving_again_over_its_own_classifier_needs_no_overwrite(unsaved, saved_copy):
    before = (saved_copy / "gesture.json").read_text()
    unsaved.save(saved_copy)
    assert (saved_copy / "gesture.json").read_text() == before
    (saved_copy / "model.tflite").rename(saved_copy / "model.tflite.bak")
    with pytest.raises(ValueError, match="holds files that are not a holistic-lab gesture classifier"):
        unsaved.save(saved_copy)


# --- in the cascade -----------------------------------------------------------------------------

# HaGRID photographs where the cascade finds both hands / only the right hand (static mode)
BOTH_HANDS = "call/0e022ee9-74fd-44fe-adad-60c11835e44f.jpg"
RIGHT_HAND = "four/105f8f8e-ccd6-45a0-b22a-e314930bc13e.jpg"


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    frames = {f"{path.parent.name}/{path.name}": path for path, _ in datasets.hagrid_frames()}
    return {name: load_rgb(frames[name]) for name in (BOTH_HANDS, RIGHT_HAND)}


@pytest.fixture(scope="module")
def shipped_results(photos):
    pipeline = HolisticPipeline()
    return {name: pipeline.process(rgb) for name, rgb in photos.items()}


def _assert_gestures(result, labels):
    assert set(result.gestures) == set(HANDS)
    for side in HANDS:
        if result.present[side]:
            label, score = result.gestures[side]
            assert label in labels and 0.0 < score <= 1.0
        else:
            assert result.gestures[side] is None


def test_cascade_gives_each_found_hand_a_gesture_and_the_shipped_landmarks(classifier_folder, photos, shipped_results):
    pipeline = HolisticPipeline(gesture_model=classifier_folder)
    for name, rgb in photos.items():
        result, shipped = pipeline.process(rgb), shipped_results[name]
        assert result.present == shipped.present and shipped.gestures is None
        _assert_gestures(result, CLASSES)
        # the gesture model is the hand stage: its landmarks are the shipped model's (measured: 0.0 px
        # on all 40 hagrid_frames photographs)
        for side in HANDS:
            np.testing.assert_allclose(result[side], shipped[side], atol=1e-6)
        assert not any(key.endswith("_gesture") for key in pipeline.last_timings)   # no second pass
    both, right = (pipeline.process(photos[name]).gestures for name in (BOTH_HANDS, RIGHT_HAND))
    assert None not in both.values()
    assert right["left_hand"] is None and right["right_hand"] is not None


def test_cascade_with_its_own_hand_model_runs_the_gesture_as_a_second_pass(classifier_folder, photos, shipped_results):
    alone = HolisticPipeline(gesture_model=classifier_folder)
    beside = HolisticPipeline(gesture_model=classifier_folder, hand_landmark_model=str(model_path("hand_landmark_full")))
    for name, rgb in photos.items():
        result, expected = beside.process(rgb), alone.process(rgb)
        for side in HANDS:
            assert np.array_equal(result[side], shipped_results[name][side], equal_nan=True)
            assert (f"{side}_gesture" in beside.last_timings) == result.present[side]
        assert result.gestures == expected.gestures   # same crop, same model: the same labels and scores


def test_no_person_gives_no_gestures_and_no_model_gives_none(classifier_folder):
    from skimage.data import brick

    pipeline = HolisticPipeline(gesture_model=classifier_folder)
    texture = np.repeat(brick()[:, :, None], 3, axis=2)
    for rgb in (np.zeros((240, 320, 3), np.uint8), np.full((200, 200, 3), 255, np.uint8), texture):
        result = pipeline.process(rgb)
        assert not result.present["left_hand"] and not result.present["right_hand"]
        assert result.gestures == {"left_hand": None, "right_hand": None}
    assert HolisticPipeline().process(texture).gestures is None


def test_cascade_in_video_mode_gives_gestures_every_frame(classifier_folder, photos):
    pipeline = HolisticPipeline(static_image_mode=False, gesture_model=classifier_folder)
    results = list(pipeline.process_frames([photos[BOTH_HANDS]] * 3))
    for result in results:
        _assert_gestures(result, CLASSES)
    assert results[-1].gestures["left_hand"] is not None and results[-1].gestures["right_hand"] is not None


# --- in a variant -------------------------------------------------------------------------------


@pytest.fixture
def gesture_variant(classifier_folder, tmp_path):
    folder = tmp_path / "variant"
    write_variant(folder, {}, "gestures", MADE_BY, gesture=classifier_folder)
    return folder


def test_variant_with_a_gesture_folder_runs_it_as_the_hand_stage(gesture_variant, classifier_folder, photos):
    variant = read_variant(gesture_variant)
    assert variant.gesture == gesture_variant / "gesture" and variant.stages == {}
    assert variant.pipeline_kwargs() == {"gesture_model": str(gesture_variant / "gesture")}
    assert variant.manifest["gesture"]["labels"] == list(CLASSES)
    assert sorted(p.name for p in (gesture_variant / "gesture").iterdir()) == ["gesture.json", "model.tflite"]
    expected = HolisticPipeline(gesture_model=classifier_folder).process(photos[BOTH_HANDS])
    result = HolisticPipeline.from_variant(gesture_variant).process(photos[BOTH_HANDS])
    assert result.gestures == expected.gestures and result.allclose(expected, atol=0.0)


def test_variant_with_stages_and_a_gesture_uses_the_gesture_as_its_hand_stage(classifier_folder, tmp_path):
    folder = tmp_path / "variant"
    write_variant(folder, {"hand_landmark": model_path("hand_landmark_full")}, "both", MADE_BY, gesture=classifier_folder)
    assert read_variant(folder).pipeline_kwargs() == {"gesture_model": str(folder / "gesture")}


@pytest.mark.parametrize("tamper, message", [
    (lambda f: (f / "gesture" / "model.tflite").write_bytes(b"x" + (f / "gesture" / "model.tflite").read_bytes()[1:]),
     r"gesture/model.tflite: sha256 .* changed since the classifier was written"),
    (lambda f: _edit_json(f / "gesture" / "gesture.json", lambda m: m.update(labels=["a", "b", "c"])),
     r"gesture/gesture.json: labels \['a', 'b', 'c'\] are not the ones the variant's manifest names"),
    (lambda f: _edit_json(f / "manifest.json", lambda m: m["gesture"].update(sha256="0" * 64)),
     r"gesture: its model's sha256 .* is not the one the variant's manifest names"),
    (lambda f: _edit_json(f / "manifest.json", lambda m: m.update(gesture={"folder": "../elsewhere"})),
     r"'gesture' must name the folder 'gesture'"),
    (lambda f: shutil.rmtree(f / "gesture"),
     r"gesture/gesture.json: no such file"),
])
def test_variant_whose_gesture_changed_is_refused_by_name(gesture_variant, tamper, message):
    tamper(gesture_variant)
    with pytest.raises(ValueError, match=message):
        HolisticPipeline.from_variant(gesture_variant)


def test_variant_gesture_folder_as_a_symbolic_link_is_refused(gesture_variant, classifier_folder):
    shutil.rmtree(gesture_variant / "gesture")
    (gesture_variant / "gesture").symlink_to(classifier_folder, target_is_directory=True)
    with pytest.raises(ValueError, match="is a symbolic link; a variant holds its own files"):
        read_variant(gesture_variant)


def test_rewriting_a_gesture_variant_is_allowed_and_a_users_file_in_gesture_is_kept(gesture_variant, classifier_folder):
    assert check_variant_output(gesture_variant) == gesture_variant
    write_variant(gesture_variant, {}, "gestures-again", MADE_BY, gesture=classifier_folder)
    assert read_variant(gesture_variant).name == "gestures-again"
    (gesture_variant / "gesture" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files that are not a holistic-lab variant"):
        check_variant_output(gesture_variant)
    with pytest.raises(ValueError, match="holds files that are not a holistic-lab variant"):
        write_variant(gesture_variant, {}, "gestures-3", MADE_BY, gesture=classifier_folder)
    assert read_variant(gesture_variant).name == "gestures-again"
    write_variant(gesture_variant, {}, "gestures-3", MADE_BY, gesture=classifier_folder, overwrite=True)
    assert (gesture_variant / "gesture" / "notes.txt").read_text() == "mine"
    assert read_variant(gesture_variant).name == "gestures-3"


def test_from_variant_refuses_a_second_gesture_model_and_a_variant_without_a_hand_stage_means_the_shipped_one(
        gesture_variant, classifier_folder, tmp_path):
    from holistic_lab.gestures.classifier import hand_model_file

    with pytest.raises(ValueError, match="from_variant: gesture_model come from the variant"):
        HolisticPipeline.from_variant(gesture_variant, gesture_model=classifier_folder)
    assert hand_model_file(gesture_variant) == model_path("hand_landmark_full")   # a stage not listed is the shipped one
    hands = tmp_path / "hands"
    write_variant(hands, {"hand_landmark": model_path("hand_landmark_full")}, "hands", MADE_BY)
    assert hand_model_file(hands) == hands / "hand_landmark.tflite"


def test_save_variant_keeps_the_source_stages_and_load_reads_it(trained, unsaved, crops_by_class, tmp_path):
    face_variant = tmp_path / "face"
    write_variant(face_variant, {"face_landmark": model_path("face_landmark")}, "face", MADE_BY)
    manifest = unsaved.save_variant(tmp_path / "variant", MADE_BY, source=face_variant)
    variant = read_variant(manifest.parent)
    assert variant.gesture == tmp_path / "variant" / "gesture" and sorted(variant.stages) == ["face_landmark"]
    assert variant.manifest["made_by"]["source"] is not None
    loaded = GestureClassifier.load(tmp_path / "variant")
    assert loaded.folder == variant.gesture and loaded.labels == CLASSES
    rgb = load_rgb(crops_by_class["peace"][PER_CLASS])
    assert loaded.classify_crop(rgb) == trained.classify_crop(rgb)
    with pytest.raises(ValueError, match=r"variant .*face has no gesture classifier"):
        GestureClassifier.load(face_variant)
    with pytest.raises(ValueError, match=r"gesture model .*nowhere/gesture.json: no such file"):
        GestureClassifier.load(tmp_path / "nowhere")


def test_variant_needs_stages_or_a_gesture_and_a_real_gesture_folder(tmp_path):
    with pytest.raises(ValueError, match="no stage models given"):
        write_variant(tmp_path / "v", {}, "empty", MADE_BY)
    with pytest.raises(ValueError, match=r"nowhere/gesture.json: no such file"):
        write_variant(tmp_path / "v", {}, "empty", MADE_BY, gesture=tmp_path / "nowhere")
    assert not (tmp_path / "v").exists()


# --- the landmark baseline and the scores -------------------------------------------------------


def _hand(rng) -> np.ndarray:
    points = rng.uniform(100, 200, size=(21, 3)).astype(np.float32)
    points[:, 2] -= 150
    return points


def test_landmark_features_ignore_where_the_hand_is_and_its_size_but_not_its_turn():
    rng = np.random.default_rng(0)
    hand = _hand(rng)
    moved = hand * 2.5 + np.array([300.0, -40.0, 7.0], np.float32)
    turned = hand.copy()
    turned[:, 1] = -turned[:, 1]   # upside down
    nan = np.full((21, 3), np.nan, np.float32)
    features = landmark_features(np.stack([hand, moved, nan, turned]))
    assert features.shape == (4, 63) and features.dtype == np.float32
    np.testing.assert_allclose(features[1], features[0], atol=1e-5)
    assert np.isnan(features[2]).all() and np.isfinite(features[[0, 1, 3]]).all()
    assert not np.allclose(features[3], features[0], atol=0.1)
    # relative to the wrist, the farthest point 1 away in the image plane
    assert np.allclose(features[0, :3], 0) and np.linalg.norm(features[0].reshape(21, 3)[:, :2], axis=1).max() == \
        pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"landmarks must be \(N, 21, 3\), got \(21, 3\)"):
        landmark_features(hand)


def test_landmark_mlp_answers_none_for_a_hand_not_found():
    rng = np.random.default_rng(1)
    hands = np.stack([_hand(rng), np.full((21, 3), np.nan, np.float32)])
    mlp = build_mlp(3)
    with_none = mlp_probabilities(mlp, hands, ("open", "none", "closed"))
    assert np.allclose(with_none.sum(1), 1.0, atol=1e-5) and with_none[1].tolist() == [0.0, 1.0, 0.0]
    assert mlp_probabilities(mlp, hands, ("open", "fist", "closed"))[1] == pytest.approx([1 / 3] * 3)


def test_confusion_matrix_and_f1_on_a_hand_made_example():
    true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 0, 1])
    matrix = confusion_matrix(true, predicted, 4)
    assert matrix.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    # class 0: precision 2/3, recall 2/3; class 1: 1/3 and 1/2; class 2 never predicted; class 3 absent
    np.testing.assert_allclose(per_class_f1(matrix), [2 / 3, 0.4, 0.0, 0.0])


def test_a_photographs_label_is_its_most_confident_gesturing_hand():
    from holistic_lab.gestures.cascade import NO_HAND, photo_label

    assert photo_label(None) == NO_HAND and photo_label({"left_hand": None, "right_hand": None}) == NO_HAND
    assert photo_label({"left_hand": ("none", 0.9), "right_hand": None}) == "none"
    assert photo_label({"left_hand": ("open", 0.6), "right_hand": ("closed", 0.8)}) == "closed"
    assert photo_label({"left_hand": ("none", 0.99), "right_hand": ("open", 0.4)}) == "open"


def test_photo_and_video_gestures_run_the_whole_cascade(gesture_variant, classifier_folder, photos):
    from holistic_lab.gestures.cascade import photo_gestures, video_gestures

    frames = {f"{path.parent.name}/{path.name}": (path, label) for path, label in datasets.hagrid_frames()}
    rows = photo_gestures(gesture_variant, [frames[BOTH_HANDS], frames[RIGHT_HAND]], progress=False)
    expected = HolisticPipeline(gesture_model=classifier_folder)
    for row, name in zip(rows, (BOTH_HANDS, RIGHT_HAND)):
        assert row["label"] == name.split("/")[0] and row["predicted"] in CLASSES
        assert {side: row[side] for side in HANDS} == expected.process(photos[name]).gestures
    clip = datasets.fixture_videos()["gesture_face_hands.mp4"]   # the person raises a hand by frame 30
    track = video_gestures(classifier_folder, clip, every=5, limit=36)
    assert [frame["frame"] for frame in track] == [0, 5, 10, 15, 20, 25, 30, 35]
    for frame in track:
        assert set(frame) == {"frame", "left_hand", "right_hand", "ms"} and frame["ms"] > 0
        assert all(frame[side] is None or frame[side][0] in CLASSES for side in HANDS)
    assert any(frame[side] is not None for frame in track for side in HANDS)
    with pytest.raises(ValueError, match="every must be >= 1, got 0"):
        video_gestures(classifier_folder, clip, every=0)
