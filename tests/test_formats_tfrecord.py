"""TFRecord: real fixture samples round-trip; hostile records, cut files and foreign files are refused by name."""
import re
from pathlib import Path

import numpy as np
import pytest

from holistic_lab.formats import coco_wholebody, tfrecord
from holistic_lab.images import load_rgb
from holistic_lab.topology import PARTS


@pytest.fixture(scope="module")
def samples(fixtures):
    return coco_wholebody.load(fixtures / "coco" / "test_coco_wholebody.json")


@pytest.fixture(scope="module")
def shards(samples, tmp_path_factory):
    return tfrecord.write(tmp_path_factory.mktemp("tfr") / "wb.tfrecord", samples, shard_size=5)


def test_write_shards_and_read_back_every_field(samples, shards):
    assert [p.name for p in shards] == [f"wb-{i:05d}-of-00003.tfrecord" for i in range(3)]
    back = list(tfrecord.read(shards[0].with_name("wb.tfrecord")))
    assert len(back) == len(samples) == tfrecord.count_records(shards)
    for s, t in zip(samples, back):
        np.testing.assert_array_equal(s.mask, t.mask)
        np.testing.assert_array_equal(s.xyz, t.xyz)  # float32 stored as float32: exact, NaN included
        assert (t.width, t.height, t.image_id, t.ann_id, t.source) == (s.width, s.height, s.image_id, s.ann_id, s.source)
        assert t.boxes.keys() == s.boxes.keys()
        for name in s.boxes:
            np.testing.assert_allclose(t.boxes[name], s.boxes[name], rtol=1e-6)
    # a JPEG source is stored byte for byte, so the decoded image is the original
    np.testing.assert_array_equal(tfrecord.decode_image(back[0]), load_rgb(samples[0].image_path))


def test_png_source_and_given_images_are_encoded(fixtures, tmp_path):
    from holistic_lab.datasets import load_fixture

    faces = load_fixture("300w", fixtures).samples
    (path,) = tfrecord.write(tmp_path / "faces.tfrecord", faces)
    back = list(tfrecord.read(path))
    rgb = tfrecord.decode_image(back[0])
    assert rgb.shape == (faces[0].height, faces[0].width, 3)
    assert np.abs(rgb.astype(int) - load_rgb(faces[0].image_path)).mean() < 3  # JPEG q95
    with pytest.raises(ValueError, match="2 samples but 1 images"):
        tfrecord.write(tmp_path / "x.tfrecord", faces, images=[rgb])
    with pytest.raises(ValueError, match="annotation says"):
        tfrecord.write(tmp_path / "x.tfrecord", faces[:1], images=[rgb[:10]])


def test_truncated_record_is_named_by_index(shards, tmp_path):
    data = shards[1].read_bytes()
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(data[: len(data) - 50])
    with pytest.raises(ValueError, match=r"record 4 is truncated or corrupt"):
        list(tfrecord.read(bad))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"record \d is truncated or corrupt"):
        list(tfrecord.read(bad))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        tfrecord.make_dataset(bad)  # checked before any training step
    with pytest.raises(ValueError, match="not found"):
        list(tfrecord.read(tmp_path / "absent.tfrecord"))


def test_dataset_crops_to_the_face_and_moves_keypoints_into_the_crop(samples, shards):
    dataset = tfrecord.make_dataset(shards, roi="face", image_size=64, batch_size=8, value_range=(-1.0, 1.0))
    batches = list(dataset)
    images = np.concatenate([b[0].numpy() for b in batches])
    keypoints = np.concatenate([b[1]["keypoints"].numpy() for b in batches])
    mask = np.concatenate([b[1]["mask"].numpy() for b in batches])
    with_face = [s for s in samples if "face" in s.boxes]
    assert images.shape == (len(with_face), 64, 64, 3) and images.min() >= -1 and images.max() <= 1
    face = mask[:, PARTS["face"]] > 0
    inside = keypoints[:, PARTS["face"], :2][face]
    assert face.any() and (inside > 0).all() and (inside < 1).all()  # the face box with margin holds its points
    assert np.isfinite(keypoints).all()
    with pytest.raises(ValueError, match="roi must be one of"):
        tfrecord.make_dataset(shards, roi="tail")


