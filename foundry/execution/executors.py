"""Where ground truth runs: in-process (tests) or on any Dask cluster (LocalCluster, SLURMCluster).

The scheduler needs three things from an executor: submit a chunk of candidates, collect
finished chunks without blocking the loop for long, and say how many chunks to keep in flight.
Chunks (not single items) make millisecond verifiers worth shipping to a worker; slow ones go
one item a task. The warm verifier host lives in the worker process, one per worker thread,
and is reused by every chunk it receives. A verifier's declared needs become Dask resources:
a 4-thread verifier takes ``threads=4`` of a worker that offers them.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from foundry.contract import Candidate, SetupError
from foundry.execution.cpus import usable_cpus
from foundry.execution.host import ChildHost, InProcessHost, host_for
from foundry.execution.outcomes import GTResult
from foundry.execution.spec import VerifierSpec

#: Seconds between refreshes of a Dask cluster's worker count.
WORKER_COUNT_REFRESH_S = 2.0
#: Seconds between looks for finished chunks while the loop has nothing else to do.
COLLECT_POLL_S = 0.002


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs to verify a chunk; picklable."""

    verifier: VerifierSpec
    items: tuple[tuple[int, Candidate], ...]


@dataclass
class ChunkOutcome:
    job: ChunkJob
    results: list[GTResult] = field(default_factory=list)
    #: set when the chunk as a whole failed (worker lost, SetupError): every item is unresolved
    error: BaseException | None = None
    #: seconds the worker spent on the chunk: the verifier plus its hosting (pipes, framing)
    busy_s: float = 0.0


_HOSTS: dict[tuple[Any, ...], ChildHost | InProcessHost] = {}
_HOSTS_LOCK = threading.Lock()


def host_of(spec: VerifierSpec) -> ChildHost | InProcessHost:
    """This thread's warm host for ``spec`` (one child per worker thread)."""
    key = (spec, threading.get_ident())
    with _HOSTS_LOCK:
        host = _HOSTS.get(key)
        if host is None:
            host = _HOSTS[key] = host_for(spec)
    return host


def run_chunk(job: ChunkJob) -> list[GTResult]:
    """Verify a chunk with this thread's warm host."""
    return host_of(job.verifier).verify_many(job.items)


def run_chunk_timed(job: ChunkJob) -> tuple[list[GTResult], float]:
    """Worker-side entry point: :func:`run_chunk` and the seconds it took."""
    started = time.perf_counter()
    results = run_chunk(job)
    return results, time.perf_counter() - started


def close_hosts() -> None:
    """Stop every warm verifier in this process (on workers at the end, inline at the end)."""
    with _HOSTS_LOCK:
        hosts = list(_HOSTS.values())
        _HOSTS.clear()
    for host in hosts:
        with contextlib.suppress(Exception):
            host.close()


