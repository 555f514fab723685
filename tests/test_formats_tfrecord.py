"""TFRecord: real fixture samples round-trip, corrupt records are named by index, tf.data feeds crops."""
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in second]
    assert [s.ann_id for s in tfrecord.read(path)] == [s.ann_id for s in samples[:7]]
    (single,) = tfrecord.write(path, samples[:2], shard_size=10)  # unsharded: old shards go too
    assert sorted(p.name for p in tmp_path.iterdir()) == [single.name] and tfrecord.count_records(path) == 2


def test_shards_of_two_sets_are_refused_by_name(shards, tmp_path):
    for shard in shards:
        (tmp_path / shard.name).write_bytes(shard.read_bytes())
    (tmp_path / "wb-00000-of-00002.tfrecord").write_bytes(shards[0].read_bytes())
    with pytest.raises(ValueError, match=r"shards of different sets .* wb-00000-of-00002.tfrecord, wb-00000-of-00003"):
        tfrecord.count_records(tmp_path / "wb.tfrecord")


def test_failed_write_leaves_no_partial_file(fixtures, tmp_path):
    from holistic_lab.datasets import load_fixture

    faces = load_fixture("300w", fixtures).samples
    good = load_rgb(faces[0].image_path)
    with pytest.raises(ValueError, match="annotation says"):
        tfrecord.write(tmp_path / "faces.tfrecord", faces, images=[good, good[:10]], shard_size=1)
    assert [p.name for p in tmp_path.iterdir()] == ["faces-00000-of-00002.tfrecord"]


def test_corrupt_record_is_named_by_its_index_in_its_file(shards, tmp_path):
    data = shards[1].read_bytes()
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(data[: len(data) - 50])
    with pytest.raises(ValueError, match=r"bad.tfrecord: record 4 is truncated or corrupt"):
        tfrecord.count_records([shards[0], bad])  # 5 records before it in the first file


def test_non_utf8_text_field_is_named_by_record_index(samples):
    import tensorflow as tf

    example = tf.train.Example.FromString(tfrecord.example_from_sample(samples[0], b"\xff\xd8\xff"))
    example.features.feature["image_path"].bytes_list.value[0] = b"\xff\xfe"
    with pytest.raises(ValueError, match=r"record 3: image_path is not UTF-8 text"):
        tfrecord.sample_from_example(example.SerializeToString(), 3)
