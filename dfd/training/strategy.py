"""Distribution strategy from the config, and which training path runs under it.

===============  ==========================================  ======================
``strategy``     what it is                                  training path (auto)
===============  ==========================================  ======================
``default``      one device (CPU or one GPU)                 ``model.fit``
``mirrored``     ``MirroredStrategy``: all local GPUs        ``model.fit``
``multiworker``  ``MultiWorkerMirroredStrategy``, TF_CONFIG  custom loop
===============  ==========================================  ======================

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


def worker_info() -> WorkerInfo:
    """Read this process's role from ``TF_CONFIG`` (a lone process when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
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
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("strategy 'multiworker' needs TF_CONFIG set on every worker "
                             "(see the README, section 'Training')")
        return tf.distribute.MultiWorkerMirroredStrategy()
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
