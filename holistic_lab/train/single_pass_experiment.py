"""The single-pass experiment end to end: label, train, save (`make_single_pass`); then
`single_pass_eval.measure_single_pass` puts it beside the cascade.

    report = make_single_pass("out/single_pass")          # quick mode: a few frames, a few steps
    print(report)                                         # items, steps, wall time, files

Sizes follow `settings.QUICK` (HOLISTIC_LAB_QUICK=1): quick trains a handful of steps on a
handful of frames, enough to show the machinery; full mode labels more frames and trains as
long as a CPU allows (`FULL`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..settings import quick_or

# full: about 25 minutes of training on a shared 2-core CPU (3 s a step of 8)
FULL = {"frames_per_video": 24, "limit_per_source": None, "epochs": 16, "steps_per_epoch": 30, "batch_size": 8}
QUICK = {"frames_per_video": 2, "limit_per_source": 2, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4}


@dataclass
class SinglePassReport:
    folder: str
    items: int
    labelling_s: float
    training_s: float
    steps: int
    batch_size: int
    final_loss: float
    files: dict

    def __str__(self) -> str:
        return (f"single pass: {self.items} cascade-labelled images, {self.steps} steps of {self.batch_size} "
                f"({self.training_s:.0f} s training, {self.labelling_s:.0f} s labelling), final loss "
                f"{self.final_loss:.2f}; {', '.join(Path(p).name for p in self.files.values())} in {self.folder}")


def make_single_pass(folder, settings: dict | None = None, learning_rate: float = 1e-3, preset: str = "train",
                     overwrite: bool = False, progress: bool = False) -> SinglePassReport:
    """Label the training images with the cascade, train the single-pass heads (`fit`), save
    `single_pass.keras`, `single_pass.tflite` and `report.json` in `folder`."""
    import keras

    from ..convert.files import save_keras
    from ..files import atomic_write, check_output_file
    from .single_pass import build_single_pass, save_single_pass, single_pass_paths, train_single_pass
    from .single_pass_data import distillation_items, single_pass_dataset

    settings = {**quick_or(FULL, QUICK), **(settings or {})}
    unknown = set(settings) - set(FULL)
    if unknown:
        raise ValueError(f"settings: unknown keys {sorted(unknown)}; expected some of {sorted(FULL)}")
    # every output checked before the work: a refusal after an hour of training would waste it
    paths = single_pass_paths(folder, overwrite)
    report_path = check_output_file(Path(folder) / "report.json", overwrite=overwrite, kind="a single-pass report")
    start = time.perf_counter()
    items = distillation_items(settings["frames_per_video"], settings["limit_per_source"], progress=progress)
    labelling_s = time.perf_counter() - start
    model = build_single_pass()
    # the model as it is after each epoch, so a run stopped early (a shared CPU) still leaves one
    checkpoint = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: save_keras(model, paths["keras"]))
    run = train_single_pass(model, single_pass_dataset(items, settings["batch_size"], preset),
                            epochs=settings["epochs"], steps_per_epoch=settings["steps_per_epoch"],
                            learning_rate=learning_rate, callbacks=[checkpoint], verbose=2 if progress else 0)
    files = {kind: str(path) for kind, path in save_single_pass(model, folder, overwrite=overwrite).items()}
    report = SinglePassReport(str(folder), len(items), labelling_s, run.wall_s,
                              settings["epochs"] * settings["steps_per_epoch"], settings["batch_size"],
                              run.history["loss"][-1], files)
    text = json.dumps({**asdict(report), "settings": settings, "learning_rate": learning_rate, "preset": preset,
                       "history": run.history}, indent=1)
    atomic_write(report_path, lambda target: Path(target).write_text(text))
    return report
