"""Spreading an evaluation over a Dask cluster (``pip install "irc-compiler[cluster]"``).

irc brings no scheduler of its own: batches are ``dask.distributed`` tasks.

* The program travels as its saved artifact (bytes, in a worker plugin), never
  as machine code: each worker loads it once, on first use, and a spike-llvm
  program compiles there or comes from that machine's own code cache.  A
  worker that joins later, or restarts, gets the plugin too.
* A task is one batch, named by its global sample range, and runs it at its
  global offset (see irc.evaluation), so the spikes are those of a local run
  whatever worker runs what.  When the workers can read the data files
  (a shared file system, or a LocalCluster) a task carries only the file
  names and its range; otherwise (or for an iterable) irc reads the batch and
  ships it, keeping a few in flight.
* A task returns integer counts; irc adds them up (exact).
* A worker that dies has its tasks rerun on the others by the scheduler (up
  to ``distributed.scheduler.allowed-failures`` times); irc asks the
  scheduler which tasks were marked that way and the result lists them.
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Iterator
from urllib.parse import urlparse

from .errors import IRCError

try:
    import dask
    from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
except ImportError as _e:  # the optional extra is not installed
    raise IRCError(f"running on a Dask cluster needs dask.distributed ({_e})",
                   hint='pip install "irc-compiler[cluster]"') from None

from .evaluation import BatchResult, Collect, Plan, Rerun, batch_source, evaluate_batch
from .stream import IterableSource, Source


# -------------------------------------------------------------- connecting
def connect(address: str, timeout: str | float | None = None) -> Client:
    """A client of the scheduler at ``address`` (tcp://host:8786), or one clear error.

    The wait is dask's ``distributed.comm.timeouts.connect`` (set it with
    DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s) unless ``timeout`` is given.
    """
    wait = timeout if timeout is not None else dask.config.get("distributed.comm.timeouts.connect")
    try:
        return Client(address, timeout=wait, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise IRCError(f"cannot reach the Dask scheduler at {address} ({type(e).__name__}: {e})".rstrip(),
                       hint="start one with `dask scheduler` and workers with `dask worker tcp://HOST:8786`, "
                            "or use --workers N for a cluster on this machine") from None


@contextmanager
def local_cluster(workers: int) -> Iterator[Client]:
    """A LocalCluster of ``workers`` single-threaded worker processes, stopped on the way out."""
    if workers < 1:
        raise IRCError(f"--workers must be at least 1, got {workers}")
    try:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    except Exception as e:  # ports, process limits: the user's machine, not irc
        raise IRCError(f"could not start a Dask LocalCluster of {workers} workers ({type(e).__name__}: {e})") from None
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def describe(client: Client) -> str:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    threads = sum(w["nthreads"] for w in workers.values())
    return f"{len(workers)} workers ({threads} threads), scheduler {client.scheduler.address}"


# -------------------------------------------------------- on the workers
class ProgramPlugin(WorkerPlugin):
    """Holds the artifact on each worker and loads the program from it once, on first use."""

    def __init__(self, artifact: bytes, threads_by_host: dict[str, int]):
        self.artifact = artifact
        self.threads_by_host = threads_by_host
        self._program = None
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"artifact": self.artifact, "threads_by_host": self.threads_by_host}

    def __setstate__(self, state):
        self.__init__(state["artifact"], state["threads_by_host"])

    def setup(self, worker) -> None:
        self.worker = worker

    def program(self):
        with self._lock:
            if self._program is None:
                from .program import load_program

                folder = getattr(self.worker, "local_directory", None) or tempfile.gettempdir()
                fd, path = tempfile.mkstemp(suffix=".ircp", dir=folder)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(self.artifact)
                    prog = load_program(path)
                finally:
                    os.remove(path)
                if hasattr(prog, "threads"):  # share this machine's cores among its worker threads
                    host = urlparse(self.worker.address).hostname
                    prog.threads = self.threads_by_host.get(host) or max(
                        1, (os.cpu_count() or 1) // max(1, self.worker.state.nthreads))
                self._program = prog
            return self._program


def run_task(plugin: str, source: Source, plan: Plan) -> BatchResult:
    """A task: one batch of the data set, read here (or shipped in ``source``), run at its offset."""
    worker = get_worker()
    prog = worker.plugins[plugin].program()
    xs, y = source.read(source.start, source.stop)
    result = evaluate_batch(prog, xs, y, source.start, plan)
    result.worker = worker.address
    return result


def _all_exist(paths: list[str]) -> bool:
    return all(os.path.exists(p) for p in paths)


# ---------------------------------------------------------------- driving
@dataclass
class ClusterRun:
    workers: int
    reruns: list[Rerun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_on_cluster(client: Client, artifact: bytes, source, plan: Plan, collect: Collect, bar) -> ClusterRun:
    """Run every batch of ``source`` as a task on ``client``'s cluster; ``collect`` each result here."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    if not info:
        raise IRCError(f"the Dask cluster at {client.scheduler.address} has no workers",
                       hint="start some with `dask worker ADDRESS`")
    run = ClusterRun(len(info))
    token = uuid.uuid4().hex[:8]
    name = f"irc-program-{sha256(artifact).hexdigest()[:12]}-{token}"  # one per run: runs may overlap
    client.register_plugin(ProgramPlugin(artifact, _threads_by_host(client, info)), name=name)
    ship = isinstance(source, IterableSource) or not all(
        client.run(_all_exist, sorted(source.paths())).values())
    if ship and isinstance(source, Source) and source.paths():
        run.notes.append("the workers cannot read the data files, so irc reads them and sends each batch")
    in_flight = max(2, 2 * sum(w["nthreads"] for w in info.values())) if ship else None
    tasks = _tasks(source, plan.batch_size, ship)
    ranges: dict[str, tuple[int, int]] = {}
    pending = as_completed(loop=client.loop)

    def submit_more() -> None:
        while in_flight is None or pending.count() < in_flight:
            task = next(tasks, None)
            if task is None:
                return
            key = f"irc-batch-{token}-{task.start}-{task.stop}"
            ranges[key] = (task.start, task.stop)
            pending.add(client.submit(run_task, name, task, plan, key=key, retries=2))

    try:
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GiB"}):
            submit_more()
            for done in pending.batches():
                marked = client.run_on_scheduler(_suspicious_counts([f.key for f in done]))
                for fut in done:
                    result = _result(fut, ranges[fut.key])
                    if marked.get(fut.key):
                        run.reruns.append(Rerun(*ranges[fut.key], marked[fut.key]))
                    collect(result)
                    bar.update(result.rows)
                    fut.release()
                submit_more()
    finally:
        for fut in list(pending.futures):
            fut.cancel()
        try:
            client.unregister_worker_plugin(name)
        except Exception:  # the cluster may be going away; the plugin only holds the artifact
            pass
    run.reruns.sort(key=lambda r: r.start)
    return run


