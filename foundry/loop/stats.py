"""The run's counters, shared by the loop's parts (each bumps the ones it owns)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunStats:
    """Counters the progress display and the summary read."""

    generated: int = 0
    duplicates: int = 0
    invalid: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    #: uncertain items beyond ``uncertain_share``: neither labelled nor released
    deferred: int = 0
    surrogate_accepted: int = 0
    surrogate_rejected: int = 0
    gt_calls: int = 0
    gt_walltime_s: float = 0.0
    audits: int = 0
    pending: int = 0
    surrogate_versions: int = 0
    champion: int | None = None
    #: the largest accept threshold among the champion's certificates
    accept_threshold: float | None = None
    #: the largest Clopper-Pearson estimate among them (an estimate; the promise is alpha)
    bound: float | None = None
    #: (regime, slice) strata in which the champion may release
    certified_strata: int = 0
    elapsed_s: float = 0.0
    generator_failures: int = 0
    #: items per ground-truth task at the moment (grows for fast verifiers on Dask)
    chunk_size: int = 0
    #: ground-truth tasks the executor runs at once (worker threads)
    workers: int = 0
    #: ground-truth results by failure kind (timeout, crash, resource_limit, ...)
    failures: dict[str, int] = field(default_factory=dict)
    #: items sent to each tier of the fidelity ladder (gt_calls counts the top tier)
    tier_calls: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["failures"] = dict(self.failures)
        out["tier_calls"] = dict(self.tier_calls)
        return out


class ComputeAccount:
    """Seconds spent per generation: generating, surrogate scoring, training, and each
    ground-truth tier (worker wall time) - what a generation of verified data cost."""

    def __init__(self) -> None:
        self.seconds: dict[int, dict[str, Any]] = {}

    def add(self, generation: int, key: str, seconds: float) -> None:
        entry = self.seconds.setdefault(int(generation), {})
        entry[key] = entry.get(key, 0.0) + float(seconds)

    def add_tier(self, generation: int, fidelity: str, seconds: float | None) -> None:
        tiers = self.seconds.setdefault(int(generation), {}).setdefault("ground_truth_s", {})
        tiers[fidelity] = tiers.get(fidelity, 0.0) + float(seconds or 0.0)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {str(g): dict(v) for g, v in sorted(self.seconds.items())}

    def restore(self, saved: Mapping[str, Mapping[str, Any]]) -> None:
        self.seconds = {int(g): dict(v) for g, v in saved.items()}


ProgressCallback = Callable[[RunStats], None]
SteeringPolicy = Callable[[RunStats, Mapping[str, float]], Mapping[str, float]]
