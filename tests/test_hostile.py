"""Hostile input and faults (issue 11, items 2, 6 and 7): no batch is lost, every fault is one
line and a documented exit status. The corpus is made at test time by tests/hostile.py."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dfd_app.cli.main import main
from dfd_app.detect import inputs, pipeline
from dfd_app.detect import output as detect_output
from tests import hostile
from tests.test_browser import driver  # noqa: F401 - the headless browser fixture
from tests.test_detect import SAMPLE, fake_ctx

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_ctx(monkeypatch):
    """``dfd detect`` with the fake detector and the brightness scorer (no model load)."""

    def build(**kw):
        return fake_ctx(n_frames=kw["n_frames"], details=kw["details"], crops=kw["crops"],
                        plot_dir=kw["plot_dir"], faces_dir=kw["faces_dir"])

    monkeypatch.setattr(pipeline, "build_context", build)


def detect(argv, capsys=None):
    code = main(["-q", "detect", "--frames", "2", *argv])
    return code, (capsys.readouterr() if capsys else None)


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- item 2: output never costs the batch

@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_non_utf8_file_name_costs_no_row(tmp_path, cli_ctx, fmt):
    odd = hostile.non_utf8_named_copy(tmp_path)
    out = tmp_path / f"out.{fmt}"
    code, _ = detect([odd, str(SAMPLE), "--out", str(out), "--format", fmt,
                      "--faces", str(tmp_path / "faces")])
    assert code == 0
    text = out.read_bytes().decode("utf-8")  # still valid UTF-8
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = [json.loads(line) for line in text.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["video"].endswith("caf\\xe9.mp4")  # the documented escaping
    assert len(list((tmp_path / "faces").iterdir())) == 2  # crops of both videos written


def test_safe_text_escapes_only_what_is_not_utf8():
    assert detect_output.safe_text("clip é.mp4") == "clip é.mp4"
    assert detect_output.safe_text(os.fsdecode(b"caf\xe9.mp4")) == "caf\\xe9.mp4"
    assert detect_output.safe_text("lone \ud800") == "lone \\ud800"


def test_a_list_file_with_odd_bytes_keeps_every_line(tmp_path, cli_ctx):
    odd = hostile.non_utf8_named_copy(tmp_path)
    lst = hostile.list_file(tmp_path, [
        b"\xef\xbb\xbf# a BOM and a comment",
        os.fsencode(odd),                 # a name with a non-UTF-8 byte: scored
        b"gone\xff.mp4",                  # a missing one: an error row
        b"nul\x00byte.mp4",               # not a file name: an error row
        b"~nosuchuser_dfd/x.mp4",         # an unknown home: an error row
        os.fsencode(SAMPLE),
    ])
    out = tmp_path / "out.csv"
    code, _ = detect(["--list", str(lst), "--out", str(out)])
    assert code == 1  # some rows failed, the batch went on
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["status"] for r in rows] == ["ok", "error", "error", "error", "ok"]
    assert "no such file" in rows[1]["error"] and "\\xff" in rows[1]["video"]
    assert "NUL" in rows[2]["error"]


@pytest.mark.parametrize("target", ["folder", "/dev/full", "missing/dir/out.csv"])
def test_an_output_error_is_one_line_and_exit_2(tmp_path, cli_ctx, caplog, target):
    if target == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    out = {"folder": str(tmp_path), "missing/dir/out.csv": str(tmp_path / target)}.get(target,
                                                                                        target)
    with caplog.at_level(logging.ERROR):
        code, _ = detect([str(SAMPLE), "--out", out])
    assert code == 2
    (line,) = error_lines(caplog)
    assert line.startswith(f"cannot write the results to {out}: ")


class FullAfter(io.RawIOBase):
    """A real file that takes ``limit`` bytes, then fails as a full disk (after a part)."""

    def __init__(self, path, limit):
        self._f = open(path, "wb", buffering=0)
        self.limit = limit

    def writable(self):
        return True

    def fileno(self):
        return self._f.fileno()

    def write(self, data):
        room = self.limit - self._f.tell()
        if room < len(data):
            self._f.write(bytes(data[:max(room, 0)]))
            raise OSError(28, "No space left on device")
        return self._f.write(data)

    def close(self):
        self._f.close()
        super().close()


def test_a_full_disk_leaves_whole_rows(tmp_path):
    path = tmp_path / "out.csv"
    header = detect_output.csv_header().encode()
    row = {"video": "a.mp4", "p_fake": 0.25, "verdict": "REAL", "threshold": 0.5, "n_frames": 2,
           "n_faces": 2, "status": "ok", "error": "", "model": "m"}
    one = detect_output.format_row(row, "csv").encode()
    fh = FullAfter(path, len(header) + len(one) + 5)  # room for one row and a bit
    w = detect_output.RowWriter(fh, "csv", str(path))
    w.write(row)
    with pytest.raises(detect_output.OutputError, match="No space left on device"):
        w.write(row)
    fh.close()
    assert path.read_bytes() == header + one  # the cut row is gone, the whole one kept


RUNNER = """
import sys, time
from tests.test_detect import BrightnessScorer, fake_ctx
from dfd_app.detect import pipeline
delay = float(sys.argv[1])
class Slow(BrightnessScorer):
    def __call__(self, faces):
        time.sleep(delay)
        return super().__call__(faces)