def _tasks(source, batch_size: int, ship: bool) -> Iterator[Source]:
    if isinstance(source, IterableSource):
        for start, xs, y in source.batches(batch_size):
            yield batch_source(start, xs, y)
        return
    for start, stop in source.ranges(batch_size):
        yield source.materialized(start, stop) if ship else source.slice(start, stop)


def _result(fut, span: tuple[int, int]) -> BatchResult:
    try:
        return fut.result()
    except KilledWorker as e:
        raise IRCError(f"samples {span[0]}-{span[1] - 1} killed every worker that ran them ({e})",
                       hint="a worker running out of memory dies; try a smaller --batch-size") from None
    except FutureCancelledError:
        raise IRCError(f"the task for samples {span[0]}-{span[1] - 1} was cancelled (the cluster shut down?)") from None


def _suspicious_counts(keys: list[str]):
    """A function for the scheduler: how many times each task's worker died while it held the task."""
    def count(dask_scheduler=None):
        tasks = dask_scheduler.tasks
        return {k: tasks[k].suspicious for k in keys if k in tasks and tasks[k].suspicious}
    return count


def _threads_by_host(client: Client, info: dict) -> dict[str, int]:
    """Threads each program may use per task: a host's cores shared among its workers' threads."""
    cores = client.run(os.cpu_count)
    per_host: dict[str, list[int]] = {}
    for address, w in info.items():
        host = urlparse(address).hostname or socket.gethostname()
        per_host.setdefault(host, [0, 0])
        per_host[host][0] += w["nthreads"]
        per_host[host][1] = max(per_host[host][1], cores.get(address) or 1)
    return {host: max(1, c // max(1, t)) for host, (t, c) in per_host.items()}
