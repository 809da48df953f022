"""The two-tier scheduler: generate -> rule check -> surrogate -> route -> ground truth -> learn.

Streaming, not batch-then-wait: the coordinator generates a batch, screens it, routes it, keeps
the executor's slots full, and folds ground-truth results back in as they arrive (labels for
retraining, audits for calibration). Generation pauses when the ground-truth backlog is full.

Routing of a rule-valid candidate scored by the surrogate version in force (the champion):

* no certified champion yet -> ground truth, and the item is an audit (every item is, so the
  audit sample stays uniform);
* otherwise, with probability ``audit_rate`` -> ground truth as an audit (chosen before looking
  at the score);
* else ``accept_risk <= accept threshold`` -> released on the surrogate's word;
* else ``reject_risk <= reject threshold`` -> rejected on the surrogate's word;
* else -> ground truth as an *uncertain* item (labelled and used for training, never an audit).

A newly trained version is a challenger: it scores every item beside the champion, collects
its own audits (only items scored by it count), and takes over once it has a certificate that
decides at least as many recent items as the champion's does.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from foundry.calibration import (
    RouteCertificate,
    accept_error,
    certify,
    first_test,
    min_audits,
    reject_error,
    risks_from_predictions,
    spend_delta,
)
from foundry.config import RunConfig
from foundry.contract import (
    SOURCES,
    Candidate,
    Domain,
    PluginError,
    Predictions,
    SetupError,
    Surrogate,
    Verdict,
    canonical_json,
    content_id_of_text,
)
from foundry.executors import ChunkJob, ChunkOutcome, DaskExecutor, Executor, InlineExecutor
from foundry.ledger import GroundTruthUpdate, Ledger
from foundry.monitor import Monitor
from foundry.schema import PayloadValidator
from foundry.verifier_host import CRASH, SIMULATION_FAILED, GTResult

RETRYABLE = {SIMULATION_FAILED, CRASH}
#: payload key of an input line that could not be read (kept in the ledger as invalid)
INVALID_INPUT = "__invalid_input__"
RECENT_SCORES = 4096
#: Largest ground-truth task, however fast the verifier (bounds the work lost with a worker).
MAX_CHUNK_SIZE = 4096
#: Simulated calibrations behind the label-free plausibility check.
PLAUSIBILITY_DRAWS = 16


@dataclass
class Certificate:
    """The thresholds a surrogate version may decide with, and the bounds behind them."""

    version: int
    surrogate_version: int
    accept: RouteCertificate
    reject: RouteCertificate | None

    @property
    def certified(self) -> bool:
        return self.accept.certified or (self.reject is not None and self.reject.certified)

    def coverage(self, accept_risk: np.ndarray, reject_risk: np.ndarray) -> float:
        """Fraction of the given items this certificate lets the surrogate decide."""
        if len(accept_risk) == 0:
            return 0.0
        decided = accept_risk <= self.accept.threshold
        if self.reject is not None:
            decided |= reject_risk <= self.reject.threshold
        return float(decided.mean())


@dataclass
class SurrogateSlot:
    """A trained surrogate version with the audits that may calibrate it."""

    version: int
    model: Surrogate
    n_labels: int
    accept_risks: list[float] = field(default_factory=list)
    reject_risks: list[float] = field(default_factory=list)
    accept_errors: list[bool] = field(default_factory=list)
    reject_errors: list[bool] = field(default_factory=list)
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT_SCORES))
    next_calibration_at: int = 0
    certificate: Certificate | None = None

    @property
    def n_audits(self) -> int:
        return len(self.accept_errors)

    def coverage(self) -> float:
        if self.certificate is None or not self.recent:
            return 0.0
        arr = np.asarray(self.recent)
        return self.certificate.coverage(arr[:, 0], arr[:, 1])


@dataclass
class Scored:
    """One version's opinion of one item."""

    version: int
    accept_risk: float
    reject_risk: float
    p_pass: float | None
    values: dict[str, float]


@dataclass
class BatchScores:
    """One version's opinions of a whole batch: arrays with one entry per candidate."""

    version: int
    accept_risk: np.ndarray
    reject_risk: np.ndarray
    p_pass: np.ndarray | None
    values: dict[str, np.ndarray]
    sigmas: dict[str, np.ndarray]

    def item(self, i: int) -> Scored:
        return Scored(
            self.version,
            float(self.accept_risk[i]),
            float(self.reject_risk[i]),
            float(self.p_pass[i]) if self.p_pass is not None else None,
            {name: float(v[i]) for name, v in self.values.items()},
        )


@dataclass
class _Fresh:
    """The rule-valid candidates of a batch, with their ledger seq numbers and payload text."""

    seqs: list[int]
    candidates: list[Candidate]
    texts: list[str]


@dataclass
class PendingItem:
    candidate: Candidate
    audit: bool
    route: str
    scores: list[Scored]
    attempts: int = 0


