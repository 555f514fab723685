"""Known-input checks of the cascade's pieces: anchors, detection decoding and NMS, ROI
geometry, and the crop / projection round trip."""
import math

import numpy as np
import pytest

from holistic_lab.pipeline.anchors import FACE_DETECTION_ANCHORS, POSE_DETECTION_ANCHORS, ssd_anchor_centers
from holistic_lab.pipeline.detection import Detection, DetectorSpec, decode_detections, remove_letterbox, weighted_nms
from holistic_lab.pipeline.roi import (Rect, crop, hand_rect_from_pose, project_landmarks, project_points,
                                       rect_from_alignment_points, transform_rect)
from holistic_lab.pipeline.tracking import HAND_TRACKING, keep_tracking


def test_pose_detection_anchors_count_and_layout():
    centers = ssd_anchor_centers(POSE_DETECTION_ANCHORS)
    # stride 8: 28x28 cells x 2 anchors, stride 16: 14x14 x 2, three stride-32 layers merged: 7x7 x 6
    assert centers.shape == (28 * 28 * 2 + 14 * 14 * 2 + 7 * 7 * 6, 2) == (2254, 2)
    np.testing.assert_allclose(centers[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(centers[1], centers[0])          # two anchors share a cell
    np.testing.assert_allclose(centers[2], [1.5 / 28, 0.5 / 28])  # then x advances (row-major)
    np.testing.assert_allclose(centers[1568], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(centers[-1], [6.5 / 7, 6.5 / 7])
    assert len(ssd_anchor_centers(FACE_DETECTION_ANCHORS)) == 896


def test_decode_and_weighted_nms_merge_overlapping_boxes():
    anchors = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]], np.float32)
    spec = DetectorSpec(input_size=100, num_keypoints=1, min_score=0.5)
    raw = np.array([[0, 0, 40, 40, 10, 0], [4, 0, 40, 40, 10, 0], [0, 0, 10, 10, 0, 0]], np.float32)
    logits = np.array([3.0, 1.0, -5.0])  # the third is below min_score
    detections = decode_detections(raw, logits, anchors, spec)
    assert len(detections) == 2
    np.testing.assert_allclose(detections[0].box, [0.3, 0.3, 0.7, 0.7], atol=1e-6)
    np.testing.assert_allclose(detections[0].keypoints, [[0.6, 0.5]], atol=1e-6)
    merged = weighted_nms(detections, 0.3)
    assert len(merged) == 1 and merged[0].score == pytest.approx(1 / (1 + math.exp(-3)))
    w0, w1 = detections[0].score, detections[1].score
    assert merged[0].box[0] == pytest.approx((0.3 * w0 + 0.34 * w1) / (w0 + w1), abs=1e-6)
    unpadded = remove_letterbox(Detection(np.array([0.25, 0, 0.75, 1.0]), np.array([[0.5, 0.5]]), 1.0),
                                np.array([0.25, 0, 0.25, 0]))
    np.testing.assert_allclose(unpadded.box, [0, 0, 1, 1])


def test_alignment_rect_points_start_to_end_at_target_angle():
    size = (400, 200)
    # end point straight above the centre: already at 90 degrees -> no rotation, side 2 x 50 px
    rect = rect_from_alignment_points(np.array([0.5, 0.5]), np.array([0.5, 0.25]), size, 90.0)
    assert rect.rotation == pytest.approx(0.0)
    assert (rect.width * 400, rect.height * 200) == pytest.approx((100.0, 100.0))
    # end point to the right: the ROI must turn by -90 degrees to put it on top
    rect = rect_from_alignment_points(np.array([0.5, 0.5]), np.array([0.6, 0.5]), size, 90.0)
    assert rect.rotation == pytest.approx(math.pi / 2)


def test_transform_rect_squares_in_pixels_and_shifts_along_rotated_axis():
    size = (400, 200)
    square = transform_rect(Rect(0.5, 0.5, 0.1, 0.5), size, scale=2.0)
    assert (square.width * 400, square.height * 200) == pytest.approx((200.0, 200.0))
    shifted = transform_rect(Rect(0.5, 0.5, 0.25, 0.5, rotation=math.pi / 2), size, scale=1.0, shift_y=-0.1)
    # rotated 90 degrees clockwise, "up" in the ROI points to +x... minus: -0.1 of 100 px height -> +10 px in x
    assert shifted.x_center * 400 == pytest.approx(210.0)
    assert shifted.y_center == pytest.approx(0.5)


