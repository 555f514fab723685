"""A hostile user of `holistic-lab bench` and of `HolisticPipeline(workers=2|3)`.

The bench: outputs that are files, someone else's report files, read-only or locked folders,
tampered or doubled variants, broken images, clips and earlier reports, Ctrl-C at every step:
each refused by name before anything is measured, or kept as a readable report marked
"interrupted", never a half-written file or a page that shows another run. Most runs here swap
the contestants for instant fakes (the real runner is timed in test_bench_run.py).

The pipeline: a Keras hand model with workers gives the sequential results, an error in one
branch leaves the pipeline usable, dropped pipelines leave no threads, and a second thread in
the same pipeline gets a clear error instead of TFLite's.
"""
import gc
import json
import os
import re
import shutil
import struct
import threading
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

import holistic_lab.bench.html as bench_html
import holistic_lab.bench.peak as bench_peak
import holistic_lab.bench.run as bench_run
from holistic_lab.bench import read_report
from holistic_lab.bench.run import parse_variants, run_bench
from holistic_lab.cli import main
from holistic_lab.datasets import sample_path
from holistic_lab.files import output_lock
from holistic_lab.images import load_rgb
from holistic_lab.mediapipe_models import model_path
from holistic_lab.pipeline import HolisticPipeline
from holistic_lab.variants import read_variant, write_variant

QUICK_RUN = ["--repeats", "1", "--warmup", "0", "--video", "none", "--accuracy", "none", "--no-memory", "--no-progress"]


def cli(arguments) -> int:
    try:
        return main([str(a) for a in arguments])
    except SystemExit as exit:  # argparse's own refusals
        return exit.code


def leftovers(folder) -> list[str]:
    """Files a run left in `folder`, a half-written temporary or a lock included."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(sample_path("astronaut"), folder)
    return folder


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants") / "v"
    write_variant(folder, {"hand_recrop": model_path("hand_recrop")}, "v", {"command": "test", "config": {}}, kinds="copy")
    return folder


class FakeCascade:
    """Instant stand-in for MediaPipe or a pipeline: the runner's bookkeeping without the models."""
    last_timings = {"pose_detection": 1.0, "pose_landmark": 2.0, "pre_post_processing": 0.5, "total": 4.0}

    def process(self, rgb):
        pass


@pytest.fixture
def fake_cascades(monkeypatch):
    monkeypatch.setattr(bench_run, "contestants", lambda variants, *args: {
        name: FakeCascade() for name in ["mediapipe", *variants]})
    monkeypatch.setattr(bench_peak, "gemm_peak", lambda threads: {t: SimpleNamespace(gmacs=10.0 * t) for t in threads})


def bench(images, out, *more) -> int:
    return cli(["bench", "--images", images, *QUICK_RUN, *more, "--out", out])


# --out

def test_out_that_is_a_file_is_refused_and_left_as_it_was(tmp_path, images, capsys):
    (tmp_path / "notes").write_text("mine")
    assert bench(images, tmp_path / "notes") == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "notes").read_text() == "mine"


@pytest.mark.parametrize("name, text", [("report.json", '{"format": "someone-else"}'),
                                        ("report.html", "<html>my page</html>")])
def test_someone_elses_report_file_is_kept_unless_overwrite(tmp_path, images, capsys, fake_cascades, name, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(text)
    assert bench(images, out) == 2
    assert f"{name} already exists" in capsys.readouterr().err
    assert (out / name).read_text() == text and leftovers(out) == [name]
    assert bench(images, out, "--overwrite") == 0
    assert read_report(out / "report.json").status.state == "complete"
    assert "holistic-lab bench" in (out / "report.html").read_text()


@pytest.mark.parametrize("name", ["report.json", "report.html"])
def test_a_named_pipe_in_out_is_refused_not_read(tmp_path, images, capsys, name):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / name)  # opening it to see whether it is ours waited for a writer, forever
    assert bench(images, out) == 2
    assert f"{name} already exists" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_read_only_out_is_refused_by_name(tmp_path, images, capsys, fake_cascades):
    out = tmp_path / "locked_down"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert bench(images, out) in (1, 2)
        assert "locked_down" in capsys.readouterr().err and leftovers(out) == []
    finally:
        out.chmod(0o755)


