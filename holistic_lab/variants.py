"""Model variants: a folder of replacement stage models and the manifest that says what they are.

The course's variant contract (chapters 05-10): a variant is a folder holding `manifest.json`
(format and version, the variant's name, what made it: command, config, source variant, date,
library versions; per stage: file, sha256, kind such as float32 / float16 / int8 /
int8-selective / pruned-0.3, and measured metrics once benchmarked) and one `.tflite` per
stage it replaces, named by the stage (`pose_detection.tflite`, ..., `hand_landmark.tflite`).
A stage the manifest does not list runs the shipped model. A variant with a gesture head also
holds `gesture/` (a `holistic_lab.gestures` classifier folder; its model is the hand landmark
model plus the head, so it runs as the hand stage). Every transforming command writes
one with `write_variant`; `read_variant` (and `HolisticPipeline.from_variant`) refuses a
manifest whose checksums do not match its files, naming the file.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np


from .files import atomic_write, check_output_folder, display_path, output_lock, read_json_object, read_manifest, sha256_file
from .mediapipe_models import installed_versions, model_path
from .native_logs import filtered_native_stderr, import_tensorflow
from .pipeline.gesture import MANIFEST as GESTURE_MANIFEST, MODEL_FILE as GESTURE_MODEL_FILE, read_gesture_model
from .pipeline.holistic import STAGE_MODELS

FORMAT, VERSION = "holistic-lab-variant", 1
MANIFEST = "manifest.json"
# stage name -> (HolisticPipeline argument, shipped model it replaces): the one table between them
STAGES = {argument.removesuffix("_model"): (argument, shipped) for argument, shipped in STAGE_MODELS.items()}
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of every .tflite
GESTURE_FOLDER = "gesture"  # a variant's gesture classifier (holistic_lab.gestures), when it has one
MAX_MANIFEST_BYTES = 1 << 22  # a few KB of stages and metrics; read no further (a runaway or hostile file)


@dataclass(frozen=True)
class Variant:
    """A variant read back and checked: its name, its manifest, and stage -> model file."""
    name: str
    folder: Path
    manifest: dict
    stages: dict[str, Path]
    gesture: Path | None = None   # its gesture classifier folder, if it has one

    def pipeline_kwargs(self) -> dict[str, str]:
        """HolisticPipeline constructor arguments that swap in this variant's stage models. A
        gesture classifier carries the hand model it was trained on, so it replaces the hand
        landmark stage (one pass per hand gives landmarks and gesture)."""
        kwargs = {STAGES[stage][0]: str(path) for stage, path in self.stages.items()}
        if self.gesture is not None:
            kwargs.pop(STAGES["hand_landmark"][0], None)
            kwargs["gesture_model"] = str(self.gesture)
        return kwargs


def stage_file(stage: str) -> str:
    return f"{stage}.tflite"


def sha256(path: Path) -> str:
    return sha256_file(path)


def _check_stage(stage: str, where: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"{where}: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")


def load_interpreter(model: bytes, num_threads: int = 1):
    """`model` (flatbuffer bytes) in tf.lite.Interpreter, tensors allocated, start-up noise filtered."""
    tf = import_tensorflow()
    with warnings.catch_warnings(), filtered_native_stderr():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter warns it moves to ai_edge_litert in TF 2.20
        interpreter = tf.lite.Interpreter(model_content=model, num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


def _signature(interpreter) -> tuple:
    """(inputs, outputs) of a loaded model as (shape, dtype name) pairs, outputs in the order the
    pipeline reads them: a quantized model with int8 inputs or outputs does not fit a float32 slot."""
    return tuple(tuple((tuple(int(n) for n in d["shape"]), np.dtype(d["dtype"]).name) for d in details)
                 for details in (interpreter.get_input_details(), interpreter.get_output_details()))


@functools.cache
def shipped_signature(stage: str) -> tuple:
    return _signature(load_interpreter(model_path(STAGES[stage][1]).read_bytes()))


def stage_model(stage: str, model: bytes, where: str) -> bytes:
    """`model` ready to store in `stage`'s slot; a ValueError naming `where` if it is not a TFLite
    model whose inputs and outputs are those of the stage's shipped model."""
    from .convert import outputs_in_signature_order  # Keras: writing needs it, from_variant does not

    if model[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{where}: not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier at bytes 4..8)")
    try:
        model = outputs_in_signature_order(model)
        signature = _signature(load_interpreter(model))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{where}: the TFLite interpreter cannot load it ({exc})") from exc
    shipped = shipped_signature(stage)
    if signature != shipped:
        raise ValueError(f"{where}: inputs {signature[0]} and outputs {signature[1]} do not fit the {stage} stage; "
                         f"its shipped model {STAGES[stage][1]} has inputs {shipped[0]} and outputs {shipped[1]}")
    return model


