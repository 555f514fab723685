"""`holistic-lab quantize` against a hostile user: bad options, an --out that holds the user's files
or is the --from variant (itself or through a symbolic link), calibration folders that are empty,
corrupt, huge, special files or photographs of no person. Each answer is one line naming the
option or file, exit status 2, no traceback, nothing of the user's replaced; a bad option is
refused before TensorFlow is even imported."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

import holistic_lab  # noqa: E402
from holistic_lab.cli import main  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.variants import read_variant, write_variant  # noqa: E402

REPOSITORY = Path(holistic_lab.__file__).resolve().parents[1]
PREFIX = "holistic-lab quantize: error: "


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith(PREFIX), err[-2000:]
    return err


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def shipped_variant(folder: Path) -> Path:
    return write_variant(folder, {"hand_recrop": model_path("hand_recrop")}, folder.name, {"command": "test"},
                         kinds="pruned-0.3").parent


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


# --- refused before any work, without importing TensorFlow ----------------------------------------


def _mine(tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")


def _empty_calibration(tmp):
    (tmp / "photos").mkdir()
    (tmp / "photos" / "readme.txt").write_text("no images")


def _special_files(tmp):
    """Names that look like images but are a FIFO (reading it would hang) and a link to /dev/zero."""
    (tmp / "photos").mkdir()
    os.mkfifo(tmp / "photos" / "pipe.jpg")
    (tmp / "photos" / "zero.jpg").symlink_to("/dev/zero")


def _source(tmp):
    shipped_variant(tmp / "source")
    (tmp / "link").symlink_to(tmp / "source")


def _plain_folder(tmp):
    (tmp / "plain").mkdir()
    (tmp / "plain" / "notes.txt").write_text("keep me")


REFUSALS = {
    "unknown mode": (None, ["--mode", "int4", "--out", "v"], "unknown quantization mode 'int4'"),
    "unknown stage": (None, ["--mode", "int8", "--stage", "hand_recrop,palm", "--out", "v"], "unknown stage 'palm'"),
    "selective not int8": (None, ["--mode", "float16", "--selective", "--out", "v"],
                           "selective and float ops apply to mode int8 only, not float16"),
    "selective layers alone": (None, ["--mode", "int8", "--selective-layers", "2", "--out", "v"],
                               "--selective-layers applies with --selective only"),
    "float ops not int8": (None, ["--mode", "dynamic", "--float-ops", "PRELU", "--out", "v"],
                           "apply to mode int8 only, not dynamic"),
    "calibration missing": (None, ["--mode", "int8", "--calibration", "nowhere", "--out", "v"],
                            "calibration folder not found: nowhere"),
    "calibration empty": (_empty_calibration, ["--mode", "int8", "--calibration", "photos", "--out", "v"],
                          "calibration folder photos holds no images"),
    "calibration special files": (_special_files, ["--mode", "int8", "--calibration", "photos", "--out", "v"],
                                  "calibration folder photos holds no images"),
    "calibration a file": (_mine, ["--mode", "int8", "--calibration", "mine/notes.txt", "--out", "v"],
                           "calibration folder mine/notes.txt is not a folder"),
    "out holds a user's file": (_mine, ["--mode", "float16", "--out", "mine"],
                                "variant folder mine holds files that are not a holistic-lab variant"),
    "out is a file": (_mine, ["--mode", "float16", "--out", "mine/notes.txt"], "mine/notes.txt is a file"),
    "out a dangling link": (lambda tmp: (tmp / "v").symlink_to(tmp / "gone"), ["--mode", "float16", "--out", "v"],
                            "is a symbolic link to .*gone, which does not exist"),
    "from missing": (None, ["--mode", "float16", "--from", "nowhere", "--out", "v"], "nowhere/manifest.json"),
    "from not a variant": (_plain_folder, ["--mode", "float16", "--from", "plain", "--out", "v"],
                           "plain/manifest.json: no manifest"),
    "out is from": (_source, ["--mode", "float16", "--stage", "hand_recrop", "--from", "source", "--out", "source"],
                    "--out source is also --from"),
    "out links to from": (_source, ["--mode", "float16", "--stage", "hand_recrop", "--from", "source",
                                    "--out", "link"], "--out link is also --from"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_arguments_are_one_line_exit_2_before_tensorflow_loads(tmp_path, case):
    """In a fresh interpreter: the refusal comes before TensorFlow or Keras is imported, so it takes
    a second (not TensorFlow's start) and prints none of its native log lines."""
    setup, argv, message = REFUSALS[case]
    if setup is not None:
        setup(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and not path.is_symlink()}
    code = ("import sys; from holistic_lab.cli import main; rc = main(sys.argv[1:]); "
            "print(rc, sorted({'tensorflow', 'keras'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code, "quantize", *argv, "--no-progress"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.stdout == "2 []\n", (run.stdout, run.stderr[-2000:])
    assert run.stderr.startswith(PREFIX) and len(run.stderr.splitlines()) == 1, run.stderr[-2000:]
    assert re.search(message, run.stderr), run.stderr
    assert not (tmp_path / "v").exists()
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and not path.is_symlink()}
    assert after == before  # nothing written, nothing replaced


@pytest.mark.parametrize("argv, option", [
    (["--selective-layers", "-1"], "--selective-layers: expected an integer >= 0, got '-1'"),
    (["--calibration-count", "0"], "--calibration-count: expected an integer >= 1, got '0'"),
    (["--float-ops", "PRE LU;"], "--float-ops: expected TFLite op names such as PRELU"),
])
def test_bad_numbers_and_op_names_are_argparse_errors_naming_the_option(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["quantize", "--mode", "int8", "--out", str(tmp_path / "v"), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err and not (tmp_path / "v").exists()


# --- calibration images that are not what they claim ----------------------------------------------


def test_a_corrupt_jpg_in_the_calibration_folder_is_refused_naming_it(fixtures, tmp_path, capsys):
    from holistic_lab.datasets import hagrid_frames

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(hagrid_frames()[0][0], photos / "b_person.jpg")
    (photos / "a_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 then nothing a JPEG decoder can use")
    out = tmp_path / "v"
    assert main(["quantize", "--mode", "int8", "--stage", "hand_recrop", "--calibration", str(photos),
                 "--out", str(out), "--no-progress"]) == 2
    assert "cannot decode image" in one_line_error(capsys).split("a_broken.jpg")[0]
    assert not out.exists()


@pytest.mark.parametrize("width, height, message", [
    (60_000, 60_000, "over 179 megapixels, too large to decode"),     # Pillow's own ceiling
    (12_000, 10_000, "120 megapixels), over the limit of 50 megapixels"),  # the project's limit
])
def test_a_calibration_image_claiming_a_huge_size_is_refused_before_decoding(tmp_path, capsys, width, height,
                                                                             message):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "huge.png").write_bytes(png_header(width, height))
    assert main(["quantize", "--mode", "int8", "--stage", "hand_recrop", "--calibration", str(tmp_path / "photos"),
                 "--out", str(tmp_path / "v"), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "huge.png" in err and message in err and not (tmp_path / "v").exists()


def test_photographs_of_no_person_are_refused_naming_the_stages_with_nothing_to_crop(fixtures, tmp_path, capsys):
    """FreiHAND photographs (a hand on a table): the pose detector finds no body, so there is no hand
    re-crop to calibrate on; refused, and no variant written."""
    from holistic_lab.datasets import fixture_path

    (tmp_path / "photos").mkdir()
    for name in ("00000355", "00017620"):
        shutil.copy(fixture_path(f"freihand/{name}.jpg"), tmp_path / "photos" / f"{name}.jpg")
    assert main(["quantize", "--mode", "int8", "--stage", "hand_recrop,face_landmark", "--calibration",
                 str(tmp_path / "photos"), "--out", str(tmp_path / "v"), "--no-progress"]) == 2
    assert "found nothing to crop for hand_recrop, face_landmark" in one_line_error(capsys)
    assert not (tmp_path / "v").exists()


# --- a run that works ---------------------------------------------------------------------------


def test_selective_int8_from_a_calibration_folder_writes_a_variant_that_says_what_was_done(fixtures, tmp_path,
                                                                                          capsys):
    """Three HaGRID photographs (and a text file, ignored) calibrate hand_recrop; PRELU, the output
    head and at most two of the worst layers stay float; the manifest records the command, the
    folder and the crop count."""
    from holistic_lab.datasets import hagrid_frames
    from holistic_lab.images import load_rgb
    from holistic_lab.pipeline import HolisticPipeline

    photos = tmp_path / "photos"
    photos.mkdir()
    people = [path for path, _ in hagrid_frames()[:3]]
    for path in people:
        shutil.copy(path, photos / path.name)
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "int8s"
    argv = ["quantize", "--mode", "int8", "--selective", "--selective-layers", "2", "--stage", "hand_recrop",
            "--calibration", str(photos), "--calibration-count", "3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("hand_recrop: int8-selective, 0.") and "PRELU x13" in lines[0]
    assert lines[-1] == f"variant {out}"
    variant = read_variant(out)
    entry = variant.manifest["stages"]["hand_recrop"]
    assert entry["kind"] == "int8-selective" and entry["metrics"]["calibration_crops"] == 3
    float_ops = entry["metrics"]["float_ops"]
    assert entry["metrics"]["float_layers"] and float_ops["PRELU"] == 13
    assert sum(float_ops.values()) > 13  # the head's ops run in float too
    assert entry["metrics"]["from"].endswith("hand_recrop.tflite")
    made_by = variant.manifest["made_by"]
    assert made_by["command"].startswith("holistic-lab quantize --mode int8 --selective")
    assert made_by["config"]["calibration"] == str(photos) and made_by["config"]["selective_layers"] == 2
    assert json.loads((out / "manifest.json").read_text())["format"] == "holistic-lab-variant"
    pipeline = HolisticPipeline.from_variant(out, static_image_mode=True)
    pipeline.process(load_rgb(people[0]))
    assert any(key.endswith("_recrop") for key in pipeline.last_crops)
