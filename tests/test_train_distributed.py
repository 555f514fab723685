"""Fine-tuning on several workers (`holistic_lab.train.distributed`): the cluster's TF_CONFIG and
every malformed one refused by name; the loopback launcher's failures and timeouts leave no worker
behind; two real workers train the same model as one worker with the same global batch, and only
the chief writes the checkpoint folder; sharded by file, each worker reads only its own shards and
the workers still end with the same weights; the CLI's refusals in one line."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from holistic_lab.train import distributed
from holistic_lab.train.distributed import (Cluster, check_local_workers, cluster, environment_cluster,
                                            join_cluster, loopback_cluster, parse_tf_config, parse_workers,
                                            run_local_workers)

ROOT = Path(__file__).resolve().parent.parent
LOSS_TOLERANCE = 1e-4   # 1 vs 2 workers, same global batch and seed (measured: about 1e-6)


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode("utf-8", "replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# --- addresses and TF_CONFIG --------------------------------------------------------------------

def test_good_addresses_make_the_exact_tf_config():
    member = cluster(" 10.0.0.2:12345, worker-b.example.org:2222,[::1]:80 ", 1)
    assert member == Cluster(("10.0.0.2:12345", "worker-b.example.org:2222", "[::1]:80"), 1)
    assert member.tf_config == {"cluster": {"worker": ["10.0.0.2:12345", "worker-b.example.org:2222", "[::1]:80"]},
                                "task": {"type": "worker", "index": 1}}
    assert not member.is_chief and cluster(["a:1"], 0).is_chief
    assert parse_workers("host:0080") == ("host:80",)


@pytest.mark.parametrize(("workers", "named"), [
    ("hostA", "'hostA'"),
    ("hostA:", "'hostA:'"),
    (":1234", "':1234'"),
    ("hostA:0", "1 to 65535"),
    ("hostA:70000", "1 to 65535"),
    ("hostA:http", "'hostA:http'"),
    ("host A:1234", "'host A:1234'"),
    ("a:1,,b:2", "''"),
    ("a_b:1", "'a_b:1'"),
    ("", "none"),
    (" , ", "none"),
    ("a:1,a:1", "'a:1' is listed twice"),
    ("a:1, a:001", "'a:1' is listed twice"),   # the same after normalisation
])
def test_malformed_or_duplicate_addresses_are_refused_by_name(workers, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace("[", r"\[")):
        parse_workers(workers)


@pytest.mark.parametrize("index", [-1, 2, True, "0", None])
def test_an_index_outside_the_workers_is_refused_by_name(index):
    with pytest.raises(ValueError, match=rf"worker index {index!r}: expected 0 to 1 for 2 workers"):
        cluster("a:1,b:2", index)


def test_join_cluster_writes_tf_config_and_environment_cluster_reads_it(monkeypatch):
    monkeypatch.setenv(distributed.TF_CONFIG_ENV, "")   # unset; restored afterwards
    assert environment_cluster() is None and distributed.num_workers() == 1 and distributed.is_chief()
    member = join_cluster("a:1,b:2", 1)
    assert json.loads(os.environ[distributed.TF_CONFIG_ENV]) == member.tf_config
    assert environment_cluster() == member and distributed.num_workers() == 2 and not distributed.is_chief()


@pytest.mark.parametrize(("text", "named"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected an object"),
    ('{"task": {"type": "worker", "index": 0}}', "expected an object"),
    ('{"cluster": {"worker": ["a:1"]}}', 'no "task"'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', r"\['ps'\]"),
    ('{"cluster": {"chief": ["a:1"]}, "task": {"type": "chief", "index": 0}}', r"\['chief'\]"),
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}', "must be a list"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "'evaluator'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "worker index 2"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker"}}', "worker index None"),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}', "worker address 'b'"),
])
def test_a_malformed_tf_config_in_the_environment_is_refused_by_name(monkeypatch, text, named):
    with pytest.raises(ValueError, match=named):
        parse_tf_config(text)
    monkeypatch.setenv(distributed.TF_CONFIG_ENV, text)
    with pytest.raises(ValueError, match=rf"^TF_CONFIG: .*{named}"):
        environment_cluster()
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distributed.strategy()   # refused by name before TensorFlow reads it


@pytest.mark.parametrize("count", [0, -1, distributed.MAX_LOCAL_WORKERS + 1, 2.0, True])
def test_local_workers_outside_the_bound_are_refused(count):
    with pytest.raises(ValueError, match=rf"distributed_workers: {count!r} local workers"):
        check_local_workers(count)


def test_loopback_cluster_gives_distinct_loopback_addresses():
    addresses = loopback_cluster(3)
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)


# --- the loopback launcher ----------------------------------------------------------------------

def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_workers_get_their_own_tf_config_and_their_lines_are_prefixed():
    out = io.StringIO()
    code = "import json, os; t = json.loads(os.environ['TF_CONFIG']); print(t['task']['index'], len(t['cluster']['worker']))"
    assert run_local_workers(python(code), 2, timeout_s=60, out=out) == 0
    assert sorted(out.getvalue().splitlines()) == ["[worker 0] 0 2", "[worker 1] 1 2"]


def test_a_failed_worker_stops_the_others_and_its_code_is_returned(tmp_path):
    marker = f"holistic-lab-test-{tmp_path.name}"
    code = f"import os, sys, time; '{marker}'; i = int(os.environ['TF_CONFIG'].split('\"index\": ')[1][0]); " \
           "time.sleep(0.5) if i == 1 else time.sleep(600); sys.exit(3 if i == 1 else 0)"
    out = io.StringIO()
    started = time.monotonic()
    assert run_local_workers(python(code), 3, timeout_s=120, out=out) == 3
    assert time.monotonic() - started < 100   # not the chief's 600 s: the others were stopped
    assert "worker 1 failed (exit code 3); stopping the others" in out.getvalue()
    assert processes_with(marker) == []


def test_a_timeout_stops_every_worker(tmp_path):
    marker = f"holistic-lab-test-{tmp_path.name}"
    with pytest.raises(TimeoutError, match="2 workers still running after 1 s"):
        run_local_workers(python(f"import time; '{marker}'; time.sleep(600)"), 2, timeout_s=1, out=io.StringIO())
    assert processes_with(marker) == []


def test_killing_the_launchers_group_leaves_no_worker(tmp_path):
    """What the job API's cancel does: SIGTERM to the job's process group (the launcher leads it;
    the workers are in it), SIGKILL after a grace."""
    marker = f"holistic-lab-test-{tmp_path.name}"
    launcher = "import sys, time; from holistic_lab.train.distributed import run_local_workers; " \
               f"sys.exit(run_local_workers([sys.executable, '-c', \"import time; '{marker}'; time.sleep(600)\"], 2))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(python(launcher), env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(processes_with(marker)) < 3 and time.monotonic() < deadline:   # the launcher and 2 workers
            time.sleep(0.1)
        assert len(processes_with(marker)) == 3
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with(marker) == []
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


# --- a real 2-worker fine-tuning ---------------------------------------------------------------

def load_benchmark():
    spec = importlib.util.spec_from_file_location("distributed_equivalence", ROOT / "benchmarks" /
                                                  "distributed_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 1-worker run (global batch 2) and one 2-worker run (1 each) of the same quick job and
    seed, through the equivalence benchmark; workers' temporary folders land in a folder of ours."""
    pytest.importorskip("tensorflow")
    benchmark = load_benchmark()
    work = tmp_path_factory.mktemp("distributed")
    scratch = work / "tmp"
    scratch.mkdir()
    arguments = SimpleNamespace(epochs=2, seed=0, steps_per_epoch=None, timeout=300.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(scratch))
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        patch.delenv(distributed.TF_CONFIG_ENV, raising=False)
        data = benchmark.write_set(work, copies=2)
        one = benchmark.run(1, 2, data, work, arguments)
        two = benchmark.run(2, 1, data, work, arguments)
        by_file = benchmark.run(2, 1, benchmark.write_set(work, copies=2, shards=2), work, arguments, "file")
    return SimpleNamespace(benchmark=benchmark, work=work, scratch=scratch, one=one, two=two, by_file=by_file)


