"""Distribution strategy from the config, and which training path runs under it.

===============  ==========================================  ======================
``strategy``     what it is                                  training path (auto)
===============  ==========================================  ======================
``default``      one device (CPU or one GPU)                 ``model.fit``
``mirrored``     ``MirroredStrategy``: all local GPUs        ``model.fit``
``multiworker``  ``MultiWorkerMirroredStrategy``: TF_CONFIG,  custom loop
                 or a Slurm step (``srun``)
===============  ==========================================  ======================

Where the cluster comes from under ``multiworker``: ``TF_CONFIG`` when it is set; otherwise,
inside a Slurm job step (``srun``: ``SLURM_PROCID`` and a task count in the environment),
:func:`slurm_cluster` reads the step from the ``SLURM_*`` variables and hands it to
``tf.distribute.cluster_resolver.SlurmClusterResolver``, so nobody writes a ``TF_CONFIG``.

Keras 3 ``model.fit`` fails under a real multi-worker strategy (``ValueError: Attempt to
convert a value (PerReplica...)``), so multi-worker runs use the custom loop of
:mod:`dfd.training.custom_loop`, which uses ``strategy.run`` directly.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class WorkerInfo:
    """Where this process stands in the cluster (a single process is chief, worker 0 of 1)."""

    task_type: str = "worker"
    task_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0)


#: first port of the workers of a Slurm step (a node's k-th task listens on base + k)
SLURM_PORT_ENV = "DFD_SLURM_PORT_BASE"
SLURM_PORT_BASE = 8888


@dataclass
class SlurmCluster:
    """A Slurm job step as a cluster of workers, read from the ``SLURM_*`` variables."""

    rank: int                        # SLURM_PROCID: this task's worker index
    num_tasks: int                   # SLURM_STEP_NUM_TASKS (else SLURM_NTASKS)
    tasks_per_node: dict[str, int]   # host -> tasks on it, in the step's node order
    port_base: int = SLURM_PORT_BASE
    node: str | None = None          # SLURMD_NODENAME: the host this task runs on

    @property
    def workers(self) -> list[str]:
        """``host:port`` of every worker, in rank order (as SlurmClusterResolver lists them)."""
        return [f"{h}:{self.port_base + k}" for h in sorted(self.tasks_per_node)
                for k in range(self.tasks_per_node[h])]

    def resolver(self):
        """``tf.distribute.cluster_resolver.SlurmClusterResolver`` for this step.

        Every value is passed explicitly: the resolver would otherwise insist on the
        step-only variables and probe GPUs with ``nvidia-smi`` (which fails on CPU nodes).
        It never sets ``CUDA_VISIBLE_DEVICES``: run one task per node (each worker
        mirrors over all its GPUs) or let Slurm bind one GPU per task (``--gpus-per-task``).
        """
        import tensorflow as tf

        rank, most = self.rank, max(self.tasks_per_node.values())

        class _StepResolver(tf.distribute.cluster_resolver.SlurmClusterResolver):
            def _resolve_own_rank(self):  # the rank read with the rest (not os.environ again)
                return rank

        return _StepResolver(
            jobs={"worker": self.num_tasks}, port_base=self.port_base, gpus_per_node=most,
            gpus_per_task=1, tasks_per_node=dict(self.tasks_per_node), auto_set_gpu=False)


def _slurm_var(env, *names: str) -> str | None:
    return next((env[n] for n in names if env.get(n)), None)


def slurm_cluster(env=None) -> SlurmCluster | None:
    """The Slurm job step this process is a task of, or None when it runs outside ``srun``.

    Reads ``SLURM_PROCID``; the task count from ``SLURM_STEP_NUM_TASKS`` (else
    ``SLURM_NTASKS``); the nodes from ``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``,
    ``SLURM_NODELIST``), compressed lists like ``gpu[01-04]`` allowed; tasks per node from
    ``SLURM_STEP_TASKS_PER_NODE`` (else ``SLURM_TASKS_PER_NODE``, e.g. ``2(x3),1``);
    ``$DFD_SLURM_PORT_BASE`` (default 8888). Raises ``ValueError`` naming the variable
    when they do not describe one consistent step.
    """
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import (
        expand_hostlist,
        expand_tasks_per_node,
    )

    env = os.environ if env is None else env
    procid = env.get("SLURM_PROCID")
    ntasks = _slurm_var(env, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    if procid is None or ntasks is None:
        return None
    nodelist = _slurm_var(env, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    per_node = _slurm_var(env, "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    try:
        rank, n = int(procid), int(ntasks)
        port = int(env.get(SLURM_PORT_ENV) or SLURM_PORT_BASE)
    except ValueError:
        raise ValueError(f"SLURM_PROCID={procid!r}, task count {ntasks!r} and "
                         f"${SLURM_PORT_ENV} must be integers") from None
    if not nodelist:
        raise ValueError("inside Slurm (SLURM_PROCID is set) but no SLURM_STEP_NODELIST / "
                         "SLURM_JOB_NODELIST: start the workers with srun")
    hosts = expand_hostlist(nodelist)
    if per_node:
        counts = expand_tasks_per_node(per_node)
    elif len(hosts) == 1:
        counts = [n]
    else:
        raise ValueError(f"Slurm nodes {hosts} but no SLURM_STEP_TASKS_PER_NODE / "
                         "SLURM_TASKS_PER_NODE: cannot tell which task runs where")
    if len(counts) != len(hosts) or len(set(hosts)) != len(hosts):
        raise ValueError(f"Slurm node list {nodelist!r} ({len(hosts)} nodes) does not match "
                         f"tasks per node {per_node!r} ({len(counts)} entries)")
    if sum(counts) != n or not 0 <= rank < n:
        raise ValueError(f"Slurm step of {n} tasks, tasks per node {per_node!r} (sum "
                         f"{sum(counts)}) and SLURM_PROCID={rank} do not agree")
    cluster = SlurmCluster(rank, n, dict(zip(hosts, counts)), port, env.get("SLURMD_NODENAME"))
    mine = cluster.workers[rank].rsplit(":", 1)[0]
    if cluster.node and cluster.node != mine:
        raise ValueError(f"Slurm task {rank} runs on {cluster.node} but the cluster lists worker "
                         f"{rank} on {mine}: start the step with block distribution "
                         "(srun --distribution=block, Slurm's default)")
    return cluster


def worker_info() -> WorkerInfo:
    """This process's role: from ``TF_CONFIG``, else from a Slurm step (:func:`slurm_cluster`),
    else a lone process."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        slurm = slurm_cluster()
        if slurm is not None:
            return WorkerInfo("worker", slurm.rank, slurm.num_tasks)
        return WorkerInfo()
    try:
        doc = json.loads(raw)
        cluster, task = doc["cluster"], doc["task"]
        n = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
        return WorkerInfo(task["type"], int(task["index"]), n)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"TF_CONFIG is not a valid cluster spec ({err}): {raw[:200]!r}") from None


