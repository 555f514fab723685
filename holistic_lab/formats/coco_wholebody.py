"""COCO-WholeBody (133 points per person) <-> the 543 layout, both ways.

Follows the COCO-WholeBody format of Jin et al., "Whole-Body Human Pose Estimation in
the Wild" (ECCV 2020; github.com/jin-s13/COCO-WholeBody): per annotation `keypoints`
(17 body), `foot_kpts` (6), `face_kpts` (68 iBUG), `lefthand_kpts`, `righthand_kpts`
(21 each) as x, y, v triplets in pixels, plus `bbox`, `face_box`, `lefthand_box`,
`righthand_box` and `*_valid` flags. Where each point goes in the 543 layout is
`topology.COCO_WHOLEBODY_TO_543` (the face through a published 68 -> mesh list, the big
toes onto BlazePose's foot_index, an approximation; the small toes nowhere).

Round trip: `load` keeps each annotation's raw 133 triplets in `Sample.source_keypoints`;
`to_coco` writes every mapped point from `xyz` (so edits to the 543 points are written)
and takes the unmapped small toes and the v values from the kept triplets, so
133 -> 543 -> 133 gives every valid point back (to float32 precision, < 1e-3 px).
Teacher labels (HolisticResult) become COCO-WholeBody through the same map, so other
tools can read them; points the teacher places far outside the image are written unlabelled.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..batch import split_frame_name
from ..files import atomic_write, check_output_file, display_path
from ..result import HolisticResult, load_results
from ..topology import COCO_BODY_NAMES, COCO_WHOLEBODY_PARTS, COCO_WHOLEBODY_TO_543, NUM_COCO_WHOLEBODY
from .coco_keypoints import KeypointLayout, Samples, far_outside, load_coco_keypoints
from .sample import Sample, boxes_from_points

_PART_FIELDS = (("body", "keypoints"), ("foot", "foot_kpts"), ("face", "face_kpts"),
                ("left_hand", "lefthand_kpts"), ("right_hand", "righthand_kpts"))
_BOX_FIELDS = {"body": "bbox", "face": "face_box", "left_hand": "lefthand_box", "right_hand": "righthand_box"}
_VALID_FLAGS = {"foot": "foot_valid", "face": "face_valid", "left_hand": "lefthand_valid", "right_hand": "righthand_valid"}

WHOLEBODY = KeypointLayout(
    "coco_wholebody",
    tuple((key, COCO_WHOLEBODY_PARTS[part].stop - COCO_WHOLEBODY_PARTS[part].start) for part, key in _PART_FIELDS),
    tuple(int(i) for i in COCO_WHOLEBODY_TO_543),
    dict(_BOX_FIELDS),
)

# The COCO person category (17 named body points and their skeleton), as COCO and
# COCO-WholeBody files carry it.
PERSON_CATEGORY = {
    "supercategory": "person", "id": 1, "name": "person", "keypoints": list(COCO_BODY_NAMES),
    "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                 [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]],
}


WRITTEN_BY = "written by holistic_lab.formats.coco_wholebody.to_coco"


def load(json_path, image_root=None, strict: bool = True) -> Samples:
    """Every annotation of a COCO-WholeBody file as a Sample (543 layout, masked).

    A bad annotation (missing field, wrong length, NaN, unknown image id) raises a
    ValueError naming the annotation id and field; strict=False skips it and lists it
    in the returned list's `.skipped`.
    """
    return load_coco_keypoints(json_path, WHOLEBODY, image_root=image_root, strict=strict)


def keypoints_133(sample: Sample) -> np.ndarray:
    """(133, 3) pixel x, y, v of one Sample: mapped points from `xyz`, the rest kept from the source.

    A point far outside the image (`coco_keypoints.far_outside`: a teacher's guess at legs
    below a portrait, say) is written with v=0, not labelled, as COCO labels only what is in
    view; `load` would refuse it as a label. Its x, y are kept."""
    if sample.source == WHOLEBODY.name and sample.source_keypoints is not None:
        out = np.array(sample.source_keypoints, np.float64)
    else:
        out = np.zeros((NUM_COCO_WHOLEBODY, 3))
    px = sample.pixels()
    mapped = COCO_WHOLEBODY_TO_543 >= 0
    rows = COCO_WHOLEBODY_TO_543[mapped]
    known = sample.mask[rows]
    block = np.zeros((mapped.sum(), 3))
    block[known, :2] = np.round(px[rows[known]], 4)  # float32 noise (~1e-5 px) off the written file
    kept_v = out[mapped, 2]
    block[known, 2] = np.where(kept_v[known] > 0, kept_v[known], 2.0)
    out[mapped] = block
    out[far_outside(out[:, :2], sample.width, sample.height), 2] = 0
    return out


def _json_number(value: float):
    """An int when integral (as COCO files write them), else the float."""
    value = float(value)
    return int(value) if value.is_integer() else value


def _box_list(box) -> list[float]:
    return [float(v) for v in box] if box is not None else [0.0, 0.0, 0.0, 0.0]


def annotation_from_sample(sample: Sample, ann_id: int, image_id: int) -> dict:
    """One COCO-WholeBody annotation dict; fields the Sample kept from its source are written back."""
    kpts = keypoints_133(sample)
    annotation = dict(sample.extras.get("annotation", {})) if sample.source == WHOLEBODY.name else {}
    tight = boxes_from_points(sample)
    for part, key in _PART_FIELDS:
        sl = COCO_WHOLEBODY_PARTS[part]
        annotation[key] = [_json_number(v) for v in kpts[sl].ravel()]
        if part in _VALID_FLAGS:
            annotation[_VALID_FLAGS[part]] = bool((kpts[sl, 2] > 0).any())
    for name, key in _BOX_FIELDS.items():
        annotation[key] = _box_list(sample.boxes.get(name, tight[name]))
    annotation["num_keypoints"] = int((kpts[COCO_WHOLEBODY_PARTS["body"], 2] > 0).sum())
    annotation.setdefault("area", annotation["bbox"][2] * annotation["bbox"][3])
    annotation.setdefault("iscrowd", 0)
    annotation.setdefault("category_id", 1)
    annotation.update(id=int(ann_id), image_id=int(image_id))
    return annotation


def to_coco(samples, image_root=None) -> dict:
    """COCO-WholeBody JSON (as a dict) for `samples`.

    A sample without an image id (-1) gets one per image path, numbered after the largest
    id in use; one without an annotation id likewise. One image id with two different image
    paths is a ValueError. A sample read from a COCO file keeps its file_name; for the others
    the file_name is the image path, relative to `image_root` when it is given (which is then
    written as `info.image_root`, so `load` finds the images without being told).
    """
    samples = list(samples)
    next_image_id = max([s.image_id for s in samples] + [0]) + 1
    next_ann_id = max([s.ann_id for s in samples] + [0]) + 1
    images, annotations = {}, []
    image_ids, image_paths = {}, {}
    for sample in samples:
        image_id = sample.image_id
        if image_id < 0:
            if sample.image_path not in image_ids:
                image_ids[sample.image_path] = next_image_id
                next_image_id += 1
            image_id = image_ids[sample.image_path]
        first_path = image_paths.setdefault(image_id, sample.image_path)
        if first_path != sample.image_path:
            raise ValueError(f"image_id {image_id} is given to two images: {first_path!r} and {sample.image_path!r}")
        if image_id not in images:
            image = dict(sample.extras.get("image", {}))
            image.update(id=image_id, width=sample.width, height=sample.height)
            if "file_name" not in image:
                image["file_name"] = _file_name(sample, image_root)
            images[image_id] = image
        ann_id = sample.ann_id
        if ann_id < 0:
            ann_id, next_ann_id = next_ann_id, next_ann_id + 1
        annotations.append(annotation_from_sample(sample, ann_id, image_id))
    info = {"description": WRITTEN_BY}
    if image_root is not None:
        info["image_root"] = str(image_root)
    return {
        "info": info,
        "categories": [PERSON_CATEGORY],
        "images": list(images.values()),
        "annotations": annotations,
    }


def is_written_by_us(path) -> bool:
    """True for a JSON file `save` wrote (its info.description is WRITTEN_BY)."""
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh).get("info")
        return isinstance(info, dict) and info.get("description") == WRITTEN_BY
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def check_coco_output(path, inputs=(), overwrite: bool = False) -> Path:
    """`files.check_output_file` for a COCO JSON: only a file `save` wrote is replaced unless `overwrite`."""
    return check_output_file(path, is_ours=is_written_by_us, inputs=inputs, overwrite=overwrite,
                             kind="a COCO-WholeBody JSON holistic-lab wrote")


def _file_name(sample: Sample, image_root) -> str:
    if image_root is None:
        return sample.image_path
    try:
        return Path(sample.image_path).relative_to(image_root).as_posix()
    except ValueError:
        raise ValueError(f"sample {sample.ann_id}: image {sample.image_path} is not inside the image root "
                         f"{image_root}") from None


def save(path, samples, overwrite: bool = False, image_root=None) -> Path:
    """Write `to_coco(samples, image_root)` to `path` atomically (`files.atomic_write`); see `check_coco_output`."""
    check_coco_output(path, overwrite=overwrite)
    data = to_coco(samples, image_root)

    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump(data, fh)

    return atomic_write(path, write)


def samples_from_labels(names: list[str], results: list[HolisticResult]) -> list[Sample]:
    """Teacher labels (e.g. from `holistic-lab label`) as Samples; images with nobody found are left out."""
    return [Sample.from_result(result, name, image_id=number)
            for number, (name, result) in enumerate(zip(names, results), start=1) if any(result.present.values())]


def export_labels(labels_npz, out_json, overwrite: bool = False) -> Path:
    """Teacher labels `.npz` -> COCO-WholeBody JSON that `load` reads back with its images.

    `label` names images by absolute path, and COCO file_names must stay inside an image
    root, so the file_names are written relative to the images' common folder, which
    `info.image_root` records. Video frames (`video#frame`) have no image file to name and
    are left out with a ValueError if nothing else is labelled.
    """
    check_coco_output(out_json, inputs=[labels_npz], overwrite=overwrite)
    names, results = load_results(labels_npz)
    samples = [s for s in samples_from_labels(names, results) if split_frame_name(s.image_path)[1] is None]
    if not samples:
        raise ValueError(f"{display_path(labels_npz)} has no labelled image with a person found "
                         "(video frames are not exported: extract them as images first)")
    root = Path(os.path.commonpath([str(Path(s.image_path).resolve().parent) for s in samples]))
    for sample in samples:
        sample.image_path = str(Path(sample.image_path).resolve())
    return save(out_json, samples, overwrite=overwrite, image_root=root)

