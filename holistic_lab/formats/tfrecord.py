"""TFRecord files for fine-tuning: the 543 layout with its mask, plus a tf.data pipeline.

One `tf.train.Example` per Sample (the schema, `feature_spec()`):
  image/encoded  JPEG bytes (a JPEG source file is stored as it is, others, and photos with an
                 EXIF orientation, are encoded from their upright pixels)
  keypoints_3d   543 x 3 float32, x, y normalised to the image, NaN where unknown
  mask           543 int64 (1: x, y known)       num_keypoints  int64, the mask's sum
  boxes          4 x 4 float32 pixel (x, y, w, h) of body, face, left_hand, right_hand (0 = none)
  width, height, image_id  int64                 source_id ("layout/ann_id")  UTF-8 bytes
  image_path  the file name's own bytes (os.fsencode), so names that are not UTF-8 survive
Large sets are split into shards of `shard_size` records (`name-00000-of-00004.tfrecord`)
with a manifest beside them (`tfrecord_sets`): writing a set again replaces the old set's
files and nothing else, never a file holistic-lab did not write, nor one another set's
manifest lists, unless `overwrite`, never an input of the run, and only once every new shard
is finished (`check_set_output`, `write`); one run at a time (`files.output_lock`). File
names go to TF as their own bytes, so a set whose name is not UTF-8 is written and read.
`read` checks every record (framing, crc, types, sizes, the Sample's own checks, the JPEG's
size against the record's and the pixel limit, a JPEG that ends before its end-of-image
marker) and raises ValueError naming the file and the record's index in it. `make_dataset` is
the training input: decode, crop to the person or a part's ROI, resize, normalise, cache,
shuffle, batch, prefetch; with check=True it first refuses exactly what `read` refuses.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..images import check_image_size, image_size as header_size  # make_dataset's image_size is the crop's
from ..files import check_output_file, check_writable_folder, display_path, output_lock
from ..native_logs import import_tensorflow
from ..topology import NUM_KEYPOINTS, PARTS
from .sample import BOX_NAMES, Sample
from .tfrecord_sets import (check_framing, install_set, is_set_file_name, manifest_files, manifest_path,
                            other_set_owning, set_files, shard_paths)

ROI_NAMES = BOX_NAMES  # "body" (the whole person) or one part
_JPEG_MAGIC = b"\xff\xd8\xff"
# A JPEG marker: 0xFF (fill bytes 0xFF may repeat) then a code other than 0x00, which stuffs a
# literal 0xFF inside entropy-coded data. Markers without a length: TEM, RST0-7, SOI, EOI.
_JPEG_MARKER = re.compile(rb"\xff+([^\x00\xff])")
_JPEG_EOI = 0xD9
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}


def _tf():
    return import_tensorflow()


def feature_spec() -> dict:
    """The schema as `tf.io.parse_single_example` features."""
    tf = _tf()
    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "keypoints_3d": tf.io.FixedLenFeature([NUM_KEYPOINTS * 3], tf.float32),
        "mask": tf.io.FixedLenFeature([NUM_KEYPOINTS], tf.int64),
        "num_keypoints": tf.io.FixedLenFeature([], tf.int64),
        "boxes": tf.io.FixedLenFeature([len(BOX_NAMES) * 4], tf.float32),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "image_id": tf.io.FixedLenFeature([], tf.int64),
        "source_id": tf.io.FixedLenFeature([], tf.string),
        "image_path": tf.io.FixedLenFeature([], tf.string),
    }


def jpeg_bytes(sample: Sample, rgb: np.ndarray | None = None, quality: int = 95) -> bytes:
    """The sample's image as JPEG: the file's own bytes if it is a JPEG of the sample's size
    as stored, without an EXIF orientation; else encoded from its pixels (an EXIF-oriented
    photo decoded upright, as it was labelled: TF's decode_jpeg would ignore the orientation)."""
    import cv2

    from ..images import check_rgb, exif_orientation, load_rgb

    if rgb is None:
        data = Path(sample.image_path).read_bytes() if Path(sample.image_path).is_file() else b""
        if (data.startswith(_JPEG_MAGIC) and header_size(data) == (sample.width, sample.height)
                and exif_orientation(data) == 1):
            check_image_size(sample.width, sample.height, f"image {display_path(sample.image_path)}")  # as load_rgb
            return data
        rgb = load_rgb(sample.image_path)
    check_rgb(rgb)
    if rgb.shape[:2] != (sample.height, sample.width):
        raise ValueError(f"sample {sample.ann_id} ({sample.image_path!r}): image is {rgb.shape[1]}x{rgb.shape[0]}, "
                         f"annotation says {sample.width}x{sample.height}")
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"sample {sample.ann_id}: JPEG encoding failed")
    return encoded.tobytes()


