"""The `holistic-lab` command line: one subcommand per stage of the course.

Each subcommand is a small function `cmd_<name>(args)` registered in `build_parser`;
the work itself lives in the library modules, so the CLI and notebooks share it.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_info(args) -> int:
    """Check the install: versions and the shipped Holistic models."""
    from importlib.metadata import version

    from .mediapipe_models import HOLISTIC_MODELS, model_path

    for package in ("mediapipe", "tensorflow", "numpy", "albumentations", "opencv-contrib-python"):
        print(f"{package:24s} {version(package)}")
    for name in HOLISTIC_MODELS:
        path = model_path(name)
        print(f"{name:28s} {path.stat().st_size / 1e6:6.2f} MB  {path}")
    return 0


def cmd_label(args) -> int:
    """Label image folders and video files with MediaPipe Holistic into one .npz."""
    from .label import label_paths

    out = label_paths(args.paths, args.out, save_every_s=args.save_every, progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def cmd_convert(args) -> int:
    """Rebuild a Holistic .tflite as a Keras model, verify it against the interpreter, save it."""
    from pathlib import Path

    from .convert import keras_to_tflite, tflite_to_keras, verify
    from .convert.files import resolve_tflite, save_keras, write_atomically

    source = resolve_tflite(args.model)
    model = tflite_to_keras(source)
    report = verify(source, model)
    print(report)
    saved = save_keras(model, Path(args.out) / f"{source.stem}.keras")
    print(f"wrote {saved}")
    passed = report.passed
    if args.round_trip:
        flatbuffer = keras_to_tflite(model)
        round_trip = verify(source, flatbuffer)
        print(f"round trip (float32 .tflite from the Keras model):\n{round_trip}")
        written = write_atomically(Path(args.out) / f"{source.stem}_float32.tflite", lambda p: p.write_bytes(flatbuffer))
        print(f"wrote {written}")
        passed = passed and round_trip.passed
    return 0 if passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="holistic-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help=cmd_info.__doc__)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("label", help=cmd_label.__doc__)
    p.add_argument("paths", nargs="+", help="image files, folders of images, video files")
    p.add_argument("--out", required=True, help="output .npz (resumed if it exists)")
    p.add_argument("--save-every", type=float, default=10.0, help="checkpoint interval in seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("convert", help=cmd_convert.__doc__)
    p.add_argument("model", help="a Holistic model name (e.g. hand_landmark_full) or a .tflite path")
    p.add_argument("--out", required=True, help="folder for <name>.keras (and <name>_float32.tflite)")
    p.add_argument("--round-trip", action="store_true", help="also write and verify a float32 .tflite of the Keras model")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"holistic-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
