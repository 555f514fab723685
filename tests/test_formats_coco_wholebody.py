"""COCO-WholeBody <-> 543 on the real fixture file: exact round trip, the map's facts, bad files refused by name."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from holistic_lab.datasets import sample_labels
from holistic_lab.formats import coco_wholebody
from holistic_lab.formats.coco_keypoints import far_outside
from holistic_lab.formats.sample import Sample
from holistic_lab.topology import COCO_WHOLEBODY_PARTS, COCO_WHOLEBODY_TO_543, IBUG68_TO_FACE_MESH, PARTS

FIELDS = ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")


@pytest.fixture(scope="module")
def wholebody_json(fixtures):
    return fixtures / "coco" / "test_coco_wholebody.json"


@pytest.fixture(scope="module")
def original(wholebody_json):
    return json.loads(wholebody_json.read_text())


def _points(annotation):
    return np.concatenate([np.reshape(annotation[key], (-1, 3)) for key in FIELDS])


def test_133_to_543_to_133_gives_every_valid_point_back(wholebody_json, original, tmp_path):
    samples = coco_wholebody.load(wholebody_json)
    assert len(samples) == len(original["annotations"]) == 14
    written = coco_wholebody.to_coco(samples)
    for before, after in zip(original["annotations"], written["annotations"]):
        a, b = _points(before), _points(after)
        valid = a[:, 2] > 0
        assert valid.sum() > 0 or before["num_keypoints"] == 0
        np.testing.assert_array_equal(a[:, 2], b[:, 2])
        assert np.abs(a[valid, :2] - b[valid, :2]).max(initial=0) < 1e-3
        for key in ("bbox", "face_box", "lefthand_box", "righthand_box", "face_valid", "lefthand_valid", "iscrowd", "area"):
            assert after[key] == before[key], key
    # and the written file reads back to the same 543 arrays
    again = coco_wholebody.load(coco_wholebody.save(tmp_path / "out.json", samples), image_root=wholebody_json.parent)
    for s, t in zip(samples, again):
        np.testing.assert_array_equal(s.mask, t.mask)
        np.testing.assert_allclose(s.xyz, t.xyz, atol=1e-6)


def test_map_places_body_feet_face_and_hands_as_documented(wholebody_json, original):
    sample = coco_wholebody.load(wholebody_json)[0]  # ann 442619: body, feet, face, right hand
    raw = _points(original["annotations"][0])
    px = sample.pixels()
    np.testing.assert_allclose(px[[0, 11, 12, 27, 28]], raw[[0, 5, 6, 15, 16], :2], atol=1e-3)  # nose, shoulders, ankles
    np.testing.assert_allclose(px[[29, 30, 31, 32]], raw[[19, 22, 17, 20], :2], atol=1e-3)  # heels, big toes
    face0 = PARTS["face"].start
    np.testing.assert_allclose(px[face0 + np.array(IBUG68_TO_FACE_MESH)], raw[23:91, :2], atol=1e-3)
    np.testing.assert_allclose(px[PARTS["right_hand"]], raw[112:133, :2], atol=1e-3)
    assert not sample.mask[PARTS["left_hand"]].any()  # lefthand_valid is False
    assert sample.mask.sum() == (raw[COCO_WHOLEBODY_TO_543 >= 0, 2] > 0).sum()
    assert np.isnan(sample.xyz[:, 2]).all()  # human annotations are 2-D
    left = next(s for s, a in zip(coco_wholebody.load(wholebody_json), original["annotations"]) if a["lefthand_valid"])
    assert left.mask[PARTS["left_hand"]].any()  # COCO's lefthand is the subject's left hand


def test_unmapped_small_toes_survive_through_source_keypoints(wholebody_json, original):
    samples = coco_wholebody.load(wholebody_json)
    small_toes = [COCO_WHOLEBODY_PARTS["foot"].start + i for i in (1, 4)]
    assert (COCO_WHOLEBODY_TO_543[small_toes] == -1).all()
    written = coco_wholebody.to_coco(samples)["annotations"]
    for before, after in zip(original["annotations"], written):
        np.testing.assert_allclose(_points(after)[small_toes], _points(before)[small_toes])


def _write(tmp_path, original, change):
    data = json.loads(json.dumps(original))
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


def _set(key, value, index=0):
    return lambda data: data["annotations"][index].__setitem__(key, value)


BAD = {
    "missing field": (_set("face_kpts", None), r"annotation 442619: face_kpts must be a list"),
    "deleted field": (lambda d: d["annotations"][0].pop("righthand_kpts"), r"annotation 442619: missing field 'righthand_kpts'"),
    "wrong length": (lambda d: d["annotations"][0].__setitem__("lefthand_kpts", [0.0] * 50),
                     r"annotation 442619: lefthand_kpts has 50 values, expected 63"),
    "NaN": (lambda d: d["annotations"][0]["keypoints"].__setitem__(3, float("nan")), r"annotation 442619: keypoints contains NaN"),
    "unknown image": (_set("image_id", 999), r"annotation 442619: image_id 999 is not in images"),
    "wrong box": (_set("face_box", [1, 2, 3]), r"annotation 442619: face_box has 3 values, expected 4"),
    "list image_id": (_set("image_id", [785]), r"annotation 442619: image_id must be an integer, got \[785\]"),
    "bool image_id": (_set("image_id", True), r"annotation 442619: image_id must be an integer, got True"),
    "number too large for a float": (lambda d: d["annotations"][0]["keypoints"].__setitem__(3, 10**400),
                                     r"annotation 442619: keypoints contains NaN or infinite values"),
    "negative coordinate": (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, -1000),
                            r"annotation 442619: keypoints point 0 \(x=-1000, y=81\) lies outside the 640x425 image"),
    "huge coordinate": (lambda d: d["annotations"][0]["face_kpts"].__setitem__(1, 1e6),
                        r"annotation 442619: face_kpts point 0 \(x=[\d.]+, y=1e\+06\) lies outside the 640x425 image"),
    "JSON size is not the image's": (lambda d: d["images"][0].__setitem__("width", 134),
                                     r"annotation 442619: image 785: the JSON says 134x425, but 000000000785.jpg is 640x425"),
    "file_name leaving the root": (lambda d: d["images"][0].__setitem__("file_name", "../aic/054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg"),
                                   r"annotation 442619: image 785: file_name '../aic/054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg' "
                                   r"lies outside the image root"),
    "file_name no file system can hold": (lambda d: d["images"][0].__setitem__("file_name", "x\ud800.jpg"),
                                          r"annotation 442619: image 785: file_name 'x\\ud800.jpg' is not a valid file name"),
    "absolute file_name": (lambda d: d["images"][0].__setitem__("file_name", "/etc/hostname"),
                           r"annotation 442619: image 785: file_name '/etc/hostname' is absolute; expected a path inside the image root"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_annotation_is_refused_by_id_and_field(tmp_path, wholebody_json, original, case):
    change, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        coco_wholebody.load(_write(tmp_path, original, change), image_root=wholebody_json.parent)


@pytest.mark.parametrize("case", sorted(BAD))
def test_strict_false_skips_and_reports_only_the_bad_annotation(tmp_path, wholebody_json, original, case):
    samples = coco_wholebody.load(_write(tmp_path, original, BAD[case][0]), image_root=wholebody_json.parent, strict=False)
    assert len(samples) == 13 and 442619 not in [s.ann_id for s in samples]
    assert len(samples.skipped) == 1 and samples.skipped[0].startswith("annotation 442619:")


@pytest.mark.parametrize("bad_id", [[1], "abc", 1.5])
def test_annotation_id_that_is_not_an_integer_is_named(tmp_path, original, bad_id):
    path = _write(tmp_path, original, _set("id", bad_id))
    with pytest.raises(ValueError, match=rf"annotation {re.escape(repr(bad_id))}: id must be an integer"):
        coco_wholebody.load(path)
    samples = coco_wholebody.load(path, strict=False)
    assert len(samples) == 13 and samples.skipped == [f"annotation {bad_id!r}: id must be an integer, got {bad_id!r}"]


def test_duplicate_or_non_integer_image_id_is_refused(tmp_path, original):
    def duplicate(data):
        data["images"].append(dict(data["images"][0], file_name="other.jpg"))

    with pytest.raises(ValueError, match=r"bad.json: image id 785 appears twice"):
        coco_wholebody.load(_write(tmp_path, original, duplicate), strict=False)
    with pytest.raises(ValueError, match=r"images\[0\]: id must be an integer, got \[785\]"):
        coco_wholebody.load(_write(tmp_path, original, lambda d: d["images"][0].__setitem__("id", [785])))


def test_duplicate_annotation_id_is_refused_and_the_first_one_kept(tmp_path, original):
    path = _write(tmp_path, original, _set("id", 442619, index=1))
    with pytest.raises(ValueError, match=r"annotation 442619: id appears twice \(annotations\[0\] and annotations\[1\]\)"):
        coco_wholebody.load(path)
    samples = coco_wholebody.load(path, strict=False)
    assert [s.ann_id for s in samples].count(442619) == 1 and len(samples) == 13
    assert samples.skipped == ["annotation 442619: id appears twice (annotations[0] and annotations[1])"]


@pytest.mark.parametrize("value", [True, 1.5, "640", 0])
def test_image_size_that_is_not_a_positive_integer_is_refused_by_image_and_field(tmp_path, original, value):
    path = _write(tmp_path, original, lambda d: d["images"][0].__setitem__("width", value))
    with pytest.raises(ValueError, match=rf"image 785: width and height must be positive integers, got {re.escape(repr(value))} x 425"):
        coco_wholebody.load(path, strict=False)


def test_image_reached_through_a_symlink_out_of_the_root_is_refused(tmp_path, wholebody_json, original):
    root = tmp_path / "images"
    root.mkdir()
    (root / "000000000785.jpg").symlink_to(wholebody_json.parent / "000000000785.jpg")  # outside `root`
    (root / "000000040083.jpg").write_bytes((wholebody_json.parent / "000000040083.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"annotation 442619: image 785: file_name '000000000785.jpg' lies outside the image root"):
        coco_wholebody.load(wholebody_json, image_root=root)
    samples = coco_wholebody.load(wholebody_json, image_root=root, strict=False)
    assert len(samples) == 13 and len(samples.skipped) == 1
    assert samples[0].image_path == str(root / "000000040083.jpg")


def test_labelled_points_slightly_outside_the_image_are_kept(tmp_path, wholebody_json, original):
    def nudge(data):  # a nose 10% of the width past the left edge, as frame-edge labels can be
        data["annotations"][0]["keypoints"][0] = -64

    (sample, *_) = coco_wholebody.load(_write(tmp_path, original, nudge), image_root=wholebody_json.parent)
    assert sample.mask[0] and sample.xyz[0, 0] == pytest.approx(-0.1)


def test_file_level_problems_are_refused(tmp_path, original):
    not_json = tmp_path / "x.json"
    not_json.write_text("{ this is not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        coco_wholebody.load(not_json)
    with pytest.raises(ValueError, match="missing key 'annotations'"):
        coco_wholebody.load(_write(tmp_path, original, lambda d: d.pop("annotations")))
    with pytest.raises(ValueError, match="image 785: missing field 'width'"):
        coco_wholebody.load(_write(tmp_path, original, lambda d: d["images"][0].pop("width")), strict=False)
    with pytest.raises(ValueError, match="not found"):
        coco_wholebody.load(tmp_path / "absent.json")


def test_teacher_labels_export_as_coco_wholebody_and_read_back(tmp_path):
    result = sample_labels("astronaut")
    sample = Sample.from_result(result, "astronaut.png")
    data = coco_wholebody.to_coco([sample])
    (annotation,) = data["annotations"]
    body = np.reshape(annotation["keypoints"], (17, 3))
    # the teacher places the knees and ankles below this head-and-shoulders portrait (y up to
    # 1.9 x its height): not labels, so written with v=0; the 13 points in view are labelled
    assert annotation["face_valid"] and annotation["num_keypoints"] == 13
    assert (body[13:, 2] == 0).all() and (body[13:, 1] > 1.25 * 512).all()
    assert not annotation["lefthand_valid"]  # the teacher found no hands on this portrait
    back = coco_wholebody.load(coco_wholebody.save(tmp_path / "t.json", [sample]), image_root=tmp_path)[0]
    rows = COCO_WHOLEBODY_TO_543[COCO_WHOLEBODY_TO_543 >= 0]
    known = sample.mask[rows] & ~far_outside(sample.pixels()[rows], 512, 512)
    assert known.sum() > 80 and back.mask.sum() == known.sum()
    np.testing.assert_allclose(back.pixels()[rows[known]], sample.pixels()[rows[known]], atol=1e-3)


def test_missing_ids_are_numbered_after_the_ids_in_use(wholebody_json):
    loaded = coco_wholebody.load(wholebody_json)
    new = [Sample.from_result(sample_labels("astronaut"), "astronaut.png"),
           Sample.from_result(sample_labels("astronaut"), "astronaut.png"),
           Sample.from_result(sample_labels("grace_hopper"), "grace_hopper.png")]
    data = coco_wholebody.to_coco(list(loaded) + new)
    image_ids = [image["id"] for image in data["images"]]
    ann_ids = [annotation["id"] for annotation in data["annotations"]]
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)
    used_image, used_ann = max(s.image_id for s in loaded), max(s.ann_id for s in loaded)
    assert image_ids[-2:] == [used_image + 1, used_image + 2]  # one id per new image path
    assert [a["image_id"] for a in data["annotations"][-3:]] == [used_image + 1, used_image + 1, used_image + 2]
    assert ann_ids[-3:] == [used_ann + 1, used_ann + 2, used_ann + 3]


def test_one_image_id_with_two_image_paths_is_refused():
    result = sample_labels("astronaut")
    with pytest.raises(ValueError, match=r"image_id 7 is given to two images: 'a.png' and 'b.png'"):
        coco_wholebody.to_coco([Sample.from_result(result, "a.png", image_id=7),
                                Sample.from_result(result, "b.png", image_id=7)])


# --- images: the size as shown (EXIF orientation), bad headers per image, only images in use ---

def _exif_rotated_jpeg(path, orientation=6, size=(40, 20)):
    """A JPEG stored `size` (left half red, right half blue) whose EXIF orientation says how to show it."""
    from PIL import Image

    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)
    return path


def _one_image_json(tmp_path, original, file_name, width, height):
    annotation = {key: [0] * len(original["annotations"][0][key]) for key in FIELDS}
    annotation["keypoints"][:3] = [10, 30, 2]
    annotation.update(id=1, image_id=7, bbox=[0, 0, width, height])
    data = {"images": [{"id": 7, "file_name": file_name, "width": width, "height": height}], "annotations": [annotation]}
    path = tmp_path / "rotated.json"
    path.write_text(json.dumps(data))
    return path


def test_a_rotated_phone_photo_has_the_size_it_is_shown_and_labelled_at(tmp_path, original):
    from holistic_lab.images import image_size, load_rgb

    photo = _exif_rotated_jpeg(tmp_path / "phone.jpg")  # stored 40x20, shown 20x40
    assert load_rgb(photo).shape == (40, 20, 3)  # as `label` sees it
    assert image_size(photo) == (40, 20) and image_size(photo, oriented=True) == (20, 40)
    (sample,) = coco_wholebody.load(_one_image_json(tmp_path, original, "phone.jpg", 20, 40))
    assert (sample.width, sample.height) == (20, 40)
    with pytest.raises(ValueError, match=r"annotation 1: image 7: the JSON says 40x20, but phone.jpg is 20x40"):
        coco_wholebody.load(_one_image_json(tmp_path, original, "phone.jpg", 40, 20))


def test_teacher_labels_of_a_rotated_photo_export_and_load_back(tmp_path):
    from dataclasses import replace

    from holistic_lab.images import load_rgb

    photo = _exif_rotated_jpeg(tmp_path / "phone.jpg", size=(64, 48))  # shown 48x64, as `label` saw it
    height, width = load_rgb(photo).shape[:2]
    result = replace(sample_labels("astronaut"), width=width, height=height)  # stand-in labels at the photo's size
    written = coco_wholebody.save(tmp_path / "labels.json", [Sample.from_result(result, "phone.jpg")])
    (back,) = coco_wholebody.load(written)
    assert (back.width, back.height) == (48, 64) and back.image_path == str(photo)


def _forged_png(path, width, height):
    """A 1x1 PNG whose header claims width x height (Pillow refuses it by its own ceiling)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(bytes(4))) + chunk(b"IEND", b""))
    return path


