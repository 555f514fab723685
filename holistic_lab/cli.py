"""The `holistic-lab` command line: one subcommand per stage of the course.

Each subcommand is a small function `cmd_<name>(args)` registered in `build_parser`;
the work itself lives in the library modules, so the CLI and notebooks share it.
Every writer checks its `--out` before the work starts (`holistic_lab.files`): a file
holistic-lab did not make is replaced only with `--overwrite`, an input never.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

from .files import check_output_folder, display_path, output_lock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _number(kind, expected: str, accept):
    """An argparse `type=` that refuses, by the option's name, a value that is not `expected`."""
    def parse(text: str):
        try:
            value = kind(text)
            accepted = math.isfinite(value) and accept(value)
        except (ValueError, OverflowError):  # not a number, or an integer too large for any float
            accepted = False
        if not accepted:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _number(int, "an integer >= 1", lambda value: value >= 1)
non_negative_int = _number(int, "an integer >= 0", lambda value: value >= 0)
positive_float = _number(float, "a number > 0", lambda value: value > 0)
unit_fraction = _number(float, "a number between 0 and 1", lambda value: 0 < value < 1)
seed_value = _number(int, "an integer from 0 to 2**32 - 1", lambda value: 0 <= value < 2**32)  # numpy's seeds


def optional(parse, off: str = "none"):
    """`parse`, or None for the word `off` (a config field that None turns off)."""
    def parse_or_off(text: str):
        return None if text.strip().lower() == off else parse(text)

    return parse_or_off


def loss_weight(text: str) -> tuple[str, float]:
    """`NAME=VALUE` -> (name, value); the config checks the name and that the value is finite, >= 0."""
    name, sep, value = text.partition("=")
    try:
        if sep and name.strip():
            return name.strip(), float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as teacher=2.0, got {text!r}")


# More TFLite threads than cores only adds spinning workers; a huge count hangs the interpreter's start.
CORES = os.cpu_count() or 1
thread_count = _number(int, f"an integer from 1 to {CORES} (this machine's cores)", lambda value: 1 <= value <= CORES)


def cmd_info(args) -> int:
    """Check the install: versions and the shipped Holistic models."""
    from .mediapipe_models import HOLISTIC_MODELS, installed_versions, model_path

    for package, installed in installed_versions().items():
        print(f"{package:24s} {installed}")
    for name in HOLISTIC_MODELS:
        path = model_path(name)
        print(f"{name:28s} {path.stat().st_size / 1e6:6.2f} MB  {path}")
    return 0


def cmd_label(args) -> int:
    """Label image folders and video files with MediaPipe Holistic into one .npz (or, with --workers, shards on Ray)."""
    from .label import label_paths

    if args.merge is not None:
        from .label_sharded import merge_sharded

        if args.paths or args.workers or args.address:
            raise ValueError("--merge takes no inputs, --workers or --address: it only joins a sharded folder into --out")
        print(f"wrote {display_path(merge_sharded(args.merge, args.out, overwrite=args.overwrite))}")
        return 0
    if not args.paths:
        raise ValueError("name the images, folders or videos to label (or --merge DIR)")
    if args.address and not args.workers:
        raise ValueError("--address needs --workers: the number of worker processes to run on the cluster")
    if args.workers:
        from .label_sharded import label_sharded

        if args.overwrite:
            raise ValueError("--overwrite does not apply with --workers: a sharded folder is resumed, never replaced; "
                             "choose a new folder to start again")
        out = label_sharded(args.paths, args.out, workers=args.workers, address=args.address,
                            progress=not args.quiet)
        print(f"wrote {display_path(out)} (holistic-lab label --merge {shlex.quote(str(out))} --out FILE.npz "
              "joins it into one file)")
        return 0
    out = label_paths(args.paths, args.out, save_every_s=args.save_every, progress=not args.quiet,
                      overwrite=args.overwrite)
    print(f"wrote {display_path(out)}")
    return 0


def cmd_export_coco(args) -> int:
    """Teacher labels (.npz from `label`) -> COCO-WholeBody JSON other tools can read."""
    from .formats.coco_wholebody import export_labels

    print(f"wrote {display_path(export_labels(args.labels, args.out, overwrite=args.overwrite))}")
    return 0


def cmd_to_tfrecord(args) -> int:
    """COCO-WholeBody JSON or teacher labels (.npz) -> TFRecord shards for fine-tuning."""
    from .formats import coco_wholebody, tfrecord
    from .result import load_results

    source = Path(args.source)
    tfrecord.check_set_output(args.out, None, [source], args.overwrite)  # before loading: the count comes later
    if source.suffix == ".npz":
        samples = coco_wholebody.samples_from_labels(*load_results(source))
    else:
        samples = coco_wholebody.load(source, image_root=args.image_root, strict=not args.skip_bad)
        for line in samples.skipped:
            print(f"skipped {line}")
    for path in tfrecord.write(args.out, samples, shard_size=args.shard_size, overwrite=args.overwrite,
                               inputs=[source]):
        print(f"wrote {display_path(path)}")
    return 0


def cmd_evaluate(args) -> int:
    """Measure MediaPipe Holistic (the teacher) against the human annotations of the fixture pack."""
    from .metrics import evaluate_fixtures
    from .teacher import MediaPipeTeacher

    with MediaPipeTeacher(static_image_mode=True) as teacher:
        table = evaluate_fixtures(teacher, args.sets or None, progress=not args.quiet)
    print(table.to_markdown())
    return 0


