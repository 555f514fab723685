"""COCO-style keypoint JSON (images + annotations with x, y, v triplets) read into Samples.

COCO, COCO-WholeBody, AI Challenger, PoseTrack18, 300-W, FreiHAND and CMU Panoptic (as
MMPose distributes them) all share this shape; they differ in which point lists an
annotation carries and what each point is. A `KeypointLayout` says that: the JSON fields
in order, where each point goes in the 543 layout (-1: nowhere) and which boxes exist.
`load_coco_keypoints` checks every annotation and names the annotation id and field of
anything wrong, so a bad file is refused by name (or, with strict=False, skipped and
reported): types, lengths, NaN, unique ids, labelled points near the image, and each
annotated image's file, which must lie inside the image root (symlinks resolved) and, where
it exists, have the size the JSON gives it (read from its header, not decoded, with its EXIF
orientation applied as every decoder here applies it).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..files import read_json_object
from ..images import image_size
from ..topology import COCO_BODY_TO_POSE, IBUG68_TO_FACE_MESH, NUM_KEYPOINTS, PARTS
from .sample import Sample

# How far outside the image a labelled point may lie, as a share of the image's size. Labels
# can sit a little outside (PoseTrack marks joints just past the frame edge: up to 2.3% of the
# image in the fixture pack); a quarter of the image is ten times that and still refuses what
# no annotator placed: a sign or unit error, another image's size, 1e6.
OUTSIDE_MARGIN = 0.25


@dataclass(frozen=True)
class KeypointLayout:
    """One annotation layout: `fields` are (JSON key, point count) concatenated in order;
    `to_543[k]` is the 543-layout row of point k or -1; `box_fields` maps a Sample box
    name to the JSON key of its (x, y, w, h) box."""
    name: str
    fields: tuple[tuple[str, int], ...]
    to_543: tuple[int, ...]
    box_fields: dict[str, str] = field(default_factory=lambda: {"body": "bbox"})

    def __post_init__(self):
        count = sum(n for _, n in self.fields)
        if len(self.to_543) != count:
            raise ValueError(f"layout {self.name}: to_543 has {len(self.to_543)} entries for {count} points")
        mapped = [i for i in self.to_543 if i >= 0]
        if len(set(mapped)) != len(mapped) or not all(0 <= i < NUM_KEYPOINTS for i in mapped):
            raise ValueError(f"layout {self.name}: to_543 must be one-to-one into 0..{NUM_KEYPOINTS - 1}")

    @property
    def num_points(self) -> int:
        return len(self.to_543)

    @property
    def index(self) -> np.ndarray:
        return np.asarray(self.to_543, np.int64)


class Samples(list):
    """A list of Samples plus `skipped`: 'annotation <id>: <why>' for each annotation left out."""

    def __init__(self, items=(), skipped=()):
        super().__init__(items)
        self.skipped: list[str] = list(skipped)


def read_json(path) -> dict:
    """Parse a COCO-style JSON file; not-JSON or a missing images/annotations list is a ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"annotation file not found: {path}")
    data = read_json_object(path, "a COCO file with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: missing key {key!r} (a list)")
    return data


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_table(data: dict, path: Path) -> dict:
    images = {}
    for number, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image:
            raise ValueError(f"{path}: images[{number}] has no 'id'")
        for key in ("file_name", "width", "height"):
            if key not in image:
                raise ValueError(f"{path}: image {image['id']}: missing field {key!r}")
        if not (_is_int(image["width"]) and _is_int(image["height"]) and image["width"] > 0 and image["height"] > 0):
            raise ValueError(f"{path}: image {image['id']}: width and height must be positive integers, "
                             f"got {image['width']!r} x {image['height']!r}")
        if not _is_int(image["id"]):
            raise ValueError(f"{path}: images[{number}]: id must be an integer, got {image['id']!r}")
        if image["id"] in images:
            raise ValueError(f"{path}: image id {image['id']} appears twice")
        images[image["id"]] = image
    return images


def _numbers(annotation: dict, key: str, expected: int, ann_id) -> np.ndarray:
    if key not in annotation:
        raise ValueError(f"annotation {ann_id}: missing field {key!r}")
    values = annotation[key]
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"annotation {ann_id}: {key} must be a list of numbers")
    if len(values) != expected:
        raise ValueError(f"annotation {ann_id}: {key} has {len(values)} values, expected {expected}")
    try:
        finite = all(math.isfinite(v) for v in values)
    except OverflowError:  # an int too large for a float, e.g. 10**400
        finite = False
    if not finite:
        raise ValueError(f"annotation {ann_id}: {key} contains NaN or infinite values")
    return np.asarray(values, np.float64)


