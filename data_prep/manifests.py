"""Read the supported dataset layouts into one validated table of items.

Every layout becomes the same :data:`COLUMNS` table (``video_id, path, member, label, group,
source, split, kind``). ``group`` is the identity group that a split must never cut through.
Layouts (auto-detected, or named with ``layout=``):

* ``dfdc``: a folder with DFDC's ``metadata.json``, or a folder of ``dfdc_train_part_N/``;
  group = ``original`` for fakes, the video's own file name for reals.
* ``ffpp``: FaceForensics++ (``original_sequences/``, ``manipulated_sequences/``), including
  the DeepFakeDetection actors; groups joined through every fake with a union-find.
* ``csv``: ``path,label[,group]`` (or ``file,label,...``; ``original`` acts as group; an
  ``archive`` column names a tar holding ``file``), paths relative to the CSV's folder.
  A folder holding ``metadata.csv`` or ``labels.csv`` is read the same way.
* ``real_fake``: ``real/`` and ``fake/`` folders, searched recursively.
* ``manifest``: a CSV written by :func:`write_manifest`.

Optional columns (present when the layout knows them, ``""`` for items that lack them):

* ``original``: the real video an item was made from, for pairing a fake with its real
  (DFDC ``original``; FaceForensics++ the target video; for a REAL its own video).
* ``video`` and ``frame``: for crop sets with several crops (frames) per video (a CSV with a
  ``frame`` column, e.g. ``ffpp_faces``), the video a crop belongs to and its frame number.
  ``dfd prep`` writes the crops of one video as ONE multi-frame record whose id is ``video``,
  so every metric counts a video once (ten near-identical frames are not ten test cases).

Problems (missing files, unknown labels, duplicate ids/paths) never raise: they are rows of
``Manifest.problems`` (``item, problem, severity``); items with an ``error`` are left out.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dfd.labels import FAKE, REAL, UNKNOWN, parse_label

log = logging.getLogger(__name__)

COLUMNS = ["video_id", "path", "member", "label", "group", "source", "split", "kind"]
OPTIONAL_COLUMNS = ["original", "video", "frame"]
PROBLEM_COLUMNS = ["item", "problem", "severity"]
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
LAYOUTS = ("dfdc", "ffpp", "csv", "faces", "real_fake", "manifest")
_PAIR_TOKEN = re.compile(r"([_\-.](real|fake|original|df))$", re.IGNORECASE)


def _empty_items() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "label" else object) for c in COLUMNS})


def _empty_problems() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})


@dataclass
class Manifest:
    """The items of one or several sources, and the problems found while reading them."""

    items: pd.DataFrame = field(default_factory=_empty_items)
    problems: pd.DataFrame = field(default_factory=_empty_problems)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def errors(self) -> pd.DataFrame:
        return self.problems[self.problems["severity"] == "error"]


class _Collector:
    """Gathers item rows and problem rows for one source, then validates them."""

    def __init__(self, source: str):
        self.source = source
        self.rows: list[dict] = []
        self.problems: list[dict] = []

    def problem(self, item, problem: str, severity: str = "error") -> None:
        self.problems.append({"item": str(item), "problem": problem, "severity": severity})

    def add(self, video_id, path, label, group, split="", member="", kind=None, **extra) -> None:
        """One item; ``extra`` sets :data:`OPTIONAL_COLUMNS` (unknown names raise)."""
        unknown = set(extra) - set(OPTIONAL_COLUMNS)
        if unknown:
            raise ValueError(f"unknown manifest columns {sorted(unknown)}: "
                             f"optional ones are {OPTIONAL_COLUMNS}")
        lab = parse_label_safe(label)
        if lab is None:
            return self.problem(video_id, f"unknown label {label!r}")
        if kind is None:
            kind = _kind_of(member or path)
            if kind is None:
                return self.problem(video_id, f"unsupported type {Path(member or path).suffix!r}")
        self.rows.append({"video_id": str(video_id), "path": str(path), "member": str(member),
                          "label": lab, "group": str(group), "source": self.source,
                          "split": str(split or ""), "kind": kind,
                          **{k: str(v) for k, v in extra.items()}})

    def finish(self, check_files: bool = True) -> Manifest:
        if self.rows:
            extra = [c for c in OPTIONAL_COLUMNS if any(c in r for r in self.rows)]
            items = pd.DataFrame(self.rows, columns=COLUMNS + extra)
            items[extra] = items[extra].fillna("")
        else:
            items = _empty_items()
        return self.validate(items, check_files)

    def validate(self, items: pd.DataFrame, check_files: bool = True) -> Manifest:
        """Integer labels, existing files, no duplicates; problems logged and kept."""
        items["label"] = items["label"].astype("int64")
        if check_files and len(items):
            items = items[_files_exist(items, self)]
        items = _drop_duplicates(items, self)
        items = _check_videos(items, self)
        problems = pd.DataFrame(self.problems, columns=PROBLEM_COLUMNS)
        _log_problems(self.source, problems)
        return Manifest(items.reset_index(drop=True), problems)


def parse_label_safe(value) -> int | None:
    """:func:`dfd.labels.parse_label`, or ``None`` for a value it rejects."""
    try:
        return parse_label(value)
    except ValueError:
        return None


def _kind_of(name) -> str | None:
    ext = Path(str(name)).suffix.lower()
    return "video" if ext in VIDEO_EXTS else "image" if ext in IMAGE_EXTS else None


def _default_group(name) -> str:
    """A file's stem with a trailing ``_real``/``_fake`` token removed (pairs share a group)."""
    return _PAIR_TOKEN.sub("", Path(str(name)).stem) or Path(str(name)).stem


