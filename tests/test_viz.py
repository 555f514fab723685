"""Drawing: each part in its own colour where its points are."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from holistic_lab.datasets import sample_image, sample_labels
from holistic_lab.viz import PART_COLORS, draw, draw_cv2


def test_draw_cv2_paints_each_present_part_in_its_colour():
    rgb, result = sample_image("astronaut"), sample_labels("astronaut")
    canvas = draw_cv2(rgb, result)
    assert canvas.shape == rgb.shape and canvas.dtype == np.uint8
    assert not np.shares_memory(canvas, rgb)
    for part in ("pose", "face"):
        assert (canvas == PART_COLORS[part]).all(axis=2).sum() > 20, part
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
    assert labels == ["pose", "face"]
    with pytest.raises(ValueError, match="unknown parts"):
        draw_cv2(rgb, result, parts=["tail"])