def cmd_augment(args) -> int:
    """Augment a labelled image set (.npz from `label`) into new images and labels."""
    from .augment.files import augment_labelled_files

    out, skipped = augment_labelled_files(args.labels, args.out, args.preset, args.copies, args.seed,
                                          overwrite=args.overwrite)
    for line in skipped:
        print(f"skipped {line}")
    print(f"wrote {display_path(out)}")
    return 0


def cmd_run(args) -> int:
    """Run the Python Holistic cascade on images or a video into one results .npz."""
    from .batch import process_path
    from .pipeline import HolisticPipeline
    from .result import check_results_output

    path = Path(args.path)
    inputs = [path] + (list(path.iterdir()) if path.is_dir() else [])
    out = check_results_output(args.out, inputs=inputs, overwrite=args.overwrite, what="--out")
    with output_lock(out, what="--out"):
        batch = process_path(path, lambda video: HolisticPipeline(static_image_mode=not video,
                                                                  num_threads=args.threads))
        for line in batch.skipped:
            print(f"skipped {line}")
        print(f"wrote {display_path(batch.save(out, overwrite=args.overwrite))} ({len(batch.results)} results)")
    return 0


def cmd_convert(args) -> int:
    """Rebuild a Holistic .tflite as a Keras model, verify it against the interpreter, save it."""
    from .convert import keras_to_tflite, tflite_to_keras, verify
    from .convert.files import check_model_output, save_keras
    from .files import atomic_write, check_output_folder
    from .mediapipe_models import resolve_model

    source = resolve_model(args.model)
    folder = check_output_folder(args.out, "--out")
    keras_path, tflite_path = folder / f"{source.stem}.keras", folder / f"{source.stem}_float32.tflite"
    for target in [keras_path] + ([tflite_path] if args.round_trip else []):
        check_model_output(target, inputs=[source], overwrite=args.overwrite)
    model = tflite_to_keras(source)
    report = verify(source, model)
    print(report)
    saved = save_keras(model, keras_path)
    print(f"wrote {display_path(saved)}")
    passed = report.passed
    if args.round_trip:
        flatbuffer = keras_to_tflite(model)
        round_trip = verify(source, flatbuffer)
        print(f"round trip (float32 .tflite from the Keras model):\n{round_trip}")
        written = atomic_write(tflite_path, lambda p: p.write_bytes(flatbuffer))
        print(f"wrote {display_path(written)}")
        passed = passed and round_trip.passed
    return 0 if passed else 1


# finetune options -> FineTuneConfig fields (given ones override --config's JSON)
FINETUNE_FIELDS = {"data": "dataset_path", "module": "module", "epochs": "epochs", "batch_size": "batch_size",
                   "learning_rate": "learning_rate", "lora_rank": "lora_rank", "freeze_backbone": "freeze_backbone",
                   "validation_split": "validation_split", "checkpoint_dir": "checkpoint_dir",
                   "gradient_clip": "gradient_clip", "mixed_precision": "mixed_precision",
                   "cache_dataset": "cache_dataset", "preset": "preset", "task_type": "task_type",
                   "num_classes": "num_classes", "class_names": "class_names",
                   "distributed_workers": "distributed_workers", "shard_by": "shard_by"}


def finetune_config(args):
    """The job: --config's JSON, the options given laid over it, checkpoints beside --out by default."""
    from .train.config import FineTuneConfig, read_job_fields

    fields = read_job_fields(args.config) if args.config else {}
    given = vars(args)
    fields.update({field: given[option] for option, field in FINETUNE_FIELDS.items() if option in given})
    if getattr(args, "loss_weight", None):
        earlier = fields.get("loss_weights", {})
        if not isinstance(earlier, dict):
            raise ValueError(f"{args.config}: field 'loss_weights': expected an object of term: weight, "
                             f"got {type(earlier).__name__}")
        fields["loss_weights"] = {**earlier, **dict(args.loss_weight)}
    for field, option in (("dataset_path", "--data"), ("module", "--module")):
        if field not in fields:
            raise ValueError(f"{option} is required (or {field!r} in the --config job)")
    fields.setdefault("checkpoint_dir", f"{Path(args.out)}.checkpoints")
    try:
        return FineTuneConfig(**fields)
    except ValueError as error:
        raise ValueError(f"{args.config}: {error}" if args.config else str(error)) from None


def finetune_workers(args, config) -> int:
    """How many local workers this command starts (1: it trains itself). With --workers it joins
    that cluster as worker --index (TF_CONFIG written for it); a TF_CONFIG already set makes it
    that cluster's worker; --distributed-workers N alone starts N workers on the loopback."""
    from .train import distributed

    if (args.workers is None) != (args.index is None):
        raise ValueError("--workers and --index go together: the cluster's addresses and this worker's place in it")
    if args.workers is not None:
        member = distributed.join_cluster(args.workers, args.index)
    else:
        member = distributed.environment_cluster()
    if member is None:
        return config.distributed_workers
    if config.task_type == "classification":
        raise ValueError("--workers / TF_CONFIG: a gesture head trains in one process")
    if config.distributed_workers not in (1, len(member.workers)):
        raise ValueError(f"distributed_workers: {config.distributed_workers} asked, but the cluster "
                         f"({'--workers' if args.workers else distributed.TF_CONFIG_ENV}) has {len(member.workers)} "
                         "workers; give one or the other")
    return 1


