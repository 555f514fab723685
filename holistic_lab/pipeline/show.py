"""Pictures of the cascade for notebooks: the ROI chain on the image and each stage's crop."""
from __future__ import annotations

import numpy as np

from ..viz import PART_COLORS

# ROI name -> (colour part, line style): dashed = first guess from the pose, solid = final crop.
ROI_STYLES = {
    "pose": ("pose", "-"),
    "face_from_pose": ("face", "--"), "face": ("face", "-"),
    "left_hand_from_pose": ("left_hand", "--"), "left_hand": ("left_hand", "-"),
    "right_hand_from_pose": ("right_hand", "--"), "right_hand": ("right_hand", "-"),
}


def draw_roi_chain(rgb: np.ndarray, rois: dict, ax) -> None:
    """Draw every rotated ROI of one `process` call; a dot marks each crop's top edge centre.

    The view grows past the image where a ROI does (the pose ROI of an upper-body shot
    reaches far below the frame), so every box is seen whole.
    """
    image_size = (rgb.shape[1], rgb.shape[0])
    ax.imshow(rgb)
    corners_all = [np.array([[0, 0], image_size])]
    for name, rect in rois.items():
        part, style = ROI_STYLES[name]
        corners = rect.corners_px(image_size)
        color = np.array(PART_COLORS[part]) / 255
        ax.plot(*np.vstack([corners, corners[:1]]).T, style, color=color, lw=1.5, label=name)
        ax.plot(*corners[:2].mean(0), "o", color=color, ms=4)
        corners_all.append(corners)
    (x0, y0), (x1, y1) = np.vstack(corners_all).min(0), np.vstack(corners_all).max(0)
    ax.set_xlim(x0 - 5, x1 + 5)
    ax.set_ylim(y1 + 5, y0 - 5)
    ax.set_axis_off()


def show_crops(crops: dict, axes) -> None:
    """Each stage's model input as the model saw it, titled with the stage and tensor size."""
    for ax, (name, model_input) in zip(axes, crops.items()):
        ax.imshow(model_input.image())
        ax.set_title(f"{name}\n{model_input.tensor.shape[2]}x{model_input.tensor.shape[1]}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
