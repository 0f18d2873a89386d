"""``dfd export``: a model as SavedModel + ``.keras`` + ``preset.json`` in one folder.

    dfd export --model meso4_df --out runs/export/meso4_df
"""

from __future__ import annotations

from dfd.export import export_savedmodel
from dfd.inference.loading import load_keras
from dfd_app.cli.common import add_out, add_weights_dir


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="registered weights name (e.g. meso4_df), a .keras file, or an "
                             "authors' .h5 weights file")
    add_out(parser, "new (or empty) export folder")
    parser.add_argument("--no-keras", action="store_true", help="skip writing model.keras")
    add_weights_dir(parser)


def run(args) -> int:
    model = load_keras(args.model, weights_dir=args.weights_dir)
    out = export_savedmodel(model, args.out, source=str(args.model), save_keras=not args.no_keras)
    print(f"exported {model.name} ({args.model}) to {out}: signature serving_default, "
          f"faces uint8 -> p_fake float32")
    return 0
