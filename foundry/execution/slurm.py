"""Ground truth on Slurm: Dask workers as Slurm jobs (``dask_jobqueue.SLURMCluster``).

The coordinator (``foundry run``, itself often a Slurm job: see ``foundry submit``) runs the
Dask scheduler; each worker is a Slurm job of the shape :class:`SlurmSettings` describes,
submitted and cancelled by Dask's adaptive scaling between ``min_jobs`` and ``max_jobs``.
A worker job offers the Dask resources ``threads`` (and ``memory_mb``/``gpus`` when the run's
verifiers declare them), so a 4-thread verifier takes 4 of a worker's cores.

A worker retires (``--lifetime``, staggered) before its job's wall time, so that Slurm does not
kill it mid-task; if it is killed anyway (walltime, ``scancel``, preemption, a dead node), its
in-flight items go back on the queue without counting an attempt (``foundry.loop.dispatch``).

Nothing here imports Dask at module import time: the config imports :class:`SlurmSettings`.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from foundry.contract import SetupError

if TYPE_CHECKING:
    from foundry.execution.executors import DaskExecutor
    from foundry.execution.spec import VerifierSpec

#: Memory of a worker job per worker process when no verifier declares any (MiB): the Dask
#: worker itself, a warm verifier child and its imports.
MEMORY_FLOOR_MB = 1024
#: Memory added per worker process to what a verifier declares (the Dask worker's own, MiB).
WORKER_OVERHEAD_MB = 512
#: Seconds without a scheduler after which an orphaned worker job ends itself.
WORKER_DEATH_TIMEOUT_S = 60
#: Adaptive scaling: seconds between decisions, and decisions a worker job must be idle in a
#: row before it is cancelled (a pause such as the first surrogate fit does not churn jobs).
ADAPT_INTERVAL_S = 1.0
ADAPT_WAIT_COUNT = 30
#: Adaptive scaling asks for workers to clear the queued work within this many seconds. The
#: loop streams small tasks (a few x ``chunk_target_s`` of work in flight per slot), so Dask's
#: default (5 s) would never ask for a second worker: this asks for one per task in flight,
#: up to ``max_jobs``.
ADAPT_TARGET_DURATION_S = 0.01
#: Slurm job name of the worker jobs (what ``squeue --name`` shows).
WORKER_JOB_NAME = "foundry-worker"


def slurm_time(seconds: float) -> str:
    """``seconds`` as Slurm's ``--time`` (``[D-]HH:MM:SS``), rounded up to whole minutes
    (Slurm's own granularity)."""
    minutes = max(math.ceil(seconds / 60.0), 1)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours:02d}:{minutes:02d}:00"
    return f"{days}-{clock}" if days else clock


def _one_line_text(value: str | None, what: str) -> str | None:
    if value is not None and ("\n" in value or "\r" in value):
        raise ValueError(f"{what} must be one line, got {value!r}")
    return value


