"""The four packs beside mmpose (hagrid, hagrid_frames, videos, dlib_faces): registry, folders, loaders.

Every file of every pack is checked against the registry; the loaders return the counts the
packs' READMEs give; corrupt copies and hostile imglab XML are refused by name. With no local
pack a test is skipped (tests never download); with $HOLISTIC_LAB_DATA set a broken pack fails.
"""
import collections
import os
import shutil

import pytest

from holistic_lab import datasets
from holistic_lab.formats.dlib_faces import load_imglab_faces
from holistic_lab.topology import IBUG68_TO_FACE_MESH, PARTS

PACKS = ("hagrid", "hagrid_frames", "videos", "dlib_faces")


def local_pack(pack):
    path = datasets.data_dir(pack=pack)
    if path is None:
        pytest.skip(f"no local {pack} fixture pack (tests never download); set HOLISTIC_LAB_FIXTURES to its parent")
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(f"fixture pack {pack} not found at {path}: expected its folder with its SHA256SUMS")
    return path


@pytest.fixture
def no_network(monkeypatch):
    import pooch

    monkeypatch.setattr(pooch, "create", lambda *a, **k: pytest.fail("a local folder must not touch the network"))


@pytest.mark.parametrize("pack", ("mmpose",) + PACKS)
def test_registry_is_each_packs_sha256sums_and_its_urls_are_the_readmes(pack):
    folder = local_pack(pack)
    lines = datasets.registry_lines((folder / "SHA256SUMS").read_text())
    assert sorted(lines) == sorted(f"{k} {v}" for k, v in datasets.fixture_registry(pack).items())
    if pack == "mmpose":
        return
    readme = (folder / "README.md").read_text()
    spec = datasets.FIXTURE_PACKS[pack]
    for name in datasets.fixture_registry(pack):
        if pack != "videos":  # the README gives <base>/<class>/<file> or <base>/<file>
            assert spec.base_url in readme
            continue
        repo_owner, repo_name, commit, path = spec.url(name).removeprefix("https://raw.githubusercontent.com/").split("/", 3)
        row = next(line for line in readme.splitlines() if f"`{name}`" in line)
        assert f"{repo_owner}/{repo_name}" in readme and commit in readme and path.rsplit("/", 1)[0] in row, name


@pytest.mark.parametrize("pack", PACKS)
def test_every_file_of_every_pack_checks_against_the_registry(pack, no_network):
    folder = local_pack(pack)
    for name in datasets.fixture_registry(pack):
        assert datasets.fixture_path(name, pack=pack) == folder / name


@pytest.mark.parametrize("pack", PACKS)
def test_a_corrupt_or_missing_copy_is_refused_by_name(pack, tmp_path, no_network):
    folder = local_pack(pack)
    name = sorted(datasets.fixture_registry(pack))[-1]
    copy = tmp_path / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / name, copy)
    assert datasets.fixture_path(name, tmp_path, pack) == copy
    copy.write_bytes(copy.read_bytes()[:-1] + bytes([copy.read_bytes()[-1] ^ 1]))
    with pytest.raises(ValueError, match=rf"{name} is corrupt: its SHA-256 is [0-9a-f]{{64}}, expected "
                                         rf"{datasets.fixture_registry(pack)[name][:8]}"):
        datasets.fixture_path(name, tmp_path, pack)
    copy.unlink()
    with pytest.raises(ValueError, match=rf"fixture {name} not found in .* \(from the folder argument"):
        datasets.fixture_path(name, tmp_path, pack)
    with pytest.raises(ValueError, match=rf"not in the fixture registry \(fixtures_registry_{pack}.txt, the {pack} pack\)"):
        datasets.fixture_path("other.jpg", tmp_path, pack)


def test_pack_folders_follow_the_environment_and_mmpose_keeps_holistic_lab_data(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.FIXTURES_ENV, raising=False)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "packs" / "mmpose"))
    assert datasets.data_dir() == tmp_path / "packs" / "mmpose"
    assert datasets.data_dir(pack="hagrid") == tmp_path / "packs" / "hagrid"
    monkeypatch.setenv(datasets.FIXTURES_ENV, str(tmp_path / "elsewhere"))
    assert datasets.data_dir() == tmp_path / "packs" / "mmpose"
    assert datasets.data_dir(pack="videos") == tmp_path / "elsewhere" / "videos"
    assert datasets.data_dir(tmp_path / "mine", pack="videos") == tmp_path / "mine"
    with pytest.raises(ValueError, match=r"fixture hand.mp4 not found in .*elsewhere/videos \(from \$HOLISTIC_LAB_FIXTURES"):
        datasets.fixture_path("hand.mp4", pack="videos")
    with pytest.raises(ValueError, match=r"elsewhere/hagrid \(from \$HOLISTIC_LAB_FIXTURES\) does not exist"):
        datasets.fixture_folder(pack="hagrid")
    monkeypatch.delenv(datasets.DATA_ENV)
    assert datasets.data_dir() == tmp_path / "elsewhere" / "mmpose"
    monkeypatch.delenv(datasets.FIXTURES_ENV)
    monkeypatch.setattr(datasets, "DEFAULT_FIXTURES_DIR", tmp_path / "beside")
    assert datasets.data_dir(pack="dlib_faces") is None
    (tmp_path / "beside" / "dlib_faces").mkdir(parents=True)
    assert datasets.data_dir(pack="dlib_faces") == tmp_path / "beside" / "dlib_faces"
    with pytest.raises(ValueError, match="unknown fixture pack 'faces'"):
        datasets.data_dir(pack="faces")


