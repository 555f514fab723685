"""The benchmark runner and `holistic-lab bench` on real models and images: MACs read from the
.tflite files, the machine's GEMM peak, peak memory in a fresh process, one report with MediaPipe
and every variant, Ctrl-C keeping what was measured, and bad arguments refused before any timing."""
import json
import os
import re

import numpy as np
import pytest

from holistic_lab.bench import read_report
from holistic_lab.bench.macs import op_macs, tflite_macs, total_macs
from holistic_lab.bench.peak import gemm_peak
from holistic_lab.bench.run import (Samples, accuracy_set_names, image_paths, parse_variants, peak_rss_mb, run_bench,
                                    timed_turns)
from holistic_lab.cli import main
from holistic_lab.datasets import sample_path
from holistic_lab.mediapipe_models import model_path
from holistic_lab.variants import write_variant

MADE_BY = {"command": "test", "config": {}}
PORTRAIT = sample_path("astronaut")


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """A variant that swaps in a copy of the shipped hand re-crop model (a real, runnable variant)."""
    folder = tmp_path_factory.mktemp("bench") / "recrop_copy"
    write_variant(folder, {"hand_recrop": model_path("hand_recrop")}, "recrop-copy", MADE_BY, kinds="copy")
    return folder


@pytest.mark.parametrize("name", ["face_landmark", "hand_recrop", "face_detection_short_range"])
def test_macs_from_the_tflite_match_the_keras_layer_count(name):
    from holistic_lab.convert import tflite_to_keras
    from holistic_lab.prune.cost import model_macs

    path = model_path(name)
    assert total_macs(path) == model_macs(tflite_to_keras(path)) > 1e6
    assert all(key.split(" #")[0] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") for key in tflite_macs(path))


def test_op_macs_by_hand():
    assert op_macs("CONV_2D", [(1, 8, 8, 3), (16, 3, 3, 3)], (1, 8, 8, 16)) == 8 * 8 * 16 * 3 * 3 * 3
    assert op_macs("DEPTHWISE_CONV_2D", [(1, 8, 8, 16), (1, 5, 5, 16)], (1, 4, 4, 16)) == 4 * 4 * 16 * 25
    assert op_macs("FULLY_CONNECTED", [(1, 64), (10, 64)], (1, 10)) == 640
    assert op_macs("ADD", [(1, 4), (1, 4)], (1, 4)) == 0
    # TRANSPOSE_CONV operands: output shape, filter (C_out, kh, kw, C_in), input
    assert op_macs("TRANSPOSE_CONV", [(4,), (8, 2, 2, 16), (1, 5, 5, 16)], (1, 10, 10, 8)) == 5 * 5 * 16 * 2 * 2 * 8
    assert op_macs("BATCH_MATMUL", [(1, 3, 7), (1, 7, 5)], (1, 3, 5)) == 3 * 5 * 7


def test_macs_of_a_file_that_is_not_a_model_are_refused(tmp_path):
    with pytest.raises(ValueError, match="model file not found"):
        total_macs(tmp_path / "missing.tflite")
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="cannot read .*broken.tflite"):
        total_macs(broken)


def test_gemm_peak_is_a_positive_rate_per_thread_count():
    peaks = gemm_peak(threads=(1,), shape=(64, 256, 256), rounds=2, block=3)
    assert list(peaks) == [1] and peaks[1].macs == 64 * 256 * 256 and peaks[1].n == 6
    assert 0.1 < peaks[1].gmacs < 1e4
    with pytest.raises(ValueError, match="three positive sizes"):
        gemm_peak(shape=(0, 8, 8))


def test_peak_memory_is_measured_in_a_fresh_process_from_its_own_start():
    parent_ballast = np.ones(200_000_000, np.uint8)  # 200 MB in this process: not the child's
    parent_ballast[::4096] = 1
    shipped = peak_rss_mb(None, [PORTRAIT], workers=1)
    assert 100 < shipped < 4000


def test_stage_samples_count_zero_where_a_stage_did_not_run():
    samples = Samples(["a"])
    samples.add("a", 10.0, {"pose_landmark": 3.0, "pre_post_processing": 1.0, "total": 10.0})
    samples.add("a", 12.0, {"pose_landmark": 3.0, "left_hand_landmark": 2.0, "right_hand_landmark": 4.0,
                            "pre_post_processing": 1.0, "total": 12.0})
    assert samples.stages["a"]["hand_landmark"] == [0.0, 6.0]  # both hands' invokes in their stage
    assert samples.invokes["a"]["hand_landmark"] == [2.0, 4.0]
    assert samples.stages["a"]["pose_landmark"] == [3.0, 3.0] and "total" not in samples.stages["a"]


