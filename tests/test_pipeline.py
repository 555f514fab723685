"""The cascade on real images: agreement with mp.solutions.holistic, video tracking on the
PoseTrack clip, swappable models, per-stage timings and bad input."""
import numpy as np
import pytest

from holistic_lab.datasets import sample_image, sample_names
from holistic_lab.images import load_rgb
from holistic_lab.mediapipe_models import model_path
from holistic_lab.pipeline import HolisticPipeline
from holistic_lab.pipeline.compare import run_agreement
from holistic_lab.pipeline.runners import TFLiteRunner
from holistic_lab.teacher import MediaPipeTeacher
from holistic_lab.topology import PARTS

HAND_IMAGES = ("aic/ff945ae2e729f24eea992814639d59b3bdec8bd8.jpg", "panoptic/ex2_2.flv_000040_l.jpg",
               "panoptic/005880453_01_l.jpg")
CLIP = "posetrack18/videos/000001_mpiinew_test"


@pytest.fixture(scope="module")
def pipeline():
    return HolisticPipeline(static_image_mode=True)


def test_agrees_with_mediapipe_on_the_sample_portraits(pipeline):
    images = [(name, sample_image(name)) for name in sample_names()]
    rows, reference, ours = run_agreement(images, pipeline)
    by_part = {r.part: r for r in rows}
    assert all(r.presence_rate == 1.0 for r in rows)
    assert by_part["pose"].both_present == by_part["face"].both_present == 2
    assert by_part["pose"].median_px <= 1.5 and by_part["face"].median_px <= 1.5
    # every point of the face mesh, not just the median, sits within a few pixels
    assert by_part["face"].max_px < 3.0


def test_agrees_with_mediapipe_on_hands(pipeline, fixtures):
    images = [(name, load_rgb(fixtures / name)) for name in HAND_IMAGES]
    rows, reference, ours = run_agreement(images, pipeline)
    by_part = {r.part: r for r in rows}
    assert sum(r.presence_equal for r in rows) / sum(r.pairs for r in rows) >= 0.9
    assert by_part["left_hand"].both_present + by_part["right_hand"].both_present >= 4
    for hand in ("left_hand", "right_hand"):
        assert by_part[hand].median_px <= 2.0
    assert by_part["pose"].median_px <= 1.5 and by_part["face"].median_px <= 1.5


def test_result_layout_timings_and_rois(pipeline):
    rgb = sample_image("astronaut")
    result = pipeline.process(rgb)
    assert result.xyz.shape == (543, 3) and (result.width, result.height) == (512, 512)
    assert result.present == {"pose": True, "face": True, "left_hand": False, "right_hand": False}
    assert np.isnan(result["left_hand"]).all() and np.isfinite(result["face"]).all()
    assert 0 <= result.visibility[:33].min() and result.visibility[:33].max() <= 1
    timings = pipeline.last_timings
    assert {"pose_detection", "pose_landmark", "face_detection", "face_landmark",
            "pre_post_processing", "total"} <= set(timings)
    assert timings["pre_post_processing"] >= 0 and all(0 < v < timings["total"] for k, v in timings.items() if k != "total")
    sources = result.extras["roi_sources"]
    assert sources["pose"] == "detection" and sources["face"] == "recrop"
    assert pipeline.last_crops["face_landmark"].tensor.shape == (1, 192, 192, 3)


def test_blank_image_has_no_person(pipeline):
    result = pipeline.process(np.zeros((120, 160, 3), np.uint8))
    assert not any(result.present.values()) and np.isnan(result.xyz).all()
    assert "pose_landmark" not in pipeline.last_timings


@pytest.mark.parametrize("bad, message", [
    (np.zeros((64, 64), np.uint8), "grayscale"),
    (np.zeros((64, 64, 4), np.uint8), "RGBA"),
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((0, 64, 3), np.uint8), "empty"),
])
def test_bad_input_is_rejected_with_a_clear_message(pipeline, bad, message):
    with pytest.raises(ValueError, match=message):
        pipeline.process(bad)