def test_writing_again_with_other_shard_sizes_replaces_the_old_set(samples, tmp_path):
    path = tmp_path / "set.tfrecord"
    tfrecord.write(path, samples, shard_size=4)
    second = tfrecord.write(path, samples[:7], shard_size=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in second] + ["set.tfrecord.json"]
    assert [s.ann_id for s in tfrecord.read(path)] == [s.ann_id for s in samples[:7]]
    (single,) = tfrecord.write(path, samples[:2], shard_size=10)  # unsharded: old shards go too
    assert sorted(p.name for p in tmp_path.iterdir()) == [single.name, "set.tfrecord.json"]
    assert tfrecord.count_records(path) == 2


def test_shards_of_two_sets_are_refused_by_name(shards, tmp_path):
    for shard in shards:
        (tmp_path / shard.name).write_bytes(shard.read_bytes())
    (tmp_path / "wb-00000-of-00002.tfrecord").write_bytes(shards[0].read_bytes())
    with pytest.raises(ValueError, match=r"shards of different sets .* wb-00000-of-00002.tfrecord, wb-00000-of-00003"):
        tfrecord.count_records(tmp_path / "wb.tfrecord")


def test_failed_write_leaves_no_file_at_all(fixtures, tmp_path):
    from holistic_lab.datasets import load_fixture

    faces = load_fixture("300w", fixtures).samples
    good = load_rgb(faces[0].image_path)
    with pytest.raises(ValueError, match="annotation says"):
        tfrecord.write(tmp_path / "faces.tfrecord", faces, images=[good, good[:10]], shard_size=1)
    assert list(tmp_path.iterdir()) == []  # not even the finished first shard, nor the temporary folder


def test_corrupt_record_is_named_by_its_index_in_its_file(shards, tmp_path):
    data = shards[1].read_bytes()
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(data[: len(data) - 50])
    with pytest.raises(ValueError, match=r"bad.tfrecord: record 4 is truncated or corrupt"):
        tfrecord.count_records([shards[0], bad])  # 5 records before it in the first file


def test_non_utf8_text_field_is_named_by_record_index(samples):
    example = _example(samples[0])
    example.features.feature["source_id"].bytes_list.value[0] = b"\xff\xfe"
    with pytest.raises(ValueError, match=r"record 3: source_id is not UTF-8 text"):
        tfrecord.sample_from_example(example.SerializeToString(), 3)


# --- hostile records and files: everything `read` refuses, make_dataset(check=True) refuses too ---

def _example(sample):
    import tensorflow as tf

    jpeg = tfrecord.jpeg_bytes(sample)
    return tf.train.Example.FromString(tfrecord.example_from_sample(sample, jpeg))


def _write_records(path, records):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def _refused_by_read_and_make_dataset(path, message):
    with pytest.raises(ValueError, match=message):
        list(tfrecord.read(path))
    with pytest.raises(ValueError, match=message):
        tfrecord.make_dataset(path, batch_size=2)  # refused before any batch is made


def _retype(feature, kind, values):
    feature.Clear()
    getattr(feature, kind).value.extend(values)