class Executor(Protocol):
    """What the scheduler needs from a place to run ground truth."""

    #: chunks to keep in flight so that every worker stays busy
    slots: int
    #: True when a chunk crosses processes: each one then costs milliseconds of scheduling and
    #: transfer, and the scheduler grows the chunks of fast verifiers to amortise that
    remote: bool
    #: workers (processes or threads) that run ground truth at once, for the summary
    workers: int

    def submit(self, job: ChunkJob) -> None: ...

    def collect(self, timeout_s: float) -> list[ChunkOutcome]:
        """Finished chunks; waits at most ``timeout_s`` for the first one if none is ready."""
        ...

    def in_flight(self) -> int: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Runs each chunk at submission, in this process. Deterministic: the choice for tests."""

    slots = 1
    remote = False
    workers = 1

    def __init__(self) -> None:
        self._done: list[ChunkOutcome] = []

    def submit(self, job: ChunkJob) -> None:
        try:
            results, busy_s = run_chunk_timed(job)
            self._done.append(ChunkOutcome(job, results, busy_s=busy_s))
        except Exception as exc:
            self._done.append(ChunkOutcome(job, error=exc))

    def collect(self, timeout_s: float) -> list[ChunkOutcome]:
        done, self._done = self._done, []
        return done

    def in_flight(self) -> int:
        return len(self._done)

    def close(self) -> None:
        close_hosts()


def _close_worker_hosts() -> None:
    close_hosts()


def dask_resources(spec: VerifierSpec, offered: set[str]) -> dict[str, float]:
    """The Dask resources a task of ``spec`` asks for, among those the workers ``offered``.

    A resource no worker declares cannot be asked for (the task would wait forever): threads
    and memory are then left to the worker's own slots, but GPUs are an error.
    """
    res = spec.resources
    wanted: dict[str, float] = {}
    if "threads" in offered:
        wanted["threads"] = res.threads
    if res.memory_mb and "memory_mb" in offered:
        wanted["memory_mb"] = res.memory_mb
    if res.gpus:
        if "gpus" not in offered:
            raise SetupError(
                f"the verifier needs {res.gpus} GPU(s) but no Dask worker offers the resource "
                "'gpus' (start workers with --resources gpus=N)"
            )
        wanted["gpus"] = res.gpus
    return wanted


def _safe_as_completed(**kwargs: Any) -> Any:
    """``distributed.as_completed(with_results=True)`` whose background fetch of a result
    cannot die silently.

    A task that finished on a worker lost before its result was fetched is computed again;
    if that fails too (KilledWorker: the new worker died as well), distributed's fetch raises
    inside its own callback and the future is never handed out - the run would wait for it
    for ever. Here such a future is handed out with its exception instead.
    """
    from distributed import as_completed

    class SafeAsCompleted(as_completed):  # type: ignore[misc]
        async def _track_future(self, future: Any) -> None:
            try:
                await super()._track_future(future)
                return
            except Exception as exc:
                error: BaseException = exc
            with self.lock:
                if future not in self.futures:
                    return
                self.futures[future] -= 1
                if not self.futures[future]:
                    del self.futures[future]
                self.queue.put_nowait((future, error))
            async with self.condition:
                self.condition.notify()
            with self.thread_condition:
                self.thread_condition.notify()

    return SafeAsCompleted(**kwargs)


class DaskExecutor:
    """Ground truth on a Dask cluster: a LocalCluster by default, or any cluster/client given.

    ``cluster`` may be a ``distributed.Client``, any Dask cluster object (``LocalCluster``,
    ``dask_jobqueue.SLURMCluster``), or ``None`` for an embedded LocalCluster sized to the
    cores this process may use: one worker process per ``threads_per_task`` cores, each
    offering ``threads=threads_per_task`` (so a 2-thread verifier runs alone on its worker
    and two 1-thread ones share it), its scheduler on loopback. A given cluster is closed
    with the executor only when ``owns_cluster`` is true.
    """

    def __init__(
        self,
        cluster: Any = None,
        *,
        n_workers: int | None = None,
        threads_per_task: int = 1,
        chunks_per_worker: int = 2,
        owns_cluster: bool = False,
    ) -> None:
        from distributed import Client, LocalCluster

        #: the cluster (or client) this executor closes when it is closed: the one it made,
        #: or the one given with ``owns_cluster=True`` (e.g. a SLURMCluster: its jobs end)
        self._owned_cluster = cluster if owns_cluster and cluster is not None else None
        self.threads_per_task = max(int(threads_per_task), 1)
        if cluster is None:
            if n_workers is None:
                n_workers = max(usable_cpus().cpus // self.threads_per_task, 1)
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=self.threads_per_task,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=40,
                resources={"threads": self.threads_per_task},
            )
            self._owned_cluster = cluster
        if isinstance(cluster, Client):
            self.client = cluster
            self._owned_client = False
        else:
            self.client = Client(cluster)
            self._owned_client = True
        self.chunks_per_worker = chunks_per_worker
        self.remote = True
        self._workers = 1
        self._concurrency = 1
        self._offered: set[str] = set()
        self._workers_checked_at = -math.inf
        self._futures: dict[Any, ChunkJob] = {}
        # with_results: the client's event loop fetches each finished chunk in the background,
        # instead of a blocking round trip to the worker per chunk in the coordinator's loop
        self._as_completed = _safe_as_completed(with_results=True, raise_errors=False)

    def _refresh(self) -> None:
        """Worker count, concurrency and offered resources. A round trip to the scheduler,
        so refreshed every few seconds only (an adaptive SLURMCluster changes size on that
        scale, not faster)."""
        now = time.monotonic()
        if now - self._workers_checked_at <= WORKER_COUNT_REFRESH_S:
            return
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        offered: set[str] = set()
        concurrency = 0
        for worker in info.values():
            resources = worker.get("resources") or {}
            offered.update(resources)
            nthreads = int(worker.get("nthreads", 1) or 1)
            if "threads" in resources:
                nthreads = min(nthreads, int(resources["threads"] // self.threads_per_task))
            concurrency += max(nthreads, 0)
        self._workers = len(info) or 1
        self._concurrency = max(concurrency, 1)
        self._offered = offered
        self._workers_checked_at = now

    @property
    def workers(self) -> int:  # type: ignore[override]
        self._refresh()
        return self._workers

    @property
    def slots(self) -> int:  # type: ignore[override]
        """Chunks to keep in flight: two per task the cluster can run at once."""
        self._refresh()
        return self._concurrency * self.chunks_per_worker

    def submit(self, job: ChunkJob) -> None:
        self._refresh()
        threads = job.verifier.resources.threads
        if threads > self.threads_per_task:
            self.threads_per_task = threads
            self._workers_checked_at = -math.inf
        resources = dask_resources(job.verifier, self._offered) or None
        future = self.client.submit(run_chunk_timed, job, pure=False, resources=resources)
        self._futures[future] = job
        self._as_completed.add(future)

    def collect(self, timeout_s: float) -> list[ChunkOutcome]:
        if not self._futures:
            return []
        batch = self._as_completed.next_batch(block=False)
        deadline = time.monotonic() + timeout_s
        while not batch and time.monotonic() < deadline:
            time.sleep(min(COLLECT_POLL_S, max(deadline - time.monotonic(), 0.0)))
            batch = self._as_completed.next_batch(block=False)
        done: list[ChunkOutcome] = []
        for future, result in batch:
            job = self._futures.pop(future)
            if future.status == "finished":
                results, busy_s = result
                done.append(ChunkOutcome(job, results, busy_s=busy_s))
            elif isinstance(result, BaseException):  # cancelled
                done.append(ChunkOutcome(job, error=result))
            else:  # (type, exception, traceback) of a task that raised or a lost worker
                error = result[1] if isinstance(result, tuple) and len(result) == 3 else result
                if not isinstance(error, BaseException):
                    error = RuntimeError(f"chunk ended with status {future.status}: {error!r}")
                done.append(ChunkOutcome(job, error=error))
        return done

    def in_flight(self) -> int:
        return len(self._futures)

    def close(self) -> None:
        if self._futures:
            # a run stopped mid-way: cancel what is in flight, so that no background fetch of
            # a result races the client's closing (the items are re-queued on resume)
            with contextlib.suppress(Exception):
                self.client.cancel(list(self._futures), force=True)
        with contextlib.suppress(Exception):
            self.client.run(_close_worker_hosts)
        if self._owned_client:
            with contextlib.suppress(Exception):
                self.client.close()
        if self._owned_cluster is not None:
            with contextlib.suppress(Exception):
                self._owned_cluster.close()


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