def test_bad_arguments_name_what_is_wrong(pipeline, tmp_path):
    with pytest.raises(ValueError, match="min_detection_confidence"):
        HolisticPipeline(min_detection_confidence=1.5)
    with pytest.raises(ValueError, match="neither a shipped model name"):
        HolisticPipeline(hand_landmark_model="hand.onnx")
    corrupt = tmp_path / "broken.tflite"
    corrupt.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="broken.tflite"):
        HolisticPipeline(hand_landmark_model=corrupt)
    with pytest.raises(ValueError, match="box"):
        pipeline.process_hand(sample_image("astronaut"), box=(10, 10, 5, 50))
    with pytest.raises(ValueError, match="side"):
        pipeline.process_hand(sample_image("astronaut"), side="middle")


def test_wrong_model_output_is_reported(pipeline):
    broken = HolisticPipeline(face_landmark_model=lambda tensor: [np.zeros(10, np.float32)])
    with pytest.raises(ValueError, match="face_landmark model returned 1 outputs"):
        broken.process(sample_image("astronaut"))


def test_any_stage_takes_a_callable_or_keras_model(pipeline, fixtures):
    """A stand-in model (the same .tflite, run through another interpreter) gives the same result."""
    import keras
    import tensorflow as tf

    hand_interpreter = TFLiteRunner(model_path("hand_landmark_full"))
    calls = []

    def hand_model(tensor):
        calls.append(tensor.shape)
        return hand_interpreter(tensor)

    face_interpreter = TFLiteRunner(model_path("face_landmark"))
    inputs = keras.Input((192, 192, 3), batch_size=1)
    outputs = keras.layers.Lambda(
        lambda x: tf.numpy_function(lambda t: face_interpreter(t), [x], [tf.float32, tf.float32]),
        output_shape=[(1, 1, 1, 1404), (1, 1, 1, 1)])(inputs)
    face_model = keras.Model(inputs, outputs)
    swapped = HolisticPipeline(hand_landmark_model=hand_model, face_landmark_model=face_model)
    rgb = load_rgb(fixtures / HAND_IMAGES[1])
    expected, got = pipeline.process(rgb), swapped.process(rgb)
    assert calls and calls[0] == (1, 224, 224, 3)
    assert got.present == expected.present and got.present["face"] and got.present["left_hand"]
    np.testing.assert_allclose(got.xyz, expected.xyz, atol=1e-5)


def test_process_hand_on_a_panoptic_hand_box(pipeline, fixtures):
    import json

    annotations = json.loads((fixtures / "panoptic" / "test_panoptic.json").read_text())
    image = next(i for i in annotations["images"] if i["file_name"].startswith("ex2_2"))
    annotation = next(a for a in annotations["annotations"] if a["image_id"] == image["id"])
    rgb = load_rgb(fixtures / "panoptic" / image["file_name"])
    truth = np.array(annotation["keypoints"], np.float32).reshape(21, 3)[:, :2]
    box = (*truth.min(0), *truth.max(0))
    hand = pipeline.process_hand(rgb, box=box, side="left")
    assert hand.shape == (21, 3)
    error_px = np.linalg.norm(hand[:, :2] * [rgb.shape[1], rgb.shape[0]] - truth, axis=1)
    assert np.median(error_px) < 0.05 * max(np.ptp(truth, axis=0))  # within 5% of the hand's size
    assert np.isnan(pipeline.process_hand(np.zeros((224, 224, 3), np.uint8))).all()


def test_video_mode_tracks_the_posetrack_clip(fixtures):
    frames = [load_rgb(p) for p in sorted((fixtures / CLIP).glob("*.jpg"))]
    assert len(frames) == 5
    tracker = HolisticPipeline(static_image_mode=False)
    teacher = MediaPipeTeacher(static_image_mode=False)
    hand_sources = []
    for index, frame in enumerate(frames):
        ours, reference = tracker.process(frame), teacher.process(frame)
        hand_sources.append(ours.extras["roi_sources"].get("right_hand"))
        assert ours.present["pose"] and reference.present["pose"]
        if index == 0:
            assert "pose_detection" in tracker.last_timings and ours.extras["roi_sources"]["pose"] == "detection"
        else:  # the previous landmarks place the ROI: detection does not run again
            assert "pose_detection" not in tracker.last_timings
            assert ours.extras["roi_sources"]["pose"] == "tracking"
        deviation = np.linalg.norm(ours.pixels()[PARTS["pose"]] - reference.pixels()[PARTS["pose"]], axis=1)
        assert np.median(deviation) < 1.5
    # the right hand is found on frame 1 and its landmarks place the next frame's hand crop
    assert hand_sources[2] == "tracking"
    video = list(HolisticPipeline(static_image_mode=False).process_video(fixtures / CLIP / "000001_mpiinew_test.mp4"))
    assert len(video) == 5 and all(r.present["pose"] for r in video)


