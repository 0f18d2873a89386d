"""``dfd predict``: score face shards with a model into video (and frame) score tables.

    dfd predict --model meso4_df --shards runs/shards/test -o runs/scores/meso4_df.csv \\
        --frames-out runs/scores/meso4_df_frames.csv --aggregation mean
"""

from __future__ import annotations

import logging

import numpy as np

from dfd import readers
from dfd.inference.clips import predict_shards
from dfd.inference.frames import predict
from dfd.inference.loading import load_any
from dfd.scores import AGGREGATIONS, write_table
from dfd_app.cli.common import (
    add_no_progress,
    add_out,
    add_runtime,
    add_weights_dir,
    check_table_out,
)

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="registered weights name (meso4_df, meso4_f2f, mesoinception_df, "
                             "mesoinception_f2f, package assets), a .keras file or a SavedModel folder")
    parser.add_argument("--shards", required=True, nargs="+",
                        help="shard folder(s) or .tfrecord file(s)")
    add_out(parser, "video score table (.csv or .parquet)")
    parser.add_argument("--frames-out", help="also write the per-face frame table here")
    parser.add_argument("--aggregation", default="mean", choices=sorted(AGGREGATIONS),
                        help="frame scores -> video score rule (default: mean)")
    parser.add_argument("--clip-len", type=int,
                        help="temporal models: faces per clip (default: the model's own)")
    parser.add_argument("--max-clips", type=int, default=4,
                        help="temporal models: at most this many clips per video (default 4)")
    parser.add_argument("--split", help="score only records of this manifest split (e.g. test)")
    parser.add_argument("--source",
                        help="score only records of this source (csv:ffpp_faces, ffpp_faces "
                             "or ffpp, as --mix names it): a whole source a model never saw")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per batch (default 64)")
    parser.add_argument("--model-name", help="name written in the tables' model column")
    # Keras by default: the reference path of every evaluation (and GPU clusters); auto or
    # tflite score a frame model 1.6x faster on a CPU with the same scores (checked)
    add_runtime(parser, default="keras")
    add_weights_dir(parser)
    add_no_progress(parser)


def _predict_clips(scorer, source, args):
    """Clip table and video table of a temporal model (several clips per long video)."""
    face_size = None  # a Keras model tells its own fixed input side, if any
    shape = scorer.faces_shape or [None] * 3
    clip_len = args.clip_len or shape[1]
    if not clip_len:
        raise SystemExit(f"cannot tell the clip length of {args.model}: give --clip-len")
    if scorer.model is not None:
        model = scorer.model
    else:
        face_size = shape[2] if len(shape) > 2 and shape[2] else None

        def model(x):
            return scorer(np.asarray(x["faces"]), np.asarray(x["mask"]))

    return predict_shards(model, source, clip_len=int(clip_len), max_clips=args.max_clips,
                          face_size=face_size,
                          batch_size=max(1, min(args.batch_size, 8)),
                          aggregation=args.aggregation, model_name=args.model_name or scorer.name,
                          split=args.split, only_source=args.source)


def run(args) -> int:
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_clips < 1:
        raise SystemExit(f"--max-clips must be >= 1, got {args.max_clips}")
    if args.clip_len is not None and args.clip_len < 1:
        raise SystemExit(f"--clip-len must be >= 1, got {args.clip_len}")
    # before any scoring: a table that cannot be written would lose the whole run
    check_table_out(args.out, "--out")
    check_table_out(args.frames_out, "--frames-out")
    source = args.shards[0] if len(args.shards) == 1 else args.shards
    scorer = load_any(args.model, weights_dir=args.weights_dir, batch_size=args.batch_size,
                      runtime=args.runtime)
    if scorer.n_inputs == 2:  # a clip (temporal) model: faces + mask
        frames, videos = _predict_clips(scorer, source, args)
    else:
        frames, videos = predict(scorer, source, aggregation=args.aggregation,
                                 batch_size=args.batch_size, model_name=args.model_name,
                                 weights_dir=args.weights_dir, split=args.split,
                                 only_source=args.source)
    if not len(videos) and args.split:
        held = readers.split_names(source)
        if args.split not in held:  # a mistyped split is an error, not an empty table
            raise ValueError(f"no record of split {args.split!r} in {' '.join(args.shards)}; "
                             f"the shards hold {', '.join(held) or 'no split names'}")
    write_table(videos, args.out)
    if args.frames_out:
        write_table(frames, args.frames_out)
    log.info("wrote %d videos to %s%s", len(videos), args.out,
             f" and {len(frames)} faces to {args.frames_out}" if args.frames_out else "")
    if len(videos):
        print(videos[["video_id", "label", "p_fake", "n_faces", "status"]].to_string(index=False))
    else:
        print("no faces scored")
    return 0
