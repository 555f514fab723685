"""What fine-tuning needs to know about each Holistic landmark model: its crop, its outputs, its part of the 543 layout.

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

Crops (`train.data`) are cut as the cascade cuts them: face 192x192 stretched, hands and pose
letterboxed; a part needs its `required` points (the ones that set the ROI's rotation) and
`min_known` known points to place the ROI at all.
"""
from __future__ import annotations

from dataclasses import dataclass

# the loss terms and their default weights (`losses` says what each is); here, free of Keras, so a
# config can be read and checked without loading TensorFlow
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"landmarks": 1.0, "z": 0.1, "presence": 0.1, "visibility": 0.1,
                                          "teacher": 0.5, "teacher_outputs": 0.1}


@dataclass(frozen=True)
class TrainModule:
    name: str                     # the job API's module name
    model_name: str               # the shipped model (mediapipe_models.model_path)
    part: str                     # the 543-layout part its labels come from ("hand": left_hand or right_hand)
    input_size: int               # square crop side in pixels
    keep_aspect: bool             # letterboxed (True) or stretched (False), as the cascade crops it
    required: tuple[int, ...]     # part-local points the ROI cannot be placed without
    min_known: int                # fewest known points of the part worth a training sample
    num_points: int               # points in the landmark output
    values_per_point: int         # x, y, z (+ visibility, presence for pose)
    z_per_pixel: float            # model z units per crop pixel
    landmarks_output: str
    presence_output: str
    presence_is_logit: bool
    teacher_only_outputs: tuple[str, ...]   # outputs trained only towards the shipped model's values
    default_learning_rate: float = 1e-4     # Adam's step when the job gives none
    logit_outputs: tuple[str, ...] = ()     # of those, logits (compared as probabilities: raw segmentation
                                            # logits reach -1500 and would swamp every other term)

    @property
    def stage(self) -> str:
        """The cascade stage (and variant file) this module's model runs as."""
        return {"face_landmark": "face_landmark", "hand_landmark_full": "hand_landmark",
                "pose_landmark_full": "pose_landmark"}[self.model_name]


MODULES: dict[str, TrainModule] = {
    # eye corners set the rotation; the box needs most of the mesh to be the cascade's box
    "face_mesh": TrainModule("face_mesh", "face_landmark", "face", 192, False, (33, 263), 400, 468, 3, 1.0,
                             "conv2d_21", "conv2d_31", True, ()),
    # wrist, thumb tip, index PIP and tip set the rotation (hand_rect_from_landmarks)
    "hands": TrainModule("hands", "hand_landmark_full", "hand", 224, True, (0, 4, 6, 8), 15, 21, 3, 0.4,
                         "Identity", "Identity_1", False, ("Identity_2", "Identity_3")),
    # shoulders and hips set the centre and direction
    "pose": TrainModule("pose", "pose_landmark_full", "pose", 256, True, (11, 12, 23, 24), 8, 39, 5, 1.0,
                        "Identity", "Identity_1", False, ("Identity_2", "Identity_3", "Identity_4"),
                        # Adam's first steps at 1e-4 moved its landmarks by about 30 crop pixels
                        # before they recovered (tests/test_train_loop.py); 1e-5 descends at once
                        default_learning_rate=1e-5, logit_outputs=("Identity_2", "Identity_3")),
}


def train_module(name: str) -> TrainModule:
    """The module called `name`, or a ValueError listing the known ones."""
    if name not in MODULES:
        raise ValueError(f"module: unknown module {name!r}; expected one of {tuple(MODULES)}")
    return MODULES[name]
