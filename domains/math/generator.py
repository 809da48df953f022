"""Candidates of the math domain: a theorem statement and a tactic proof, right or plausibly wrong.

A *family* is one kind of true statement (commutativity of a sum, ``rev (rev l) = l``, de Morgan
on booleans, ...) built from random parameters (which variables, which constants, how many
terms) scaled by a difficulty 1..5, with tactic templates that should prove it and templates
that plausibly do not. A candidate is one family's statement, possibly *mutated* by a small
structural edit that usually makes it false (an off-by-one constant, a flipped comparison,
swapped operands of a non-commutative operator, a dropped hypothesis, a wrong list or arithmetic
operator), and one tactic script: a correct template, or with ``wrong_proof_fraction`` a wrong
one. Candidates are not labelled: the prover (the ground truth) decides, and some mutants stay
true; :func:`foundry.domains.math.ir.counterexample` says which are plausibly so.

Statements are built in the IR of :mod:`foundry.domains.math.ir` and rendered to Coq or Lean 4.
A Coq proof is the tactic script only (the checker writes ``Theorem <name> : <statement>.``,
``Proof.`` and ``Qed.`` around it) and ends with a period; every Coq candidate imports
:data:`COQ_IMPORTS`; Lean candidates use core only.

Keys: a family's reference statement (the domain's parent) is ``gen/<family>/ref`` and every
child of that family names it as its ``parent_key``.

Steering knobs (``STEERING_DEFAULTS``):

* ``difficulty`` - target difficulty 1..5: (family, difficulty) pairs get weight
  ``exp(-|d - target|)``; 0 means any difficulty (uniform within each family);
* ``false_fraction`` - share of statements that are mutated;
* ``wrong_proof_fraction`` - share of proofs drawn from the wrong templates;
* ``group_<name>`` - relative weight of each group of families.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .families import (
    BACKENDS,
    COQ_IMPORTS,
    FAMILIES,
    GROUPS,
    LEAN_IMPORTS,
    TACTICS,
    Built,
    Family,
    Tactic,
    family_by_name,
    render_proof,
    render_statement,
)
from .ir import (
    Theorem,
)
from .ir_json import theorem_to_json
from .mutations import MUTATION_KINDS, mutate, mutation_sites

__all__ = [
    "BACKENDS",
    "COQ_IMPORTS",
    "FAMILIES",
    "GROUPS",
    "LEAN_IMPORTS",
    "MUTATION_KINDS",
    "STEERING_DEFAULTS",
    "TACTICS",
    "Built",
    "Family",
    "GeneratedTheorem",
    "MathGenerator",
    "Tactic",
    "family_by_name",
    "mutate",
    "mutation_sites",
    "reference_key",
    "reference_theorems",
    "render_proof",
    "render_statement",
]

STEERING_DEFAULTS: dict[str, float] = {
    "difficulty": 0.0,
    "false_fraction": 0.3,
    "wrong_proof_fraction": 0.15,
    **{f"group_{group}": 1.0 for group in GROUPS},
}


# -- the generator ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratedTheorem:
    """A payload and the key of its family's reference statement (a reference names itself).

    ``theorem`` is the statement's IR, kept so that tests and analyses can compute its
    brute-force truth (:func:`foundry.domains.math.ir.counterexample`); it is not part of the
    payload, and the generator never labels a candidate with it.
    """

    payload: dict[str, Any]
    parent_key: str
    theorem: Theorem | None = field(default=None, compare=False, repr=False)


def reference_key(family: str) -> str:
    return f"gen/{family}/ref"


def _payload(
    backend: str,
    family: Family,
    thm: Theorem,
    difficulty: int,
    tactic: str,
    proof: str,
    mutation: str,
) -> dict[str, Any]:
    statement = render_statement(thm, backend)
    digest = hashlib.sha256(statement.encode()).hexdigest()[:8]
    return {
        "backend": backend,
        "statement": statement,
        "proof": proof,
        "imports": list(COQ_IMPORTS if backend == "coq" else LEAN_IMPORTS),
        "name": f"gen_{family.name}_{digest}",
        "family": family.name,
        "group": family.group,
        "difficulty": int(difficulty),
        "tactic": tactic,
        "mutation": mutation,
        # the statement's structure, for features that read more than its text (metadata:
        # not part of the example's identity, and never trusted over the text)
        "ir": theorem_to_json(thm),
    }


class MathGenerator:
    """Theorem candidates for one backend (``coq`` or ``lean4``) from a set of families."""

    def __init__(self, backend: str = "coq", families: Sequence[Family] | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self.backend = backend
        self.families: tuple[Family, ...] = tuple(FAMILIES if families is None else families)
        if not self.families:
            raise ValueError("the math generator needs at least one family")
        self._pairs = [(f, d) for f in self.families for d in f.levels]

    def weights(self, steering: Mapping[str, float]) -> np.ndarray:
        """Probabilities of the (family, difficulty) pairs: group weight x ``exp(-|d - target|)``.

        Without a target (0) every family is equally likely and so is each of its levels.
        """
        knobs = {**STEERING_DEFAULTS, **steering}
        target = float(knobs["difficulty"])
        weights = np.array(
            [
                max(0.0, float(knobs.get(f"group_{f.group}", 1.0)))
                * (math.exp(-abs(d - target)) if target > 0 else 1.0)
                / len(f.levels)
                for f, d in self._pairs
            ]
        )
        if not weights.sum() > 0:
            raise ValueError("the steering gives every math family zero weight")
        return weights / weights.sum()

    def children(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[GeneratedTheorem]:
        """``n`` candidates: (family, difficulty) by steering, maybe mutated, maybe wrong proofs."""
        knobs = {**STEERING_DEFAULTS, **steering}
        probabilities = self.weights(knobs)
        false_fraction = min(1.0, max(0.0, float(knobs["false_fraction"])))
        wrong_fraction = min(1.0, max(0.0, float(knobs["wrong_proof_fraction"])))
        out = []
        for _ in range(n):
            family, d = self._pairs[int(rng.choice(len(self._pairs), p=probabilities))]
            built = family.build(rng, d)
            thm, mutation = built.theorem, ""
            if rng.random() < false_fraction:
                mutated = mutate(thm, rng)
                if mutated is not None:
                    thm, mutation = mutated
            wrong = rng.random() < wrong_fraction
            options = family.tactics(Built(thm, built.correct), self.backend, wrong)
            if not options:  # a wrong template that does not fit falls back to a correct one
                options = family.tactics(Built(thm, built.correct), self.backend, False)
            tactic, proof = options[int(rng.integers(len(options)))]
            payload = _payload(self.backend, family, thm, d, tactic, proof, mutation)
            out.append(GeneratedTheorem(payload, reference_key(family.name), thm))
        return out

    def reference_theorems(self, rng: np.random.Generator) -> list[GeneratedTheorem]:
        """One unmutated statement per family, at its lowest level, with its first correct proof."""
        out = []
        for family in self.families:
            d = min(family.levels)
            built = family.build(rng, d)
            tactic, proof = family.tactics(built, self.backend, False)[0]
            payload = _payload(self.backend, family, built.theorem, d, tactic, proof, "")
            out.append(GeneratedTheorem(payload, reference_key(family.name), built.theorem))
        return out


def reference_theorems(backend: str, rng: np.random.Generator) -> list[GeneratedTheorem]:
    """The domain's parents: one reference theorem per family (see ``MathGenerator``)."""
    return MathGenerator(backend).reference_theorems(rng)
