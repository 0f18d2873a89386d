"""Shared fixtures: the research data in ../shared (skipped when absent) and tiny inputs."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# converted TensorFlow Lite models (dfd.inference.lite) go to a folder of this test session,
# never to the user's ~/.cache/dfd (subprocesses inherit it, so each model converts once)
if "DFD_CACHE_DIR" not in os.environ:
    os.environ["DFD_CACHE_DIR"] = tempfile.mkdtemp(prefix="dfd-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DFD_CACHE_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DFD_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear message when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"research data not available at {p} (set DFD_SHARED to its folder)")
    return p


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="session")
def tiny_video_factory(tmp_path_factory):
    """Make small synthetic videos with OpenCV's writer: ``make(name, frames=..., size=...)``."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("videos")

    def make(name="clip.mp4", frames=30, size=(160, 120), fps=15.0, draw=None):
        path = root / name
        w, h = size
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        assert writer.isOpened(), "OpenCV cannot write mp4v here"
        rng = np.random.default_rng(0)
        for i in range(frames):
            frame = np.full((h, w, 3), 40, np.uint8)
            if draw is not None:
                draw(frame, i)
            else:
                frame[:] = rng.integers(0, 255, (h, w, 3), dtype=np.uint8) // 4
                cv2.putText(frame, str(i), (5, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 1,
                            (255, 255, 255), 2)
            writer.write(frame)
        writer.release()
        return path

    return make


def video_folder(make_video, root: Path, n: int, frames: int, is_fake, prefix: str = "v",
                 base: int = 20, step: int = 25, square=(10, 30), period: int = 9) -> Path:
    """``root/real`` and ``root/fake`` holding ``n`` tiny distinct clips ``<prefix><k>.mp4``
    (made by the ``tiny_video_factory`` maker): clip ``k`` is grey ``base + step * k`` with a
    square whose shade changes every frame; ``is_fake(k)`` picks its folder."""
    for sub in ("real", "fake"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lo, hi = square

    def draw_for(k):
        def draw(frame, i):
            frame[:] = base + step * k
            frame[lo:hi, lo:hi] = (i * period) % 255
        return draw

    for k in range(n):
        src = make_video(f"{prefix}{k}.mp4", frames=frames, draw=draw_for(k))
        (root / ("fake" if is_fake(k) else "real") / f"{prefix}{k}.mp4").write_bytes(
            src.read_bytes())
    return root


def jpeg_bytes(value: int, side: int = 32) -> bytes:
    """A flat grey JPEG of ``side`` pixels (for crop-set tests)."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".jpg", np.full((side, side, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def write_crop_set(root: Path, crops) -> Path:
    """A crop set like ``../shared/data/dfdc_faces``: ``root/faces-00.tar`` holding each
    ``(name, bytes, label, original)`` of ``crops`` and ``root/metadata.csv`` listing them."""
    import io
    import tarfile

    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    with tarfile.open(root / "faces-00.tar", "w") as tar:
        for name, data, label, original in crops:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            rows.append({"file": name, "label": label, "original": original,
                         "archive": "faces-00.tar"})
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


def write_shards(root: Path, records, max_records: int = 2) -> Path:
    """Shards of ``records`` (:class:`dfd.schema.FaceRecord`) in ``root``, ``max_records``
    a file, with their ``index.json``."""
    from data_prep import shard_writer

    with shard_writer.ShardWriter(root, "part", max_records=max_records) as w:
        for r in records:
            w.add(r)
    shard_writer.build_index(root)
    return root
