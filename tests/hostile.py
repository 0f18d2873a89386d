"""A hostile-input corpus, made at test time: small files that once broke a batch or gave a
traceback (issue 11). Each maker writes into a given folder and returns the path(s).

Used by tests/test_hostile.py; keep one maker per kind of trouble, so a new case is one
function and one test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "dfd_app" / "samples" / "astronaut.mp4"

#: a file-name byte that is not UTF-8 (Latin-1 "é"): legal on POSIX, held by Python as a
#: surrogate escape
BAD_BYTE = b"\xe9"


def non_utf8_named_copy(folder: Path, src: Path = SAMPLE, stem: bytes = b"caf") -> str:
    """A copy of ``src`` whose name is not valid UTF-8; returns the name as Python holds it
    (``os.fsdecode``, with a surrogate escape)."""
    raw = os.path.join(os.fsencode(folder), stem + BAD_BYTE + os.fsencode(src.suffix))
    shutil.copyfile(src, raw)
    return os.fsdecode(raw)


def list_file(folder: Path, lines: list[bytes], name: str = "list.txt") -> Path:
    """A list file written as raw bytes (lines may hold non-UTF-8 bytes, NULs, BOMs...)."""
    path = Path(folder) / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def hidden_video(folder: Path, name: str = ".hidden.mp4", src: Path = SAMPLE) -> Path:
    """A video whose name starts with a dot (as macOS's ``._clip.mp4`` resource forks)."""
    path = Path(folder) / name
    shutil.copyfile(src, path)
    return path


def unknown_codec_avi(folder: Path, name: str = "unknown_codec.avi") -> Path:
    """An AVI whose video stream's codec FFmpeg does not know (MJPG renamed to ZZZZ)."""
    import cv2

    tmp = Path(folder) / "mjpg.avi"
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    path = Path(folder) / name
    path.write_bytes(tmp.read_bytes().replace(b"MJPG", b"ZZZZ"))
    tmp.unlink()
    return path


def svg_named_jpg(folder: Path, name: str = "face.jpg") -> Path:
    """A vector image (SVG) under a JPEG name."""
    path = Path(folder) / name
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                    '<rect width="64" height="64" fill="#888"/></svg>\n')
    return path


def face_shards(folder: Path, n_videos: int = 4, faces: int = 3, size: int = 32,
                per_shard: int = 2) -> Path:
    """A small shard folder (with its index): ``v0..`` random faces, label 1 / 0 alternating."""
    from data_prep import shard_writer
    from dfd import schema

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with shard_writer.ShardWriter(folder, "part", max_records=per_shard) as w:
        for i in range(n_videos):
            rng = np.random.default_rng(i)
            w.add(schema.FaceRecord(
                video_id=f"v{i}", label=i % 2, track=0, frame_indices=list(range(faces)),
                faces=[schema.encode_png(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
                       for _ in range(faces)]))
    shard_writer.build_index(folder)
    return folder


def corrupt_shard(shard: Path) -> Path:
    """Flip one byte in the middle of a shard file (same size: the index still matches, the
    record fails its checksum: ``DataLossError: corrupted record``)."""
    data = bytearray(Path(shard).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(shard).write_bytes(bytes(data))
    return Path(shard)


def truncated_shard(shard: Path, dest: Path, cut: int = 30) -> Path:
    """A bare copy of a shard file with its last ``cut`` bytes gone (no index to check its
    size against: ``DataLossError: truncated record``)."""
    Path(dest).write_bytes(Path(shard).read_bytes()[:-cut])
    return Path(dest)
