"""Code domain: Python programming tasks verified by running their tests in a sandbox.

Candidates are HumanEval-style records from task families with reference tests, correct
solutions and plausible wrong ones made by mutation (``generator.py``), or a user's HumanEval-
or MBPP-style records (``tasks.py``). The rule layer (``rules.py``) parses, bounds sizes and
applies the import policy, in a guarded child. The ground truth (``ground_truth.py``) runs the
tests against the program in the Python sandbox: the program in its own namespaces, the tests
in a judge it cannot reach; the verdict is the judge's. The surrogate is a pass/fail classifier
that remembers each program's labels over a token n-gram and AST-feature classifier
(``surrogate.py``). Slices are the task-family groups
(arithmetic, strings, lists, dicts) and, for user records, their format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    Surrogate,
    canonical_json,
    example_id,
)
from foundry.schema import PayloadValidator

from .families import GROUPS, family_by_name
from .features import code_features
from .generator import STEERING_DEFAULTS, CodeGenerator, reference_tasks
from .ground_truth import SandboxGroundTruth
from .options import CodeOptions
from .reservoir import reservoir_candidates
from .rules import rule_problem
from .surrogate import ProgramMemorySurrogate
from .tasks import PAYLOAD_SCHEMA, identity_key, style_of

__all__ = ["CodeDomain", "CodeOptions", "SandboxGroundTruth"]

_VALIDATOR = PayloadValidator(PAYLOAD_SCHEMA)
#: seed of the reference solutions' own tests (the parents every generated task names)
_REFERENCE_SEED = 20261203


class CodeDomain(Domain):
    """Programs and tests; pass/fail by sandboxed execution."""

    name: ClassVar[str] = "code"
    version: ClassVar[str] = "0.1.0"
    payload_schema: ClassVar[dict[str, Any]] = PAYLOAD_SCHEMA
    has_pass_fail: ClassVar[bool] = True
    fidelities: ClassVar[tuple[str, ...]] = ("sandbox",)
    steering_defaults: ClassVar[dict[str, float]] = dict(STEERING_DEFAULTS)
    Options: ClassVar[type | None] = CodeOptions
    slices: ClassVar[tuple[str, ...] | None] = (*GROUPS, "humaneval", "mbpp")
    untrusted_check: ClassVar[bool] = True

    def __init__(self, options: CodeOptions | None = None) -> None:
        super().__init__(options)
        self._generator: CodeGenerator | None = None
        self._parent_ids: dict[str, str] | None = None

    # -- generation -----------------------------------------------------------------------
    def _references(self) -> dict[str, str]:
        """Reference key -> example id of the unmutated reference task (the parents)."""
        if self._parent_ids is None:
            rng = np.random.default_rng(_REFERENCE_SEED)
            self._parent_ids = {
                task.parent_key: self._example_id(task.payload) for task in reference_tasks(rng)
            }
        return self._parent_ids

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        if self._generator is None:
            self._generator = CodeGenerator()
        parents = self._references()
        return [
            Candidate(
                payload=task.payload,
                parent_ids=(parents[task.parent_key],) if task.parent_key in parents else (),
            )
            for task in self._generator.children(n, rng, steering)
        ]

    # -- rules and identity -----------------------------------------------------------------
    def check(self, candidate: Candidate) -> str | None:
        payload = candidate.payload
        problem = _VALIDATOR(payload)
        if problem is not None:
            return problem
        return rule_problem(payload, self.options)

    def identity(self, payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return identity_key(payload)

    def slice_of(self, candidate: Candidate) -> str:
        payload = candidate.payload
        family = payload.get("family")
        if isinstance(family, str):
            try:
                return family_by_name(family).group
            except KeyError:
                pass
        return style_of(payload) or "humaneval"

    # -- learning -----------------------------------------------------------------------------
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return code_features(candidates)

    def surrogate(self) -> Surrogate:
        opts: CodeOptions = self.options
        return ProgramMemorySurrogate(n_members=opts.surrogate_members)

    # -- verification -------------------------------------------------------------------------
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        if fidelity not in (None, *self.fidelities):
            raise ValueError(f"unknown fidelity {fidelity!r}; have {self.fidelities}")
        return SandboxGroundTruth(self.options)

    def reservoir(self) -> list[Candidate]:
        real = reservoir_candidates()
        for cand in real:
            cand.id = self._example_id(cand.payload)
        return real

    def _example_id(self, payload: dict[str, Any]) -> str:
        return example_id(self.name, payload, canonical_json(payload), self.identity)
