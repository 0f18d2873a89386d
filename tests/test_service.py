"""dfd serve: the FastAPI app with a fake model and the fake face detector, in-process and live."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import socket
import threading
import time

import numpy as np
import pytest

from dfd.labels import verdict
from dfd_app.detect import pipeline
from dfd_app.serve.service import ServiceSettings, create_app
from dfd_app.serve.uploads import display_name, sniff_container
from tests.test_detect import SAMPLE, fake_ctx

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")


def upload(client, data: bytes, name="clip.mp4", params=None, field="file"):
    return client.post("/v1/detect", params=params or {},
                       files={field: (name, data, "application/octet-stream")})


@pytest.fixture
def tmp_root(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir()
    return root


def make_client(ctx=None, **settings):
    from fastapi.testclient import TestClient

    return TestClient(create_app(ctx or fake_ctx(n_frames=3), ServiceSettings(**settings)))


def test_healthz_and_page(tmp_root):
    with make_client(tmp_root=str(tmp_root)) as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and h["model"] == "fake-brightness" and h["threshold"] == 0.5
        assert h["runtime"] == "other"  # a test scorer, neither TensorFlow nor TensorFlow Lite
        page = c.get("/")
        assert page.status_code == 200 and 'id="upload-form"' in page.text
        assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no CDN
        assert c.get("/static/app.js").status_code == 200


def test_detect_returns_the_cli_json(tmp_root):
    sample = SAMPLE.read_bytes()
    with make_client(tmp_root=str(tmp_root)) as c:
        r = upload(c, sample, name="../../etc/astro naut.mp4", params={"plot": 1, "faces": 2})
        assert r.status_code == 200, r.text
        body = r.json()
    ref = json.loads(json.dumps(pipeline.detect_video(SAMPLE, fake_ctx(n_frames=3)), default=str))
    assert set(ref) <= set(body) and set(body) - set(ref) == {"plot_png", "thumbnails"}
    assert body["video"] == "astro naut.mp4"  # display text only, no folders
    assert body["p_fake"] == pytest.approx(ref["p_fake"]) and body["label"] == ref["label"]
    assert len(body["frames"]) == 3 and body["n_faces"] == 3
    assert base64.b64decode(body["plot_png"])[:4] == b"\x89PNG"
    assert len(body["thumbnails"]) == 2
    assert base64.b64decode(body["thumbnails"][0]["jpeg_base64"])[:2] == b"\xff\xd8"
    for thumb in body["thumbnails"]:  # each face carries its verdict by the video's rule
        assert thumb["label"] == verdict(thumb["p_fake"], body["threshold"], None)
    assert list(tmp_root.iterdir()) == []  # the private upload folder is gone


def test_bad_uploads(tmp_root):
    with make_client(tmp_root=str(tmp_root), max_upload_mb=0.05) as c:
        r = upload(c, b"hello, this is text and not a video at all" * 20, name="x.mp4")
        assert r.status_code == 415 and "not a video" in r.json()["detail"]
        r = upload(c, SAMPLE.read_bytes())  # 0.8 MB > 0.05 MB
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = upload(c, SAMPLE.read_bytes()[:1000], field="video")
        assert r.status_code == 400 and "'file'" in r.json()["detail"]
        r = c.post("/v1/detect", content=b"raw", headers={"content-type": "application/octet-stream"})
        assert r.status_code == 400
        corrupt = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 2000  # mp4 magic, no video
        r = upload(c, corrupt)
        assert r.status_code == 422
        body = r.json()
        assert body["status"] == "error" and body["label"] == "UNKNOWN" and body["p_fake"] is None
        assert str(tmp_root) not in r.text and "/tmp" not in r.text and "Traceback" not in r.text
    assert list(tmp_root.iterdir()) == []


def test_no_face_is_unknown_not_an_error(tmp_root):
    with make_client(fake_ctx(n_frames=2, detector_fn=lambda f, i: []), tmp_root=str(tmp_root)) as c:
        r = upload(c, SAMPLE.read_bytes())
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "no_face" and body["label"] == "UNKNOWN" and body["p_fake"] is None
    assert "upload" not in body["error"] and str(tmp_root) not in r.text


class SlowScorer:
    name = "slow"

    def __init__(self, delay):
        self.delay = delay

    def __call__(self, faces):
        time.sleep(self.delay)
        return np.full(len(faces), 0.7)


def test_time_limit_gives_504_and_cleans_up(tmp_root):
    with make_client(fake_ctx(n_frames=2, scorer=SlowScorer(1.5)), tmp_root=str(tmp_root),
                     timeout_s=0.5) as c:
        r = upload(c, SAMPLE.read_bytes())
        assert r.status_code == 504 and "limit" in r.json()["detail"]
        for _ in range(50):  # the abandoned job removes its folder when it ends
            if not list(tmp_root.iterdir()):
                break
            time.sleep(0.1)
    assert list(tmp_root.iterdir()) == []


def test_sniffing_and_names():
    assert sniff_container(SAMPLE.read_bytes()[:512]) == "mp4"
    assert sniff_container(b"\x1a\x45\xdf\xa3" + b"\x00" * 60) == "matroska"
    assert sniff_container(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff_container(b"GIF89a" + b"\x00" * 300) is None
    assert sniff_container(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100) is None
    assert display_name("C:\\x\\..\\evil<script>.mp4") == "evilscript.mp4"
    assert display_name("../../etc/passwd") == "passwd" and display_name(None) == "upload"


# ------------------------------------------------------------------ live server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(ctx, **settings):
    """A real uvicorn on 127.0.0.1 and a random free port, in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(ctx, ServiceSettings(**settings)), host="127.0.0.1",
                            port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


