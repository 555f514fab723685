"""Training crops (`holistic_lab.train_data`): the crop a labelled image gives each module is the
crop the cascade itself cuts when it tracks from those landmarks, the labels land on the crop's
pixels (the shipped model, run on the crop, predicts them), masks follow what is known, and
augmentation keeps labels on their pixels."""
from __future__ import annotations

import math
import numpy as np
import pytest

from holistic_lab import datasets
from holistic_lab.datasets import sample_image, sample_labels, sample_names
from holistic_lab.formats.sample import Sample
from holistic_lab.images import load_rgb
from holistic_lab.pipeline.holistic import HolisticPipeline
from holistic_lab.pipeline.stages import FaceLandmark, HandLandmark, PoseLandmark
from holistic_lab.topology import PARTS
from holistic_lab.train.data import (stack_batch, iter_labelled, iter_module_batches, iter_module_crops, module_crop,
                                     module_dataset)

# a HaGRID photograph where the cascade tracks both hands on the second frame
HAND_FRAME = "call/0e022ee9-74fd-44fe-adad-60c11835e44f.jpg"


@pytest.fixture(scope="module")
def hand_photo() -> np.ndarray:
    folder = datasets.data_dir(pack="hagrid_frames")
    if folder is None or not (folder / HAND_FRAME).is_file():
        pytest.skip("no local hagrid_frames fixture pack (tests never download)")
    return load_rgb(folder / HAND_FRAME)


def tracked_twice(rgb):
    """The cascade in video mode on the same frame twice: frame 1's landmarks place frame 2's ROIs."""
    pipeline = HolisticPipeline(static_image_mode=False)
    first = pipeline.process(rgb)
    pipeline.process(rgb)
    return pipeline, first


def crop_difference(ours, cascade_crop) -> float:
    """Mean absolute difference of two model inputs, in 0..255 grey levels."""
    return float(np.abs(ours.input - cascade_crop.tensor[0]).mean() * 255)


@pytest.mark.parametrize("name", sample_names())
def test_face_crop_is_the_cascades_tracking_crop(name):
    rgb = sample_image(name)
    pipeline, first = tracked_twice(rgb)
    assert pipeline.last_roi_sources["face"] == "tracking"
    ours = module_crop(rgb, first, "face_mesh")
    assert ours.roi == pipeline.last_rois["face"]
    assert ours.input.shape == (192, 192, 3) and ours.input.dtype == np.float32
    assert crop_difference(ours, pipeline.last_crops["face_landmark"]) < 0.01


def test_both_hand_crops_are_the_cascades_tracking_crops_unmirrored(hand_photo):
    pipeline, first = tracked_twice(hand_photo)
    for side in ("left_hand", "right_hand"):
        assert pipeline.last_roi_sources[side] == "tracking"
        ours = module_crop(hand_photo, first, "hands", side)
        assert ours.roi == pipeline.last_rois[side]
        assert ours.input.shape == (224, 224, 3)
        assert crop_difference(ours, pipeline.last_crops[f"{side}_landmark"]) < 0.01


@pytest.mark.parametrize("name", sample_names())
def test_pose_roi_from_labels_is_near_the_tracked_pose_roi(name):
    """Labels have no auxiliary points: the ROI rebuilt from the 33 is close, not identical."""
    rgb = sample_image(name)
    pipeline, first = tracked_twice(rgb)
    assert pipeline.last_roi_sources["pose"] == "tracking"
    ours, theirs = module_crop(rgb, first, "pose").roi, pipeline.last_rois["pose"]
    width, height = first.width, first.height
    side_px = theirs.width * width
    centre_gap = math.hypot((ours.x_center - theirs.x_center) * width, (ours.y_center - theirs.y_center) * height)
    assert centre_gap < 0.05 * side_px
    assert 0.85 < ours.width / theirs.width < 1.15
    assert abs(math.degrees(ours.rotation - theirs.rotation)) < 3


