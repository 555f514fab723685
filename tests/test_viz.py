"""Drawing: each part in its own colour where its points are."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import to_hex, to_rgb
import numpy as np
import pytest

from holistic_lab import augment
from holistic_lab.datasets import sample_image, sample_labels
from holistic_lab.pipeline.roi import rect_from_box
from holistic_lab.pipeline.show import draw_roi_chain
from holistic_lab.viz import (PART_COLORS, PART_LABELS, coco_wholebody_color_groups, draw, draw_cv2, draw_offsets,
                              edge_group, legend_handles)


def test_draw_cv2_paints_each_present_part_in_its_colour():
    rgb, result = sample_image("astronaut"), sample_labels("astronaut")
    canvas = draw_cv2(rgb, result)
    assert canvas.shape == rgb.shape and canvas.dtype == np.uint8
    assert not np.shares_memory(canvas, rgb)
    for group in ("pose", "pose_left", "pose_right", "face"):
        assert (canvas == PART_COLORS[group]).all(axis=2).sum() > 3, group
    nose_x, nose_y = np.round(result.pixels()[0]).astype(int)
    assert (canvas[nose_y - 3:nose_y + 4, nose_x - 3:nose_x + 4] != rgb[nose_y - 3:nose_y + 4, nose_x - 3:nose_x + 4]).any()
    with_mesh = draw_cv2(rgb, result, mesh=True)
    assert (with_mesh != canvas).any()
    pose_only = draw_cv2(rgb, result, parts=["pose"])
    assert not (pose_only == PART_COLORS["face"]).all(axis=2).any()


def test_draw_matplotlib_and_bad_parts():
    rgb, result = sample_image("grace_hopper"), sample_labels("grace_hopper")
    ax = draw(rgb, result, mesh=True, title="grace_hopper")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == [PART_LABELS[g] for g in ("pose", "pose_left", "pose_right", "face")]
    with pytest.raises(ValueError, match="unknown parts"):
        draw_cv2(rgb, result, parts=["tail"])


def test_left_and_right_body_sides_get_different_colours():
    rgb, result = sample_image("astronaut"), sample_labels("astronaut")
    left_arm, right_arm = (11, 13), (12, 14)          # shoulder -> elbow, subject's left and right
    assert edge_group(*left_arm) == "pose_left" and edge_group(*right_arm) == "pose_right"
    assert PART_COLORS[edge_group(*left_arm)] != PART_COLORS[edge_group(*right_arm)]
    assert edge_group(11, 12) == "pose"              # the shoulder line joins both sides
    canvas = draw_cv2(rgb, result, parts=["pose"])
    for group in ("pose_left", "pose_right"):
        assert (canvas == PART_COLORS[group]).all(axis=2).sum() > 20, group
    ax = draw(rgb, result, parts=["pose"])
    colours = {tuple(np.round(c.get_colors()[0][:3] * 255).astype(int)) for c in ax.collections if hasattr(c, "get_colors")}
    assert {PART_COLORS["pose_left"], PART_COLORS["pose_right"]} <= colours
    plt.close("all")


def test_every_colour_drawn_comes_from_part_colors():
    rgb, result = sample_image("grace_hopper"), sample_labels("grace_hopper")
    fig, axes = plt.subplots(1, 3)
    draw(rgb, result, ax=axes[0], mesh=True)
    other = augment.flip_horizontal(rgb, result)[1]
    draw_offsets(axes[1], other, result)
    draw_roi_chain(rgb, {"pose": rect_from_box([0.2, 0.1, 0.8, 0.9]), "left_hand": rect_from_box([0.1, 0.5, 0.3, 0.7])},
                   axes[2])
    allowed = {tuple(np.array(c) / 255) for c in PART_COLORS.values()}
    used = set()
    for ax in axes:
        for artist in ax.collections:
            used |= {tuple(np.round(c[:3], 6)) for c in artist.get_facecolors()} if not hasattr(artist, "get_colors") \
                else {tuple(np.round(c[:3], 6)) for c in artist.get_colors()}
        used |= {tuple(np.round(to_rgb(line.get_color()), 6)) for line in ax.lines}
    assert used and used <= {tuple(np.round(c, 6)) for c in allowed}, used - allowed
    plt.close("all")


def test_legend_has_one_visible_entry_per_colour_drawn():
    rgb, result = sample_image("astronaut"), sample_labels("astronaut")
    ax = draw(rgb, result)
    handles, labels = ax.get_legend_handles_labels()
    assert labels == [PART_LABELS[g] for g in ("pose", "pose_left", "pose_right", "face")]
    for handle in handles:   # an entry with neither a marker nor a line is invisible (the face's was)
        assert handle.get_marker() not in (None, "", "None") and handle.get_markersize() > 0, handle.get_label()
    assert [to_hex(h.get_color()) for h in legend_handles(["face"])] == [to_hex(np.array(PART_COLORS["face"]) / 255)]
    plt.close("all")


def test_draw_offsets_draws_one_segment_per_point_known_in_both():
    rgb, result = sample_image("astronaut"), sample_labels("astronaut")
    _, naive = augment.naive_flip_horizontal(rgb, result)
    _, right = augment.flip_horizontal(rgb, result)
    fig, ax = plt.subplots()
    draw_offsets(ax, naive, right, parts=["pose"])
    segments = np.concatenate([c.get_segments() for c in ax.collections])
    assert len(segments) == np.isfinite(right.xyz[:33, 0]).sum()
    lengths = np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1)
    assert lengths.max() > 20      # a left point drawn where its right twin is
    plt.close("all")


def test_coco_wholebody_points_get_the_colour_of_their_543_row():
    groups = coco_wholebody_color_groups()
    assert len(groups) == 133 and set(groups) <= set(PART_COLORS)
    assert groups[5] == "pose_left" and groups[6] == "pose_right"      # COCO left/right shoulder
    assert groups[18] == "pose_left" and groups[21] == "pose_right"    # the small toes, which have no 543 row
    assert groups[91] == "left_hand" and groups[50] == "face"