class SlurmSettings(BaseModel):
    """``[slurm]``: the shape of the worker jobs of ``executor = "slurm"``.

    Defaults fit one verifier tier per worker process: ``cores`` = the largest ``threads`` of
    the run's verifiers, ``memory_mb`` = their largest declared ``memory_mb`` plus the Dask
    worker's own, per process (at least :data:`MEMORY_FLOOR_MB`). The scheduler listens on
    loopback unless ``interface`` or ``scheduler_host`` say otherwise: set one of them on a
    real cluster, whose worker jobs run on other nodes.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    partition: str | None = Field(None, description="Slurm partition (--partition)")
    account: str | None = Field(None, description="Slurm account to charge (--account)")
    qos: str | None = Field(None, description="Slurm quality of service (--qos)")
    walltime_s: float = Field(
        3600.0, ge=60, description="wall time of one worker job, seconds (--time)"
    )
    cores: int | None = Field(
        None, ge=1, description="cores per worker job (default: the verifiers' largest threads)"
    )
    memory_mb: int | None = Field(
        None, ge=64, description="memory per worker job, MiB (--mem; default: from verifiers)"
    )
    gpus: int = Field(0, ge=0, description="GPUs per worker job (--gres=gpu:N)")
    processes: int = Field(1, ge=1, description="Dask worker processes per job")
    max_jobs: int = Field(4, ge=1, description="adaptive scaling: most worker jobs at once")
    min_jobs: int = Field(0, ge=0, description="adaptive scaling: fewest worker jobs kept")
    interface: str | None = Field(
        None, description="network interface of scheduler and workers (e.g. ib0, eth0)"
    )
    scheduler_host: str | None = Field(
        None,
        description="address the scheduler listens on (default 127.0.0.1 when no interface "
        "is given: single node only)",
    )
    job_extra_directives: list[str] = Field(
        default_factory=list,
        description="extra #SBATCH options of worker jobs, e.g. '--constraint=skylake'",
    )
    job_script_prologue: list[str] = Field(
        default_factory=list,
        description="shell lines before the worker starts, e.g. 'module load gcc'",
    )
    local_directory: str | None = Field(
        None, description="worker scratch directory on the compute node (e.g. $TMPDIR)"
    )
    log_directory: str | None = Field(
        None, description="worker job logs (default: <run_dir>/slurm-workers)"
    )
    worker_lifetime_s: float | None = Field(
        None,
        gt=0,
        description="seconds a worker lives before retiring gracefully (default: ahead of "
        "walltime_s by 10%, 30 s to 10 min)",
    )

    @field_validator("partition", "account", "qos", "interface", "scheduler_host")
    @classmethod
    def _no_spaces(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError(f"must be one word, got {value!r}")
        return value

    @field_validator("local_directory", "log_directory")
    @classmethod
    def _one_line_path(cls, value: str | None) -> str | None:
        return _one_line_text(value, "a path")

    @field_validator("job_extra_directives")
    @classmethod
    def _directives(cls, values: list[str]) -> list[str]:
        for value in values:
            _one_line_text(value, "a directive")
            if not value.startswith("-"):
                raise ValueError(
                    f"a directive is an sbatch option such as '--constraint=x', without "
                    f"'#SBATCH', got {value!r}"
                )
        return values

    @field_validator("job_script_prologue")
    @classmethod
    def _prologue(cls, values: list[str]) -> list[str]:
        for value in values:
            _one_line_text(value, "a prologue line")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> SlurmSettings:
        if self.min_jobs > self.max_jobs:
            raise ValueError(f"min_jobs ({self.min_jobs}) > max_jobs ({self.max_jobs})")
        if self.cores is not None and self.cores < self.processes:
            raise ValueError(f"cores ({self.cores}) < processes ({self.processes})")
        if self.gpus and self.gpus % self.processes:
            raise ValueError(
                f"gpus ({self.gpus}) must divide evenly among processes ({self.processes})"
            )
        if self.worker_lifetime_s is not None and self.worker_lifetime_s >= self.walltime_s:
            raise ValueError(
                f"worker_lifetime_s ({self.worker_lifetime_s}) must be below walltime_s "
                f"({self.walltime_s}): a worker should retire before Slurm kills it"
            )
        return self

    # -- derived ----------------------------------------------------------------------------
    def lifetime_s(self) -> tuple[float, float]:
        """(lifetime, stagger) of a worker, seconds: it retires within lifetime +- stagger,
        always before the job's wall time."""
        wall = self.walltime_s
        if self.worker_lifetime_s is not None:
            lifetime = self.worker_lifetime_s
            stagger = min((wall - lifetime) / 2, 0.05 * lifetime)
        else:
            margin = min(max(0.1 * wall, 30.0), 600.0, wall / 2)
            lifetime = wall - margin
            stagger = margin / 3
        return lifetime, stagger


def _needs(verifiers: Sequence[VerifierSpec]) -> tuple[int, int | None, int]:
    """(largest threads, largest declared memory_mb or None, largest gpus) of the tiers."""
    threads = max((v.resources.threads for v in verifiers), default=1)
    memories = [v.resources.memory_mb for v in verifiers if v.resources.memory_mb]
    gpus = max((v.resources.gpus for v in verifiers), default=0)
    return threads, (max(memories) if memories else None), gpus


