"""Labelling a large corpus on Ray Data: work units spread over worker processes, one shard each.

`label_sharded(paths, out_dir, workers=N)` cuts the inputs into work units in input order:
each video file is one unit (its frames in order through one fresh tracking teacher, as
`label_paths` does), and runs of images are cut into chunks of `IMAGES_PER_UNIT` (a
static-image teacher each). Every unit runs through `label.label_files`, the loop
`label_paths` runs, in a Ray actor that holds one teacher at a time, so one worker process
labels one unit at a time. The driver writes each finished unit as `shard-<hash>.npz`
(`result.save_results`, atomic, with the unit's file list and skipped lines), the hash
taken from the unit's files; `manifest.json`, written before any work, keeps the units'
order, so `load_sharded(out_dir)` returns names and results in the order a single-process
run gives. A rerun skips every unit whose shard loads and lists the unit's files, and
redoes the rest; the folder is locked (`files.output_lock`) while a run writes it, and a
folder holding anything else is refused by name. `merge_sharded` writes one `.npz` that
every reader of `label`'s output takes (`holistic-lab label --merge DIR --out FILE.npz`).

Why Ray Data, not Apache Beam: ray[data] 2.60 installs beside this project's pins with
none of them moved (about 477 MB: ray, pyarrow, pandas), while no Beam release from 2.66
to 2.77 resolves beside them (Pillow 13, grpcio 1.85, crcmod without a wheel). Local mode
is `ray.init()` in this process, no JVM or job server; a cluster is `ray start --head` on
one machine and `ray start --address=HEAD:6379` on the others, then the same command with
`--address HEAD:6379` (Beam needs a Flink, Spark or Dataflow job server for that).
On a cluster the inputs must be readable at the same paths on every machine (a shared
file system) and the package installed there; only the driver writes the output folder.
MediaPipe's Python API has no thread setting (its XNNPACK inference runs one thread on
Linux desktop builds), so one worker per core is the natural count.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .batch import Batch, input_files, is_video, nothing_processed
from .files import atomic_write, check_output_folder, display_path, output_lock, read_json_object
from .label import label_files
from .result import check_results_output, load_results, load_skipped, save_results

IMAGES_PER_UNIT = 64
MANIFEST = "manifest.json"
SHARDED_FORMAT = "holistic-lab sharded labels 1"
# A worker process that dies (a lost machine, a crash in MediaPipe) is restarted and its unit retried this
# many times; Ray Data's default is forever, which a unit that always crashes its worker would never leave.
WORKER_RETRIES = 2
RAY_OBJECT_STORE_BYTES = 128 * 1024 * 1024  # shards are small; Ray's default takes 30% of memory


@dataclass
class Unit:
    """Files labelled together by one worker, and the shard that holds their labels."""
    files: list[Path]

    @property
    def shard(self) -> str:
        digest = hashlib.sha256("\n".join(map(str, self.files)).encode("utf-8", "surrogateescape")).hexdigest()
        return f"shard-{digest[:20]}.npz"


def work_units(files: list[Path], images_per_unit: int = IMAGES_PER_UNIT) -> list[Unit]:
    """`files` cut into units in order: each video alone, runs of images in chunks of `images_per_unit`."""
    units: list[Unit] = []
    images: list[Path] = []
    for path in files:
        if is_video(path):
            if images:
                units.append(Unit(images))
                images = []
            units.append(Unit([path]))
        else:
            images.append(path)
            if len(images) == images_per_unit:
                units.append(Unit(images))
                images = []
    if images:
        units.append(Unit(images))
    return units


def label_unit(files: list[str]) -> tuple[list[str], list, list[str]]:
    """(names, results, skipped lines) of one unit, labelled by `label.label_files` as `label_paths` would."""
    batch = label_files([Path(f) for f in files], Batch())
    return batch.names, batch.results, batch.skipped


class _UnitLabeller:
    """Ray Data's callable class: one row (one unit) in, its labels out as one pickled payload."""

    def __call__(self, batch: dict) -> dict:
        files = json.loads(str(batch["files"][0]))
        payload = pickle.dumps(label_unit(files))
        return {"index": batch["index"], "payload": np.array([payload], dtype=object)}


