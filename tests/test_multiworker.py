"""Distributed training: two real worker processes (MultiWorkerMirroredStrategy on
loopback) end with identical weights; MirroredStrategy over two logical CPUs works with
both the fit path and the custom loop, with and without sharpness-aware minimization.

Run as a script, this module is the worker: ``python -m tests.test_multiworker MODE OUT``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 150


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG" and not k.startswith("SLURM")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")})
    env.update(extra)
    return env


def _run_all(procs: list[subprocess.Popen]) -> list[str]:
    """Wait for every process (bounded); kill all of them on failure or timeout."""
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT_S)
            outs.append(out)
            assert p.returncode == 0, f"worker exited with {p.returncode}:\n{out[-4000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    return outs


def _consecutive_free_ports(n: int) -> int:
    """A base port such that base .. base+n-1 are free (a Slurm node's tasks use them)."""
    for _ in range(50):
        base = _free_ports(1)[0]
        socks = []
        try:
            for k in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def _train_two_workers(tmp_path, envs: list[dict]) -> None:
    from tests.test_training import write_tiny_shards

    train = write_tiny_shards(tmp_path / "train", records=8, faces=2, prefix="train",
                              max_records=2)
    val = write_tiny_shards(tmp_path / "val", records=4, faces=1, seed=1, prefix="val")
    procs = []
    for i, extra in enumerate(envs):
        args = [sys.executable, "-m", "tests.test_multiworker", "multiworker",
                str(tmp_path / f"weights{i}.npz"), str(train), str(val), str(tmp_path / "run")]
        procs.append(subprocess.Popen(args, cwd=REPO, env=_env(**extra),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    _run_all(procs)


def test_two_workers_train_to_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    _train_two_workers(tmp_path, [
        {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        for i in range(2)])
    _check_two_workers(tmp_path)


@pytest.mark.slow
def test_two_slurm_tasks_train_without_tf_config(tmp_path):
    """What ``srun -N1 -n2 dfd train --strategy multiworker`` sees: SLURM_* only, no TF_CONFIG."""
    base = _consecutive_free_ports(2)
    slurm = {"SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2",
             "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_JOB_NODELIST": "127.0.0.1",
             "SLURM_STEP_TASKS_PER_NODE": "2", "SLURMD_NODENAME": "127.0.0.1",
             "DFD_SLURM_PORT_BASE": str(base)}
    _train_two_workers(tmp_path, [{**slurm, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i)}
                                  for i in range(2)])
    _check_two_workers(tmp_path)


def _check_two_workers(tmp_path) -> None:
    w0 = np.load(tmp_path / "weights0.npz")
    w1 = np.load(tmp_path / "weights1.npz")
    assert sorted(w0.files) == sorted(w1.files) and w0.files
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=f"weight {k} differs")
    init = np.load(tmp_path / "weights0.npz.init.npz")
    assert any(not np.array_equal(init[k], w0[k]) for k in w0.files), "weights never moved"
    run = tmp_path / "run"
    assert (run / "last.keras").exists() and (run / "config.json").exists()
    hist = json.loads((run / "history.json").read_text())
    assert hist["epoch"] == [0, 1] and "val_auc" in hist
    saved = json.loads((run / "config.json").read_text())
    assert saved["training_loop"] == "custom"


def test_mirrored_two_logical_cpus_fit_and_custom(tmp_path):
    from tests.test_training import write_tiny_shards

    train = write_tiny_shards(tmp_path / "train", records=8, faces=2, prefix="train")
    val = write_tiny_shards(tmp_path / "val", records=4, faces=1, seed=1, prefix="val")
    args = [sys.executable, "-m", "tests.test_multiworker", "mirrored",
            str(tmp_path / "mirrored.json"), str(train), str(val), str(tmp_path / "run")]
    _run_all([subprocess.Popen(args, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)])
    report = json.loads((tmp_path / "mirrored.json").read_text())
    for name in ("fit", "custom", "fit-sam", "custom-sam"):
        assert report[name]["replicas"] == 2
        assert report[name]["epochs"] == [0, 1]
        assert 0.0 <= report[name]["val_auc"] <= 1.0
        assert all(np.isfinite(report[name]["loss"]))


# ---------------------------------------------------------------------- worker side


def _config(train, val, run_dir, **kw):
    from dfd.training.config import AugmentConfig, TrainConfig

    return TrainConfig(
        run_dir=run_dir, model="tests.test_training:tiny_model", train=[train], val=[val],
        face_size=32, batch_size=4, epochs=2, steps_per_epoch=2, learning_rate=0.01,
        augment=AugmentConfig(enabled=False), tensorboard=False, patience=None,
        shuffle_buffer=16, **kw,
    )


def _worker_main(mode: str, out: str, train: str, val: str, run_dir: str) -> None:
    import logging

    logging.basicConfig(level=logging.INFO)
    import tensorflow as tf

    from dfd.training import train as run_training
    from tests.test_training import tiny_builder

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        report = {}
        for loop, rho in (("fit", 0.0), ("custom", 0.0), ("fit", 0.05), ("custom", 0.05)):
            name = f"{loop}-sam" if rho else loop  # sharpness-aware: no weight is assigned
            res = run_training(_config(train, val, f"{run_dir}-{name}", strategy="mirrored",
                                       loop=loop, sam_rho=rho))
            report[name] = {"replicas": res.replicas, "epochs": res.history["epoch"],
                            "val_auc": res.metrics["last"]["auc"],
                            "loss": res.history["loss"]}
        Path(out).write_text(json.dumps(report))
        return

    def builder(cfg):  # keeps the initial weights, to show that training moved them
        model = tiny_builder(cfg)
        np.savez(out + ".init.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        return model

    res = run_training(_config(train, val, run_dir, strategy="multiworker"), model_fn=builder)
    assert res.replicas == 2, res.replicas
    np.savez(out, **{f"w{i}": w for i, w in enumerate(res.model.get_weights())})


if __name__ == "__main__":
    _worker_main(*sys.argv[1:6])
