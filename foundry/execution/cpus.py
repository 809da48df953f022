"""How many cores this process may really use.

``os.cpu_count()`` counts the machine, not the allocation: under ``taskset``, a cgroup CPU
quota (containers, systemd slices) or a Slurm allocation the process gets fewer. Sizing
workers from it oversubscribes the allocation, and every verifier then runs slower.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuBudget:
    """The usable core count and what limited it (for logs and the run summary)."""

    cpus: int
    limited_by: str


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by this process's cgroup quota (v2 ``cpu.max`` or v1 CFS), if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    best: float | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2
            candidates = [(root / rel / "cpu.max", None), (root / "cpu.max", None)]
        elif "cpu" in controllers.split(","):
            base = root / controllers
            if not base.exists():
                base = root / "cpu"
            candidates = [
                (base / rel / "cpu.cfs_quota_us", base / rel / "cpu.cfs_period_us"),
                (base / "cpu.cfs_quota_us", base / "cpu.cfs_period_us"),
            ]
        else:
            continue
        for quota_file, period_file in candidates:
            value = _read_quota(quota_file, period_file)
            if value is not None:
                best = value if best is None else min(best, value)
                break
    return best


def _read_quota(quota_file: Path, period_file: Path | None) -> float | None:
    try:
        if period_file is None:
            quota, period = quota_file.read_text().split()[:2]
        else:
            quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1"):
        return None
    try:
        q, p = float(quota), float(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _slurm() -> int | None:
    """Cores of this Slurm step: ``SLURM_CPUS_PER_TASK``, else ``SLURM_CPUS_ON_NODE``."""
    if not os.environ.get("SLURM_JOB_ID"):
        return None
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def usable_cpus() -> CpuBudget:
    """The smallest of: CPU affinity, the cgroup quota (rounded down, at least 1), Slurm's
    allocation, ``os.cpu_count()``."""
    limits: list[tuple[int, str]] = []
    total = os.cpu_count()
    if total:
        limits.append((total, "cpu_count"))
    affinity = _affinity()
    if affinity:
        limits.append((affinity, "affinity"))
    quota = _cgroup_quota()
    if quota is not None:
        limits.append((max(1, math.floor(quota)), "cgroup quota"))
    slurm = _slurm()
    if slurm is not None:
        limits.append((slurm, "slurm"))
    if not limits:
        return CpuBudget(1, "unknown")
    cpus, source = min(limits, key=lambda item: item[0])
    return CpuBudget(max(cpus, 1), source)