def _files_exist(items: pd.DataFrame, col: _Collector) -> pd.Series:
    """Check files (one ``stat`` each) and tar members (each archive's index read once)."""
    ok = pd.Series(True, index=items.index)
    plain = items["member"] == ""
    for idx, row in items[plain].iterrows():
        if not Path(row["path"]).is_file():
            col.problem(row["video_id"], f"missing file {row['path']}")
            ok[idx] = False
    for archive, sub in items[~plain].groupby("path", sort=True):
        try:
            with tarfile.open(archive) as tar:
                names = set(tar.getnames())
        except (OSError, tarfile.TarError) as exc:
            names = set()
            log.warning("cannot read archive %s: %s", archive, exc)
        missing = ~sub["member"].isin(names)
        for idx, row in sub[missing].iterrows():
            col.problem(row["video_id"], f"missing member {row['member']} in {archive}")
            ok[idx] = False
    return ok


def _drop_duplicates(items: pd.DataFrame, col: _Collector) -> pd.DataFrame:
    """Keep the first of each repeated ``video_id`` and each repeated ``path``+``member``."""
    dup_id = items.duplicated("video_id", keep="first")
    dup_path = items.duplicated(["path", "member"], keep="first") & ~dup_id
    for _, row in items[dup_id].iterrows():
        col.problem(row["video_id"], "duplicate video_id")
    for _, row in items[dup_path].iterrows():
        where = row["path"] + (f"::{row['member']}" if row["member"] else "")
        col.problem(row["video_id"], f"duplicate path {where}")
    return items[~(dup_id | dup_path)]


def _check_videos(items: pd.DataFrame, col: _Collector) -> pd.DataFrame:
    """Drop the crops of a ``video`` whose crops disagree on label, group or split (one
    record cannot hold them), each named in a problem row."""
    if "video" not in items.columns or not len(items):
        return items
    has = items["video"].astype(str) != ""
    keys = [c for c in ("label", "group", "split", "source") if c in items.columns]
    mixed = items[has].groupby("video")[keys].nunique().max(axis=1) > 1
    bad_videos = set(mixed.index[mixed])
    if not bad_videos:
        return items
    bad = items["video"].isin(bad_videos) & has
    for _, row in items[bad].iterrows():
        col.problem(row["video_id"], f"video {row['video']!r} mixes crops of different "
                    f"{'/'.join(keys)}: left out")
    return items[~bad]