pipeline.build_context = lambda **kw: fake_ctx(n_frames=kw["n_frames"], scorer=Slow(),
                                               details=kw["details"])
from dfd_app.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def ctrl_c_as_at_a_terminal():
    """Run in the child before exec: SIGINT back to its default disposition.

    A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    across exec, so a suite run as ``make test &`` would hand its children a deaf Ctrl-C and
    the tests below would measure the shell, not dfd.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(argv, delay=0.0, **kw):
    """``dfd`` in a child process (fake model, scorer sleeping ``delay`` s per video)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(delay), *argv], cwd=REPO,
                            env=env, stderr=subprocess.PIPE,
                            preexec_fn=ctrl_c_as_at_a_terminal, **kw)


def test_a_broken_pipe_is_one_line_and_exit_2():
    p = spawn(["detect", "--frames", "1", *[str(SAMPLE)] * 6], delay=0.2,
              stdout=subprocess.PIPE)
    assert p.stdout.readline().startswith(b"video,p_fake")  # the header, then `| head -1`
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(60) == 2
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "cannot write the results to stdout: Broken pipe" in err


def test_a_broken_pipe_in_another_command_is_one_line_and_exit_2():
    script = ("import sys\nfrom dfd_app.cli import split\n"
              "def run_check(args):\n    for i in range(100000): print('line', i)\n"
              "split.run_check = run_check\nfrom dfd_app.cli.main import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    p = subprocess.Popen([sys.executable, "-c", script, "check-split", "x.csv"], cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"line 0\n"
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(60) == 2
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "dfd check-split: its output was closed early (broken pipe)" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_stdout_on_a_full_disk_is_one_line_and_exit_2():
    with open("/dev/full", "wb") as full:
        p = spawn(["detect", "--frames", "1", str(SAMPLE)], stdout=full)
        err = p.stderr.read().decode()
    assert p.wait(60) == 2
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "cannot write the results to stdout: No space left on device" in err


# ---------------------------------------------------------------- item 6: faults end in one line

def test_ctrl_c_is_one_line_exit_130_and_rows_kept(tmp_path):
    out = tmp_path / "out.csv"
    p = spawn(["detect", "--frames", "1", "--out", str(out), *[str(SAMPLE)] * 30], delay=0.3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    err = p.stderr.read().decode()
    assert p.wait(60) == 130
    assert "Traceback" not in err and "interrupted" in err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert 2 <= len(rows) < 30 and all(r["status"] == "ok" and r["model"] for r in rows)


def test_ctrl_c_stops_the_service_with_exit_130():
    pytest.importorskip("uvicorn")
    import urllib.request

    from tests.test_service import free_port

    port = free_port()
    script = ("import sys\nfrom tests.test_detect import fake_ctx\n"
              "from dfd_app.serve import service\n"
              "service.ServiceSettings.build_context = lambda self: fake_ctx()\n"
              "from dfd_app.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    p = subprocess.Popen([sys.executable, "-c", script, "serve", "--port", str(port)], cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), stderr=subprocess.PIPE,
                         preexec_fn=ctrl_c_as_at_a_terminal)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    err = p.stderr.read().decode()
    assert p.wait(60) == 130
    assert "Traceback" not in err and "dfd serve interrupted (Ctrl-C)" in err


def test_ctrl_c_in_any_command_is_exit_130(monkeypatch, caplog):
    from dfd_app.cli import split

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(split, "run_check", interrupted)
    with caplog.at_level(logging.ERROR):
        try:
            code = main(["check-split", "whatever.csv"])
        except KeyboardInterrupt:  # not caught: it would stop this test session too
            pytest.fail("KeyboardInterrupt escaped dfd's main()")
    assert code == 130
    assert error_lines(caplog) == ["dfd check-split interrupted (Ctrl-C); what was written so "
                                   "far is kept"]


def test_a_bare_systemexit_message_is_exit_2(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        code = main(["predict", "--model", "x", "--shards", str(tmp_path), "--out",
                     str(tmp_path / "o.csv"), "--batch-size", "0"])
    assert code == 2 and error_lines(caplog) == ["--batch-size must be >= 1, got 0"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from mesonet_tf.models import Meso4

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    Meso4(input_shape=(32, 32, 3), name="tiny").save(path)
    return path


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_a_damaged_shard_is_named_in_one_line(tmp_path, tiny_model, caplog, damage):
    shards = hostile.face_shards(tmp_path / "shards")
    first = sorted(shards.glob("*.tfrecord"))[0]
    if damage == "corrupted":
        hostile.corrupt_shard(first)
        source, bad = shards, first
    else:
        source = bad = hostile.truncated_shard(first, tmp_path / "cut.tfrecord")
    with caplog.at_level(logging.ERROR):
        code = main(["predict", "--model", str(tiny_model), "--shards", str(source),
                     "--out", str(tmp_path / "v.csv")])
    assert code == 2
    (line,) = error_lines(caplog)
    assert str(bad) in line and f"{damage} record" in line and "function_node" not in line


def test_tensorflow_data_loss_anywhere_is_one_line_and_exit_2(monkeypatch, caplog):
    tf = pytest.importorskip("tensorflow")
    from dfd_app.cli import split

    def damaged(args):  # as `dfd train` meets a damaged shard inside Keras' fit
        raise tf.errors.DataLossError(None, None, "{{function_node __wrapped__IteratorGetNext}} "
                                      "corrupted record at 9923 [Op:IteratorGetNext] name: ")

    monkeypatch.setattr(split, "run_check", damaged)
    with caplog.at_level(logging.ERROR):
        assert main(["check-split", "x.csv"]) == 2
    assert error_lines(caplog) == ["damaged shard data: corrupted record at 9923"]


def test_damaged_shards_are_named_by_the_readers(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from dfd import readers
    from dfd.inference.clips import predict_shards

    shards = hostile.face_shards(tmp_path / "shards")
    bad = hostile.corrupt_shard(sorted(shards.glob("*.tfrecord"))[1])
    assert [f for f, _ in readers.check_shards(shards)] == [bad]

    def clip_model(x):  # a temporal model's call: faces + mask -> [B, 1]
        return tf.fill([tf.shape(x["mask"])[0], 1], 0.5)

    with pytest.raises(readers.DamagedShardError, match=bad.name):
        predict_shards(clip_model, shards, clip_len=2, face_size=32)


def test_an_unknown_codec_is_a_clear_error_row(tmp_path):
    rec = pipeline.detect_video(hostile.unknown_codec_avi(tmp_path), fake_ctx())
    assert rec["status"] == "error" and rec["error"].startswith("VideoReadError")
    assert "no decoder for its video stream" in rec["error"]


def test_an_svg_named_jpg_is_a_clear_error_row(tmp_path):
    svg = hostile.svg_named_jpg(tmp_path)
    rec = pipeline.detect_video(svg, fake_ctx())
    assert rec["status"] == "error" and "NoneType" not in rec["error"]
    assert "no decoder" in rec["error"]
    crop = pipeline.detect_video(svg, fake_ctx(crops=True))
    assert crop["status"] == "error" and "not a readable image" in crop["error"]


# ---------------------------------------------------------------- item 6: the service

@pytest.fixture
def client(tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from dfd_app.serve.service import ServiceSettings, create_app

    with TestClient(create_app(fake_ctx(n_frames=2),
                               ServiceSettings(tmp_root=str(tmp_path)))) as c:
        yield c


def post(client, field, name, data):
    return client.post("/v1/detect", files={field: (name, data, "application/octet-stream")})


def test_service_unknown_codec_is_422(client, tmp_path):
    r = post(client, "file", "x.avi", hostile.unknown_codec_avi(tmp_path).read_bytes())
    assert r.status_code == 422 and r.json()["status"] == "error"
    assert "could not decode" in r.json()["error"]


def test_service_file_in_another_field_is_400_naming_it(client):
    r = post(client, "video", "clip.mp4", SAMPLE.read_bytes())  # 800 KB, over the 64 KB of a
    assert r.status_code == 400                                 # plain field
    assert "'video'" in r.json()["detail"] and "'file'" in r.json()["detail"]
    body = (b"--B\r\nContent-Disposition: form-data; name=\"video\"\r\n\r\n" + b"x" * 70_000
            + b"\r\n--B--\r\n")  # the video's bytes as a plain field (no filename), too large
    r = client.post("/v1/detect", content=body,
                    headers={"content-type": "multipart/form-data; boundary=B"})
    assert r.status_code == 400 and "'video'" in r.json()["detail"]


def test_service_empty_upload_is_400(client):
    r = post(client, "file", "empty.mp4", b"")
    assert r.status_code == 400 and "empty" in r.json()["detail"]


def test_service_docs_work_offline_and_declare_the_body(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text and "https://" not in page.text and "http://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        if f"/docs-assets/{asset}" in page.text:
            assert client.get(f"/docs-assets/{asset}").status_code == 200
        else:  # without swagger-ui-bundle: the plain page with the curl line
            assert "curl -F file=@" in page.text
    body = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file"] and schema["properties"]["file"]["format"] == "binary"


def test_service_docs_fallback_without_swagger_ui(tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from dfd_app.serve import service

    monkeypatch.setattr(service, "SWAGGER_UI_DIR", None)
    with TestClient(service.create_app(fake_ctx(), service.ServiceSettings())) as c:
        page = c.get("/docs").text
    assert "curl -F file=@" in page and "/openapi.json" in page and "https://" not in page


# ---------------------------------------------------------------- item 7: no silent skips

def test_a_hidden_video_in_a_folder_is_logged_as_skipped(tmp_path, caplog):
    hidden = hostile.hidden_video(tmp_path)
    (tmp_path / ".cache").mkdir()
    with caplog.at_level(logging.INFO, logger="dfd_app.detect.inputs"):
        got = list(inputs.iter_inputs([str(tmp_path)]))
    assert got == []
    msgs = [r.getMessage() for r in caplog.records]
    assert any(str(hidden) in m and "skipped hidden file" in m for m in msgs)
    assert any("skipped hidden folder" in m and ".cache" in m for m in msgs)
    named = list(inputs.iter_inputs([str(hidden)]))  # given by name, it is scored
    assert [i.path for i in named] == [str(hidden)] and not named[0].error


def test_every_hostile_file_in_one_batch_gives_one_row_each(tmp_path, cli_ctx, capsys):
    """The whole corpus as one batch: one row per input, the good video still scored."""
    files = [hostile.non_utf8_named_copy(tmp_path), str(hostile.unknown_codec_avi(tmp_path)),
             str(hostile.svg_named_jpg(tmp_path)), str(tmp_path / "missing.mp4"), str(SAMPLE)]
    code, out = detect(files, capsys)
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert code == 1 and len(rows) == len(files)
    assert [r["status"] for r in rows] == ["ok", "error", "error", "error", "ok"]



def test_service_docs_render_offline_in_a_browser(tmp_path, request):
    """Swagger UI from the local files draws /v1/detect with its file field (no network)."""
    if SWAGGER_UI_MISSING():
        pytest.skip("swagger-ui-bundle is not installed: /docs is the plain page")
    browser = request.getfixturevalue("driver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_service import live_server

    with live_server(fake_ctx(n_frames=2), tmp_root=str(tmp_path)) as base:
        browser.get(base + "/docs")
        wait = WebDriverWait(browser, 30)
        op = wait.until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, "#operations-default-detect_v1_detect_post .opblock-summary")))
        op.click()
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn"))).click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        text = browser.find_element(By.TAG_NAME, "body").text
    assert "/v1/detect" in text and "multipart/form-data" in text
    assert "Unable to render" not in text


def SWAGGER_UI_MISSING() -> bool:
    from dfd_app.serve import service

    return service.SWAGGER_UI_DIR is None
