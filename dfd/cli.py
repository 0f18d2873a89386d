"""The ``dfd`` command: one entry point, one subcommand per pipeline stage.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``dfd --help`` stays fast (TensorFlow is not imported for it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
SUBCOMMANDS = {
    "prep": ("data_prep.cli", "videos / face crops -> face-tensor TFRecord shards"),
    "split": ("data_prep.split_cli", "identity-safe train/val/test split of a manifest"),
    "check-split": ("data_prep.split_cli", "fail when an identity group spans two splits"),
    "train": ("dfd.train_cli", "train a MesoNet or temporal model from shards"),
    "predict": ("dfd.predict_cli", "score shards with a model -> frame and video score tables"),
    "export": ("dfd.export_cli", "export a trained model as a SavedModel"),
    "evaluate": ("dfd_eval.cli", "scores + labels -> metrics and an HTML report"),
    "stack": ("dfd_eval.stack_cli", "fit or apply the logistic-regression stacker"),
    "compare": ("dfd_eval.compare_cli", "every model + stacker + average on one test split"),
    "calibrate": ("dfd_eval.calibrate_cli", "fit Platt scaling on validation scores, fold it into the model"),
    "detect": ("dfd_detect.cli", "is this video fake? score video files or folders"),
    "serve": ("dfd_detect.serve_cli", "HTTP detection service with an upload page"),
}


def _available():
    out = {}
    for name, (mod, help_) in SUBCOMMANDS.items():
        spec = importlib.util.find_spec(mod.rsplit(".", 1)[0])
        if spec is not None:
            try:
                if importlib.util.find_spec(mod) is not None:
                    out[name] = (mod, help_)
            except ModuleNotFoundError:
                pass
    return out


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfd", description="Deepfake video detection.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info is the default, -vv debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    available = _available()
    wanted = next((a for a in argv if a in available), None)
    for name, (mod, help_) in available.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == wanted:  # only the subcommand that runs is imported
            module = importlib.import_module(mod)
            if hasattr(module, "add_arguments_for"):
                module.add_arguments_for(name, p)
            else:
                module.add_arguments(p)
            p.set_defaults(_module=mod)
    return parser


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    module = importlib.import_module(args._module)
    try:
        if hasattr(module, "run_for"):
            return int(module.run_for(args.command, args) or 0)
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as err:  # bad input: one clear line, exit 2
        logging.getLogger("dfd").debug("dfd %s failed", args.command, exc_info=True)
        logging.getLogger("dfd").error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