def cmd_finetune(args) -> int:
    """Fine-tune one landmark model (face_mesh, hands, pose) on a labelled TFRecord set into a variant."""
    from .train.job import run_job

    config = finetune_config(args)
    workers = finetune_workers(args, config)
    if config.task_type == "classification":  # the job API's gesture head (chapter 06)
        from .gestures.job import run_classification_job

        classifier = run_classification_job(config, args.out, start_from=args.start_from, overwrite=args.overwrite,
                                            command=shlex.join(["holistic-lab", *args.argv]),
                                            progress=not args.no_progress, seed=args.seed)
        print(f"gesture head, classes {', '.join(classifier.labels)}: validation accuracy "
              f"{classifier.manifest['training']['validation_accuracy']:.3f}; variant {display_path(args.out)}")
        return 0
    if workers > 1:
        from .formats.tfrecord import set_file_names
        from .train.distributed import run_local_workers
        from .train.job import check_job_outputs
        from .train.loop import check_supported, shard_policy

        # refused before any worker starts
        check_supported(config)
        shard_policy(config, len(set_file_names(config.dataset_path)), workers)
        check_job_outputs(config, args.out, args.start_from, args.overwrite)
        print(f"starting {workers} workers on this machine's loopback (worker 0, the chief, writes the variant)")
        return run_local_workers([sys.executable, "-m", "holistic_lab.cli", *args.argv], workers)
    result = run_job(config, args.out, start_from=args.start_from, overwrite=args.overwrite,
                     command=shlex.join(["holistic-lab", *args.argv]), progress=not args.no_progress,
                     seed=args.seed, steps_per_epoch=args.steps_per_epoch)
    print(result)
    return 0