def test_labels_project_back_exactly_and_the_shipped_model_predicts_them(hand_photo):
    """Teacher labels through the crop and back are unchanged; the shipped model on the crop
    predicts points within a few crop pixels of them (the labels sit on the crop's pixels)."""
    cases = [(sample_image(n), sample_labels(n), m) for n in sample_names() for m in ("face_mesh", "pose")]
    _, hand_labels = tracked_twice(hand_photo)
    cases += [(hand_photo, hand_labels, "hands")]
    stages = {"face_mesh": FaceLandmark(), "pose": PoseLandmark(), "hands": HandLandmark()}
    for rgb, labels, module in cases:
        sides = ("left_hand", "right_hand") if module == "hands" else (None,)
        for side in sides:
            ours = module_crop(rgb, labels, module, side)
            part = labels.xyz[PARTS[ours.part]]
            n = len(part)   # pose: the model's 39 points, the 6 auxiliary ones unlabelled
            assert ours.mask[:n].all() and ours.z_mask[:n].all() and not ours.mask[n:].any()
            np.testing.assert_allclose(ours.to_image(ours.points[:n]), part, atol=1e-5)
            raw = stages[module].infer(ours.crop)[0].reshape(-1, 5 if module == "pose" else 3)[:len(part), :3]
            error_px = np.linalg.norm(raw[:, :2] - ours.points[:n, :2], axis=1)
            limit = {"face_mesh": 4.0, "hands": 4.0, "pose": 8.0}[module]
            assert np.median(error_px) < limit, (module, side, np.median(error_px))
            if module == "hands":  # raw output in `points` units: to_image decodes it as the cascade does, z too
                np.testing.assert_allclose(ours.to_image(raw), stages[module].scored_landmarks(ours.crop)[1],
                                           atol=1e-5)


def sample_from(result, image_path="x.jpg") -> Sample:
    return Sample.from_result(result, image_path)


def test_unknown_and_nan_points_are_masked_and_zeroed():
    name = sample_names()[0]
    rgb, sample = sample_image(name), sample_from(sample_labels(name))
    face = PARTS["face"].start
    sample.mask[face + 10] = False                  # annotated as unknown
    sample.xyz[face + 20] = np.nan                  # NaN label with the mask left on after construction
    sample.xyz[face + 30, 2] = np.nan               # x, y annotated, no depth (a human label)
    ours = module_crop(rgb, sample, "face_mesh")
    assert not ours.mask[10] and not ours.mask[20] and ours.mask.sum() == 466
    assert ours.mask[30] and not ours.z_mask[30] and ours.z_mask.sum() == 465
    assert (ours.points[[10, 20]] == 0).all() and ours.points[30, 2] == 0 and np.isfinite(ours.points).all()


def test_human_labels_without_depth_survive_augmentation_as_x_y_only():
    name = sample_names()[1]
    human = sample_from(sample_labels(name))
    human.xyz[:, 2] = np.nan
    ((inputs, targets),) = list(iter_module_batches([(sample_image(name), human)], "pose", preset="geometric", seed=1))
    assert targets["mask"][:, :33].all() and not targets["mask"][:, 33:].any() and not targets["z_mask"].any()
    assert np.isfinite(targets["points"]).all() and (targets["points"][..., 2] == 0).all()


def test_depthless_rows_follow_their_twins_through_a_flip():
    from holistic_lab.augment import make_augmenter
    from holistic_lab.train.data import augment_labelled

    name = sample_names()[0]
    human = sample_from(sample_labels(name))
    human.xyz[PARTS["pose"].start + 11, 2] = np.nan        # left shoulder: no depth
    _, flipped = augment_labelled(make_augmenter("none", flip_p=1.0), sample_image(name), human)
    assert flipped.extras["mirrored"]
    no_depth = np.flatnonzero(np.isfinite(flipped.xyz[:, :2]).all(axis=1) & np.isnan(flipped.xyz[:, 2]))
    assert no_depth.tolist() == [PARTS["pose"].start + 12]  # now the right shoulder's row


def test_absent_or_too_sparse_parts_give_none():
    name = sample_names()[0]
    rgb, sample = sample_image(name), sample_from(sample_labels(name))
    assert module_crop(rgb, sample, "hands", "left_hand") is None      # the portrait has no hands
    eye = PARTS["face"].start + 33
    sample.mask[eye] = False                                            # the rotation's eye corner unknown
    assert module_crop(rgb, sample, "face_mesh") is None
    sample.mask[PARTS["pose"]] = False
    assert module_crop(rgb, sample, "pose") is None