def _log_problems(source: str, problems: pd.DataFrame) -> None:
    if problems.empty:
        return
    errors = int((problems["severity"] == "error").sum())
    first = "; ".join(f"{r.item}: {r.problem}" for r in problems.head(5).itertuples())
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    log.warning("%s: %d problems (%d errors%s): %s%s", source, len(problems), errors,
                ", those items left out" if errors else "", first, more)


# ---------------------------------------------------------------------- layouts


def detect_layout(source: str | Path) -> str:
    """Name the layout of ``source`` (a folder or a file); ``ValueError`` when none fits."""
    p = Path(source)
    if p.is_file():
        if p.name == "metadata.json":
            return "dfdc"
        if p.suffix.lower() == ".csv":
            header = p.open(encoding="utf-8").readline().strip().lower().split(",")
            return "manifest" if {"video_id", "kind"} <= set(header) else "csv"
        raise ValueError(f"cannot tell the layout of file {p}: expected metadata.json or a .csv")
    if not p.is_dir():
        raise ValueError(f"source does not exist: {p}")
    names = {c.name for c in p.iterdir()}
    if "metadata.json" in names or any(n.startswith("dfdc_train_part") for n in names):
        return "dfdc"
    if names & {"original_sequences", "manipulated_sequences"}:
        return "ffpp"
    if names & {"metadata.csv", "labels.csv"} or len([n for n in names if n.endswith(".csv")]) == 1:
        return "csv"
    if any(_folder_label(p / n) is not None for n in names):
        return "real_fake"
    raise ValueError(
        f"cannot tell the layout of {p}: expected metadata.json or dfdc_train_part_*/ (DFDC), "
        "original_sequences/ or manipulated_sequences/ (FaceForensics++), a .csv list, "
        "or real/ and fake/ folders")


def _load_dfdc(root: Path, col: _Collector) -> None:
    if root.is_file():
        metas = [root]
    elif (root / "metadata.json").is_file():
        metas = [root / "metadata.json"]
    else:
        metas = sorted(root.glob("*/metadata.json"))
    if not metas:
        col.problem(root, "no metadata.json found")
    for meta in metas:
        try:
            entries = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            col.problem(meta, f"unreadable metadata.json: {exc}")
            continue
        for name, info in sorted(entries.items()):
            label, original = info.get("label"), info.get("original") or ""
            group = original or name
            if parse_label_safe(label) == FAKE and not original:
                col.problem(name, "FAKE without 'original': grouped by its own name", "warning")
            col.add(name, meta.parent / name, label, group, split=info.get("split", ""),
                    original=original or name)
        listed = set(entries)
        for f in sorted(meta.parent.iterdir()):
            if f.suffix.lower() in VIDEO_EXTS and f.name not in listed:
                col.problem(f.name, f"video not listed in {meta}", "warning")


_FF_REAL = re.compile(r"^(\d+)$")
_FF_FAKE = re.compile(r"^(\d+)_(\d+)$")
_DFD_REAL = re.compile(r"^(\d+)__")
_DFD_FAKE = re.compile(r"^(\d+)_(\d+)__")


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, *xs: str) -> None:
        roots = sorted({self.find(x) for x in xs})
        for r in roots[1:]:
            self.parent[r] = roots[0]  # the smallest key names the group


def _load_ffpp(root: Path, col: _Collector) -> None:
    uf = _UnionFind()
    found = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if f.suffix.lower() not in VIDEO_EXTS or "masks" in rel.parts or len(rel.parts) < 3:
            continue
        kind, method, stem = rel.parts[0], rel.parts[1], f.stem
        actors = method in ("actors", "DeepFakeDetection")
        real_re, fake_re = (_DFD_REAL, _DFD_FAKE) if actors else (_FF_REAL, _FF_FAKE)
        prefix = "ffpp-actor-" if actors else "ffpp-yt-"
        if kind == "original_sequences":
            label, m = REAL, real_re.match(stem)
        elif kind == "manipulated_sequences":
            label, m = FAKE, fake_re.match(stem)
        else:
            continue
        if m is None:
            col.problem(rel.as_posix(), f"unexpected FaceForensics++ name {f.name!r}: "
                        "grouped by its own name", "warning")
            keys = [f"ffpp-file-{rel.as_posix()}"]
            original = keys[0]
        else:
            keys = [prefix + g for g in m.groups()]
            original = _ffpp_original(rel, stem, m, label == REAL, actors)
        uf.union(*keys)
        found.append((rel, f, label, keys[0], original))
    for rel, f, label, key, original in found:
        col.add(rel.as_posix(), f, label, uf.find(key), original=original)