def add_finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help=cmd_finetune.__doc__)
    given_only = argparse.SUPPRESS  # an option not given leaves --config's value (or the field's default)
    # the config checks the module's name: importing holistic_lab.train here would load Keras for every command
    p.add_argument("--module", default=given_only, metavar="{face_mesh,hands,pose}",
                   help="the landmark model to fine-tune")
    p.add_argument("--data", default=given_only,
                   help="labelled TFRecord set: its file, or the name its shards share (from `to-tfrecord`)")
    p.add_argument("--out", required=True, help="the variant folder to write")
    p.add_argument("--from", dest="start_from",
                   help="a variant folder to start from: its model for the module's stage (the shipped one if it "
                        "has none)")
    p.add_argument("--config", help="a job JSON (FineTuneConfig fields, as the job API takes); the options given "
                                    "override it")
    p.add_argument("--epochs", type=positive_int, default=given_only, help="epochs (default 10)")
    p.add_argument("--batch-size", type=positive_int, default=given_only, help="crops per batch (default 32)")
    p.add_argument("--learning-rate", type=positive_float, default=given_only,
                   help="Adam's (default: 1e-4, pose 1e-5)")
    p.add_argument("--lora-rank", type=optional(positive_int), default=given_only,
                   help="train rank-R LoRA adapters only ('none': no LoRA, the default)")
    p.add_argument("--freeze-backbone", action=argparse.BooleanOptionalAction, default=given_only,
                   help="train the heads only (default) or every weight")
    p.add_argument("--validation-split", type=unit_fraction, default=given_only,
                   help="fraction of images held out (default 0.1)")
    p.add_argument("--checkpoint-dir", default=given_only,
                   help="best weights, log.csv, TensorBoard logs, resume state (default: <out>.checkpoints)")
    p.add_argument("--gradient-clip", type=optional(positive_float), default=given_only,
                   help="global gradient norm ('none': off; default 1.0)")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=given_only,
                   help="float16 on a GPU, bfloat16 on a CPU (default off)")
    p.add_argument("--cache-dataset", action=argparse.BooleanOptionalAction, default=given_only,
                   help="decode the set once and keep it in memory (default on)")
    p.add_argument("--preset", default=given_only, help="augmentation preset (default train)")
    p.add_argument("--task-type", choices=("landmarks", "classification"), default=given_only,
                   help="landmarks (default); classification trains a gesture head on the hand model from --data's "
                        "class folders (chapter 06)")
    p.add_argument("--num-classes", type=positive_int, default=given_only, help="classes (classification only)")
    p.add_argument("--class-names", type=lambda text: [name.strip() for name in text.split(",")],
                   default=given_only, metavar="A,B,...", help="class folders to use, in order (classification only)")
    p.add_argument("--distributed-workers", type=positive_int, default=given_only,
                   help="start N training workers on this machine's loopback (default 1); --batch-size is per worker")
    p.add_argument("--workers", metavar="HOST:PORT,...",
                   help="train as one worker of this cluster (every worker gets the same list; worker 0 is the chief "
                        "and writes the variant); with --index")
    p.add_argument("--index", type=non_negative_int, help="this worker's place in --workers (0: the chief)")
    p.add_argument("--shard-by", choices=("auto", "data", "file"), default=given_only,
                   help="how several workers share the training images: file (each reads its own TFRecord shards), "
                        "data (each its slice of every global batch), auto (default: file when the set has a shard "
                        "per worker)")
    p.add_argument("--loss-weight", type=loss_weight, action="append", metavar="NAME=VALUE",
                   help="weight of a loss term (landmarks, z, presence, visibility, teacher, teacher_outputs); "
                        "repeatable")
    p.add_argument("--steps-per-epoch", type=positive_int, help="cap batches per epoch (quick runs)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed (split, augmentation, init)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="write the variant beside files in --out that are not one")
    p.set_defaults(func=cmd_finetune)


def new_class(text: str) -> tuple[str, str]:
    """`NAME=FOLDER` -> (name, folder): a class of the user's own images."""
    name, sep, folder = text.partition("=")
    if not (sep and name.strip() and folder.strip()):
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER such as pinch=photos/pinch, got {text!r}")
    return name.strip(), folder.strip()


def gesture_items(args) -> list:
    """--data's class folders (picked and renamed by --classes), plus each --add-class."""
    from .gestures import add_class, class_items, parse_classes

    items = class_items(args.data, parse_classes(args.classes))
    for name, folder in getattr(args, "add_class", None) or []:
        items = add_class(items, folder, name)
    return items


def cmd_gestures_train(args) -> int:
    """Train a gesture head on the hand model from class folders into a variant (gesture/)."""
    from .gestures import GestureClassifier, labels_of
    from .gestures.classifier import check_variant_out

    check_variant_out(args.out, [("--data", args.data), *(("--add-class", f) for _, f in args.add_class or [])],
                      args.start_from, args.overwrite)
    items = gesture_items(args)
    with output_lock(args.out, "--out"):  # a second run on the same variant is refused now, not after training
        classifier = GestureClassifier.train(items, hand_model=args.start_from, views=args.views, epochs=args.epochs,
                                             validation_fraction=args.validation_split,
                                             learning_rate=args.learning_rate, seed=args.seed,
                                             progress=not args.no_progress)
        manifest = classifier.save_variant(args.out, {"command": shlex.join(["holistic-lab", *args.argv])},
                                           source=args.start_from, overwrite=args.overwrite)
    training = classifier.manifest["training"]
    print(f"{len(items)} images, classes {', '.join(labels_of(items))}: validation accuracy "
          f"{training['validation_accuracy']:.3f} (best epoch {training['best_epoch']} of {training['epochs_run']}); "
          f"variant {display_path(manifest.parent)}")
    return 0


def cmd_gestures_eval(args) -> int:
    """Score a gesture classifier on class folders: accuracy with its interval, per-class F1, confusion."""
    from .gestures import GestureClassifier
    from .gestures.evaluate import confusion_matrix, per_class_f1, score_classifier

    classifier = GestureClassifier.load(args.model)
    score = score_classifier(classifier, gesture_items(args), progress=not args.no_progress)
    matrix = confusion_matrix(score.true, score.predicted, len(classifier.labels))
    print(f"accuracy {score.accuracy:.3f} [95% interval {score.low:.3f}, {score.high:.3f}] on {score.n} images")
    corner = "true/predicted"
    width = max(len(corner), *map(len, classifier.labels))
    print(f"{corner:>{width}}  " + " ".join(f"{label[:6]:>6}" for label in classifier.labels) + "      F1")
    for label, row, f1 in zip(classifier.labels, matrix, per_class_f1(matrix)):
        print(f"{label:>{width}}  " + " ".join(f"{count:>6}" for count in row) + f"  {f1:6.3f}")
    return 0


def cmd_gestures_predict(args) -> int:
    """Gesture of each tight hand crop, or with --frames of each hand the whole cascade finds."""
    from .gestures import GestureClassifier
    from .images import load_rgb

    classifier = GestureClassifier.load(args.model)
    if args.frames:
        from .gestures.cascade import gesture_pipeline

        pipeline = gesture_pipeline(args.model)
    for path in args.images:
        rgb = load_rgb(path)
        if args.frames:
            gestures = pipeline.process(rgb).gestures
            found = [f"{side}={label} {score:.2f}" for side, (label, score) in
                     ((side, value) for side, value in gestures.items() if value is not None)]
            print(f"{display_path(path)}\t{' '.join(found) or 'no hand'}")
        else:
            label, score = classifier.classify_crop(rgb)
            print(f"{display_path(path)}\t{label}\t{score:.3f}")
    return 0


def add_gestures_parser(sub) -> None:
    gestures = sub.add_parser("gestures", help="gesture classification on the hand model (chapter 06)")
    commands = gestures.add_subparsers(dest="gestures_command", required=True)

    def data_options(p, required: bool = True):
        p.add_argument("--data", required=required, help="a folder of class folders (one sub-folder per gesture)")
        p.add_argument("--classes", default=None,
                       help="which sub-folders and their labels: 'all' (default), 'hagrid8' (the job API's 8 "
                            "HaGRID classes), 'hagrid13' (all 13, job-API names where they exist), or "
                            "'folder:label,folder,...'")
        p.add_argument("--add-class", type=new_class, action="append", metavar="NAME=FOLDER",
                       help="one more class from a folder of your own images (repeatable), e.g. pinch=photos/pinch")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = commands.add_parser("train", help=cmd_gestures_train.__doc__)
    data_options(p)
    p.add_argument("--out", required=True, help="the variant folder to write (the classifier goes in its gesture/)")
    p.add_argument("--from", dest="start_from",
                   help="a variant folder to start from: the head goes on its hand model; its stages are kept")
    p.add_argument("--views", type=positive_int, default=3, help="crops per training image: the cascade's ROI, then "
                                                                 "jittered and mirrored ones (default 3)")
    p.add_argument("--epochs", type=positive_int, default=300, help="most epochs; early stopping picks the best")
    p.add_argument("--validation-split", type=unit_fraction, default=0.15, help="fraction of images held out")
    p.add_argument("--learning-rate", type=positive_float, default=1e-3, help="Adam's (default 1e-3)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed (split, views, init)")
    p.add_argument("--overwrite", action="store_true", help="write the variant beside files in --out that are not one")
    p.set_defaults(func=cmd_gestures_train, command="gestures train")

    p = commands.add_parser("eval", help=cmd_gestures_eval.__doc__)
    data_options(p)
    p.add_argument("--model", required=True, help="a variant folder with a gesture head (or the gesture folder itself)")
    p.set_defaults(func=cmd_gestures_eval, command="gestures eval")

    p = commands.add_parser("predict", help=cmd_gestures_predict.__doc__)
    p.add_argument("images", nargs="+", help="image files: tight hand crops, or whole photographs with --frames")
    p.add_argument("--model", required=True, help="a variant folder with a gesture head (or the gesture folder itself)")
    p.add_argument("--frames", action="store_true", help="the images are whole photographs: run the whole cascade")
    p.set_defaults(func=cmd_gestures_predict, command="gestures predict")


def op_names(text: str) -> tuple[str, ...]:
    """`PRELU,ADD` -> ('PRELU', 'ADD'); `none` -> () (every op int8)."""
    names = tuple(name.strip().upper() for name in text.split(",") if name.strip())
    if text.strip().lower() == "none":
        return ()
    if not names or not all(name.replace("_", "").isalnum() for name in names):
        raise argparse.ArgumentTypeError(f"expected TFLite op names such as PRELU or PRELU,ADD (or none), got {text!r}")
    return names


def cmd_quantize(args) -> int:
    """Quantize stage models (dynamic, float16, int8, 16x8; selective int8) into a variant folder (chapter 08)."""
    from .quantize.variant import SELECTIVE_LAYERS, quantize_variant
    from .variants import read_variant

    if args.selective_layers is not None and not args.selective:
        raise ValueError("--selective-layers applies with --selective only")

    manifest = quantize_variant(args.out, args.mode, stages=args.stage, source=getattr(args, "from"),
                                calibration=args.calibration, selective=args.selective, float_op_names=args.float_ops,
                                selective_layers=SELECTIVE_LAYERS if args.selective_layers is None else args.selective_layers,
                                crop_count=args.calibration_count,
                                overwrite=args.overwrite, command=shlex.join(["holistic-lab", *args.argv]),
                                progress=not args.no_progress)
    variant = read_variant(manifest.parent)
    for stage, entry in variant.manifest["stages"].items():
        line = f"{stage}: {entry['kind']}, {variant.stages[stage].stat().st_size / 1e6:.2f} MB"
        if "int8" in entry["kind"] or "int16x8" in entry["kind"]:  # in float and hybrid modes every op is float
            kept = ", ".join(f"{op} x{n}" for op, n in entry["metrics"].get("float_ops", {}).items())
            line += f", ops kept float: {kept or 'none'}"
        print(line)
    print(f"variant {display_path(manifest.parent)}")
    return 0


def add_quantize_parser(sub) -> None:
    p = sub.add_parser("quantize", help=cmd_quantize.__doc__)
    p.add_argument("--stage", default="all", help="'all' or stage names, comma-separated (pose_detection, pose_landmark, "
                   "face_detection, face_landmark, hand_recrop, hand_landmark)")
    p.add_argument("--mode", required=True, help="float32, float16, dynamic, int8 or int16x8")
    p.add_argument("--selective", action="store_true",
                   help="int8: keep the output heads, and the layers with the largest quantization error "
                   "(QuantizationDebugger), in float")
    p.add_argument("--selective-layers", type=non_negative_int, default=None,
                   help="how many of the worst layers --selective keeps float beside the heads (default 3)")
    p.add_argument("--float-ops", type=op_names, default=None,
                   help="int8: TFLite ops kept float (default PRELU, which XNNPACK cannot run in int8; 'none' for none)")
    p.add_argument("--calibration", help="folder of photographs of people to calibrate int8 on "
                   "(default: the videos pack's frames and the hagrid_frames photographs)")
    p.add_argument("--calibration-count", type=positive_int, default=None,
                   help="real crops per stage for calibration (default 100; 16 in quick mode)")
    p.add_argument("--from", help="a variant folder to start from (its stage models, e.g. a pruned or fine-tuned variant)")
    p.add_argument("--out", required=True, help="the variant folder to write")
    p.add_argument("--overwrite", action="store_true", help="write into --out even if it holds files that are not a variant")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_quantize)


