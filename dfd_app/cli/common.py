"""Argument helpers shared by several ``dfd`` commands (no command of its own)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dfd import presets
from dfd.evaluation.policies import DEFAULT_CLIP, MISSING_POLICIES, THRESHOLD_POLICIES
from dfd.inference.lite import RUNTIMES

#: where the old spellings of renamed options are recorded while parsing (main logs them)
DEPRECATED_DEST = "_deprecated_options"


class DeprecatedAlias(argparse.Action):
    """The old spelling of a renamed option: stores into the new option's ``dest`` (replacing,
    or appending with ``append=True``) and records a deprecation that ``dfd`` logs as a
    warning once logging is set up. Kept for one release."""

    def __init__(self, option_strings, dest, new: str = "", append: bool = False, **kw):
        kw.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kw)
        self.new, self.append = new, append

    def __call__(self, parser, namespace, values, option_string=None):
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)
        notes = list(getattr(namespace, DEPRECATED_DEST, []))
        notes.append(f"{option_string} is deprecated and goes in the next release: use {self.new}")
        setattr(namespace, DEPRECATED_DEST, notes)


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str,
                         append: bool = False, **kw) -> None:
    """Accept ``old`` as a deprecated spelling of the option ``new`` (same ``dest``)."""
    p.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, append=append,
                   help=f"deprecated spelling of {new} (goes in the next release)", **kw)


def add_out(p: argparse.ArgumentParser, help: str, required: bool = True, **kw) -> None:
    """``-o/--out``: where a command writes (the one spelling of every command)."""
    p.add_argument("-o", "--out", required=required, help=help, **kw)


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (they are also off when stderr is not a terminal)."""
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they show only on a terminal anyway)")


def add_runtime(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--runtime``: what runs a Keras frame model (dfd.inference.lite)."""
    p.add_argument("--runtime", default=default, choices=list(RUNTIMES),
                   help="what runs a frame model: auto = TensorFlow Lite (XNNPACK) where the "
                        "model converts and scores as Keras does (checked; cached under "
                        "$DFD_CACHE_DIR, default ~/.cache/dfd), else Keras; keras; tflite "
                        "(an error where it cannot) (default: %(default)s)")


def use_weights_dir(weights_dir: str | None) -> None:
    """Make ``--weights-dir`` the place every registered name of this process is looked up
    (it sets ``$DFD_WEIGHTS_DIR``; the commands that load through the detect pipeline and
    the default model use it)."""
    if weights_dir:
        os.environ[presets.ENV_DIR] = str(weights_dir)


def add_weights_dir(p: argparse.ArgumentParser) -> None:
    """``--weights-dir``: where registered weights names are looked up."""
    p.add_argument("--weights-dir", metavar="DIR",
                   help="folder of registered weights files, for models given by name "
                        "(default: $DFD_WEIGHTS_DIR, else ~/.cache/dfd/weights)")


def model_spec(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` -> (name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path or ":" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (NAME without ':'), got {text!r}")
    return name, Path(path)


def probability(text: str) -> float:
    """An argparse ``type``: a number within [0, 1] (a threshold, a precision)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number within [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text!r}")
    return value


def count(text: str) -> int:
    """An argparse ``type``: a whole number >= 0 (0: none)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def clip_eps(text: str) -> float:
    """An argparse ``type``: the log-loss clipping EPS, within [0, 0.5) (scores are clipped
    to [EPS, 1 - EPS], which is empty or inverted from 0.5 on)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number within [0, 0.5), got {text!r}") from None
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"must be within [0, 0.5), got {text!r}")
    return value


def check_table_out(path, flag: str) -> None:
    """Before any work: ``path`` can take a score table (``.csv``/``.parquet``, not a folder);
    a ValueError naming ``flag`` and the path otherwise."""
    if path is None:
        return
    p = Path(path)
    if p.suffix not in (".csv", ".parquet", ".gz"):
        raise ValueError(f"{flag} {path} must end in .csv or .parquet")
    check_file_out(path, flag)


def check_file_out(path, flag: str) -> None:
    """Before any work: ``path`` is not a folder and its folder is not a file (a ValueError
    naming ``flag`` and the path), so a long run does not end in a write that cannot be."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path} is a folder: give a file name")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
            break


def check_dir_out(path, flag: str) -> None:
    """Before any work: ``path`` is a folder or can become one (a ValueError naming ``flag``
    and the path when it, or a folder above it, is a file)."""
    if path is None:
        return
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ValueError(f"{flag} {path}: {q} is a file, not a folder")
            break


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``dfd evaluate`` and ``dfd compare``."""
    p.add_argument("--labels", type=Path, help="CSV video_id,label filling/overriding unknown labels")
    p.add_argument("--threshold-policy", choices=THRESHOLD_POLICIES, default="fixed",
                   help="fixed (--threshold), f1 (max F1) or youden (max TPR-FPR); "
                        "f1/youden are chosen on --val and applied unchanged to the test scores")
    p.add_argument("--threshold", type=probability, default=0.5,
                   help="threshold of the fixed policy, within [0, 1] (0.5)")
    p.add_argument("--missing", choices=sorted(MISSING_POLICIES), default="exclude",
                   help="videos without a score (no_face/error): exclude (default), or score them "
                        "as_real=0, as_fake=1, as_half=0.5")
    p.add_argument("--bootstrap", type=count, default=1000, metavar="N",
                   help="bootstrap resamples of videos for 95%% CIs (0: none; default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--log-loss-clip", type=clip_eps, default=DEFAULT_CLIP, metavar="EPS",
                   help="clip scores to [EPS, 1-EPS] for log loss, EPS within [0, 0.5) "
                        "(default 1e-15)")
    add_out(p, "report directory", type=Path)
    add_no_progress(p)