@pytest.mark.registry_download
def test_without_a_folder_each_file_is_fetched_from_its_own_url_and_offline_says_what_to_do(tmp_path, monkeypatch):
    import pooch

    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.delenv(datasets.FIXTURES_ENV, raising=False)
    monkeypatch.setattr(datasets, "DEFAULT_FIXTURES_DIR", tmp_path / "not-beside-the-clone")
    asked = {}

    class Offline:
        def fetch(self, name):
            raise ConnectionError(f"no route to host for {name}")

    monkeypatch.setattr(pooch, "create", lambda **kwargs: asked.update(kwargs) or Offline())
    with pytest.raises(RuntimeError, match=r"cannot download fixture hand.mp4 from https://raw.githubusercontent.com/"
                                           r"google-ai-edge/mediapipe-samples/ece8a1f.*hand_landmarker.*test_video.mp4 "
                                           r".* set HOLISTIC_LAB_FIXTURES to the folder that holds it as videos/"):
        datasets.fixture_path("hand.mp4", pack="videos")
    assert asked["registry"] == datasets.fixture_registry("videos") and len(asked["urls"]) == 7
    assert asked["urls"]["pose_1.mp4"].endswith("/18a73420e555a3c1948209ebfa807c7086c7ff0c/pose-detection/test_data/pose_1.mp4")


def test_hagrid_crops_and_frames_have_the_readmes_classes_and_counts(no_network):
    local_pack("hagrid")
    crops = datasets.hagrid_crops()
    assert collections.Counter(label for _, label in crops) == {c: 200 for c in datasets.HAGRID_CLASSES}
    assert all(path.parent.name == label and path.is_file() for path, label in crops)
    assert set(datasets.HAGRID_TO_GESTURE) <= set(datasets.HAGRID_CLASSES)
    assert sorted(datasets.HAGRID_TO_GESTURE.values()) == ["closed", "ok", "open", "point", "stop", "thumb_up", "victory"]
    local_pack("hagrid_frames")
    frames = datasets.hagrid_frames()
    assert collections.Counter(label for _, label in frames) == {"call": 10, "four": 10, "none": 10, "rock": 10}


