"""``dfd detect``: is this video fake? Score video files, folders or list files.

Writes one row per video as it is done (CSV by default, JSON lines with ``--format jsonl``)
to stdout or ``--out``; a progress bar goes to stderr on a terminal only. Exit status: 0 when
every video was read (``ok`` or ``no_face``), 1 when any row has ``status=error``, 2 on bad
options, a model that cannot load or results that cannot be written (the rows written before
stay whole), 130 on Ctrl-C (see docs/detect-and-serve.md).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dfd import progress
from dfd.inference.scorers import ModelLoadError
from dfd_app.cli import streams
from dfd_app.cli.common import (
    add_no_progress,
    add_runtime,
    add_weights_dir,
    check_dir_out,
    probability,
    use_weights_dir,
)
from dfd_app.detect import inputs as inputs_mod
from dfd_app.detect import output, pipeline

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="video files, folders (searched recursively) or @list.txt files")
    parser.add_argument("--list", action="append", default=[], metavar="FILE",
                        help="a file listing videos or folders, one per line (repeatable)")
    parser.add_argument("--model", action="append", default=[], metavar="PATH|NAME",
                        help="model: .keras file, SavedModel dir or registered weights name "
                             "(default: the shipped model); with --stacker: NAME=PATH, repeated")
    parser.add_argument("--stacker", metavar="JSON", help="stacker JSON from `dfd stack`")
    parser.add_argument("--threshold", type=probability, default=pipeline.DEFAULT_THRESHOLD,
                        help="FAKE when P(fake) >= threshold (default: %(default)s)")
    parser.add_argument("--uncertain", default="auto", metavar="auto|off|LOW,HIGH",
                        help="verdict UNCERTAIN for scores in a band around the threshold: the "
                             "model's own band (auto, when its preset records one), none (off), "
                             "or LOW,HIGH (default: %(default)s)")
    parser.add_argument("--aggregation", default=pipeline.DEFAULT_AGGREGATION,
                        choices=["mean", "vote", "confident", "max"],
                        help="face scores -> person score; the video takes its most suspicious "
                             "person (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=pipeline.DEFAULT_N_FRAMES,
                        help="frames sampled per video (default: %(default)s)")
    parser.add_argument("--sampler", default=pipeline.DEFAULT_SAMPLER,
                        choices=["keyframe", "uniform"], help="frame sampler (default: %(default)s)")
    parser.add_argument("--detector", default="default", help="face detector name (default: %(default)s)")
    parser.add_argument("--margin", default="auto", metavar="auto|FLOAT",
                        help="face crop framing: auto = the one each model was trained on "
                             "(1.06 for the shipped models, 1.3 for the authors' weights), or a "
                             "number for every model (default: %(default)s)")
    parser.add_argument("--crops", action="store_true",
                        help="inputs are face crop images (jpg/png/...; folders searched for "
                             "them), scored as they are, without face detection")
    parser.add_argument("--all-faces", action="store_true",
                        help="score every person as a track and report the most suspicious "
                             "(default: the largest face of each frame)")
    parser.add_argument("--format", choices=["csv", "jsonl"], default="csv",
                        help="csv: one row per video; jsonl: adds per-frame/per-person scores and "
                             "face boxes (default: %(default)s)")
    parser.add_argument("-o", "--out", metavar="FILE", help="write the table here (default: stdout)")
    parser.add_argument("--plot", metavar="DIR", help="write per-video frame-score timelines (PNG)")
    parser.add_argument("--faces", metavar="DIR", help="write the face crops used (JPEG)")
    parser.add_argument("--explain", metavar="DIR",
                        help="write each face with its Grad-CAM heat map of P(fake) (PNG); "
                             "with --format jsonl each face also gets 'attention' (peak, "
                             "8x8 grid)")
    add_runtime(parser)
    add_weights_dir(parser)
    add_no_progress(parser)


def parse_band(text: str):
    """``auto`` / ``off`` / ``LOW,HIGH`` -> what :func:`pipeline.build_context` takes."""
    if text in ("auto", "off"):
        return text
    parts = text.split(",")
    try:
        low, high = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"--uncertain must be auto, off or LOW,HIGH, got {text!r}") from None
    return (low, high)


def run(args) -> int:
    if not args.inputs and not args.list:
        log.error("no input: give video files, folders, @list.txt or --list FILE")
        return 2
    if args.stacker and not args.model:
        log.error("--stacker needs --model NAME=PATH for each model the stacker combines")
        return 2
    if not args.stacker and len(args.model) > 1:
        log.error("several --model values need --stacker (got %s)", args.model)
        return 2
    if args.frames < 1:
        log.error("--frames must be >= 1, got %d", args.frames)
        return 2
    try:  # before the model loads: an artifact folder that cannot be is no silent loss later
        for flag, where in (("--plot", args.plot), ("--faces", args.faces),
                            ("--explain", args.explain)):
            check_dir_out(where, flag)
    except ValueError as err:
        log.error("%s", err)
        return 2
    # listed first (cheap: names only): nothing to score fails before the model loads, and
    # the bar has a total and an ETA
    extensions = (inputs_mod.IMAGE_EXTENSIONS if args.crops else inputs_mod.VIDEO_EXTENSIONS)
    empty: list[str] = []
    items = list(inputs_mod.iter_inputs(args.inputs, args.list, extensions, empty))
    unit = "face" if args.crops else "video"
    kinds = ", ".join(sorted(extensions))
    if not items:
        log.error("nothing to score: no %s files (%s) in %s", unit, kinds,
                  " ".join(map(str, [*args.inputs, *args.list])))
        return 2
    if empty:
        log.warning("no %s files (%s) in %s; going on with the %d item(s) of the other "
                    "inputs", unit, kinds, ", ".join(empty), len(items))
    use_weights_dir(args.weights_dir)
    try:
        ctx = pipeline.build_context(
            model=None if args.stacker or not args.model else args.model[0],
            stacker=args.stacker, stack_models=args.model if args.stacker else None,
            detector=args.detector, n_frames=args.frames, sampler=args.sampler,
            margin=args.margin, all_faces=args.all_faces, threshold=args.threshold,
            aggregation=args.aggregation,
            plot_dir=args.plot, faces_dir=args.faces, details=args.format == "jsonl",
            explain_dir=args.explain,
            crops=args.crops, uncertain=parse_band(args.uncertain), runtime=args.runtime)
    except (ModelLoadError, ValueError, ImportError) as err:
        log.error("%s", err)
        return 2
    try:
        status = output.detect_to(items, ctx, args.out, args.format,
                                  progress.bar(len(items), f"{unit}s", unit))
    except output.OutputError as err:
        log.error("%s", err)
        if err.broken_pipe or args.out is None:
            streams.release_stdout()
        return 2
    for what, where in (("per-frame score plots", args.plot), ("face crops", args.faces),
                        ("heat-map overlays", args.explain), ("verdict table", args.out)):
        if where:
            log.info("%s written to %s", what, Path(where).resolve())
    return status
