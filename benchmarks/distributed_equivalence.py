"""Two loopback workers train the same model as one worker with the same global batch and seed.

    python benchmarks/distributed_equivalence.py --out equivalence.json [--epochs 6] [--batch-size 4]

The same quick fine-tuning job (face_mesh on the sample portraits with their teacher labels, each
portrait written `--copies` times into one TFRecord set, the "train" augmentation preset) runs
once as 1 worker with batch B and once as 2 workers of one MultiWorkerMirroredStrategy cluster on
free loopback ports with B/2 each. Each worker saves its final student weights; the JSON holds
both runs' per-epoch loss and val_loss curves (the chief's log.csv), the largest |difference|
between the curves, the largest |difference| between the 2 workers' final weights (must be 0)
and between the 1-worker and the 2-worker model. Those two runs share the data by DATA (the same
seeded stream cut batch by batch). A third run, 2 workers with `shard_by="file"` on the same
images written as 2 shards, shows the other way: each worker reads and augments its own shard, so
its curve is its own, but the all-reduce still keeps the 2 workers' weights identical. Seconds
are wall time on whatever machine runs it.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WEIGHTS = "weights_worker{index}.npz"


def write_set(folder: Path, copies: int, shards: int = 1) -> Path:
    """The sample portraits with their teacher labels, each `copies` times, as a TFRecord set of
    `shards` files (the name they share)."""
    from holistic_lab.datasets import sample_image, sample_labels, sample_names
    from holistic_lab.formats import tfrecord
    from holistic_lab.formats.sample import Sample

    names = [name for _ in range(copies) for name in sample_names()]
    samples = [Sample.from_result(sample_labels(name), f"{name}_{i}.jpg") for i, name in enumerate(names)]
    path = folder / f"faces_{shards}.tfrecord"
    tfrecord.write(path, samples, images=[sample_image(name) for name in names], shard_size=-(-len(names) // shards))
    return path


def worker(arguments) -> int:
    """One worker (TF_CONFIG from the environment, or none): fine-tune, save the final weights."""
    from holistic_lab.train import FineTuneConfig, distributed
    from holistic_lab.train.loop import finetune

    config = FineTuneConfig(dataset_path=arguments.data, module="face_mesh", epochs=arguments.epochs,
                            shard_by=arguments.shard_by,
                            batch_size=arguments.batch_size, validation_split=0.5,
                            checkpoint_dir=arguments.checkpoint_dir, preset="train")
    run = finetune(config, progress=False, seed=arguments.seed, steps_per_epoch=arguments.steps_per_epoch)
    index = 0 if distributed.environment_cluster() is None else distributed.environment_cluster().index
    weights = {f"{layer.name}/{i}": w for layer in run.model.layers for i, w in enumerate(layer.get_weights())}
    import numpy as np

    np.savez(Path(arguments.weights_dir) / WEIGHTS.format(index=index), **weights)
    return 0


def log_curves(checkpoint_dir: Path) -> dict[str, list[float]]:
    with open(checkpoint_dir / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {name: [float(row[name]) for row in rows] for name in ("loss", "val_loss")}


def load_weights(path: Path) -> dict:
    import numpy as np

    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def max_difference(a: dict, b: dict) -> float:
    import numpy as np

    if set(a) != set(b):
        raise ValueError("the two models' weights have different names")
    return max(float(np.max(np.abs(a[name] - b[name]))) for name in a)


def run(workers: int, batch_size: int, data: Path, work: Path, arguments, shard_by: str = "data") -> dict:
    """One run of `workers` workers (per-worker batch `batch_size`, the data shared `shard_by`);
    its curves and weights."""
    from holistic_lab.train.distributed import run_local_workers

    folder = work / f"{workers}_workers_by_{shard_by}"
    folder.mkdir(parents=True)
    command = [sys.executable, __file__, "--worker", "--data", str(data), "--checkpoint-dir",
               str(folder / "checkpoints"), "--weights-dir", str(folder), "--epochs", str(arguments.epochs),
               "--batch-size", str(batch_size), "--seed", str(arguments.seed), "--shard-by", shard_by]
    if arguments.steps_per_epoch:
        command += ["--steps-per-epoch", str(arguments.steps_per_epoch)]
    started = time.perf_counter()
    code = run_local_workers(command, workers, timeout_s=arguments.timeout) if workers > 1 else \
        __import__("subprocess").run(command, timeout=arguments.timeout).returncode
    if code != 0:
        raise RuntimeError(f"the {workers}-worker run failed with exit code {code}")
    return {"workers": workers, "per_worker_batch": batch_size, "shard_by": shard_by, "seconds": time.perf_counter() - started,
            **log_curves(folder / "checkpoints"),
            "weights": [load_weights(folder / WEIGHTS.format(index=i)) for i in range(workers)]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the JSON here")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4, help="the global batch (even: 2 workers take half)")
    parser.add_argument("--copies", type=int, default=4, help="copies of each sample portrait in the set")
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a run may take before it is stopped")
    parser.add_argument("--work", help="folder for the set and both runs' checkpoints (default: a temporary one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--data", "--checkpoint-dir", "--weights-dir", "--shard-by"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        return worker(arguments)
    if arguments.batch_size < 2 or arguments.batch_size % 2:
        parser.error("--batch-size: the global batch must be even, so 2 workers take equal halves")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(arguments.work or scratch)
        data = write_set(work, arguments.copies)
        one = run(1, arguments.batch_size, data, work, arguments)
        two = run(2, arguments.batch_size // 2, data, work, arguments)
        by_file = run(2, arguments.batch_size // 2, write_set(work, arguments.copies, shards=2), work, arguments,
                      shard_by="file")
    result = {"job": {"module": "face_mesh", "epochs": arguments.epochs, "global_batch": arguments.batch_size,
                      "images": 2 * arguments.copies, "seed": arguments.seed,
                      "steps_per_epoch": arguments.steps_per_epoch},
              "one_worker": {k: v for k, v in one.items() if k != "weights"},
              "two_workers": {k: v for k, v in two.items() if k != "weights"},
              "max_loss_difference": max(abs(a - b) for a, b in zip(one["loss"], two["loss"])),
              "max_val_loss_difference": max(abs(a - b) for a, b in zip(one["val_loss"], two["val_loss"])),
              "max_weight_difference_between_workers": max_difference(*two["weights"]),
              "max_weight_difference_one_vs_two": max_difference(one["weights"][0], two["weights"][0]),
              "two_workers_by_file": {k: v for k, v in by_file.items() if k != "weights"},
              "max_weight_difference_between_workers_by_file": max_difference(*by_file["weights"])}
    text = json.dumps(result, indent=2)
    print(text)
    if arguments.out:
        Path(arguments.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