HOSTILE = {
    "random bytes": (lambda e: b"\x8f\x03 not a protobuf \xff\xfe", r"record 1: not a tf.train.Example"),
    "float mask": (lambda e: _retype(e.features.feature["mask"], "float_list", [1.0] * 543),
                   r"record 1: mask is a float_list, expected an int64_list"),
    "int64 keypoints": (lambda e: _retype(e.features.feature["keypoints_3d"], "int64_list", [0] * 1629),
                        r"record 1: keypoints_3d is an int64_list, expected a float_list"),
    "bytes width": (lambda e: _retype(e.features.feature["width"], "bytes_list", [b"640"]),
                    r"record 1: width is a bytes_list, expected an int64_list"),
    "negative width": (lambda e: _retype(e.features.feature["width"], "int64_list", [-640]),
                       r"record 1: .*width and height must be positive, got -640x"),
    "mask over NaN": (lambda e: e.features.feature["keypoints_3d"].float_list.value.__setitem__(0, float("nan")),
                      r"record 1: .*mask marks points whose x, y are NaN"),
    "infinite box": (lambda e: e.features.feature["boxes"].float_list.value.__setitem__(2, float("inf")),
                     r"record 1: boxes contains NaN or infinite values"),
    "not a JPEG": (lambda e: _retype(e.features.feature["image/encoded"], "bytes_list", [b"\x89PNG\r\n\x1a\n..."]),
                   r"record 1: image/encoded is not a JPEG"),
    "JPEG of another size": (lambda e: _retype(e.features.feature["height"], "int64_list", [100]),
                             r"record 1: image/encoded is 640x425, but width x height say 640x100"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_record_is_refused_by_file_and_index_in_read_and_make_dataset(samples, tmp_path, case):
    change, message = HOSTILE[case]
    good = _example(samples[0])
    bad = _example(samples[0])
    serialized = change(bad)
    records = [good.SerializeToString(), serialized if isinstance(serialized, bytes) else bad.SerializeToString()]
    path = _write_records(tmp_path / "hostile.tfrecord", records)
    _refused_by_read_and_make_dataset(path, r"hostile.tfrecord: " + message)


def test_file_cut_anywhere_in_the_last_record_is_refused(shards, tmp_path):
    data = shards[2].read_bytes()  # 4 records
    starts = _record_starts(data)
    assert len(starts) == 4
    bad = tmp_path / "cut.tfrecord"
    # inside the 12-byte header (TF's reader takes these for a clean end), in the data, in the data's crc
    for cut in (starts[3] + 1, starts[3] + 8, starts[3] + 11, starts[3] + 12, starts[3] + 500, len(data) - 2):
        bad.write_bytes(data[:cut])
        _refused_by_read_and_make_dataset(bad, r"cut.tfrecord: record 3 is truncated")
    bad.write_bytes(data + b"\x00" * 5)  # trailing bytes after the last record
    _refused_by_read_and_make_dataset(bad, r"cut.tfrecord: record 4 is truncated")


def _record_starts(data: bytes) -> list[int]:
    import struct

    starts, offset = [], 0
    while offset < len(data):
        starts.append(offset)
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        offset += 12 + length + 4
    return starts


# --- writing a set never deletes or replaces a file that is not provably part of it ---

def test_rewriting_a_set_deletes_only_the_shards_its_manifest_names(samples, tmp_path):
    user_files = {"notes-v2-of-thesis.txt": "chapter 2", "notes-final-of-final.txt": "keep",
                  "notes-00007-of-00009.txt": "a file named like a shard, but no set of ours lists it"}
    for name, text in user_files.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "notes.txt"
    first = tfrecord.write(out, samples, shard_size=5)
    assert [p.name for p in first] == [f"notes-{i:05d}-of-00003.txt" for i in range(3)]
    second = tfrecord.write(out, samples[:4], shard_size=2)  # a new set under the same name
    on_disk = {p.name for p in tmp_path.iterdir()}
    assert on_disk == set(user_files) | {p.name for p in second} | {"notes.txt.json"}
    for name, text in user_files.items():
        assert (tmp_path / name).read_text() == text
    assert [s.ann_id for s in tfrecord.read(out)] == [s.ann_id for s in samples[:4]]


def test_an_existing_file_that_is_not_a_set_of_ours_is_refused_unless_overwrite(samples, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("my thesis notes")
    for shard_size in (5, 100):  # sharded or not, the name is taken by a file we did not write
        with pytest.raises(ValueError, match=r"notes.txt already exists and is not a TFRecord set holistic-lab wrote.*--overwrite"):
            tfrecord.write(out, samples, shard_size=shard_size)
        assert out.read_text() == "my thesis notes" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    shard = tmp_path / "wb-00001-of-00003.tfrecord"
    shard.write_text("named like a shard, written by someone else")
    with pytest.raises(ValueError, match=r"wb-00001-of-00003.tfrecord already exists and is not a TFRecord set"):
        tfrecord.write(tmp_path / "wb.tfrecord", samples, shard_size=5)
    assert shard.read_text().startswith("named like a shard")
    (written,) = tfrecord.write(out, samples, shard_size=100, overwrite=True)
    assert written == out and tfrecord.count_records(out) == len(samples)


def test_a_set_written_before_manifests_existed_is_read_and_rewritten(samples, tmp_path):
    out = tmp_path / "old.tfrecord"
    tfrecord.write(out, samples, shard_size=5)
    (tmp_path / "old.tfrecord.json").unlink()  # as an earlier version wrote it
    assert tfrecord.count_records(out) == len(samples)
    assert sum(len(b[0]) for b in tfrecord.make_dataset(out, batch_size=8)) == len(samples)
    tfrecord.write(out, samples, shard_size=5)  # our own records under those names: replaced without --overwrite
    assert tfrecord.count_records(out) == len(samples)


def test_a_shard_changed_after_the_set_was_written_is_refused_by_name(samples, tmp_path):
    out = tmp_path / "wb.tfrecord"
    shards = tfrecord.write(out, samples, shard_size=5)
    shards[1].write_bytes(shards[0].read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"wb-00001-of-00003.tfrecord: \d+ bytes, but the set's manifest .* says \d+"):
        tfrecord.count_records(out)


def test_cli_refuses_to_write_over_a_file_it_did_not_make(fixtures, tmp_path, capsys):
    from holistic_lab.cli import main

    source = str(fixtures / "coco" / "test_coco_wholebody.json")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    (tmp_path / "notes-v2-of-thesis.txt").write_text("v2")
    assert main(["to-tfrecord", source, "--out", str(notes), "--shard-size", "5"]) == 2
    assert "notes.txt already exists and is not a TFRecord set" in capsys.readouterr().err
    assert notes.read_text() == "my notes" and (tmp_path / "notes-v2-of-thesis.txt").read_text() == "v2"
    out = tmp_path / "set.tfrecord"
    assert main(["to-tfrecord", source, "--out", str(out), "--shard-size", "5"]) == 0
    assert main(["to-tfrecord", source, "--out", str(out), "--shard-size", "7"]) == 0  # our own set: replaced
    assert sorted(p.name for p in tmp_path.glob("set*")) == ["set-00000-of-00002.tfrecord", "set-00001-of-00002.tfrecord",
                                                            "set.tfrecord.json"]
    assert main(["to-tfrecord", source, "--out", str(notes), "--overwrite"]) == 0
    assert tfrecord.count_records(notes) == 14 and (tmp_path / "notes-v2-of-thesis.txt").read_text() == "v2"


# --- file names that are not UTF-8 (os.fsdecode's surrogate escapes) ---

def _non_utf8_copy(source, folder):
    import os
    import shutil

    target = folder / os.fsdecode(b"caf\xe9 " + source.name.encode())  # Latin-1 'é': not valid UTF-8
    shutil.copyfile(source, target)
    return target


def test_non_utf8_image_path_is_stored_losslessly(samples, tmp_path):
    from dataclasses import replace

    image = _non_utf8_copy(Path(samples[0].image_path), tmp_path)
    sample = replace(samples[0], image_path=str(image))
    (path,) = tfrecord.write(tmp_path / "x.tfrecord", [sample])
    (back,) = tfrecord.read(path)
    assert back.image_path == str(image) and Path(back.image_path).is_file()


def test_image_path_that_no_file_system_can_hold_is_refused_by_name(samples, tmp_path):
    from dataclasses import replace

    sample = replace(samples[0], image_path="broken \ud800.jpg")  # a lone surrogate os.fsdecode never makes
    with pytest.raises(ValueError, match=r"sample 442619: image_path 'broken \\ud800.jpg' is not a valid file name"):
        tfrecord.example_from_sample(sample, b"\xff\xd8\xff")


def test_cli_to_tfrecord_on_teacher_labels_of_a_non_utf8_file_name(tmp_path, capsys):
    from holistic_lab.cli import main
    from holistic_lab.datasets import SAMPLES_DIR, sample_labels
    from holistic_lab.result import save_results

    image = _non_utf8_copy(SAMPLES_DIR / "grace_hopper.jpg", tmp_path)
    labels = save_results(tmp_path / "labels.npz", [sample_labels("grace_hopper")], [str(image)])
    assert main(["to-tfrecord", str(labels), "--out", str(tmp_path / "t.tfrecord")]) == 0, capsys.readouterr().err
    (back,) = tfrecord.read(tmp_path / "t.tfrecord")
    assert back.image_path == str(image)


# --- an input of the run is never replaced; a failed rewrite keeps the previous set ---

def test_cli_overwrite_never_replaces_the_input_json_with_the_manifest(fixtures, tmp_path, capsys, monkeypatch):
    from holistic_lab.cli import main

    source = tmp_path / "set.json"  # `--out set` puts the manifest at set.json: this very file
    source.write_bytes((fixtures / "coco" / "test_coco_wholebody.json").read_bytes())
    monkeypatch.setattr(coco_wholebody, "load", lambda *a, **k: pytest.fail("loaded before --out was checked"))
    assert main(["to-tfrecord", str(source), "--image-root", str(fixtures / "coco"),
                 "--out", str(tmp_path / "set"), "--overwrite"]) == 2
    assert "set.json is also an input of this run" in capsys.readouterr().err
    assert source.read_bytes() == (fixtures / "coco" / "test_coco_wholebody.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.json"]


def test_cli_overwrite_never_replaces_the_input_labels(tmp_path, capsys):
    from holistic_lab.cli import main
    from holistic_lab.datasets import SAMPLES_DIR, sample_labels
    from holistic_lab.result import save_results

    labels = save_results(tmp_path / "labels.npz", [sample_labels("grace_hopper")], [str(SAMPLES_DIR / "grace_hopper.jpg")])
    before = labels.read_bytes()
    assert main(["to-tfrecord", str(labels), "--out", str(labels), "--overwrite"]) == 2
    assert "labels.npz is also an input of this run" in capsys.readouterr().err
    assert labels.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["labels.npz"]


def test_write_never_replaces_an_image_of_its_own_samples(samples, tmp_path):
    from dataclasses import replace

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(Path(samples[0].image_path).read_bytes())
    with pytest.raises(ValueError, match=r"photo.jpg is also an input of this run"):
        tfrecord.write(photo, [replace(samples[0], image_path=str(photo))], overwrite=True)
    assert photo.read_bytes() == Path(samples[0].image_path).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_a_folder_at_the_manifest_name_is_refused_before_any_shard_is_written(samples, tmp_path):
    (tmp_path / "wb.tfrecord.json").mkdir()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"wb.tfrecord.json is a folder"):
            tfrecord.write(tmp_path / "wb.tfrecord", samples, shard_size=5, overwrite=overwrite)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["wb.tfrecord.json"]


def test_a_read_only_folder_is_refused_before_the_work(fixtures, samples, read_only_folder, capsys, monkeypatch):
    from holistic_lab.cli import main

    with pytest.raises(ValueError, match=r"cannot write in .*read_only"):
        tfrecord.write(read_only_folder / "wb.tfrecord", samples, shard_size=5)
    monkeypatch.setattr(coco_wholebody, "load", lambda *a, **k: pytest.fail("loaded before --out was checked"))
    source = str(fixtures / "coco" / "test_coco_wholebody.json")
    assert main(["to-tfrecord", source, "--out", str(read_only_folder / "wb.tfrecord")]) == 2
    assert "cannot write in" in capsys.readouterr().err


def test_a_failed_rewrite_leaves_the_previous_set_as_it_was(samples, tmp_path):
    from dataclasses import replace

    out = tmp_path / "wb.tfrecord"
    tfrecord.write(out, samples, shard_size=5)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    broken = list(reversed(samples))  # other records in every shard, and the last image is missing
    broken[-1] = replace(broken[-1], image_path=str(tmp_path / "missing.jpg"))
    with pytest.raises(ValueError, match=r"missing.jpg"):
        tfrecord.write(out, broken, shard_size=5)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert [s.ann_id for s in tfrecord.read(out)] == [s.ann_id for s in samples]


def test_a_rewrite_deletes_an_old_shard_only_while_it_is_as_the_manifest_wrote_it(samples, tmp_path):
    out = tmp_path / "wb.tfrecord"
    old = tfrecord.write(out, samples, shard_size=5)
    old[2].write_bytes(old[2].read_bytes() + b"the user's own bytes since")  # no longer what the set wrote
    (written,) = tfrecord.write(out, samples, shard_size=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == [old[2].name, "wb.tfrecord", "wb.tfrecord.json"]
    assert old[2].read_bytes().endswith(b"the user's own bytes since")
    assert tfrecord.count_records(written) == len(samples)


# --- JPEGs with an EXIF orientation: TF's decode_jpeg ignores it, so none is stored ---

def _photo_sample(tmp_path, orientation, stored_size):
    from dataclasses import replace

    from holistic_lab.datasets import sample_labels
    from holistic_lab.formats.sample import Sample
    from test_formats_coco_wholebody import _exif_rotated_jpeg

    photo = _exif_rotated_jpeg(tmp_path / f"phone-{orientation}.jpg", orientation, stored_size)
    upright = load_rgb(photo)  # as `label` and COCO tools see it
    result = replace(sample_labels("astronaut"), width=upright.shape[1], height=upright.shape[0])
    return Sample.from_result(result, str(photo)), upright


@pytest.mark.parametrize("orientation, stored_size", [(3, (40, 20)), (6, (40, 20)), (8, (30, 30))])
def test_a_photo_with_an_exif_orientation_is_stored_upright_for_tf(tmp_path, orientation, stored_size):
    import tensorflow as tf

    sample, upright = _photo_sample(tmp_path, orientation, stored_size)
    (path,) = tfrecord.write(tmp_path / "x.tfrecord", [sample])
    (back,) = tfrecord.read(path)
    trained_on = tf.io.decode_jpeg(back.extras["image_jpeg"], channels=3).numpy()
    assert trained_on.shape == upright.shape == (back.height, back.width, 3)
    assert np.abs(trained_on.astype(int) - upright).mean() < 4  # the same picture, not turned or mirrored
    assert np.abs(tfrecord.decode_image(back).astype(int) - upright).mean() < 4


def test_decode_image_gives_the_pixels_make_dataset_trains_on(tmp_path):
    import tensorflow as tf

    sample, _ = _photo_sample(tmp_path, 3, (30, 30))  # a record someone else wrote with the EXIF kept
    path = _write_records(tmp_path / "foreign.tfrecord",
                          [tfrecord.example_from_sample(sample, Path(sample.image_path).read_bytes())])
    (back,) = tfrecord.read(path)
    trained_on = tf.io.decode_jpeg(back.extras["image_jpeg"], channels=3).numpy()
    assert np.abs(tfrecord.decode_image(back).astype(int) - trained_on).mean() < 2


# --- one set's files are never taken over by another set; two runs never write one set at once ---

def test_a_shard_of_one_set_is_not_replaced_by_a_set_named_like_it(fixtures, tmp_path, capsys):
    from holistic_lab.cli import main

    source = str(fixtures / "coco" / "test_coco_wholebody.json")
    assert main(["to-tfrecord", source, "--out", str(tmp_path / "a.tfrecord"), "--shard-size", "7"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    shard = tmp_path / "a-00000-of-00002.tfrecord"
    assert main(["to-tfrecord", source, "--out", str(shard), "--shard-size", "100"]) == 2
    assert re.search(r"a-00000-of-00002.tfrecord is a file of the TFRecord set \S*/a.tfrecord .*--overwrite",
                     capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert tfrecord.count_records(tmp_path / "a.tfrecord") == 14
    # the other way round: a set whose shard would be another set's single file
    (single,) = tfrecord.write(tmp_path / "b-00001-of-00002.tfrecord", _fixture_samples(fixtures), shard_size=100)
    kept = single.read_bytes()
    with pytest.raises(ValueError, match=r"b-00001-of-00002.tfrecord is a file of the TFRecord set \S*/b-00001-of"):
        tfrecord.write(tmp_path / "b.tfrecord", _fixture_samples(fixtures), shard_size=7)
    assert single.read_bytes() == kept and not (tmp_path / "b-00000-of-00002.tfrecord").exists()
    tfrecord.write(shard, _fixture_samples(fixtures), shard_size=100, overwrite=True)  # said so: replaced
    assert tfrecord.count_records(shard) == 14


def _fixture_samples(fixtures):
    return coco_wholebody.load(fixtures / "coco" / "test_coco_wholebody.json")


def test_a_second_run_writing_the_same_set_is_refused_by_name(samples, tmp_path):
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "wb.tfrecord"
    tfrecord.write(out, samples, shard_size=5)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from holistic_lab.files import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=r"wb.tfrecord is being written by another run"):
            tfrecord.write(out, samples[:3], shard_size=2)
    finally:
        holder.communicate("")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    tfrecord.write(out, samples[:3], shard_size=2)  # the other run is done: ours now
    assert tfrecord.count_records(out) == 3 and not list(tmp_path.glob(".*lock"))


# --- the JPEG inside a record: complete, and within the pixel limit ---

def _record_with_jpeg(sample, jpeg, width=None, height=None):
    example = _example(sample)
    _retype(example.features.feature["image/encoded"], "bytes_list", [jpeg])
    if width is not None:
        _retype(example.features.feature["width"], "int64_list", [width])
        _retype(example.features.feature["height"], "int64_list", [height])
    return example.SerializeToString()


def _tf_decodes(jpeg: bytes) -> bool:
    import tensorflow as tf

    try:
        tf.io.decode_jpeg(jpeg, channels=3)
    except tf.errors.InvalidArgumentError:
        return False
    return True


def _jpeg_variants(sample):
    """Baseline (the fixture file), progressive and with restart markers: TF decodes each."""
    import cv2

    bgr = cv2.cvtColor(load_rgb(sample.image_path), cv2.COLOR_RGB2BGR)
    return {"baseline": Path(sample.image_path).read_bytes(),
            "progressive": cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
            "restart markers": cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])[1].tobytes()}


@pytest.mark.parametrize("kind", ["baseline", "progressive", "restart markers"])
def test_a_truncated_jpeg_is_refused_exactly_when_tf_cannot_decode_it(samples, tmp_path, kind):
    jpeg = _jpeg_variants(samples[0])[kind]
    for cut in (len(jpeg) // 3, len(jpeg) // 2, len(jpeg) - 2, len(jpeg) - 1):
        assert not _tf_decodes(jpeg[:cut])  # what make_dataset would meet mid-epoch
        path = _write_records(tmp_path / "cut.tfrecord", [_example(samples[0]).SerializeToString(),
                                                          _record_with_jpeg(samples[0], jpeg[:cut])])
        _refused_by_read_and_make_dataset(path, r"cut.tfrecord: record 1: image/encoded is a truncated JPEG")
    for padded in (jpeg, jpeg + b"\x00" * 64, jpeg + b"\xff" * 3):  # what TF decodes is accepted
        assert _tf_decodes(padded)
        path = _write_records(tmp_path / "whole.tfrecord", [_record_with_jpeg(samples[0], padded)])
        (back,) = tfrecord.read(path)
        assert sum(len(b[0]) for b in tfrecord.make_dataset(path, batch_size=2)) == 1


def _jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) saying width x height: a few bytes, any size."""
    import re

    sof = re.search(rb"\xff[\xc0\xc2]", jpeg).start()
    return jpeg[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[sof + 9:]


def test_a_record_whose_jpeg_is_over_the_pixel_limit_is_refused(samples, tmp_path, monkeypatch):
    huge = _jpeg_claiming(Path(samples[0].image_path).read_bytes(), 8000, 8000)  # 64 MP: ~940 MB in make_dataset
    path = _write_records(tmp_path / "huge.tfrecord", [_example(samples[0]).SerializeToString(),
                                                       _record_with_jpeg(samples[0], huge, 8000, 8000)])
    _refused_by_read_and_make_dataset(path, r"huge.tfrecord: record 1: image/encoded is 8000x8000 \(64 megapixels\), "
                                            r"over the limit of 50 megapixels")
    normal = _write_records(tmp_path / "normal.tfrecord", [_example(samples[0]).SerializeToString()])
    monkeypatch.setenv("HOLISTIC_LAB_MAX_PIXELS", "100000")  # the limit a user set: a 640x425 photo is over it
    _refused_by_read_and_make_dataset(normal, r"normal.tfrecord: record 0: image/encoded is 640x425 .* over the limit")
    assert len(list(tfrecord.read(normal, max_pixels=300_000))) == 1
    with pytest.raises(ValueError, match=r"image .*\.jpg is 640x425 .* over the limit"):  # refused before writing
        tfrecord.write(tmp_path / "w.tfrecord", samples[:1])
    assert not (tmp_path / "w.tfrecord").exists()


# --- a set whose own name is not UTF-8 ---

def test_a_set_named_with_a_non_utf8_byte_is_written_and_read_back(fixtures, samples, tmp_path, capsys):
    import os

    from holistic_lab.cli import main

    out = tmp_path / os.fsdecode(b"caf\xfb.tfrecord")
    source = str(fixtures / "coco" / "test_coco_wholebody.json")
    assert main(["to-tfrecord", source, "--out", str(out), "--shard-size", "5"]) == 0, capsys.readouterr().err
    assert "wrote " in capsys.readouterr().out
    assert [s.ann_id for s in tfrecord.read(out)] == [s.ann_id for s in samples]
    assert sum(len(b[0]) for b in tfrecord.make_dataset(out, batch_size=8)) == len(samples)
    (single,) = tfrecord.write(out, samples[:2], shard_size=100)  # rewritten: the old shards go
    assert sorted(os.fsencode(p.name) for p in tmp_path.iterdir()) == [b"caf\xfb.tfrecord", b"caf\xfb.tfrecord.json"]
    assert tfrecord.count_records(single) == 2
    single.write_bytes(single.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"caf\\xfb.tfrecord: 2"):  # printable: the byte as \xfb
        tfrecord.count_records(out)
