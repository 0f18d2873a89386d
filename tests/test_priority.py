"""Thread priorities (dfd.priority) and the face search that yields to the decoder: only the
worker thread is lowered, the caller's and the decoder's priority stay, results are the same,
errors reach the caller and the decoder's thread stops."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from data_prep.extract import ExtractConfig, extract_faces
from data_prep.faces import FakeDetector
from dfd.priority import MAX_NICE, lower_this_thread, per_thread_supported, run_lowered
from tests.test_tracked_detection import _square_finder as _square

linux = pytest.mark.skipif(not per_thread_supported(), reason="per-thread nice is Linux only")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@linux
def test_run_lowered_lowers_only_its_own_thread():
    before = _nice()
    got = run_lowered(_nice, 3)
    assert got == min(MAX_NICE, before + 3)
    assert _nice() == before  # the caller is untouched


def test_run_lowered_returns_and_raises_what_the_work_does():
    assert run_lowered(lambda: 42, 5) == 42
    with pytest.raises(KeyError, match="missing"):
        run_lowered(lambda: {}["missing"], 5)


def test_lower_this_thread_arguments():
    assert lower_this_thread(0) is None
    assert lower_this_thread(-2) is None
    with pytest.raises(TypeError, match="2.5"):
        lower_this_thread(2.5)
    with pytest.raises(TypeError, match="True"):
        lower_this_thread(True)


@linux
def test_lower_this_thread_stops_at_the_maximum():
    assert run_lowered(lambda: lower_this_thread(100), 0) == MAX_NICE


@pytest.mark.parametrize("bad", [-1, 20, 2.0, True, "5"])
def test_face_nice_is_checked(bad):
    with pytest.raises(ValueError, match=f"face_nice .*{bad!r}"):
        ExtractConfig(face_nice=bad)


@pytest.fixture
def moving_square(tiny_video_factory):
    def draw(frame, i):
        frame[:] = 30
        frame[150:190, 100 + 3 * i:140 + 3 * i] = 255
    return tiny_video_factory("square.mp4", frames=40, size=(640, 360), draw=draw)


def _cfg(**kw):
    return ExtractConfig(n_frames=12, sampler="uniform", face_size=32, detect_side=None,
                         min_face=10, detect_every=4, **kw)


def test_the_face_search_runs_lowered_with_the_same_results(moving_square):
    seen: dict = {}

    def finder(frame, pos):
        seen.setdefault("thread", threading.current_thread().name)
        if per_thread_supported():
            seen.setdefault("nice", _nice())
        return _square(frame, pos)

    before = _nice() if per_thread_supported() else None
    handed = []
    low = extract_faces(moving_square, FakeDetector(fn=finder), _cfg(face_nice=7),
                        on_face=lambda i, f: handed.append(i))
    assert seen["thread"] == "dfd-faces"
    if per_thread_supported():
        assert seen["nice"] == min(MAX_NICE, before + 7)
        assert _nice() == before
    same = extract_faces(moving_square, FakeDetector(fn=_square), _cfg(face_nice=0))
    assert handed == low.tracks[0].frame_indices == same.tracks[0].frame_indices
    assert low.tracks[0].boxes == same.tracks[0].boxes
    for a, b in zip(low.tracks[0].faces, same.tracks[0].faces):
        np.testing.assert_array_equal(a, b)
    # without the decode thread there is nothing to yield to: the caller's thread searches
    seen.clear()
    extract_faces(moving_square, FakeDetector(fn=finder), _cfg(face_nice=7, overlap=False))
    assert seen["thread"] == threading.current_thread().name


def test_an_error_in_the_lowered_search_reaches_the_caller_and_stops_the_decoder(
        moving_square):
    def broken(frame, pos):
        raise RuntimeError("detector broke on purpose")

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="on purpose"):
        extract_faces(moving_square, FakeDetector(fn=broken), _cfg())
    left = {t.name for t in threading.enumerate()} - before
    assert not left, left


def test_the_decoder_thread_keeps_the_callers_priority(moving_square, monkeypatch):
    import data_prep.extract as extract

    got = {}
    real = extract._threaded

    def spy(events, depth=8):
        def watched():
            got["name"] = threading.current_thread().name
            if per_thread_supported():
                got["nice"] = _nice()
            yield from events
        return real(watched(), depth)

    monkeypatch.setattr(extract, "_threaded", spy)
    before = _nice() if per_thread_supported() else None
    extract_faces(moving_square, FakeDetector(fn=_square), _cfg(face_nice=9))
    assert got["name"] == "dfd-decode"
    if per_thread_supported():
        assert got["nice"] == before


def test_an_interrupted_caller_stops_the_lowered_work_first():
    import signal
    import time

    stop, state = threading.Event(), {"ended": False}

    def work():
        stop.wait(10)  # never hangs the suite, whatever happens to the signal
        time.sleep(0.05)
        state["ended"] = True

    # Python's own Ctrl-C handler (another test or library may have installed its own)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            run_lowered(work, 1, name="dfd-test-work", on_interrupt=stop.set)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop.is_set() and state["ended"]
    assert "dfd-test-work" not in {t.name for t in threading.enumerate()}


#: run in a fresh process: a lowered search, then every thread's nice value
_NO_LOWERED_THREAD_LEFT = """
import os, numpy as np
from data_prep.extract import ExtractConfig, extract_faces
from data_prep.faces import FakeDetector
from tests.test_tracked_detection import _square_finder
base = os.getpriority(os.PRIO_PROCESS, 0)
extract_faces(os.environ["DFD_TEST_VIDEO"], FakeDetector(fn=_square_finder),
              ExtractConfig(n_frames=8, sampler="uniform", face_size=32, detect_side=None,
                            min_face=10, detect_every=4, face_nice=5))
import cv2, time
cv2.resize(np.zeros((1080, 1920, 3), np.uint8), (640, 360), interpolation=cv2.INTER_AREA)
def lowered():
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            if os.getpriority(os.PRIO_PROCESS, int(t)) != base:
                out.append(t)
        except OSError:  # ended meanwhile
            pass
    return out
for _ in range(50):  # a joined thread may still be leaving the kernel's list for a moment
    low = lowered()
    if not low:
        break
    time.sleep(0.05)
print("LOWERED", low)
"""


@linux
def test_no_thread_stays_lowered_after_a_lowered_search(moving_square):
    """OpenCV starts its shared worker threads on its first parallel call: that must not
    happen in a lowered search thread (they would run every later OpenCV call lowered)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, DFD_TEST_VIDEO=str(moving_square), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _NO_LOWERED_THREAD_LEFT], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOWERED []" in out.stdout, out.stdout


@linux
def test_the_early_scorer_runs_lowered():
    from dfd_app.detect.pipeline import EarlyScores

    seen = []

    def scorer(faces):
        seen.append(_nice())
        return np.zeros(len(faces))

    before = _nice()
    early = EarlyScores(scorer, nice=3)
    early.add(0, np.zeros((4, 4, 3), np.uint8))
    assert sorted(early.finish()) == [0]
    assert seen == [min(MAX_NICE, before + 3)] and _nice() == before