def test_two_workers_end_with_the_same_weights(runs):
    assert runs.benchmark.max_difference(*runs.two["weights"]) == 0.0


def test_two_workers_sharded_by_file_train_in_step(runs):
    # each reads its own shard, and the all-reduced steps keep their models identical
    assert runs.by_file["shard_by"] == "file" and len(runs.by_file["loss"]) == 2
    assert runs.benchmark.max_difference(*runs.by_file["weights"]) == 0.0
    assert runs.benchmark.max_difference(runs.one["weights"][0], runs.by_file["weights"][0]) > 0   # other batches


def test_two_workers_follow_one_workers_loss_curve(runs):
    assert len(runs.one["loss"]) == len(runs.two["loss"]) == 2
    for name in ("loss", "val_loss"):
        assert runs.one[name] == pytest.approx(runs.two[name], abs=LOSS_TOLERANCE), name
    assert runs.benchmark.max_difference(runs.one["weights"][0], runs.two["weights"][0]) < 1e-3


def tree(folder: Path) -> list[str]:
    """A folder's files, tensorboard's event files (named by host, pid and time) counted by folder."""
    names = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        names.append(str(relative.parent / "events") if relative.name.startswith("events.out") else str(relative))
    return names


def test_only_the_chief_writes_the_checkpoint_folder(runs):
    # the 2-worker folder holds what the 1-worker run's does: the chief's files, nothing of worker 1's
    single = tree(runs.work / "1_workers_by_data" / "checkpoints")
    for name in ("2_workers_by_data", "2_workers_by_file"):
        assert tree(runs.work / name / "checkpoints") == single, name
        assert (runs.work / name / "checkpoints" / "best.weights.h5").is_file()
        assert not (runs.work / name / "checkpoints" / "backup").exists()   # a finished run
    assert list(runs.scratch.glob("holistic-lab-worker-*")) == []   # worker 1's temporary folder removed
    assert processes_with(str(runs.work)) == []