def _is_earlier_variant(folder: Path) -> bool:
    """Whether `folder` holds only what `write_variant` writes (so rewriting it loses nothing of the user's)."""
    lock = f".{MANIFEST}.lock"  # a concurrent writer's: output_lock refuses that run by name
    ours = {MANIFEST} | {stage_file(stage) for stage in STAGES}
    entries = [entry for entry in folder.iterdir() if entry.name != lock]
    if not entries:
        return True
    gesture = folder / GESTURE_FOLDER
    if gesture.is_dir() and not gesture.is_symlink():
        if {entry.name for entry in gesture.iterdir()} - {GESTURE_MANIFEST, GESTURE_MODEL_FILE, f".{GESTURE_MANIFEST}.lock"}:
            return False
        entries = [entry for entry in entries if entry.name != GESTURE_FOLDER]
        if not entries:  # a classifier saved here, its variant manifest not yet written
            return True
    try:
        manifest = read_json_object(folder / MANIFEST, "a variant manifest", MAX_MANIFEST_BYTES)
    except ValueError:
        return False
    return (manifest.get("format") == FORMAT
            and all(entry.name in ours and not entry.is_symlink() and entry.is_file() for entry in entries))


def check_variant_output(folder, overwrite: bool = False) -> Path:
    """`folder` if `write_variant` may write there (new, empty, an earlier variant, or anything
    with `overwrite`); otherwise a ValueError. Commands call it before their work starts."""
    folder = check_output_folder(folder, "variant folder")
    if folder.is_dir() and not overwrite and not _is_earlier_variant(folder):
        raise ValueError(f"variant folder {display_path(folder)} holds files that are not a holistic-lab variant; "
                         "choose an empty or new folder, or pass --overwrite to write beside them")
    if (folder / GESTURE_FOLDER).is_symlink():  # even with overwrite: a classifier there would replace the link's files
        raise ValueError(f"variant folder {display_path(folder)}: {GESTURE_FOLDER}/ is a symbolic link; "
                         "remove it or choose another folder")
    return folder


def write_variant(folder, stages: dict, name: str, made_by: dict, source=None,
                  kinds: str | dict[str, str] = "float32", metrics: dict[str, dict] | None = None,
                  overwrite: bool = False, gesture=None) -> Path:
    """Write a variant folder: each stage's model (bytes or a .tflite path), then `manifest.json`.

    made_by: {"command": ..., "config": {...}}, what made it; source: the variant it started
    from (None: the shipped models); kinds: one kind for every stage or stage -> kind;
    metrics: stage -> measured metrics; gesture: a saved gesture classifier folder, copied into
    the variant's `gesture/` (then `stages` may be empty). Everything is checked before anything
    is written.
    A folder holding anything but an earlier variant is refused unless `overwrite`, and even
    then its other files are kept. Returns the manifest's path.
    """
    folder = check_output_folder(folder, "variant folder")
    classifier = None if gesture is None else read_gesture_model(gesture)
    if not stages and classifier is None:
        raise ValueError(f"variant {display_path(folder)}: no stage models given; expected some of {', '.join(STAGES)}")
    kinds = dict.fromkeys(stages, kinds) if isinstance(kinds, str) else dict(kinds)
    metrics = dict(metrics or {})
    for stage in [*stages, *kinds, *metrics]:
        _check_stage(stage, f"variant {display_path(folder)}")
    missing_kinds = [stage for stage in stages if not isinstance(kinds.get(stage), str)]
    if missing_kinds or set(kinds) - set(stages) or set(metrics) - set(stages):
        raise ValueError(f"variant {display_path(folder)}: kinds and metrics must name only the stages given "
                         f"({', '.join(stages)}), every stage a kind such as 'float32' or 'int8'")
    if not isinstance(name, str) or not name:
        raise ValueError(f"variant {display_path(folder)}: name must be a non-empty string, got {name!r}")
    if not isinstance(made_by, dict) or not isinstance(made_by.get("command"), str):
        raise ValueError(f"variant {display_path(folder)}: made_by must be a dict with a 'command' string, got {made_by!r}")
    models = {}
    for stage, payload in stages.items():
        where = f"{stage} model {display_path(payload) if isinstance(payload, (str, os.PathLike)) else '(bytes)'}"
        try:
            model = Path(payload).read_bytes() if isinstance(payload, (str, os.PathLike)) else bytes(payload)
        except OSError as exc:
            raise ValueError(f"{where}: cannot read it ({exc.strerror})") from exc
        models[stage] = stage_model(stage, model, where)
    manifest = {
        "format": FORMAT, "version": VERSION, "name": name,
        "made_by": {**made_by, "source": None if source is None else str(source),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "versions": installed_versions()},
        "stages": {stage: {"file": stage_file(stage), "sha256": hashlib.sha256(model).hexdigest(),
                           "kind": kinds[stage], "metrics": metrics.get(stage, {})}
                   for stage, model in models.items()},
    }
    gesture_files = {}
    if classifier is not None:
        manifest["gesture"] = {"folder": GESTURE_FOLDER, "sha256": classifier.manifest["sha256"],
                               "labels": list(classifier.labels)}
        gesture_files = {name: (classifier.folder / name).read_bytes() for name in (GESTURE_MODEL_FILE, GESTURE_MANIFEST)}
    try:  # before anything is written
        text = json.dumps(manifest, indent=2)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"variant {display_path(folder)}: made_by cannot be written as JSON ({exc})") from exc
    for file in [MANIFEST, *map(stage_file, models), *([GESTURE_FOLDER] if gesture_files else []),
                 *(f"{GESTURE_FOLDER}/{name}" for name in gesture_files)]:
        if (folder / file).is_symlink():  # writing through it would replace a file outside the folder
            raise ValueError(f"variant folder {display_path(folder)}: {file} is a symbolic link; "
                             "remove it or choose another folder")
    with output_lock(folder / MANIFEST, "variant manifest") as manifest_path:
        check_variant_output(folder, overwrite)
        for stage, model in models.items():
            atomic_write(folder / stage_file(stage), lambda path, model=model: path.write_bytes(model))
        if gesture_files:
            (folder / GESTURE_FOLDER).mkdir(exist_ok=True)
            for name, payload in gesture_files.items():  # the model before the manifest that names its checksum
                atomic_write(folder / GESTURE_FOLDER / name, lambda path, payload=payload: path.write_bytes(payload))
        return atomic_write(manifest_path, lambda path: path.write_text(text + "\n"))


