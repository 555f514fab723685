"""`train.loop.finetune` on the real face model and a two-image TFRecord set: what it leaves in
checkpoint_dir, what each method trains, and an interrupted run resumed where it stopped."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from holistic_lab.convert import tflite_to_keras  # noqa: E402
from holistic_lab.mediapipe_models import model_path  # noqa: E402
from holistic_lab.train import CHECKPOINT_MARKER, FineTuneConfig, freeze  # noqa: E402
from holistic_lab.train import loop  # noqa: E402
from holistic_lab.train.loop import finetune  # noqa: E402

QUICK = {"module": "face_mesh", "batch_size": 2, "validation_split": 0.5}


def quick_config(data_path, checkpoint_dir, **fields) -> FineTuneConfig:
    return FineTuneConfig(dataset_path=str(data_path), checkpoint_dir=str(checkpoint_dir), **{**QUICK, **fields})


def log_rows(checkpoint_dir) -> list[dict]:
    with open(checkpoint_dir / "log.csv", newline="") as file:
        return list(csv.DictReader(file))


def layer_weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}


@pytest.fixture(scope="module")
def shipped_face():
    return layer_weights(tflite_to_keras(model_path("face_landmark")))


@pytest.fixture(scope="module")
def frozen_run(sample_face_set, tmp_path_factory):
    checkpoint_dir = tmp_path_factory.mktemp("frozen") / "checkpoints"
    return finetune(quick_config(sample_face_set, checkpoint_dir, epochs=2, freeze_backbone=True), progress=False,
                    steps_per_epoch=1)


def image_summaries(folder) -> list[str]:
    from tensorflow.core.util import event_pb2

    tags = []
    for file in folder.rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(file)):
            event = event_pb2.Event.FromString(record.numpy())
            tags += [value.tag for value in event.summary.value
                     if value.metadata.plugin_data.plugin_name == "images"]
    return tags


def test_checkpoint_dir_holds_the_job_best_weights_log_and_tensorboard(frozen_run):
    folder = frozen_run.checkpoint_dir
    assert FineTuneConfig.from_json(folder / CHECKPOINT_MARKER) == frozen_run.config
    assert (folder / "best.weights.h5").stat().st_size > 0
    rows = log_rows(folder)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "val_loss", "learning_rate", "seconds"} <= set(rows[0])
    assert list((folder / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert image_summaries(folder / "tensorboard" / "images")
    assert not (folder / "backup").exists()   # a finished run leaves nothing to resume
    assert 1 <= frozen_run.best_epoch <= 2 and len(frozen_run.history["val_loss"]) == 2


def test_frozen_backbone_is_bit_identical_and_the_heads_moved(frozen_run, shipped_face):
    frozen = set(freeze(tflite_to_keras(model_path("face_landmark")), "backbone"))
    trained = layer_weights(frozen_run.model)
    changed = {name for name, weights in trained.items()
               if any(not np.array_equal(a, b) for a, b in zip(weights, shipped_face[name]))}
    assert frozen and not changed & frozen
    assert "conv2d_21" in changed   # the landmark head
    assert frozen_run.trainable_params == sum(w.size for name in trained if name not in frozen for w in trained[name])


def test_lora_changes_only_the_adapted_kernels_and_counts_the_adapters(sample_face_set, tmp_path, shipped_face):
    run = finetune(quick_config(sample_face_set, tmp_path / "checkpoints", epochs=1, lora_rank=2), progress=False,
                   steps_per_epoch=1)
    assert run.lora is not None and run.trainable_params == run.lora.added_params
    trained = layer_weights(run.model)
    assert trained.keys() == shipped_face.keys()   # merged: the shipped layers, no adapters left
    for name, weights in trained.items():
        if name in run.lora.layers:
            kernel, *bias = weights
            assert all(np.array_equal(a, b) for a, b in zip(bias, shipped_face[name][1:])), name
        else:   # DepthwiseConv2D, PReLU: no adapter, and LoRA trains nothing else
            assert all(np.array_equal(a, b) for a, b in zip(weights, shipped_face[name])), name
    assert not np.array_equal(trained["conv2d_21"][0], shipped_face["conv2d_21"][0])


class Interrupted(RuntimeError):
    pass


def test_an_interrupted_run_resumes_from_its_last_finished_epoch(sample_face_set, tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    config = quick_config(sample_face_set, folder, epochs=3)
    start_epoch = loop.EpochExtras.on_epoch_begin

    def interrupt_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            raise Interrupted("the machine went away")
        start_epoch(self, epoch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(loop.EpochExtras, "on_epoch_begin", interrupt_second_epoch)
        with pytest.raises(Interrupted):
            finetune(config, progress=False, steps_per_epoch=1)
    assert (folder / "backup").is_dir() and len(log_rows(folder)) == 1
    # make the finished epoch the best one could ever be: the resumed run must keep it
    record = json.loads((folder / "best.json").read_text())
    assert record["epoch"] == 1 and record["val_loss"] == pytest.approx(float(log_rows(folder)[0]["val_loss"]))
    (folder / "best.json").write_text(json.dumps({"epoch": 1, "val_loss": 0.0}))
    best_before = (folder / "best.weights.h5").read_bytes()

    run = finetune(config, progress=False, steps_per_epoch=1)
    assert [row["epoch"] for row in log_rows(folder)] == ["0", "1", "2"]   # epochs 2 and 3 only were run
    assert len(run.history["val_loss"]) == 3
    assert run.best_epoch == 1 and (folder / "best.weights.h5").read_bytes() == best_before
    assert not (folder / "backup").exists()

    again = finetune(quick_config(sample_face_set, folder, epochs=1), progress=False, steps_per_epoch=1)
    assert len(log_rows(folder)) == 1 and len(again.history["loss"]) == 1   # a new run, a new log


def test_an_unfinished_run_of_another_job_is_refused_by_field(sample_face_set, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / CHECKPOINT_MARKER).write_text(quick_config(sample_face_set, folder, epochs=3).to_json())
    (folder / "backup").mkdir()
    with pytest.raises(ValueError, match=r"unfinished run of another job \(batch_size, learning_rate, "):
        finetune(quick_config(sample_face_set, folder, epochs=5, batch_size=1, learning_rate=1e-3), progress=False,
                 steps_per_epoch=1)
    assert json.loads((folder / CHECKPOINT_MARKER).read_text())["batch_size"] == 2   # its job is kept


def test_resuming_with_another_start_model_seed_or_data_is_refused(sample_face_set, tmp_path):
    folder = tmp_path / "checkpoints"
    config = quick_config(sample_face_set, folder, epochs=3)
    identity = {"start_model_sha256": "a" * 64, "seed": 0, "groups": False, "data_sha256": "b" * 64}
    loop.prepare_checkpoint_dir(config, identity)
    (folder / "backup").mkdir()                            # the run was interrupted
    loop.prepare_checkpoint_dir(config, identity)          # the same job resumes
    for field, value in (("start_model_sha256", "c" * 64), ("seed", 1), ("data_sha256", "d" * 64)):
        with pytest.raises(ValueError, match=f"another job \\({field} differ"):
            loop.prepare_checkpoint_dir(config, {**identity, field: value})
    assert json.loads((folder / "run.json").read_text()) == identity


def test_mixed_precision_trains_in_bfloat16_and_returns_a_float32_model(sample_face_set, tmp_path):
    """On a CPU mixed precision computes in bfloat16; the returned model (what is exported) is float32."""
    config = quick_config(sample_face_set, tmp_path / "c", epochs=1, mixed_precision=True, lora_rank=2)
    run = finetune(config, progress=False, steps_per_epoch=1)
    assert all(layer.dtype_policy.name == "float32" for layer in run.model.layers)
    assert not any(getattr(layer, "lora_enabled", False) for layer in run.model.layers)
    batch = np.random.default_rng(0).random((1, 192, 192, 3)).astype(np.float32)
    assert all(np.asarray(out).dtype == np.float32 for out in run.model(batch))
    assert np.isfinite(run.history["loss"]).all()


@pytest.mark.parametrize("module", ["face_mesh", "pose"])
def test_two_steps_of_the_trainers_own_step_lower_the_loss_on_a_fixed_batch(module):
    """FineTuner.train_step, the step `fit` runs: degraded crops in, the teacher on the clean ones
    (pose: 39 points with visibility, the 6 auxiliary ones from the teacher only)."""
    import keras

    from holistic_lab.datasets import sample_image, sample_labels, sample_names
    from holistic_lab.train import DEFAULT_LOSS_WEIGHTS, MODULES
    from holistic_lab.train.data import iter_module_batches

    spec = MODULES[module]
    items = [(sample_image(name), sample_labels(name)) for name in sample_names()]
    ((images, targets),) = list(iter_module_batches(items, module, batch_size=2, preset="night", seed=0,
                                                    geometry=False))
    trainer = loop.FineTuner(tflite_to_keras(model_path(spec.model_name)), tflite_to_keras(model_path(spec.model_name)),
                             spec, DEFAULT_LOSS_WEIGHTS)
    trainer.compile(optimizer=keras.optimizers.Adam(spec.default_learning_rate))
    logs = [trainer.train_on_batch(images, targets, return_dict=True) for _ in range(3)]
    losses = [float(log["loss"]) for log in logs]
    assert losses[2] < losses[0] and np.isfinite(losses).all()
    assert ("visibility" in logs[0]) == (module == "pose")
    assert (float(logs[0]["teacher"]) > 0) == (module == "pose")   # face: every vertex labelled; pose: 33:39 not


def test_the_validation_split_keeps_groups_whole_and_near_the_asked_share():
    groups = ["clip"] * 60 + [f"photo {i}" for i in range(140)]
    train, validation = loop.split_indices(200, 0.1, seed=3, groups=groups)
    assert sorted(train + validation) == list(range(200)) and 15 <= len(validation) <= 20
    held = {groups[i] for i in validation}
    assert not held & {groups[i] for i in train}      # no group on both sides
    train, validation = loop.split_indices(10, 0.1, groups=["a"] * 9 + ["b"])
    assert validation == [9]                          # the only group small enough
    assert loop.split_indices(4, 0.5) in (([0, 1], [2, 3]), ([0, 2], [1, 3]), ([0, 3], [1, 2]), ([1, 2], [0, 3]),
                                          ([1, 3], [0, 2]), ([2, 3], [0, 1]))
    with pytest.raises(ValueError, match="one group"):
        loop.split_indices(3, 0.5, groups=["a"] * 3)
