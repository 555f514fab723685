"""holistic_lab.widgets: the explorer's callbacks, driven without a browser."""
import datetime

import cv2
import numpy as np
import pytest

from holistic_lab import widgets
from holistic_lab.datasets import SAMPLES_DIR, sample_image, sample_labels
from holistic_lab.topology import FLIP_PERMUTATION, PARTS, landmark_name
from holistic_lab.widgets import KeypointExplorer, decode_upload


def _png_bytes(rgb):
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def teacher_factory():
    from holistic_lab.teacher import MediaPipeTeacher

    teacher = MediaPipeTeacher()
    yield lambda: teacher
    teacher.close()


@pytest.fixture
def explorer(teacher_factory):
    return KeypointExplorer(teacher_factory=teacher_factory, preset_name="none")


def test_starts_on_a_sample_with_its_labels(explorer):
    assert explorer.image_name == "sample: astronaut"
    assert np.array_equal(explorer.aug_rgb, sample_image("astronaut"))  # preset "none"
    assert explorer.aug_labels.allclose(sample_labels("astronaut"))
    decoded = cv2.imdecode(np.frombuffer(explorer.w_picture.value, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (448, 448, 3), "PNG of the drawn image, scaled to the display size"


def test_preset_moves_the_sliders_and_the_picture(explorer):
    before = explorer.w_picture.value
    explorer.w_preset.value = "geometric"  # as a user would, through the widget
    assert explorer.params.rotate_deg == 45 and explorer.w_knobs["rotate_deg"].value == 45
    assert explorer.w_picture.value != before
    explorer.w_knobs["rotate_deg"].value = 5
    assert explorer.params.rotate_deg == 5 and explorer.preset_name == "geometric"
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        explorer.set_preset("heavy")
    with pytest.raises(ValueError, match="flip_p must be a probability in 0..1"):
        explorer.set_param("flip_p", 2.0)


def test_flip_slider_mirrors_labels_and_the_swap_switch_shows_the_wrong_flip(explorer):
    explorer.set_param("flip_p", 1.0)
    rgb, labels = sample_image("astronaut"), sample_labels("astronaut")
    assert np.array_equal(explorer.aug_rgb, rgb[:, ::-1])
    left_eye = 2  # pose/left_eye moves to the twin row and mirrors
    np.testing.assert_allclose(explorer.aug_labels.xyz[left_eye, 0], 1 - labels.xyz[FLIP_PERMUTATION[left_eye], 0],
                               atol=1e-5)
    explorer.w_swap.value = False
    np.testing.assert_allclose(explorer.aug_labels.xyz[left_eye, 0], 1 - labels.xyz[left_eye, 0], atol=1e-5)


def test_part_and_mesh_toggles_change_the_drawing(explorer):
    def drawn_px():
        return (explorer.rendered != explorer.aug_rgb).any(axis=2).sum()

    contours_px = drawn_px()
    explorer.w_mesh.value = True
    assert drawn_px() > 1.5 * contours_px, "the 468-point tessellation draws more than the contours"
    explorer.set_parts([])
    assert np.array_equal(explorer.rendered, explorer.aug_rgb), "nothing shown, nothing drawn"
    explorer.w_parts["pose"].value = True
    assert explorer.parts == ("pose",)
    with pytest.raises(ValueError, match="unknown parts"):
        explorer.set_parts(["tail"])


def test_selecting_a_point_names_it(explorer):
    explorer.w_point.value = 15
    assert "#15" in explorer.w_info.value and landmark_name(15) in explorer.w_info.value
    assert landmark_name(int(FLIP_PERMUTATION[15])) in explorer.w_info.value
    face_point = PARTS["face"].start + 1
    x, y = explorer.aug_labels.pixels()[face_point]
    assert explorer.nearest_point(x + 0.3, y - 0.2) == face_point
    assert explorer.w_point.value == face_point
    explorer.select_point(PARTS["left_hand"].start)
    assert "absent" in explorer.w_info.value
    with pytest.raises(ValueError, match="0..542"):
        explorer.select_point(543)


def test_fixture_images_are_labelled_by_the_teacher(explorer):
    name = "fixture: panoptic/ex2_2.flv_000040_l.jpg"
    if name not in explorer.w_image_name.options:
        pytest.skip("fixture pack not found (set HOLISTIC_LAB_DATA)")
    explorer.w_image_name.value = name
    assert explorer.labels.present["left_hand"] and explorer.labels.present["right_hand"]
    assert explorer.aug_rgb.shape == (300, 400, 3)


def test_a_good_upload_is_labelled_and_selected(explorer):
    rgb = sample_image("grace_hopper")
    explorer.w_upload.value = ({"name": "me.png", "type": "image/png", "size": 1, "content": memoryview(_png_bytes(rgb)),
                                "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert explorer.image_name == "upload: me.png" and np.array_equal(explorer.rgb, rgb)
    assert explorer.labels.present["face"] and "MediaPipe found: pose, face" in explorer.message
    assert explorer.w_upload.value == (), "uploaded bytes are not kept in the widget state"


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "not an image file name"),
    ("photo.png", b"hello, not a png", "not a readable image"),
    ("photo.jpg", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a readable image"),
    ("anim.gif", b"GIF89a", "not an image file name"),
])
def test_hostile_uploads_give_a_message_and_change_nothing(explorer, name, content, message):
    before = explorer.image_name, explorer.rendered.copy()
    explorer.upload([{"name": name, "content": content}])
    assert message in explorer.message and message in explorer.w_message.value
    assert explorer.image_name == before[0] and np.array_equal(explorer.rendered, before[1])


def test_huge_uploads_are_refused_before_decoding(explorer, monkeypatch):
    png = (SAMPLES_DIR / "astronaut.png").read_bytes()
    monkeypatch.setattr(widgets, "MAX_UPLOAD_PIXELS", 100_000)
    explorer.upload([{"name": "big.png", "content": png}])
    assert "512x512 is too many pixels" in explorer.message
    monkeypatch.setattr(widgets, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(ValueError, match="too large"):
        decode_upload("big.png", png)


def test_upload_names_are_shown_as_text_not_markup(explorer):
    hostile = '<img src=x onerror="alert(1)">.png'
    explorer.upload([{"name": hostile, "content": b"not an image"}])
    assert "<img" not in explorer.w_message.value and "&lt;img" in explorer.w_message.value
