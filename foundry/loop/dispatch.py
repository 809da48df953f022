"""The ground-truth queue: items waiting for a verdict, chunked onto the executor's slots.

Owns what is in flight and why (``pending``), what still has to be sent (``queue``), how big a
task is, and which failures earn a retry. It hands each final result back to the loop, in
the order results arrive, and knows nothing of labels, audits or rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from foundry.config import RunConfig
from foundry.contract import Candidate, Domain, SetupError
from foundry.execution.executors import (
    ChunkJob,
    ChunkOutcome,
    DaskExecutor,
    Executor,
    InlineExecutor,
)
from foundry.execution.outcomes import CRASH, RETRYABLE, GTResult
from foundry.execution.resources import resolve_isolation
from foundry.execution.spec import VerifierSpec
from foundry.ledger import Ledger
from foundry.loop.stats import RunStats
from foundry.options import options_json

if TYPE_CHECKING:
    from foundry.loop.book import Scored

#: Largest ground-truth task, however fast the verifier (bounds the work lost with a worker).
MAX_CHUNK_SIZE = 4096
#: Items per task on an in-process executor (no task overhead to amortise).
INLINE_CHUNK_SIZE = 32
#: Failure kind of an item whose chunk was lost with its worker this many times: a lost worker
#: (walltime, scancel, preemption, a dead node) re-queues its items without counting an
#: attempt, but a verifier that takes its worker down every time must not loop for ever.
WORKER_LOST = "worker_lost"
MAX_WORKER_LOSSES = 5
#: A dying worker takes every task it holds with it, so a loss does not say which item killed
#: it: an item lost this many times runs its next try alone (nothing else in flight), and only a
#: loss while alone can end it as ``worker_lost`` - an innocent neighbour of a verifier that
#: kills its worker is never failed for it.
SUSPECT_AFTER_LOSSES = MAX_WORKER_LOSSES - 1
#: Exceptions (by class name, anywhere in the MRO) that mean a chunk was lost with its worker
#: or its connection, not that the verifier failed: Dask's KilledWorker (a task whose workers
#: died ``distributed.scheduler.allowed-failures`` times), closed comms, cancelled futures.
WORKER_LOSS_ERRORS = frozenset(
    {
        "KilledWorker",
        "CommClosedError",
        "StreamClosedError",
        "CancelledError",
        "FutureCancelledError",
        "WorkerLost",
    }
)


@dataclass
class PendingItem:
    """A candidate sent to the ground truth, with why it went and who scored it."""

    candidate: Candidate
    audit: bool
    route: str
    scores: list[Scored]
    regime: str = ""
    slice: str = "all"
    #: the intake batch it was generated in (deterministic runs fold results by batch)
    batch: int = 0
    attempts: int = 0
    #: index into the run's fidelity ladder of the tier it waits for (the last: the top tier)
    tier: int = 0
    #: canonical payload text and audit draw, kept while a ladder's lower tiers run (the row
    #: is written when the item is scored and routed)
    text: str = ""
    audit_draw: float = 1.0
    #: times its chunk was lost with its worker (re-queued, not an attempt)
    worker_losses: int = 0


def make_executor(cfg: RunConfig, verifiers: Sequence[VerifierSpec]) -> Executor:
    """The executor a run configures when none is passed in: workers sized to the cores this
    process may use, divided by the largest threads per item of the run's tiers."""
    if cfg.executor == "inline":
        return InlineExecutor()
    if cfg.executor == "slurm":
        from foundry.execution.slurm import make_slurm_executor

        return make_slurm_executor(
            cfg.slurm, verifiers, log_directory=Path(cfg.run_dir) / "slurm-workers"
        )
    threads = max(v.resources.threads for v in verifiers)
    return DaskExecutor(n_workers=cfg.n_workers, threads_per_task=threads)


