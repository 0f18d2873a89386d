"""`dfd prep --engine dask`: the same shards as single-process prep, whatever the worker count;
a worker killed mid-run or a killed client loses nothing and writes nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster, WorkerPlugin  # noqa: E402

from data_prep import engines, prep  # noqa: E402
from data_prep.faces import FakeDetector, register_detector  # noqa: E402
from dfd import schema  # noqa: E402
from dfd_app.cli.main import main  # noqa: E402
from tests.conftest import video_folder  # noqa: E402
from tests.test_prep_resume import (  # noqa: E402
    _SCRIPT,
    REPO,
    SlowFakeDetector,
    shard_contents,
)


class CrashOnceDetector(FakeDetector):
    """The centred synthetic face; the first call anywhere kills its process (``os._exit``),
    leaving the marker file ``DFD_TEST_CRASH_MARKER`` so that it happens only once."""

    name = "crashonce"

    def _detect_batch(self, frames, min_face):
        marker = os.environ.get("DFD_TEST_CRASH_MARKER")
        if marker:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os._exit(13)
        return super()._detect_batch(frames, min_face)


register_detector("crashonce", CrashOnceDetector)
register_detector("slowfake", SlowFakeDetector)


class RegisterTestDetectors(WorkerPlugin):
    """Registers the test detectors in every worker (restarted ones too)."""

    def __init__(self, env: dict):
        self.env = env

    def setup(self, worker):
        os.environ.update(self.env)
        import tests.test_prep_dask  # noqa: F401 - registers the detectors


@pytest.fixture(scope="module")
def videos(tiny_video_factory, tmp_path_factory):
    root = video_folder(tiny_video_factory, tmp_path_factory.mktemp("dask_videos"), 6, 8,
                        lambda k: k % 3 == 0, prefix="d", base=30, step=20, square=(5, 25),
                        period=11)
    (root / "fake" / "d4b.mp4").write_text("not a video\n")
    return root


def _config(src, out, **kw):
    kw = {"workers": 1, "shard_records": 2, "n_frames": 3, "sampler": "uniform",
          "detector": "fake", **kw}
    return prep.PrepConfig(sources=[str(src)], out_dir=str(out), **kw)


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("dask_ref") / "ref"
    res = prep.run_prep(_config(videos, out))
    assert (res.written, res.failed) == (6, 1)
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    marker = tmp_path_factory.mktemp("crash") / "crashed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as lc, Client(lc) as client:
        client.register_plugin(RegisterTestDetectors({"DFD_TEST_CRASH_MARKER": str(marker),
                                              "DFD_TEST_DETECT_DELAY": "0.3"}))
        yield lc.scheduler_address, marker


def _same_output(out: Path, ref: Path) -> None:
    assert shard_contents(out) == shard_contents(ref)  # same shards, records, order
    got, want = schema.read_index(out), schema.read_index(ref)
    for key in ("records", "faces", "items", "failures", "failures_by_status", "pending"):
        assert got[key] == want[key], key
    ids = [schema.decode_record(r)[schema.VIDEO_ID] for _, recs in shard_contents(out)
           for r in recs]
    assert len(ids) == len(set(ids))  # nothing written twice
    assert not (out / "journal").exists()


def test_a_worker_killed_mid_run_loses_nothing(videos, reference, cluster, tmp_path):
    address, marker = cluster
    out = tmp_path / "out"
    res = prep.run_prep(_config(videos, out, engine="dask", scheduler=address,
                                detector="crashonce"))
    assert marker.exists(), "no worker was killed: the test proves nothing"
    assert (res.written, res.failed) == (6, 1)
    _same_output(out, reference)


def test_a_killed_client_rerun_finishes(videos, reference, cluster, tmp_path):
    address, _ = cluster
    out = tmp_path / "out"
    args = ["prep", str(videos), "--out", str(out), "--scheduler", address,
            "--shard-records", "2", "--frames", "3", "--sampler", "uniform",
            "--detector", "slowfake"]
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT.format(repo=str(REPO))] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        t0 = time.monotonic()
        while not list(out.glob("videos-*.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() - t0 < 90, "no shard was ever written"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not (out / "index.json").exists()
    res = prep.run_prep(_config(videos, out, engine="dask", scheduler=address,
                                detector="slowfake"))
    assert res.skipped >= 2
    _same_output(out, reference)


def test_local_cluster_through_the_command(videos, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prep", str(videos), "--out", str(out), "--engine", "dask", "--workers", "2",
                 "--shard-records", "2", "--frames", "3", "--sampler", "uniform",
                 "--detector", "fake"]) == 0
    assert "6 items written" in capsys.readouterr().out
    _same_output(out, reference)


class TokenJob:
    """A job whose per-worker ``load()`` makes a fresh token: tasks show which load they used."""

    def load(self):
        import uuid

        return uuid.uuid4().hex

    def __call__(self, item, token):
        return {"item": item, "token": token}

    def __repr__(self):
        return "TokenJob()"


def test_the_job_loads_once_per_worker(cluster):
    address, _ = cluster
    items = [{"video_id": str(i)} for i in range(12)]
    res = list(engines.run_jobs(TokenJob(), items, engine="dask", scheduler=address))
    assert sorted(r["item"]["video_id"] for r in res) == sorted(i["video_id"] for i in items)
    by_pid = {}
    for r in res:
        by_pid.setdefault(r["worker"]["pid"], set()).add(r["token"])
    assert all(len(tokens) == 1 for tokens in by_pid.values()), by_pid


def test_engine_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="engine must be one of"):
        prep.PrepConfig(engine="spark")
    with pytest.raises(ValueError, match="needs engine 'dask'"):
        prep.PrepConfig(engine="process", scheduler="tcp://127.0.0.1:1")


@pytest.mark.shared
def test_two_dask_workers_equal_single_process_on_dfdc(shared, tmp_path):
    src = shared("data", "dfdc_videos")
    common = ["--shard-records", "2", "--frames", "4", "--detect-side", "320", "--limit", "5"]
    assert main(["prep", str(src), "--out", str(tmp_path / "one"), "--workers", "1",
                 *common]) == 0
    assert main(["prep", str(src), "--out", str(tmp_path / "dask"), "--engine", "dask",
                 "--workers", "2", *common]) == 0
    one = schema.read_index(tmp_path / "one")
    assert one["records"] >= 3 and one["records"] + one["failures"] == 5 and one["pending"] == 0
    _same_output(tmp_path / "dask", tmp_path / "one")