@pytest.mark.parametrize("index", [0, 1])
def test_a_distributed_run_refuses_to_resume_an_unfinished_run(sample_face_set, tmp_path, monkeypatch, index):
    from holistic_lab.train import FineTuneConfig
    from holistic_lab.train.config import CHECKPOINT_MARKER
    from holistic_lab.train.loop import finetune

    unfinished = tmp_path / "checkpoints"
    (unfinished / "backup").mkdir(parents=True)   # what an interrupted run leaves
    (unfinished / CHECKPOINT_MARKER).write_text("{}")
    monkeypatch.setattr(distributed, "strategy", lambda: None)   # no real cluster to join in this process
    monkeypatch.setenv(distributed.TF_CONFIG_ENV, json.dumps(Cluster(("127.0.0.1:1", "127.0.0.1:2"), index).tf_config))
    config = FineTuneConfig(dataset_path=str(sample_face_set), module="face_mesh", epochs=1, batch_size=1,
                            validation_split=0.5, checkpoint_dir=str(unfinished))
    with pytest.raises(ValueError, match=r"checkpoint_dir .*checkpoints holds an unfinished run; a run on several "
                                         "workers does not resume one"):
        finetune(config, progress=False)
    assert sorted(p.name for p in unfinished.iterdir()) == sorted(["backup", CHECKPOINT_MARKER])   # left as it was
    assert (unfinished / CHECKPOINT_MARKER).read_text() == "{}"


# --- sharding the data by file ------------------------------------------------------------------

def test_each_worker_reads_every_nth_file_from_its_index():
    assert [distributed.files_of_worker(5, worker, 2) for worker in (0, 1)] == [[0, 2, 4], [1, 3]]
    assert distributed.files_of_worker(2, 2, 3) == []


def job(**fields):
    from holistic_lab.train import FineTuneConfig

    return FineTuneConfig(**{"dataset_path": "sets/faces.tfrecord", "module": "face_mesh", **fields})


@pytest.mark.parametrize("shard_by, files, workers, policy", [
    ("auto", 4, 2, "file"), ("auto", 2, 2, "file"), ("auto", 1, 2, "data"), ("auto", None, 2, "data"),
    ("data", 4, 2, "data"), ("file", 2, 2, "file"), ("file", 1, 1, "data"), ("auto", 4, 1, "data"),
])
def test_the_sharding_policy_is_resolved_like_tf_data_auto(shard_by, files, workers, policy):
    from holistic_lab.train.loop import shard_policy

    assert shard_policy(job(shard_by=shard_by), files, workers) == policy


@pytest.mark.parametrize("files, named", [(1, r"1 file\(s\) for 2 workers"), (None, "given as items")])
def test_sharding_by_file_that_cannot_be_done_is_refused_by_name(files, named):
    from holistic_lab.train.loop import shard_policy

    with pytest.raises(ValueError, match=rf"shard_by 'file': .*{named}"):
        shard_policy(job(shard_by="file"), files, 2)


@pytest.fixture(scope="module")
def two_shard_set(tmp_path_factory):
    benchmark = load_benchmark()
    return benchmark.write_set(tmp_path_factory.mktemp("two_shards"), copies=2, shards=2)