def cmd_prune(args) -> int:
    """Prune channels of one stage model, recover it by distillation, write a variant folder (chapter 07)."""
    from .prune.variant import check_prune_arguments, prune_variant
    from .variants import read_variant

    check_prune_arguments(args.stage, args.sparsity, args.criterion, args.round_to, args.steps, args.recover_epochs,
                          args.allocation)
    if args.crops is not None and args.criterion != "taylor" and not args.recover_epochs:
        raise ValueError("--crops applies with --criterion taylor or --recover-epochs 1 or more only")
    if args.learning_rate is not None and not args.recover_epochs:
        raise ValueError("--learning-rate applies with --recover-epochs 1 or more only")
    with output_lock(args.out, "--out"):  # a second run on the same variant is refused now, not after pruning
        manifest = prune_variant(args.out, args.stage, args.sparsity, criterion=args.criterion,
                                 round_to=args.round_to, allocation=args.allocation, steps=args.steps,
                                 recover_epochs=args.recover_epochs, source=getattr(args, "from"),
                                 crop_count=args.crops, overwrite=args.overwrite,
                                 **({} if args.learning_rate is None else {"learning_rate": args.learning_rate}),
                                 command=shlex.join(["holistic-lab", *args.argv]), progress=not args.no_progress)
    variant = read_variant(manifest.parent)
    metrics = variant.manifest["stages"][args.stage]["metrics"]
    print(f"{args.stage}: {metrics['params_before']:,} -> {metrics['params']:,} parameters, "
          f"{metrics['macs_before'] / 1e6:.0f} -> {metrics['macs'] / 1e6:.0f} M MACs, "
          f"{variant.stages[args.stage].stat().st_size / 1e6:.2f} MB, "
          f"{metrics['slot_sparsity']:.0%} of the prunable channels removed")
    for step in metrics["steps"]:
        losses = step.get("recovery", {}).get("val_loss")
        if losses:  # the distillation loss is about 1 when the student is as far off as the teacher's own spread
            print(f"step {step['step']}: recovery's validation loss {losses[0]:.3f} after epoch 1, "
                  f"{min(losses):.3f} at best of {len(losses)}")
    print(f"variant {display_path(manifest.parent)}")
    return 0