def test_hand_rect_from_pose_is_centred_between_index_and_pinky():
    size = (100, 100)
    wrist, pinky, index = np.array([0.5, 0.8]), np.array([0.45, 0.5]), np.array([0.6, 0.5])
    rect = hand_rect_from_pose(wrist, pinky, index, size)
    assert (rect.x_center, rect.y_center) == pytest.approx(((2 * 0.6 + 0.45) / 3, 0.5))
    assert rect.rotation == pytest.approx(math.atan2(0.05, 0.3), abs=1e-6)  # tilt of wrist->middle from vertical


def test_crop_then_project_returns_to_the_same_image_point():
    # an image whose red channel is the pixel's x and green its y: each crop pixel says where it came from
    ys, xs = np.mgrid[0:180, 0:240]
    rgb = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    for rect, keep_aspect in [(Rect(0.45, 0.55, 0.5, 0.4, rotation=0.6), True),
                              (Rect(0.5, 0.5, 0.3, 0.5, rotation=-1.2), False)]:
        model_input = crop(rgb, rect, (64, 64), keep_aspect=keep_aspect, value_range=(0.0, 255.0))
        assert model_input.tensor.shape == (1, 64, 64, 3) and model_input.tensor.dtype == np.float32
        rows, cols = np.mgrid[8:56:8, 8:56:8].reshape(2, -1)
        # OpenCV samples tensor pixel (col, row) at the ROI point (col / width, row / height)
        image_xy = project_points(np.column_stack([cols / 64, rows / 64]), model_input.roi_px, (240, 180)) * [240, 180]
        inside = (image_xy >= 0).all(1) & (image_xy <= [239, 179]).all(1)
        assert inside.sum() > 20
        sampled = model_input.tensor[0, rows, cols, :2]
        np.testing.assert_allclose(sampled[inside], image_xy[inside], atol=1.0)
    # a square ROI: MediaPipe's normalised landmark projection equals the exact one
    square = transform_rect(Rect(0.5, 0.5, 0.3, 0.3, rotation=0.4), (240, 180), scale=1.0)
    model_input = crop(rgb, square, (32, 32))
    uv = np.array([[0.1, 0.2, 0.0], [0.8, 0.6, 0.0]], np.float32)
    np.testing.assert_allclose(project_landmarks(uv, square, model_input.padding)[:, :2],
                               project_points(uv[:, :2], model_input.roi_px, (240, 180)), atol=1e-5)


def test_crop_samples_the_rotated_rectangle():
    rgb = np.zeros((200, 200, 3), np.uint8)
    rgb[50:70, 120:140] = 255  # a white square right of centre
    # a ROI centred on it, rotated 90 degrees: the square must still sit in the middle of the crop
    rect = Rect(130 / 200, 60 / 200, 0.2, 0.2, rotation=math.pi / 2)
    tensor = crop(rgb, rect, (40, 40), value_range=(0.0, 1.0)).tensor[0]
    assert tensor[20, 20].min() == pytest.approx(1.0) and tensor[2, 2].max() == 0.0
    zero_padded = crop(rgb, Rect(0.0, 0.0, 0.5, 0.5), (20, 20), border_zero=True, value_range=(-1, 1)).tensor
    assert zero_padded[0, 0, 0, 0] == pytest.approx(-1.0)  # outside the image: black, as the detectors see it


def test_hand_tracking_kept_for_small_motion_and_dropped_for_a_jump():
    size = (640, 480)
    hand = np.column_stack([np.linspace(0.4, 0.45, 21), np.linspace(0.5, 0.4, 21), np.zeros(21)])
    recrop = Rect(0.425, 0.45, 0.12, 0.16)
    assert keep_tracking(Rect(0.43, 0.45, 0.12, 0.16), hand, recrop, size, HAND_TRACKING)
    assert not keep_tracking(Rect(0.60, 0.45, 0.12, 0.16), hand, recrop, size, HAND_TRACKING)
    assert not keep_tracking(Rect(0.425, 0.45, 0.12, 0.16, rotation=1.0), hand, recrop, size, HAND_TRACKING)


def test_weighted_nms_keeps_a_zero_area_detection():
    from holistic_lab.pipeline.detection import Detection, weighted_nms

    flat = Detection(np.array([0.5, 0.5, 0.5, 0.7], np.float32), np.zeros((2, 2), np.float32), 0.9)
    assert len(weighted_nms([flat], 0.3)) == 1


def test_degenerate_model_output_means_absent_parts_not_a_crash(fixtures):
    from holistic_lab.images import load_rgb
    from holistic_lab.pipeline import HolisticPipeline

    rgb = load_rgb(fixtures / "panoptic/ex2_2.flv_000040_l.jpg")
    zero_recrop = HolisticPipeline(hand_recrop_model=lambda tensor: [np.zeros((1, 4), np.float32)])
    result = zero_recrop.process(rgb)
    assert result.present["pose"] and result.present["face"]
    assert not result.present["left_hand"] and not result.present["right_hand"]