def test_sparse_human_face_labels_take_their_roi_from_the_teachers():
    """68 known face points alone are too few for the cascade's box; with the teacher's labels
    placing the ROI the crop is the teacher's crop and only the 68 are supervised."""
    name = sample_names()[0]
    rgb, teacher = sample_image(name), sample_labels(name)
    human = sample_from(teacher)
    kept = np.zeros(468, bool)
    kept[np.linspace(0, 467, 66).astype(int)] = True
    kept[[33, 263]] = True
    human.mask[PARTS["face"]] = kept
    assert module_crop(rgb, human, "face_mesh") is None
    ours, full = module_crop(rgb, human, "face_mesh", roi_labels=teacher), module_crop(rgb, teacher, "face_mesh")
    assert ours.roi == full.roi and np.array_equal(ours.input, full.input)
    assert ours.mask.sum() == kept.sum() and np.array_equal(ours.points[kept], full.points[kept])
    with pytest.raises(ValueError, match="roi_labels are for a"):
        module_crop(rgb, human, "face_mesh", roi_labels=sample_labels(sample_names()[1]))


def test_augmented_labels_stay_on_their_pixels():
    """After a strong seeded geometric augmentation the shipped face model, run on the crop of the
    augmented image, predicts the augmented labels; the unaugmented labels would be far off."""
    name = sample_names()[0]
    rgb, labels = sample_image(name), sample_labels(name)
    model = FaceLandmark()
    (augmented,) = list(iter_module_crops([(rgb, labels)], "face_mesh", "geometric", seed=3))
    plain = module_crop(rgb, labels, "face_mesh")
    moved = np.linalg.norm(augmented.points[:, :2] - plain.points[:, :2], axis=1)
    assert np.median(moved) > 10 or abs(augmented.roi.rotation - plain.roi.rotation) > 0.1
    raw = model.infer(augmented.crop)[0].reshape(468, 3)[:, :2]
    assert np.median(np.linalg.norm(raw - augmented.points[:, :2], axis=1)) < 4.0


def test_batches_from_a_tfrecord_set_are_seeded_and_shaped(tmp_path):
    from holistic_lab.formats import tfrecord

    samples = [sample_from(sample_labels(n), f"{n}.jpg") for n in sample_names()]
    files = tfrecord.write(tmp_path / "set.tfrecord", samples, images=[sample_image(n) for n in sample_names()])
    batches = list(iter_module_batches(iter_labelled(files), "face_mesh", batch_size=1, preset="train", seed=7))
    assert len(batches) == 2
    inputs, targets = batches[0]
    assert inputs.shape == (1, 192, 192, 3) and inputs.dtype == np.float32
    assert 0.0 <= inputs.min() and inputs.max() <= 1.0
    assert targets["points"].shape == (1, 468, 3) and targets["mask"].shape == targets["z_mask"].shape == (1, 468)
    again = list(iter_module_batches(iter_labelled(files), "face_mesh", batch_size=1, preset="train", seed=7))
    np.testing.assert_array_equal(batches[1][0], again[1][0])
    np.testing.assert_array_equal(batches[1][1]["points"], again[1][1]["points"])
    (both,) = list(iter_module_batches(iter_labelled(files), "face_mesh", batch_size=8))
    assert both[0].shape[0] == 2


def test_tf_dataset_gives_the_same_batches():
    items = [(sample_image(n), sample_labels(n)) for n in sample_names()]
    dataset = module_dataset(lambda: items, "pose", batch_size=2)
    ((inputs, targets),) = [(x.numpy(), {k: v.numpy() for k, v in t.items()}) for x, t in dataset]
    ((expected, expected_targets),) = list(iter_module_batches(items, "pose", batch_size=2))
    np.testing.assert_array_equal(inputs, expected)
    for key in ("points", "mask", "z_mask"):
        np.testing.assert_array_equal(targets[key], expected_targets[key])
    assert targets["points"].shape == (2, 39, 3)