def add_prune_parser(sub) -> None:
    p = sub.add_parser("prune", help=cmd_prune.__doc__)
    p.add_argument("--stage", required=True, help="the stage to prune (pose_detection, pose_landmark, face_detection, "
                   "face_landmark, hand_recrop, hand_landmark)")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of each channel group removed, in [0, 1); "
                   "widths are rounded to --round-to, so a small group may lose less or nothing")
    p.add_argument("--criterion", default="l1", help="channel importance: l1, l2 (weight magnitude) or taylor "
                   "(gradients on real crops); default l1")
    p.add_argument("--round-to", type=int, default=16, help="keep a multiple of this many channels per group, "
                   "XNNPACK's tile (default 16; 1: no rounding)")
    p.add_argument("--allocation", default="uniform", help="uniform (every group by --sparsity, default) or global "
                   "(the least important channels of the whole model)")
    p.add_argument("--steps", type=int, default=1, help="prune in this many equal steps, recovering after each (default 1)")
    p.add_argument("--recover-epochs", type=int, default=0, help="epochs of distillation from the unpruned model "
                   "after each step (default 0: no recovery)")
    p.add_argument("--crops", type=positive_int, default=None,
                   help="real crops of the stage for Taylor scores and recovery (default 256; 24 in quick mode)")
    p.add_argument("--learning-rate", type=unit_fraction,
                   default=None, help="Adam's step for recovery (default 1e-4)")
    p.add_argument("--from", help="a variant folder to start from (its stage model and its other stages; its gesture "
                   "head is dropped when --stage is hand_landmark, the model the head sits on)")
    p.add_argument("--out", required=True, help="the variant folder to write")
    p.add_argument("--overwrite", action="store_true", help="write into --out even if it holds files that are not a variant")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prune)


worker_count = _number(int, "an integer from 1 to 3 (face, left hand, right hand)", lambda value: 1 <= value <= 3)


def thread_counts(text: str) -> tuple[int, ...]:
    """`1,2` or `1 2` -> (1, 2), each a valid thread count."""
    counts = tuple(thread_count(part) for part in text.replace(",", " ").split())
    if not counts:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1 or 1,2, got {text!r}")
    return counts


def stage_thread_pairs(text: str) -> tuple[tuple[str, int], ...]:
    """`pose_landmark=2,pose_detection=2` -> (("pose_landmark", 2), ("pose_detection", 2)); stage names are
    checked by the pipeline, counts here."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        stage, sep, count = part.partition("=")
        if not sep or not stage.strip():
            raise argparse.ArgumentTypeError(f"expected STAGE=N such as pose_landmark=2, got {part!r}")
        if stage.strip() in dict(pairs):
            raise argparse.ArgumentTypeError(f"stage {stage.strip()} is given twice in {text!r}")
        pairs.append((stage.strip(), thread_count(count.strip())))
    if not pairs:
        raise argparse.ArgumentTypeError(f"expected STAGE=N such as pose_landmark=2, got {text!r}")
    return tuple(pairs)


def bench_images(folder) -> list[Path]:
    """The image files of `--images` (a folder, not searched below), sorted."""
    from .images import IMAGE_SUFFIXES  # every suffix load_rgb reads

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--images {display_path(folder)} is not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--images {display_path(folder)} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def bench_clip(text: str | None):
    """--video: a clip path, `none`, or by default the videos pack's whole-body clip when it is here."""
    from .datasets import fixture_videos

    if text is not None:
        return None if text.strip().lower() == "none" else Path(text)
    try:
        return fixture_videos()["gesture_face_hands.mp4"]
    except (ValueError, OSError, KeyError):  # no videos pack on this machine: image mode only
        print("no --video given and the videos pack is not here: video mode skipped")
        return None


