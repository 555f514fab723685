"""Hostile files never crash, hang or eat memory: oversized and forged images, non-UTF-8 file
names, corrupt and cut-short videos. Each is refused or skipped by name, and a batch goes on."""
import math
import os
import shutil
import struct
import zlib

import cv2
import numpy as np
import pytest

from holistic_lab.augment.files import augment_labelled_files
from holistic_lab.batch import process_path
from holistic_lab.cli import main
from holistic_lab.images import MAX_PIXELS_ENV, VideoFrames, check_rgb, iter_video_frames, load_rgb, save_rgb
from holistic_lab.label import label_paths
from holistic_lab.result import HolisticResult, load_results, load_skipped

CLIP = "posetrack18/videos/000001_mpiinew_test/000001_mpiinew_test.mp4"  # 5 frames, 1280x720


# --- hostile files, built without ever holding their pixels ---------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path, width: int, height: int, idat: bytes):
    """An 8-bit RGB PNG whose IHDR (with a correct CRC) says width x height, with `idat` as its pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
                     + png_chunk(b"IEND", b""))
    return path


def deflated_zeros(rows: int, row_bytes: int) -> bytes:
    """A zlib stream of rows * row_bytes zero bytes, compressing only one block of rows: after a
    full flush deflate starts afresh, so every further block compresses to the same bytes."""
    rows_per_block = math.gcd(rows, 100)
    block = bytes(rows_per_block * row_bytes)
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == repeat  # the 2-byte zlib header, then position-independent blocks
    end = compressor.flush()[:-4]  # the final empty block; the checksum is for the whole stream
    adler32 = (rows * row_bytes % 65521) << 16 | 1  # Adler-32 of n zero bytes
    return first + repeat * (rows // rows_per_block - 1) + end + struct.pack(">I", adler32)


def bomb_png(path, width: int, height: int):
    """A valid black PNG that decodes to width x height but is about 1/1000 of that on disk."""
    return write_png(path, width, height, deflated_zeros(height, 1 + 3 * width))  # filter byte + RGB per row


def forged_png(path, width: int, height: int):
    """A 1 x 1 PNG whose header claims width x height."""
    return write_png(path, width, height, zlib.compress(bytes(4)))


def garbled_copy(fixtures, path):
    """The 5-frame clip with 20 KB of its last frames overwritten: it opens, and ends early."""
    data = bytearray((fixtures / CLIP).read_bytes())
    start = int(len(data) * 0.7)
    data[start:start + 20000] = bytes(20000)
    path.write_bytes(bytes(data))
    return path


def truncated_copy(fixtures, path):
    """The clip cut to half: its index (the mp4 `moov` box, at the end) is gone, it cannot open."""
    data = (fixtures / CLIP).read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


class StubTeacher:
    """Stands in for MediaPipe where its output does not matter: an empty result per image."""

    def __init__(self, video=False):
        self.images = 0

    def process(self, rgb):
        self.images += 1
        return HolisticResult.empty(*check_rgb(rgb).shape[1::-1])

    def close(self):
        pass


def good_image(path, size=(48, 64)):
    return save_rgb(path, np.full((*size, 3), 128, np.uint8))


# --- item 6: image size from the header, before decoding ------------------------------------

def test_hostile_png_helpers_make_real_pngs(tmp_path):
    small = load_rgb(bomb_png(tmp_path / "small_bomb.png", 300, 200))
    assert small.shape == (200, 300, 3) and not small.any()
    assert cv2.imdecode(np.fromfile(forged_png(tmp_path / "f.png", 1, 1), np.uint8), cv2.IMREAD_COLOR).shape == (1, 1, 3)


def test_png_header_claiming_100000x100000_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"forged\.png is over 179 megapixels.*10000000000 pixels"):
        load_rgb(forged_png(tmp_path / "forged.png", 100_000, 100_000))


def test_decompression_bomb_is_refused_without_decoding(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png", 30_000, 30_000)  # 2.7 GB of pixels
    assert bomb.stat().st_size < 3_000_000
    with pytest.raises(ValueError, match=r"bomb\.png is over 179 megapixels.*900000000 pixels"):
        load_rgb(bomb)
    medium = bomb_png(tmp_path / "medium.png", 10_000, 6_000)  # under Pillow's own ceiling: our limit decides
    with pytest.raises(ValueError, match=r"medium\.png is 10000x6000 \(60 megapixels\), over the limit of 50"):
        load_rgb(medium)


def test_an_image_pillow_cannot_size_is_not_decoded(tmp_path):
    """OpenCV decodes by content: a Radiance HDR file named .png would bypass a header check
    that only covers formats Pillow knows, and HDR is a few KB that can decode to gigabytes."""
    ok, hdr = cv2.imencode(".hdr", np.ones((64, 64, 3), np.float32))
    assert ok and cv2.imdecode(hdr, cv2.IMREAD_COLOR) is not None  # OpenCV alone would decode it
    disguised = tmp_path / "photo.png"
    hdr.tofile(disguised)
    with pytest.raises(ValueError, match=r"cannot decode image .*photo\.png: not a valid image file"):
        load_rgb(disguised)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    image = good_image(tmp_path / "photo.png", (100, 100))  # 10 000 pixels
    assert load_rgb(image).shape == (100, 100, 3)
    with pytest.raises(ValueError, match=r"photo\.png is 100x100 .* limit of 0\.005 megapixels"):
        load_rgb(image, max_pixels=5000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        load_rgb(image)
    assert load_rgb(image, max_pixels=20_000).shape == (100, 100, 3)  # the argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{MAX_PIXELS_ENV} must be a positive whole number"):
        load_rgb(image)


def test_arrays_mediapipe_cannot_index_are_refused(teacher):
    huge = np.broadcast_to(np.zeros(3, np.uint8), (27_000, 27_000, 3))  # 2.19e9 bytes, no memory behind it
    with pytest.raises(ValueError, match="27000x27000 RGB is 2187000000 bytes"):
        check_rgb(huge)
    with pytest.raises(ValueError, match="too large"):
        teacher.process(huge)


def test_label_skips_oversized_images_by_name_and_later_runs_go_on(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    good_image(folder / "a_good.png")
    forged_png(folder / "forged.png", 100_000, 100_000)
    bomb_png(folder / "zbomb.png", 10_000, 6_000)
    out = tmp_path / "labels.npz"
    for _ in range(2):  # the second run resumes: the bad files are tried again and skipped again
        label_paths([folder], out, teacher_factory=StubTeacher, progress=False)
        printed = capsys.readouterr().out
        assert "forged.png is over 179 megapixels" in printed and "zbomb.png is 10000x6000" in printed
        names, _ = load_results(out)
        assert [n.rsplit("/", 1)[-1] for n in names] == ["a_good.png"]
        assert len(load_skipped(out)) == 2


# --- item 7: file names that are not UTF-8 ----------------------------------------------------

def test_non_utf8_names_are_read_and_written(tmp_path, fixtures, capsys):
    folder = tmp_path / os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8
    folder.mkdir()
    image = good_image(folder / os.fsdecode(b"bad\xff.png"))
    (folder / os.fsdecode(b"broken\xfe.jpg")).write_bytes(b"not an image")
    assert os.fsencode(image).endswith(b"caf\xe9/bad\xff.png") and load_rgb(image).shape == (48, 64, 3)

    clip = shutil.copy(fixtures / CLIP, tmp_path / os.fsdecode(b"clip\xff.mp4"))
    assert len(list(iter_video_frames(clip))) == 5  # OpenCV itself crashes on such a name

    out = label_paths([folder, clip], tmp_path / "labels.npz", teacher_factory=StubTeacher, progress=False)
    printed = capsys.readouterr().out
    printed.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogates
    assert "broken\\xfe.jpg" in printed
    names, _ = load_results(out)
    assert str(image) in names and len(names) == 6

    augmented = tmp_path / os.fsdecode(b"aug\xff")
    labels, skipped = augment_labelled_files(out, augmented, "none", copies=1)
    new_names, _ = load_results(labels)
    assert len(new_names) == 1 and len(skipped) == 5  # the five video frames
    assert load_rgb(new_names[0]).shape == (48, 64, 3) and os.fsencode(new_names[0]).count(b"\xff") == 2
    " ".join(skipped).encode("utf-8")


def test_save_rgb_names_the_file_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match=r"notes\.txt.*expected a suffix"):
        save_rgb(tmp_path / "notes.txt", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype uint8"):
        save_rgb(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    assert not any(tmp_path.iterdir())


# --- item 12: one bad file never ends a batch --------------------------------------------------

def test_a_garbled_video_says_how_many_frames_it_read(fixtures, tmp_path):
    frames = VideoFrames(garbled_copy(fixtures, tmp_path / "garbled.mp4"))
    read = sum(1 for _ in frames)
    assert frames.frames_declared == 5 and 1 <= read < 5
    assert f"garbled.mp4 ended early: read {read} of the 5 frames" in frames.shortfall()
    with pytest.warns(UserWarning, match=f"read {read} of the 5 frames"):
        list(iter_video_frames(tmp_path / "garbled.mp4"))
    with pytest.raises(ValueError, match=r"cannot open video .*truncated\.mp4"):
        list(VideoFrames(truncated_copy(fixtures, tmp_path / "truncated.mp4")))


def test_label_skips_corrupt_videos_and_records_them(fixtures, tmp_path, capsys):
    inputs = [truncated_copy(fixtures, tmp_path / "a_truncated.mp4"), garbled_copy(fixtures, tmp_path / "b_garbled.mp4"),
              good_image(tmp_path / "c_good.png")]
    out = label_paths(inputs, tmp_path / "labels.npz", teacher_factory=StubTeacher, progress=False)
    names, _ = load_results(out)
    frames = [n for n in names if "b_garbled.mp4#" in n]
    assert 1 <= len(frames) < 5 and names[-1].endswith("c_good.png")
    skipped = load_skipped(out)
    assert len(skipped) == 2 and "a_truncated.mp4" in skipped[0]
    assert f"b_garbled.mp4 ended early: read {len(frames)} of the 5 frames" in skipped[1]
    printed = capsys.readouterr().out
    assert all(line in printed for line in skipped)


def test_label_with_nothing_readable_fails_and_writes_nothing(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "labels.npz"
    with pytest.raises(ValueError, match=r"nothing processed: all 1 inputs were skipped; the first: .*broken\.jpg"):
        label_paths([tmp_path / "broken.jpg"], out, teacher_factory=StubTeacher, progress=False)
    assert not out.exists()


def test_run_skips_bad_images_and_records_them(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    forged_png(folder / "b_forged.png", 100_000, 100_000)
    good_image(folder / "c_good.png")
    out = tmp_path / "results.npz"
    assert main(["run", str(folder), "--out", str(out)]) == 0
    names, results = load_results(out)
    assert names == [str(folder / "c_good.png")]
    skipped = load_skipped(out)
    assert len(skipped) == 2 and "a_broken.jpg" in skipped[0] and "b_forged.png is over 179 megapixels" in skipped[1]
    printed = capsys.readouterr().out
    assert all(line in printed for line in skipped)

    (folder / "c_good.png").unlink()  # nothing readable left: an error, and nothing written
    assert main(["run", str(folder), "--out", str(tmp_path / "none.npz")]) == 2
    assert "nothing processed" in capsys.readouterr().err and not (tmp_path / "none.npz").exists()


def test_run_takes_a_folder_whatever_its_suffix(tmp_path):
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    good_image(folder / "frame.png")
    assert main(["run", str(folder), "--out", str(tmp_path / "results.npz")]) == 0
    assert load_results(tmp_path / "results.npz")[0] == [str(folder / "frame.png")]


def test_run_on_a_garbled_video_keeps_the_frames_read(fixtures, tmp_path):
    batch = process_path(garbled_copy(fixtures, tmp_path / "garbled.mp4"), StubTeacher)
    assert 1 <= len(batch.results) < 5 and len(batch.names) == len(batch.results)
    assert batch.skipped == [f"video {tmp_path / 'garbled.mp4'} ended early: read {len(batch.results)} of the 5 "
                             "frames its container declares (damaged or cut short)"]
    batch = process_path(truncated_copy(fixtures, tmp_path / "truncated.mp4"), StubTeacher)
    assert batch.results == [] and "truncated.mp4" in batch.skipped[0]
    with pytest.raises(ValueError, match=r"nothing processed.*truncated\.mp4"):
        batch.save(tmp_path / "out.npz")


def test_a_padded_image_file_is_refused_before_it_is_read(tmp_path):
    """A valid header followed by gigabytes (a sparse file here) is refused from its size on disk."""
    padded = good_image(tmp_path / "padded.png", (100, 100))
    with open(padded, "r+b") as fh:
        fh.truncate(10 * 2**30)  # 10 GiB, sparse: costs no disk
    with pytest.raises(ValueError, match=r"padded\.png is 10737 MB on disk, more than any image within the pixel"):
        load_rgb(padded)


def test_a_folder_or_fifo_with_an_image_suffix_is_named_not_hung(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    os.mkfifo(tmp_path / "fifo.jpg")
    for name in ("d.jpg", "fifo.jpg"):
        with pytest.raises(ValueError, match=rf"image .*{name} is not a regular file"):
            load_rgb(tmp_path / name)


def test_a_bad_pixel_limit_fails_once_before_the_batch(tmp_path, monkeypatch):
    for index in range(3):
        good_image(tmp_path / f"img{index}.png")
    monkeypatch.setenv("HOLISTIC_LAB_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="HOLISTIC_LAB_MAX_PIXELS must be a positive whole number of pixels, got 'lots'"):
        label_paths([tmp_path], tmp_path / "labels.npz", teacher_factory=StubTeacher, progress=False)
    assert not (tmp_path / "labels.npz").exists()
