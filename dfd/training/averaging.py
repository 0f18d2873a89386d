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

Resumable: the running mean and the epochs in it are written at every epoch end, before
the epoch's backup (``average.npz`` in the run dir, atomically), and read back by a resumed
run; an epoch already in the mean is never added twice. A run killed between the two re-runs
that epoch, whose first weights the mean keeps. An epoch missing from the mean all the same
(a file lost, say) is logged when the mean is applied.
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
    :meth:`apply` once after the last; ``path`` is where the mean is kept between runs, and
    ``restore`` where a resumed run reads it when ``path`` has none (a multi-worker run's
    non-chief worker writes to a scratch folder and resumes from the chief's run dir).
    """

    def __init__(self, model, average_from: int, path: Path, restore: Path | None = None):
        if int(average_from) < 1:
            raise ValueError(f"average_from must be >= 1 (a 1-based epoch), got {average_from!r}")
        self.model = model
        self.average_from = int(average_from)
        self.path = Path(path)
        self.epochs: list[int] = []  # 1-based epochs in the mean
        self.mean: list[np.ndarray] | None = None
        if self.path.exists():
            self._load(self.path)
        elif restore is not None and Path(restore).exists():
            self._load(Path(restore))

    def _load(self, path: Path) -> None:
        current = self.model.get_weights()
        try:
            with np.load(path) as data:
                epochs = [int(e) for e in data["epochs"]]
                mean = [data[f"w{i}"] for i in range(len(current))]
                extra = f"w{len(current)}" in data.files
        except (KeyError, ValueError, OSError) as err:
            log.warning("%s is unreadable (%s): the weight average starts again", path, err)
            return
        if extra or any(m.shape != c.shape for m, c in zip(mean, current)):
            log.warning("%s holds weights of another model: the weight average starts again",
                        path)
            return
        self.epochs, self.mean = epochs, mean
        log.info("weight average resumed with epochs %s", epochs)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        done = int(epoch) + 1
        if done < self.average_from or done in self.epochs:
            return
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

    def apply(self, epochs_run=()) -> bool:
        """Give the model the mean (``False``, model unchanged, when no epoch reached it).

        ``epochs_run``: the 1-based epochs the run trained (its history); one from
        ``average_from`` on that is not in the mean is logged.
        """
        missing = sorted({int(e) for e in epochs_run if int(e) >= self.average_from}
                         - set(self.epochs))
        if missing:
            log.warning("weight average: epochs %s were trained but are not in it (its file "
                        "was lost or replaced?)", missing)
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