def cmd_bench(args) -> int:
    """MediaPipe and each variant side by side: speed, size, memory, MACs, accuracy -> report.json + report.html (chapter 09)."""
    from .bench.run import accuracy_set_names, parse_variants, run_bench
    from .settings import quick_or

    variants = parse_variants(args.variants.split(","))
    images = None if args.images is None else bench_images(args.images)
    clip = bench_clip(args.video)
    if clip is not None and not Path(clip).is_file():
        raise ValueError(f"--video {display_path(clip)} is not a file")
    earlier = None
    if args.compare is not None:
        from .bench.schema import read_report

        # read now: a bad old report is refused before the long run, and --out may be where it lies
        earlier = read_report(args.compare)
    sets = accuracy_set_names(args.accuracy)
    gestures = None
    if args.gestures is not None:
        from .gestures import class_items, parse_classes

        gestures = class_items(args.gestures, parse_classes(args.gesture_classes))
    elif args.gesture_classes is not None:
        raise ValueError("--gesture-classes applies with --gestures only")
    check_output_folder(args.out, "--out")  # a file, a dangling link, a folder that cannot be written: refused now
    kept = Path(args.out) / "report.json"
    with output_lock(kept, "--out"):
        was = kept.is_file() and (kept.stat().st_ino, kept.stat().st_mtime_ns)  # every save is a new file
        try:
            report = run_bench(variants, args.out, images=images, clip=clip,
                               threads=tuple(count for group in args.threads for count in group), workers=args.workers,
                               stage_threads=dict(args.stage_threads), gesture_items=gestures,
                               gesture_set="" if args.gestures is None else Path(args.gestures).name,
                               repeats=args.repeats or quick_or(10, 3), warmup=args.warmup,
                               video_frames=args.video_frames or quick_or(150, 30), accuracy_sets=sets,
                               memory=not args.no_memory, overwrite=args.overwrite,
                               command=shlex.join(["holistic-lab", *args.argv]), progress=not args.no_progress)
        except KeyboardInterrupt:
            if kept.is_file() and (kept.stat().st_ino, kept.stat().st_mtime_ns) != was:
                print(f"interrupted: what was measured is kept in {display_path(kept)}", file=sys.stderr)
            else:
                print(f"interrupted before anything was measured: {display_path(args.out)} is as it was", file=sys.stderr)
            return 130
    for row in report.latency:
        ratio = row.ratio_to_mediapipe
        versus = "" if ratio is None else f", {ratio.value:.2f}x MediaPipe's time [{ratio.low:.2f}, {ratio.high:.2f}]"
        fps = "" if row.frames_per_s is None else f", {row.frames_per_s:.1f} frames/s"
        print(f"{row.variant} ({row.mode}, {row.threads} thread{'s' * (row.threads > 1)}): median "
              f"{row.end_to_end.median_ms:.1f} ms, p90 {row.end_to_end.p90_ms:.1f} ms{versus}{fps}")
    print(f"report {display_path(Path(args.out) / 'report.json')} and {display_path(Path(args.out) / 'report.html')}")
    if args.compare is not None:
        from .bench.compare import compare_reports

        comparison = compare_reports(earlier, report)
        print("\n".join(comparison.lines()))
        return 1 if comparison.regressions else 0
    return 0


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help=cmd_bench.__doc__)
    p.add_argument("--variants", default="shipped", help="shipped and/or variant folders, comma-separated "
                   "(MediaPipe itself is always measured); default shipped")
    p.add_argument("--images", help="a folder of images to time on (default: the sample portraits and two "
                   "fixture images where both hands are found)")
    p.add_argument("--video", help="a clip for video mode (default: the videos pack's whole-body clip; 'none': skip)")
    p.add_argument("--video-frames", type=positive_int, default=None, help="frames of the clip (default 150; 30 quick)")
    p.add_argument("--threads", type=thread_counts, nargs="+", default=[(1,)],
                   help="TFLite threads per stage, one report row each: e.g. 1, or 1 2, or 1,2 (default 1)")
    p.add_argument("--stage-threads", type=stage_thread_pairs, default=(), metavar="STAGE=N,...",
                   help="threads for named stages instead of --threads, e.g. pose_landmark=2 (the pose stages run "
                   "alone before the face and hands, so a second core is free for them)")
    p.add_argument("--workers", type=worker_count, default=2,
                   help="threads for the face and hand branches (1-3, default 2: both cores, as MediaPipe)")
    p.add_argument("--repeats", type=positive_int, default=None, help="timed rounds over the images (default 10; 3 quick)")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--accuracy", default=None, help="fixture sets to score on, comma-separated, or 'none' "
                   "(default: every set of the fixture pack when it is here)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    p.add_argument("--gestures", help="class folders of held-out hand crops: each variant with a gesture head is "
                   "scored on them (accuracy with a 95%% interval)")
    p.add_argument("--gesture-classes", help="with --gestures: pick and rename class folders, as gestures eval's "
                   "--classes (e.g. hagrid8 or palm:open,fist:closed)")
    p.add_argument("--compare", help="an earlier report.json: flag regressions beyond noise (exit 1 if any)")
    p.add_argument("--out", required=True, help="folder for report.json and report.html")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out that are not reports")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)


TENSORBOARD_PORT = 6006
port_number = _number(int, "a port number from 1 to 65535", lambda value: 1 <= value <= 65535)