def test_an_image_header_over_pillows_ceiling_is_refused_by_image_id_not_the_whole_file(tmp_path, wholebody_json, original):
    root = tmp_path / "images"
    root.mkdir()
    for image in original["images"]:
        (root / image["file_name"]).write_bytes((wholebody_json.parent / image["file_name"]).read_bytes())
    _forged_png(root / original["images"][0]["file_name"], 100000, 100000)  # image 785
    path = _write(tmp_path, original, lambda d: None)
    with pytest.raises(ValueError, match=r"annotation 442619: image 785: .*over 179 megapixels"):
        coco_wholebody.load(path, image_root=root)
    samples = coco_wholebody.load(path, image_root=root, strict=False)
    assert len(samples) == 13 and len(samples.skipped) == 1
    assert samples.skipped[0].startswith("annotation 442619: image 785:")


def test_only_images_with_annotations_have_their_headers_read(tmp_path, wholebody_json, original):
    root = tmp_path / "images"
    root.mkdir()
    for image in original["images"]:
        (root / image["file_name"]).write_bytes((wholebody_json.parent / image["file_name"]).read_bytes())
    _forged_png(root / "unused.png", 100000, 100000)
    path = _write(tmp_path, original,
                  lambda d: d["images"].append({"id": 1, "file_name": "unused.png", "width": 1, "height": 1}))
    samples = coco_wholebody.load(path, image_root=root)
    assert len(samples) == 14 and samples.skipped == []


