"""``--strategy multiworker`` under Slurm: the step read from fake ``SLURM_*`` environments,
handed to ``SlurmClusterResolver``, without any ``TF_CONFIG``. (A real two-task run on
localhost: ``tests/test_multiworker.py::test_two_slurm_tasks_train_without_tf_config``.)"""

from __future__ import annotations

import pytest

from dfd.training import strategy

STEP = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NODELIST": "gpu[07-08]",
        "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURMD_NODENAME": "gpu08"}


def test_step_variables_make_the_cluster():
    c = strategy.slurm_cluster(STEP)
    assert (c.rank, c.num_tasks) == (3, 4)
    assert c.tasks_per_node == {"gpu07": 2, "gpu08": 2}
    assert c.workers == ["gpu07:8888", "gpu07:8889", "gpu08:8888", "gpu08:8889"]


def test_job_variables_are_the_fallback():
    env = {"SLURM_PROCID": "1", "SLURM_NTASKS": "3", "SLURM_JOB_NODELIST": "a1,b[2-3]",
           "SLURM_TASKS_PER_NODE": "1(x3)", "DFD_SLURM_PORT_BASE": "23456"}
    c = strategy.slurm_cluster(env)
    assert c.workers == ["a1:23456", "b2:23456", "b3:23456"] and c.rank == 1
    # the step's own values win over the job's
    c = strategy.slurm_cluster({**env, "SLURM_STEP_NUM_TASKS": "2",
                                "SLURM_STEP_NODELIST": "b[2-3]", "SLURM_STEP_TASKS_PER_NODE": "1,1"})
    assert c.workers == ["b2:23456", "b3:23456"]
    # one node: the task count is enough
    c = strategy.slurm_cluster({"SLURM_PROCID": "0", "SLURM_NTASKS": "2",
                                "SLURM_JOB_NODELIST": "n1"})
    assert c.workers == ["n1:8888", "n1:8889"]


def test_outside_slurm_is_none_and_bad_steps_are_named():
    assert strategy.slurm_cluster({}) is None
    assert strategy.slurm_cluster({"SLURM_JOB_NODELIST": "n[1-2]"}) is None  # no task of a step
    bad = [({**STEP, "SLURM_STEP_TASKS_PER_NODE": "3,2"}, "do not agree"),
           ({**STEP, "SLURM_PROCID": "4"}, "SLURM_PROCID=4"),
           ({**STEP, "SLURM_STEP_TASKS_PER_NODE": "4"}, "does not match"),
           ({**STEP, "SLURMD_NODENAME": "gpu07"}, "block distribution"),
           ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "srun"),
           ({**STEP, "SLURM_PROCID": "x"}, "integers")]
    for env, words in bad:
        with pytest.raises(ValueError, match=words):
            strategy.slurm_cluster(env)


def test_the_resolver_sees_the_same_cluster():
    c = strategy.slurm_cluster(STEP)
    r = c.resolver()
    spec = r.cluster_spec().as_dict()
    assert spec == {"worker": c.workers}
    assert r.get_task_info() == ("worker", 3)


def test_worker_info_and_strategy_read_slurm_without_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for k, v in STEP.items():
        monkeypatch.setenv(k, v)
    info = strategy.worker_info()
    assert (info.task_type, info.task_index, info.num_workers, info.is_chief) == ("worker", 3, 4, False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    assert strategy.worker_info().is_chief


def test_multiworker_without_a_cluster_says_how(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for k in list(__import__("os").environ):
        if k.startswith("SLURM"):
            monkeypatch.delenv(k)
    with pytest.raises(ValueError, match="srun"):
        strategy.make_strategy("multiworker")


def test_own_fit_example_runs(tmp_path):
    """docs/examples/own_fit.py: our datasets and builder under the user's own model.fit."""
    import runpy
    from pathlib import Path

    from tests.test_training import write_tiny_shards

    train = write_tiny_shards(tmp_path / "train", records=8, faces=2, size=32, prefix="train")
    val = write_tiny_shards(tmp_path / "val", records=4, faces=1, size=32, seed=1, prefix="val")
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "own_fit.py"
    main = runpy.run_path(str(example))["main"]
    best = main(["--train", str(train), "--val", str(val), "-o", str(tmp_path / "out"),
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
                 "--face-size", "32", "--strategy", "mirrored"])
    assert best.exists()
