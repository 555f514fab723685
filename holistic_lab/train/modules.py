"""What fine-tuning needs to know about each Holistic landmark model: its outputs and its rows of the 543 layout.

A module (the job API's `module`) is one landmark model run on one kind of ROI crop:

  module      model               input  landmark output          543 rows -> model points
  face_mesh   face_landmark       192    conv2d_21 (1, 1, 1404)   face 33:501 -> the 468 mesh vertices
                                         = 468 x (x, y, z)
  hands       hand_landmark_full  224    Identity (63)            left_hand 501:522 or right_hand
                                         = 21 x (x, y, z)         522:543 -> the 21 points (no flip)
  pose        pose_landmark_full  256    Identity (195)           pose 0:33 -> the first 33 of 39
                                         = 39 x (x, y, z,         (33:39 are auxiliary points, no
                                           visibility, presence)   human label: teacher only)

x, y (and z) are in the model's input pixels, except the hand model's z, which is 0.4 x pixels
(MediaPipe's hand TensorsToLandmarksCalculator normalises z by 0.4; `z_per_pixel`). Presence
is a logit for the face (sigmoid in FaceLandmark), a probability for hands and pose; pose
visibility and per-point presence are logits. The other outputs (hand handedness and world
points, pose segmentation, heatmaps and world points) have no human label in the project's
data sets and are trained only towards the shipped model's own values (`losses`).
Output names and meanings are `holistic_lab.convert.OUTPUT_MEANINGS`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..topology import PARTS


@dataclass(frozen=True)
class TrainModule:
    name: str                     # the job API's module name
    model_name: str               # the shipped model (mediapipe_models.model_path)
    input_size: int               # square crop side in pixels
    rois: dict[str, slice]        # make_dataset ROI name -> the 543 rows of the model's first points
    num_points: int               # points in the landmark output
    values_per_point: int         # x, y, z (+ visibility, presence for pose)
    z_per_pixel: float            # model z units per crop pixel
    landmarks_output: str
    presence_output: str
    presence_is_logit: bool
    teacher_only_outputs: tuple[str, ...]   # outputs trained only towards the shipped model's values


MODULES: dict[str, TrainModule] = {
    "face_mesh": TrainModule("face_mesh", "face_landmark", 192, {"face": PARTS["face"]}, 468, 3, 1.0,
                             "conv2d_21", "conv2d_31", True, ()),
    "hands": TrainModule("hands", "hand_landmark_full", 224,
                         {"left_hand": PARTS["left_hand"], "right_hand": PARTS["right_hand"]}, 21, 3, 0.4,
                         "Identity", "Identity_1", False, ("Identity_2", "Identity_3")),
    "pose": TrainModule("pose", "pose_landmark_full", 256, {"body": PARTS["pose"]}, 39, 5, 1.0,
                        "Identity", "Identity_1", False, ("Identity_2", "Identity_3", "Identity_4")),
}


def train_module(name: str) -> TrainModule:
    """The module called `name`, or a ValueError listing the known ones."""
    if name not in MODULES:
        raise ValueError(f"module: unknown module {name!r}; expected one of {tuple(MODULES)}")
    return MODULES[name]