def label_sharded(paths, out_dir, workers: int = 2, address: str | None = None, progress: bool = True,
                  images_per_unit: int = IMAGES_PER_UNIT) -> Path:
    """Label every image and video frame under `paths` into shards in `out_dir`, resuming what is done.

    `workers` Ray actors (one process and one teacher each) label the units; with `address`
    the work goes to that Ray cluster, else to a local Ray started here (and shut down on
    return). A Ray already initialised in this process is used as it is and left running.
    Bad arguments (workers < 1, `out_dir` a file or a folder of other things, another run
    writing it, an address nothing answers at) are a ValueError before any work; a corpus
    where nothing at all could be labelled is a ValueError after. Returns `out_dir`.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if isinstance(images_per_unit, bool) or not isinstance(images_per_unit, int) or images_per_unit < 1:
        raise ValueError(f"images_per_unit must be an integer >= 1, got {images_per_unit!r}")
    files = input_files(paths)
    out_dir = check_output_folder(out_dir)
    if out_dir.suffix.lower() == ".npz" and not out_dir.is_dir():
        raise ValueError(f"output folder {display_path(out_dir)}: sharded labelling writes a folder of shards; "
                         "name a folder (its shards join into one .npz with `holistic-lab label --merge`)")
    _check_only_ours(out_dir)
    for path in files:
        if out_dir.resolve() in path.parents:
            raise ValueError(f"output folder {display_path(out_dir)} holds the input {display_path(path)}; "
                             "choose another folder")
    if address is not None:
        _check_reachable(address)
    units = work_units(files, images_per_unit)
    with output_lock(out_dir / MANIFEST, what="output folder"):
        _write_manifest(out_dir, units)
        todo = {index for index, unit in enumerate(units) if not _shard_complete(out_dir, unit)}
        labelled, skipped = _run_units(out_dir, units, todo, workers, address, progress)
    for line in skipped:
        print(f"skipped {line}")
    if not labelled:
        raise nothing_processed(skipped)
    return out_dir


def load_sharded(out_dir) -> tuple[list[str], list]:
    """(names, results) of a sharded labelling folder, in the order a single-process run gives;
    a missing or unreadable shard (a run not finished) is a ValueError naming it."""
    out_dir = Path(out_dir)
    names, results = [], []
    for unit in _read_manifest(out_dir):
        shard = out_dir / unit.shard
        if not shard.is_file():
            raise ValueError(f"{display_path(shard)} is missing: the labelling run into {display_path(out_dir)} "
                             "has not finished; run it again to complete it")
        unit_names, unit_results = load_results(shard)
        names += unit_names
        results += unit_results
    return names, results


def sharded_skipped(out_dir) -> list[str]:
    """The skipped lines of every shard of `out_dir`, in unit order."""
    out_dir = Path(out_dir)
    return [line for unit in _read_manifest(out_dir) for line in load_skipped(out_dir / unit.shard)]


def _shard_summary(shard: Path) -> tuple[int, list[str]]:
    """(items labelled, skipped lines) of a shard already checked by `_shard_complete`, its arrays left unread."""
    with np.load(shard, allow_pickle=False) as data:
        return data["names"].shape[0], [str(line) for line in data["skipped"]]


def merge_sharded(out_dir, out, overwrite: bool = False) -> Path:
    """Write a sharded folder's labels (and skipped lines) into one results `.npz`, as `label_paths` writes."""
    names, results = load_sharded(out_dir)
    out = check_results_output(out, overwrite=overwrite)
    with output_lock(out):
        return save_results(out, results, names, overwrite=overwrite,
                            skipped=np.array(sharded_skipped(out_dir), dtype=str))


def _check_only_ours(out_dir: Path) -> None:
    if not out_dir.is_dir():
        return
    for entry in sorted(out_dir.iterdir()):
        name = entry.name
        ours = (name == MANIFEST or (name.startswith("shard-") and name.endswith(".npz"))
                or name.startswith(".partial-") or name == f".{MANIFEST}.lock")
        if not ours:
            raise ValueError(f"output folder {display_path(out_dir)} holds {display_path(entry)}, which sharded "
                             "labelling did not write; choose an empty or new folder")


def _check_reachable(address: str) -> None:
    """Refuse at once an address nothing answers at (Ray itself retries for a minute or more)."""
    if address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise ValueError(f"--address {address}: no Ray head answers there ({reason}); expected HOST:PORT of a "
                         "machine that ran `ray start --head` (port 6379 by default)") from None


def _write_manifest(out_dir: Path, units: list[Unit]) -> None:
    manifest = {"format": SHARDED_FORMAT,
                "units": [{"shard": unit.shard, "files": [str(f) for f in unit.files]} for unit in units]}
    text = json.dumps(manifest, indent=1, ensure_ascii=True)
    atomic_write(out_dir / MANIFEST, lambda temporary: temporary.write_text(text))


