"""Decode frames spread over a WHOLE video (never just the first N) with PyAV.

Three samplers (``mode``):

``uniform``   exactly ``n_frames`` evenly spaced frame indices (bin centres of ``n_frames``
              equal bins over the frames that exist); every frame is decoded sequentially and
              only the wanted ones are converted to RGB. The frame count is counted from the
              container's packets (not taken from the header), checked against the frames that
              actually decode, and the indices are re-spaced when the video turns out shorter
              (truncated file) or longer.
``keyframe``  codec-aware and faster: the decoder skips non-reference frames
              (``skip_frame="NONREF"``, about half the frames of an H.264 stream with
              B-frames), and for each uniform target index the nearest decoded frame is kept.
              Indices are exact (presentation timestamps mapped to frame ranks); each is
              within a frame or two of the uniform target. DFDC clips have only two real
              keyframes in 300 frames, so seeking to keyframes cannot spread 32 frames; see
              the README ("Frames and faces") for the measurements. Falls back to ``uniform`` for
              short videos or streams without usable timestamps; ``sampler`` records which ran.
``stride``    every ``stride``-th frame of the whole video (``n_frames`` is ignored).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLER_MODES = ("uniform", "keyframe", "stride")


class VideoReadError(ValueError):
    """A video could not be read: missing, empty, corrupt, not a video, or without frames."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


@dataclass
class SampledFrames:
    frames: list[np.ndarray]  # RGB uint8, HxWx3
    indices: list[int]  # frame index in the video (presentation order, 0-based)
    fps: float
    frame_count: int  # frames that exist (counted, not the header's claim)
    width: int  # source frame size (before any max_side downscale)
    height: int
    sampler: str  # e.g. "uniform:32", "keyframe:32", "stride:10"
    stats: dict = field(default_factory=dict)  # decoded / skipped frame counts, fallbacks


def uniform_indices(frame_count: int, n: int) -> list[int]:
    """``n`` distinct, evenly spaced indices in ``range(frame_count)`` (all when fewer exist).

    Index ``i`` is the centre of the ``i``-th of ``n`` equal bins, so the first and last frames
    (often black fades) are avoided and the spacing is even over the whole video.
    """
    if n < 1:
        raise ValueError(f"n_frames must be >= 1, got {n}")
    if frame_count <= n:
        return list(range(max(frame_count, 0)))
    return [int((i + 0.5) * frame_count / n) for i in range(n)]


# ------------------------------------------------------------------------------ opening


