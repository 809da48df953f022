"""Producing a batch: generate (or read), canonicalise, deduplicate, check.

Everything that can be decided about a candidate without a model happens here, so that the
scorer and router only ever see fresh, rule-valid candidates with a ledger seq number each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from foundry.contract import (
    SOURCES,
    Candidate,
    Domain,
    PluginError,
    SetupError,
    canonical_json,
    content_id_of_text,
    example_id,
)
from foundry.execution.runner import rule_check
from foundry.execution.screening import GuardedChecker
from foundry.ledger import Ledger
from foundry.loop.generations import Generations
from foundry.loop.rows import InvalidRow
from foundry.loop.stats import RunStats, SteeringPolicy
from foundry.schema import PayloadValidator

#: payload key of an input line that could not be read (kept in the ledger as invalid)
INVALID_INPUT = "__invalid_input__"
#: streams of random numbers a run draws, one generator per (stream, batch number)
GENERATOR_STREAM = 0
AUDIT_STREAM = 1


def batch_rng(seed: int, stream: int, batch: int) -> np.random.Generator:
    """The random numbers of one batch: a function of (seed, stream, batch number) only, so a
    resumed run draws exactly what the uninterrupted run would have, with no RNG state to
    save."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, batch)))


@dataclass
class Fresh:
    """The rule-valid candidates of a batch, with their ledger seq numbers and payload text."""

    seqs: list[int] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """One batch after intake: what goes on to scoring, and what is recorded as invalid."""

    fresh: Fresh
    invalid: list[InvalidRow]


@dataclass(frozen=True)
class IntakeParams:
    seed: int
    #: consecutive generator failures tolerated before the run stops
    generate_retries: int


