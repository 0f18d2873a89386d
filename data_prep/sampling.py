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

Frames are **reduced as they are decoded**: each kept frame is converted straight to an RGB
copy of at most ``max_pixels`` pixels (and ``max_side`` on its long side) by the scaler, so a
clip's memory does not grow with its resolution (an 8K frame is never held as full-size RGB),
and **turned upright**: the stream's display matrix (phones' rotation, ffmpeg's ``rotate``
tag) is applied, so frames are in display orientation; ``width`` / ``height`` are the source's
display size and ``scale`` maps frame pixels to it. Only the first video stream that is not an
attached picture (an audio file's cover art) is read. ``frames_claimed`` (the container's
claim) and ``frames_decoded`` say how much of the video decoded (see :attr:`SampledFrames.
decoded_fraction`). :func:`iter_frames` streams the kept frames as they are decoded (to overlap
decoding with face detection); :func:`sample_frames` collects them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

SAMPLER_MODES = ("uniform", "keyframe", "stride")
# frame-threaded decoding holds one frame per thread: above this many pixels a frame decodes on
# fewer threads, so a huge frame costs a bounded number of copies inside the decoder
BIG_FRAME_PIXELS = 3840 * 2160


class VideoReadError(ValueError):
    """A video could not be read: missing, empty, corrupt, not a video, or without frames."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: {reason}")


@dataclass
class SampledFrames:
    frames: list[np.ndarray]  # RGB uint8, HxWx3, upright, at most max_pixels / max_side
    indices: list[int]  # frame index in the video (presentation order, 0-based)
    fps: float
    frame_count: int  # frames that exist (counted, not the header's claim)
    width: int  # source frame size in display orientation (before any reduction)
    height: int
    sampler: str  # e.g. "uniform:32", "keyframe:32", "stride:10"
    stats: dict = field(default_factory=dict)  # decoded / skipped frame counts, fallbacks
    rotation: int = 0  # degrees counter-clockwise applied to the decoded frames (0/90/180/270)
    scale: float = 1.0  # frame pixels per source pixel (< 1 when frames were reduced)
    frames_claimed: int = 0  # frames the container claims (header, duration, packets: the most)
    frames_decoded: int = 0  # of those, frames that decoded (keyframe sampler: frames covered)

    @property
    def decoded_fraction(self) -> float:
        """Part of the claimed frames that decoded (1.0 for a whole video)."""
        if self.frames_claimed <= 0:
            return 1.0
        return min(1.0, self.frames_decoded / self.frames_claimed)


@dataclass
class FrameEvent:
    """One item of :func:`iter_frames`: a kept frame, ``reset`` (forget the frames given so
    far: the sampler starts again) or ``done`` (``info`` holds the video's facts)."""

    kind: str  # "frame" | "reset" | "done"
    index: int = -1
    frame: np.ndarray | None = None
    scale: float = 1.0  # frame pixels per source pixel
    info: dict = field(default_factory=dict)


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


def _is_picture(stream) -> bool:
    flags = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
    return bool(int(stream.disposition) & int(flags))


def _open(path: Path, threads: int = 0):
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
    streams = [s for s in container.streams.video if not _is_picture(s)]
    if not streams:
        container.close()
        raise VideoReadError(path, "has no real video stream, only an attached picture "
                                   "(cover art of an audio file?)")
    stream = streams[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for it (unknown codec, SVG...)
        fmt = getattr(container.format, "name", "?")
        container.close()
        raise VideoReadError(path, f"no decoder for its video stream: a codec this FFmpeg "
                                   f"does not know (container format {fmt})")
    stream.thread_type = "AUTO"
    cc = stream.codec_context
    if (cc.width or 0) * (cc.height or 0) > BIG_FRAME_PIXELS:
        stream.thread_type = "SLICE"  # no frame threading: one frame in flight, not one per core
    if threads:
        cc.thread_count = threads
    return container, stream


def _probe(path: Path) -> dict:
    """Presentation timestamps of every video packet (the frames that exist), fps, size, and
    the frames the container claims."""
    container, stream = _open(path)
    pts: list[int | None] = []
    try:
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        width, height = stream.codec_context.width, stream.codec_context.height
        claims = [int(stream.frames or 0)]
        # the video stream's own duration only: a container's may include a longer audio track
        duration = (float(stream.duration * stream.time_base) if stream.duration and
                    stream.time_base else 0.0)
        if fps and math.isfinite(fps) and duration > 0:
            claims.append(int(duration * fps * 0.95))  # 5% slack: VFR / rounding
        try:
            for pkt in container.demux(stream):
                if pkt.size:
                    pts.append(pkt.pts)
        except av.error.FFmpegError as err:  # truncated / corrupt tail: count what was read
            log.warning("%s: demuxing stopped after %d packets: %s", path, len(pts), err)
    finally:
        container.close()
    return {"pts": pts, "fps": fps, "width": width, "height": height,
            "claimed": max([len(pts), *claims])}


def _decode(path: Path, skip: str | None = None, stats: dict | None = None,
            threads: int = 0) -> Iterator:
    """Yield decoded ``av.VideoFrame`` s in presentation order, skipping undecodable packets."""
    container, stream = _open(path, threads)
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
        if stats is not None:
            stats["bad_packets"] = stats.get("bad_packets", 0) + bad
        container.close()


def frame_rotation(frame) -> int:
    """The display rotation of a decoded frame: degrees counter-clockwise, one of 0/90/180/270
    (from the stream's display matrix; ffmpeg turns a ``rotate`` tag into one)."""
    try:
        r = frame.rotation or 0
    except (AttributeError, ValueError):
        return 0
    return int(round(float(r) / 90.0)) % 4 * 90


class _Converter:
    """Decoded frame -> upright RGB array of at most ``max_pixels`` / ``max_side`` pixels,
    scaled by the decoder's scaler (the full-size RGB frame is never made)."""

    def __init__(self, max_side: int | None = None, max_pixels: int | None = None,
                 rotate: bool = True):
        self.max_side, self.max_pixels, self.rotate = max_side, max_pixels, rotate
        self.rotation, self.scale = 0, 1.0

    def reduced_size(self, w: int, h: int) -> tuple[int, int, float]:
        s = 1.0
        if self.max_side and max(w, h) > self.max_side:
            s = self.max_side / max(w, h)
        if self.max_pixels and w * h * s * s > self.max_pixels:
            s = math.sqrt(self.max_pixels / (w * h))
        if s >= 1.0:
            return w, h, 1.0
        return max(2, round(w * s)), max(2, round(h * s)), s

    def __call__(self, frame) -> np.ndarray:
        w, h = frame.width, frame.height
        w2, h2, s = self.reduced_size(w, h)
        if s < 1.0:
            arr = frame.reformat(width=w2, height=h2, format="rgb24",
                                 interpolation="AREA").to_ndarray()
        else:
            arr = frame.to_ndarray(format="rgb24")
        self.scale = s
        rot = frame_rotation(frame) if self.rotate else 0
        self.rotation = rot
        if rot:
            arr = np.ascontiguousarray(np.rot90(arr, rot // 90))
        return arr


# ------------------------------------------------------------------------------ samplers


def _stream_sequential(path: Path, wanted: set[int], conv, stats,
                       threads: int = 0) -> Iterator[tuple[int, object]]:
    """Decode every frame; yield ``(index, rgb)`` for the wanted ones; count them all."""
    n = 0
    for n, frame in enumerate(_decode(path, stats=stats, threads=threads), start=1):
        if n - 1 in wanted:
            yield n - 1, conv(frame)
    stats["decoded"] = n


def _iter_uniform(path, n_frames, count, conv, stats, threads: int = 0) -> Iterator[FrameEvent]:
    wanted = uniform_indices(count, n_frames)
    kept: dict[int, np.ndarray] = {}
    for i, arr in _stream_sequential(path, set(wanted), conv, stats, threads):
        kept[i] = arr
        yield FrameEvent("frame", i, arr)
    decoded = stats["decoded"]
    if decoded != count:
        log.warning("%s: %d packets but %d frames decoded; re-spacing the samples",
                    path, count, decoded)
        respaced = uniform_indices(decoded, n_frames)
        yield FrameEvent("reset")
        if set(respaced) - set(kept):
            kept.clear()
            stats["passes"] = 2
            for i, arr in _stream_sequential(path, set(respaced), conv, stats, threads):
                yield FrameEvent("frame", i, arr)
        else:
            for i in respaced:
                yield FrameEvent("frame", i, kept[i])
        stats["decoded"] = decoded
    stats["count"] = stats["decoded"]


class _Fallback(Exception):
    pass


def _iter_nonref(path, n_frames, pts, conv, stats, threads: int = 0) -> Iterator[FrameEvent]:
    """Skip non-reference frames; keep the decoded frame nearest to each uniform target.

    Frames come in presentation order, so target ``t`` is settled by the first decoded frame
    at or after it (later ones are farther): each kept frame is converted and given at once.
    Raises :class:`_Fallback` (after some frames may have been given) when a timestamp cannot
    be placed or two targets would share a frame.
    """
    order = sorted(set(pts))
    rank = {p: i for i, p in enumerate(order)}
    targets = uniform_indices(len(order), n_frames)
    t = 0
    prev: tuple[int, object] | None = None
    last_given = -1
    decoded_ranks: list[int] = []
    max_offset = 0

    def give(i, frame):
        nonlocal last_given
        if i == last_given:
            raise _Fallback("two targets share a frame")
        last_given = i
        return FrameEvent("frame", i, conv(frame))

    for frame in _decode(path, skip="NONREF", stats=stats, threads=threads):
        i = rank.get(frame.pts)
        if i is None:
            raise _Fallback("a timestamp that cannot be placed")
        decoded_ranks.append(i)
        while t < len(targets) and i >= targets[t]:
            # the nearer of the previous frame and this one (a tie keeps the earlier)
            if prev is not None and targets[t] - prev[0] <= i - targets[t]:
                max_offset = max(max_offset, targets[t] - prev[0])
                yield give(*prev)
            else:
                max_offset = max(max_offset, i - targets[t])
                yield give(i, frame)
            t += 1
        prev = (i, frame)
    stats["decoded"] = len(decoded_ranks)
    if t < len(targets) and prev is not None:  # the tail: targets after the last frame
        if len(targets) - t > 1 or prev[0] == last_given:
            raise _Fallback("too few reference frames at the end")
        max_offset = max(max_offset, targets[t] - prev[0])
        yield give(*prev)
        t += 1
    if t < len(targets):
        raise _Fallback("no frames decoded")
    stats["max_offset"] = max_offset
    stats["covered"] = _covered(decoded_ranks, len(order))
    stats["count"] = len(order)


def _covered(ranks: list[int], n: int, reach: int = 8) -> int:
    """Frames within ``reach`` of a decoded reference frame: how much of a video decoded when
    only reference frames are decoded (a gap of failed frames leaves its middle uncovered)."""
    covered = np.zeros(n, bool)
    for r in ranks:
        covered[max(0, r - reach):r + reach + 1] = True
    return int(covered.sum())


def iter_frames(path, n_frames: int = 32, mode: str = "uniform", stride: int | None = None,
                max_side: int | None = None, max_pixels: int | None = None, rotate: bool = True,
                max_decoded_pixels: int | None = None, threads: int = 0) -> Iterator[FrameEvent]:
    """Stream the sampled frames of ``path`` (see the module doc) as :class:`FrameEvent` s.

    A ``reset`` event means: drop the frames given so far (the sampler re-spaced or fell back);
    the last event is ``done`` with the facts :func:`sample_frames` puts in
    :class:`SampledFrames`. ``threads``: decoder threads (0: FFmpeg's choice, frame threads;
    1 costs the least CPU per video, for a pool of workers). Raises :class:`VideoReadError`.
    """
    path = Path(path)
    if mode not in SAMPLER_MODES:
        raise ValueError(f"unknown sampler mode {mode!r}; choose one of {SAMPLER_MODES}")
    if mode == "stride" and (stride is None or stride < 1):
        raise ValueError(f"mode 'stride' needs stride >= 1, got {stride!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    probe = _probe(path)
    pts, width, height = probe["pts"], probe["width"], probe["height"]
    if not pts:
        raise VideoReadError(path, "video stream has no frames")
    if max_decoded_pixels and width * height * len(pts) > max_decoded_pixels:
        raise VideoReadError(path, f"too large to decode: {width}x{height} x {len(pts)} frames "
                                   f"= {width * height * len(pts):,} pixels, over the cap of "
                                   f"{max_decoded_pixels:,}")
    conv = _Converter(max_side, max_pixels, rotate)
    stats: dict = {"packets": len(pts)}
    given = 0
    sampler = None
    if mode == "stride":
        for i, arr in _stream_sequential(path, set(range(0, len(pts), stride)), conv, stats,
                                         threads):
            given += 1
            yield FrameEvent("frame", i, arr, conv.scale)
        # a truncated file decodes fewer frames than packets: keep what exists
        count, sampler = stats["decoded"], f"stride:{stride}"
    else:
        if mode == "keyframe" and None not in pts and len(pts) >= 3 * n_frames:
            try:
                for ev in _iter_nonref(path, n_frames, pts, conv, stats, threads):
                    given += 1
                    ev.scale = conv.scale
                    yield ev
                sampler = f"keyframe:{n_frames}"
            except _Fallback as why:
                log.info("%s: keyframe sampler fell back to uniform (%s)", path, why)
                stats["fallback"] = "uniform"
                stats.pop("decoded", None)
                if given:
                    yield FrameEvent("reset")
                given = 0
        if sampler is None:
            for ev in _iter_uniform(path, n_frames, len(pts), conv, stats, threads):
                given = 0 if ev.kind == "reset" else given + 1
                ev.scale = conv.scale
                yield ev
            sampler = f"uniform:{n_frames}"
        count = stats.pop("count")
    if not given:
        raise VideoReadError(path, f"no decodable frames ({len(pts)} packets, none decoded)")
    fps = probe["fps"]
    if not fps or not math.isfinite(fps):
        fps = 0.0
    if conv.rotation in (90, 270):
        width, height = height, width
    if "covered" in stats:  # keyframe sampler: frames near a decoded reference frame
        decoded = max(0, stats["covered"] - stats.get("bad_packets", 0))
    else:
        decoded = stats.get("decoded", count)
    yield FrameEvent("done", info=dict(
        fps=fps, frame_count=count, width=width, height=height, sampler=sampler, stats=stats,
        rotation=conv.rotation, scale=conv.scale, frames_claimed=probe["claimed"],
        frames_decoded=int(decoded)))


def sample_frames(path, n_frames: int = 32, mode: str = "uniform", stride: int | None = None,
                  max_side: int | None = None, max_pixels: int | None = None, rotate: bool = True,
                  max_decoded_pixels: int | None = None, threads: int = 0) -> SampledFrames:
    """Sample RGB frames spread over the whole video at ``path`` (see the module doc).

    ``max_side`` / ``max_pixels`` reduce frames so their longer side / pixel count is at most
    that (``width`` and ``height`` still report the source size, ``scale`` the reduction);
    ``rotate`` applies the display matrix; ``max_decoded_pixels`` refuses a video whose
    frames hold more pixels in all. Raises :class:`VideoReadError`.
    """
    frames: list[np.ndarray] = []
    indices: list[int] = []
    for ev in iter_frames(path, n_frames, mode, stride, max_side, max_pixels, rotate,
                          max_decoded_pixels, threads):
        if ev.kind == "frame":
            frames.append(ev.frame)
            indices.append(ev.index)
        elif ev.kind == "reset":
            frames, indices = [], []
        else:
            return SampledFrames(frames=frames, indices=indices, **ev.info)
    raise AssertionError("iter_frames ended without a done event")
