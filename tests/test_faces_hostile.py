"""Hostile inputs to the decode + face path (issue 11, items 3-5): memory bounded by input
size, rotation (display matrix, EXIF), attached pictures, partial videos, broken and tiny
images. Every input is made here (scikit-image's public-domain astronaut, PyAV)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from data_prep.extract import ExtractConfig, extract_faces
from data_prep.faces import FakeDetector, box_iou
from data_prep.faces.images import ImageReadError, read_image
from data_prep.sampling import VideoReadError, sample_frames
from tests.face_clips import face_clip, face_frame, write_clip

# ------------------------------------------------------------------ rotation

@pytest.fixture(scope="module")
def rotated_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("rot")
    return {r: face_clip(root / f"r{r}.mp4", 320, 240, n=6, face_frac=1.0, rotation=r)
            for r in (0, 90, 180, 270)}


def test_frames_are_turned_upright_by_the_display_matrix(rotated_clips):
    up = sample_frames(rotated_clips[0], 4, "uniform")
    for r in (90, 180, 270):
        s = sample_frames(rotated_clips[r], 4, "uniform")
        assert s.rotation == r
        assert (s.width, s.height) == (320, 240)  # display size, not the stored 240x320
        assert s.frames[0].shape == up.frames[0].shape == (240, 320, 3)
        diff = np.abs(s.frames[0].astype(int) - up.frames[0]).mean()
        assert diff < 4, (r, diff)
        raw = sample_frames(rotated_clips[r], 4, "uniform", rotate=False)
        assert raw.rotation == 0
        if r != 180:
            assert raw.frames[0].shape == (320, 240, 3)
        else:
            assert np.abs(raw.frames[0].astype(int) - up.frames[0]).mean() > 20


@pytest.mark.parametrize("rotation", [90, 180])
def test_rotated_clip_gives_the_upright_face(rotated_clips, rotation):
    cfg = ExtractConfig(n_frames=4, sampler="uniform", face_size=64)
    up = extract_faces(rotated_clips[0], "retinaface", cfg)
    rot = extract_faces(rotated_clips[rotation], "retinaface", cfg)
    assert rot.rotation == rotation and rot.meta["rotation"] == rotation
    for a, b, fa, fb in zip(up.tracks[0].boxes, rot.tracks[0].boxes, up.tracks[0].faces,
                            rot.tracks[0].faces):
        assert box_iou(a, b) > 0.9
        assert np.abs(fa.astype(int) - fb).mean() < 12  # (x264 noise; turned: > 40)
    # the keypoints say upright: eyes above the mouth
    kp = rot.tracks[0].keypoints[0]
    assert kp["left_eye"][1] < kp["mouth_left"][1]


def _jpeg(img, orientation=None, quality=95) -> bytes:
    from PIL import Image

    im = Image.fromarray(img)
    buf = io.BytesIO()
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    from skimage.data import astronaut

    from data_prep.faces.images import decode_rgb

    face = np.ascontiguousarray(astronaut()[20:220, 140:340])
    up = tmp_path / "up.jpg"
    up.write_bytes(_jpeg(face))
    # orientation 6: "rotate 90 clockwise to display": stored turned counter-clockwise
    side = tmp_path / "side.jpg"
    side.write_bytes(_jpeg(np.ascontiguousarray(np.rot90(face, 1)), orientation=6))
    a, b = read_image(up), read_image(side)
    assert b.orientation == 6 and (b.width, b.height) == (a.width, a.height)
    assert a.data == up.read_bytes()  # an upright file keeps its own bytes
    assert np.abs(decode_rgb(a).astype(int) - decode_rgb(b)).mean() < 3


def test_crop_with_exif_orientation_scores_like_the_upright_one(tmp_path):
    pytest.importorskip("tensorflow")
    from skimage.data import astronaut

    from dfd_app.detect import pipeline

    face = np.ascontiguousarray(astronaut()[20:220, 140:340])
    (tmp_path / "up.jpg").write_bytes(_jpeg(face))
    (tmp_path / "side.jpg").write_bytes(_jpeg(np.ascontiguousarray(np.rot90(face, 1)),
                                              orientation=6))
    seen = {}

    def scorer(faces):  # orientation-sensitive: the top half's brightness share
        f = np.asarray(faces, float)
        seen[len(seen)] = f[0]
        top, bottom = f[:, :32].mean(axis=(1, 2, 3)), f[:, 32:].mean(axis=(1, 2, 3))
        return top / (top + bottom)

    ctx = pipeline.DetectContext(scorer=scorer, crops=True,
                                 extract_cfg=pipeline.make_extract_config(4, face_size=64))
    up, side = (pipeline.detect_video(tmp_path / n, ctx) for n in ("up.jpg", "side.jpg"))
    assert up["status"] == side["status"] == "ok"
    assert side["p_fake"] == pytest.approx(up["p_fake"], abs=0.01)
    assert np.abs(seen[0] - seen[1]).mean() < 3


# ------------------------------------------------------------------ validity

def test_a_cut_or_tiny_image_is_refused(tmp_path):
    from skimage.data import astronaut

    data = _jpeg(astronaut())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="decode whole"):
        read_image(cut)
    one = tmp_path / "one.png"
    from PIL import Image

    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(one)
    with pytest.raises(ImageReadError, match="1x1 pixels is smaller"):
        read_image(one, min_side=40)
    svg = tmp_path / "x.jpg"
    svg.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(svg)


def test_cut_and_tiny_crops_are_error_rows(tmp_path):
    pytest.importorskip("tensorflow")
    from skimage.data import astronaut

    from dfd_app.detect import pipeline

    data = _jpeg(astronaut())
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "tiny.jpg").write_bytes(_jpeg(np.zeros((1, 1, 3), np.uint8)))
    ctx = pipeline.DetectContext(scorer=lambda f: np.full(len(f), 0.9), crops=True,
                                 extract_cfg=pipeline.make_extract_config(4, face_size=64))
    for name, why in (("cut.jpg", "decode whole"), ("tiny.jpg", "smaller than")):
        rec = pipeline.detect_video(tmp_path / name, ctx)
        assert rec["status"] == "error" and why in rec["error"], rec
        assert rec["p_fake"] != rec["p_fake"]  # NaN: no score


def _song_with_cover(path):
    import av

    with av.open(str(path), "w", format="mp3") as c:
        a = c.add_stream("libmp3lame", rate=16000)
        v = c.add_stream("png", rate=1)
        v.width, v.height, v.pix_fmt = 64, 64, "rgb24"
        v.disposition = av.stream.Disposition.attached_pic
        for p in [*v.encode(av.VideoFrame.from_ndarray(face_frame(64, 64), format="rgb24")),
                  *v.encode()]:
            c.mux(p)
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp",
                                        layout="mono")
        fr.sample_rate = 16000
        for p in [*a.encode(fr), *a.encode()]:
            c.mux(p)
    return path


def test_cover_art_of_an_audio_file_is_not_a_video(tmp_path):
    song = _song_with_cover(tmp_path / "song.mp3")
    with pytest.raises(VideoReadError, match="attached picture"):
        sample_frames(song)


@pytest.fixture(scope="module")
def faststart_clip(tmp_path_factory):
    frames = [face_frame(160, 120, shift=i) for i in range(60)]
    return write_clip(tmp_path_factory.mktemp("fs") / "full.mp4", frames, faststart=True)


@pytest.mark.parametrize("damage", ["none", "cut50", "cut90", "middle"])
def test_partly_decoded_videos_say_so(faststart_clip, tmp_path, damage):
    data = bytearray(faststart_clip.read_bytes())
    n = len(data)
    if damage.startswith("cut"):
        data = data[: n * int(damage[3:]) // 100]  # the index at the front claims all 60
    elif damage == "middle":
        data[int(n * 0.3):int(n * 0.7)] = bytes(int(n * 0.7) - int(n * 0.3))
    path = tmp_path / f"{damage}.mp4"
    path.write_bytes(bytes(data))
    for sampler in ("uniform", "keyframe"):
        vf = extract_faces(path, FakeDetector(), ExtractConfig(n_frames=8, sampler=sampler))
        assert vf.frames_claimed == 60
        if damage == "none":
            assert vf.frames_decoded == 60 and not vf.partial
        else:
            assert vf.frames_decoded < 0.9 * 60 and vf.partial, (sampler, vf.frames_decoded)


def test_a_partial_video_gets_the_partial_status(faststart_clip, tmp_path):
    from dfd_app.detect import pipeline

    data = faststart_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    ctx = pipeline.DetectContext(scorer=lambda f: np.full(len(f), 0.7), detector=FakeDetector(),
                                 extract_cfg=pipeline.make_extract_config(8, "uniform"))
    rec = pipeline.detect_video(cut, ctx)
    assert rec["status"] == "partial" and rec["p_fake"] == pytest.approx(0.7)
    assert "of 60 claimed frames decoded" in rec["error"]
    assert rec["meta"]["frames_claimed"] == 60 and rec["meta"]["frames_decoded"] < 30
    whole = pipeline.detect_video(faststart_clip, ctx)
    assert whole["status"] == "ok" and whole["meta"]["frames_decoded"] == 60


# ------------------------------------------------------------------ memory

def test_decoded_pixel_cap_refuses_huge_videos(faststart_clip):
    with pytest.raises(VideoReadError, match="over the cap"):
        extract_faces(faststart_clip, FakeDetector(),
                      ExtractConfig(n_frames=4, max_decoded_pixels=160 * 120 * 59))
    extract_faces(faststart_clip, FakeDetector(),
                  ExtractConfig(n_frames=4, max_decoded_pixels=160 * 120 * 60))


def test_frames_are_reduced_as_decoded_and_boxes_stay_in_source_pixels(tmp_path):
    clip = face_clip(tmp_path / "big.mp4", 640, 480, n=4, face_frac=0.5)
    cfg = dict(n_frames=2, sampler="uniform", face_size=64)
    small = extract_faces(clip, "retinaface", ExtractConfig(max_pixels=320 * 240, **cfg))
    full = extract_faces(clip, "retinaface", ExtractConfig(max_pixels=None, **cfg))
    assert (small.width, small.height) == (640, 480)
    for a, b in zip(small.tracks[0].boxes, full.tracks[0].boxes):
        assert box_iou(a, b) > 0.85  # source pixels both
    s = sample_frames(clip, 2, "uniform", max_pixels=160 * 120)
    assert s.frames[0].shape == (120, 160, 3) and s.scale == pytest.approx(0.25)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_resolution(tmp_path):
    """720p vs 8K, each in a fresh process (bench/memory.py's measurement)."""
    from bench.memory import make_clip, peak_rss

    small = peak_rss(make_clip(tmp_path / "720.mp4", 1280, 720, 6), extract_only=True)
    huge = peak_rss(make_clip(tmp_path / "8k.mp4", 7680, 4320, 6), extract_only=True)
    assert small["status"] == huge["status"] == "ok"
    # measured: 148 MB vs 306 MB now (the decoder's own 8K reference frames), 793 MB before
    assert huge["maxrss_mb"] < 2.5 * small["maxrss_mb"], (small, huge)


# ------------------------------------------------------------------ streaming

def test_a_fallback_mid_stream_resets_and_gives_the_uniform_samples(tmp_path):
    """B-frames every 4th frame, targets every 3rd: the keyframe sampler finds two targets on
    one reference frame after giving some frames, says ``reset``, and the uniform sampler's
    frames follow; the face path (decode thread) handles the reset."""
    import av

    from data_prep import sampling

    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        s.options = {"preset": "ultrafast",
                     "x264-params": "bframes=3:b-pyramid=none:b-adapt=0:keyint=300"}
        for i in range(96):
            for p in s.encode(av.VideoFrame.from_ndarray(face_frame(160, 120, shift=i % 40),
                                                         format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    events = list(sampling.iter_frames(path, 32, "keyframe"))
    kinds = [e.kind for e in events]
    assert kinds.count("reset") == 1 and kinds.index("reset") > 0
    after = [e.index for e in events[kinds.index("reset") + 1:] if e.kind == "frame"]
    assert after == sampling.uniform_indices(96, 32)
    assert events[-1].info["sampler"] == "uniform:32"
    vf = extract_faces(path, FakeDetector(), ExtractConfig(n_frames=32, sampler="keyframe"))
    assert vf.tracks[0].frame_indices == sampling.uniform_indices(96, 32)
    assert vf.frames_searched == 32
