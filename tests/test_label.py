"""Batch labelling: folders and videos into one .npz, resumable after an interruption."""
import shutil

import numpy as np
import pytest

from holistic_lab.label import expand_inputs, label_paths
from holistic_lab.result import load_results
from holistic_lab.teacher import MediaPipeTeacher


class InterruptAfter:
    """A teacher factory whose teachers raise KeyboardInterrupt after `limit` images in total."""

    def __init__(self, limit):
        self.limit, self.count = limit, 0

    def __call__(self, video):
        factory = self

        class Teacher(MediaPipeTeacher):
            def process(self, rgb):
                if factory.count >= factory.limit:
                    raise KeyboardInterrupt
                factory.count += 1
                return super().process(rgb)

        return Teacher(static_image_mode=not video)


@pytest.fixture
def image_folder(tmp_path, fixtures):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg"]:
        shutil.copy(fixtures / "coco" / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def test_interrupted_run_keeps_its_work_and_resumes(image_folder, tmp_path, capsys):
    out = tmp_path / "labels.npz"
    with pytest.raises(KeyboardInterrupt):
        label_paths([image_folder], out, teacher_factory=InterruptAfter(2), progress=False)
    names, results = load_results(out)
    assert len(names) == 2 and all(r.present["pose"] for r in results)

    label_paths([image_folder], out, progress=False)
    names, results = load_results(out)
    assert sorted(n.rsplit("/", 1)[-1] for n in names) == ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg"]
    assert "skipped" in capsys.readouterr().out  # broken.jpg is reported, not fatal
    first = dict(zip(names, results))
    label_paths([image_folder], out, progress=False)  # nothing left to do: unchanged
    names_again, results_again = load_results(out)
    assert names_again == names and all(first[n].allclose(r) for n, r in zip(names_again, results_again))


def test_video_frames_are_labelled_in_video_mode(fixtures, tmp_path):
    clip = fixtures / "posetrack18" / "videos" / "000001_mpiinew_test" / "000001_mpiinew_test.mp4"
    out = label_paths([clip], tmp_path / "video.npz", progress=False)
    names, results = load_results(out)
    assert names[0].endswith("#000000") and len(names) >= 5
    assert sum(r.present["pose"] for r in results) == len(results)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        expand_inputs([tmp_path / "nowhere"])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="not an image or video"):
        expand_inputs([tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match="no image or video files"):
        expand_inputs([tmp_path])
    corrupt = tmp_path / "labels.npz"
    corrupt.write_bytes(b"garbage")
    (tmp_path / "a.png").write_bytes(np.zeros(4, np.uint8).tobytes())
    with pytest.raises(ValueError, match="cannot read results file"):
        label_paths([tmp_path / "a.png"], corrupt, progress=False)
    assert corrupt.read_bytes() == b"garbage"  # an unreadable output is never overwritten
