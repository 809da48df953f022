"""What a verifier needs, declared as data (as ASE calculators declare ``implemented_properties``).

A :class:`~foundry.contract.GroundTruth` states its needs once - threads, memory, GPUs, wall
time per item, start-up time, expected cost, the isolation it requires - and the execution
plane maps them: Dask worker resources, thread variables in the verifier child, chunk sizes,
per-tier timeouts, rlimits and a watchdog. The run config may tighten limits and strengthen
isolation, never weaken isolation below the declaration.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Isolation = Literal["none", "process", "bwrap"]
#: weakest first: ``none`` runs in the worker's interpreter, ``process`` in a killable child,
#: ``bwrap`` in a bubblewrap sandbox (no network, read-only system, PID namespace, limits)
ISOLATION_LEVELS: tuple[Isolation, ...] = ("none", "process", "bwrap")
#: the isolation a run uses when neither the verifier nor the config asks for more
DEFAULT_ISOLATION: Isolation = "process"

#: the variables that size the thread pools of OpenMP, MKL, OpenBLAS, numexpr, BLIS, Accelerate
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def stronger(a: Isolation, b: Isolation) -> Isolation:
    """The stronger of two isolation levels."""
    return a if ISOLATION_LEVELS.index(a) >= ISOLATION_LEVELS.index(b) else b


def resolve_isolation(required: Isolation, requested: Isolation | None, who: str) -> Isolation:
    """The isolation a run uses: the config's choice, which may only strengthen ``required``."""
    if requested is None:
        return stronger(required, DEFAULT_ISOLATION)
    if requested not in ISOLATION_LEVELS:
        raise ValueError(f"unknown isolation {requested!r}; choose one of {ISOLATION_LEVELS}")
    if ISOLATION_LEVELS.index(requested) < ISOLATION_LEVELS.index(required):
        raise ValueError(
            f"isolation {requested!r} is weaker than {who} requires ({required!r}); "
            "a run may strengthen a verifier's isolation, never weaken it"
        )
    return requested


@dataclass(frozen=True)
class Resources:
    """One verifier's needs and limits. ``None`` means "no limit" / "unknown".

    ``threads``: cores one item uses (sets ``OMP_NUM_THREADS`` & co. in the child, and the Dask
    resource ``threads``). ``memory_mb``: resident memory of the verifier's whole process tree
    (an RSS watchdog kills it above this; ``RLIMIT_DATA`` backs it up, which counts private
    writable memory and so leaves mmapped files and CUDA's reserved address space alone).
    ``timeout_s``: wall time per item. ``startup_timeout_s``: wall time to start a warm child.
    ``expected_cost_s``: worker seconds per item before any is measured (sizes the first
    chunks; a slow verifier goes one item a task from the start). ``isolation``: the least
    isolation this verifier may run under. ``cpu_time_s``, ``max_processes``, ``output_mb``:
    per-item CPU seconds of the process tree, processes alive at once, and bytes written to
    stdout/stderr or any one file. ``recycle_after`` / ``recycle_above_mb``: replace the warm
    child after that many items, or when its resident memory grows past that.
    """

    threads: int = 1
    memory_mb: int | None = None
    gpus: int = 0
    timeout_s: float = 60.0
    startup_timeout_s: float = 120.0
    expected_cost_s: float | None = None
    isolation: Isolation = "none"
    cpu_time_s: float | None = None
    max_processes: int | None = None
    output_mb: float | None = 256.0
    recycle_after: int | None = None
    recycle_above_mb: int | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("threads", "gpus"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        if isinstance(self.threads, int) and self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        for name in ("timeout_s", "startup_timeout_s"):
            value = getattr(self, name)
            if not _positive_finite(value):
                problems.append(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("expected_cost_s", "cpu_time_s", "output_mb"):
            value = getattr(self, name)
            if value is not None and not _positive_finite(value):
                problems.append(f"{name} must be a finite number > 0 or None, got {value!r}")
        for name in ("memory_mb", "max_processes", "recycle_after", "recycle_above_mb"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                problems.append(f"{name} must be an integer >= 1 or None, got {value!r}")
        if self.isolation not in ISOLATION_LEVELS:
            problems.append(f"isolation must be one of {ISOLATION_LEVELS}, got {self.isolation!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: Any) -> Resources:
        """A copy with ``changes`` applied; ``None`` values in ``changes`` are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def thread_environment(self) -> dict[str, str]:
        """The thread-count variables a child gets, so a 4-thread DFT uses 4 threads (and a
        1-thread one does not oversubscribe the node). OpenMP threads wait passively: busy
        waiting (the default) made a 2-thread PySCF run 2-20x *slower* than 1 thread on a
        2-core node shared with other work (measured, water to benzene)."""
        env = dict.fromkeys(THREAD_VARIABLES, str(self.threads))
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        return env


def _positive_finite(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
