"""The one trainer shared by the MesoNet and temporal models.

``train(TrainConfig(...)) -> RunResult``; ``dfd train`` is its command line.
Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from dfd.training.config import AugmentConfig, Phase, TrainConfig

__all__ = ["AugmentConfig", "Phase", "RunResult", "TrainConfig", "train"]


def train(config, model_fn=None, callbacks=()):
    """See :func:`dfd.training.trainer.train`."""
    from dfd.training.trainer import train as _train

    return _train(config, model_fn=model_fn, callbacks=callbacks)


def __getattr__(name):
    if name == "RunResult":
        from dfd.training.trainer import RunResult

        return RunResult
    raise AttributeError(name)
