"""`dfd prep` restarts from any kill: SIGKILL a real prep process at start-up, mid-shard and
between shards; the re-runs finish the rest and their shards equal an unbroken run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep import journal, prep
from data_prep.faces import FakeDetector, register_detector
from dfd import schema
from tests.conftest import video_folder

REPO = Path(__file__).resolve().parents[1]


class SlowFakeDetector(FakeDetector):
    """The centred synthetic face, after ``DFD_TEST_DETECT_DELAY`` seconds per video."""

    name = "slowfake"

    def _detect_batch(self, frames, min_face):
        time.sleep(float(os.environ.get("DFD_TEST_DETECT_DELAY", "0")))
        return super()._detect_batch(frames, min_face)


register_detector("slowfake", SlowFakeDetector)

# a real `dfd prep` process, with the slow test detector registered
_SCRIPT = (
    "import sys; sys.path.insert(0, {repo!r}); "
    "import tests.test_prep_resume; from dfd_app.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def videos(tiny_video_factory, tmp_path_factory):
    root = video_folder(tiny_video_factory, tmp_path_factory.mktemp("resume_videos"), 7, 10,
                        lambda k: k % 2 == 0)
    (root / "fake" / "v3b.mp4").write_bytes(b"")  # one failure in the middle of the order
    return root


def _args(src, out):
    return ["prep", str(src), "--out", str(out), "--workers", "1", "--shard-records", "2",
            "--frames", "3", "--sampler", "uniform", "--detector", "slowfake"]


def _config(src, out, **kw):
    kw = {"workers": 1, "shard_records": 2, "n_frames": 3, "sampler": "uniform",
          "detector": "slowfake", **kw}
    return prep.PrepConfig(sources=[str(src)], out_dir=str(out), **kw)


def shard_contents(out: Path) -> list[tuple[str, list[bytes]]]:
    """Every shard of ``out`` (via its index) with its raw records, in order."""
    import tensorflow as tf

    return [(f.name, list(tf.data.TFRecordDataset(str(f)).as_numpy_iterator()))
            for f in schema.resolve_shards(out)]


def records_by_id(out: Path) -> dict[str, bytes]:
    return {schema.decode_record(r)[schema.VIDEO_ID]: r
            for _, recs in shard_contents(out) for r in recs}


def _kill_when(cmd, predicate, timeout=90.0) -> bool:
    """Start ``cmd``; SIGKILL it as soon as ``predicate()`` holds. True when killed there,
    False when the process ended first."""
    env = {**os.environ, "DFD_TEST_DETECT_DELAY": "0.5", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout:
            if predicate():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            if proc.poll() is not None:
                pytest.fail(f"prep ended (rc {proc.returncode}) before the kill point: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.01)
        pytest.fail("the kill point was never reached")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _sidecars(out):
    return sorted(p.name for p in out.glob("videos-*.json"))


def test_sigkill_at_any_point_then_rerun_equals_an_unbroken_run(videos, tmp_path, caplog):
    ref = tmp_path / "ref"
    res = prep.run_prep(_config(videos, ref))
    assert (res.written, res.failed) == (7, 1)
    ref_shards = shard_contents(ref)
    assert [len(r) for _, r in ref_shards] == [2, 2, 2, 1]

    out = tmp_path / "out"
    cmd = [sys.executable, "-c", _SCRIPT.format(repo=str(REPO))] + _args(videos, out)
    # 1. start-up: failures.csv exists, nothing finished yet
    assert _kill_when(cmd, lambda: (out / "failures.csv").exists())
    assert not _sidecars(out) and not (out / "index.json").exists()
    # 2. between shards: a shard more is complete and the next one is not open yet
    assert _kill_when(cmd, lambda: len(_sidecars(out)) >= 1
                      and not list(out.glob("videos-*.tfrecord.tmp")))
    done = len(_sidecars(out))
    assert 1 <= done < 4
    # 3. mid-shard: the next shard is open (one video in it, journaled)
    assert _kill_when(cmd, lambda: len(_sidecars(out)) > done
                      and list(out.glob("videos-*.tfrecord.tmp")))
    assert list((out / "journal").glob("*.rec")), "a finished video waits in the journal"
    assert not (out / "index.json").exists()

    # the re-run finishes the rest, reusing the journaled video, and writes index.json
    caplog.set_level("INFO", logger="data_prep.prep")
    again = prep.run_prep(_config(videos, out))
    assert "taken from the journal" in caplog.text
    assert again.skipped >= 2 * done
    assert shard_contents(out) == ref_shards  # same shards, same records, same order
    assert sorted(records_by_id(out).items()) == sorted(records_by_id(ref).items())
    got, want = schema.read_index(out), schema.read_index(ref)
    for key in ("records", "faces", "failures", "failures_by_status", "items", "pending"):
        assert got[key] == want[key], key
    assert got["pending"] == 0
    assert len(prep.read_failures(out)) == 1  # the failure is recorded once
    assert not (out / "journal").exists()
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["empty", "headerless", "truncated"])
def test_failures_csv_left_by_a_kill_is_read(videos, tmp_path, damage):
    out = tmp_path / "out"
    cfg = _config(videos, out, detector="fake")
    prep.run_prep(cfg)
    path = out / "failures.csv"
    text = path.read_text()
    header, row = text.splitlines()
    assert header == ",".join(journal.FAILURE_COLUMNS)
    path.write_text({"empty": "", "headerless": row + "\n", "truncated": text[:-5]}[damage])
    res = prep.run_prep(cfg)
    # the cut-short row and the empty file lose the failure: it is redone (and fails again)
    assert res.failed == (0 if damage == "headerless" else 1)
    assert res.skipped == (8 if damage == "headerless" else 7)
    fails = prep.read_failures(out)
    assert len(fails) == 1 and fails["status"][0] == "unreadable"
    assert path.read_text().splitlines()[0] == header  # rewritten clean
    assert schema.read_index(out)["failures"] == 1


def test_read_failure_rows_states(tmp_path):
    p = tmp_path / "failures.csv"
    assert journal.read_failure_rows(p) == []
    p.write_text("")
    assert journal.read_failure_rows(p) == []
    p.write_text('video_id,path,member,label,status,reason\na,a.mp4,,1,no_face,"two\nlines"\n'
                 "b,b.mp4,,0,unreadable,cut sho")
    rows = journal.read_failure_rows(p)
    assert [r["video_id"] for r in rows] == ["a"] and rows[0]["reason"] == "two\nlines"
