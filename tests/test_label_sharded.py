"""Sharded labelling on Ray Data: the same labels as `label_paths`, resumable shard by shard, bad arguments refused.

Two local Ray workers label a real clip (pose_squats.mp4, 65 frames) and a few HaGRID photographs
beside a broken image. MediaPipe gives bit-identical results in a worker process and in this one,
so names and arrays are compared exactly. One Ray session serves the module (label_sharded uses
it and leaves it running); the first test, before that session starts, checks that a call which
started Ray itself shuts it down even when it raises.
"""
import shutil

import numpy as np
import pytest

from holistic_lab.batch import input_files
from holistic_lab.cli import main
from holistic_lab.datasets import fixture_videos, hagrid_frames
from holistic_lab.files import output_lock
from holistic_lab.label import label_paths
from holistic_lab.label_sharded import MANIFEST, _ray_session, label_sharded, load_sharded, work_units
from holistic_lab.result import load_results, load_skipped

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """[a folder of 3 photographs and a broken image, a 65-frame clip], copied so names are stable."""
    root = tmp_path_factory.mktemp("corpus")
    images = root / "images"
    images.mkdir()
    for path, _ in hagrid_frames()[:3]:
        shutil.copy(path, images / path.name)
    (images / "zz_broken.jpg").write_bytes(b"not an image")
    clip = root / "pose_squats.mp4"
    shutil.copy(fixture_videos()["pose_squats.mp4"], clip)
    return [images, clip]


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """(names, results) of the single-process run."""
    return load_results(label_paths(corpus, tmp_path_factory.mktemp("single") / "labels.npz", progress=False))


@pytest.fixture(scope="module")
def ray_session():
    with _ray_session(2, None) as session:
        yield session


def assert_same(got, expected):
    (names, results), (expected_names, expected_results) = got, expected
    assert names == expected_names
    for name, result, other in zip(names, results, expected_results):
        assert np.array_equal(result.xyz, other.xyz, equal_nan=True), name
        assert np.array_equal(result.visibility, other.visibility), name
        assert (result.present, result.width, result.height) == (other.present, other.width, other.height), name


def test_a_failed_call_shuts_down_the_ray_it_started(tmp_path):
    assert not ray.is_initialized()  # runs before the module's shared session starts
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="nothing processed: all 1 inputs were skipped"):
        label_sharded([broken], tmp_path / "out", workers=1, progress=False)
    assert not ray.is_initialized()


def test_sharded_labels_equal_the_single_process_run(corpus, reference, ray_session, tmp_path, capsys):
    out = tmp_path / "shards"
    assert label_sharded(corpus, out, workers=2, progress=False, images_per_unit=2) == out
    assert_same(load_sharded(out), reference)
    assert ray.is_initialized()  # a session it did not start is left running
    with pytest.raises(ValueError, match="workers 3: the Ray cluster has 2 CPUs"):
        label_sharded(corpus, tmp_path / "more", workers=3, progress=False)
    assert "zz_broken.jpg" in capsys.readouterr().out

    merged = tmp_path / "merged.npz"
    assert main(["label", "--merge", str(out), "--out", str(merged)]) == 0
    assert_same(load_results(merged), reference)
    assert [line for line in load_skipped(merged) if "zz_broken.jpg" in line]


def test_a_rerun_redoes_only_damaged_shards(corpus, reference, ray_session, tmp_path):
    out = tmp_path / "shards"
    label_sharded(corpus, out, workers=2, progress=False, images_per_unit=2)
    shards = [out / unit.shard for unit in work_units(input_files(corpus), 2)]
    assert len(shards) == 3 and all(shard.is_file() for shard in shards)
    kept, corrupted, deleted = shards[0], shards[1], shards[2]
    before = kept.stat()
    corrupted.write_bytes(b"half a shard")
    deleted.unlink()
    with pytest.raises(ValueError, match=r"shard-[0-9a-f]{20}\.npz"):
        load_sharded(out)

    label_sharded(corpus, out, workers=2, progress=False, images_per_unit=2)
    after = kept.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert corrupted.read_bytes() != b"half a shard" and deleted.is_file()
    assert_same(load_sharded(out), reference)


def test_bad_arguments_are_refused_before_any_work(corpus, tmp_path, capsys):
    for workers in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            label_sharded(corpus, tmp_path / "out", workers=workers)
    a_file = tmp_path / "labels.npz"
    a_file.write_bytes(b"mine")
    with pytest.raises(ValueError, match="labels.npz is a file; expected a folder"):
        label_sharded(corpus, a_file)
    with pytest.raises(ValueError, match="new.npz: sharded labelling writes a folder of shards"):
        label_sharded(corpus, tmp_path / "new.npz")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("keep me")
    with pytest.raises(ValueError, match="thesis.txt, which sharded labelling did not write"):
        label_sharded(corpus, foreign)
    with pytest.raises(ValueError, match="--address 127.0.0.1:1: no Ray head answers there"):
        label_sharded(corpus, tmp_path / "out", address="127.0.0.1:1")
    busy = tmp_path / "busy"
    with output_lock(busy / MANIFEST, what="output folder"):
        with pytest.raises(ValueError, match="is being written by another run"):
            label_sharded(corpus, busy)
    assert a_file.read_bytes() == b"mine" and (foreign / "thesis.txt").read_text() == "keep me"
    assert not (tmp_path / "out").exists()

    with pytest.raises(SystemExit):
        main(["label", str(corpus[1]), "--out", str(tmp_path / "out"), "--workers", "0"])
    assert "--workers: expected an integer >= 1, got '0'" in capsys.readouterr().err
    assert main(["label", str(corpus[1]), "--out", str(tmp_path / "out"), "--address", "127.0.0.1:1"]) == 2
    assert "error: --address needs --workers" in capsys.readouterr().err
    assert main(["label", str(corpus[1]), "--out", str(a_file), "--workers", "1"]) == 2
    assert "labels.npz is a file; expected a folder" in capsys.readouterr().err
    assert main(["label", "--merge", str(foreign), "--out", str(tmp_path / "m.npz")]) == 2
    assert "is not a sharded labelling folder" in capsys.readouterr().err
