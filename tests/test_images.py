"""Images enter the library as uint8 RGB H x W x 3; anything else is refused by name."""
import numpy as np
import pytest

from holistic_lab.images import check_rgb, iter_video_frames, load_rgb


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((8, 8), np.uint8), ValueError, "grayscale"),
    (np.zeros((8, 8, 4), np.uint8), ValueError, "RGBA"),
    (np.zeros((8, 8, 3), np.float32), ValueError, "dtype uint8"),
    (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
    (np.zeros((2, 8, 8, 3), np.uint8), ValueError, "shape"),
    ([[0, 0, 0]], TypeError, "list"),
])
def test_check_rgb_names_the_problem(image, error, message):
    with pytest.raises(error, match=message):
        check_rgb(image)


def test_load_rgb_decodes_and_refuses_corrupt_files(tmp_path, fixtures):
    rgb = load_rgb(fixtures / "coco" / "000000000785.jpg")
    assert rgb.dtype == np.uint8 and rgb.shape == (425, 640, 3)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="corrupt.jpg"):
        load_rgb(corrupt)
    with pytest.raises(ValueError, match="not found"):
        load_rgb(tmp_path / "missing.png")


def test_video_frames_from_the_posetrack_clip(fixtures, tmp_path):
    clip = fixtures / "posetrack18" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
    frames = list(iter_video_frames(clip))
    assert [i for i, _ in frames] == list(range(len(frames))) and len(frames) >= 5
    assert frames[0][1].dtype == np.uint8 and frames[0][1].ndim == 3
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"nothing")
    with pytest.raises(ValueError, match="bogus.mp4"):
        list(iter_video_frames(bogus))
