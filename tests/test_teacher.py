"""MediaPipeTeacher: the real mp.solutions.holistic, wrapped, on real images."""
import numpy as np
import pytest

from holistic_lab.datasets import sample_image, sample_labels
from holistic_lab.images import load_rgb
from holistic_lab.teacher import MediaPipeTeacher


def test_teacher_reproduces_the_shipped_sample_labels(teacher):
    for name in ("astronaut", "grace_hopper"):
        result = teacher.process(sample_image(name))
        stored = sample_labels(name)
        assert result.present == stored.present
        deviation_px = np.nanmax(np.abs(result.pixels() - stored.pixels()))
        assert deviation_px < 1.0, f"{name}: labels drifted by {deviation_px:.2f}px from data_samples"


def test_teacher_finds_every_part_on_a_real_upper_body_image(teacher, fixtures):
    result = teacher.process(load_rgb(fixtures / "panoptic" / "ex2_2.flv_000040_l.jpg"))
    assert all(result.present.values())
    # the subject's left wrist (pose 15) lies at the left hand's wrist (hand joint 0)
    wrist_gap_px = np.linalg.norm(result.pixels()[15] - result.pixels()[501])
    assert wrist_gap_px < 15, wrist_gap_px
    face_and_hands = result.xyz[33:, :2]  # pose legs of an upper-body frame lie below it
    assert np.all((face_and_hands > 0) & (face_and_hands < 1))


def test_image_without_person_gives_all_parts_absent(teacher):
    blank = np.full((240, 320, 3), 127, np.uint8)
    result = teacher.process(blank)
    assert not any(result.present.values())
    assert np.isnan(result.xyz).all() and (result.width, result.height) == (320, 240)


@pytest.mark.parametrize("image, error", [
    (np.zeros((64, 64), np.uint8), ValueError),
    (np.zeros((64, 64, 4), np.uint8), ValueError),
    (np.zeros((64, 64, 3), np.float64), ValueError),
    (np.zeros((0, 64, 3), np.uint8), ValueError),
    ("astronaut.png", TypeError),
])
def test_bad_images_are_refused(teacher, image, error):
    with pytest.raises(error):
        teacher.process(image)


@pytest.mark.parametrize("complexity", [0, 2])
def test_model_complexity_that_needs_a_download_is_refused(complexity):
    with pytest.raises(ValueError, match="not available offline"):
        MediaPipeTeacher(model_complexity=complexity)


def test_video_mode_tracks_the_posetrack_frames(fixtures):
    frames = [load_rgb(p) for p in sorted((fixtures / "posetrack18" / "videos" / "000001_mpiinew_test").glob("*.jpg"))]
    with MediaPipeTeacher(static_image_mode=False) as video:
        results = list(video.process_frames(frames))
    assert len(results) == 5 and all(r.present["pose"] for r in results)
    # consecutive frames of one clip: the body moves little between frames
    shoulders = np.array([r.pixels()[11:13].mean(axis=0) for r in results])
    assert np.linalg.norm(np.diff(shoulders, axis=0), axis=1).max() < 40


def test_static_labels_do_not_depend_on_the_previous_image(teacher, fixtures):
    """MediaPipe tracks face and hand ROIs across calls even in static mode; the teacher
    resets its graph so one image always gets the same labels, whatever came before."""
    rgb = load_rgb(fixtures / "posetrack18/images/val/009473_mpii_test/000000.jpg")
    first = teacher.process(rgb)
    teacher.process(np.ascontiguousarray(np.roll(rgb, 3, axis=1)))
    again = teacher.process(rgb)
    assert first.present == again.present
    np.testing.assert_array_equal(first.xyz, again.xyz)
