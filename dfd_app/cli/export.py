"""``dfd export``: a model as a complete SavedModel in the TF Serving layout ``OUT/<version>/``.

    dfd export --model meso4_df --out runs/export/meso4_df          # -> runs/export/meso4_df/1/

The SavedModel takes faces of any size (resized in its graph as the package resizes them)
and carries the model's preset (framing, face size, clip length, calibration) as
``assets/preset.json`` and a ``metadata`` signature; ``model.keras`` and ``preset.json`` lie
beside it. See docs/models.md for the contract.
"""

from __future__ import annotations

from dfd.export import DEFAULT_VERSION, export_model
from dfd_app.cli.common import add_out, add_weights_dir


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="registered weights name (e.g. meso4_df), a .keras file, an export "
                             "folder, or an authors' .h5 weights file")
    add_out(parser, "export folder; the model goes into OUT/<version>/ (TF Serving)")
    parser.add_argument("--version", type=int, default=DEFAULT_VERSION,
                        help="version number, the sub-folder of --out (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUT/<version> (default: refuse)")
    parser.add_argument("--no-keras", action="store_true", help="skip writing model.keras")
    add_weights_dir(parser)


def run(args) -> int:
    out = export_model(args.model, args.out, weights_dir=args.weights_dir, version=args.version,
                       overwrite=args.overwrite, save_keras=not args.no_keras)
    print(f"exported {args.model} to {out}: signatures serving_default (faces uint8 of any "
          f"size -> p_fake float32) and metadata (the preset as JSON)")
    return 0