def _ffpp_original(rel: Path, stem: str, m: re.Match, real: bool, actors: bool) -> str:
    """The real video a FaceForensics++ video was made from, at the same compression: a
    fake ``000_003`` -> ``ffpp:youtube/c23/000``, a DFD fake ``01_02__walking__X`` ->
    ``ffpp:actors/c23/01__walking``; a real video -> its own."""
    if real:
        video = stem
    elif actors:
        video = f"{m.group(1)}__{stem.split('__')[1]}"
    else:
        video = m.group(1)
    return f"ffpp:{'actors' if actors else 'youtube'}/{rel.parts[2]}/{video}"


def _pick(columns, *names):
    return next((c for c in names if c in columns), None)


def _load_csv(csv_path: Path, col: _Collector) -> None:
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    table.columns = [c.strip().lower() for c in table.columns]
    path_c = _pick(table.columns, "path", "file", "filename", "video")
    if path_c is None:
        raise ValueError(f"{csv_path}: no path column (expected path or file), "
                         f"found {list(table.columns)}")
    label_c = _pick(table.columns, "label")
    if label_c is None:
        col.problem(csv_path, "no label column: every item is UNKNOWN", "warning")
    group_c, orig_c = _pick(table.columns, "group"), _pick(table.columns, "original")
    arch_c, split_c = _pick(table.columns, "archive"), _pick(table.columns, "split")
    target_c, donor_c = _pick(table.columns, "target"), _pick(table.columns, "source")
    frame_c, video_c = _pick(table.columns, "frame"), _pick(table.columns, "video")
    if video_c == path_c:
        video_c = None
    base = csv_path.parent
    for r in table.to_dict("records"):
        name = r[path_c].strip()
        if not name:
            col.problem(f"{csv_path}:row", "empty path")
            continue
        group = (r[group_c] if group_c else "") or (r[orig_c] if orig_c else "")
        group = group.strip() or _default_group(name)
        label = r[label_c] if label_c else UNKNOWN
        split = r[split_c] if split_c else ""
        archive = r[arch_c].strip() if arch_c else ""
        extra = {}
        original = (r[orig_c] if orig_c else "").strip() or (r[target_c] if target_c else "").strip()
        if orig_c or target_c:
            extra["original"] = original
        if frame_c:
            extra["frame"] = r[frame_c].strip()
            extra["video"] = _video_of(r, name, label, video_c, target_c, donor_c, frame_c)
        if archive:
            col.add(name, (base / archive).resolve(), label, group, split, member=name,
                    kind="image", **extra)
        else:
            col.add(name, (base / name).resolve(), label, group, split, **extra)


def _video_of(r: dict, name: str, label, video_c, target_c, donor_c, frame_c) -> str:
    """The video a crop (one frame) belongs to: a ``video`` column; else, from FF++-style
    ``target``/``source`` columns, the target for a REAL (``ffpp:000``) and
    ``TARGET_SOURCEID`` for a fake (``ffpp:000_003``); else the file stem without its
    trailing ``_FRAME`` (``fake_000_003_7.jpg`` -> ``fake_000_003``)."""
    if video_c and r[video_c].strip():
        return r[video_c].strip()
    target = r[target_c].strip() if target_c else ""
    donor = r[donor_c].strip() if donor_c else ""
    if target and parse_label_safe(label) == REAL:
        return target
    if target and donor:
        return f"{target}_{donor.rsplit(':', 1)[-1]}"
    stem, frame = Path(name).stem, r[frame_c].strip()
    return stem[: -len(frame) - 1] if frame and stem.endswith(f"_{frame}") else stem


def _folder_label(p: Path) -> int | None:
    if not p.is_dir():
        return None
    lab = parse_label_safe(p.name)
    return lab if lab in (REAL, FAKE) else None


