"""Drive your own ``model.fit`` with this package's datasets and builders.

    python docs/examples/own_fit.py --train runs/shards/train --val runs/shards/val \\
        --out runs/own_meso4 [--strategy mirrored] [--epochs 10] [--batch-size 32]

What comes from the package: the face shards' ``tf.data`` pipeline (decoding, augmentation,
class weights: :func:`dfd.training.data.make_dataset` over :mod:`dfd.readers`) and the model
builder (:func:`mesonet_tf.Meso4`, or any ``keras.applications`` model taking uint8 faces).
What is yours: the strategy, ``compile`` and ``fit`` and the callbacks.

Where it can run: one device, or every GPU of one machine with ``--strategy mirrored``
(``tf.distribute.MirroredStrategy``; ``batch_size`` is global). Several machines: NOT with
``model.fit``: in Keras 3, ``model.fit`` under ``MultiWorkerMirroredStrategy`` fails
(``ValueError: Attempt to convert a value (PerReplica...)``). For several machines use
``dfd train --strategy multiworker`` (its custom loop runs ``strategy.run``; under Slurm it
needs no ``TF_CONFIG``), or write your own loop around ``strategy.run`` the same way
(:mod:`dfd.training.custom_loop`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("own_fit")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs="+", required=True, help="training shard folders")
    p.add_argument("--val", nargs="+", required=True, help="validation shard folders")
    p.add_argument("-o", "--out", required=True, help="folder for the best model")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default",
                   help="default: one device; mirrored: all GPUs of this machine")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="batches per epoch (default: one pass over --train)")
    p.add_argument("--batch-size", type=int, default=32, help="global batch size (default 32)")
    p.add_argument("--face-size", type=int, default=256, help="face side (default 256)")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from dfd.training.config import TrainConfig
    from dfd.training.data import count_labels, make_dataset
    from mesonet_tf import Meso4

    # the data side of a TrainConfig: shards, face size, batch, augmentation, class balance
    cfg = TrainConfig(train=list(args.train), val=list(args.val), face_size=args.face_size,
                      batch_size=args.batch_size, class_balance="weights")
    counts = count_labels(cfg.train)
    train_ds = make_dataset(cfg, training=True, counts=counts)   # (faces uint8, label, weight)
    val_ds = make_dataset(cfg, training=False)
    if args.steps_per_epoch:
        train_ds = train_ds.repeat()

    strategy = (tf.distribute.MirroredStrategy() if args.strategy == "mirrored"
                else tf.distribute.get_strategy())
    with strategy.scope():  # variables (model and optimizer) live under the strategy
        model = Meso4(weights=None, input_shape=(args.face_size, args.face_size, 3))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc")])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best = out / "best.keras"
    model.fit(train_ds, validation_data=val_ds, epochs=args.epochs,
              steps_per_epoch=args.steps_per_epoch, verbose=2,
              callbacks=[keras.callbacks.ModelCheckpoint(best, monitor="val_auc", mode="max",
                                                         save_best_only=True)])
    # the saved model takes uint8 faces and gives P(fake): `dfd detect --model best.keras`
    log.info("best model: %s", best)
    return best


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