def test_threads_can_be_given_to_chosen_stages_only():
    from holistic_lab.pipeline.holistic import threads_per_stage

    pipeline = HolisticPipeline(num_threads={"pose_landmark": 2})
    assert pipeline.pose_landmark.runner.num_threads == 2
    assert pipeline.pose_detection.runner.num_threads == pipeline.hand_landmark.runner.num_threads == 1
    assert set(threads_per_stage(2).values()) == {2}
    with pytest.raises(ValueError, match="unknown stages"):
        threads_per_stage({"pose": 2})
    for bad in (0, 1.5, {"face_landmark": 0}):
        with pytest.raises(ValueError, match="whole number >= 1"):
            threads_per_stage(bad)


def test_face_stages_reproduce_mediapipe_given_mediapipe_pose(fixtures, teacher):
    """The face chain alone (ROI from pose -> face detection re-crop -> face mesh), fed with
    MediaPipe's own pose landmarks, gives MediaPipe's face mesh. The image is the one where
    the whole cascade's face differs most (a blurred profile face in a 1920x1080 frame): the
    difference there comes from the pose landmarks upstream, not from the face stages."""
    from holistic_lab.pipeline.stages import face_rect_from_pose

    rgb = load_rgb(fixtures / "posetrack18/images/val/009473_mpii_test/000000.jpg")
    reference = teacher.process(rgb)
    size = (rgb.shape[1], rgb.shape[0])
    pipeline = HolisticPipeline()
    rect = face_rect_from_pose(reference.xyz[:33], size)
    recrop = pipeline.face_detection.recrop_rect(pipeline.face_detection.crop(rgb, rect), size)
    face = pipeline.face_landmark.landmarks(pipeline.face_landmark.crop(rgb, recrop))
    deviation_px = np.linalg.norm((face[:, :2] - reference["face"][:, :2]) * size, axis=1)
    assert np.median(deviation_px) < 0.2 and deviation_px.max() < 1.0, (np.median(deviation_px), deviation_px.max())


def test_latency_profile_times_every_stage_beside_mediapipe():
    from holistic_lab.pipeline.profile import latency_table, profile_latency

    images = [sample_image("astronaut")]
    profile = profile_latency(images, {"pose_landmark": 2}, repeats=2, warmup=0)
    stages = {s.stage for s in profile.stages}
    assert {"pose_detection", "pose_landmark", "face_landmark", "pre_post_processing"} <= stages
    assert all(s.median_ms <= s.p90_ms for s in profile.stages)
    assert profile.ours_ms > 0 and profile.mediapipe_ms > 0 and profile.ours_cpu_ms > 0 and profile.mediapipe_cpu_ms > 0
    table = latency_table([profile])
    assert "pose_landmark=2, others 1" in table and "its CPU ms" in table
    # the share is of the mean, and says so, with the mean it is a share of beside it
    assert "| stage | mean ms | share of mean total | median ms | p90 ms |" in table
    total_mean_ms = sum(s.mean_ms for s in profile.stages)
    for s in profile.stages:
        assert s.share == pytest.approx(s.mean_ms / total_mean_ms), s.stage
    assert sum(s.share for s in profile.stages) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        profile_latency(images, 1, repeats=0)


def test_worst_images_ranks_images_by_their_largest_deviation_from_the_reference():
    from holistic_lab.pipeline.compare import worst_images
    from holistic_lab.result import HolisticResult

    rng = np.random.default_rng(0)
    reference = [HolisticResult.from_parts({"pose": rng.uniform(0.2, 0.8, (33, 3))}, 100, 100) for _ in range(4)]
    ours = [HolisticResult.from_parts({"pose": r.xyz[:33] + [shift, 0, 0]}, 100, 100)
            for r, shift in zip(reference, (0.01, 0.3, 0.0, 0.05))]
    ours[2] = HolisticResult.empty(100, 100)          # a part found by one side only has no distance
    assert [(i, round(px, 3)) for i, px in worst_images(reference, ours, count=2)] == [(1, 30.0), (3, 5.0)]
    assert len(worst_images(reference, ours, count=10)) == 3
