"""The cascade's vectorised pre/post-processing gives what the former per-item code gave.

Each rewritten function is compared with a plain reference kept here (the code it
replaced) on real model outputs from the latency images, bit for bit: in video mode the
next frame's crop follows this frame's landmarks, and a one-ulp change of one landmark
moves a later frame's landmarks by 1e-3. Then the whole pipeline with the references
swapped in must give the same results, in static mode on the latency images and in video
mode on a fixture clip.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import astuple

import cv2
import numpy as np
import pytest

from holistic_lab.datasets import fixture_videos
from holistic_lab.images import iter_video_frames
from holistic_lab.pipeline import HolisticPipeline, roi, stages
from holistic_lab.pipeline.detection import (Detection, DetectorSpec, box_iou, decode_detections,
                                             detections_from_outputs, weighted_nms)
from holistic_lab.pipeline.profile import latency_images
from holistic_lab.pipeline.roi import Crop, Rect, letterbox_padding, rotate
from holistic_lab.pipeline.stages import sigmoid

VIDEO_FRAMES = 30


# --- references: the per-item code the pipeline ran before it was vectorised ---

def reference_refine_from_heatmap(xy, heatmap, kernel_size=7, min_confidence=0.5):
    out = xy.copy()
    rows, cols, _ = heatmap.shape
    half = (kernel_size - 1) // 2
    for i, (x, y) in enumerate(xy):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        col, row = int(x * cols), int(y * rows)
        if not (0 <= col < cols and 0 <= row < rows):
            continue
        r0, r1 = max(0, row - half), min(rows, row + half + 1)
        c0, c1 = max(0, col - half), min(cols, col + half + 1)
        confidence = sigmoid(heatmap[r0:r1, c0:c1, i])
        total = confidence.sum()
        if confidence.max() >= min_confidence and total > 0:
            rr, cc = np.mgrid[r0:r1, c0:c1]
            out[i] = [(cc * confidence).sum() / cols / total, (rr * confidence).sum() / rows / total]
    return out


def reference_decode_detections(raw_boxes, raw_scores, anchor_centers, spec):
    n = len(anchor_centers)
    raw_boxes = np.asarray(raw_boxes, np.float32).reshape(n, -1)
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(n), -spec.score_clip, spec.score_clip)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(scores >= spec.min_score)
    if keep.size == 0:
        return []
    raw, anchors = raw_boxes[keep] / spec.input_size, anchor_centers[keep]
    centers = raw[:, 0:2] + anchors
    half_sizes = raw[:, 2:4] / 2
    boxes = np.concatenate([centers - half_sizes, centers + half_sizes], axis=1)
    keypoints = raw[:, 4:4 + 2 * spec.num_keypoints].reshape(-1, spec.num_keypoints, 2) + anchors[:, None, :]
    return [Detection(box, kps, float(score)) for box, kps, score in zip(boxes, keypoints, scores[keep])
            if box[2] >= box[0] and box[3] >= box[1]]


def reference_weighted_nms(detections, iou_threshold):
    remaining = sorted(detections, key=lambda d: -d.score)
    merged = []
    while remaining:
        best = remaining[0]
        overlapping = box_iou(best.box, np.stack([d.box for d in remaining])) > iou_threshold
        overlapping[0] = True
        group = [d for d, o in zip(remaining, overlapping) if o]
        weights = np.array([d.score for d in group], np.float32)[:, None]
        box = (np.stack([d.box for d in group]) * weights).sum(0) / weights.sum()
        keypoints = (np.stack([d.keypoints for d in group]) * weights[:, :, None]).sum(0) / weights.sum()
        merged.append(Detection(box, keypoints, best.score))
        remaining = [d for d, o in zip(remaining, overlapping) if not o]
    return merged


def reference_detections_from_outputs(raw_boxes, raw_scores, anchor_centers, spec):
    return reference_weighted_nms(reference_decode_detections(raw_boxes, raw_scores, anchor_centers, spec),
                                  spec.nms_iou)


def reference_project_landmarks(points, rect, padding=None):
    out = np.array(points, np.float32, copy=True)
    if padding is not None and np.any(padding):
        left, top, right, bottom = padding
        out[:, 0] = (out[:, 0] - left) / (1 - left - right)
        out[:, 1] = (out[:, 1] - top) / (1 - top - bottom)
        out[:, 2] = out[:, 2] / (1 - left - right)
    out[:, :2] = rotate(out[:, :2] - 0.5, rect.rotation) * [rect.width, rect.height] + [rect.x_center, rect.y_center]
    out[:, 2] = out[:, 2] * rect.width
    return out


def reference_crop(rgb, rect, tensor_size, keep_aspect=True, border_zero=False, value_range=(0.0, 1.0)):
    height, width = rgb.shape[:2]
    region = rect.to_pixels((width, height))
    padding = np.zeros(4, np.float32)
    if keep_aspect:
        region, padding = letterbox_padding(region, tensor_size)
    tensor_w, tensor_h = tensor_size
    src = cv2.boxPoints(((region.x_center, region.y_center), (region.width, region.height),
                         math.degrees(region.rotation)))
    dst = np.array([[0, tensor_h], [0, 0], [tensor_w, 0], [tensor_w, tensor_h]], np.float32)
    matrix = cv2.getPerspectiveTransform(src.astype(np.float32), dst)
    warped = cv2.warpPerspective(rgb, matrix, (tensor_w, tensor_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT if border_zero else cv2.BORDER_REPLICATE)
    low, high = value_range
    tensor = warped.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    return Crop(tensor[None], padding, rect, region, (low, high))


def reference_usable(rect):
    values = (rect.x_center, rect.y_center, rect.width, rect.height, rect.rotation)
    return bool(np.isfinite(values).all() and rect.width > 0 and rect.height > 0)


# --- real model outputs ---

@pytest.fixture(scope="module")
def pipeline():
    return HolisticPipeline(static_image_mode=True)


@pytest.fixture(scope="module")
def runs(pipeline):
    """Per latency image: (rgb, crops, raw outputs, ROIs) of one static pass."""
    recorded = []
    for rgb in latency_images():
        pipeline.process(rgb)
        recorded.append((rgb, dict(pipeline.last_crops), dict(pipeline.last_outputs), dict(pipeline.last_rois)))
    return recorded


def pose_heatmap_inputs(outputs):
    landmarks, _, _, heatmap = [np.asarray(o, np.float32).reshape(-1) for o in outputs["pose_landmark"][:4]]
    return landmarks.reshape(39, 5)[:, :2] / 256.0, heatmap.reshape(64, 64, 39)


def test_refine_from_heatmap_is_the_per_landmark_loop_on_real_heatmaps(runs):
    refined = edge_windows = 0
    for _, _, outputs, _ in runs:
        xy, heatmap = pose_heatmap_inputs(outputs)
        # shifted copies put windows on the heatmap's edges; then points off it, on its last
        # cell, just left of it (int() truncates -0.6 to 0: still on the map), NaN and inf
        variants = [xy, xy + 0.05, xy - 0.05, xy * 1.1 - 0.05]
        odd = xy.copy()
        odd[:6] = [[-0.02, 0.5], [63.5 / 64, 0.5], [-0.6 / 64, 0.5], [np.nan, 0.5], [0.5, np.inf], [1.0, 0.5]]
        for points in variants + [odd]:
            ours = stages.refine_from_heatmap(points, heatmap)
            expected = reference_refine_from_heatmap(points, heatmap)
            np.testing.assert_array_equal(ours, expected)
            refined += int((ours != points).any(axis=1).sum())
            cells = np.trunc(points[np.isfinite(points).all(axis=1)] * 64)
            on_map = ((cells >= 0) & (cells < 64)).all(axis=1)
            edge_windows += int((on_map & ((cells < 3) | (cells > 60)).any(axis=1)).sum())
    assert refined > 100 and edge_windows > 10  # the comparison covered moved points and cut windows


@pytest.mark.parametrize("min_score", [0.5, 0.05])
def test_detections_are_the_per_detection_code_on_real_detector_outputs(runs, pipeline, min_score):
    checked = 0
    for _, _, outputs, _ in runs:
        for key, stage in (("pose_detection", pipeline.pose_detection), ("face_detection", pipeline.face_detection)):
            boxes, scores = [np.asarray(o, np.float32).reshape(-1) for o in outputs[key][:2]]
            spec = DetectorSpec(stage.spec.input_size, stage.spec.num_keypoints, min_score=min_score)
            expected_decoded = reference_decode_detections(boxes, scores, stage.anchors, spec)
            expected = reference_weighted_nms(expected_decoded, spec.nms_iou)
            for ours, reference in ((decode_detections(boxes, scores, stage.anchors, spec), expected_decoded),
                                    (weighted_nms(expected_decoded, spec.nms_iou), expected),
                                    (detections_from_outputs(boxes, scores, stage.anchors, spec), expected)):
                assert len(ours) == len(reference)
                for a, b in zip(ours, reference):
                    np.testing.assert_array_equal(a.box, b.box)
                    np.testing.assert_array_equal(a.keypoints, b.keypoints)
                    assert a.score == b.score
            checked += len(expected)
            assert len(expected_decoded) >= len(expected)
    assert checked > 2 * len(runs)  # several people / faces, and merged groups, were compared


def test_project_landmarks_is_the_former_projection_on_real_outputs(runs):
    shapes = {"pose_landmark": (39, 5), "face_landmark": (468, 3), "left_hand_landmark": (21, 3),
              "right_hand_landmark": (21, 3)}
    projected = set()
    for _, crops, outputs, _ in runs:
        for key, shape in shapes.items():
            if key not in outputs:  # a part not found on this image
                continue
            projected.add(key)
            points = np.asarray(outputs[key][0], np.float32).reshape(shape)[:, :3] / crops[key].tensor.shape[1]
            for padding in (crops[key].padding, None, np.array([0.1, 0.0, 0.1, 0.0], np.float32)):
                np.testing.assert_array_equal(roi.project_landmarks(points, crops[key].rect, padding),
                                              reference_project_landmarks(points, crops[key].rect, padding))
    assert projected == set(shapes)


@pytest.mark.parametrize("size, keep_aspect, border_zero, value_range", [
    ((224, 224), True, True, (-1.0, 1.0)), ((256, 256), True, False, (0.0, 1.0)),
    ((192, 192), False, False, (0.0, 1.0)), ((128, 128), True, True, (-1.0, 1.0))])
def test_crop_is_the_former_crop_on_the_cascade_rois(runs, size, keep_aspect, border_zero, value_range):
    for rgb, _, _, rois in runs:
        for rect in rois.values():
            ours = roi.crop(rgb, rect, size, keep_aspect, border_zero, value_range)
            expected = reference_crop(rgb, rect, size, keep_aspect, border_zero, value_range)
            np.testing.assert_array_equal(ours.tensor, expected.tensor)
            np.testing.assert_array_equal(ours.padding, expected.padding)
            assert ours.roi_px == expected.roi_px


@pytest.mark.parametrize("values", [(0.5, 0.5, 0.2, 0.3, 0.1), (0.5, np.nan, 0.2, 0.3, 0.0),
                                    (0.5, 0.5, np.inf, 0.3, 0.0), (0.5, 0.5, 0.2, 0.3, -np.inf),
                                    (0.5, 0.5, 0.0, 0.3, 0.0), (0.5, 0.5, 0.2, -0.1, 0.0),
                                    (np.float32(0.5), 0.5, np.float64(0.2), np.float32(0.3), 0.0)])
def test_rect_usable_is_the_former_check(values):
    rect = Rect(*values)
    assert rect.usable is reference_usable(rect)


def with_references(monkeypatch):
    """The pipeline's pre/post-processing back on the reference code."""
    monkeypatch.setattr(stages, "refine_from_heatmap", reference_refine_from_heatmap)
    monkeypatch.setattr(stages, "detections_from_outputs", reference_detections_from_outputs)
    monkeypatch.setattr(stages, "project_landmarks", reference_project_landmarks)
    monkeypatch.setattr(stages, "crop", reference_crop)
    monkeypatch.setattr(Rect, "usable", property(reference_usable))


