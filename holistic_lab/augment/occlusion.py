"""Synthetic occluders placed from the keypoints: a patch over the mouth or over a hand.

Real occlusion in holistic data is mostly self-occlusion (a hand in front of the mouth, a
hand holding something); random cutouts (albumentations' CoarseDropout) rarely hit exactly
those parts. `PartOccluder` is an albumentations dropout whose hole is the box around the
chosen part, read from the 543 keypoints inside the pipeline, so it composes with every
other transform and sees the points where the geometric transforms put them.

The labels are left as they are: the point of the augmentation is to teach a model to
infer a covered mouth or hand, as MediaPipe's own models do.
"""
from __future__ import annotations

import functools

from albumentations.augmentations.dropout.transforms import BaseDropout
import numpy as np

from ..topology import NUM_KEYPOINTS, PARTS, POSE_LANDMARK_NAMES

OCCLUDABLE_PARTS = ("mouth", "left_hand", "right_hand")
# Pose landmarks that stand in for a part when its own model's points are absent.
_POSE_STAND_INS = {
    "mouth": ("mouth_left", "mouth_right"),
    "left_hand": ("left_wrist", "left_pinky", "left_index", "left_thumb"),
    "right_hand": ("right_wrist", "right_pinky", "right_index", "right_thumb"),
}
_MIN_HOLE_PX = 4


@functools.lru_cache(maxsize=None)
def mouth_indices() -> np.ndarray:
    """543-layout rows of the face mesh's lip points (mediapipe's FACEMESH_LIPS)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    local = sorted({i for edge in FACEMESH_LIPS for i in edge})
    return PARTS["face"].start + np.array(local)


def part_rows(part: str) -> tuple[np.ndarray, np.ndarray]:
    """(own rows, pose stand-in rows) of an occludable part."""
    if part not in OCCLUDABLE_PARTS:
        raise ValueError(f"unknown occludable part {part!r}; expected one of {OCCLUDABLE_PARTS}")
    own = mouth_indices() if part == "mouth" else np.arange(PARTS[part].start, PARTS[part].stop)
    stand_in = np.array([POSE_LANDMARK_NAMES.index(name) for name in _POSE_STAND_INS[part]])
    return own, stand_in


def part_box(xy: np.ndarray, known: np.ndarray, part: str, margin: float) -> np.ndarray | None:
    """[x1, y1, x2, y2] pixel box over `part` grown by `margin` (1.0 = tight), or None if unknown.

    Uses the part's own points when they are known, else its pose stand-ins; the pose's
    two mouth corners span about half the mouth box, the four hand points about half a
    hand, hence the extra factor 2 for stand-ins.
    """
    own, stand_in = part_rows(part)
    rows, factor = (own, 1.0) if known[own].all() else (stand_in, 2.0)
    if not known[rows].all():
        return None
    points = xy[rows]
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2
    half = np.maximum((high - low) / 2 * margin * factor, _MIN_HOLE_PX)
    if part == "mouth" and rows is stand_in:
        half[1] = max(half[1], 0.6 * half[0])  # two corners have no height
    return np.concatenate([centre - half, centre + half])


class PartOccluder(BaseDropout):
    """Cover one of `parts` (chosen at random among those with known points) with a patch.

    Works only inside a `KeypointAugmenter` pipeline, which passes the 543 points (absent
    ones with keypoint scale 0). `margin` grows the part's box (1.0 = tight around its
    points); `fill` is any albumentations dropout fill ("random", "random_uniform",
    "inpaint_telea", a grey value, an RGB tuple).
    """

    def __init__(self, parts=OCCLUDABLE_PARTS, margin: float = 1.3, fill="random", p: float = 0.5):
        super().__init__(fill=fill, fill_mask=None, p=p)
        parts = (parts,) if isinstance(parts, str) else tuple(parts)
        for part in parts:
            part_rows(part)
        if not parts:
            raise ValueError("PartOccluder needs at least one part")
        if margin <= 0:
            raise ValueError(f"margin must be > 0, got {margin}")
        self.parts, self.margin = parts, float(margin)

    def get_params_dependent_on_data(self, params, data) -> dict:
        keypoints = data.get("keypoints")
        if keypoints is None or len(keypoints) < NUM_KEYPOINTS:
            raise ValueError("PartOccluder needs the 543 Holistic keypoints: run it inside a KeypointAugmenter")
        height, width = params["shape"][:2]
        xy, known = keypoints[:NUM_KEYPOINTS, :2] + 0.5, keypoints[:NUM_KEYPOINTS, 4] > 0
        boxes = [box for part in self.parts if (box := part_box(xy, known, part, self.margin)) is not None]
        boxes = [b for b in boxes if b[2] > 0 and b[3] > 0 and b[0] < width and b[1] < height]
        seed = self.py_random.randint(0, 2**31 - 1)
        if not boxes:
            return {"holes": np.empty((0, 4), np.int32), "seed": seed}
        box = boxes[self.py_random.randrange(len(boxes))]
        x1, y1 = np.clip(np.floor(box[:2]), 0, [width - 1, height - 1])
        x2, y2 = np.clip(np.ceil(box[2:]), [x1 + 1, y1 + 1], [width, height])
        return {"holes": np.array([[x1, y1, x2, y2]], np.int32), "seed": seed}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("parts", "margin", "fill")