def _open(path: Path):
    import av

    if not path.exists():
        raise VideoReadError(path, "file does not exist")
    if path.is_dir():
        raise VideoReadError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoReadError(path, f"not a readable video container ({err})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "contains no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for it (unknown codec, SVG...)
        fmt = getattr(container.format, "name", "?")
        container.close()
        raise VideoReadError(path, f"no decoder for its video stream: a codec this FFmpeg "
                                   f"does not know (container format {fmt})")
    stream.thread_type = "AUTO"
    return container, stream


def _probe(path: Path) -> tuple[list[int | None], float, int, int]:
    """Presentation timestamps of every video packet (the frames that exist), fps, w, h."""
    import av

    container, stream = _open(path)
    pts: list[int | None] = []
    try:
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        width, height = stream.codec_context.width, stream.codec_context.height
        try:
            for pkt in container.demux(stream):
                if pkt.size:
                    pts.append(pkt.pts)
        except av.error.FFmpegError as err:  # truncated / corrupt tail: count what was read
            log.warning("%s: demuxing stopped after %d packets: %s", path, len(pts), err)
    finally:
        container.close()
    return pts, fps, width, height


def _decode(path: Path, skip: str | None = None) -> Iterator:
    """Yield decoded ``av.VideoFrame`` s in presentation order, skipping undecodable packets."""
    import av

    container, stream = _open(path)
    if skip:
        stream.codec_context.skip_frame = skip
    bad = 0
    try:
        packets = container.demux(stream)
        while True:
            try:
                pkt = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as err:
                log.warning("%s: demuxing stopped: %s", path, err)
                break
            try:
                yield from pkt.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as err:
                bad += 1
                if bad <= 3:
                    log.warning("%s: skipping an undecodable packet: %s", path, err)
    finally:
        container.close()


def _to_rgb(frame, max_side: int | None) -> np.ndarray:
    w, h = frame.width, frame.height
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w2, h2 = max(2, round(w * s)), max(2, round(h * s))
        return frame.reformat(width=w2, height=h2, format="rgb24",
                              interpolation="AREA").to_ndarray()
    return frame.to_ndarray(format="rgb24")


# ------------------------------------------------------------------------------ samplers


def _pick_sequential(path: Path, wanted: set[int], max_side) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame; return the wanted ones by index and the number that decoded."""
    kept: dict[int, np.ndarray] = {}
    n = 0
    for n, frame in enumerate(_decode(path), start=1):
        if n - 1 in wanted:
            kept[n - 1] = _to_rgb(frame, max_side)
    return kept, n


def _sample_uniform(path, n_frames, count, max_side, stats):
    wanted = uniform_indices(count, n_frames)
    kept, decoded = _pick_sequential(path, set(wanted), max_side)
    stats["decoded"] = decoded
    if decoded != count:
        log.warning("%s: %d packets but %d frames decoded; re-spacing the samples",
                    path, count, decoded)
        count = decoded
        respaced = uniform_indices(count, n_frames)
        if set(respaced) - set(kept):
            kept, _ = _pick_sequential(path, set(respaced), max_side)
            stats["passes"] = 2
        wanted = respaced
    idx = [i for i in wanted if i in kept]
    return [kept[i] for i in idx], idx, count


def _sample_nonref(path, n_frames, pts, max_side, stats):
    """Skip non-reference frames; keep the decoded frame nearest to each uniform target."""
    order = sorted(set(pts))
    rank = {p: i for i, p in enumerate(order)}
    targets = uniform_indices(len(order), n_frames)
    best: list[tuple[int, int, object] | None] = [None] * len(targets)  # (dist, idx, frame)
    decoded = 0
    for frame in _decode(path, skip="NONREF"):
        decoded += 1
        i = rank.get(frame.pts)
        if i is None:
            return None  # a timestamp we cannot place: let the caller fall back
        for t, target in enumerate(targets):
            d = abs(i - target)
            if best[t] is None or d < best[t][0]:
                best[t] = (d, i, frame)
    stats["decoded"] = decoded
    chosen = {b[1]: b[2] for b in best if b is not None}
    if len(chosen) < len(targets):
        return None  # too few reference frames to give distinct samples
    idx = sorted(chosen)
    stats["max_offset"] = max(b[0] for b in best)
    return [_to_rgb(chosen[i], max_side) for i in idx], idx, len(order)


def sample_frames(path, n_frames: int = 32, mode: str = "uniform", stride: int | None = None,
                  max_side: int | None = None) -> SampledFrames:
    """Sample RGB frames spread over the whole video at ``path`` (see the module doc).

    ``max_side`` downscales frames so their longer side is at most that many pixels (``width``
    and ``height`` still report the source size). Raises :class:`VideoReadError`.
    """
    path = Path(path)
    if mode not in SAMPLER_MODES:
        raise ValueError(f"unknown sampler mode {mode!r}; choose one of {SAMPLER_MODES}")
    if mode == "stride" and (stride is None or stride < 1):
        raise ValueError(f"mode 'stride' needs stride >= 1, got {stride!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    pts, fps, width, height = _probe(path)
    if not pts:
        raise VideoReadError(path, "video stream has no frames")
    stats: dict = {"packets": len(pts)}
    result = None
    if mode == "stride":
        kept, decoded = _pick_sequential(path, set(range(0, len(pts), stride)), max_side)
        # a truncated file decodes fewer frames than packets: keep what exists
        idx = sorted(i for i in kept if i < decoded)
        frames, count, sampler = [kept[i] for i in idx], decoded, f"stride:{stride}"
        stats["decoded"] = decoded
    else:
        if mode == "keyframe" and None not in pts and len(pts) >= 3 * n_frames:
            result = _sample_nonref(path, n_frames, pts, max_side, stats)
            if result is None:
                log.info("%s: keyframe sampler fell back to uniform", path)
                stats["fallback"] = "uniform"
        if result is not None:
            frames, idx, count = result
            sampler = f"keyframe:{n_frames}"
        else:
            frames, idx, count = _sample_uniform(path, n_frames, len(pts), max_side, stats)
            sampler = f"uniform:{n_frames}"
    if not frames:
        raise VideoReadError(path, f"no decodable frames ({len(pts)} packets, none decoded)")
    if not fps or not math.isfinite(fps):
        fps = 0.0
    return SampledFrames(frames=frames, indices=idx, fps=fps, frame_count=count, width=width,
                         height=height, sampler=sampler, stats=stats)
