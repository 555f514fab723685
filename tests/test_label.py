"""Batch labelling: folders and videos into one .npz, resumable after an interruption."""
import shutil

import numpy as np
import pytest

from holistic_lab.batch import input_files
from holistic_lab.label import label_paths, resolved_name
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
        input_files([tmp_path / "nowhere"])
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="expected an image"):
        input_files([tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match="no image or video files"):
        input_files([tmp_path])
    corrupt = tmp_path / "labels.npz"
    corrupt.write_bytes(b"garbage")
    (tmp_path / "a.png").write_bytes(np.zeros(4, np.uint8).tobytes())
    with pytest.raises(ValueError, match="labels.npz already exists and is not a holistic-lab results .npz"):
        label_paths([tmp_path / "a.png"], corrupt, progress=False)
    assert corrupt.read_bytes() == b"garbage"  # an unreadable output is never overwritten


class StubTeacher:
    """A stand-in teacher (finds nobody) where only the bookkeeping of `label_paths` is tested."""

    def __init__(self, video=False, started=None, release=None):
        self.started, self.release = started, release

    def process(self, rgb):
        from holistic_lab.result import HolisticResult

        if self.started is not None:
            self.started.set()
            assert self.release.wait(30)
        return HolisticResult.empty(rgb.shape[1], rgb.shape[0])

    def close(self):
        pass


@pytest.fixture
def small_images(tmp_path):
    import cv2

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        cv2.imwrite(str(folder / f"img{index}.png"), np.full((8, 6, 3), 40 * index, np.uint8))
    return folder


def test_resuming_with_the_folder_spelled_differently_adds_nothing(small_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "labels.npz"
    label_paths(["images"], out, teacher_factory=StubTeacher, progress=False)
    label_paths([small_images.resolve()], out, teacher_factory=StubTeacher, progress=False)
    label_paths(["./images/../images"], out, teacher_factory=StubTeacher, progress=False)
    names, _ = load_results(out)
    assert len(names) == 3 and all(name.startswith("/") for name in names)


def test_resuming_a_file_with_relative_names_adds_nothing(small_images, tmp_path, monkeypatch):
    """Files from older versions name images relative to the folder label ran in."""
    from holistic_lab.result import HolisticResult, save_results

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "old.npz"
    old_names = [f"images/img{index}.png" for index in range(2)]
    save_results(out, [HolisticResult.empty(6, 8)] * 2, old_names)
    label_paths([small_images.resolve()], out, teacher_factory=StubTeacher, progress=False)
    names, _ = load_results(out)
    assert names[:2] == old_names and len(names) == 3 and names[2] == str(small_images.resolve() / "img2.png")
    root = tmp_path.resolve()
    assert resolved_name("videos/clip.mp4#000012") == f"{root}/videos/clip.mp4#000012"
    assert resolved_name("photos/party#1.png") == f"{root}/photos/party#1.png"


@pytest.mark.parametrize("existing, message", [("notes.txt", "notes.txt already exists and is not a holistic"),
                                               ("unrelated.npz", "unrelated.npz already exists and is not a holistic")])
def test_label_never_replaces_a_file_it_did_not_make(small_images, tmp_path, existing, message):
    out = tmp_path / existing
    if existing.endswith(".npz"):
        np.savez(out, weights=np.arange(3))
    else:
        out.write_text("my notes")
    before = out.read_bytes()
    with pytest.raises(ValueError, match=message):
        label_paths([small_images], out, teacher_factory=StubTeacher, progress=False)
    assert out.read_bytes() == before
    if existing.endswith(".npz"):  # asked for explicitly, it is replaced with fresh labels
        label_paths([small_images], out, teacher_factory=StubTeacher, progress=False, overwrite=True)
        assert len(load_results(out)[0]) == 3


def test_a_second_run_into_the_same_output_is_refused(small_images, tmp_path):
    """Two runs at once (two threads, each with its own lock handle) into one --out: the second is refused."""
    import threading

    out = tmp_path / "labels.npz"
    started, release = threading.Event(), threading.Event()
    errors = []

    def first_run():
        try:
            label_paths([small_images], out, teacher_factory=lambda video: StubTeacher(video, started, release),
                        progress=False)
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert started.wait(30)
        other = shutil.copy(small_images / "img0.png", tmp_path / "other.png")
        with pytest.raises(ValueError, match="labels.npz is being written by another run"):
            label_paths([other], out, teacher_factory=StubTeacher, progress=False)
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    names, _ = load_results(out)
    assert len(names) == 3 and all("/images/" in name for name in names)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the lock file is gone
    label_paths([tmp_path / "other.png"], out, teacher_factory=StubTeacher, progress=False)
    assert len(load_results(out)[0]) == 4  # released: the next run goes on


def test_an_image_named_twice_in_one_run_is_labelled_once(small_images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = label_paths([small_images, small_images.resolve() / "img1.png", "images/img1.png"], tmp_path / "labels.npz",
                      teacher_factory=StubTeacher, progress=False)
    names, _ = load_results(out)
    assert sorted(names) == sorted(str((small_images / f"img{i}.png").resolve()) for i in range(3))


class RefusesDarkImages(StubTeacher):
    def process(self, rgb):
        if not rgb.any():
            raise ValueError("image is all black")
        return super().process(rgb)


def test_an_image_the_teacher_refuses_is_skipped_by_name_and_recorded(small_images, tmp_path, capsys):
    from holistic_lab.result import load_skipped

    (small_images / "clip.mp4").mkdir()  # a folder with a video's suffix inside an input folder: not a video
    out = label_paths([small_images], tmp_path / "labels.npz", teacher_factory=RefusesDarkImages, progress=False)
    names, _ = load_results(out)
    assert [n.rpartition("/")[2] for n in names] == ["img1.png", "img2.png"]
    assert load_skipped(out) == [f"{(small_images / 'img0.png').resolve()}: image is all black"]
    assert "skipped " in capsys.readouterr().out