def carried_stages(source, replaced: str | None = None) -> tuple[dict, dict, dict]:
    """(stage -> model bytes, stage -> kind, stage -> metrics) of the variant `source` (None: no
    stages), without the stage `replaced`: what a command that started from it passes on."""
    stages, kinds, metrics = {}, {}, {}
    if source is not None:
        earlier = read_variant(source)
        for stage, path in earlier.stages.items():
            if stage != replaced:
                entry = earlier.manifest["stages"][stage]
                stages[stage], kinds[stage] = path.read_bytes(), entry.get("kind", "float32")
                metrics[stage] = entry.get("metrics", {})
    return stages, kinds, metrics


def read_variant(folder) -> Variant:
    """Read and check a variant folder; a missing, malformed or stale manifest is a ValueError naming it."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    where = f"variant {display_path(manifest_path)}"
    manifest = read_manifest(manifest_path, where, "a variant manifest", FORMAT, VERSION, MAX_MANIFEST_BYTES,
                             "no manifest; expected a folder written by a holistic-lab command", noun="manifest")
    entries = manifest.get("stages")
    if not isinstance(entries, dict) or not isinstance(manifest.get("name"), str):
        raise ValueError(f"{where}: expected a 'name' string and a 'stages' mapping")
    stages = {}
    for stage, entry in entries.items():
        _check_stage(stage, where)
        if not isinstance(entry, dict) or entry.get("file") != stage_file(stage):
            raise ValueError(f"{where}: stage {stage} must name its file {stage_file(stage)!r}, "
                             f"got {entry.get('file') if isinstance(entry, dict) else entry!r}")
        path = folder / stage_file(stage)
        if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
            raise ValueError(f"{where}: {display_path(path)} is a symbolic link; a variant holds its own files")
        if not path.is_file():
            raise ValueError(f"{where}: {display_path(path)} is missing")
        actual = sha256(path)
        if actual != entry.get("sha256"):
            raise ValueError(f"{display_path(path)}: sha256 {actual} but the manifest says {entry.get('sha256')}: "
                             "changed since the variant was written")
        stages[stage] = path
    return Variant(manifest["name"], folder, manifest, stages, _read_gesture(folder, manifest.get("gesture"), where))


def _read_gesture(folder: Path, entry, where: str) -> Path | None:
    """The variant's checked gesture classifier folder, or None if the manifest names none."""
    if entry is None:
        return None
    if not isinstance(entry, dict) or entry.get("folder") != GESTURE_FOLDER:
        raise ValueError(f"{where}: 'gesture' must name the folder {GESTURE_FOLDER!r}, got {entry!r}")
    path = folder / GESTURE_FOLDER
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{where}: {display_path(path)} is a symbolic link; a variant holds its own files")
    classifier = read_gesture_model(path)
    if classifier.manifest.get("sha256") != entry.get("sha256"):
        raise ValueError(f"{display_path(path)}: its model's sha256 {classifier.manifest.get('sha256')} is not the "
                         f"one the variant's manifest names ({entry.get('sha256')}): changed since it was written")
    if list(classifier.labels) != entry.get("labels"):  # gesture.json's labels are not under any checksum
        raise ValueError(f"{display_path(path / GESTURE_MANIFEST)}: labels {list(classifier.labels)} are not the ones "
                         f"the variant's manifest names ({entry.get('labels')}): changed since it was written")
    return path