def test_out_where_nothing_can_be_written_is_refused_by_name(tmp_path, images, capsys):
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    assert bench(images, tmp_path / "dangling") == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "gone").exists()
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    assert bench(images, "/proc/holistic_lab_bench") == 2  # a read-only file system, even for root
    assert "--out /proc/holistic_lab_bench: cannot write in /proc" in capsys.readouterr().err


def test_out_inside_a_variant_folder_leaves_the_variant_usable(tmp_path, images, variant, fake_cascades):
    assert bench(images, variant / "manifest.json", "--variants", variant) == 2  # a file of the variant: refused
    assert bench(images, variant / "bench", "--variants", variant) == 0
    try:
        assert read_report(variant / "bench" / "report.json").variant("v").kinds["hand_recrop"] == "copy"
        assert read_variant(variant).stages.keys() == {"hand_recrop"}
    finally:
        shutil.rmtree(variant / "bench")


def test_a_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path, images, capsys, fake_cascades):
    out = tmp_path / "out"
    with output_lock(out / "report.json", "--out"):
        assert bench(images, out) == 2
        assert "being written by another run" in capsys.readouterr().err
        assert not (out / "report.json").exists()
    assert bench(images, out) == 0 and leftovers(out) == ["report.html", "report.json"]  # the lock is gone


# --variants