def test_videos_and_their_landmarks_match_the_readme(no_network):
    import cv2

    local_pack("videos")
    videos = datasets.fixture_videos()
    readme = {"gesture_face_hands.mp4": (195, 1280, 720), "hand.mp4": (202, 640, 360), "pose_squats.mp4": (65, 720, 1280),
              "pose_1.mp4": (120, 576, 576), "asl_hand.25fps.mp4": (325, 620, 1080)}
    assert sorted(videos) == sorted(readme)
    for name, (frames, width, height) in readme.items():
        capture = cv2.VideoCapture(str(videos[name]))
        got = tuple(int(capture.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH,
                                                 cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        assert got == (frames, width, height), name
        if name in datasets.VIDEO_LANDMARKS:
            xyz = datasets.video_landmarks(name)
            assert xyz.shape == (frames, datasets.VIDEO_LANDMARKS[name][1], 3)
            assert (xyz[..., 0] > -0.1 * width).all() and (xyz[..., 0] < 1.1 * width).all()
            assert (xyz[..., 1] > -0.1 * height).all() and (xyz[..., 1] < 1.1 * height).all()
    with pytest.raises(ValueError, match="no landmarks for video 'hand.mp4'"):
        datasets.video_landmarks("hand.mp4")


def test_dlib_faces_load_43_faces_in_the_face_mesh_rows(no_network):
    folder = local_pack("dlib_faces")
    faces = datasets.load_dlib_faces()
    assert (faces.kind, len(faces), len(faces.by_image())) == ("face", 43, 9)
    assert [len(datasets.load_dlib_faces(s)) for s in ("training", "testing")] == [18, 25]
    assert sorted(s.ann_id for s in faces.samples) == list(range(43))
    rows = [PARTS["face"].start + i for i in IBUG68_TO_FACE_MESH]
    for sample in faces.samples:
        assert sample.mask.sum() == 68 and sample.mask[rows].all() and sample.image_path.startswith(str(folder))
        assert abs(sample.pixels()[rows] - sample.source_keypoints[:, :2]).max() < 1e-3
        x, y, w, h = sample.boxes["face"]
        px = sample.source_keypoints[:, :2]
        assert ((px > [x - w / 2, y - h / 2]) & (px < [x + 1.5 * w, y + 1.5 * h])).all()
        assert px[36, 0] < px[45, 0]  # iBUG 36 is the subject's right outer eye corner, seen on the left
    with pytest.raises(ValueError, match="unknown dlib_faces split 'train'"):
        datasets.load_dlib_faces("train")


def test_a_corrupt_dlib_image_is_refused_by_name(tmp_path, no_network):
    folder = local_pack("dlib_faces")
    shutil.copytree(folder, tmp_path / "dlib_faces")
    image = tmp_path / "dlib_faces" / "2009_004587.jpg"
    image.write_bytes(image.read_bytes()[:-2])
    with pytest.raises(ValueError, match="2009_004587.jpg is corrupt"):
        datasets.load_dlib_faces("testing", tmp_path / "dlib_faces")
    assert len(datasets.load_dlib_faces("training", tmp_path / "dlib_faces")) == 18


@pytest.fixture
def testing_xml():
    return (local_pack("dlib_faces") / "testing_with_face_landmarks.xml").read_text(encoding="iso-8859-1")


def _write(tmp_path, text):
    path = tmp_path / "faces.xml"
    path.write_text(text, encoding="iso-8859-1")
    return path


BILLION_LAUGHS = ("<!DOCTYPE dataset [<!ENTITY a 'lol'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
                  "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>]>\n")


@pytest.mark.parametrize("doctype", [BILLION_LAUGHS, "<!DOCTYPE dataset [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>\n"])
def test_imglab_xml_with_a_doctype_or_entities_is_refused_by_file(tmp_path, testing_xml, doctype):
    head, rest = testing_xml.split("<dataset>", 1)
    hostile = head + doctype + "<dataset>" + rest.replace("<name>Testing faces</name>", "<name>&d;&x;</name>", 1)
    path = _write(tmp_path, hostile.replace("&d;&x;", "&d;" if "ENTITY d" in doctype else "&x;"))
    with pytest.raises(ValueError, match=rf"{path}: refused, XML with a DOCTYPE or entities"):
        load_imglab_faces(path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("      <part name='67' x='297' y='218'/>\n", "", 1), r"face 0: has 67 parts, expected 68"),
    (lambda t: t.replace("<part name='67' x='297' y='218'/>", "<part name='66' x='297' y='218'/>", 1),
     r"face 0: part names must be 00..67, each once"),
    (lambda t: t.replace("<part name='05' x='285'", "<part name='05' x='2.8e2'", 1), r"face 0 part 05: x='2.8e2', expected an integer"),
    (lambda t: t.replace("<part name='05' x='285'", "<part name='05' x='99999'", 1), r"face 0: part 05 \(x=99999, .*far outside"),
    (lambda t: t.replace("<box top='156' left='55' width='44'", "<box top='156' left='55' width='0'", 1),
     r"face 1: box is 0x44, expected a positive"),
    (lambda t: t.replace("file='2008_002470.jpg'", "file='../../etc/2008_002470.jpg'", 1), r"lies outside the image root"),
    (lambda t: t.replace("</images>", "", 1), r"not well-formed XML"),
])
def test_imglab_xml_with_a_bad_face_is_refused_by_file_image_and_face(tmp_path, testing_xml, edit, message):
    assert len(load_imglab_faces(_write(tmp_path, testing_xml))) == 25 and edit(testing_xml) != testing_xml
    path = _write(tmp_path, edit(testing_xml))
    with pytest.raises(ValueError, match=rf"{path}: image '.*2008_002470.jpg'.*{message}|{path}: {message}"):
        load_imglab_faces(path)


def test_an_ignored_box_is_skipped(tmp_path, testing_xml):
    path = _write(tmp_path, testing_xml.replace("<box top='156'", "<box ignore='1' top='156'", 1))
    faces = load_imglab_faces(path)
    assert len(faces) == 24 and [s.extras["face"] for s in faces if s.image_id == 0] == [0, 1, 2, 3, 4]
    assert os.path.basename(faces[0].image_path) == "2008_002470.jpg"
