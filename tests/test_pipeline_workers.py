"""Face and hands at once (`HolisticPipeline(workers=2|3)`): the same results as one after
another on real images and a real video, separate interpreters per thread, errors raised
only after every branch has stopped, and bad arguments refused by name."""
import threading

import numpy as np
import pytest

from holistic_lab.datasets import fixture_videos
from holistic_lab.images import iter_video_frames
from holistic_lab.pipeline import HolisticPipeline
from holistic_lab.pipeline.profile import latency_images
from holistic_lab.pipeline.runners import TFLiteRunner

CLIP_FRAMES = 30


def same_run(reference: HolisticPipeline, candidate: HolisticPipeline, rgb: np.ndarray) -> None:
    """Both pipelines on `rgb`: identical landmarks, presence, ROIs, ROI sources, crops and key order."""
    expected, got = reference.process(rgb), candidate.process(rgb)
    assert expected.present == got.present
    np.testing.assert_array_equal(expected.to_array(), got.to_array())
    assert list(reference.last_timings) == list(candidate.last_timings)
    assert reference.last_rois == candidate.last_rois
    assert reference.last_roi_sources == candidate.last_roi_sources
    assert list(reference.last_crops) == list(candidate.last_crops)
    for key, crop in reference.last_crops.items():
        np.testing.assert_array_equal(crop.tensor, candidate.last_crops[key].tensor)


@pytest.mark.parametrize("workers", [2, 3])
def test_parts_at_once_give_the_sequential_results_on_real_images(fixtures, workers):
    images = latency_images()
    assert len(images) >= 4  # the portraits and the fixtures where both hands are found
    with HolisticPipeline() as sequential, HolisticPipeline(workers=workers) as parallel:
        for rgb in images + images[::-1]:
            same_run(sequential, parallel, rgb)
        assert parallel.last_parts_ms > 0
        timings = parallel.last_timings
        assert timings["pre_post_processing"] > 0 and timings["total"] >= parallel.last_parts_ms


def test_parts_at_once_track_a_real_video_like_the_sequential_cascade():
    clip = fixture_videos()["gesture_face_hands.mp4"]
    with HolisticPipeline(static_image_mode=False) as sequential, \
            HolisticPipeline(static_image_mode=False, workers=2) as parallel:
        sources = []
        for index, frame in iter_video_frames(clip):
            if index >= CLIP_FRAMES:
                break
            same_run(sequential, parallel, frame)
            sources += [parallel.last_roi_sources.get(part) for part in ("face", "left_hand", "right_hand")]
    assert "tracking" in sources  # a previous frame's part placed its crop: tracking state went through the threads


def test_each_thread_has_its_own_hand_interpreters():
    with HolisticPipeline(workers=2) as pipeline:
        left, right = pipeline._hand_stages["left_hand"], pipeline._hand_stages["right_hand"]
        for own, other in zip(left, right):
            assert isinstance(other.runner, TFLiteRunner) and own.runner.interpreter is not other.runner.interpreter
            assert own.runner.path == other.runner.path and own.runner.num_threads == other.runner.num_threads


def test_callable_hand_models_run_both_hands_in_one_thread(fixtures):
    """A callable or Keras model may not be thread-safe: both hands then share one thread, in order."""
    hand_model = TFLiteRunner(HolisticPipeline().hand_landmark.runner.path)
    calls = []

    def hand_landmark(tensor):
        calls.append(threading.get_ident())
        return hand_model(tensor)

    images = latency_images()
    with HolisticPipeline() as sequential, HolisticPipeline(workers=3, hand_landmark_model=hand_landmark) as parallel:
        assert parallel._hand_stages["right_hand"] is parallel._hand_stages["left_hand"]
        for rgb in images:
            calls.clear()
            same_run(sequential, parallel, rgb)
            assert len(set(calls)) <= 1
            if parallel.last_timings.get("right_hand_landmark") and parallel.last_timings.get("left_hand_landmark"):
                assert len(calls) == 2


def test_an_error_in_one_branch_is_raised_after_every_branch_stopped():
    running, finished = threading.Event(), threading.Event()
    face = TFLiteRunner(HolisticPipeline().face_landmark.runner.path)

    def slow_face(tensor):
        running.set()
        outputs = face(tensor)
        threading.Event().wait(0.2)
        finished.set()
        return outputs

    def broken_hand(tensor):
        running.wait(5)
        raise RuntimeError("hand model failed")

    rgb = latency_images()[-1]  # both hands found there
    with HolisticPipeline(workers=2, face_landmark_model=slow_face, hand_landmark_model=broken_hand) as pipeline:
        with pytest.raises(RuntimeError, match="hand model failed"):
            pipeline.process(rgb)
        assert finished.is_set()  # the face branch was not left running behind the error


@pytest.mark.parametrize("bad", [0, 4, 1.5, True, "2", None])
def test_bad_workers_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="workers must be a whole number from 1"):
        HolisticPipeline(workers=bad)


def test_a_closed_pipeline_refuses_work():
    pipeline = HolisticPipeline(workers=2)
    pipeline.close()
    with pytest.raises(RuntimeError, match="was closed"):
        pipeline.process(latency_images()[0])
    pipeline.close()  # closing twice is harmless


def test_hot_spots_rank_the_cascades_python_time_per_image():
    from holistic_lab.pipeline.profile import hot_spots

    rows = hot_spots(latency_images()[:1], repeats=2, top=8, workers=1)
    assert len(rows) == 8
    own = [row["own ms per image"] for row in rows]
    assert own == sorted(own, reverse=True) and own[0] > 0
    assert any("Invoke" in row["function"] for row in rows)  # the models' own time is there, by name
    with pytest.raises(ValueError, match="repeats and top must be >= 1"):
        hot_spots(latency_images()[:1], repeats=0)
    with pytest.raises(ValueError, match="hot_spots profiles one thread: give workers=1"):
        hot_spots(latency_images()[:1], workers=2)