def example_from_sample(sample: Sample, image_jpeg: bytes) -> bytes:
    """One serialised tf.train.Example in the schema above."""
    tf = _tf()
    boxes = np.zeros((len(BOX_NAMES), 4), np.float32)
    for row, name in enumerate(BOX_NAMES):
        if name in sample.boxes:
            boxes[row] = sample.boxes[name]
    source_id = sample.extras.get("source_id") or f"{sample.source}/{sample.ann_id}"
    try:
        image_path = os.fsencode(sample.image_path)
    except UnicodeEncodeError:  # a lone surrogate that os.fsdecode never makes: no file can have this name
        raise ValueError(f"sample {sample.ann_id}: image_path {sample.image_path!r} is not a valid file name") from None

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values, np.float32).ravel()))

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(values).astype(np.int64)))

    def raw(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        "image/encoded": raw(image_jpeg),
        "keypoints_3d": floats(sample.xyz),
        "mask": ints(sample.mask),
        "num_keypoints": ints(int(sample.mask.sum())),
        "boxes": floats(boxes),
        "width": ints(sample.width),
        "height": ints(sample.height),
        "image_id": ints(sample.image_id),
        "source_id": raw(str(source_id).encode()),
        "image_path": raw(image_path),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def jpeg_is_complete(data: bytes) -> bool:
    """Does the JPEG reach its end-of-image marker (EOI) before its bytes end? Walks the segments
    by their lengths and the entropy-coded data to its next marker, as libjpeg reads them:
    TF's decode_jpeg fails on a JPEG whose data runs out before EOI (a truncated file) and
    ignores any bytes after it."""
    offset = 2 if data.startswith(b"\xff\xd8") else len(data) + 1
    while offset <= len(data) and (marker := _JPEG_MARKER.search(data, offset)) is not None:
        code, offset = marker.group(1)[0], marker.end()
        if code == _JPEG_EOI:
            return True
        if code not in _JPEG_STANDALONE:  # a segment: its 2-byte length counts itself, not the marker
            length = int.from_bytes(data[offset:offset + 2], "big")
            offset = offset + length if length >= 2 else len(data) + 1
    return False


def _tf_name(file) -> bytes:
    """The file's name as TF's record reader and writer take it: its own bytes. Given a str they
    encode it as UTF-8, which fails on a name that is not UTF-8 (os.fsdecode's surrogate escapes)."""
    return os.fsencode(file)


def _is_our_record_file(file: Path) -> bool:
    """A TFRecord file whose first record is in our schema (sets written before manifests existed)."""
    try:
        if check_framing(file) == 0:
            return False
        first = next(iter(_tf().data.TFRecordDataset(_tf_name(file)))).numpy()
        sample_from_example(first)
    except (ValueError, _tf().errors.OpError):
        return False
    return True


def _same_files(targets: list[Path], candidates: Iterable) -> list[Path]:
    """The candidates that are one of the existing `targets` (same device and inode): one stat
    per candidate, so the images of 100k samples cost 100k stats, not 100k per target."""
    def identity(file):
        try:
            found = os.stat(file)
        except (OSError, ValueError):  # missing, or a name no file system holds
            return None
        return found.st_dev, found.st_ino

    taken = {identity(target) for target in targets} - {None}
    return [Path(c) for c in dict.fromkeys(candidates) if taken and identity(c) in taken]


def check_set_output(path, num_shards: int | None = None, inputs: Iterable = (), overwrite: bool = False) -> Path:
    """Refuse (ValueError), before any work, writing the set `path` if that would lose something.

    Each name the set takes (`path`, its shards when `num_shards` is known, and the manifest
    `<path>.json`) goes through `files.check_output_file`: never an input of the run
    (`inputs`: the source file, the images), not even with `overwrite`; not a folder; replaced
    without `overwrite` only if it is ours (the old manifest names it, or it holds records of
    this schema; the manifest if `read_manifest` accepts it), and never, without `overwrite`, a
    file that another set's manifest names (`other_set_owning`: that set would lose it); and the
    folder must be writable.
    The CLI calls it with `num_shards=None` before loading anything, `write` again with the count.
    Returns `path`.
    """
    path = Path(path)
    try:
        owned, manifest_is_ours = set(manifest_files(path)), True
    except ValueError:  # a file at the manifest's name that is not our manifest
        owned, manifest_is_ours = set(), False
    targets = [path, *shard_paths(path, num_shards or 1)]  # `path` even when sharded: the set's name
    inputs = [Path(source) for source in inputs]
    if num_shards is None:  # an input named like one of the set's shards, whatever their count
        named_like_shards = [path.with_name(source.name) for source in inputs if is_set_file_name(path, source.name)]
        targets += [path.with_name(source.name) for source in _same_files(named_like_shards, inputs)]
    inputs = _same_files(targets + [manifest_path(path)], inputs)
    check_output_file(manifest_path(path), is_ours=lambda _: manifest_is_ours, inputs=inputs, overwrite=overwrite,
                      kind="a TFRecord set manifest holistic-lab wrote")

    def is_ours(file: Path) -> bool:
        other = other_set_owning(file, path)
        if other is not None:  # replacing the file would break that set
            raise ValueError(f"output {display_path(file)} is a file of the TFRecord set {display_path(other)} "
                             f"(its manifest {display_path(manifest_path(other).name)} lists it); choose another "
                             "name, or pass --overwrite to replace it")
        return file in owned or _is_our_record_file(file)

    for target in dict.fromkeys(targets):
        check_output_file(target, is_ours=is_ours, inputs=inputs, overwrite=overwrite,
                          kind="a TFRecord set holistic-lab wrote")
    return path


def write(path, samples: list[Sample], images: Iterable[np.ndarray] | None = None, shard_size: int = 2000,
          overwrite: bool = False, inputs: Iterable = ()) -> list[Path]:
    """Write `samples` (with their images, read from `image_path` unless `images` gives RGB
    arrays in the same order) to TFRecord shards of at most `shard_size` records, and the set's
    manifest `<path>.json` after them.

    Before any work, `check_set_output` refuses a name this set needs if it is an input of
    the run (`inputs`, e.g. the annotation file, and the samples' images), a folder, a file
    that is not ours (unless `overwrite`), or in a folder that cannot be written. All shards
    are written into a temporary folder beside `path` and moved into place only when every
    one is finished (`tfrecord_sets.install_set`), so a failed or interrupted run leaves the
    previous set as it was. The whole check and write hold `files.output_lock(path)`: a second
    run writing the same set meanwhile is refused by name. Returns the paths.
    """
    tf = _tf()
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to write")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    rgb_list = list(images) if images is not None else [None] * len(samples)
    if len(rgb_list) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(rgb_list)} images")
    num_shards = -(-len(samples) // shard_size)
    path = Path(path)
    last_path, last_jpeg = None, b""  # consecutive people of one image share its bytes

    def write_shard(shard: int, file: Path) -> int:
        nonlocal last_path, last_jpeg
        chosen = list(zip(samples, rgb_list))[shard * shard_size:(shard + 1) * shard_size]
        with tf.io.TFRecordWriter(_tf_name(file)) as writer:
            for sample, rgb in chosen:
                if rgb is not None:
                    jpeg = jpeg_bytes(sample, rgb)
                elif sample.image_path == last_path:
                    jpeg = last_jpeg
                else:
                    jpeg = last_jpeg = jpeg_bytes(sample)
                    last_path = sample.image_path
                writer.write(example_from_sample(sample, jpeg))
        return len(chosen)

    check_writable_folder(path.parent, "output")  # before the lock file is made there
    with output_lock(path), tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial-") as folder:
        check_set_output(path, num_shards, [*inputs, *(sample.image_path for sample in samples)], overwrite)
        finished = [Path(folder) / name.name for name in shard_paths(path, num_shards)]
        counts = [write_shard(shard, file) for shard, file in enumerate(finished)]
        return install_set(path, finished, counts)


def set_file_names(path) -> list[str]:
    """The files of a TFRecord set: a list as given, else by `tfrecord_sets.set_files`."""
    if isinstance(path, (list, tuple)):
        return [str(p) for p in path]
    return [str(p) for p in set_files(path)]


def _raw_records(path) -> Iterator[tuple[str, int, bytes]]:
    """(file, index in that file, serialised record); a truncated or corrupt record is a
    ValueError naming its file and its index within that file."""
    tf = _tf()
    for file in set_file_names(path):
        check_framing(file)  # before TF's reader, which takes a cut inside a header for the end
        iterator = iter(tf.data.TFRecordDataset(_tf_name(file)))
        in_file = 0
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                break
            except tf.errors.DataLossError as exc:
                raise ValueError(f"{display_path(file)}: record {in_file} is truncated or corrupt") from exc
            yield file, in_file, record.numpy()
            in_file += 1


_KIND_NAMES = {"bytes_list": "a bytes_list", "float_list": "a float_list", "int64_list": "an int64_list", None: "empty"}


def sample_from_example(serialized: bytes, index: int = 0, max_pixels: int | None = None) -> Sample:
    """Parse and check one record into a Sample (JPEG bytes in `extras["image_jpeg"]`); a
    problem is a ValueError naming the record's index and the feature. The JPEG must be
    complete (`jpeg_is_complete`), of the record's width x height by its header, and within
    the pixel limit (`max_pixels`, else $HOLISTIC_LAB_MAX_PIXELS, else images.MAX_PIXELS)."""
    tf = _tf()
    try:
        example = tf.train.Example.FromString(serialized)
    except Exception as exc:  # protobuf's DecodeError is not a ValueError subclass in every version
        raise ValueError(f"record {index}: not a tf.train.Example ({exc})") from None
    feature = example.features.feature

    def get(name, kind, size):
        if name not in feature:
            raise ValueError(f"record {index}: missing feature {name!r}")
        found = feature[name].WhichOneof("kind")
        if found != kind:
            raise ValueError(f"record {index}: {name} is {_KIND_NAMES[found]}, expected {_KIND_NAMES[kind]}")
        values = list(getattr(feature[name], kind).value)
        if size is not None and len(values) != size:
            raise ValueError(f"record {index}: {name} has {len(values)} values, expected {size}")
        return values

    def text(name):
        try:
            return get(name, "bytes_list", 1)[0].decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"record {index}: {name} is not UTF-8 text ({exc})") from None

    xyz = np.array(get("keypoints_3d", "float_list", NUM_KEYPOINTS * 3), np.float32).reshape(NUM_KEYPOINTS, 3)
    mask = np.array(get("mask", "int64_list", NUM_KEYPOINTS), bool)
    if get("num_keypoints", "int64_list", 1)[0] != mask.sum():
        raise ValueError(f"record {index}: num_keypoints {get('num_keypoints', 'int64_list', 1)[0]} != mask sum {mask.sum()}")
    boxes = np.array(get("boxes", "float_list", len(BOX_NAMES) * 4), np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        raise ValueError(f"record {index}: boxes contains NaN or infinite values")
    source_id = text("source_id")
    source, _, ann = source_id.rpartition("/")
    fields = dict(
        image_path=os.fsdecode(get("image_path", "bytes_list", 1)[0]),
        width=get("width", "int64_list", 1)[0], height=get("height", "int64_list", 1)[0],
        image_id=get("image_id", "int64_list", 1)[0],
        extras={"image_jpeg": get("image/encoded", "bytes_list", 1)[0], "source_id": source_id},
    )
    try:
        sample = Sample(
            xyz=xyz, mask=mask, ann_id=int(ann) if ann.lstrip("-").isdigit() else -1, source=source,
            boxes={name: tuple(map(float, box)) for name, box in zip(BOX_NAMES, boxes) if box[2] > 0 and box[3] > 0},
            **fields,
        )
    except ValueError as exc:
        raise ValueError(f"record {index}: {exc}") from None
    jpeg = sample.extras["image_jpeg"]
    size = header_size(jpeg) if jpeg.startswith(_JPEG_MAGIC) else None
    if size is None:
        raise ValueError(f"record {index}: image/encoded is not a JPEG (make_dataset decodes JPEG only)")
    if size != (sample.width, sample.height):
        raise ValueError(f"record {index}: image/encoded is {size[0]}x{size[1]}, but width x height say "
                         f"{sample.width}x{sample.height}")
    check_image_size(*size, f"record {index}: image/encoded", max_pixels)
    if not jpeg_is_complete(jpeg):
        raise ValueError(f"record {index}: image/encoded is a truncated JPEG ({len(jpeg)} bytes, its data ends "
                         "before the end-of-image marker): TF's decode_jpeg cannot decode it")
    return sample


def read(path, max_pixels: int | None = None) -> Iterator[Sample]:
    """Yield every record of a TFRecord file (or its shards, or a list of files) as a checked
    Sample (`sample_from_example`, with its pixel limit `max_pixels`); the first bad record is
    a ValueError naming its file and its index in that file."""
    for file, index, record in _raw_records(path):
        try:
            sample = sample_from_example(record, index, max_pixels)
        except ValueError as exc:
            raise ValueError(f"{display_path(file)}: {exc}") from None
        yield sample


def count_records(path) -> int:
    """Number of records, reading every one and checking its framing and crc (not its fields: `read` does)."""
    return sum(1 for _ in _raw_records(path))


def decode_image(sample: Sample) -> np.ndarray:
    """The uint8 RGB image of a Sample read from a TFRecord, as `make_dataset` decodes it
    (an EXIF orientation in the bytes is ignored, as TF's decode_jpeg ignores it)."""
    import cv2

    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(sample.extras["image_jpeg"], np.uint8), flags)
    if bgr is None:
        raise ValueError(f"{sample.extras.get('source_id')}: image/encoded is not a decodable JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _roi_box(tf, parsed, roi: str, margin: float):
    """Square (y0, x0, y1, x1) normalised crop around `roi`: its box if stored, else its known points."""
    width = tf.cast(parsed["width"], tf.float32)
    height = tf.cast(parsed["height"], tf.float32)
    box = tf.reshape(parsed["boxes"], [len(BOX_NAMES), 4])[ROI_NAMES.index(roi)]
    xy = tf.reshape(parsed["keypoints_3d"], [NUM_KEYPOINTS, 3])[:, :2] * tf.stack([width, height])
    part = PARTS.get(roi, slice(0, NUM_KEYPOINTS))
    known = tf.cast(parsed["mask"][part], tf.bool)
    points = tf.boolean_mask(xy[part], known)
    has_points = tf.shape(points)[0] > 0
    points = tf.cond(has_points, lambda: points, lambda: tf.zeros([1, 2]))
    lo, hi = tf.reduce_min(points, axis=0), tf.reduce_max(points, axis=0)
    use_box = box[2] * box[3] > 0
    x0 = tf.where(use_box, box[0], lo[0])
    y0 = tf.where(use_box, box[1], lo[1])
    x1 = tf.where(use_box, box[0] + box[2], hi[0])
    y1 = tf.where(use_box, box[1] + box[3], hi[1])
    side = tf.maximum(x1 - x0, y1 - y0) * margin
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    valid = (use_box | has_points) & (side > 1.0)
    crop = tf.stack([(cy - side / 2) / height, (cx - side / 2) / width, (cy + side / 2) / height, (cx + side / 2) / width])
    return crop, valid


def make_dataset(path, roi: str = "body", image_size: int = 256, batch_size: int = 32, margin: float = 1.25,
                 value_range: tuple[float, float] = (0.0, 1.0), shuffle: int = 0, cache: bool = True,
                 check: bool = True, drop_remainder: bool = False, max_pixels: int | None = None):
    """tf.data training input: (images (B, S, S, 3) float32, {"keypoints", "mask", "z_mask"}).

    Each record is decoded, cropped to a square `margin` x the box of `roi` ("body" or a
    part; from the stored box, else the part's known points), resized to `image_size`,
    scaled to `value_range`; keypoints (B, 543, 3) are moved into the crop (0..1, z scaled
    like x) with NaN set to 0; `mask` (B, 543) float says which x, y to train on and
    `z_mask` which z (human annotations are 2-D: their z is unknown). Records without the ROI
    are dropped. check=True first reads and checks every record exactly as `read` does (with
    `max_pixels`), so a bad file fails with its name and the record's index before training
    starts, not mid-epoch.
    """
    tf = _tf()
    if roi not in ROI_NAMES:
        raise ValueError(f"roi must be one of {ROI_NAMES}, got {roi!r}")
    files = set_file_names(path)
    if check:
        for _ in read(files, max_pixels):
            pass
    spec = feature_spec()
    low, high = value_range

    def to_example(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        crop, valid = _roi_box(tf, parsed, roi, margin)
        image = tf.io.decode_jpeg(parsed["image/encoded"], channels=3)
        image = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], crop[None], [0], [image_size, image_size])[0]
        image = low + image / 255.0 * (high - low)
        xyz = tf.reshape(parsed["keypoints_3d"], [NUM_KEYPOINTS, 3])
        y0, x0, y1, x1 = tf.unstack(crop)
        xy = (xyz[:, :2] - tf.stack([x0, y0])) / tf.stack([x1 - x0, y1 - y0])
        z = xyz[:, 2:] / (x1 - x0)
        keypoints = tf.concat([xy, z], 1)
        target = {"keypoints": tf.where(tf.math.is_finite(keypoints), keypoints, 0.0),
                  "mask": tf.cast(parsed["mask"], tf.float32),
                  "z_mask": tf.cast(tf.math.is_finite(z[:, 0]), tf.float32) * tf.cast(parsed["mask"], tf.float32)}
        return image, target, valid

    def has_roi(image, target, valid):
        return valid

    def drop_flag(image, target, valid):
        return image, target

    dataset = tf.data.TFRecordDataset([_tf_name(file) for file in files])
    dataset = dataset.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.filter(has_roi).map(drop_flag)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(shuffle)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