def _is_file_name(name: str) -> bool:
    try:  # JSON can spell a lone surrogate that no file name holds (os.fsdecode makes only \udc80-\udcff)
        os.fsencode(name)
    except UnicodeEncodeError:
        return False
    return "\0" not in name


def image_file_problems(images: dict, image_root: Path, image_ids=None) -> dict:
    """image id -> why its file is refused: a file_name that is absolute or leaves `image_root`
    (symlinks resolved), or a file whose header is unreadable, too large, or of another size
    than the JSON's width x height (as shown: EXIF orientation applied, as `load_rgb` and
    `label` see it). Only `image_ids` are checked (default: all). A file that does not exist
    is not checked here: reading its pixels names it."""
    root = Path(image_root).resolve()
    problems = {}
    for image_id in images if image_ids is None else [i for i in images if i in image_ids]:
        image = images[image_id]
        name = image["file_name"]
        if not isinstance(name, str) or not name:
            problems[image_id] = f"file_name must be a relative path, got {name!r}"
        elif not _is_file_name(name):
            problems[image_id] = f"file_name {name!r} is not a valid file name"
        elif Path(name).is_absolute():
            problems[image_id] = f"file_name {name!r} is absolute; expected a path inside the image root {image_root}"
        elif not (root / name).resolve().is_relative_to(root):
            problems[image_id] = f"file_name {name!r} lies outside the image root {image_root}"
        elif (root / name).is_file():
            try:
                size = image_size(root / name, f"{name!r}", oriented=True)
            except ValueError as exc:  # over Pillow's own ceiling
                problems[image_id] = str(exc)
                continue
            expected = (image["width"], image["height"])
            if size is None:
                problems[image_id] = f"{name!r} is not a readable image"
            elif size != expected:
                problems[image_id] = (f"the JSON says {expected[0]}x{expected[1]}, but {Path(name).name} is "
                                      f"{size[0]}x{size[1]}")
    return problems