def run_frames(pipeline, frames):
    pipeline.reset()
    results = []
    for rgb in frames:
        result = pipeline.process(rgb)
        results.append((result, {k: astuple(r) for k, r in pipeline.last_rois.items()}, dict(pipeline.last_roi_sources)))
    return results


def assert_same_results(ours, expected):
    for (result, rois, sources), (reference, reference_rois, reference_sources) in zip(ours, expected, strict=True):
        assert result.present == reference.present and sources == reference_sources
        np.testing.assert_allclose(result.xyz, reference.xyz, rtol=0, atol=1e-5)
        np.testing.assert_allclose(result.visibility, reference.visibility, rtol=0, atol=1e-5)
        assert rois.keys() == reference_rois.keys()
        for key in rois:
            np.testing.assert_allclose(rois[key], reference_rois[key], rtol=0, atol=1e-5)


def test_static_results_on_the_latency_images_are_those_of_the_reference_code(pipeline, monkeypatch):
    images = latency_images()
    ours = run_frames(pipeline, images)
    with monkeypatch.context() as patch:
        with_references(patch)
        expected = run_frames(pipeline, images)
    assert sum(result.present["left_hand"] for result, _, _ in ours) >= 1
    assert_same_results(ours, expected)


def test_video_results_on_a_fixture_clip_are_those_of_the_reference_code(monkeypatch):
    frames = [rgb for _, rgb in itertools.islice(iter_video_frames(fixture_videos()["pose_squats.mp4"]), VIDEO_FRAMES)]
    pipeline = HolisticPipeline(static_image_mode=False)
    ours = run_frames(pipeline, frames)
    with monkeypatch.context() as patch:
        with_references(patch)
        expected = run_frames(pipeline, frames)
    assert sum(sources.get("left_hand") == "tracking" for _, _, sources in ours) >= 5  # the track was followed
    assert_same_results(ours, expected)