class Intake:
    """The candidate source (the domain's generator, or an external stream) and its checks."""

    def __init__(
        self,
        domain: Domain,
        params: IntakeParams,
        ledger: Ledger,
        stats: RunStats,
        *,
        steering: Mapping[str, float],
        external: Iterator[list[Candidate]] | None = None,
        stream_id: str | None = None,
        steering_policy: SteeringPolicy | None = None,
        checker: GuardedChecker | None = None,
        generations: Generations | None = None,
    ) -> None:
        self.domain = domain
        self.params = params
        self.ledger = ledger
        self.stats = stats
        self.steering: dict[str, float] = {}
        #: the closed loop's generations (None: every batch from the generator's prior)
        self.generations = generations
        #: every regime this run generated in: its steering and generation (for lineage)
        self.regimes: dict[str, dict] = {}
        self.external = external
        self.seq = ledger.next_seq()
        self.set_steering(steering)
        #: the regime of an external stream: one input, one regime
        self.stream_id = stream_id
        self.steering_policy = steering_policy
        #: runs the domain's rule check outside this interpreter (untrusted domains)
        self.checker = checker
        #: batches produced so far
        self.batches = 0
        self.seen: set[str] = set()
        self._schema = PayloadValidator(domain.payload_schema)
        self._generator_hash = self._generator_config_hash()

    @property
    def generator_hash(self) -> str:
        """The regime the rows were generated in (generator config incl. steering)."""
        if self.external is None:
            return self._generator_hash
        return f"input:{self.stream_id}" if self.stream_id else "external"

    def _generator_config_hash(self) -> str:
        config: dict = {
            "domain": self.domain.name,
            "version": self.domain.version,
            "steering": self.steering,
            "seed": self.params.seed,
        }
        if self.generations is not None:
            config["generation"] = self.generations.context()
        blob = canonical_json(config)
        regime = hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()
        if self.external is None and regime not in self.regimes:
            self.regimes[regime] = {
                "steering": dict(self.steering),
                "generation": config.get("generation", {}).get("generation", 0),
                "first_seq": self.seq,
                **({"loop": config["generation"]} if "generation" in config else {}),
            }
            self.ledger.set_meta("regimes", self.regimes)
        return regime

    def new_regime(self) -> None:
        """The generator's configuration changed outside the steering (a new generation)."""
        self._generator_hash = self._generator_config_hash()

    def produce(self, n: int) -> Batch | None:
        """Up to ``n`` new candidates split into fresh rule-valid ones and invalid rows; None
        when the source is exhausted. Duplicates of anything seen in this run are dropped."""
        batch = self._next_candidates(n, self.batches + 1)
        if batch is None:
            return None
        self.batches += 1
        self.stats.generated += len(batch)
        invalid: list[InvalidRow] = []
        # seq numbers in generation order; the rule check of untrusted domains comes after
        checked: list[tuple[int, Candidate, str]] = []
        domain_name, seen = self.domain.name, self.seen
        # a domain keeping the default identity (its payload's JSON) costs no call per item
        identity = None if type(self.domain).identity is Domain.identity else self.domain.identity
        for cand in batch:
            try:
                text = canonical_json(cand.payload)
            except (TypeError, ValueError) as exc:
                invalid.append(
                    InvalidRow(self._next_seq(), cand, "{}", f"payload is not JSON: {exc}")
                )
                continue
            if not cand.id:
                cand.id = example_id(domain_name, cand.payload, text, identity)
            if cand.id in seen:
                self.stats.duplicates += 1
                continue
            seen.add(cand.id)
            reason = self._check_provenance_and_schema(cand)
            if reason is None and self.checker is None:
                reason = self._rule_check(cand)
            if reason is not None:
                invalid.append(InvalidRow(self._next_seq(), cand, text, reason))
                continue
            checked.append((self._next_seq(), cand, text))
        if self.checker is not None and checked:
            reasons = self.checker.check_many([cand for _, cand, _ in checked])
        else:
            reasons = [None] * len(checked)
        fresh = Fresh()
        for (seq, cand, text), reason in zip(checked, reasons, strict=True):
            if reason is not None:
                invalid.append(InvalidRow(seq, cand, text, reason))
                continue
            fresh.seqs.append(seq)
            fresh.candidates.append(cand)
            fresh.texts.append(text)
        for row in invalid:
            row.candidate.id = row.candidate.id or content_id_of_text(domain_name, row.text)
        return Batch(fresh, invalid)

    def set_steering(self, steering: Mapping[str, float]) -> None:
        """New steering values (a policy's, or a resumed run's): a new regime."""
        unknown = sorted(set(steering) - set(self.domain.steering_defaults))
        if unknown:
            known = sorted(self.domain.steering_defaults) or "none"
            raise ValueError(f"unknown steering knobs {unknown}; {self.domain.name} has {known}")
        self.steering = {k: float(v) for k, v in steering.items()}
        self._generator_hash = self._generator_config_hash()

    def _next_candidates(self, n: int, number: int) -> list[Candidate] | None:
        if self.external is not None:
            return next(self.external, None)
        if self.steering_policy is not None:
            self.set_steering(self.steering_policy(self.stats, self.steering))
        try:
            rng = batch_rng(self.params.seed, GENERATOR_STREAM, number)
            if self.generations is not None:
                before = self.generations.context()
                batch = self.generations.candidates(n, rng, self.steering)
                if self.generations.context() != before:  # the reservoir's batch, or after it
                    self.new_regime()
            else:
                batch = self.domain.generate(n, rng, self.steering)
            if not isinstance(batch, list) or not all(isinstance(c, Candidate) for c in batch):
                raise PluginError("generate() must return a list of Candidate")
        except SetupError:
            raise
        except Exception as exc:
            self.stats.generator_failures += 1
            self.ledger.event("error", "generate", f"{type(exc).__name__}: {exc}")
            if self.stats.generator_failures > self.params.generate_retries:
                raise PluginError(
                    f"generator failed {self.stats.generator_failures} times in a row; last: {exc}"
                ) from exc
            return []
        self.stats.generator_failures = 0
        return batch

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def _check_provenance_and_schema(self, cand: Candidate) -> str | None:
        """Why a candidate's provenance or payload shape is invalid, or None."""
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
        return self._schema(cand.payload)

    def _rule_check(self, cand: Candidate) -> str | None:
        """The domain's rules, in this interpreter (trusted domains)."""
        return rule_check(self.domain, cand)
