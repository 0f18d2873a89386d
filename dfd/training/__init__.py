"""The one trainer shared by every model: ``train(TrainConfig(...)) -> RunResult``.

``dfd train`` is its command line. TensorFlow is imported only when training starts.
"""

from __future__ import annotations

from dfd.training.config import AugmentConfig, Phase, TrainConfig
from dfd.training.trainer import RunResult, train

__all__ = ["AugmentConfig", "Phase", "RunResult", "TrainConfig", "train"]