def test_a_duplicate_id_is_refused_even_when_its_first_copy_was_bad(tmp_path, original):
    def bad_first_copy(data):
        data["annotations"][0]["face_kpts"] = None
        data["annotations"][1]["id"] = 442619

    samples = coco_wholebody.load(_write(tmp_path, original, bad_first_copy), strict=False)
    assert 442619 not in [s.ann_id for s in samples] and len(samples) == 12
    assert samples.skipped == ["annotation 442619: face_kpts must be a list of numbers",
                               "annotation 442619: id appears twice (annotations[0] and annotations[1])"]


def test_labels_of_absolute_paths_export_and_load_back_with_their_images(tmp_path, monkeypatch):
    """`label` names images by absolute path; the exported COCO file must still load (file_names
    stay inside an image root) and find the images, from any working directory."""
    import shutil

    from holistic_lab.datasets import SAMPLES_DIR
    from holistic_lab.formats import tfrecord
    from holistic_lab.result import save_results

    photos = tmp_path / "shoot" / "day1"
    photos.mkdir(parents=True)
    names = [str(Path(shutil.copy(SAMPLES_DIR / "astronaut.png", photos / "astronaut.png")).resolve()),
             str(Path(shutil.copy(SAMPLES_DIR / "grace_hopper.jpg", tmp_path / "shoot" / "hopper.jpg")).resolve())]
    labels = save_results(tmp_path / "labels.npz", [sample_labels("astronaut"), sample_labels("grace_hopper")], names)
    out = coco_wholebody.export_labels(labels, tmp_path / "export" / "coco.json")
    data = json.loads(out.read_text())
    assert sorted(image["file_name"] for image in data["images"]) == ["day1/astronaut.png", "hopper.jpg"]
    monkeypatch.chdir(tmp_path / "export")
    loaded = coco_wholebody.load(out)
    assert sorted(s.image_path for s in loaded) == sorted(names)
    assert len(list(tfrecord.read(tfrecord.write(tmp_path / "set.tfrecord", loaded)))) == 2