def test_a_report_with_mediapipe_and_every_variant(tmp_path, variant):
    report = run_bench({"shipped": None, "recrop": variant}, tmp_path / "report", images=[PORTRAIT], clip=None,
                       repeats=2, warmup=0, accuracy_sets=(), memory=False, progress=False)
    again = read_report(tmp_path / "report" / "report.json")
    assert again == report and report.status.state == "complete"
    assert [v.name for v in report.variants] == ["mediapipe", "shipped", "recrop"]
    assert report.variant("recrop").kinds["hand_recrop"] == "copy"
    assert report.variant("recrop").total_bytes == report.variant("shipped").total_bytes
    rows = {(row.variant, row.mode): row for row in report.latency}
    assert set(rows) == {("mediapipe", "image"), ("shipped", "image"), ("recrop", "image")}
    assert rows[("mediapipe", "image")].ratio_to_mediapipe is None and not rows[("mediapipe", "image")].stages
    shipped = rows[("shipped", "image")]
    assert shipped.end_to_end.n == 2 and shipped.ratio_to_mediapipe.low <= shipped.ratio_to_mediapipe.high
    assert list(shipped.stages)[:2] == ["pose_detection", "pose_landmark"]  # the cascade's order
    # the pose runs before the branches: its stages fit in each call's wall time (the branches overlap)
    for index in range(2):
        pose_ms = shipped.stages["pose_detection"].samples_ms[index] + shipped.stages["pose_landmark"].samples_ms[index]
        assert 0 < pose_ms < shipped.end_to_end.samples_ms[index]
    macs = {(row.variant, row.stage): row for row in report.macs}
    assert macs[("shipped", "pose_landmark")].macs == total_macs(model_path("pose_landmark_full"))
    peaks = {row.threads: row.gmacs for row in report.peak_gmacs}
    for row in report.macs:  # each rate against the peak at the thread count it ran on
        assert row.fraction_of_peak == pytest.approx(row.gmacs_per_s / peaks[row.threads])
    assert macs[("shipped", "end_to_end")].threads == min(2, len(os.sched_getaffinity(0)))  # 1 thread x 2 workers
    assert report.settings.workers == 2 and report.settings.stage_threads == {}
    page = (tmp_path / "report" / "report.html").read_text()
    assert not re.search(r"https?:|src=\"//", page) and "recrop" in page


def test_video_mode_reports_frames_per_second(tmp_path):
    from holistic_lab.datasets import fixture_videos

    report = run_bench({"shipped": None}, tmp_path, images=[PORTRAIT], clip=fixture_videos()["gesture_face_hands.mp4"],
                       repeats=1, warmup=0, video_frames=4, accuracy_sets=("300w",), memory=False, progress=False)
    video = {row.variant: row for row in report.latency if row.mode == "video"}
    assert set(video) == {"mediapipe", "shipped"} and video["shipped"].end_to_end.n == 4
    assert video["shipped"].frames_per_s == pytest.approx(4 / (sum(video["shipped"].end_to_end.samples_ms) / 1e3), rel=0.01)
    faces = [row for row in report.accuracy if row.part == "face"]
    assert {row.variant for row in faces} == {"mediapipe", "shipped"} and all(0 < row.value < 0.5 for row in faces)


