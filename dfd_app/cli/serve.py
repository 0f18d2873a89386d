"""``dfd serve``: the detection HTTP service with an upload page (FastAPI + uvicorn).

Binds 127.0.0.1 by default: put a reverse proxy (TLS, authentication) in front of it before
exposing it to a network.
"""

from __future__ import annotations

import argparse
import logging
import socket

from dfd.inference.scorers import ModelLoadError
from dfd_app.cli.common import add_runtime, add_weights_dir, probability, use_weights_dir
from dfd_app.detect import pipeline
from dfd_app.serve.service import ServiceSettings, create_app

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port, 0-65535 (0: any free one) (default: %(default)s)")
    parser.add_argument("--model", action="append", default=[], metavar="PATH|NAME",
                        help="model (default: the shipped model); with --stacker: NAME=PATH, repeated")
    parser.add_argument("--stacker", metavar="JSON", help="stacker JSON from `dfd stack`")
    parser.add_argument("--threshold", type=probability, default=pipeline.DEFAULT_THRESHOLD,
                        help="FAKE when P(fake) >= threshold (default: %(default)s)")
    parser.add_argument("--aggregation", default=pipeline.DEFAULT_AGGREGATION,
                        choices=["mean", "vote", "confident", "max"],
                        help="face scores -> person score (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=pipeline.DEFAULT_N_FRAMES,
                        help="frames sampled per video (default: %(default)s)")
    parser.add_argument("--sampler", default=pipeline.DEFAULT_SAMPLER, choices=["keyframe", "uniform"],
                        help="frame sampler (default: %(default)s)")
    parser.add_argument("--detector", default="default", help="face detector name (default: %(default)s)")
    parser.add_argument("--margin", default="auto", metavar="auto|FLOAT",
                        help="face crop framing (as in dfd detect; default: %(default)s)")
    parser.add_argument("--all-faces", action="store_true",
                        help="score every person as a track (as in dfd detect)")
    parser.add_argument("--max-decoded-mpix", type=float, default=20_000.0,
                        help="refuse a video whose width x height x frames exceeds this many "
                             "megapixels, before decoding it (0: no cap; default: %(default)s, "
                             "about 10 min of 1080p at 30 fps)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0,
                        help="largest accepted upload in MB (default: %(default)s) -> 413")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="per-request time limit in seconds (default: %(default)s) -> 504")
    parser.add_argument("--workers", type=int, default=2,
                        help="videos scored at once (default: %(default)s)")
    parser.add_argument("--max-queue", type=int, default=8,
                        help="requests waiting beyond --workers before 503 (default: %(default)s)")
    add_runtime(parser)
    add_weights_dir(parser)


#: uvicorn's exit status when the server cannot start (e.g. its address cannot be bound)
UVICORN_STARTUP_FAILURE = 3


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 0-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text!r}")
    return value


def check_bind(host: str, port: int) -> None:
    """Bind ``host:port`` once and let go, so that an address that cannot be served (in use,
    not this machine's, no such host) is one clear error before the model loads."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as err:
        raise ValueError(f"cannot serve on --host {host!r}: {getattr(err, 'strerror', None) or err}") from None
    family, kind, proto, _, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind(address)
    except OSError as err:
        raise ValueError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None


def settings_from_args(args):

    if not args.stacker and len(args.model) > 1:
        raise ValueError(f"several --model values need --stacker (got {args.model})")
    for flag, value, ok, rule in (("--workers", args.workers, args.workers >= 1, ">= 1"),
                                  ("--max-queue", args.max_queue, args.max_queue >= 0, ">= 0"),
                                  ("--max-upload-mb", args.max_upload_mb, args.max_upload_mb > 0, "> 0"),
                                  ("--timeout", args.timeout, args.timeout > 0, "> 0"),
                                  ("--max-decoded-mpix", args.max_decoded_mpix,
                                   args.max_decoded_mpix >= 0, ">= 0 (0: no cap)")):
        if not ok:
            raise ValueError(f"{flag} must be {rule}, got {value}")
    return ServiceSettings(
        model=None if args.stacker or not args.model else args.model[0], stacker=args.stacker,
        stack_models=args.model if args.stacker else None, detector=args.detector,
        n_frames=args.frames, sampler=args.sampler, margin=args.margin,
        all_faces=args.all_faces, threshold=args.threshold,
        aggregation=args.aggregation, max_upload_mb=args.max_upload_mb, timeout_s=args.timeout,
        workers=args.workers, max_queue=args.max_queue,
        max_decoded_mpix=args.max_decoded_mpix or None, runtime=args.runtime)


def run(args) -> int:
    import uvicorn


    use_weights_dir(args.weights_dir)
    try:
        settings = settings_from_args(args)
        check_bind(args.host, args.port)  # an address in use fails before the model loads
        ctx = settings.build_context()  # fail here, before binding, when the model cannot load
    except (ModelLoadError, ValueError, ImportError) as err:
        log.error("%s", err)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the service has no authentication; put it behind a proxy", args.host)
    app = create_app(ctx, settings)
    log.info("serving on http://%s:%d/", args.host, args.port)
    # Server.run (not uvicorn.run, which swallows Ctrl-C): after its graceful shutdown the
    # signal is raised again, so Ctrl-C ends the command as in every other (one line, 130)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", access_log=False))
    try:
        server.run()
    except SystemExit as err:  # uvicorn's own exit: it has logged why (e.g. the bind)
        if err.code != UVICORN_STARTUP_FAILURE:
            raise
        log.error("the service could not start on %s:%d (see the error above)", args.host,
                  args.port)
        return 2
    return 0