def make_strategy(name: str):
    """The ``tf.distribute`` strategy called ``name`` (default / mirrored / multiworker)."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        if not gpus and len(cpus) > 1:  # logical CPUs (tests, or CPU-only data parallelism)
            return tf.distribute.MirroredStrategy([d.name for d in cpus])
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if os.environ.get("TF_CONFIG"):
            return tf.distribute.MultiWorkerMirroredStrategy()
        slurm = slurm_cluster()
        if slurm is None:
            raise ValueError("strategy 'multiworker' needs a cluster: start every worker with "
                             "srun inside a Slurm job, or set TF_CONFIG on each (see "
                             "docs/training.md, 'Multi-worker clusters')")
        log.info("Slurm step: worker %d of %d, cluster %s", slurm.rank, slurm.num_tasks,
                 slurm.workers)
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=slurm.resolver())
    raise ValueError(f"strategy {name!r} is not one of 'default', 'mirrored', 'multiworker'")


def choose_loop(strategy_name: str, loop: str) -> str:
    """``"fit"`` or ``"custom"``: the path that works under ``strategy_name``."""
    if loop == "auto":
        return "custom" if strategy_name == "multiworker" else "fit"
    if loop == "fit" and strategy_name == "multiworker":
        log.warning("loop='fit' under MultiWorkerMirroredStrategy fails in Keras 3; "
                    "use loop='auto' or 'custom'")
    return loop


def write_dir(run_dir: str | Path, info: WorkerInfo) -> Path:
    """Where this worker writes: the run dir for the chief, a scratch dir for the others.

    Every worker must save (saving runs collectives), but only the chief's copy is kept.
    """
    if info.is_chief:
        return Path(run_dir)
    return Path(tempfile.mkdtemp(prefix=f"dfd-worker{info.task_index}-"))