def _load_real_fake(root: Path, col: _Collector) -> None:
    for d in sorted(root.iterdir()):
        label = _folder_label(d)
        if label is None:
            continue
        for f in sorted(d.rglob("*")):
            if f.is_file() and _kind_of(f) is not None:
                col.add(f.relative_to(root).as_posix(), f, label, _default_group(f.name))


# ---------------------------------------------------------------------- public API


def load_manifest(source: str | Path, layout: str = "auto") -> Manifest:
    """Read ``source`` (folder or file) in ``layout`` (``"auto"`` detects it)."""
    p = Path(source).expanduser().resolve()
    if layout == "auto":
        layout = detect_layout(p)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected auto or one of {LAYOUTS}")
    if layout == "manifest":
        return read_manifest(p, check_files=True)
    col = _Collector(f"{'csv' if layout == 'faces' else layout}:{p.stem if p.is_file() else p.name}")
    if layout == "dfdc":
        _load_dfdc(p, col)
    elif layout == "ffpp":
        _load_ffpp(p, col)
    elif layout in ("csv", "faces"):
        if p.is_dir():
            csvs = [p / n for n in ("metadata.csv", "labels.csv") if (p / n).is_file()]
            csvs = csvs or sorted(p.glob("*.csv"))
            if not csvs:
                raise ValueError(f"no .csv list in {p}")
            p = csvs[0]
        _load_csv(p, col)
    else:
        _load_real_fake(p, col)
    m = col.finish()
    log.info("%s: %d items (%d problems)", col.source, len(m.items), len(m.problems))
    return m


def merge_manifests(manifests: list[Manifest]) -> Manifest:
    """One manifest from many; a ``video_id`` already taken is prefixed with ``source/``."""
    if not manifests:
        return Manifest()
    items = pd.concat([m.items for m in manifests], ignore_index=True)
    for c in OPTIONAL_COLUMNS:
        if c in items.columns:
            items[c] = items[c].fillna("").astype(str)
    if "video" in items.columns:  # a video id taken by two sources: prefix both with source
        has = items["video"] != ""
        shared = items[has].groupby("video")["source"].nunique()
        clash = has & items["video"].isin(shared.index[shared > 1])
        items.loc[clash, "video"] = items.loc[clash, "source"] + "/" + items.loc[clash, "video"]
    problems = pd.concat([m.problems for m in manifests], ignore_index=True)
    clash = items.duplicated("video_id", keep="first")
    items.loc[clash, "video_id"] = items.loc[clash, "source"] + "/" + items.loc[clash, "video_id"]
    col = _Collector("merge")
    items = _drop_duplicates(items, col)
    _log_problems("merge", pd.DataFrame(col.problems, columns=PROBLEM_COLUMNS))
    problems = pd.concat([problems, pd.DataFrame(col.problems, columns=PROBLEM_COLUMNS)],
                         ignore_index=True)
    items["label"] = items["label"].astype("int64")
    return Manifest(items.reset_index(drop=True), problems)


def write_manifest(manifest: Manifest | pd.DataFrame, path: str | Path) -> Path:
    """Write the items (and any extra columns, e.g. an assigned split) as CSV."""
    items = manifest.items if isinstance(manifest, Manifest) else manifest
    missing = [c for c in COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"cannot write manifest: columns {missing} missing")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in items.columns if c not in COLUMNS]
    items[COLUMNS + extra].to_csv(path, index=False)
    return path


def read_manifest(path: str | Path, check_files: bool = False) -> Manifest:
    """Read a CSV written by :func:`write_manifest` (extra columns kept)."""
    path = Path(path)
    items = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"{path} is not a manifest: columns {missing} missing")
    col = _Collector(f"manifest:{path.stem}")
    bad = pd.Series(False, index=items.index)
    for idx, value in items["label"].items():
        if parse_label_safe(value) is None:
            col.problem(items.at[idx, "video_id"], f"unknown label {value!r}")
            bad[idx] = True
    items = items[~bad].copy()
    items["label"] = [parse_label(v) for v in items["label"]]
    return col.validate(items, check_files)
