"""``dfd split`` (sources -> manifest with an identity-safe split) and ``dfd check-split``.

    dfd split /data/dfdc_train_part_0 /data/dfdc_train_part_1 --out split.csv --seed 0
    dfd check-split split.csv      # exit 1 naming the leaking groups, 0 with a one-line OK
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from data_prep import manifests, splits
from dfd_app.cli.common import add_deprecated_alias, add_out

log = logging.getLogger(__name__)


def add_arguments_for(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "split":
        parser.add_argument("sources", nargs="+", metavar="SOURCE",
                            help="dataset folders or list files (DFDC, FaceForensics++, CSV, "
                                 "real/ + fake/ folders, face-crop sets)")
        add_out(parser, "manifest CSV to write, with a split column")
        parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
        parser.add_argument("--fractions", type=float, nargs="+",
                            default=list(splits.DEFAULT_FRACTIONS),
                            help="split fractions (default 0.7 0.15 0.15)")
        parser.add_argument("--names", nargs="+", default=list(splits.DEFAULT_NAMES),
                            help="split names (default train val test)")
        parser.add_argument("--layout", default="auto", choices=("auto",) + manifests.LAYOUTS,
                            help="layout of every SOURCE (default: detect each)")
        parser.add_argument("--group-col", default="group", help="identity column (default group)")
        parser.add_argument("--pooled", action="store_true",
                            help="split the groups of all sources together (default: each "
                                 "source gets its own train/val/test)")
        parser.add_argument("--no-stratify", action="store_true",
                            help="do not balance label mixes across splits")
        parser.add_argument("--use-given", action="store_true",
                            help="keep splits given by the manifest (e.g. DFDC's metadata.json)")
        parser.add_argument("--problems", default=None,
                            help="also write the problems found to this CSV")
    elif name == "check-split":
        parser.add_argument("manifest", help="CSV with split and group columns")
        parser.add_argument("--split-col", default="split",
                            help="column holding the split name (default split)")
        parser.add_argument("--group-col", default="group",
                            help="identity column: no group may span two splits (default group)")
        parser.add_argument("--show", type=int, default=20, metavar="N",
                            help="name at most N leaking groups (default 20)")
        add_deprecated_alias(parser, "--limit", "--show", "show", type=int)
    else:
        raise ValueError(f"dfd_app.cli.split serves split and check-split, not {name!r}")


def run_for(name: str, args: argparse.Namespace) -> int:
    if name == "split":
        return run_split(args)
    if name == "check-split":
        return run_check(args)
    raise ValueError(f"dfd_app.cli.split serves split and check-split, not {name!r}")


def run_split(args) -> int:
    try:
        loaded = [manifests.load_manifest(s, layout=args.layout) for s in args.sources]
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    merged = manifests.merge_manifests(loaded)
    if args.problems:
        Path(args.problems).parent.mkdir(parents=True, exist_ok=True)
        merged.problems.to_csv(args.problems, index=False)
    if merged.items.empty:
        log.error("no usable items in %s (%d problems)", args.sources, len(merged.problems))
        return 1
    try:
        table = splits.split_by_group(merged.items, fractions=args.fractions, names=args.names,
                                      seed=args.seed, group_col=args.group_col,
                                      stratify=not args.no_stratify, use_given=args.use_given,
                                      source_col=None if args.pooled else "source")
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    report = splits.check_leakage(table, group_col=args.group_col)
    if not report.ok:  # cannot happen for split_by_group; guard against a regression
        log.error("%s", report.message())
        return 1
    manifests.write_manifest(table, args.out)
    counts = splits.split_counts(table)
    order = [n for n in args.names if n in counts.index]
    counts = counts.reindex(order + [n for n in counts.index if n not in order])
    print(counts.to_string())
    print(_by_source(table, args.names))
    errors = int((merged.problems["severity"] == "error").sum()) if len(merged.problems) else 0
    print(f"wrote {len(table)} items in {report.n_groups} groups to {args.out}"
          f" ({errors} items left out for errors, {len(merged.problems) - errors} warnings)")
    return 0


def run_check(args) -> int:
    try:
        table = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
        report = splits.check_leakage(table, split_col=args.split_col, group_col=args.group_col)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        log.error("cannot check %s: %s", args.manifest, exc)
        return 2
    print(report.message(limit=args.show))
    if "source" in table.columns and "label" in table.columns:
        print(_by_source(table, list(splits.DEFAULT_NAMES), args.split_col, args.group_col))
    return 0 if report.ok else 1


def _by_source(table, names, split_col="split", group_col="group") -> str:
    """The per-source, per-split counts as text (splits in ``names`` order)."""
    counts = splits.source_split_counts(table, split_col=split_col, group_col=group_col)
    rank = {n: i for i, n in enumerate(names)}
    order = sorted(counts.index, key=lambda k: (k[0], rank.get(k[1], len(rank)), k[1]))
    return "per source:\n" + counts.reindex(order).to_string()