def ladder_of(cfg: RunConfig, domain: Domain) -> tuple[str | None, ...]:
    """The fidelities a run uses, cheapest first; the last is the top tier.

    Without ``ladder``: the one tier ``fidelity`` names, or, with neither set, the domain's
    ``default_ladder`` (else its last tier). A ladder must list declared fidelities in the
    domain's order (cheapest first), each once, and agree with ``fidelity`` when both are set.
    """
    ladder = cfg.ladder
    if not ladder:
        if cfg.fidelity is not None or not domain.default_ladder:
            return (cfg.fidelity,)
        ladder = list(domain.default_ladder)
    declared = list(domain.fidelities)
    unknown = [f for f in ladder if f not in declared]
    if unknown:
        raise ValueError(f"ladder: unknown fidelities {unknown}; {domain.name} has {declared}")
    if len(set(ladder)) != len(ladder):
        raise ValueError(f"ladder lists a fidelity twice: {ladder}")
    if [declared.index(f) for f in ladder] != sorted(declared.index(f) for f in ladder):
        raise ValueError(
            f"ladder {ladder} must go cheapest first, in the domain's order {declared}"
        )
    if cfg.fidelity is not None and cfg.fidelity != ladder[-1]:
        raise ValueError(f"fidelity {cfg.fidelity!r} is not the ladder's top tier {ladder[-1]!r}")
    return tuple(ladder)


def verifier_spec(cfg: RunConfig, domain: Domain, fidelity: str | None = None) -> VerifierSpec:
    """The verifier of one tier: the ground truth's declaration (read from an instance built
    here - which must be cheap - and closed again), with the config's overrides (which apply
    to every tier)."""
    gt = domain.ground_truth(fidelity)
    try:
        declared = gt.resources
        sandbox_paths = tuple(gt.sandbox_paths)
        pass_env = tuple(gt.pass_env)
        who = f"the {domain.name!r} ground truth {getattr(gt, 'name', '')!r}".rstrip(" '")
    finally:
        gt.close()
    resources = declared.replace(**cfg.resources.model_dump(exclude_none=True))
    isolation = resolve_isolation(declared.isolation, cfg.isolation, who)
    return VerifierSpec(
        domain_spec=domain_spec(domain, cfg.domain),
        options_json=options_json(getattr(domain, "options", None)),
        fidelity=fidelity,
        resources=resources,
        isolation=isolation,
        sandbox_paths=(*sandbox_paths, *cfg.sandbox_paths),
        pass_env=(*pass_env, *cfg.pass_env),
    )


def domain_spec(domain: Domain, configured: str) -> str:
    """How a worker process finds this domain: the class itself when importable."""
    cls = type(domain)
    if "<locals>" not in cls.__qualname__ and cls.__module__ != "__main__":
        return f"{cls.__module__}:{cls.__qualname__}"
    return configured


@dataclass(frozen=True)
class DispatchParams:
    """What a ground-truth task carries, how tasks are sized, and how often items are retried."""

    #: one verifier per tier of the fidelity ladder, cheapest first; the last is the top tier
    verifiers: tuple[VerifierSpec, ...]
    #: fixed items per task; None sizes tasks from the verifier's cost
    chunk_size: int | None
    #: worker seconds a task of a fast verifier grows to
    chunk_target_s: float
    max_attempts: int
    #: backlog that pauses generation (None: derived from the executor's slots)
    max_pending: int | None
    batch_size: int

    @property
    def verifier(self) -> VerifierSpec:
        """The top tier's verifier: what every certificate is against."""
        return self.verifiers[-1]

    @classmethod
    def from_config(cls, cfg: RunConfig, verifiers: Sequence[VerifierSpec]) -> DispatchParams:
        return cls(
            verifiers=tuple(verifiers),
            chunk_size=cfg.chunk_size,
            chunk_target_s=cfg.chunk_target_s,
            max_attempts=cfg.gt_max_attempts,
            max_pending=cfg.max_pending,
            batch_size=cfg.batch_size,
        )


