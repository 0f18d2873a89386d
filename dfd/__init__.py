"""dfd: the shared core of the deepfake detection package.

What every stage uses lives here: the label convention (:mod:`dfd.labels`), config
dataclasses (:mod:`dfd.config`), the shard schema (:mod:`dfd.schema`), the ``tf.data``
readers (:mod:`dfd.readers`), the score tables (:mod:`dfd.scores`), the trainer
(:mod:`dfd.training`) and the ``dfd`` command (:mod:`dfd_app.cli.main`).

TensorFlow is imported lazily by the modules that need it, so ``import dfd`` is cheap.
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter is not useful to users; set before TF is imported.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
