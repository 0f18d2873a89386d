"""Weight averaging over the last epochs of a run (stochastic weight averaging, SWA).

Izmailov et al. (UAI 2018) average the weights a run passes through at the ends of its last
epochs; the mean lies in a flatter region of the loss than any one of them. Cha et al. (SWAD,
NeurIPS 2021) find that such flat minima generalise better to domains the model never saw,
which is what a deepfake detector is judged by here (docs/generalisation.md).

``TrainConfig.average_from = K``: the weights at the end of epochs K, K+1, ... (1-based,
counted over all phases) are averaged. After the last epoch the run's model (``last.keras``,
its metrics and preset) is the mean, and ``unaveraged.keras`` holds the last epoch's own
weights, so one run measures what the averaging bought. Every floating-point weight is
averaged, batch-norm statistics included (as exponential-moving-average implementations
do; they are not recomputed); integer variables keep the last epoch's value.

Resumable: the running mean and the epochs in it are written at every epoch end
(``average.npz`` in the run dir, atomically) and read back by a resumed run; an epoch already
in the mean is never added twice. A run killed between an epoch's backup and this file's
update resumes without that one epoch in the mean (logged).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

AVERAGE_FILE = "average.npz"
UNAVERAGED_MODEL = "unaveraged.keras"


class WeightAverage:
    """The running mean of ``model``'s weights at the ends of epochs ``average_from``, ...

    Call :meth:`on_epoch_end` (0-based absolute epoch, as Keras gives it) after each epoch and
    :meth:`apply` once after the last; ``path`` is where the mean is kept between runs.
    """

    def __init__(self, model, average_from: int, path: Path):
        if int(average_from) < 1:
            raise ValueError(f"average_from must be >= 1 (a 1-based epoch), got {average_from!r}")
        self.model = model
        self.average_from = int(average_from)
        self.path = Path(path)
        self.epochs: list[int] = []  # 1-based epochs in the mean
        self.mean: list[np.ndarray] | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        current = self.model.get_weights()
        try:
            with np.load(self.path) as data:
                epochs = [int(e) for e in data["epochs"]]
                mean = [data[f"w{i}"] for i in range(len(current))]
                extra = f"w{len(current)}" in data.files
        except (KeyError, ValueError, OSError) as err:
            log.warning("%s is unreadable (%s): the weight average starts again", self.path, err)
            return
        if extra or any(m.shape != c.shape for m, c in zip(mean, current)):
            log.warning("%s holds weights of another model: the weight average starts again",
                        self.path)
            return
        self.epochs, self.mean = epochs, mean
        log.info("weight average resumed with epochs %s", epochs)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        done = int(epoch) + 1
        if done < self.average_from or done in self.epochs:
            return
        if self.epochs and done != self.epochs[-1] + 1:
            log.warning("weight average: epochs %d-%d are missing from it (the run was stopped "
                        "between a backup and the average's update)", self.epochs[-1] + 1,
                        done - 1)
        weights = self.model.get_weights()
        n = len(self.epochs)
        if self.mean is None:
            self.mean = [np.array(w, copy=True) for w in weights]
        else:
            self.mean = [m + (w - m) / (n + 1) if np.issubdtype(w.dtype, np.floating) else w
                         for m, w in zip(self.mean, weights)]
        self.epochs.append(done)
        self._save()
        log.info("weight average: epoch %d added (a mean of %d)", done, len(self.epochs))

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        arrays = {f"w{i}": m for i, m in enumerate(self.mean)}
        with open(tmp, "wb") as fh:
            np.savez(fh, epochs=np.asarray(self.epochs, np.int64), **arrays)
        os.replace(tmp, self.path)

    def apply(self) -> bool:
        """Give the model the mean (``False``, model unchanged, when no epoch reached it)."""
        if self.mean is None:
            log.warning("weight average: no epoch reached epoch %d (early stopping?); the model "
                        "keeps its last weights", self.average_from)
            return False
        self.model.set_weights([m.astype(w.dtype, copy=False)
                                for m, w in zip(self.mean, self.model.get_weights())])
        log.info("the model is the mean of the weights of epochs %s", self.epochs)
        return True


def callback(averager: WeightAverage):
    """A Keras callback that feeds ``averager`` at every epoch end (fit and custom loop)."""
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_end=averager.on_epoch_end)
