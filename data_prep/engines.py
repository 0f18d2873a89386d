"""Where ``dfd prep`` runs its per-video jobs: in this process, a local process pool, or Dask.

A *job* is a picklable object with ``load()`` (what every worker builds once: the face
detector) and ``job(item, loaded) -> dict`` (one manifest row in, one result out; it never
raises). :func:`run_jobs` yields the results **in completion order**; the caller puts them
back in manifest order (``dfd prep`` fills shards in manifest order, so the output does not
depend on the engine or the worker count).

* ``process``: ``workers=1`` runs in this process; more starts a pool of spawned processes.
* ``dask``: ``scheduler=None`` starts a local Dask cluster of ``workers`` one-thread worker
  processes; ``scheduler="tcp://host:8786"`` (or a scheduler file) uses an existing cluster
  (Slurm via dask-jobqueue, Kubernetes, ``dask scheduler`` + ``dask worker`` by hand). Tasks of
  a worker that dies are retried elsewhere by Dask; a video that kills every worker it runs on
  (Dask's ``allowed-failures``) gets an ``error`` result naming it, and the run carries on.

Whatever the engine, ``load()`` runs once per worker process (a per-process cache keyed by
the job), not once per video.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

ENGINES = ("process", "dask")

_LOADED: dict[str, object] = {}
_LOAD_LOCK = threading.Lock()
_LOAD_STATS = {"loads": 0, "seconds": 0.0}


def _loaded(job):
    """``job.load()``, built once per worker process (and job configuration)."""
    key = repr(job)
    with _LOAD_LOCK:
        if key not in _LOADED:
            t = time.perf_counter()
            _LOADED[key] = job.load()
            _LOAD_STATS["loads"] += 1
            _LOAD_STATS["seconds"] += time.perf_counter() - t
            log.debug("worker %d loaded %s in %.2fs", os.getpid(), key,
                      time.perf_counter() - t)
    return _LOADED[key]


def run_job(job, item: dict) -> dict:
    """Run one job on one item in a worker; the result says which worker process ran it and
    how many loads that process has done (``worker: {pid, loads, load_seconds}``)."""
    res = job(item, _loaded(job))
    res["worker"] = {"pid": os.getpid(), "loads": _LOAD_STATS["loads"],
                     "load_seconds": round(_LOAD_STATS["seconds"], 4)}
    return res


def _preload(job) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Ctrl-C reaches the whole process group: the parent stops the run (one line, exit 130)
    # and ends the pool; a worker printing its own KeyboardInterrupt traceback adds nothing
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _loaded(job)


def run_jobs(job, items: Iterable[dict], engine: str = "process", workers: int = 1,
             scheduler: str | None = None) -> Iterator[dict]:
    """Results of ``job`` on every item, in completion order."""
    items = list(items)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "dask":
        yield from _dask(job, items, workers, scheduler)
        return
    if scheduler:
        raise ValueError(f"a scheduler address ({scheduler!r}) needs engine 'dask', not {engine!r}")
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        for item in items:
            yield run_job(job, item)
        return
    with mp.get_context("spawn").Pool(workers, initializer=_preload, initargs=(job,)) as pool:
        yield from pool.imap_unordered(functools.partial(run_job, job), items)


def dask_client(workers: int = 1, scheduler: str | None = None):
    """A Dask client: of a new local cluster of ``workers`` one-thread processes, or connected
    to ``scheduler`` (an address, or the path of a scheduler file). Returns ``(client, cluster)``;
    ``cluster`` is None for an existing one."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise RuntimeError(
            "--engine dask needs Dask: pip install 'dfd-tf[scale]' (dask[distributed])"
        ) from err
    if scheduler:
        if os.path.isfile(scheduler):
            client = Client(scheduler_file=scheduler)
        else:
            client = Client(scheduler)
        log.info("dask: connected to %s (%d workers)", scheduler,
                 len(client.scheduler_info().get("workers", {})))
        return client, None
    try:
        import bokeh  # noqa: F401 - the dashboard needs it
        dashboard = ":0"
    except ImportError:
        dashboard = None
    cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                           dashboard_address=dashboard)
    client = Client(cluster)
    log.info("dask: local cluster of %d workers%s", workers,
             f", dashboard {client.dashboard_link}" if dashboard else "")
    return client, cluster


def _dask(job, items: list[dict], workers: int, scheduler: str | None) -> Iterator[dict]:
    if not items:
        return
    client, cluster = dask_client(workers, scheduler)
    try:
        from distributed import as_completed

        threads = sum(client.nthreads().values()) or max(1, workers)
        window = max(4, 2 * threads)  # tasks in flight: keeps every worker busy, memory bounded
        queue = iter(items)
        rows: dict[str, dict] = {}
        running = as_completed()

        def submit() -> None:
            item = next(queue, None)
            if item is not None:
                fut = client.submit(run_job, job, item, pure=False)
                rows[fut.key] = item
                running.add(fut)

        for _ in range(window):
            submit()
        for fut in running:
            item = rows.pop(fut.key)
            try:
                res = fut.result()
            except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: the video kills workers
                log.debug("task of %s failed", item.get("video_id"), exc_info=True)
                res = {"item": item, "status": "error",
                       "reason": f"worker failed on it: {type(err).__name__}: {err}"}
            fut.release()
            submit()
            yield res
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
