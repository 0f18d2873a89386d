"""``dfd calibrate``: fit Platt scaling on validation scores and fold it into the model.

    dfd predict --model runs/meso4/best.keras --shards runs/shards --split val \\
        --out runs/scores/meso4-val.csv
    dfd calibrate --model runs/meso4/best.keras --scores runs/scores/meso4-val.csv \\
        --out runs/export/meso4_calibrated

The output folder is an export (``dfd export``: SavedModel + ``model.keras`` +
``model_info.json``) whose ``model_info.json`` also records the ``calibration`` (a, b, counts)
and keeps the source's ``face_margin``. Fit on scores of videos the model never trained on.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="a .keras file, an export folder with model.keras, or a registered "
                             "name (the authors' weights are folded to a P(fake) output first)")
    parser.add_argument("--scores", required=True,
                        help="video score table with labels (dfd predict --out) on validation data")
    parser.add_argument("--out", required=True, help="new (or empty) export folder")
    parser.add_argument("--weights-dir", help="cache folder of registered weights")


def load_for_calibration(spec, weights_dir=None):
    """The Keras model of ``spec`` ending in Dense(1, sigmoid) (authors' flip folded in)."""
    from dfd.export import load_keras
    from mesonet_tf import weights as registry

    if registry.is_registered(str(spec)) and registry.get_entry(str(spec)).outputs == "p_real":
        from mesonet_tf import models

        entry = registry.get_entry(str(spec))
        return models.build(entry.arch, weights=entry.name, weights_dir=weights_dir,
                            fold_flip=True, name=entry.name)
    return load_keras(spec, weights_dir)


def run(args) -> int:
    from dfd.export import export_savedmodel, read_model_info, registry_margin
    from dfd.scores import STATUS_OK, read_table
    from dfd_eval.calibration import describe, fit_platt, fold_into_model

    table = read_table(args.scores)
    if "label" not in table.columns:
        raise ValueError(f"{args.scores} has no label column: give the video table of "
                         "`dfd predict --out` on labelled validation shards")
    if "status" in table.columns:
        table = table[table["status"] == STATUS_OK]
    scaling = fit_platt(table["p_fake"], table["label"], fitted_on=str(args.scores))
    model = load_for_calibration(args.model, args.weights_dir)
    calibrated = fold_into_model(model, scaling)
    info = None
    try:
        info = read_model_info(args.model)
    except (OSError, ValueError):
        pass
    margin = (info or {}).get("face_margin") or registry_margin(args.model)
    out = export_savedmodel(calibrated, args.out, source=str(args.model), face_margin=margin,
                            extra_info={"calibration": scaling.to_dict()})
    log.info("%s", describe(scaling))
    print(f"calibrated {args.model} -> {out}: {describe(scaling)}")
    return 0
