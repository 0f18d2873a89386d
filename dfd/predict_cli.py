"""``dfd predict``: score face shards with a model into video (and frame) score tables.

    dfd predict --model meso4_df --shards runs/shards/test --out runs/scores/meso4_df.csv \\
        --frames-out runs/scores/meso4_df_frames.csv --aggregation mean
"""

from __future__ import annotations

import logging

from dfd.scores import AGGREGATIONS

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True,
                        help="registered weights name (meso4_df, meso4_f2f, mesoinception_df, "
                             "mesoinception_f2f, package assets), a .keras file or a SavedModel folder")
    parser.add_argument("--shards", required=True, nargs="+",
                        help="shard folder(s) or .tfrecord file(s)")
    parser.add_argument("--out", required=True, help="video score table (.csv or .parquet)")
    parser.add_argument("--frames-out", help="also write the per-face frame table here")
    parser.add_argument("--aggregation", default="mean", choices=sorted(AGGREGATIONS),
                        help="frame scores -> video score rule (default: mean)")
    parser.add_argument("--split", help="score only records of this manifest split (e.g. test)")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per batch (default 64)")
    parser.add_argument("--model-name", help="name written in the tables' model column")
    parser.add_argument("--weights-dir", help="cache folder of registered weights "
                                              "(default $DFD_WEIGHTS_DIR or ~/.cache/dfd/weights)")


def run(args) -> int:
    from dfd.scores import write_table
    from mesonet_tf.predict import predict

    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}")
    source = args.shards[0] if len(args.shards) == 1 else args.shards
    frames, videos = predict(args.model, source, aggregation=args.aggregation,
                             batch_size=args.batch_size, model_name=args.model_name,
                             weights_dir=args.weights_dir, split=args.split)
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
