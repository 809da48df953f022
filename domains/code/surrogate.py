"""The code domain's pass/fail surrogate: what a program did before, then what it looks like.

Candidates repeat programs: a task family has a handful of correct solutions and a finite set
of mutants, and a user's file holds many completions of the same prompt. Whether a program
passes depends mostly on the program (a correct solution passes every test; most mutants fail
most tests) and only partly on the tests (a dropped guard fails only when a test hits the
edge). So the surrogate keeps, per program (its syntax tree, so that spacing and comments do
not matter), the labels it was trained on, and predicts the pass probability as a Beta
posterior whose prior mean is the feature classifier's opinion (a hashed-token and AST-count
ensemble, :mod:`foundry.surrogates.vector`):

    p_pass = (passes + c * p_features) / (labels + c)

The prior's weight ``c`` (a Beta distribution's concentration) is fitted to the training
labels by maximum likelihood of the beta-binomial model over programs with two labels or more
(empirical Bayes): when programs either always pass or always fail, ``c`` is small and a short
unanimous record is already convincing; when programs pass some tests and fail others, ``c``
grows and so does the record needed. A program never seen gets the classifier's opinion.
Its risks need not be calibrated - the scheduler's certificates, from audits, supply
validity - they only have to rank items by how likely the word "pass" or "fail" is to be
wrong, which a program's own record does well (measured in ``benchmarks/code_surrogates.py``).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Sequence

import numpy as np
from foundry.surrogates.vector import VectorEnsembleSurrogate

from foundry.contract import Candidate, Predictions, Verdict

from .features import code_features
from .tasks import task_of

__all__ = ["ProgramMemorySurrogate", "fit_concentration", "program_key"]

#: fewest programs with repeated labels to fit the prior's concentration from
MIN_PROGRAMS_TO_FIT = 20


def fit_concentration(records: Sequence[tuple[int, int]]) -> float | None:
    """The concentration ``a + b`` of the Beta prior of per-program pass rates that maximises
    the beta-binomial likelihood of ``records`` ((labels, passes) per program), or None with
    fewer than ``MIN_PROGRAMS_TO_FIT`` records. Bounded to [0.05, 1000]."""
    if len(records) < MIN_PROGRAMS_TO_FIT:
        return None
    from scipy.optimize import minimize
    from scipy.special import betaln

    n = np.array([r[0] for r in records], dtype=float)
    k = np.array([r[1] for r in records], dtype=float)

    def nll(theta: np.ndarray) -> float:
        a, b = np.exp(theta)
        return float(-np.sum(betaln(k + a, n - k + b) - betaln(a, b)))

    mean = float(np.clip(k.sum() / n.sum(), 0.05, 0.95))
    start = np.log([mean, 1.0 - mean])
    result = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6})
    a, b = np.exp(result.x)
    return float(np.clip(a + b, 0.05, 1000.0))


def program_key(candidate: Candidate) -> str:
    """A program's identity for the memory: its syntax tree, or its text if it does not parse."""
    try:
        program = task_of(candidate.payload).program
    except (ValueError, KeyError, TypeError):
        return ""
    return _key_of_program(program)


@functools.lru_cache(maxsize=1 << 16)
def _key_of_program(program: str) -> str:
    """Memoised by text: programs repeat (that is what the memory is for), and every fit and
    every prediction asks again; a parse costs more than the rest of a look-up."""
    try:
        text = ast.dump(ast.parse(program))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        text = program
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class ProgramMemorySurrogate:
    """Per-program label counts over a feature classifier's prior (see the module doc)."""

    def __init__(
        self,
        n_members: int = 8,
        prior_strength: float = 2.0,
        seed: int = 0,
        max_feature_labels: int = 4000,
    ) -> None:
        if prior_strength <= 0 or max_feature_labels < 1:
            raise ValueError("need prior_strength > 0 and max_feature_labels >= 1")
        #: the feature classifier learns from the latest this many labels: it is only the
        #: prior of programs never seen, and its fit cost grows with the labels (51 s at 26,000
        #: labels here) while the memory's stays negligible
        self.max_feature_labels = max_feature_labels
        #: the prior's weight in labels until one is fitted (too few repeated programs)
        self.prior_strength = prior_strength
        self.features = VectorEnsembleSurrogate(
            code_features, (), has_pass_fail=True, n_members=n_members, seed=seed
        )
        #: program key -> (labels, passes)
        self.memory: dict[str, tuple[int, int]] = {}

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        keep = self.max_feature_labels
        self.features.fit(list(candidates)[-keep:], list(verdicts)[-keep:])
        memory: dict[str, tuple[int, int]] = {}
        for candidate, verdict in zip(candidates, verdicts, strict=True):
            key = program_key(candidate)
            if key:
                n, k = memory.get(key, (0, 0))
                memory[key] = (n + 1, k + int(bool(verdict.passed)))
        self.memory = memory
        fitted = fit_concentration([nk for nk in memory.values() if nk[0] >= 2])
        if fitted is not None:
            self.prior_strength = fitted

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        prior = self.features.predict(candidates).p_pass
        assert prior is not None
        p_prior = np.clip(np.nan_to_num(np.asarray(prior, dtype=float), nan=0.5), 0.01, 0.99)
        labels = np.zeros(len(candidates))
        passes = np.zeros(len(candidates))
        for i, candidate in enumerate(candidates):
            n, k = self.memory.get(program_key(candidate), (0, 0))
            labels[i], passes[i] = n, k
        s = self.prior_strength
        p_pass = (passes + s * p_prior) / (labels + s)
        return Predictions(len(candidates), p_pass=p_pass)