def test_a_tampered_variant_is_refused_by_its_checksum(tmp_path, images, variant, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(variant, tampered)
    model = bytearray((tampered / "hand_recrop.tflite").read_bytes())
    model[-10] ^= 1
    (tampered / "hand_recrop.tflite").write_bytes(model)
    assert bench(images, tmp_path / "out", "--variants", tampered) == 2
    assert re.search(r"hand_recrop.tflite: sha256 .* changed since the variant was written", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_one_folder_under_two_spellings_or_a_link_is_given_twice(tmp_path, variant, monkeypatch):
    monkeypatch.chdir(variant.parent)
    os.symlink(variant, tmp_path / "link")
    for specs in (["v", "./v/"], ["v", str(variant)], [str(tmp_path / "link"), "v"]):
        with pytest.raises(ValueError, match="the same folder, given twice"):
            parse_variants(specs)
    assert parse_variants([str(tmp_path / "link")]) == {"v": tmp_path / "link"}  # a link alone is fine


def test_folders_named_like_mediapipe_or_shipped_get_their_parents_name(tmp_path, variant):
    for name in ("mediapipe", "shipped"):
        shutil.copytree(variant, tmp_path / name)
    names = parse_variants(["shipped", str(tmp_path / "mediapipe"), str(tmp_path / "shipped")])
    assert list(names) == ["shipped", f"{tmp_path.name}/mediapipe", f"{tmp_path.name}/shipped"]
    for parent in ("a/x", "b/x", "c/x"):
        shutil.copytree(variant, tmp_path / parent / "v")
    assert list(parse_variants([str(tmp_path / p / "v") for p in ("a/x", "b/x")])) == ["v", "x/v"]
    with pytest.raises(ValueError, match="c/x/v would be named 'x/v', like another variant; rename its folder"):
        parse_variants([str(tmp_path / p / "v") for p in ("a/x", "b/x", "c/x")])


def test_a_gesture_variant_reports_the_model_its_hand_stage_runs(tmp_path):
    """Its classifier's model (hand model + head) replaces the hand stage: its file, not the
    shipped hand model's, is what the report sizes and counts MACs of."""
    from holistic_lab.files import sha256_file
    from holistic_lab.pipeline.gesture import FORMAT, MANIFEST, MODEL_FILE, VERSION

    classifier = tmp_path / "classifier"
    classifier.mkdir()
    shutil.copy(model_path("hand_recrop"), classifier / MODEL_FILE)  # read, never run, here: any other .tflite
    (classifier / MANIFEST).write_text(json.dumps({"format": FORMAT, "version": VERSION, "labels": ["palm", "fist"],
                                                   "sha256": sha256_file(classifier / MODEL_FILE)}))
    write_variant(tmp_path / "g", {}, "g", {"command": "test", "config": {}}, gesture=classifier)
    entry = bench_run.variant_entry("g", tmp_path / "g")
    assert entry["kinds"]["hand_landmark"] == "gesture"
    assert entry["stage_bytes"]["hand_landmark"] == (tmp_path / "g" / "gesture" / MODEL_FILE).stat().st_size
    assert bench_run.stage_files(tmp_path / "g")["hand_landmark"] == tmp_path / "g" / "gesture" / MODEL_FILE


# --images, --video

def png_header(width: int, height: int) -> bytes:
    """A valid PNG that declares `width` x `height` (no pixel data to speak of)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, message", [
    ("corrupt.jpg", b"\xff\xd8\xff\xe0" + b"garbage" * 20, "cannot decode image .*corrupt.jpg"),
    ("empty.png", b"", "cannot decode image .*empty.png"),
    ("huge.png", png_header(8000, 8000), "huge.png is 8000x8000 .* over the limit"),
])
def test_a_bad_image_among_good_ones_is_refused_before_anything_is_written(tmp_path, images, capsys, name, content,
                                                                           message):
    (images / name).write_bytes(content)
    assert bench(images, tmp_path / "out") == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out" / "report.json").exists()


def test_images_folder_without_images_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "folder.png").mkdir()
    assert bench(tmp_path, tmp_path / "out") == 2
    assert "holds no image" in capsys.readouterr().err


def test_tiff_images_are_found_as_load_rgb_reads_them(tmp_path, fake_cascades):
    import cv2

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "portrait.tif"), cv2.imread(str(sample_path("astronaut"))))
    assert bench(tmp_path / "images", tmp_path / "out") == 0
    assert read_report(tmp_path / "out" / "report.json").settings.n_images == 1


@pytest.mark.parametrize("clip", ["text", "truncated"])
def test_a_clip_that_does_not_decode_is_refused_before_the_image_timings(tmp_path, images, capsys, monkeypatch, clip):
    from holistic_lab.datasets import fixture_videos

    path = tmp_path / "clip.mp4"
    if clip == "text":
        path.write_text("not a video")
    else:  # the first KB of a real clip: its container header, no frame
        path.write_bytes(fixture_videos()["gesture_face_hands.mp4"].read_bytes()[:1024])
    monkeypatch.setattr(bench_run, "contestants", lambda *args: pytest.fail("timing started before the clip was checked"))
    assert bench(images, tmp_path / "out", "--video", path) == 2  # the last --video counts
    assert "clip.mp4" in capsys.readouterr().err and not (tmp_path / "out" / "report.json").exists()


# --compare

@pytest.mark.parametrize("kind, message", [
    ("not json", "not valid JSON"), ("schema 2", "schema_version: this holistic-lab reads version 1, got 2"),
    ("folder", "not a regular file"), ("pipe", "not a regular file"),  # reading a named pipe waited forever
    ("huge", "too large for a holistic-lab benchmark report"),
])
def test_a_bad_earlier_report_is_refused_before_the_run(tmp_path, images, capsys, kind, message):
    path = tmp_path / "old"
    if kind == "not json":
        path.write_text("hello")
    elif kind == "schema 2":
        path.write_text(json.dumps({"format": "holistic-lab-bench", "schema_version": 2}))
    elif kind == "folder":
        path.mkdir()
    elif kind == "pipe":
        os.mkfifo(path)
    else:
        with open(path, "wb") as sparse:
            sparse.truncate(65 << 20)
    assert bench(images, tmp_path / "out", "--compare", path) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_compare_with_the_report_this_run_replaces_uses_the_earlier_one(tmp_path, images, capsys, monkeypatch,
                                                                       fake_cascades):
    """--compare out/report.json --out out: the run replaces that file; it must be compared as it
    was (here edited to 0.01 ms per image, so a 5 ms run is a regression), not with itself."""
    monkeypatch.setattr(FakeCascade, "process", lambda self, rgb: time.sleep(0.005))
    out = tmp_path / "out"
    assert bench(images, out) == 0
    earlier = json.loads((out / "report.json").read_text())
    for row in earlier["latency"]:
        if row["variant"] == "shipped":
            row["end_to_end"].update(median_ms=0.01, p90_ms=0.01, min_ms=0.01, max_ms=0.01, n=1, samples_ms=[0.01])
    (out / "report.json").write_text(json.dumps(earlier))
    capsys.readouterr()
    assert bench(images, out, "--compare", out / "report.json") == 1
    assert "latency shipped end_to_end" in capsys.readouterr().out
    assert read_report(out / "report.json").latency[1].end_to_end.median_ms > 1  # replaced by this run's


# Ctrl-C

def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where, done", [("variant_entry", []), ("contestants", ["variants"]),
                                          ("macs_rows", ["variants", "image latency, 1 thread"])])
def test_ctrl_c_leaves_a_readable_interrupted_report_and_no_partial_file(tmp_path, images, capsys, monkeypatch,
                                                                        fake_cascades, where, done):
    monkeypatch.setattr(bench_run, where, interrupt)
    assert bench(images, tmp_path / "out") == 130
    assert "what was measured is kept" in capsys.readouterr().err
    report = read_report(tmp_path / "out" / "report.json")
    assert report.status.state == "interrupted" and report.status.done == done
    assert "interrupted" in (tmp_path / "out" / "report.html").read_text().lower()
    assert leftovers(tmp_path / "out") == ["report.html", "report.json"]


def test_ctrl_c_before_anything_is_measured_says_so_and_keeps_the_earlier_report(tmp_path, images, capsys, monkeypatch,
                                                                                 fake_cascades):
    out = tmp_path / "out"
    assert bench(images, out) == 0
    earlier = (out / "report.json").read_text()
    monkeypatch.setattr(bench_run, "load_rgb", interrupt)
    assert bench(images, out) == 130
    assert "interrupted before anything was measured" in capsys.readouterr().err
    assert (out / "report.json").read_text() == earlier and leftovers(out) == ["report.html", "report.json"]


def test_ctrl_c_while_the_page_is_drawn_leaves_no_page_of_an_earlier_run(tmp_path, images, monkeypatch, fake_cascades):
    out = tmp_path / "out"
    assert bench(images, out) == 0
    monkeypatch.setattr(bench_html, "write_html", interrupt)
    assert bench(images, out, "--threads", "2") == 130
    assert read_report(out / "report.json").settings.threads == [2]
    assert leftovers(out) == ["report.json"]  # the old page (1 thread) is gone, not shown beside the new JSON


def test_a_run_killed_mid_way_leaves_no_page_of_an_earlier_run(tmp_path, images, monkeypatch, fake_cascades):
    out = tmp_path / "out"
    assert bench(images, out) == 0

    def look_then_stop(*args):
        assert leftovers(out) == [".report.json.lock", "report.json"]  # saved "running", the old page removed
        assert read_report(out / "report.json").status.state == "running"
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_run, "contestants", look_then_stop)
    assert bench(images, out) == 130


# bad numbers

@pytest.mark.parametrize("arguments, message", [
    (["--threads", "1,1"], "threads: each count once"),
    (["--threads", "1,,x"], "--threads: expected an integer"),
    (["--threads", "1.5"], "--threads: expected an integer"),
    (["--workers", "0"], "--workers: expected an integer from 1 to 3"),
    (["--threads", "1", "1"], "threads: each count once"),
    (["--stage-threads", "pose_landmark=2,pose_landmark=1"], "pose_landmark is given twice"),
    (["--workers", "4"], "--workers: expected an integer from 1 to 3"),
    (["--repeats", "0"], "--repeats: expected an integer >= 1"),
    (["--warmup", "-1"], "--warmup: expected an integer >= 0"),
    (["--video-frames", "0"], "--video-frames: expected an integer >= 1"),
])
def test_bad_numbers_are_refused_by_name(tmp_path, images, capsys, arguments, message):
    assert bench(images, tmp_path / "out", *arguments) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.json").exists()


def test_run_bench_refuses_a_thread_count_twice(tmp_path):
    with pytest.raises(ValueError, match="each count once"):
        run_bench({"shipped": None}, tmp_path, images=[sample_path("astronaut")], threads=(1, 1), memory=False)


# HolisticPipeline(workers=...)

@pytest.fixture(scope="module")
def two_hands(fixtures):
    """A fixture image where the pose, the face and both hands are found."""
    from holistic_lab.bench.run import LATENCY_FIXTURES
    from holistic_lab.datasets import fixture_path

    return load_rgb(fixture_path(LATENCY_FIXTURES[1]))


def same_result(a, b, atol=0.0) -> bool:
    return np.array_equal(a.present, b.present) and np.allclose(a.xyz, b.xyz, atol=atol, rtol=0, equal_nan=True)


def test_a_keras_hand_model_with_workers_runs_both_hands_in_one_thread_with_the_sequential_results(two_hands):
    from holistic_lab.convert import tflite_to_keras

    keras_hand = tflite_to_keras(model_path("hand_landmark_full"))
    sequential = HolisticPipeline(hand_landmark_model=keras_hand).process(two_hands)
    assert sequential.present["left_hand"] and sequential.present["right_hand"]
    with HolisticPipeline(hand_landmark_model=keras_hand, workers=3) as pipeline:
        runner, hand_threads = pipeline.hand_landmark.runner, []

        def spy(tensor):
            hand_threads.append(threading.get_ident())
            return runner(tensor)

        pipeline.hand_landmark.runner = spy
        assert same_result(pipeline.process(two_hands), sequential, atol=1e-5)
    assert len(hand_threads) == 2 and len(set(hand_threads)) == 1


def test_an_error_in_one_branch_leaves_the_pipeline_working_on_the_next_image(two_hands, monkeypatch):
    with HolisticPipeline(workers=2) as pipeline:
        expected = pipeline.process(two_hands)
        stage = pipeline._hand_stages["right_hand"][1]
        monkeypatch.setattr(stage, "landmarks", lambda *args: (_ for _ in ()).throw(RuntimeError("broken hand model")))
        with pytest.raises(RuntimeError, match="broken hand model"):
            pipeline.process(two_hands)
        monkeypatch.undo()
        assert same_result(pipeline.process(two_hands), expected)


def test_dropped_pipelines_leave_no_threads_behind():
    rgb = load_rgb(sample_path("astronaut"))
    before = threading.active_count()
    for _ in range(6):
        pipeline = HolisticPipeline(workers=3)
        pipeline.process(rgb)
        del pipeline
    gc.collect()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


@pytest.mark.parametrize("workers", [1, 2])
def test_a_second_thread_in_the_same_pipeline_gets_a_clear_error(workers, monkeypatch):
    rgb = load_rgb(sample_path("astronaut"))
    with HolisticPipeline(workers=workers) as pipeline:
        expected = pipeline.process(rgb)
        inside, release = threading.Event(), threading.Event()
        detect = pipeline.pose_detection.detect

        def slow_detect(*args):
            inside.set()
            release.wait(10)
            return detect(*args)

        monkeypatch.setattr(pipeline.pose_detection, "detect", slow_detect)
        results = []
        first = threading.Thread(target=lambda: results.append(pipeline.process(rgb)))
        first.start()
        assert inside.wait(10)
        with pytest.raises(RuntimeError, match="already processing an image in another thread"):
            pipeline.process(rgb)
        release.set()
        first.join(10)
        assert same_result(results[0], expected)
        assert same_result(pipeline.process(rgb), expected)  # free again once the first call is done