@dataclass
class RunStats:
    """Counters the progress display and the summary read."""

    generated: int = 0
    duplicates: int = 0
    invalid: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    surrogate_accepted: int = 0
    surrogate_rejected: int = 0
    gt_calls: int = 0
    gt_walltime_s: float = 0.0
    audits: int = 0
    pending: int = 0
    surrogate_versions: int = 0
    champion: int | None = None
    accept_threshold: float | None = None
    bound: float | None = None
    elapsed_s: float = 0.0
    generator_failures: int = 0
    #: items per ground-truth task at the moment (grows for fast verifiers on Dask)
    chunk_size: int = 0
    stop_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


ProgressCallback = Callable[[RunStats], None]
SteeringPolicy = Callable[[RunStats, Mapping[str, float]], Mapping[str, float]]


def _json_floats(values: Mapping[str, float]) -> str:
    return json.dumps(
        {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
    )


def _parents_json(parent_ids: Any) -> str:
    """Parent ids as a JSON list; a malformed value (on an invalid row) as its repr."""
    if isinstance(parent_ids, tuple | list):
        if not parent_ids:
            return "[]"
        with contextlib.suppress(TypeError, ValueError):
            return json.dumps(list(parent_ids))
    return json.dumps([repr(parent_ids)[:500]])


def _json_objects(columns: Mapping[str, np.ndarray]) -> list[str] | str:
    """Per item, the JSON object ``{name: value}`` of float columns (null where not finite);
    ``"{}"`` once when there are no columns."""
    if not columns:
        return "{}"
    template = "{" + ",".join(f"{json.dumps(name)}:%s" for name in columns) + "}"
    texts = []
    for arr in columns.values():
        values = arr.tolist()
        if np.isfinite(arr).all():
            texts.append(list(map(repr, values)))
        else:
            texts.append([repr(v) if math.isfinite(v) else "null" for v in values])
    return [template % row for row in zip(*texts, strict=True)]


def _finite_or_none(arr: np.ndarray) -> list[float | None] | None:
    """Column values with None for non-finite entries; None when no entry is finite."""
    finite = np.isfinite(arr)
    if finite.all():
        return arr.tolist()
    if not finite.any():
        return None
    return [v if ok else None for v, ok in zip(arr.tolist(), finite.tolist(), strict=True)]


def _prediction_columns(shown: BatchScores) -> dict[str, Any]:
    """The ledger's surrogate columns for a batch, from the opinion shown with each row."""
    columns: dict[str, Any] = {
        "surrogate_version": shown.version,
        "predicted": _json_objects(shown.values),
        "uncertainty": _json_objects(shown.sigmas),
    }
    if shown.p_pass is not None:
        columns["p_pass"] = _finite_or_none(shown.p_pass)
    for name, arr in (("accept_risk", shown.accept_risk), ("reject_risk", shown.reject_risk)):
        values = _finite_or_none(arr)
        if values is not None:
            columns[name] = values
    return {k: v for k, v in columns.items() if v is not None}


class Scheduler:
    """Runs one foundry run to its budget. Construct, then call :meth:`run`."""

    def __init__(
        self,
        config: RunConfig,
        domain: Domain | None = None,
        *,
        executor: Executor | None = None,
        candidates: Iterator[list[Candidate]] | None = None,
        progress: ProgressCallback | None = None,
        steering_policy: SteeringPolicy | None = None,
    ) -> None:
        from foundry.registry import load_domain

        self.cfg = config
        self.domain = (
            domain if domain is not None else load_domain(config.domain, config.allowed_domains)
        )
        self.specs = tuple(self.domain.properties)
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.run_dir)
        self._owns_executor = executor is None
        self.executor = executor if executor is not None else self._make_executor()
        self.external = candidates
        self.progress = progress
        self.steering_policy = steering_policy
        self.steering: dict[str, float] = {**self.domain.steering_defaults, **config.steering}
        root = np.random.SeedSequence(config.seed)
        gen_seed, audit_seed = root.spawn(2)
        self.gen_rng = np.random.default_rng(gen_seed)
        self.audit_rng = np.random.default_rng(audit_seed)
        self.stats = RunStats()
        self.seq = self.ledger.next_seq()
        self.seen: set[str] = set()
        self.labels: list[tuple[Candidate, Verdict]] = []
        self.labels_at_fit = 0
        self.slots: dict[int, SurrogateSlot] = {}
        self.champion: int | None = None
        self.challenger: int | None = None
        self.calibration_index = 0
        self.fit_failures = 0
        self.pending: dict[int, PendingItem] = {}
        self.queue: list[tuple[int, Candidate]] = []
        self._training: threading.Thread | None = None
        self._trained: tuple[Surrogate, int, float] | BaseException | None = None
        self._started = time.monotonic()
        self._generator_hash = ""
        self.monitor = Monitor(self.domain, self.ledger)
        self._sync_training = config.executor == "inline"
        self._fixed_band = config.policy == "fixed_band"
        self._schema = PayloadValidator(self.domain.payload_schema)
        self._audit_rate = 0.0 if self._fixed_band else config.audit_rate
        self._item_busy_s: float | None = None

    # -- set-up -----------------------------------------------------------------------------
    def _make_executor(self) -> Executor:
        if self.cfg.executor == "inline":
            return InlineExecutor()
        return DaskExecutor(n_workers=self.cfg.n_workers)

    def _generator_config_hash(self) -> str:
        blob = canonical_json(
            {
                "domain": self.domain.name,
                "version": self.domain.version,
                "steering": self.steering,
                "seed": self.cfg.seed,
            }
        )
        return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()

    def _write_meta(self) -> None:
        from foundry import __version__

        self.cfg.dump(self.run_dir / "config.json")
        self.ledger.set_meta("config", self.cfg.model_dump(mode="json"))
        self.ledger.set_meta("domain", self.domain.describe())
        self.ledger.set_meta("foundry_version", __version__)
        self.ledger.set_meta("started_at", time.time())

    # -- the loop -------------------------------------------------------------------------------
    def add_challenger(self, model: Surrogate, n_labels: int = 0) -> int:
        """Install an already trained surrogate; it must earn a certificate on this run's audits."""
        self._trained = (model, n_labels, 0.0)
        self._absorb_training()
        return self.stats.surrogate_versions

    def run(self) -> RunStats:
        self._write_meta()
        self._generator_hash = self._generator_config_hash()
        try:
            while True:
                self._absorb_training()
                self._collect(timeout_s=0.0)
                reason = self._stop_reason()
                if reason:
                    self.stats.stop_reason = reason
                    break
                if self._waiting_for_first_model():
                    self._wait_for_work(timeout_s=0.2)
                elif self._backlog() < self._max_pending():
                    if not self._produce_batch():
                        self.stats.stop_reason = "candidate source exhausted"
                        break
                else:
                    self._collect(timeout_s=0.2)
                self._submit()
                self._report()
            self._drain()
        finally:
            self._finish()
        return self.stats

    def _wait_for_work(self, timeout_s: float) -> None:
        """Block until a ground-truth result or the training thread finishes (no spinning: a
        busy loop would hold the GIL the training thread needs)."""
        if self.executor.in_flight() or self.queue:
            self._submit()
            self._collect(timeout_s=timeout_s)
        elif self._training is not None:
            self._training.join(timeout=timeout_s)

    def _waiting_for_first_model(self) -> bool:
        """Hold generation until the first surrogate exists: every candidate made before it
        goes to the ground truth, so make just the ``min_train_labels`` the first fit needs,
        then wait for the fit - seconds to minutes in which the ground truth would otherwise
        label, expensively, items the model will soon decide for free."""
        if not self._first_fit_pending():
            return False
        if self._training is not None:
            return True
        return self._first_fit_quota() <= 0 and bool(self.pending)

    def _first_fit_pending(self) -> bool:
        """Before the first surrogate: hold to the first-fit quota (not after a failed fit,
        which must not stall the run; it goes on as ground truth only until a refit works)."""
        return (
            self.cfg.pause_for_first_fit
            and self.cfg.surrogate
            and not self.slots
            and not self.fit_failures
        )

    def _first_fit_quota(self) -> int:
        """Candidates still to make for the first fit (labels + those in flight count)."""
        return self.cfg.min_train_labels - len(self.labels) - len(self.pending)

    def _max_pending(self) -> int:
        if self.cfg.max_pending:
            return self.cfg.max_pending
        return max(self.executor.slots * self._chunk_size() * 4, self.cfg.batch_size)

    def _chunk_size(self) -> int:
        """Items per ground-truth task: ``chunk_size``, grown on a remote executor until a
        task keeps its worker busy for about ``chunk_target_s``. A task costs this process and
        the Dask scheduler milliseconds; a verifier that needs microseconds per item would
        otherwise be all task overhead. Slow verifiers keep ``chunk_size``."""
        per_item_s = self._item_busy_s
        if per_item_s is None or not self.executor.remote or self.cfg.chunk_target_s <= 0:
            return self.cfg.chunk_size
        grown = int(self.cfg.chunk_target_s / max(per_item_s, 1e-9))
        return max(self.cfg.chunk_size, min(grown, MAX_CHUNK_SIZE))

    def _observe_chunk(self, outcome: ChunkOutcome) -> None:
        """Track worker seconds per item (moving average over chunks)."""
        if outcome.error is not None or not outcome.job.items or outcome.busy_s <= 0:
            return
        per_item_s = outcome.busy_s / len(outcome.job.items)
        previous = self._item_busy_s
        self._item_busy_s = per_item_s if previous is None else 0.7 * previous + 0.3 * per_item_s

    def _backlog(self) -> int:
        return len(self.pending)

    def _stop_reason(self) -> str:
        budget = self.cfg.budget
        elapsed = time.monotonic() - self._started
        if budget.walltime_s is not None and elapsed >= budget.walltime_s:
            return f"wall time {budget.walltime_s:g} s reached"
        if budget.max_candidates is not None and self.stats.generated >= budget.max_candidates:
            return f"{budget.max_candidates} candidates generated"
        if (
            budget.max_ground_truth_calls is not None
            and self.stats.gt_calls + len(self.queue) >= budget.max_ground_truth_calls
        ):
            return f"{budget.max_ground_truth_calls} ground-truth calls used"
        if budget.target_accepted is not None and self.stats.accepted >= budget.target_accepted:
            return f"{budget.target_accepted} examples accepted"
        return ""

    def _drain(self) -> None:
        deadline = None
        if self.cfg.budget.walltime_s is not None:
            deadline = time.monotonic() + max(self.cfg.gt_timeout_s * 2, 30.0)
        while self.pending:
            self._submit()
            self._collect(timeout_s=0.2)
            self._absorb_training()
            self._report()
            if deadline is not None and time.monotonic() > deadline:
                self.ledger.event(
                    "warning", "drain", f"{len(self.pending)} items left pending at stop"
                )
                break
        self._join_training()
        self._absorb_training()

    def _finish(self) -> None:
        self.stats.elapsed_s = time.monotonic() - self._started
        self.stats.pending = len(self.pending)
        with contextlib.suppress(Exception):
            self.ledger.set_meta("finished_at", time.time())
            self.ledger.set_meta("stats", self.stats.as_dict())
            self.monitor.flush(self.stats.generated)
        try:
            if self._owns_executor:
                self.executor.close()
        finally:
            self.ledger.close()  # commits what is pending, whatever happened above
        self._report(final=True)

    def _report(self, final: bool = False) -> None:
        self.stats.elapsed_s = time.monotonic() - self._started
        self.stats.pending = len(self.pending)
        if self.progress is not None:
            self.progress(self.stats)

    # -- producing and routing ----------------------------------------------------------------
    def _next_candidates(self, n: int) -> list[Candidate] | None:
        if self.external is not None:
            return next(self.external, None)
        if self.steering_policy is not None:
            self.steering = dict(self.steering_policy(self.stats, self.steering))
            self._generator_hash = self._generator_config_hash()
        try:
            batch = self.domain.generate(n, self.gen_rng, self.steering)
            if not isinstance(batch, list) or not all(isinstance(c, Candidate) for c in batch):
                raise PluginError("generate() must return a list of Candidate")
        except SetupError:
            raise
        except Exception as exc:
            self.stats.generator_failures += 1
            self.ledger.event("error", "generate", f"{type(exc).__name__}: {exc}")
            if self.stats.generator_failures > self.cfg.generate_retries:
                raise PluginError(
                    f"generator failed {self.stats.generator_failures} times in a row; last: {exc}"
                ) from exc
            return []
        self.stats.generator_failures = 0
        return batch

    def _produce_batch(self) -> bool:
        n = self.cfg.batch_size
        if self._first_fit_pending():
            n = min(n, max(self._first_fit_quota(), 1))
        if self.cfg.budget.max_candidates is not None:
            n = min(n, self.cfg.budget.max_candidates - self.stats.generated)
        batch = self._next_candidates(n)
        if batch is None:
            return False
        self.stats.generated += len(batch)
        now = time.time()
        invalid: list[tuple[int, Candidate, str, str]] = []
        fresh = _Fresh([], [], [])
        domain_name, seen = self.domain.name, self.seen
        for cand in batch:
            try:
                text = canonical_json(cand.payload)
            except (TypeError, ValueError) as exc:
                invalid.append((self._next_seq(), cand, "{}", f"payload is not JSON: {exc}"))
                continue
            if not cand.id:
                cand.id = content_id_of_text(domain_name, text)
            if cand.id in seen:
                self.stats.duplicates += 1
                continue
            seen.add(cand.id)
            reason = self._check(cand)
            if reason is not None:
                invalid.append((self._next_seq(), cand, text, reason))
                continue
            fresh.seqs.append(self._next_seq())
            fresh.candidates.append(cand)
            fresh.texts.append(text)
        decisions = {"invalid": len(invalid)} if invalid else {}
        if invalid:
            self._insert_invalid(invalid, now)
        if fresh.candidates:
            decisions.update(self._screen_and_route(fresh, now))
        self.monitor.observe(decisions, fresh.candidates)
        return True

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def _check(self, cand: Candidate) -> str | None:
        if cand.source not in SOURCES:
            return f"unknown source {cand.source!r}"
        generation = cand.generation
        if not isinstance(generation, int | np.integer) or isinstance(generation, bool):
            return f"generation must be an integer, not {type(generation).__name__}"
        if generation < 0:
            return f"generation must be >= 0, got {generation}"
        parents = cand.parent_ids
        if not isinstance(parents, tuple | list) or (
            parents and not all(isinstance(p, str) for p in parents)
        ):
            return "parent_ids must be a tuple of content ids (str)"
        if INVALID_INPUT in cand.payload:
            return str(cand.payload[INVALID_INPUT])
        schema_problem = self._schema(cand.payload)
        if schema_problem is not None:
            return schema_problem
        try:
            reason = self.domain.check(cand)
        except Exception as exc:
            return f"rule check raised {type(exc).__name__}: {exc}"
        if reason is not None and (not isinstance(reason, str) or not reason):
            return f"rule check returned {reason!r} instead of None or a reason"
        return reason

    def _provenance_columns(self, cands: Sequence[Candidate]) -> dict[str, Sequence[Any]]:
        """Columns every example row carries, one entry per candidate."""
        return {
            "content_id": [c.id for c in cands],
            "source": [c.source for c in cands],
            "generation": [
                int(c.generation) if isinstance(c.generation, int | np.integer) else -1
                for c in cands
            ],
            "parent_ids": [_parents_json(c.parent_ids) for c in cands],
        }

    def _constant_columns(self, now: float) -> dict[str, Any]:
        return {
            "domain": self.domain.name,
            "domain_version": self.domain.version,
            "generator_hash": self._generator_hash if self.external is None else "external",
            "created_at": now,
        }

    def _insert_invalid(self, invalid: list[tuple[int, Candidate, str, str]], now: float) -> None:
        for _, cand, text, _ in invalid:
            cand.id = cand.id or content_id_of_text(self.domain.name, text)
        reasons = [reason for *_, reason in invalid]
        self.stats.invalid += len(invalid)
        self._insert_rows(
            len(invalid),
            {
                "seq": [seq for seq, *_ in invalid],
                "payload": [text for _, _, text, _ in invalid],
                **self._provenance_columns([cand for _, cand, _, _ in invalid]),
                "rule_ok": 0,
                "rule_reason": reasons,
                "audit": 0,
                "route": "rule",
                "decision": "invalid",
                "decided_by": "rule",
                "reason": reasons,
                "decided_at": now,
            },
            now,
        )

    def _insert_rows(self, n: int, columns: dict[str, Any], now: float) -> None:
        """One executemany for ``n`` rows: lists are per-row values, anything else a constant."""
        columns = {**self._constant_columns(now), **columns}
        values = [v if isinstance(v, list) else itertools.repeat(v, n) for v in columns.values()]
        self.ledger.insert_examples(tuple(columns), zip(*values, strict=True))

    def _score(self, slot: SurrogateSlot, cands: list[Candidate]) -> BatchScores | None:
        """One version's opinions; None when the surrogate raised or returned garbage."""
        try:
            pred = slot.model.predict(cands)
            if not isinstance(pred, Predictions) or pred.n != len(cands):
                raise PluginError("predict() must return Predictions for every candidate")
            pred.validate(self.specs, self.domain.has_pass_fail)
        except Exception as exc:
            self.ledger.event("error", "surrogate", f"v{slot.version}: {type(exc).__name__}: {exc}")
            return None
        accept, reject = risks_from_predictions(pred, self.specs, self.domain.has_pass_fail)
        slot.recent.extend(zip(accept.tolist(), reject.tolist(), strict=True))
        names = [s.name for s in self.specs]
        return BatchScores(
            slot.version,
            accept,
            reject,
            None if pred.p_pass is None else np.asarray(pred.p_pass, dtype=float),
            {name: np.asarray(pred.values[name], dtype=float) for name in names},
            {name: np.asarray(pred.sigmas[name], dtype=float) for name in names},
        )

    def _screen_and_route(self, fresh: _Fresh, now: float) -> dict[str, int]:
        """Score, route and record a batch of rule-valid candidates; returns decision counts.

        Vectorised over the batch: per-item Python objects are made only for the items that
        go to the ground truth.
        """
        cands = fresh.candidates
        n = len(cands)
        versions = [v for v in (self.champion, self.challenger) if v is not None]
        scored = {v: self._score(self.slots[v], cands) for v in versions}
        opinions = [s for s in scored.values() if s is not None]
        champ_scores = scored.get(self.champion) if self.champion is not None else None
        shown = champ_scores if champ_scores is not None else (opinions[-1] if opinions else None)
        champ = self.slots[self.champion] if self.champion is not None else None
        cert = champ.certificate if champ is not None else None
        audit_draws = self.audit_rng.random(n)

        route = np.full(n, "", dtype=object)
        decision = np.full(n, "pending", dtype=object)
        if not versions:
            audit = np.ones(n, dtype=bool)
            route[:] = "no_surrogate"
        elif cert is None or not cert.certified or champ_scores is None:
            audit = np.full(n, bool(opinions))
            route[:] = "uncalibrated" if opinions else "surrogate_error"
        else:
            audit = audit_draws < self._audit_rate
            route[:] = "uncertain"
            route[audit] = "audit"
            accept = ~audit & (champ_scores.accept_risk <= cert.accept.threshold)
            route[accept] = "surrogate_accept"
            decision[accept] = "accepted"
            if cert.reject is not None:
                reject = ~audit & ~accept & (champ_scores.reject_risk <= cert.reject.threshold)
                route[reject] = "surrogate_reject"
                decision[reject] = "rejected"
        columns: dict[str, Any] = {
            "seq": fresh.seqs,
            "payload": fresh.texts,
            **self._provenance_columns(cands),
            "rule_ok": 1,
            "audit": audit.astype(int).tolist(),
            "route": route.tolist(),
            "decision": decision.tolist(),
        }
        if shown is not None:
            columns.update(_prediction_columns(shown))
        to_truth = decision == "pending"
        n_gt = int(np.count_nonzero(to_truth))
        if n_gt == n:
            columns["reason"] = columns["route"]
        else:
            assert cert is not None
            columns.update(self._surrogate_decision_columns(decision, route, cert, now))
            self._count_surrogate_decisions(decision)
        self._insert_rows(n, columns, now)
        for i in np.flatnonzero(to_truth).tolist():
            item_scores = [s.item(i) for s in opinions]
            self.pending[fresh.seqs[i]] = PendingItem(
                cands[i], bool(audit[i]), route[i], item_scores
            )
            self.queue.append((fresh.seqs[i], cands[i]))
        counts = {"pending": n_gt}
        for kind in ("accepted", "rejected"):
            k = int(np.count_nonzero(decision == kind))
            if k:
                counts[kind] = k
        return counts

    def _surrogate_decision_columns(
        self, decision: np.ndarray, route: np.ndarray, cert: Certificate, now: float
    ) -> dict[str, list[Any]]:
        """Who decided, under which certificate and bound (None for ground-truth-bound rows)."""
        n = len(decision)
        decided_by = np.full(n, None, dtype=object)
        reason = route.copy()
        calibration = np.full(n, None, dtype=object)
        bound = np.full(n, None, dtype=object)
        alpha = np.full(n, None, dtype=object)
        decided_at = np.full(n, None, dtype=object)
        for kind, route_cert in (("accepted", cert.accept), ("rejected", cert.reject)):
            mask = decision == kind
            if route_cert is None or not mask.any():
                continue
            decided_by[mask] = "surrogate"
            reason[mask] = f"risk <= certified threshold {route_cert.threshold:.4g}"
            calibration[mask] = cert.version
            if math.isfinite(route_cert.upper_bound):
                bound[mask] = route_cert.upper_bound
            alpha[mask] = route_cert.alpha
            decided_at[mask] = now
        return {
            "decided_by": decided_by.tolist(),
            "reason": reason.tolist(),
            "calibration_version": calibration.tolist(),
            "bound": bound.tolist(),
            "alpha": alpha.tolist(),
            "decided_at": decided_at.tolist(),
        }

    def _count_surrogate_decisions(self, decision: np.ndarray) -> None:
        accepted = int(np.count_nonzero(decision == "accepted"))
        rejected = int(np.count_nonzero(decision == "rejected"))
        self.stats.accepted += accepted
        self.stats.surrogate_accepted += accepted
        self.stats.rejected += rejected
        self.stats.surrogate_rejected += rejected

    # -- ground truth -----------------------------------------------------------------------------
    def _submit(self) -> None:
        while self.queue and self.executor.in_flight() < self.executor.slots:
            size = self.stats.chunk_size = self._chunk_size()
            items, self.queue = self.queue[:size], self.queue[size:]
            self.stats.gt_calls += len(items)
            self.executor.submit(
                ChunkJob(
                    domain_spec=self._domain_spec(),
                    fidelity=self.cfg.fidelity,
                    items=tuple(items),
                    timeout_s=self.cfg.gt_timeout_s,
                    isolation=self.cfg.isolation,
                    memory_limit_mb=self.cfg.memory_limit_mb,
                )
            )

    def _domain_spec(self) -> str:
        """How a worker process finds this domain: the class itself when importable."""
        cls = type(self.domain)
        if "<locals>" not in cls.__qualname__ and cls.__module__ != "__main__":
            return f"{cls.__module__}:{cls.__qualname__}"
        return self.cfg.domain

    def _collect(self, timeout_s: float) -> None:
        outcomes = self.executor.collect(timeout_s)
        if not outcomes:
            return
        updates: list[GroundTruthUpdate] = []
        for outcome in outcomes:
            self._observe_chunk(outcome)
            updates.extend(self._absorb_outcome(outcome))
        self.ledger.update_ground_truth(updates)
        self._maybe_calibrate()
        self._maybe_retrain()

    def _absorb_outcome(self, outcome: ChunkOutcome) -> list[GroundTruthUpdate]:
        if outcome.error is not None:
            if isinstance(outcome.error, SetupError):
                raise outcome.error
            message = f"{type(outcome.error).__name__}: {outcome.error}"
            self.ledger.event("error", "executor", message)
            results = [
                GTResult(key, None, CRASH, f"chunk lost: {message}") for key, _ in outcome.job.items
            ]
        else:
            results = outcome.results
        updates = []
        for result in results:
            update = self._absorb_result(result)
            if update is not None:
                updates.append(update)
        return updates

    def _absorb_result(self, result: GTResult) -> GroundTruthUpdate | None:
        item = self.pending.get(result.key)
        if item is None:
            return None
        item.attempts += 1
        self.stats.gt_walltime_s += result.walltime_s
        if (
            result.verdict is None
            and result.failure_kind in RETRYABLE
            and item.attempts < self.cfg.gt_max_attempts
        ):
            self.queue.append((result.key, item.candidate))
            return None
        del self.pending[result.key]
        verdict = result.verdict
        now = time.time()
        if verdict is not None:
            decision = "accepted" if verdict.passed else "rejected"
            self.labels.append((item.candidate, verdict))
            if decision == "accepted":
                self.stats.accepted += 1
            else:
                self.stats.rejected += 1
        else:
            decision = "failed"
            self.stats.failed += 1
        if item.audit:
            self.stats.audits += 1
            for s in item.scores:
                slot = self.slots.get(s.version)
                if slot is None:
                    continue
                slot.accept_risks.append(s.accept_risk)
                slot.reject_risks.append(s.reject_risk)
                slot.accept_errors.append(accept_error(verdict, s.values, self.specs))
                slot.reject_errors.append(reject_error(verdict))
        return GroundTruthUpdate(
            seq=result.key,
            decision=decision,
            decided_by="ground_truth" if verdict is not None else None,
            reason=item.route if verdict is not None else f"{item.route}; {result.failure_kind}",
            gt_passed=int(verdict.passed) if verdict is not None else None,
            gt_properties=_json_floats(verdict.properties) if verdict is not None else None,
            gt_reason=verdict.reason if verdict is not None else None,
            gt_measurements=(
                _json_floats(verdict.measurements)
                if verdict is not None and verdict.measurements
                else None
            ),
            simulator=result.simulator,
            simulator_version=result.simulator_version,
            walltime_s=result.walltime_s,
            worker_host=result.host,
            failure_kind=result.failure_kind or None,
            error=result.error or None,
            attempts=item.attempts,
            decided_at=now,
        )

    # -- calibration ------------------------------------------------------------------------
    def _first_calibration_at(self) -> int:
        alpha = min(self.cfg.alpha, self.cfg.effective_reject_alpha)
        return min_audits(alpha, spend_delta(self.cfg.delta, 1) / 2)

    def _maybe_calibrate(self) -> None:
        if self._fixed_band:
            return
        for version in (self.champion, self.challenger):
            if version is None:
                continue
            slot = self.slots[version]
            if slot.n_audits < max(slot.next_calibration_at, 1):
                continue
            if slot.certificate is None and not self._plausible(slot):
                # label-free pre-check failed: spend no confidence on a hopeless calibration,
                # and look again once the audits have grown by a tenth
                slot.next_calibration_at = math.ceil(slot.n_audits * 1.1)
                continue
            self._calibrate(slot)
            slot.next_calibration_at = math.ceil(slot.n_audits * self.cfg.recalibrate_growth)
        self._maybe_promote()

    def _plausible(self, slot: SurrogateSlot) -> bool:
        """Would a calibration likely certify a route if the surrogate's own risks were right?

        Uses the audits' risks only, never their labels, so it spends no confidence: it just
        avoids burning calibration indices (and with them, delta) before enough audits exist.
        Errors are simulated from the risks several times; a route counts as plausible when at
        least half its dry runs pass the scan's first test (the one that decides whether
        anything is certified), so that one lucky draw does not trigger a hopeless calibration.
        """
        delta_j = spend_delta(self.cfg.delta, self.calibration_index + 1)
        routes = [(slot.accept_risks, self.cfg.alpha)]
        if self.domain.has_pass_fail:
            routes.append((slot.reject_risks, self.cfg.effective_reject_alpha))
        rng = np.random.default_rng(slot.n_audits)
        for risk_list, alpha in routes:
            risks = np.asarray(risk_list, dtype=float)
            test = first_test(risks, alpha=alpha, delta=delta_j / len(routes))
            if test is None or test[1] < 0:
                continue
            n, k_max = test
            expected = np.clip(np.sort(risks[np.isfinite(risks)])[:n], 0.0, 1.0)
            errors = np.count_nonzero(rng.random((PLAUSIBILITY_DRAWS, n)) < expected, axis=1)
            if np.count_nonzero(errors <= k_max) * 2 >= PLAUSIBILITY_DRAWS:
                return True
        return False

    def _calibrate(self, slot: SurrogateSlot) -> None:
        self.calibration_index += 1
        delta_j = spend_delta(self.cfg.delta, self.calibration_index)
        routes = 2 if self.domain.has_pass_fail else 1
        accept = certify(
            np.asarray(slot.accept_risks),
            np.asarray(slot.accept_errors),
            alpha=self.cfg.alpha,
            delta=delta_j / routes,
            route="accept",
        )
        reject = None
        if self.domain.has_pass_fail:
            reject = certify(
                np.asarray(slot.reject_risks),
                np.asarray(slot.reject_errors),
                alpha=self.cfg.effective_reject_alpha,
                delta=delta_j / routes,
                route="reject",
            )
        slot.certificate = Certificate(self.calibration_index, slot.version, accept, reject)
        in_force = slot.version == self.champion
        self.ledger.add_calibration(
            {
                "version": self.calibration_index,
                "surrogate_version": slot.version,
                "created_at": time.time(),
                "delta_spent": delta_j,
                "in_force": int(in_force),
                "accept_threshold": accept.threshold if accept.certified else None,
                "accept_n": accept.n_audits,
                "accept_errors": accept.n_errors,
                "accept_bound": accept.upper_bound,
                "reject_threshold": reject.threshold if reject and reject.certified else None,
                "reject_n": reject.n_audits if reject else None,
                "reject_errors": reject.n_errors if reject else None,
                "reject_bound": reject.upper_bound if reject else None,
                "alpha": self.cfg.alpha,
                "reject_alpha": self.cfg.effective_reject_alpha,
                "coverage": slot.coverage(),
            }
        )
        if in_force:
            self._show_certificate(slot)

    def _show_certificate(self, slot: SurrogateSlot) -> None:
        cert = slot.certificate
        self.stats.champion = slot.version
        if cert is not None and cert.accept.certified:
            self.stats.accept_threshold = cert.accept.threshold
            self.stats.bound = cert.accept.upper_bound
        else:
            self.stats.accept_threshold = None
            self.stats.bound = None

    def _maybe_promote(self) -> None:
        if self.challenger is None:
            return
        chal = self.slots[self.challenger]
        if chal.certificate is None or not chal.certificate.certified:
            return
        champ = self.slots[self.champion] if self.champion is not None else None
        champ_certified = (
            champ is not None and champ.certificate is not None and champ.certificate.certified
        )
        if champ_certified and chal.coverage() < champ.coverage():
            return
        self.ledger.event(
            "info",
            "promote",
            f"surrogate v{chal.version} takes over (coverage {chal.coverage():.3f})",
        )
        if self.champion is not None:
            self.slots.pop(self.champion, None)
        self.champion, self.challenger = chal.version, None
        self._show_certificate(chal)

    # -- training ---------------------------------------------------------------------------
    def _maybe_retrain(self) -> None:
        if not self.cfg.surrogate or self._training is not None:
            return
        n = len(self.labels)
        if n < self.cfg.min_train_labels:
            return
        if self.labels_at_fit and n - self.labels_at_fit < self.cfg.retrain_every:
            return  # also after a failed fit: no refit on every result
        chal = self.slots.get(self.challenger) if self.challenger is not None else None
        certified = chal is not None and chal.certificate is not None and chal.certificate.certified
        if chal is not None and not certified and chal.n_audits < self.cfg.challenger_audits:
            return  # let the challenger collect its audits before a newer version replaces it
        self.labels_at_fit = n
        snapshot = list(self.labels)
        if self._sync_training:
            self._fit(snapshot)
            self._absorb_training()
            return
        self._training = threading.Thread(target=self._fit, args=(snapshot,), daemon=True)
        self._training.start()

    def _fit(self, labels: Sequence[tuple[Candidate, Verdict]]) -> None:
        started = time.perf_counter()
        try:
            model = self.domain.surrogate()
            model.fit([c for c, _ in labels], [v for _, v in labels])
            self._trained = (model, len(labels), time.perf_counter() - started)
        except Exception as exc:  # recorded, the loop goes on with the current version
            self._trained = exc

    def _join_training(self) -> None:
        if self._training is not None:
            self._training.join()

    def _absorb_training(self) -> None:
        if self._training is not None and self._training.is_alive():
            return
        self._training = None
        trained, self._trained = self._trained, None
        if trained is None:
            return
        if isinstance(trained, BaseException):
            self.fit_failures += 1
            self.ledger.event("error", "fit", f"{type(trained).__name__}: {trained}")
            return
        model, n_labels, fit_s = trained
        version = self.stats.surrogate_versions + 1
        self.stats.surrogate_versions = version
        slot = SurrogateSlot(version, model, n_labels)
        slot.next_calibration_at = self._first_calibration_at()
        self.slots[version] = slot
        if self.challenger is not None and self.challenger != self.champion:
            self.slots.pop(self.challenger, None)
        self.challenger = version
        self.ledger.add_surrogate(version, n_labels, fit_s)
        self._save_model(version, model)
        if self._fixed_band:
            self._install_fixed_band(slot)

    def _install_fixed_band(self, slot: SurrogateSlot) -> None:
        """Comparison policy: the newest version decides at fixed risk levels, unaudited."""
        nan = float("nan")
        accept = RouteCertificate(
            "accept", self.cfg.fixed_accept_risk, 0, 0, nan, self.cfg.alpha, nan
        )
        reject = None
        if self.domain.has_pass_fail:
            reject = RouteCertificate(
                "reject", self.cfg.fixed_reject_risk, 0, 0, nan, self.cfg.alpha, nan
            )
        slot.certificate = Certificate(0, slot.version, accept, reject)
        if self.champion is not None:
            self.slots.pop(self.champion, None)
        self.champion, self.challenger = slot.version, None
        self._show_certificate(slot)

    def _save_model(self, version: int, model: Surrogate) -> None:
        path = self.run_dir / "surrogates" / f"v{version}.pkl"
        path.parent.mkdir(exist_ok=True)
        try:
            with path.open("wb") as fh:
                pickle.dump(model, fh)
        except Exception as exc:
            self.ledger.event("warning", "save", f"surrogate v{version} not saved: {exc}")