def test_ctrl_c_keeps_what_was_measured(tmp_path, monkeypatch):
    import holistic_lab.bench.run as run

    calls = []

    def interrupted_turns(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return timed_turns(*args, **kwargs)

    monkeypatch.setattr(run, "timed_turns", interrupted_turns)
    with pytest.raises(KeyboardInterrupt):
        run_bench({"shipped": None}, tmp_path, images=[PORTRAIT], threads=(1, 2), repeats=1, warmup=0,
                  memory=False, progress=False)
    kept = read_report(tmp_path / "report.json")
    assert kept.status.state == "interrupted" and kept.status.done[:2] == ["variants", "image latency, 1 thread"]
    assert {(row.variant, row.threads) for row in kept.latency} == {("mediapipe", 1), ("shipped", 1)}
    assert "interrupted" in (tmp_path / "report.html").read_text().lower()


def test_variants_are_checked_before_anything_runs(tmp_path, variant):
    assert parse_variants(["shipped", str(variant)]) == {"shipped": None, "recrop_copy": variant}
    with pytest.raises(ValueError, match="no manifest"):
        parse_variants([str(tmp_path)])
    with pytest.raises(ValueError, match="given twice"):
        parse_variants(["shipped", "shipped"])
    with pytest.raises(ValueError, match="empty name"):
        parse_variants(["shipped", ""])
    with pytest.raises(ValueError, match="measured in every report"):
        run_bench({"mediapipe": None}, tmp_path, images=[PORTRAIT], memory=False)
    assert accuracy_set_names("none") == () and accuracy_set_names("300w,coco") == ("300w", "coco")
    with pytest.raises(ValueError, match="unknown fixture set nope"):
        accuracy_set_names("300w,nope")
    assert len(image_paths()) == 4
    from holistic_lab.bench.run import stage_thread_counts

    counts = stage_thread_counts(1, {"pose_landmark": 2})
    assert counts["pose_landmark"] == 2 and counts["hand_landmark"] == counts["pose_detection"] == 1


@pytest.mark.parametrize("arguments, message", [
    (["--threads", "0"], "--threads: expected an integer from 1"),
    (["--repeats", "-1"], "--repeats: expected an integer >= 1"),
    (["--variants", "nowhere"], "no manifest"),
    (["--images", "EMPTY"], "holds no image"),
    (["--video", "missing.mp4"], "is not a file"),
    (["--accuracy", "imagenet"], "unknown fixture set imagenet"),
    (["--compare", "BAD_REPORT"], "not valid JSON|malformed|expected"),
    (["--workers", "4"], "--workers: expected an integer from 1 to 3"),
    (["--stage-threads", "pose=2"], "stage threads: .*unknown stages \\['pose'\\]"),
    (["--stage-threads", "pose_landmark"], "expected STAGE=N"),
    (["--gesture-classes", "hagrid8"], "--gesture-classes applies with --gestures only"),
    (["--gestures", "EMPTY"], "EMPTY"),
])
def test_bench_cli_refuses_bad_arguments_by_name(tmp_path, capsys, arguments, message):
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "BAD_REPORT").write_text('{"format": "holistic-lab-bench", "schema_version": 1, "status": ')
    arguments = [str(tmp_path / a) if a in ("EMPTY", "BAD_REPORT", "missing.mp4") else a for a in arguments]
    assert cli(["bench", *arguments, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "report.json").exists()  # refused before anything was written


def cli(arguments) -> int:
    """The exit code of `holistic-lab ARGUMENTS` (argparse refuses some options itself)."""
    try:
        return main(arguments)
    except SystemExit as exit:
        return exit.code


def test_bench_cli_writes_a_report_and_compares_with_an_earlier_one(tmp_path, capsys):
    common = ["bench", "--images", str(PORTRAIT.parent), "--video", "none", "--repeats", "2", "--warmup", "0",
              "--accuracy", "none", "--no-memory", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "old")]) == 0
    printed = capsys.readouterr().out
    assert "shipped (image, 1 thread)" in printed and "MediaPipe's time" in printed
    code = main([*common, "--out", str(tmp_path / "new"), "--compare", str(tmp_path / "old" / "report.json")])
    printed = capsys.readouterr().out
    assert "regression(s) in" in printed and code in (0, 1)
    assert json.loads((tmp_path / "new" / "report.json").read_text())["status"]["state"] == "complete"
    # a file that is not a report is not overwritten
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.json").write_text("my notes")
    assert cli([*common, "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "report.json").read_text() == "my notes"


def test_a_gesture_head_is_scored_on_held_out_crops(tmp_path, crops_by_class):
    from holistic_lab.gestures import GestureClassifier

    classes = ("palm", "fist")
    train = [(path, label) for label in classes for path in crops_by_class[label][:8]]
    held_out = [(path, label) for label in classes for path in crops_by_class[label][8:11]]
    classifier = GestureClassifier.train(train, views=1, epochs=2, progress=False)
    classifier.save(tmp_path / "classifier")
    folder = tmp_path / "gesture_variant"
    write_variant(folder, {}, "gestures", MADE_BY, gesture=tmp_path / "classifier")
    report = run_bench({"gestures": folder}, tmp_path / "report", images=[PORTRAIT], repeats=1, warmup=0,
                       memory=False, progress=False, gesture_items=held_out, gesture_set="held_out")
    (row,) = [row for row in report.accuracy if row.part == "gesture"]
    assert (row.variant, row.metric, row.n, row.dataset) == ("gestures", "accuracy", 6, "held_out")
    assert row.low <= row.value <= row.high and 0 <= row.value <= 1
    assert report.variant("gestures").kinds["hand_landmark"] == "gesture"
    with pytest.raises(ValueError, match=r"classes \['rock'\] that gestures's classifier does not know"):
        run_bench({"gestures": folder}, tmp_path / "r2", images=[PORTRAIT], memory=False,
                  gesture_items=held_out + [(held_out[0][0], "rock")])
    with pytest.raises(ValueError, match="no variant has a gesture head"):
        run_bench({"shipped": None}, tmp_path / "r3", images=[PORTRAIT], memory=False, gesture_items=held_out)
    assert not (tmp_path / "r2" / "report.json").exists() and not (tmp_path / "r3" / "report.json").exists()


def test_contestants_take_turns_in_a_rotating_order():
    from holistic_lab.bench.run import timed_turns

    calls = []

    class Contestant:
        def __init__(self, name):
            self.name, self.last_timings = name, {}

        def process(self, rgb):
            calls.append(self.name)

    built = {name: Contestant(name) for name in ("mediapipe", "a", "b")}
    samples = Samples(list(built))
    for turn in range(3):
        timed_turns(built, [None], samples, record=True, turn=turn)
    assert calls == ["mediapipe", "a", "b", "a", "b", "mediapipe", "b", "mediapipe", "a"]
    assert all(len(ms) == 3 for ms in samples.end_to_end.values())
