"""Identity-safe train / validation / test splits, and the check that proves them.

Whole identity groups (``group``: a DFDC ``original``, a FaceForensics++ id component, an
actor) are assigned to one split each, so no person is seen on both sides. Splitting by item
instead puts a fake on one side and its source video on the other: the model then recognises
faces, not fakes, and validation scores lie (the original study's 95% validation accuracy
fell to 56% on test). :func:`random_split_by_item` exists only to demonstrate that leak;
:func:`check_leakage` finds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dfd.labels import FAKE, LABEL_NAMES, REAL, UNKNOWN

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
DEFAULT_NAMES = ("train", "val", "test")


def _check_fractions(fractions, names) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if len(f) != len(names):
        raise ValueError(f"{len(f)} fractions {list(fractions)} for {len(names)} split names "
                         f"{list(names)}")
    if len(set(names)) != len(names) or any(not str(n) for n in names):
        raise ValueError(f"split names must be distinct and non-empty, got {list(names)}")
    if (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    return f


def _assign_groups(sizes: pd.Series, strata: pd.Series, f: np.ndarray, names, seed: int) -> dict:
    """Group -> split: per stratum, shuffled groups (largest first) go to the neediest split."""
    rng = np.random.default_rng(seed)
    out = {}
    for stratum in sorted(strata.unique(), key=str):
        keys = np.array(sorted(strata.index[strata == stratum], key=str), dtype=object)
        keys = keys[rng.permutation(len(keys))]
        order = sorted(range(len(keys)), key=lambda i: -int(sizes[keys[i]]))  # stable
        target = f * float(sizes[keys].sum())
        have = np.zeros(len(f))
        for i in order:
            deficit = np.where(f > 0, target - have, -np.inf)
            k = int(np.argmax(deficit))
            out[keys[i]] = names[k]
            have[k] += sizes[keys[i]]
    return out


def group_sources(items: pd.DataFrame, group_col: str = "group",
                  source_col: str = "source") -> pd.Series:
    """Group -> the source (dataset) it belongs to: the source of most of its items (ties go
    to the smallest name), so a group that spans two sources still lands in one split."""
    df = items[[group_col, source_col]].astype(str)
    counts = df.groupby([group_col, source_col]).size().reset_index(name="n")
    counts = counts.sort_values(["n", source_col], ascending=[False, True], kind="stable")
    return counts.drop_duplicates(group_col).set_index(group_col)[source_col]


def split_by_group(items: pd.DataFrame, fractions=DEFAULT_FRACTIONS, names=DEFAULT_NAMES,
                   seed: int = 0, group_col: str = "group", stratify: bool = True,
                   use_given: bool = False, split_col: str = "split",
                   label_col: str = "label", source_col: str | None = "source",
                   ) -> pd.DataFrame:
    """A copy of ``items`` with ``split_col`` set so that no group spans two splits.

    Splits get about ``fractions`` of the items **of each source** (``source_col``, the
    dataset an item came from; ``None`` pools all sources): every source gets its own
    train / val / test, so a small source is not swallowed whole by one split of a big one.
    With ``stratify`` the groups of a source are split separately per label mix (all REAL /
    all FAKE / mixed / ...), which keeps labels roughly balanced across splits within each
    source. Deterministic for a seed, whatever the row order. The previous
    split column is kept as ``given_split``. With ``use_given``, groups that carry a
    manifest-given split (e.g. DFDC's ``train``/``test``) keep it and only the rest is split.
    """
    names = [str(n) for n in names]
    f = _check_fractions(fractions, names)
    if group_col not in items.columns:
        raise ValueError(f"no group column {group_col!r} in {list(items.columns)}")
    groups = items[group_col].astype(str)
    if (groups.str.strip() == "").any():
        bad = items.index[groups.str.strip() == ""][:5].tolist()
        raise ValueError(f"{int((groups.str.strip() == '').sum())} items have an empty "
                         f"{group_col!r} (rows {bad}...)")
    out = items.copy()
    given = (out[split_col].astype(str) if split_col in out.columns
             else pd.Series("", index=out.index))
    out["given_split"] = given.values
    assignment: dict = {}
    if use_given:
        has = given != ""
        for g, sub in given[has].groupby(groups[has]):
            counts = sub.value_counts()
            if len(counts) > 1:
                log.warning("group %s has several given splits %s: using %s",
                            g, dict(counts), counts.index[0])
            assignment[g] = counts.index[0]
    rest = ~groups.isin(list(assignment))
    if rest.any():
        sub_groups = groups[rest]
        sizes = sub_groups.value_counts()
        if stratify and label_col in out.columns:
            mix = out.loc[rest, label_col].groupby(sub_groups).agg(
                lambda s: "+".join(LABEL_NAMES.get(int(v), str(v)) for v in sorted(set(s))))
        else:
            mix = pd.Series("all", index=sizes.index)
        if source_col and source_col in out.columns:
            owner = group_sources(out.loc[rest], group_col, source_col).reindex(sizes.index)
        else:
            owner = pd.Series("", index=sizes.index)
        for src in sorted(owner.unique(), key=str):
            keys = owner.index[owner == src]
            assignment.update(_assign_groups(sizes[keys], mix[keys], f, names, seed))
            got = {assignment[k] for k in keys}
            empty = [n for n, fr in zip(names, f) if fr > 0 and n not in got]
            if src and empty:
                log.warning("source %s: %d groups leave split(s) %s empty", src, len(keys), empty)
    out[split_col] = groups.map(assignment).astype(str).values
    return out


def random_split_by_item(items: pd.DataFrame, fractions=DEFAULT_FRACTIONS,
                         names=DEFAULT_NAMES, seed: int = 0,
                         split_col: str = "split") -> pd.DataFrame:
    """Assign each ITEM at random, ignoring groups. Leaks identities: for demonstration only."""
    names = [str(n) for n in names]
    f = _check_fractions(fractions, names)
    rng = np.random.default_rng(seed)
    out = items.copy()
    out[split_col] = rng.choice(np.array(names, dtype=object), size=len(out), p=f)
    return out


@dataclass
class LeakageReport:
    """Groups that span more than one split (``leaking``: group, splits, counts, n_items)."""

    leaking: pd.DataFrame
    n_groups: int
    n_items: int

    @property
    def ok(self) -> bool:
        return self.leaking.empty

    @property
    def n_leaking(self) -> int:
        return len(self.leaking)

    def message(self, limit: int = 20) -> str:
        if self.ok:
            return f"OK: {self.n_groups} groups, {self.n_items} items, no group spans two splits"
        shown = ", ".join(f"{r.group} ({r.counts})" for r in self.leaking.head(limit).itertuples())
        more = f" ... and {self.n_leaking - limit} more" if self.n_leaking > limit else ""
        return (f"LEAK: {self.n_leaking} of {self.n_groups} groups span two or more splits: "
                f"{shown}{more}")


def check_leakage(items: pd.DataFrame, split_col: str = "split",
                  group_col: str = "group") -> LeakageReport:
    """Find every group whose items sit in more than one split (empty splits ignored)."""
    for c in (split_col, group_col):
        if c not in items.columns:
            raise ValueError(f"no column {c!r} to check leakage with; found {list(items.columns)}")
    df = items[[group_col, split_col]].astype(str)
    df = df[df[split_col] != ""]
    counts = df.groupby([group_col, split_col]).size()
    per_group = counts.groupby(level=0).size()
    leaking_groups = per_group.index[per_group > 1]
    rows = []
    for g in sorted(leaking_groups, key=str):
        c = counts.loc[g]
        rows.append({"group": g, "splits": ",".join(map(str, c.index)),
                     "counts": ", ".join(f"{s}:{int(n)}" for s, n in c.items()),
                     "n_items": int(c.sum())})
    leaking = pd.DataFrame(rows, columns=["group", "splits", "counts", "n_items"])
    return LeakageReport(leaking, int(per_group.size), int(len(df)))


def source_split_counts(items: pd.DataFrame, split_col: str = "split",
                        source_col: str = "source", label_col: str = "label",
                        group_col: str = "group") -> pd.DataFrame:
    """Items per source and split (rows), with REAL / FAKE / total / groups columns; a
    ``videos`` column too when the items carry a ``video`` key (frames of one video)."""
    if source_col not in items.columns:
        raise ValueError(f"no column {source_col!r} to count sources by; found {list(items.columns)}")
    df = items.copy()
    df[split_col] = df[split_col].astype(str)
    df[source_col] = df[source_col].astype(str)
    keys = [source_col, split_col]
    labels = df[label_col].astype(str).map(
        lambda v: LABEL_NAMES.get(int(v), v) if v.lstrip("-").isdigit() else v.upper())
    table = pd.crosstab([df[source_col], df[split_col]], labels)
    cols = [c for c in (LABEL_NAMES[k] for k in (REAL, FAKE, UNKNOWN)) if c in table.columns]
    table = table.reindex(columns=cols, fill_value=0)
    table["total"] = table.sum(axis=1)
    if group_col in df.columns:
        table["groups"] = df.groupby(keys)[group_col].nunique()
    if "video" in df.columns:
        vid = df["video"].astype(str).where(df["video"].astype(str) != "", df["video_id"])
        table["videos"] = vid.groupby([df[source_col], df[split_col]]).nunique()
    return table


def split_counts(items: pd.DataFrame, split_col: str = "split",
                 label_col: str = "label") -> pd.DataFrame:
    """Items per split (rows) and label (columns REAL / FAKE / UNKNOWN / total)."""
    labels = items[label_col].map(lambda v: LABEL_NAMES.get(int(v), str(v)))
    table = pd.crosstab(items[split_col].astype(str), labels)
    cols = [c for c in (LABEL_NAMES[k] for k in (REAL, FAKE, UNKNOWN)) if c in table.columns]
    table = table.reindex(columns=cols, fill_value=0)
    table["total"] = table.sum(axis=1)
    table["groups"] = items.groupby(items[split_col].astype(str))["group"].nunique() \
        if "group" in items.columns else 0
    return table