@pytest.mark.parametrize("call, words", [
    (lambda rgb, lab: module_crop(rgb, lab, "face"), "unknown module 'face'"),
    (lambda rgb, lab: module_crop(rgb, lab, "hands"), "side must be one of"),
    (lambda rgb, lab: module_crop(rgb, lab, "pose", "left_hand"), "side is only for module 'hands'"),
    (lambda rgb, lab: module_crop(rgb.astype(np.float32), lab, "pose"), "uint8"),
    (lambda rgb, lab: module_crop(rgb[:, :100], lab, "pose"), "labels are for a"),
    (lambda rgb, lab: module_crop(rgb, lab.xyz, "pose"), "labels must be a Sample or a HolisticResult"),
    (lambda rgb, lab: list(iter_module_batches([(rgb, lab)], "pose", batch_size=0)), "batch_size"),
])
def test_bad_input_is_refused_by_name(call, words):
    name = sample_names()[0]
    with pytest.raises(ValueError, match=words):
        call(sample_image(name), sample_labels(name))


def test_labels_of_the_wrong_shape_are_refused_by_name():
    name = sample_names()[0]
    labels = sample_labels(name)
    labels.xyz = np.zeros((500, 3), np.float32)  # changed after construction, past its own check
    with pytest.raises(ValueError, match=r"labels.xyz must be \(543, 3\)"):
        module_crop(sample_image(name), labels, "pose")


def test_crop_pixels_invert_the_cascades_projection_with_letterbox_padding():
    """Tracking ROIs are square, so their padding is 0; a non-square rotated ROI exercises the rest."""
    from holistic_lab.pipeline.roi import Rect, letterbox_padding, project_landmarks
    from holistic_lab.train.data import to_crop_pixels

    rect = Rect(0.4, 0.6, 0.3, 0.5, 0.4)
    _, padding = letterbox_padding(rect.to_pixels((640, 480)), (224, 224))
    assert padding.any()
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0.2, 0.8, (21, 3)).astype(np.float32)
    back = project_landmarks(to_crop_pixels(xyz, rect, padding, 224) / 224, rect, padding)
    np.testing.assert_allclose(back, xyz, atol=1e-5)


def test_each_epoch_of_the_dataset_draws_new_augmentation():
    items = lambda: [(sample_image("astronaut"), sample_labels("astronaut"))]  # noqa: E731
    dataset = module_dataset(items, "face_mesh", batch_size=1, preset="geometric", seed=3).repeat(2)
    first, second = [targets["points"].numpy() for _, targets in dataset]
    assert not np.allclose(first, second)  # a new draw per epoch
    again = [targets["points"].numpy() for _, targets in module_dataset(items, "face_mesh", batch_size=1,
                                                                         preset="geometric", seed=3).repeat(2)]
    np.testing.assert_array_equal(again[0], first)  # and the same run repeats


def test_appearance_degrades_the_crop_and_keeps_the_clean_one_for_the_teacher():
    """low_light: geometry (a flip) moves the image first; darkness and noise then change the
    crop's pixels only, so `clean` is exactly the crop without them and the labels are the clean crop's."""
    items = [(sample_image(n), sample_labels(n)) for n in sample_names()]
    degraded = list(iter_module_crops(items, "face_mesh", preset="low_light", seed=3, geometry=False))
    plain = list(iter_module_crops(items, "face_mesh"))
    assert len(degraded) == len(plain) == 2
    for ours, reference in zip(degraded, plain):
        np.testing.assert_array_equal(ours.clean, reference.input)
        np.testing.assert_array_equal(ours.points, reference.points)
        assert ours.input.mean() < reference.input.mean()                # darker
        assert np.abs(ours.input - ours.clean).max() > 0.05
    again = list(iter_module_crops(items, "face_mesh", preset="low_light", seed=3, geometry=False))
    np.testing.assert_array_equal(again[1].input, degraded[1].input)
    inputs, targets = stack_batch(degraded)
    np.testing.assert_array_equal(targets["clean"], np.stack([c.input for c in plain]))


def test_split_preset_separates_moving_from_looking():
    from holistic_lab.augment.presets import preset
    from holistic_lab.train.data import GEOMETRY_KNOBS, split_preset

    geometry, appearance = split_preset("train")
    full = preset("train")
    for name in GEOMETRY_KNOBS:
        assert getattr(geometry, name) == getattr(full, name) and getattr(appearance, name) in (0, 0.0)
    assert appearance.photometric_p == full.photometric_p and geometry.photometric_p == 0
    with pytest.raises(ValueError, match="unknown"):
        split_preset("dusk")