def cluster_kwargs(
    settings: SlurmSettings,
    verifiers: Sequence[VerifierSpec],
    *,
    log_directory: str | Path | None = None,
) -> dict[str, Any]:
    """The ``SLURMCluster`` keyword arguments for ``settings`` and the run's ``verifiers``
    (plain data: what the worker jobs will look like, checked against what the verifiers
    need). ``log_directory`` is the default for ``settings.log_directory``."""
    threads, memory_mb, gpus = _needs(verifiers)
    procs = settings.processes
    cores = settings.cores if settings.cores is not None else threads * procs
    per_process = cores // procs
    if per_process < threads:
        raise SetupError(
            f"slurm.cores = {cores} gives {per_process} core(s) per worker process "
            f"(processes = {procs}), but a verifier needs threads = {threads}"
        )
    if gpus and settings.gpus // procs < gpus:
        raise SetupError(
            f"a verifier needs {gpus} GPU(s) but a worker process gets "
            f"{settings.gpus // procs} (slurm.gpus = {settings.gpus}, processes = {procs})"
        )
    if settings.memory_mb is not None:
        job_memory_mb = settings.memory_mb
    else:
        job_memory_mb = procs * max((memory_mb or 0) + WORKER_OVERHEAD_MB, MEMORY_FLOOR_MB)
    if memory_mb and job_memory_mb // procs < memory_mb:
        raise SetupError(
            f"slurm.memory_mb = {job_memory_mb} gives {job_memory_mb // procs} MiB per worker "
            f"process, but a verifier needs memory_mb = {memory_mb}"
        )

    resources = [f"threads={per_process}"]
    if memory_mb:
        resources.append(f"memory_mb={job_memory_mb // procs}")
    if settings.gpus:
        resources.append(f"gpus={settings.gpus // procs}")
    lifetime, stagger = settings.lifetime_s()
    worker_args = [
        "--resources",
        ",".join(resources),
        "--lifetime",
        f"{lifetime:.0f}s",
        "--lifetime-stagger",
        f"{stagger:.0f}s",
    ]

    directives = []
    if settings.qos:
        directives.append(f"--qos={settings.qos}")
    if settings.gpus:
        directives.append(f"--gres=gpu:{settings.gpus}")
    directives.extend(settings.job_extra_directives)

    # no dashboard; the scheduler's HTTP endpoints (health, metrics) on a free loopback port
    scheduler_options: dict[str, Any] = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
    if settings.scheduler_host:
        scheduler_options["host"] = settings.scheduler_host
    elif not settings.interface:
        scheduler_options["host"] = "127.0.0.1"

    logs = settings.log_directory if settings.log_directory is not None else log_directory
    return dict(
        queue=settings.partition,
        account=settings.account,
        walltime=slurm_time(settings.walltime_s),
        cores=cores,
        processes=procs,
        memory=f"{job_memory_mb}MiB",
        job_mem=f"{job_memory_mb}M",
        job_name=WORKER_JOB_NAME,
        interface=settings.interface,
        scheduler_options=scheduler_options,
        job_extra_directives=directives,
        job_script_prologue=list(settings.job_script_prologue),
        local_directory=settings.local_directory,
        log_directory=str(logs) if logs is not None else None,
        worker_extra_args=worker_args,
        death_timeout=WORKER_DEATH_TIMEOUT_S,
        python=sys.executable,
    )


def check_slurm_available() -> None:
    """:class:`SetupError` (one line) unless dask-jobqueue imports and ``sbatch`` is on PATH."""
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise SetupError(
            "executor = 'slurm' needs dask-jobqueue: pip install 'foundry-sci[slurm]'"
        ) from None
    if shutil.which("sbatch") is None:
        raise SetupError(
            "executor = 'slurm' needs Slurm's sbatch on PATH (run on a cluster node, or use "
            "executor = 'local')"
        )


def make_slurm_executor(
    settings: SlurmSettings,
    verifiers: Sequence[VerifierSpec],
    *,
    log_directory: str | Path | None = None,
) -> DaskExecutor:
    """A :class:`~foundry.execution.executors.DaskExecutor` on an adaptive ``SLURMCluster``
    of worker jobs shaped by ``settings`` (it closes the cluster, cancelling its jobs, when
    it is closed)."""
    check_slurm_available()
    kwargs = cluster_kwargs(settings, verifiers, log_directory=log_directory)
    from dask_jobqueue import SLURMCluster

    from foundry.execution.executors import DaskExecutor

    class SlurmExecutor(DaskExecutor):
        """A DaskExecutor whose slots count the worker processes adaptive scaling may start,
        not only those running: Dask scales up only for work it sees waiting, and the loop
        keeps only as much in flight as the slots say."""

        #: tasks the cluster runs at once at its full size (max_jobs)
        planned_concurrency = 1

        @property
        def slots(self) -> int:  # type: ignore[override]
            self._refresh()
            return max(self._concurrency, self.planned_concurrency) * self.chunks_per_worker

    threads, _, _ = _needs(verifiers)
    per_process = kwargs["cores"] // settings.processes
    planned = settings.max_jobs * settings.processes * max(per_process // threads, 1)
    cluster = SLURMCluster(**kwargs)
    try:
        cluster.adapt(
            minimum_jobs=settings.min_jobs,
            maximum_jobs=settings.max_jobs,
            interval=f"{ADAPT_INTERVAL_S}s",
            wait_count=ADAPT_WAIT_COUNT,
            target_duration=f"{ADAPT_TARGET_DURATION_S}s",
        )
        executor = SlurmExecutor(cluster, threads_per_task=threads, owns_cluster=True)
        executor.planned_concurrency = planned
        return executor
    except BaseException:
        cluster.close()
        raise
