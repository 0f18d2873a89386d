"""The ``dfd`` command: one entry point, one subcommand per pipeline stage.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
``dfd --help`` stays fast (TensorFlow is not imported for it).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys

from dfd import progress
from dfd.quiet import stderr_fd_filtered
from dfd_app.cli import streams

# name -> (module, one-line help)
SUBCOMMANDS = {
    "prep": ("dfd_app.cli.prep", "videos / face crops -> face-tensor TFRecord shards"),
    "split": ("dfd_app.cli.split", "identity-safe train/val/test split of a manifest"),
    "check-split": ("dfd_app.cli.split", "fail when an identity group spans two splits"),
    "audit": ("dfd_app.cli.audit", "which image properties alone tell FAKE from REAL in a crop set"),
    "train": ("dfd_app.cli.train", "train a MesoNet or temporal model from shards"),
    "predict": ("dfd_app.cli.predict", "score shards with a model -> frame and video score tables"),
    "export": ("dfd_app.cli.export", "export a trained model as a SavedModel"),
    "evaluate": ("dfd_app.cli.evaluate", "scores + labels -> metrics and an HTML report"),
    "stack": ("dfd_app.cli.stack", "fit or apply the logistic-regression stacker"),
    "compare": ("dfd_app.cli.compare", "every model + stacker + average on one test split"),
    "calibrate": ("dfd_app.cli.calibrate", "fit Platt scaling on validation scores, fold it into the model"),
    "detect": ("dfd_app.cli.detect", "is this video fake? score video files or folders"),
    "serve": ("dfd_app.cli.serve", "HTTP detection service with an upload page"),
}


#: what a subcommand's missing module means (the extra that installs it)
EXTRAS = {"fastapi": "serve", "uvicorn": "serve", "multipart": "serve", "python_multipart": "serve"}


class CommandUnavailable(Exception):
    """A subcommand's module (or a package it needs) cannot be imported."""


def _import_command(name: str):
    mod = SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(mod)
    except ImportError as err:
        missing = (getattr(err, "name", None) or "").split(".")[0]
        extra = EXTRAS.get(missing)
        hint = (f"install it with: pip install 'dfd-tf[{extra}]'" if extra
                else "reinstall the package")
        raise CommandUnavailable(f"dfd {name} is not available: {err}; {hint}") from None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Every subcommand is listed; only the one that runs is imported (and must import)."""
    parser = argparse.ArgumentParser(prog="dfd", description="Deepfake video detection.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info is the default, -vv debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if a in SUBCOMMANDS), None)
    for name, (mod, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == wanted:
            module = _import_command(name)
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
        logging.getLogger(noisy).setLevel(logging.ERROR if quiet else max(level, logging.WARNING))


#: TensorFlow's import-time lines that say nothing to a user of dfd: the oneDNN notice (dfd
#: turns oneDNN on, see dfd/__init__.py), absl's note before it is set up, the CPU-feature note
TF_STARTUP_NOISE = ("oneDNN custom operations are on", "before absl::InitializeLog() is called",
                    "cpu_feature_guard", "To enable the following instructions")


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``tensorflow`` (when some command first needs it) with its stderr filtered.

    TensorFlow prints its start-up lines (oneDNN, absl, CUDA probing) from C++ straight to
    file descriptor 2 while it is imported, twice (two libraries), whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says. By default the lines of :data:`TF_STARTUP_NOISE` are
    dropped and any other line (a real problem) is kept; ``dfd -q`` drops them all; ``-vv``
    keeps them all. Commands that never use TensorFlow never import it.
    """

    def __init__(self, drop_all: bool = False):
        self.drop_all = drop_all

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: find the real spec, then step aside
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._real = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        with stderr_fd_filtered(self._drop):
            self._real.exec_module(module)

    def _drop(self, line: str) -> bool:
        return self.drop_all or any(n in line for n in TF_STARTUP_NOISE)


def _install_tensorflow_filter(drop_all: bool) -> None:
    if "tensorflow" in sys.modules:
        return
    for f in sys.meta_path:
        if isinstance(f, _QuietTensorFlowImport):
            f.drop_all = f.drop_all or drop_all
            return
    sys.meta_path.insert(0, _QuietTensorFlowImport(drop_all))


def quiet_tensorflow() -> None:
    """Quieten TensorFlow before it is imported: C++ log level ERROR, absl ERROR, and its
    import-time lines hidden (:class:`_QuietTensorFlowImport`). Called for ``dfd -q``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    _install_tensorflow_filter(drop_all=True)


def _debug_requested(argv: list[str]) -> bool:
    """``-vv`` (or ``-v -v``, ``--verbose --verbose``) among the options before the subcommand."""
    n = 0
    for a in argv:
        if a in SUBCOMMANDS:
            break
        if a == "--verbose":
            n += 1
        elif a.startswith("-") and not a.startswith("--"):
            n += a[1:].count("v")
    return n >= 2


def _quiet_requested(argv: list[str]) -> bool:
    """``-q``/``--quiet`` among the options before the subcommand."""
    for a in argv:
        if a in SUBCOMMANDS:
            return False
        if a == "--quiet" or (a.startswith("-") and not a.startswith("--") and "q" in a[1:]):
            return True
    return False


#: exit statuses shared by every command (docs/detect-and-serve.md#exit-status)
EXIT_OK, EXIT_ITEMS_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    """Run one command; every fault ends in one logged line and an exit status: 2 for bad
    input, options or output (a traceback with ``-vv``), 130 for Ctrl-C."""
    argv = sys.argv[1:] if argv is None else argv
    if _quiet_requested(argv):  # before any command module can import TensorFlow
        quiet_tensorflow()
    elif not _debug_requested(argv):
        _install_tensorflow_filter(drop_all=False)
    log = logging.getLogger("dfd")
    command = "?"
    try:
        try:
            parser = build_parser(argv)
        except CommandUnavailable as err:
            logging.basicConfig(format="%(levelname)s dfd: %(message)s")
            log.error("%s", err)
            return EXIT_ERROR
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_ERROR
        command = args.command
        setup_logging(args.verbose, args.quiet)
        for note in getattr(args, "_deprecated_options", []):
            log.warning("%s", note)
        progress.set_enabled(not getattr(args, "no_progress", False))
        module = importlib.import_module(args._module)
        if hasattr(module, "run_for"):
            code = int(module.run_for(args.command, args) or 0)
        else:
            code = int(module.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, as one line, not at interpreter exit
        return code
    except KeyboardInterrupt:
        log.error("dfd %s interrupted (Ctrl-C); what was written so far is kept", command)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        streams.release_stdout()
        log.error("dfd %s: its output was closed early (broken pipe)", command)
        return EXIT_ERROR
    except SystemExit as err:
        if isinstance(err.code, str):  # raise SystemExit("why"): one line, exit 2
            log.error("%s", err.code)
            return EXIT_ERROR
        raise
    except (ValueError, OSError) as err:  # bad input or a file problem: one clear line, exit 2
        log.debug("dfd %s failed", command, exc_info=True)
        log.error("%s", _one_line(err))
        return EXIT_ERROR
    except Exception as err:
        if type(err).__name__ != "DataLossError":  # TensorFlow's: damaged shard data
            raise
        log.debug("dfd %s failed", command, exc_info=True)
        log.error("damaged shard data: %s", _one_line(err))
        return EXIT_ERROR


def _one_line(err: BaseException) -> str:
    """An exception as one line: an OS error with its file, TensorFlow's op text trimmed."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.strerror}: {err.filename}"
    else:
        text = str(getattr(err, "message", None) or err)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\].*$", "", text, flags=re.S)
    return " ".join(text.split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
