"""dlib's imglab XML of faces with 68 iBUG points, read into Samples in the 543 layout.

The format of dlib's `examples/faces/*_with_face_landmarks.xml` (and of its `imglab` tool):
`<dataset><images><image file= width= height=>`, per face a `<box top= left= width= height=>`
holding 68 `<part name="00".."67" x= y=/>` in the iBUG-68 order (the same as 300-W), so
the points go into the mesh through `topology.IBUG68_TO_FACE_MESH`, as the 300-W loader
maps them. A box marked `ignore="1"` is a face imglab was told to skip, and is skipped.

The XML is parsed by defusedxml with DTDs forbidden: a file with a DOCTYPE (entity
expansion, external entities) is refused before any of it is read. Everything else is
checked where it enters and refused by file, image and face: the part count and names,
integer pixel coordinates, points near the image, the box, and each image's file (inside
the image root, of the size the XML gives; `coco_keypoints.image_file_problems`).
"""
from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import ParseError

import numpy as np

from ..topology import NUM_KEYPOINTS
from .coco_keypoints import FACE68, Samples, far_outside, image_file_problems
from .sample import Sample

NUM_PARTS = 68
PART_NAMES = tuple(f"{i:02d}" for i in range(NUM_PARTS))


def _parse(xml_path: Path):
    import defusedxml.ElementTree as safe_xml
    from defusedxml import DefusedXmlException

    try:
        return safe_xml.parse(xml_path, forbid_dtd=True).getroot()
    except DefusedXmlException as exc:
        raise ValueError(f"{xml_path}: refused, XML with a DOCTYPE or entities ({type(exc).__name__})") from None
    except ParseError as exc:
        raise ValueError(f"{xml_path}: not well-formed XML ({exc})") from None


def _integer(element, key: str, where: str) -> int:
    text = element.get(key)
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key}={text!r}, expected an integer") from None


def _face(box, where: str, width: int, height: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(68, 2) pixel points in iBUG order and the (x, y, w, h) box of one `<box>`."""
    left, top, box_w, box_h = (_integer(box, key, where) for key in ("left", "top", "width", "height"))
    if box_w <= 0 or box_h <= 0:
        raise ValueError(f"{where}: box is {box_w}x{box_h}, expected a positive width and height")
    parts = box.findall("part")
    if len(parts) != NUM_PARTS:
        raise ValueError(f"{where}: has {len(parts)} parts, expected {NUM_PARTS}")
    names = [part.get("name") for part in parts]
    if sorted(names) != list(PART_NAMES):
        raise ValueError(f"{where}: part names must be {PART_NAMES[0]}..{PART_NAMES[-1]}, each once")
    xy = np.zeros((NUM_PARTS, 2))
    for part in parts:
        xy[PART_NAMES.index(part.get("name"))] = [_integer(part, key, f"{where} part {part.get('name')}")
                                                  for key in ("x", "y")]
    outside = far_outside(xy, width, height)
    if outside.any():
        point = int(np.argmax(outside))
        raise ValueError(f"{where}: part {PART_NAMES[point]} (x={xy[point, 0]:g}, y={xy[point, 1]:g}) lies far "
                         f"outside the {width}x{height} image")
    return xy, (float(left), float(top), float(box_w), float(box_h))


def load_imglab_faces(xml_path, image_root=None) -> Samples:
    """Every face of an imglab XML file as a Sample: the 68 points in the face mesh rows
    (`mask` marks them), `boxes["face"]`, `source_keypoints` (68, 3) pixel x, y, v=2.
    `image_root` defaults to the XML's folder. Any problem is a ValueError naming the file
    and, where it lies in one, the image and face (numbered from 0 within the image)."""
    path = Path(xml_path)
    if not path.is_file():
        raise ValueError(f"imglab file not found: {path}")
    root_element = _parse(path)
    if root_element.tag != "dataset" or root_element.find("images") is None:
        raise ValueError(f"{path}: expected <dataset> with <images>, got <{root_element.tag}>")
    root = Path(image_root) if image_root is not None else path.parent
    images = {}
    for image_id, image in enumerate(root_element.find("images").findall("image")):
        where = f"{path}: image {image.get('file')!r}"
        if not image.get("file"):
            raise ValueError(f"{path}: images[{image_id}] has no file attribute")
        size = [_integer(image, key, where) for key in ("width", "height")]
        if min(size) <= 0:
            raise ValueError(f"{where}: size {size[0]}x{size[1]}, expected positive integers")
        images[image_id] = {"file_name": image.get("file"), "width": size[0], "height": size[1], "element": image}
    problems = image_file_problems(images, root)
    if problems:
        image_id, why = next(iter(problems.items()))
        raise ValueError(f"{path}: image {images[image_id]['file_name']!r}: {why}")
    samples = Samples()
    for image_id, image in images.items():
        faces = [box for box in image["element"].findall("box") if box.get("ignore", "0") != "1"]
        for face_number, box in enumerate(faces):
            where = f"{path}: image {image['file_name']!r} face {face_number}"
            xy, face_box = _face(box, where, image["width"], image["height"])
            xyz = np.full((NUM_KEYPOINTS, 3), np.nan, np.float32)
            xyz[FACE68.index, :2] = xy / [image["width"], image["height"]]
            mask = np.zeros(NUM_KEYPOINTS, bool)
            mask[FACE68.index] = True
            samples.append(Sample(
                image_path=str(root / image["file_name"]), width=image["width"], height=image["height"],
                xyz=xyz, mask=mask, ann_id=len(samples), image_id=image_id, boxes={"face": face_box},
                source=FACE68.name, source_keypoints=np.column_stack([xy, np.full(NUM_PARTS, 2.0)]),
                extras={"image": {k: v for k, v in image.items() if k != "element"}, "face": face_number},
            ))
    return samples