def cmd_serve(args) -> int:
    """Serve the web page, POST /predict, the model endpoints and the fine-tuning job API (chapter 10)."""
    from .serve import ServeSettings, create_app

    settings = ServeSettings(workspace=args.workspace, variant=args.variant, host=args.host, port=args.port,
                             token=args.token, pool_size=args.pool, num_threads=args.threads,
                             cache_size=args.cache, queue_limit=args.queue)
    if settings.variant is not None:
        from .variants import read_variant

        read_variant(settings.variant)  # a broken variant: one line and exit 2, before the server starts
    if settings.workspace.exists() and not settings.workspace.is_dir():
        raise ValueError(f"--workspace {display_path(settings.workspace)}: exists and is not a folder")
    settings.workspace.mkdir(parents=True, exist_ok=True)
    import uvicorn

    tensorboard = None
    if args.tensorboard:
        from .serve.tensorboard import start_tensorboard

        tensorboard = start_tensorboard(settings.workspace / "jobs", TENSORBOARD_PORT)
        print(f"TensorBoard on the jobs' logs: http://127.0.0.1:{TENSORBOARD_PORT}/")
    token_note = " (the model and job endpoints need the token)" if settings.token else ""
    print(f"serving holistic-lab on {settings.url}{token_note}; workspace {display_path(settings.workspace)}; "
          "Ctrl+C stops it", flush=True)
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    finally:
        if tensorboard is not None:
            tensorboard.terminate()
            tensorboard.wait(timeout=10)
    return 0


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help=cmd_serve.__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                   "any other address needs --token)")
    p.add_argument("--port", type=port_number, default=8080, help="port (default 8080)")
    p.add_argument("--workspace", default="workspace", help="folder of jobs, their logs and checkpoints, and the "
                   "variants a client may activate (under variants/); default ./workspace")
    p.add_argument("--variant", help="a variant folder to serve first (default: the shipped models)")
    p.add_argument("--token", help="API token the model and job endpoints require (or $HOLISTIC_LAB_TOKEN)")
    p.add_argument("--pool", type=positive_int, default=1, help="pipelines serving /predict at once (default 1)")
    p.add_argument("--queue", type=positive_int, default=8, help="requests that may wait for a pipeline; beyond "
                   "them /predict answers 503 (default 8)")
    p.add_argument("--cache", type=non_negative_int, default=64, help="results kept by (image sha256, variant); "
                   "0: off (default 64)")
    p.add_argument("--threads", type=thread_count, default=1, help="TFLite threads per pipeline stage (default 1)")
    p.add_argument("--tensorboard", action="store_true", help="also start TensorBoard on the jobs' logs "
                   f"(port {TENSORBOARD_PORT})")
    p.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="holistic-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help=cmd_info.__doc__)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("label", help=cmd_label.__doc__)
    p.add_argument("paths", nargs="*", help="image files, folders of images, video files")
    p.add_argument("--out", required=True, help="output .npz (resumed if it exists); with --workers, a folder of "
                   "shards (resumed if it exists)")
    p.add_argument("--workers", type=positive_int, help="label on Ray Data with this many worker processes, one "
                   "shard per video or image chunk (see README: Labelling a large corpus)")
    p.add_argument("--address", help="with --workers: HOST:PORT of a Ray cluster's head (`ray start --head`); "
                   "default: a local Ray in this process")
    p.add_argument("--merge", metavar="DIR", help="join a sharded folder (from --workers) into the one .npz --out")
    p.add_argument("--save-every", type=positive_float, default=10.0, help="checkpoint interval in seconds "
                   "(with --workers each shard is written when its unit finishes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace --out (even a file holistic-lab did not write) instead of resuming it")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("export-coco", help=cmd_export_coco.__doc__)
    p.add_argument("labels", help="labels .npz written by `holistic-lab label`")
    p.add_argument("--out", required=True, help="output COCO-WholeBody .json")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if holistic-lab did not write it")
    p.set_defaults(func=cmd_export_coco)

    p = sub.add_parser("to-tfrecord", help=cmd_to_tfrecord.__doc__)
    p.add_argument("source", help="COCO-WholeBody .json or teacher labels .npz")
    p.add_argument("--out", required=True, help="output .tfrecord (sharded as NAME-0000i-of-0000n beyond --shard-size)")
    p.add_argument("--image-root", help="folder of the JSON's images (default: the JSON's folder)")
    p.add_argument("--shard-size", type=positive_int, default=2000, help="records per shard")
    p.add_argument("--skip-bad", action="store_true", help="skip and report bad annotations instead of stopping")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files under --out that are not a TFRecord set holistic-lab wrote (never an input)")
    p.set_defaults(func=cmd_to_tfrecord)

    p = sub.add_parser("evaluate", help=cmd_evaluate.__doc__)
    p.add_argument("sets", nargs="*", help="fixture sets (default: all); data from $HOLISTIC_LAB_DATA or the registry")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("augment", help=cmd_augment.__doc__)
    p.add_argument("labels", help="labels .npz written by `holistic-lab label` (names are image paths)")
    p.add_argument("--out", required=True, help="output folder for the PNGs and labels.npz")
    p.add_argument("--preset", default="train", help="augmentation preset: none, light, train, geometric, low_light, occlusion")
    p.add_argument("--copies", type=positive_int, default=4, help="augmented copies per image (at most 1000)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (same seed, same output)")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out even if holistic-lab did not write them")
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("run", help=cmd_run.__doc__)
    p.add_argument("path", help="an image, a folder of images, or a video file (tracked frame to frame)")
    p.add_argument("--out", required=True, help="output .npz of HolisticResults")
    p.add_argument("--threads", type=thread_count, default=1, help="TFLite threads per stage")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a results .npz")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("convert", help=cmd_convert.__doc__)
    p.add_argument("model", help="a Holistic model name (e.g. hand_landmark_full) or a .tflite path")
    p.add_argument("--out", required=True, help="folder for <name>.keras (and <name>_float32.tflite)")
    p.add_argument("--round-trip", action="store_true", help="also write and verify a float32 .tflite of the Keras model")
    p.add_argument("--overwrite", action="store_true", help="replace files in --out even if they are not models")
    p.set_defaults(func=cmd_convert)

    add_finetune_parser(sub)
    add_gestures_parser(sub)
    add_quantize_parser(sub)
    add_prune_parser(sub)
    add_bench_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what made an output (a variant's manifest records it)
    try:
        return args.func(args)
    except ValueError as exc:
        _print_error(args.command, str(exc))
        return 2
    except OSError as exc:  # the disk or the system said no (full, read-only, permissions): one line, the path
        where = f"{display_path(exc.filename)}: " if exc.filename else ""
        _print_error(args.command, f"{where}{exc.strerror or exc}")
        return 1


def _print_error(command: str, message: str) -> None:
    """One line on stderr; a file name's undecodable bytes (surrogate escapes) print as \\xNN, never crash."""
    line = f"holistic-lab {command}: error: {message}"
    try:
        line = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name produces: show its code point
        line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
