"""Math domain: theorem statements with tactic proofs, verified by a proof checker.

Candidates are generated theorems over Nat, Int, lists and propositional logic - rendered to
Coq or Lean 4 from one IR, true or mutated into plausibly false ones, each with a tactic
script from a template (``generator.py``) - or a user's records ``{"backend", "statement",
"proof", "imports", "name"}`` (``records.py``). The rule layer (``rules.py``) checks sizes,
that a Coq statement is one term and a script splits into sentences, and refuses file,
process and soundness commands, in a guarded child. The ground truth (``ground_truth.py``) is
the record's prover: a warm Coq (``coqidetop``) here, Lean 4 on clusters; it writes the
theorem around the statement, and accepts only what the prover itself reports as proved and
resting on allowed axioms. The surrogate is a proof-success classifier on the text
(``surrogate.py``). Slices are the theorem groups and, for records, ``coq`` / ``lean4``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    Knob,
    Surrogate,
    canonical_json,
    example_id,
)
from foundry.schema import PayloadValidator

from .features import math_features
from .generator import GROUPS, STEERING_DEFAULTS, MathGenerator, reference_theorems
from .ground_truth import ProofGroundTruth
from .options import MathOptions
from .records import BACKENDS, PAYLOAD_SCHEMA, identity_key
from .reservoir import reservoir_candidates
from .rules import rule_problem
from .surrogate import proof_surrogate

__all__ = ["MathDomain", "MathOptions", "ProofGroundTruth"]

_VALIDATOR = PayloadValidator(PAYLOAD_SCHEMA)
#: seed of the reference theorems (the parents every generated theorem names)
_REFERENCE_SEED = 20261203


class MathDomain(Domain):
    """Theorems and tactic proofs; pass/fail by a proof checker."""

    name: ClassVar[str] = "math"
    version: ClassVar[str] = "0.1.0"
    payload_schema: ClassVar[dict[str, Any]] = PAYLOAD_SCHEMA
    has_pass_fail: ClassVar[bool] = True
    fidelities: ClassVar[tuple[str, ...]] = ("proof-checker",)
    steering_defaults: ClassVar[dict[str, float]] = dict(STEERING_DEFAULTS)
    #: the target difficulty 1..5 of the generator's families (a curriculum's lever)
    difficulty_knob: ClassVar[Knob | None] = Knob("difficulty", 1.0, 5.0, 1.0)
    Options: ClassVar[type | None] = MathOptions
    slices: ClassVar[tuple[str, ...] | None] = (*GROUPS, *BACKENDS)
    untrusted_check: ClassVar[bool] = True

    def __init__(self, options: MathOptions | None = None) -> None:
        super().__init__(options)
        self._generator: MathGenerator | None = None
        self._parent_ids: dict[str, str] | None = None

    # -- generation -----------------------------------------------------------------------
    def _references(self) -> dict[str, str]:
        """Reference key -> example id of the family's reference theorem (the parents)."""
        if self._parent_ids is None:
            rng = np.random.default_rng(_REFERENCE_SEED)
            self._parent_ids = {
                t.parent_key: self._example_id(t.payload)
                for t in reference_theorems(self.options.backend, rng)
            }
        return self._parent_ids

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        if self._generator is None:
            self._generator = MathGenerator(self.options.backend)
        parents = self._references()
        return [
            Candidate(
                payload=t.payload,
                parent_ids=(parents[t.parent_key],) if t.parent_key in parents else (),
            )
            for t in self._generator.children(n, rng, steering)
        ]

    # -- rules and identity -----------------------------------------------------------------
    def check(self, candidate: Candidate) -> str | None:
        problem = _VALIDATOR(candidate.payload)
        if problem is not None:
            return problem
        return rule_problem(candidate.payload, self.options)

    def identity(self, payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return identity_key(payload)

    def slice_of(self, candidate: Candidate) -> str:
        group = candidate.payload.get("group")
        if isinstance(group, str) and group in GROUPS:
            return group
        backend = candidate.payload.get("backend")
        return backend if backend in BACKENDS else "coq"

    # -- learning -----------------------------------------------------------------------------
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return math_features(candidates)

    def surrogate(self) -> Surrogate:
        return proof_surrogate(n_members=self.options.surrogate_members)

    # -- verification -------------------------------------------------------------------------
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        if fidelity not in (None, *self.fidelities):
            raise ValueError(f"unknown fidelity {fidelity!r}; have {self.fidelities}")
        return ProofGroundTruth(self.options)

    def reservoir(self) -> list[Candidate]:
        real = reservoir_candidates()
        for cand in real:
            cand.id = self._example_id(cand.payload)
        return real

    def _example_id(self, payload: dict[str, Any]) -> str:
        return example_id(self.name, payload, canonical_json(payload), self.identity)
