"""Which videos ``dfd detect`` scores: files, folders (recursive) and list files, streamed.

With ``extensions=IMAGE_EXTENSIONS`` (``dfd detect --crops``) folders yield face images instead.

:func:`iter_inputs` yields one :class:`InputItem` per video, lazily, so a folder of a
million videos costs constant memory. A missing path or an unreadable list file is yielded as
an item with an ``error`` (reported as a ``status=error`` row) instead of stopping the batch.
A folder that holds no such files is logged (WARNING), or, when the caller passes a list as
``empty``, added to it so that the caller reports it once (``dfd detect``: one line, an error
when nothing at all is left to score).

Hidden files and folders (names starting with ``.``, such as macOS's ``._clip.mp4``
resource forks) are not searched in folders; each one skipped is logged (INFO). Named
explicitly (as an input or in a list file), a hidden file is scored like any other.

List files are read as bytes: a line that is not valid UTF-8 names the file whose name
has those bytes (surrogate escapes, as :func:`os.fsdecode`), so one odd line never stops
the batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".wmv", ".flv", ".3gp", ".ogv",
})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass(frozen=True)
class InputItem:
    """One video to score; ``error`` set when the input itself is unusable."""

    path: str
    error: str = ""


def is_video_name(name: str | Path, extensions=VIDEO_EXTENSIONS) -> bool:
    return Path(name).suffix.lower() in extensions


def walk_videos(folder: Path, extensions=VIDEO_EXTENSIONS) -> Iterator[Path]:
    """Video (or ``extensions``) files under ``folder``, recursively, in a stable order."""
    for root, dirs, files in os.walk(folder, onerror=lambda e: log.warning("cannot list %s", e)):
        for d in sorted(d for d in dirs if d.startswith(".")):
            log.info("skipped hidden folder %s", _shown(Path(root) / d))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if not is_video_name(f, extensions):
                continue
            if f.startswith("."):
                log.info("skipped hidden file %s (give it by name to score it)",
                         _shown(Path(root) / f))
                continue
            yield Path(root) / f


def _shown(path) -> str:
    """A path as log text (bytes that are not UTF-8 as ``\\xNN``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_list_file(path: str | Path) -> Iterator[str]:
    """Entries of a list file: one path per line; blank lines and ``#`` comments skipped.

    Relative entries are taken relative to the list file's folder.
    """
    path = Path(path)
    base = path.parent
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as fh:
        for line in fh:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            p = Path(entry)
            yield str(p if p.is_absolute() or entry.startswith("~") else base / p)


def _expand_one(value: str, extensions=VIDEO_EXTENSIONS,
                empty: list[str] | None = None) -> Iterator[InputItem]:
    if value.startswith("@"):
        yield from iter_list(value[1:], extensions, empty)
        return
    if "\0" in value:
        yield InputItem(value, error="not a file name (it holds a NUL byte)")
        return
    try:
        p = Path(value).expanduser()
        is_dir, exists = p.is_dir(), p.exists()
    except (OSError, ValueError, RuntimeError) as err:  # a name too long, ~nobody: this one only
        yield InputItem(value, error=f"cannot use {value}: {getattr(err, 'strerror', None) or err}")
        return
    if is_dir:
        n = 0
        for v in walk_videos(p, extensions):
            n += 1
            yield InputItem(str(v))
        if n == 0 and empty is not None:
            empty.append(_shown(p))
        elif n == 0:
            log.warning("no files (%s) under %s", ", ".join(sorted(extensions)), _shown(p))
    elif exists:
        yield InputItem(str(p))
    else:
        yield InputItem(str(p), error=f"no such file or folder: {p}")


def iter_list(list_path: str, extensions=VIDEO_EXTENSIONS,
              empty: list[str] | None = None) -> Iterator[InputItem]:
    """Items named in a list file (each entry may itself be a file or a folder)."""
    try:
        entries = read_list_file(list_path)
        for entry in entries:
            yield from _expand_one(entry, extensions, empty)
    except OSError as err:
        yield InputItem(str(list_path), error=f"cannot read list file {list_path}: {err.strerror or err}")


def iter_inputs(inputs: Iterable[str], list_files: Iterable[str] = (),
                extensions=VIDEO_EXTENSIONS, empty: list[str] | None = None) -> Iterator[InputItem]:
    """All videos (or ``extensions`` files) named by ``inputs`` (files, folders,
    ``@list.txt``) and ``list_files``; folders without any go to ``empty`` when it is given."""
    for value in inputs:
        yield from _expand_one(str(value), extensions, empty)
    for lf in list_files:
        yield from iter_list(str(lf), extensions, empty)
