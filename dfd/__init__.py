"""dfd: the shared core of the deepfake detection package.

What every stage uses lives here: the label convention (:mod:`dfd.labels`), config
dataclasses (:mod:`dfd.config`), the shard schema (:mod:`dfd.schema`), the ``tf.data``
readers (:mod:`dfd.readers`), the score tables (:mod:`dfd.scores`), the trainer
(:mod:`dfd.training`) and the ``dfd`` command (:mod:`dfd_app.cli.main`).

TensorFlow is imported lazily by the modules that need it, so ``import dfd`` is cheap.
"""

__version__ = "0.1.0"

import os as _os
import platform as _platform
import sys as _sys

# TensorFlow's C++ start-up chatter is not useful to users; set before TF is imported.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# oneDNN kernels on x86: TensorFlow's wheel turns them on by itself only on some x86 CPUs (on
# this project's AVX2 AMD EPYC machines it leaves them off and runs convolutions on Eigen).
# Measured there (docs/benchmarks.md, "oneDNN"): Meso-4 scores 32 faces in 0.13 s instead of
# 0.35 and trains 2.5x faster. Read once, when TensorFlow is first imported, so this only
# takes effect when ``dfd`` (or a package built on it) is imported first, as every ``dfd``
# command and model package does; ``TF_ENABLE_ONEDNN_OPTS=0`` in the environment turns it off.
#: the machines (``platform.machine()``, lower case) on which importing dfd turns oneDNN on
ONEDNN_MACHINES = ("x86_64", "amd64")
if _platform.machine().lower() in ONEDNN_MACHINES:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels in this process; None while TensorFlow
    is not imported yet (the choice is made then) or where this TensorFlow cannot say."""
    if "tensorflow" not in _sys.modules:
        return None
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())