def far_outside(xy_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N,) bool: which pixel points lie outside the image by more than OUTSIDE_MARGIN of its size."""
    size = np.array([width, height])
    return ((xy_px < -OUTSIDE_MARGIN * size) | (xy_px > (1 + OUTSIDE_MARGIN) * size)).any(axis=1)


def _check_near_the_image(raw: np.ndarray, layout: KeypointLayout, ann_id, width: int, height: int) -> None:
    outside = (raw[:, 2] > 0) & far_outside(raw[:, :2], width, height)
    if not outside.any():
        return
    point = int(np.argmax(outside))
    starts = np.cumsum([0] + [n for _, n in layout.fields])
    field_number = int(np.searchsorted(starts, point, side="right")) - 1
    x, y = raw[point, :2]
    raise ValueError(f"annotation {ann_id}: {layout.fields[field_number][0]} point {point - starts[field_number]} "
                     f"(x={x:g}, y={y:g}) lies outside the {width}x{height} image by more than "
                     f"{OUTSIDE_MARGIN:.0%} of its size")


def sample_from_annotation(annotation: dict, images: dict, layout: KeypointLayout, image_root: Path,
                           image_problems: dict | None = None) -> Sample:
    """One checked annotation -> Sample; any problem is a ValueError naming the annotation and field.
    `image_problems` (from `image_file_problems`) refuses the annotations of an image whose file is bad."""
    if not isinstance(annotation, dict):
        raise ValueError(f"annotation {annotation!r}: not a JSON object")
    ann_id = annotation.get("id")
    if ann_id is None:
        raise ValueError("annotation without 'id'")
    if not _is_int(ann_id):
        raise ValueError(f"annotation {ann_id!r}: id must be an integer, got {ann_id!r}")
    if "image_id" not in annotation:
        raise ValueError(f"annotation {ann_id}: missing field 'image_id'")
    if not _is_int(annotation["image_id"]):
        raise ValueError(f"annotation {ann_id}: image_id must be an integer, got {annotation['image_id']!r}")
    image = images.get(annotation["image_id"])
    if image is None:
        raise ValueError(f"annotation {ann_id}: image_id {annotation['image_id']!r} is not in images")
    if image_problems and annotation["image_id"] in image_problems:
        raise ValueError(f"annotation {ann_id}: image {annotation['image_id']}: {image_problems[annotation['image_id']]}")
    raw = np.concatenate([_numbers(annotation, key, 3 * n, ann_id).reshape(n, 3) for key, n in layout.fields])
    _check_near_the_image(raw, layout, ann_id, image["width"], image["height"])
    boxes = {}
    for box_name, key in layout.box_fields.items():
        if key in annotation:
            box = _numbers(annotation, key, 4, ann_id)
            if box[2] > 0 and box[3] > 0:
                boxes[box_name] = tuple(float(v) for v in box)
    width, height = image["width"], image["height"]
    xyz = np.full((NUM_KEYPOINTS, 3), np.nan, np.float32)
    mask = np.zeros(NUM_KEYPOINTS, bool)
    valid = raw[:, 2] > 0
    index = layout.index
    rows = valid & (index >= 0)
    xyz[index[rows], 0] = raw[rows, 0] / width
    xyz[index[rows], 1] = raw[rows, 1] / height
    mask[index[rows]] = True
    keypoint_keys = {key for key, _ in layout.fields}
    return Sample(
        image_path=str(image_root / image["file_name"]), width=width, height=height, xyz=xyz, mask=mask,
        ann_id=int(ann_id), image_id=int(annotation["image_id"]), boxes=boxes, source=layout.name,
        source_keypoints=raw,
        extras={"annotation": {k: v for k, v in annotation.items() if k not in keypoint_keys}, "image": image},
    )


LayoutChoice = KeypointLayout | Callable[[dict], KeypointLayout]


def default_image_root(data: dict, json_path: Path) -> Path:
    """The folder a COCO file's file_names are relative to: its `info.image_root` if it has one
    (absolute, or relative to the JSON's folder), else the JSON's folder."""
    info = data.get("info")
    named = info.get("image_root") if isinstance(info, dict) else None
    if named is None:
        return json_path.parent
    if not isinstance(named, str) or not named:
        raise ValueError(f"{json_path}: info.image_root must be a folder path (text), got {named!r}")
    return json_path.parent / named


def load_coco_keypoints(json_path, layout: LayoutChoice, image_root=None, strict: bool = True) -> Samples:
    """Every annotation of a COCO-style file as a Sample in the 543 layout.

    `layout` is a KeypointLayout or a function image record -> layout (e.g. left or right
    hand by file name). `image_root` defaults to the folder the JSON's `info.image_root`
    names (relative to the JSON's folder; `coco_wholebody.export_labels` writes it), else the
    JSON's folder; every file_name must resolve inside it. strict=True raises on
    the first bad annotation; strict=False skips bad annotations (an id seen before, one
    whose image file is refused) and lists them in `.skipped` (file-level problems, such as
    an image record without a positive integer width, always raise).
    """
    path = Path(json_path)
    data = read_json(path)
    images = _image_table(data, path)
    root = Path(image_root) if image_root is not None else default_image_root(data, path)
    in_use = {a.get("image_id") for a in data["annotations"] if isinstance(a, dict) and _is_int(a.get("image_id"))}
    image_problems = image_file_problems(images, root, in_use)  # COCO train lists 118k images
    samples = Samples()
    first_position: dict[int, int] = {}
    for position, annotation in enumerate(data["annotations"]):
        try:
            ann_id = annotation.get("id") if isinstance(annotation, dict) else None
            if _is_int(ann_id):  # before any other check: a bad first copy does not clear the second
                seen = first_position.setdefault(ann_id, position)
                if seen != position:
                    raise ValueError(f"annotation {ann_id}: id appears twice "
                                     f"(annotations[{seen}] and annotations[{position}])")
            image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
            image = images.get(image_id, {}) if _is_int(image_id) else {}
            chosen = layout(image) if callable(layout) else layout
            samples.append(sample_from_annotation(annotation, images, chosen, root, image_problems))
        except ValueError as exc:
            if strict:
                raise ValueError(f"{path}: {exc}") from exc
            samples.skipped.append(str(exc))
    return samples


def _layout(name, fields, to_543, **boxes):
    return KeypointLayout(name, fields, tuple(to_543), boxes or {"body": "bbox"})


def _hand(side: str):
    start = PARTS[side].start
    return range(start, start + 21)


COCO17 = _layout("coco17", (("keypoints", 17),), COCO_BODY_TO_POSE)
# AI Challenger: right shoulder, elbow, wrist, left shoulder, elbow, wrist, right hip, knee,
# ankle, left hip, knee, ankle, head top, neck; the last two have no BlazePose point.
AIC14 = _layout("aic14", (("keypoints", 14),), (12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, -1, -1))
# PoseTrack18: COCO-17 with left_eye, right_eye replaced by head_bottom, head_top (unmapped).
POSETRACK17 = _layout("posetrack18", (("keypoints", 17),), (COCO_BODY_TO_POSE[0], -1, -1, *COCO_BODY_TO_POSE[3:]))
HAND21_LEFT = _layout("hand21_left", (("keypoints", 21),), _hand("left_hand"), left_hand="bbox")
HAND21_RIGHT = _layout("hand21_right", (("keypoints", 21),), _hand("right_hand"), right_hand="bbox")
FACE68 = _layout("ibug68", (("keypoints", 68),), [PARTS["face"].start + i for i in IBUG68_TO_FACE_MESH], face="bbox")