class Dispatcher:
    """Keeps the executor's slots full from the queue and folds its outcomes back in."""

    def __init__(
        self, executor: Executor, params: DispatchParams, stats: RunStats, ledger: Ledger
    ) -> None:
        self.executor = executor
        self.params = params
        self.stats = stats
        self.ledger = ledger
        self.pending: dict[int, PendingItem] = {}
        self.tiers = len(params.verifiers)
        #: per tier, (seq, candidate) pairs waiting to be sent
        self.queues: list[list[tuple[int, Candidate]]] = [[] for _ in params.verifiers]
        self._tier_of = {spec: i for i, spec in enumerate(params.verifiers)}
        self._item_busy_s: list[float | None] = [None] * self.tiers
        self._next_tier = 0
        #: items lost with their worker SUSPECT_AFTER_LOSSES times, waiting to run alone
        self._suspects: list[tuple[int, Candidate]] = []
        #: the suspect in flight alone, if any (nothing else is sent meanwhile)
        self._alone: int | None = None

    @property
    def queue(self) -> list[tuple[int, Candidate]]:
        """The top tier's queue."""
        return self.queues[-1]

    def add(self, seq: int, item: PendingItem) -> None:
        self.pending[seq] = item
        self.queues[item.tier].append((seq, item.candidate))

    def busy(self) -> bool:
        """Work in flight or waiting to be sent."""
        return bool(self.executor.in_flight() or any(self.queues) or self._suspects)

    def max_pending(self) -> int:
        """Backlog at which generation pauses: enough to keep every slot fed a few times."""
        if self.params.max_pending:
            return self.params.max_pending
        return max(self.executor.slots * self._chunk_size() * 4, self.params.batch_size)

    # -- sending ----------------------------------------------------------------------------
    def submit(self) -> None:
        """Fill free slots, taking the tiers' queues in turn (a ladder's lower tiers feed the
        top tier; neither may starve the other). A suspect (see SUSPECT_AFTER_LOSSES) waits
        for the slots to drain and then runs alone."""
        while self.executor.in_flight() < self.executor.slots:
            if self._alone is not None:
                return
            if self._suspects:
                if self.executor.in_flight():
                    return
                key, candidate = self._suspects.pop(0)
                self._alone = key
                self._send(self.pending[key].tier, [(key, candidate)])
                return
            tier = self._pick_tier()
            if tier is None:
                return
            size = self._chunk_size(tier)
            if tier == self.tiers - 1:
                self.stats.chunk_size = size
            queue = self.queues[tier]
            items, self.queues[tier] = queue[:size], queue[size:]
            self._send(tier, items)

    def _send(self, tier: int, items: Sequence[tuple[int, Candidate]]) -> None:
        if tier == self.tiers - 1:
            self.stats.gt_calls += len(items)
        fidelity = self.params.verifiers[tier].fidelity or "ground-truth"
        self.stats.tier_calls[fidelity] = self.stats.tier_calls.get(fidelity, 0) + len(items)
        self.executor.submit(self._make_job(tier, items))

    def _pick_tier(self) -> int | None:
        for step in range(self.tiers):
            tier = (self._next_tier + step) % self.tiers
            if self.queues[tier]:
                self._next_tier = (tier + 1) % self.tiers
                return tier
        return None

    def _make_job(self, tier: int, items: Sequence[tuple[int, Candidate]]) -> ChunkJob:
        """The one place a ground-truth task is built."""
        return ChunkJob(self.params.verifiers[tier], tuple(items))

    def _chunk_size(self, tier: int | None = None) -> int:
        """Items per task of ``tier`` (default: the top tier), from the verifier's cost per
        item: the measured worker seconds (moving average), else its declared
        ``expected_cost_s``. A task keeps its worker busy for about ``chunk_target_s``: a task
        costs this process and the Dask scheduler milliseconds, so a microsecond verifier in
        tasks of one would be all overhead, while a slow verifier (DFT, MD) goes one item a
        task - a lost worker then loses one item, and every idle worker can take the next.
        Unknown cost: one item, until the first task has measured it. In-process executors
        have no task overhead and keep a fixed size, so that their runs do not depend on
        timing."""
        p = self.params
        if p.chunk_size is not None:
            return p.chunk_size
        if not self.executor.remote:
            return INLINE_CHUNK_SIZE
        tier = self.tiers - 1 if tier is None else tier
        per_item_s = self._item_busy_s[tier]
        if per_item_s is None:
            per_item_s = p.verifiers[tier].resources.expected_cost_s
        if per_item_s is None or p.chunk_target_s <= 0:
            return 1
        grown = int(p.chunk_target_s / max(per_item_s, 1e-9))
        return max(1, min(grown, MAX_CHUNK_SIZE))

    def _observe_chunk(self, outcome: ChunkOutcome) -> None:
        """Track worker seconds per item of each tier (moving average over chunks)."""
        if outcome.error is not None or not outcome.job.items or outcome.busy_s <= 0:
            return
        tier = self._tier_of.get(outcome.job.verifier, self.tiers - 1)
        per_item_s = outcome.busy_s / len(outcome.job.items)
        previous = self._item_busy_s[tier]
        self._item_busy_s[tier] = (
            per_item_s if previous is None else 0.7 * previous + 0.3 * per_item_s
        )

    # -- receiving --------------------------------------------------------------------------
    def collect(self, timeout_s: float) -> list[ChunkOutcome]:
        """Finished chunks, waiting up to ``timeout_s`` for the first."""
        return self.executor.collect(timeout_s)

    def settle(self, outcomes: Sequence[ChunkOutcome]) -> Iterator[tuple[PendingItem, GTResult]]:
        """Each final result with its item, lazily and in arrival order (so the loop folds a
        result in before the next is looked at); retryable failures go back on the queue."""
        for outcome in outcomes:
            self._observe_chunk(outcome)
            for result in self._results(outcome):
                item = self._absorb_result(result)
                if item is not None:
                    yield item, result

    def _results(self, outcome: ChunkOutcome) -> Sequence[GTResult]:
        """A chunk's results. A chunk lost with its worker becomes a ``worker_lost`` result
        of each item (re-queued by :meth:`_absorb_result`); any other failed chunk, a crash
        of each item."""
        if outcome.error is None:
            return outcome.results
        if isinstance(outcome.error, SetupError):
            raise outcome.error
        message = f"{type(outcome.error).__name__}: {outcome.error}"
        if any(cls.__name__ in WORKER_LOSS_ERRORS for cls in type(outcome.error).__mro__):
            self.ledger.event(
                "warning",
                WORKER_LOST,
                f"{len(outcome.job.items)} item(s) lost with their worker, re-queued: {message}",
            )
            return [
                GTResult(key, None, WORKER_LOST, f"worker lost: {message}")
                for key, _ in outcome.job.items
            ]
        self.ledger.event("error", "executor", message)
        return [
            GTResult(key, None, CRASH, f"chunk lost: {message}") for key, _ in outcome.job.items
        ]

    def _absorb_result(self, result: GTResult) -> PendingItem | None:
        """The item a result settles, or None (unknown key, or queued again for a retry)."""
        item = self.pending.get(result.key)
        if item is None:
            return None
        alone = result.key == self._alone
        if alone:
            self._alone = None
        if result.failure_kind == WORKER_LOST:
            # not the verifier's fault: no attempt counted, unless it keeps happening alone
            item.worker_losses += 1
            if item.worker_losses < SUSPECT_AFTER_LOSSES:
                self.queues[item.tier].append((result.key, item.candidate))
                return None
            if not alone:
                self._suspects.append((result.key, item.candidate))
                return None
            result.error = (
                f"{result.error} (lost with its worker {item.worker_losses} times, "
                "the last time running alone)"
            )
            del self.pending[result.key]
            return item
        item.attempts += 1
        self.stats.gt_walltime_s += result.walltime_s
        if (
            result.verdict is None
            and result.failure_kind in RETRYABLE
            and item.attempts < self.params.max_attempts
        ):
            self.queues[item.tier].append((result.key, item.candidate))
            return None
        del self.pending[result.key]
        return item
