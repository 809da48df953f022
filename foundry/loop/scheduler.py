"""The two-tier loop: generate -> rule check -> surrogate -> route -> ground truth -> learn.

Streaming, not batch-then-wait: the coordinator produces a batch (:mod:`.intake`), scores it
with the versions in the calibration book (:mod:`.book`), routes it (:mod:`.router`), writes
its rows (:mod:`.rows`), keeps the executor's slots full (:mod:`.dispatch`) and folds
ground-truth results back in as they arrive: labels for the trainer (:mod:`.trainer`), audits
for the book. Generation pauses when the ground-truth backlog is full, and at the start until
the first surrogate has trained. This module only composes the parts and decides when to stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from foundry.config import RunConfig
from foundry.contract import Candidate, Domain, Surrogate
from foundry.execution.screening import GuardedChecker
from foundry.files import atomic_write_text
from foundry.ledger import GroundTruthUpdate, Ledger
from foundry.loop.book import BookParams, CalibrationBook, SurrogateSlot
from foundry.loop.dispatch import (
    Dispatcher,
    DispatchParams,
    PendingItem,
    ladder_of,
    make_executor,
    verifier_spec,
)
from foundry.loop.generations import Generations
from foundry.loop.intake import AUDIT_STREAM, Fresh, Intake, IntakeParams, batch_rng
from foundry.loop.resume import check_run_dir, restore_run
from foundry.loop.router import route_batch
from foundry.loop.rows import (
    LADDER_ROUTE,
    RowWriter,
    ground_truth_update,
    provenance_columns,
    routed_columns,
    verification_row,
)
from foundry.loop.stats import ComputeAccount, ProgressCallback, RunStats, SteeringPolicy
from foundry.loop.trainer import Trained, Trainer, TrainerParams
from foundry.monitor import Monitor

if TYPE_CHECKING:  # at run time only dispatch.py imports the execution plane
    from foundry.execution.executors import Executor
    from foundry.execution.outcomes import GTResult


def _check_same_options(domain: Domain, values: dict) -> None:
    """A domain object passed in carries its own options; config options must agree."""
    from foundry.options import parse_options

    if parse_options(type(domain), values) != getattr(domain, "options", None):
        raise ValueError(
            "domain_options in the config differ from the options of the domain object "
            "passed to the Scheduler; give them in one place"
        )


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
        stream_id: str | None = None,
        resume: bool = False,
        handle_signals: bool = True,
    ) -> None:
        from foundry.registry import load_domain

        self.cfg = config
        if domain is None:
            domain = load_domain(config.domain, config.allowed_domains, config.domain_options)
        elif config.domain_options:
            _check_same_options(domain, config.domain_options)
        self.domain = domain
        # everything that can be wrong with the config fails here, before the run dir exists
        #: one verifier per tier of the fidelity ladder, cheapest first; the last is the top
        self.verifiers = tuple(
            verifier_spec(config, self.domain, fidelity)
            for fidelity in ladder_of(config, self.domain)
        )
        self.verifier = self.verifiers[-1]
        self.run_dir = Path(config.run_dir)
        self.ledger = Ledger(self.run_dir)  # takes the run dir's lock
        try:
            #: the run this directory already holds (None: a new run)
            self.previous = check_run_dir(self.ledger, config, resume)
        except BaseException:
            self.ledger.close()
            raise
        self.handle_signals = handle_signals
        #: the signal that asked the run to stop (SIGINT, SIGTERM), once one came
        self.stop_signal: int | None = None
        self._owns_executor = executor is None
        self.executor = executor if executor is not None else make_executor(config, self.verifiers)
        self.progress = progress
        self.stats = RunStats()
        self.stats.workers = self.executor.workers
        self.checker = (
            GuardedChecker(self.verifier, config.check_timeout_s)
            if self.domain.untrusted_check
            else None
        )
        self._audit_rate = 0.0 if config.policy == "fixed_band" else config.audit_rate
        self._started = time.monotonic()
        self.generations = (
            Generations(self.domain, config.generations, self.ledger, config.seed)
            if config.generations.size is not None
            else None
        )
        if self.generations is not None and candidates is not None:
            self.ledger.close()
            raise ValueError("[generations] needs the domain's generator, not an input stream")
        #: seconds spent per generation: generating, scoring, training, each ground-truth tier
        self.compute = ComputeAccount()
        self.intake = Intake(
            self.domain,
            IntakeParams(config.seed, config.generate_retries),
            self.ledger,
            self.stats,
            steering={**self.domain.steering_defaults, **config.steering},
            external=candidates,
            stream_id=stream_id,
            steering_policy=steering_policy,
            checker=self.checker,
            generations=self.generations,
        )
        self.book = CalibrationBook(
            BookParams.from_config(config, getattr(self.domain, "slices", None)),
            self.domain.properties,
            self.domain.has_pass_fail,
            self.ledger,
            on_in_force=self._show_certificate,
        )
        self.trainer = Trainer(
            self.domain,
            TrainerParams.from_config(config),
            self.ledger,
            self.run_dir / "surrogates",
            sync=config.executor == "inline" or config.deterministic,
        )
        self.dispatcher = Dispatcher(
            self.executor,
            DispatchParams.from_config(config, self.verifiers),
            self.stats,
            self.ledger,
        )
        self.rows = RowWriter(
            self.ledger, self.domain.name, self.domain.version, self.verifier.options_json
        )
        self.monitor = Monitor(self.domain, self.ledger)
        #: final results not yet folded in (deterministic runs fold them at batch boundaries)
        self._held: dict[int, tuple[PendingItem, GTResult]] = {}
        #: items whose cheaper tiers are done, waiting to be scored and routed
        self._ready: dict[int, PendingItem] = {}
        #: every tier's verdicts, to be written to the ledger's verifications table
        self._verifications: list[tuple] = []
        if self.previous is not None:
            restore_run(self)

    # -- what the parts hold, for callers that inspect a run ------------------------------------
    @property
    def slots(self) -> dict[int, SurrogateSlot]:
        return self.book.slots

    @property
    def champion(self) -> int | None:
        return self.book.champion

    @property
    def challenger(self) -> int | None:
        return self.book.challenger

    @property
    def pending(self) -> dict[int, PendingItem]:
        return self.dispatcher.pending

    @property
    def queue(self) -> list[tuple[int, Candidate]]:
        return self.dispatcher.queue

    # -- set-up -----------------------------------------------------------------------------
    def _write_meta(self) -> None:
        from foundry import __version__

        atomic_write_text(
            self.run_dir / "config.json",
            json.dumps(self.cfg.model_dump(mode="json"), indent=2, sort_keys=True) + "\n",
        )
        self.ledger.set_meta("config", self.cfg.model_dump(mode="json"))
        self.ledger.set_meta("state", "running")
        self.ledger.set_meta("stop_reason", "")
        self.ledger.set_meta("domain", self.domain.describe())
        self.ledger.set_meta("domain_options", json.loads(self.verifier.options_json))
        self.ledger.set_meta(
            "verifier",
            {
                "fidelity": self.verifier.fidelity,
                "isolation": self.verifier.isolation,
                "resources": self.verifier.resources.as_dict(),
                "workers": self.stats.workers,
                "ladder": [
                    {
                        "fidelity": v.fidelity,
                        "isolation": v.isolation,
                        "resources": v.resources.as_dict(),
                    }
                    for v in self.verifiers
                ],
            },
        )
        self.ledger.set_meta("foundry_version", __version__)
        if self.previous is None:
            self.ledger.set_meta("started_at", time.time())
        else:
            resumed = list(self.previous.get("resumed_at", []))
            self.ledger.set_meta("resumed_at", [*resumed, time.time()])
        self._checkpoint(force=True)

    def add_challenger(self, model: Surrogate, n_labels: int = 0) -> int:
        """Install an already trained surrogate; it must earn a certificate on this run's audits."""
        return self._install(Trained(model, n_labels, 0.0))

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> RunStats:
        """Run to the budget (or a stop signal); the ledger then holds everything."""
        with self._signals():
            self._write_meta()
            try:
                if self.previous is not None:
                    self._after_fold()
                self._loop()
            except BaseException as exc:
                self._finish(failed=exc)
                raise
            self._finish()
        return self.stats

    def _loop(self) -> None:
        while True:
            self._checkpoint()
            reason = self._stop_reason()
            if reason:
                self.stats.stop_reason = reason
                break
            self._absorb_training()
            self._collect(timeout_s=0.0)
            reason = self._stop_reason()
            if reason:
                self.stats.stop_reason = reason
                break
            if self._waiting_for_first_model():
                self._wait_for_work(timeout_s=0.2)
            elif self._at_generation_end():
                if self._generation_decided():
                    self._close_generation()
                    if self.generations is not None and self.generations.finished():
                        self.stats.stop_reason = f"{self.cfg.generations.count} generations made"
                        break
                else:
                    self._wait_for_work(timeout_s=0.2)
            elif len(self.dispatcher.pending) < self.dispatcher.max_pending():
                if not self._produce_batch():
                    self.stats.stop_reason = "candidate source exhausted"
                    break
            else:
                self._collect(timeout_s=0.2)  # back-pressure: the backlog is full
            self.dispatcher.submit()
            self._report()
        if self.stop_signal is None:
            self._drain()

    # -- durability ---------------------------------------------------------------------------
    def _checkpoint(self, force: bool = False) -> None:
        """Commit, when due, with the counters a resume needs. Called only where the state is
        consistent - between batches and folds - so a kill loses at most one commit interval
        of work and leaves nothing half-written."""
        if not force and not self.ledger.commit_due():
            return
        stats = self.stats
        self.ledger.set_meta(
            "progress",
            {
                "batches": self.intake.batches,
                "generated": stats.generated,
                "duplicates": stats.duplicates,
                "invalid": stats.invalid,
                "steering": self.intake.steering,
                "labels_at_fit": self.trainer.labels_at_taken,
                "committed_at": time.time(),
                **(
                    {"generations": self.generations.state.as_dict()}
                    if self.generations is not None
                    else {}
                ),
            },
        )
        self.ledger.set_meta("compute", self.compute.as_dict())
        self.ledger.set_meta("book", self.book.state())
        self.ledger.commit()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM (Ctrl-C, scancel, a walltime warning) stop the run cleanly:
        generation stops, what is done is committed, in-flight items stay pending for
        ``--resume``. A second signal exits at once - the ledger is consistent at every
        commit, so nothing committed is lost."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, _frame: object) -> None:
            if self.stop_signal is not None:
                os._exit(128 + signum)
            self.stop_signal = signum

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop as a signal would (for embedding programs and tests)."""
        self.stop_signal = signum

    def _wait_for_work(self, timeout_s: float) -> None:
        """Block until a ground-truth result or the training thread finishes (no spinning: a
        busy loop would hold the GIL the training thread needs)."""
        if self.dispatcher.busy():
            self.dispatcher.submit()
            self._collect(timeout_s=timeout_s)
        elif self.trainer.fitting:
            self.trainer.join(timeout=timeout_s)
        if self.cfg.deterministic and not self.dispatcher.pending and self._held:
            self._fold_all()  # every batch so far is final: a deterministic point

    def _fold_all(self) -> None:
        """Fold every held result, in submission order."""
        ready = sorted(self._held)
        self._fold([self._held.pop(key) for key in ready])

    def _waiting_for_first_model(self) -> bool:
        """Hold generation until the first surrogate exists: every candidate made before it
        goes to the ground truth, so make just the ``min_train_labels`` the first fit needs,
        then wait for the fit - seconds to minutes in which the ground truth would otherwise
        label, expensively, items the model will soon decide for free."""
        if not self._first_fit_pending():
            return False
        if self.trainer.fitting:
            return True
        return self._first_fit_quota() <= 0 and self._unfolded() > 0

    def _first_fit_pending(self) -> bool:
        """Before the first surrogate: hold to the first-fit quota (not after a failed fit,
        which must not stall the run; it goes on as ground truth only until a refit works)."""
        return (
            self.cfg.pause_for_first_fit
            and self.cfg.surrogate
            and not self.book.slots
            and not self.trainer.failures
        )

    def _first_fit_quota(self) -> int:
        """Candidates still to make for the first fit (labels + those in flight count)."""
        return self.cfg.min_train_labels - len(self.trainer.labels) - self._unfolded()

    def _stop_reason(self) -> str:
        if self.stop_signal is not None:
            return f"interrupted by {signal.Signals(self.stop_signal).name}"
        budget = self.cfg.budget
        elapsed = time.monotonic() - self._started
        if budget.walltime_s is not None and elapsed >= budget.walltime_s:
            return f"wall time {budget.walltime_s:g} s reached"
        if budget.max_candidates is not None and self.stats.generated >= budget.max_candidates:
            return f"{budget.max_candidates} candidates generated"
        if (
            budget.max_ground_truth_calls is not None
            and self.stats.gt_calls + len(self.dispatcher.queue) >= budget.max_ground_truth_calls
        ):
            return f"{budget.max_ground_truth_calls} ground-truth calls used"
        if budget.target_accepted is not None and self.stats.accepted >= budget.target_accepted:
            return f"{budget.target_accepted} examples accepted"
        return ""

    def _drain(self) -> None:
        deadline = None
        if self.cfg.budget.walltime_s is not None:
            deadline = time.monotonic() + max(self.verifier.resources.timeout_s * 2, 30.0)
        pending = self.dispatcher.pending
        while True:
            self._checkpoint()
            if self.stop_signal is not None:
                self.stats.stop_reason = self._stop_reason()
                break
            if not pending:  # held results and ladder items may still create work
                if self._held:
                    self._fold_all()
                    continue
                if self._ready:
                    self._route_ready()
                    continue
                break
            self.dispatcher.submit()
            self._collect(timeout_s=0.2)
            self._absorb_training()
            self._report()
            if deadline is not None and time.monotonic() > deadline:
                self.ledger.event("warning", "drain", f"{len(pending)} items left pending at stop")
                break
        self.trainer.join()
        self._absorb_training()

    def _finish(self, failed: BaseException | None = None) -> None:
        self.stats.elapsed_s = time.monotonic() - self._started
        self.stats.pending = len(self.dispatcher.pending)
        if failed is not None:
            state = "failed"
            self.stats.stop_reason = f"{type(failed).__name__}: {failed}"
        elif self.stop_signal is not None:
            state = "interrupted"
        else:
            state = "finished"
        with contextlib.suppress(Exception):
            self.ledger.set_meta("state", state)
            self.ledger.set_meta("stop_reason", self.stats.stop_reason)
            self.ledger.set_meta("finished_at", time.time())
            self.ledger.set_meta("stats", self.stats.as_dict())
            self.monitor.flush(self.stats.generated)
            self._checkpoint(force=True)
        try:
            if self.checker is not None:
                self.checker.close()
            if self._owns_executor:
                self.executor.close()
        finally:
            self.ledger.close()  # commits what is pending, whatever happened above
        self._report(final=True)

    def _report(self, final: bool = False) -> None:
        self.stats.elapsed_s = time.monotonic() - self._started
        self.stats.pending = len(self.dispatcher.pending)
        if self.progress is not None:
            self.progress(self.stats)

    # -- producing and routing ----------------------------------------------------------------
    def _produce_batch(self) -> bool:
        if self.cfg.deterministic:
            self._fold_due()
        n = self.cfg.batch_size
        if self._first_fit_pending():
            n = min(n, max(self._first_fit_quota(), 1))
        if self.cfg.budget.max_candidates is not None:
            n = min(n, self.cfg.budget.max_candidates - self.stats.generated)
        if self.generations is not None:
            n = min(n, self.generations.remaining())
        generation = self.generations.generation if self.generations is not None else 0
        started = time.perf_counter()
        batch = self.intake.produce(n)
        self.compute.add(generation, "generate_s", time.perf_counter() - started)
        if batch is None:
            return False
        now = time.time()
        decisions = {"invalid": len(batch.invalid)} if batch.invalid else {}
        if batch.invalid:
            self.stats.invalid += len(batch.invalid)
            self.rows.insert_invalid(
                batch.invalid, self.intake.generator_hash, now, self.intake.batches
            )
        draws = batch_rng(self.cfg.seed, AUDIT_STREAM, self.intake.batches).random(
            len(batch.fresh.candidates)
        )
        if batch.fresh.candidates and len(self.verifiers) > 1:
            self._enter_ladder(batch.fresh, draws)
        elif batch.fresh.candidates:
            decisions.update(self._screen_and_route(batch.fresh, draws, now))
            self.monitor.observe(decisions, batch.fresh.candidates)
        elif decisions:
            self.monitor.observe(decisions, [])
        return True

    # -- the fidelity ladder ------------------------------------------------------------------
    def _enter_ladder(self, fresh: Fresh, draws: np.ndarray) -> None:
        """Send a batch to the cheapest tier; it is scored once every cheaper tier has run.
        The audit draw is made now, in submission order, whatever the tiers' timing, and kept
        in the item's placeholder row (a resumed run routes it with the same draw)."""
        regime = self.intake.generator_hash
        slices = self._slices(fresh.candidates)
        batch = self.intake.batches
        self.rows.insert(
            len(fresh.seqs),
            {
                "seq": fresh.seqs,
                "payload": fresh.texts,
                **provenance_columns(fresh.candidates),
                "slice": slices.tolist(),
                "rule_ok": 1,
                "audit": 0,
                "audit_draw": draws.tolist(),
                "route": LADDER_ROUTE,
                "decision": "pending",
                "batch": batch,
            },
            regime,
            time.time(),
        )
        for i, (seq, cand, text) in enumerate(
            zip(fresh.seqs, fresh.candidates, fresh.texts, strict=True)
        ):
            item = PendingItem(
                cand, False, LADDER_ROUTE, [], regime=regime, slice=slices[i], batch=batch,
                tier=0, text=text, audit_draw=float(draws[i]),
            )  # fmt: skip
            self.dispatcher.add(seq, item)

    def _climb(self, seq: int, item: PendingItem, result: GTResult) -> None:
        """A cheaper tier's result: record it, hand it to the item as evidence, and send the
        item up to the next cheaper tier, or - after the last - on to scoring."""
        fidelity = self.verifiers[item.tier].fidelity or "ground-truth"
        self._verifications.append(verification_row(seq, fidelity, result, time.time()))
        self.compute.add_tier(item.candidate.generation, fidelity, result.walltime_s)
        if result.verdict is not None:
            item.candidate.evidence[fidelity] = result.verdict
        item.tier += 1
        item.attempts = 0
        if item.tier < len(self.verifiers) - 1:
            self.dispatcher.add(seq, item)
        else:
            self._ready[seq] = item

    def _route_ready(self) -> None:
        """Score and route, in submission order, the items whose cheaper tiers are done."""
        if not self._ready:
            return
        seqs = sorted(self._ready)
        items = [self._ready.pop(seq) for seq in seqs]
        by_regime: dict[str, list[tuple[int, PendingItem]]] = {}
        for seq, item in zip(seqs, items, strict=True):
            by_regime.setdefault(item.regime, []).append((seq, item))
        now = time.time()
        for regime, group in by_regime.items():
            fresh = Fresh(
                [seq for seq, _ in group],
                [item.candidate for _, item in group],
                [item.text for _, item in group],
            )
            draws = np.array([item.audit_draw for _, item in group])
            decisions = self._screen_and_route(
                fresh, draws, now, regime=regime, batches=[item.batch for _, item in group]
            )
            self.monitor.observe(decisions, fresh.candidates)

    def _screen_and_route(
        self,
        fresh: Fresh,
        draws: np.ndarray,
        now: float,
        regime: str | None = None,
        batches: list[int] | None = None,
    ) -> dict[str, int]:
        """Score, route and record a batch of rule-valid candidates; returns decision counts.
        ``batches``: each item's intake batch, for a ladder's items (their placeholder rows
        are replaced); default the batch just produced.

        Vectorised over the batch: per-item Python objects are made only for the items that
        go to the ground truth.
        """
        cands = fresh.candidates
        n = len(cands)
        regime = self.intake.generator_hash if regime is None else regime
        slices = self._slices(cands)
        started = time.perf_counter()
        scored = self.book.score(cands)
        self.compute.add(
            cands[0].generation if cands else 0, "surrogate_s", time.perf_counter() - started
        )
        opinions = [s for s in scored.values() if s is not None]
        champ_scores = scored.get(self.book.champion) if self.book.champion is not None else None
        shown = champ_scores if champ_scores is not None else (opinions[-1] if opinions else None)
        thresholds = self.book.thresholds(regime, slices) if champ_scores is not None else None
        routes = route_batch(
            draws,
            self._audit_rate,
            thresholds,
            champ_scores.accept_risk if champ_scores is not None else None,
            champ_scores.reject_risk
            if champ_scores is not None and self.domain.has_pass_fail
            else None,
            has_surrogate=bool(scored),
            scored=bool(opinions),
            uncertified_audit_rate=(
                self._audit_rate if self._audit_rate == 0 else self.cfg.uncertified_audit_rate
            ),
            uncertain_share=self.cfg.uncertain_share,
            relaxed_audit_rate=self.cfg.relaxed_audit_rate if self._audit_rate else None,
        )
        columns = routed_columns(
            fresh.seqs, fresh.texts, cands, slices, routes, shown, thresholds, now
        )
        to_truth = routes.to_truth
        decision = routes.decision
        counts = {"pending": int(np.count_nonzero(to_truth))}
        for kind in ("accepted", "rejected", "deferred"):
            k = int(np.count_nonzero(decision == kind))
            if k:
                counts[kind] = k
        self.stats.accepted += counts.get("accepted", 0)
        self.stats.surrogate_accepted += counts.get("accepted", 0)
        self.stats.rejected += counts.get("rejected", 0)
        self.stats.surrogate_rejected += counts.get("rejected", 0)
        self.stats.deferred += counts.get("deferred", 0)
        columns["batch"] = batches if batches is not None else self.intake.batches
        self.rows.insert(n, columns, regime, now, replace=batches is not None)
        audited = np.flatnonzero(routes.audit & to_truth).tolist()
        if opinions and audited:
            self.book.register_audits(
                regime,
                [fresh.seqs[i] for i in audited],
                [slices[i] for i in audited],
                [[s.item(i) for s in opinions] for i in audited],
            )
        for i in np.flatnonzero(to_truth).tolist():
            item_scores = [s.item(i) for s in opinions]
            batch = batches[i] if batches is not None else self.intake.batches
            item = PendingItem(
                cands[i], bool(routes.audit[i]), routes.route[i], item_scores,
                regime=regime, slice=slices[i], batch=batch, tier=len(self.verifiers) - 1,
            )  # fmt: skip
            self.dispatcher.add(fresh.seqs[i], item)
        return counts

    def _slices(self, cands: list[Candidate]) -> np.ndarray:
        """Each candidate's slice; a ``slice_of`` that raises or returns a non-string puts the
        candidate in a slice of its own that is never certified."""
        out = np.full(len(cands), "all", dtype=object)
        if type(self.domain).slice_of is Domain.slice_of:
            return out
        for i, cand in enumerate(cands):
            try:
                name = self.domain.slice_of(cand)
            except Exception as exc:
                name = f"?{type(exc).__name__}"
            if not isinstance(name, str) or not name:
                name = "?invalid"
            out[i] = name
        return out

    # -- ground truth -----------------------------------------------------------------------------
    def _collect(self, timeout_s: float) -> None:
        """Take in finished ground truth: folded at once, or - in a deterministic run - held
        until the batch boundary at which it is due."""
        if self.stop_signal is not None:
            return  # in-flight items stay pending: a resume sends them again
        outcomes = self.dispatcher.collect(timeout_s)
        if not outcomes:
            return
        settled = self.dispatcher.settle(outcomes)
        if self.cfg.deterministic:
            for item, result in settled:
                self._held[result.key] = (item, result)
            return
        self._fold(list(settled))

    def _fold(self, settled: list[tuple[PendingItem, GTResult]]) -> None:
        """Labels, audits and row updates of final results; then looks and training."""
        top = len(self.verifiers) - 1
        updates = []
        for item, result in settled:
            if item.tier < top:
                self._climb(result.key, item, result)
            else:
                updates.append(self._land(item, result))
        self.ledger.update_ground_truth(updates)
        if self._verifications:
            self.ledger.add_verifications(self._verifications)
            self._verifications = []
        self._after_fold()

    def _after_fold(self) -> None:
        """What folding results in may set off: looks, a fit, routing of ladder items. Also
        run once when a resumed run starts, where a kill may have cut it off (a fit's start
        is committed before the fit, so it is started again on the same labels)."""
        self.book.maybe_calibrate()
        started = self.trainer.maybe_start(
            self.book.challenger_slot,
            evaluated=self.book.challenger_evaluated(),
            before_fit=lambda: self._checkpoint(force=True),
        )
        if started and self.trainer.sync:
            self._absorb_training()
        self._route_ready()

    def _fold_due(self) -> None:
        """Deterministic runs, before each batch: wait until every ground-truth item of the
        batches ``deterministic_lag_batches`` back is final, then fold exactly those, in
        submission order. What the loop decides then depends on the seed, the config and the
        ground truth's answers - not on when the answers arrived."""
        due = self.intake.batches + 1 - self.cfg.deterministic_lag_batches
        pending = self.dispatcher.pending
        while any(item.batch <= due for item in pending.values()):
            if self.stop_signal is not None:
                return
            self.dispatcher.submit()
            self._collect(timeout_s=0.2)
            self._checkpoint()
        ready = sorted(key for key, (item, _) in self._held.items() if item.batch <= due)
        if ready:
            self._fold([self._held.pop(key) for key in ready])

    def _unfolded(self) -> int:
        """Ground-truth items not yet folded in: in flight, queued, held or between tiers."""
        return len(self.dispatcher.pending) + len(self._held) + len(self._ready)

    def _land(self, item: PendingItem, result: GTResult) -> GroundTruthUpdate:
        """Fold one final ground-truth result in: a label, maybe an audit, and its row update."""
        now = time.time()
        if len(self.verifiers) > 1:
            fidelity = self.verifier.fidelity or "ground-truth"
            self._verifications.append(verification_row(result.key, fidelity, result, now))
        self.compute.add_tier(
            item.candidate.generation, self.verifier.fidelity or "ground-truth", result.walltime_s
        )
        verdict = result.verdict
        if verdict is not None:
            self.trainer.labels.append((item.candidate, verdict))
            if verdict.passed:
                self.stats.accepted += 1
            else:
                self.stats.rejected += 1
        else:
            self.stats.failed += 1
        if item.audit:
            self.stats.audits += 1
            self.book.resolve_audit(result.key, item.regime, item.slice, verdict)
        return ground_truth_update(item, result, now)

    # -- generations ------------------------------------------------------------------------------
    def _at_generation_end(self) -> bool:
        """Whether the current generation is made (and the next must wait for its verdicts)."""
        return self.generations is not None and self.generations.remaining() <= 0

    def _generation_decided(self) -> bool:
        """Every item made so far is final: nothing in flight, held or between tiers."""
        if self.cfg.deterministic and self._held and not self.dispatcher.pending:
            self._fold_all()
        return not (self.dispatcher.pending or self._held or self._ready or self.trainer.fitting)

    def _close_generation(self) -> None:
        """Measure the generation, apply the policy's actions, start the next one."""
        assert self.generations is not None
        self._absorb_training()
        events, steering = self.generations.close(self._read_properties, self.intake.steering)
        for level, kind, message in events:
            self.ledger.event(level, kind, message)
        if steering:
            self.intake.set_steering({**self.intake.steering, **steering})
        self.intake.new_regime()
        self._checkpoint(force=True)

    def _read_properties(self, cands: list[Candidate]) -> dict[str, np.ndarray]:
        """The champion's predicted property values (pass/fail domains: ``p_pass``), for the
        property-distribution monitors: one model judges the generation and the reservoir."""
        champ = self.book.champion
        if champ is None or not cands:
            return {}
        scores = self.book.score(cands).get(champ)
        if scores is None:
            return {}
        out = {name: np.asarray(v, float) for name, v in scores.values.items()}
        if scores.p_pass is not None:
            out["p_pass"] = np.asarray(scores.p_pass, float)
        return {k: v for k, v in out.items() if np.all(np.isfinite(v))}

    # -- surrogate versions -----------------------------------------------------------------------
    def _absorb_training(self) -> None:
        trained = self.trainer.take()
        if trained is not None:
            self._install(trained)

    def _install(self, trained: Trained) -> int:
        """Make a trained model the book's newest version (the challenger) and save it."""
        generation = self.generations.generation if self.generations is not None else 0
        self.compute.add(generation, "training_s", trained.fit_s)
        slot = self.book.add_version(trained.model, trained.n_labels, trained.fit_s)
        self.stats.surrogate_versions = slot.version
        self.trainer.save(slot.version, trained.model)  # the file first, then the commit
        self._checkpoint(force=True)
        return slot.version

    def _show_certificate(self, slot: SurrogateSlot) -> None:
        """Display the certificates now in force (the book calls this when they change): the
        champion, how many strata it may decide in, the largest Clopper-Pearson estimate."""
        self.stats.champion = slot.version
        certs = [
            s.certificate
            for s in slot.strata.values()
            if s.certificate is not None and s.certificate.accept.certified
        ]
        self.stats.certified_strata = len(certs)
        if slot.fixed is not None:
            self.stats.accept_threshold = slot.fixed.accept.threshold
            self.stats.bound = None
        elif certs:
            self.stats.accept_threshold = max(c.accept.threshold for c in certs)
            self.stats.bound = max(c.accept.upper_bound for c in certs)
        else:
            self.stats.accept_threshold = None
            self.stats.bound = None
