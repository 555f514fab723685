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


def cmd_run(args) -> int:
    """Run the Python Holistic cascade on images or a video into one results .npz."""
    from pathlib import Path

    from .images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, load_rgb
    from .pipeline import HolisticPipeline
    from .result import save_results

    path = Path(args.path)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        pipeline = HolisticPipeline(static_image_mode=False, num_threads=args.threads)
        results = list(pipeline.process_video(path))
        names = [f"{path.name}#{i}" for i in range(len(results))]
    elif path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        pipeline = HolisticPipeline(static_image_mode=True, num_threads=args.threads)
        results, names = [pipeline.process(load_rgb(f)) for f in files], [str(f) for f in files]
    else:
        raise ValueError(f"{path}: expected an image, a folder of images or a video ({', '.join(VIDEO_SUFFIXES)})")
    print(f"wrote {save_results(args.out, results, names)} ({len(results)} results)")
    return 0


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

    p = sub.add_parser("run", help=cmd_run.__doc__)
    p.add_argument("path", help="an image, a folder of images, or a video file (tracked frame to frame)")
    p.add_argument("--out", required=True, help="output .npz of HolisticResults")
    p.add_argument("--threads", type=int, default=1, help="TFLite threads per stage")
    p.set_defaults(func=cmd_run)
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
