"""Where ground truth runs: in-process (tests) or on any Dask cluster (LocalCluster, SLURMCluster).

The scheduler only needs three things from an executor: submit a chunk of candidates, collect
finished chunks without blocking the loop for long, and say how many chunks to keep in flight.
Chunks (not single items) make millisecond verifiers worth shipping to a worker; the warm
verifier host lives in the worker process and is reused by every chunk it receives.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from foundry.contract import Candidate
from foundry.verifier_host import GTResult, InProcessHost, VerifierHost

Isolation = Literal["process", "none"]
#: Seconds between refreshes of a Dask cluster's worker count.
WORKER_COUNT_REFRESH_S = 2.0
#: Seconds between looks for finished chunks while the loop has nothing else to do.
COLLECT_POLL_S = 0.002


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs to verify a chunk; picklable."""

    domain_spec: str
    fidelity: str | None
    items: tuple[tuple[int, Candidate], ...]
    timeout_s: float
    isolation: Isolation = "process"
    memory_limit_mb: int | None = None


@dataclass
class ChunkOutcome:
    job: ChunkJob
    results: list[GTResult] = field(default_factory=list)
    #: set when the chunk as a whole failed (worker lost, SetupError): every item is unresolved
    error: BaseException | None = None
    #: seconds the worker spent on the chunk: the verifier plus its hosting (pipes, pickling)
    busy_s: float = 0.0


_HOSTS: dict[tuple[Any, ...], InProcessHost | VerifierHost] = {}
_HOSTS_LOCK = threading.Lock()


def _host_for(job: ChunkJob) -> InProcessHost | VerifierHost:
    key = (job.domain_spec, job.fidelity, job.isolation, job.memory_limit_mb, threading.get_ident())
    with _HOSTS_LOCK:
        host = _HOSTS.get(key)
        if host is None:
            if job.isolation == "none":
                host = InProcessHost(job.domain_spec, job.fidelity)
            else:
                host = VerifierHost(
                    job.domain_spec, job.fidelity, memory_limit_mb=job.memory_limit_mb
                )
            _HOSTS[key] = host
    return host


def run_chunk(job: ChunkJob) -> list[GTResult]:
    """Verify a chunk with this process's warm host."""
    return _host_for(job).verify_many(job.items, job.timeout_s)


def run_chunk_timed(job: ChunkJob) -> tuple[list[GTResult], float]:
    """Worker-side entry point: :func:`run_chunk` and the seconds it took."""
    started = time.perf_counter()
    results = run_chunk(job)
    return results, time.perf_counter() - started


def close_hosts() -> None:
    """Stop every warm verifier in this process (atexit on workers, end of run inline)."""
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


class DaskExecutor:
    """Ground truth on a Dask cluster: a LocalCluster by default, or any cluster/client given.

    ``cluster`` may be a ``distributed.Client``, any Dask cluster object (``LocalCluster``,
    ``dask_jobqueue.SLURMCluster``), or ``None`` for an embedded LocalCluster with one
    single-threaded worker process per core, its scheduler on loopback.
    """

    def __init__(
        self,
        cluster: Any = None,
        *,
        n_workers: int | None = None,
        chunks_per_worker: int = 2,
    ) -> None:
        from distributed import Client, LocalCluster

        self._owned_cluster = None
        if cluster is None:
            n_workers = n_workers or max(os.cpu_count() or 1, 1)
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=40,
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
        self._workers_checked_at = -math.inf
        self._futures: dict[Any, ChunkJob] = {}
        from distributed import as_completed

        # with_results: the client's event loop fetches each finished chunk in the background,
        # instead of a blocking round trip to the worker per chunk in the coordinator's loop
        self._as_completed = as_completed(with_results=True, raise_errors=False)

    @property
    def slots(self) -> int:  # type: ignore[override]
        """Chunks to keep in flight. The worker count is a round trip to the Dask scheduler,
        and the loop asks many times a second, so it is refreshed every few seconds only (an
        adaptive SLURMCluster changes size on that scale, not faster)."""
        now = time.monotonic()
        if now - self._workers_checked_at > WORKER_COUNT_REFRESH_S:
            info = self.client.scheduler_info(n_workers=-1)
            self._workers = len(info.get("workers", {})) or 1
            self._workers_checked_at = now
        return self._workers * self.chunks_per_worker

    def submit(self, job: ChunkJob) -> None:
        future = self.client.submit(run_chunk_timed, job, pure=False)
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