def _read_manifest(out_dir: Path) -> list[Unit]:
    path = out_dir / MANIFEST
    if not path.is_file():
        raise ValueError(f"{display_path(out_dir)} is not a sharded labelling folder: it has no {MANIFEST}")
    manifest = read_json_object(path, "a sharded labelling manifest")
    if manifest.get("format") != SHARDED_FORMAT or not isinstance(manifest.get("units"), list):
        raise ValueError(f"{display_path(path)} is not a sharded labelling manifest ({SHARDED_FORMAT!r})")
    units = [Unit([Path(f) for f in entry["files"]]) for entry in manifest["units"]]
    for unit, entry in zip(units, manifest["units"]):
        if unit.shard != entry.get("shard"):
            raise ValueError(f"{display_path(path)}: shard {entry.get('shard')!r} does not match its files")
    return units


def _shard_complete(out_dir: Path, unit: Unit) -> bool:
    """A shard counts as done only if it loads and lists exactly its unit's files."""
    shard = out_dir / unit.shard
    if not shard.is_file():
        return False
    try:
        load_results(shard)
        with np.load(shard, allow_pickle=False) as data:
            listed = [str(f) for f in data["files"]] if "files" in data.files else None
    except (ValueError, OSError, KeyError):
        return False
    return listed == [str(f) for f in unit.files]


def _save_shard(out_dir: Path, unit: Unit, names, results, skipped) -> None:
    save_results(out_dir / unit.shard, results, names, overwrite=True,
                 files=np.array([str(f) for f in unit.files], dtype=str), skipped=np.array(skipped, dtype=str))


def _run_units(out_dir: Path, units: list[Unit], todo: set[int], workers: int, address: str | None,
               progress: bool) -> tuple[int, list[str]]:
    """Label the units numbered `todo` on Ray, writing each shard as it arrives; (items labelled, skipped lines)
    over all units, done before or now, in unit order."""
    summaries = {index: _shard_summary(out_dir / unit.shard) for index, unit in enumerate(units) if index not in todo}
    bar = tqdm(desc="labelling", unit="unit", total=len(units), initial=len(units) - len(todo),
               disable=not progress)
    try:
        if todo:
            with _ray_session(workers, address) as ray:
                cpus = int(ray.cluster_resources().get("CPU", 0))
                if cpus < workers:  # the actor pool would wait for cores that never come
                    raise ValueError(f"workers {workers}: the Ray cluster has {cpus} CPUs; ask for at most {cpus} "
                                     "workers, or add machines with `ray start --address`")
                rows = [{"index": index, "files": json.dumps([str(f) for f in units[index].files])}
                        for index in sorted(todo)]
                with warnings.catch_warnings():
                    # Ray 2.60 calls these two remote arguments deprecated and names no replacement
                    # for them; without them a unit that crashes its worker is retried for ever
                    warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                    labelled = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                        _UnitLabeller, batch_size=1, batch_format="numpy", num_cpus=1,
                        compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))),
                        max_restarts=WORKER_RETRIES, max_task_retries=WORKER_RETRIES)
                frames = sum(count for count, _ in summaries.values())
                for row in labelled.iter_rows():
                    names, results, skipped = pickle.loads(row["payload"])
                    index = int(row["index"])
                    _save_shard(out_dir, units[index], names, results, skipped)
                    summaries[index] = len(names), skipped
                    frames += len(names)
                    bar.set_postfix(frames=frames, refresh=False)
                    bar.update(1)
    finally:
        bar.close()
    return (sum(count for count, _ in summaries.values()),
            [line for index in sorted(summaries) for line in summaries[index][1]])


@contextlib.contextmanager
def _ray_session(workers: int, address: str | None):
    """Ray, started here (shut down on exit) unless this process already runs it (left as it is)."""
    import ray
    import ray.data  # its import sets up its loggers, so they are quietened after it

    quiet = logging.getLogger("ray.data")  # its INFO and once-only notes would interleave with our bar
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user session: no token warning
        local = {} if address else dict(num_cpus=workers, object_store_memory=RAY_OBJECT_STORE_BYTES)
        # "local": a fresh Ray in this process, even where a `ray start` on this machine left its address behind
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, logging_level="WARNING", **local)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        yield ray
    finally:
        if started:
            ray.shutdown()
        quiet.setLevel(level)
