"""Chapter 05's measurement: human-labelled evaluation crops, degraded draws shared by every
model, normalised errors and paired bootstrap intervals; teacher-labelled training pairs."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from holistic_lab.convert import tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.train.evaluate import (bootstrap_interval, case_errors, case_inputs, compare_models,  # noqa: E402
                                         human_cases)


@pytest.fixture(scope="module")
def hand_cases(fixtures):
    return human_cases("hands")


def test_hand_cases_come_from_the_three_human_sets_and_score_their_own_labels_as_zero(hand_cases):
    assert {case.source for case in hand_cases} == {"freihand", "panoptic", "coco_wholebody"}
    assert len(hand_cases) >= 20 and all(case.norm_px > 0 and len(case.rows) >= 15 for case in hand_cases)
    for case in hand_cases:   # the labels in crop pixels, projected back, are the labels: error 0
        assert case_errors(case, case.crop.points).max() < 1e-3
        moved = case.crop.points.copy()
        moved[:, 0] += 10.0   # 10 crop pixels right
        assert case_errors(case, moved).min() > 0


def test_face_cases_use_the_68_points_and_the_interocular_norm(fixtures):
    cases = human_cases("face_mesh", sets=("300w",))
    assert len(cases) == 2 and all(len(case.rows) == 68 and case.norm_px > 20 for case in cases)
    with pytest.raises(ValueError, match="module must be one of"):
        human_cases("gesture")


def test_pose_cases_are_human_labelled_bodies_normalised_by_the_torso(fixtures):
    cases = human_cases("pose")
    assert {case.source for case in cases} <= {"coco", "aic", "posetrack18"} and len(cases) >= 10
    for case in cases:
        assert case.crop.input.shape == (256, 256, 3) and case.norm_px > 10 and len(case.rows) >= 8
        assert case_errors(case, case.crop.points).max() < 1e-3


def test_degraded_inputs_are_seeded_and_shared(hand_cases):
    cases = hand_cases[:3]
    first, again = case_inputs(cases, "occlusion", 2, seed=5), case_inputs(cases, "occlusion", 2, seed=5)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (2, 3, 224, 224, 3) and not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(case_inputs(cases, None, 1)[0], np.stack([c.crop.input for c in cases]))


def test_a_model_compared_with_itself_changes_nothing(hand_cases):
    model = tflite_to_keras(model_path("hand_landmark_full"))
    comparison = compare_models({"shipped": model, "same": model}, hand_cases[:6], "hands", "occlusion", draws=1)
    rows = {(row["condition"], row["model"]): row for row in comparison.rows()}
    for condition in ("clean", "occlusion"):
        assert rows[condition, "same"]["change"] == 0 and rows[condition, "same"]["change_ci"] == (0.0, 0.0)
        low, high = rows[condition, "shipped"]["error_ci"]
        assert low <= rows[condition, "shipped"]["error"] <= high
    assert rows["occlusion", "shipped"]["error"] > rows["clean", "shipped"]["error"]   # occluders hurt


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    for values in (small, large):
        low, high = bootstrap_interval(values)
        assert low < values.mean() < high
    assert np.subtract(*bootstrap_interval(large)[::-1]) < np.subtract(*bootstrap_interval(small)[::-1]) / 3


def test_bootstrap_resamples_whole_images():
    """Ten images with two identical parts each carry the information of ten draws, not twenty:
    resampled by image the interval is as wide as for the ten values alone."""
    values = np.random.default_rng(1).normal(0.0, 1.0, 10)
    twice, images = np.repeat(values, 2), np.repeat(np.arange(10), 2)
    alone, grouped, naive = bootstrap_interval(values), bootstrap_interval(twice, images), bootstrap_interval(twice)
    width = [high - low for low, high in (alone, grouped, naive)]
    assert width[1] == pytest.approx(width[0], rel=0.05) and width[2] < 0.85 * width[1]
    with pytest.raises(ValueError, match="groups"):
        bootstrap_interval(values, images)


def test_teacher_labels_hand_crops_as_the_right_hand(fixtures):
    from holistic_lab import datasets
    from holistic_lab.train.teacher_data import frame_items, hand_crop_items, video_frames

    crops = [path for path, label in datasets.hagrid_crops() if label == "palm"][:6]
    items = hand_crop_items(crops, progress=False)
    assert 3 <= len(items) <= 6
    for rgb, labels in items:
        assert labels.present["right_hand"] and not labels.present["left_hand"]
        hand = labels.xyz[522:543]
        assert np.isfinite(hand).all() and (np.abs(hand[:, :2] - 0.5) < 1.0).all()
    with pytest.raises(ValueError, match="part must be one of"):
        frame_items([], "hand")
    with pytest.raises(ValueError, match="every must be >= 1"):
        next(video_frames("x.mp4", every=0))