@pytest.mark.parametrize("cache", [True, False])
def test_selected_images_are_read_from_the_files_that_hold_them_only(two_shard_set, monkeypatch, cache):
    from holistic_lab.formats import tfrecord
    from holistic_lab.train import loop

    per_file, select, files = loop.data_source(job(dataset_path=str(two_shard_set), cache_dataset=cache))
    assert per_file == [2, 2] and len(files) == 2
    opened, decoded = [], []
    read, decode = tfrecord.read, tfrecord.decode_image
    monkeypatch.setattr(tfrecord, "read", lambda path, *a: opened.extend(Path(f).name for f in path) or read(path, *a))
    monkeypatch.setattr(tfrecord, "decode_image", lambda sample: decoded.append(sample) or decode(sample))
    second = list(select([3, 2])())   # both in the second file
    assert len(second) == 2 and opened == [files[1].name] and len(decoded) == 2   # nothing else decoded
    everything = [rgb.sum() for rgb, _ in select(range(4))()]
    assert len(everything) == 4 and everything[2:] == [rgb.sum() for rgb, _ in second]


def test_each_worker_counts_its_own_files_crops_and_an_idle_worker_is_refused(two_shard_set, tmp_path, monkeypatch):
    """In process, the all-reduce replaced: worker i's count is the crops of its own shard's training images."""
    from holistic_lab.train.loop import finetune

    seen = {}

    def counts(strategy, count):
        seen[distributed.worker_index()] = count
        return [count, 0]   # as if worker 1's shard held no training image

    monkeypatch.setattr(distributed, "strategy", lambda: None)
    monkeypatch.setattr(distributed, "counts_of_workers", counts)
    config = job(dataset_path=str(two_shard_set), validation_split=0.25, checkpoint_dir=str(tmp_path / "ckpt"))
    for index in (0, 1):
        monkeypatch.setenv(distributed.TF_CONFIG_ENV,
                           json.dumps(Cluster(("127.0.0.1:1", "127.0.0.1:2"), index).tf_config))
        with pytest.raises(ValueError, match=r"shard_by 'file': worker\(s\) \[1\] have no training face_mesh crops"):
            finetune(config, progress=False)
    # 3 of the 4 images train (1 validates); each worker counted only its own shard's
    assert sorted(seen.values()) == [1, 2] and not (tmp_path / "ckpt").exists()


# --- the CLI ------------------------------------------------------------------------------------

def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("holistic-lab finetune: error: ")
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Neither training nor workers: each would record that it was reached."""
    from holistic_lab.train import job

    monkeypatch.setenv(distributed.TF_CONFIG_ENV, "")   # unset; --workers writes it, restored afterwards
    reached = []
    monkeypatch.setattr(job, "finetune", lambda *a, **k: reached.append("finetune"))
    monkeypatch.setattr(distributed, "run_local_workers", lambda *a, **k: reached.append("workers"))
    return reached


@pytest.mark.parametrize(("options", "named"), [
    (["--workers", "a:1,b:2"], "--workers and --index go together"),
    (["--index", "0"], "--workers and --index go together"),
    (["--workers", "a:1,b", "--index", "0"], "worker address 'b'"),
    (["--workers", "a:1,a:1", "--index", "1"], "'a:1' is listed twice"),
    (["--workers", "a:1,b:2", "--index", "2"], "worker index 2"),
    (["--workers", "a:1,b:2", "--index", "0", "--distributed-workers", "3"], "distributed_workers: 3 asked"),
    (["--distributed-workers", "99"], "distributed_workers: 99 local workers"),
])
def test_the_cli_refuses_bad_cluster_options_by_name(tmp_path, capsys, no_training, options, named):
    from holistic_lab.cli import main

    argv = ["finetune", "--module", "face_mesh", "--data", "set.tfrecord", "--out", str(tmp_path / "v"), *options]
    assert main(argv) == 2
    assert named in one_line_error(capsys) and not no_training
    assert not (tmp_path / "v").exists()


def test_the_cli_refuses_sharding_by_file_a_one_file_set_before_any_worker_starts(tmp_path, capsys, no_training,
                                                                                 sample_face_set):
    from holistic_lab.cli import main

    argv = ["finetune", "--module", "face_mesh", "--data", str(sample_face_set), "--out", str(tmp_path / "v"),
            "--distributed-workers", "2", "--shard-by", "file"]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "shard_by 'file': " in err and "1 file(s) for 2 workers" in err
    assert not no_training and not (tmp_path / "v").exists()


@pytest.mark.parametrize("options", [["--distributed-workers", "2"], ["--workers", "a:1,b:2", "--index", "0"]])
def test_a_gesture_job_refuses_several_workers(tmp_path, capsys, no_training, options):
    from holistic_lab.cli import main

    classes = tmp_path / "classes"
    for name in ("a", "b"):
        (classes / name).mkdir(parents=True)
    argv = ["finetune", "--task-type", "classification", "--module", "hands", "--num-classes", "2",
            "--data", str(classes), "--out", str(tmp_path / "v"), *options]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert ("distributed_workers" in err or "gesture head trains in one process" in err) and not no_training