class CountingExtract:
    """Wraps the real extractor and records how many videos run at once."""

    def __init__(self, delay=1.0):  # long enough that 4 uploads surely overlap
        from data_prep.extract import extract_faces

        self.fn, self.delay, self.now, self.peak = extract_faces, delay, 0, 0
        self.lock = threading.Lock()

    def __call__(self, path, detector, cfg):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.delay)
            return self.fn(path, detector, cfg)
        finally:
            with self.lock:
                self.now -= 1


def test_an_upload_alone_scores_its_faces_while_it_decodes(tmp_root, monkeypatch):
    # beside other uploads the early scoring costs CPU they need, alone it saves time
    seen, detect = [], pipeline.detect_video

    def spy(path, rctx, *a):
        seen.append(rctx.score_while_decoding)
        return detect(path, rctx, *a)

    monkeypatch.setattr(pipeline, "detect_video", spy)
    with make_client(tmp_root=str(tmp_root)) as c:
        assert upload(c, SAMPLE.read_bytes()).status_code == 200
    off = dataclasses.replace(fake_ctx(n_frames=3), score_while_decoding=False)
    with make_client(off, tmp_root=str(tmp_root)) as c:
        assert upload(c, SAMPLE.read_bytes()).status_code == 200
    assert seen == [True, False]


def test_live_server_serves_concurrent_requests(tmp_root):
    counter = CountingExtract()
    ctx = fake_ctx(n_frames=2)
    ctx.extract = counter
    data = SAMPLE.read_bytes()
    results = []

    def one(base):
        with httpx.Client(timeout=60) as c:
            r = c.post(f"{base}/v1/detect", files={"file": ("a.mp4", data, "video/mp4")})
            results.append((r.status_code, r.json()))

    with live_server(ctx, workers=2, max_queue=8, tmp_root=str(tmp_root)) as base:
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        threads = [threading.Thread(target=one, args=(base,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert [s for s, _ in results] == [200] * 4
    assert len({b["p_fake"] for _, b in results}) == 1  # the same clip, the same score
    assert counter.peak == 2  # served two at once, never more than the workers
    assert list(tmp_root.iterdir()) == []



class FakeRequest:
    """Just what receive_upload reads: headers and an async chunk stream (counts pulls)."""

    def __init__(self, chunks, headers):
        self.chunks, self.headers, self.pulled = chunks, headers, 0

    async def stream(self):
        for c in self.chunks:
            self.pulled += 1
            yield c


def test_size_limit_is_enforced_while_streaming(tmp_path):
    """Without a Content-Length the body is cut off at the limit, not read to the end."""
    import asyncio

    from dfd_app.serve.uploads import UploadError, receive_upload

    boundary = "dfdboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    chunks = [head + SAMPLE.read_bytes()[:4096]] + [b"\x00" * 65536] * 200
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    req = FakeRequest(chunks, {"content-type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(UploadError) as err:
        asyncio.run(receive_upload(req, tmp_path, max_bytes=200_000))
    assert err.value.status == 413
    assert req.pulled <= 5  # stopped after ~200 kB of a 13 MB body
    assert (tmp_path / "upload.bin").stat().st_size <= 200_000
    ok = FakeRequest([head, SAMPLE.read_bytes(), f"\r\n--{boundary}--\r\n".encode()], req.headers)
    (tmp_path / "ok").mkdir()
    path, name, container = asyncio.run(receive_upload(ok, tmp_path / "ok", max_bytes=2**21))
    assert container == "mp4" and name == "b.mp4" and path.read_bytes() == SAMPLE.read_bytes()


def test_serve_flags_reach_the_detection_context(monkeypatch):
    import argparse

    from dfd_app.cli import serve as serve_cli
    from dfd_app.detect import pipeline

    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    settings = serve_cli.settings_from_args(parser.parse_args(["--margin", "1.2", "--all-faces"]))
    seen = {}
    monkeypatch.setattr(pipeline, "build_context", lambda **kw: seen.update(kw))
    settings.build_context()
    assert seen["margin"] == "1.2" and seen["all_faces"] is True
    defaults = serve_cli.settings_from_args(parser.parse_args([]))
    assert defaults.margin == "auto" and defaults.all_faces is False
    # the decoded-pixel cap reaches the extraction config (20,000 Mpix by default; 0: none)
    settings = serve_cli.settings_from_args(parser.parse_args(["--max-decoded-mpix", "50"]))
    settings.build_context()
    assert seen["max_decoded_pixels"] == 50_000_000
    serve_cli.settings_from_args(parser.parse_args(["--max-decoded-mpix", "0"])).build_context()
    assert seen["max_decoded_pixels"] is None
    serve_cli.settings_from_args(parser.parse_args([])).build_context()
    assert seen["max_decoded_pixels"] == 20_000_000_000 and seen["runtime"] == "auto"
    serve_cli.settings_from_args(parser.parse_args(["--runtime", "keras"])).build_context()
    assert seen["runtime"] == "keras"
    with pytest.raises(SystemExit):
        parser.parse_args(["--runtime", "onnx"])


def test_the_pixel_cap_refuses_a_big_video_before_decoding(tiny_video_factory):
    from data_prep.faces import get_detector
    from dfd_app.detect import pipeline

    video = tiny_video_factory("cap.mp4", frames=30, size=(160, 120))
    ctx = pipeline.DetectContext(
        scorer=lambda faces: np.full(len(faces), 0.5), detector=get_detector("default"),
        extract_cfg=pipeline.make_extract_config(8, "uniform", max_decoded_pixels=160 * 120 * 10))
    rec = pipeline.detect_video(str(video), ctx)
    assert rec["status"] == "error" and "pixel" in rec["error"], rec
