"""The math domain's surrogate: a proof-success classifier on statement and tactic text.

A bootstrap ensemble of random-feature logistic models (:mod:`foundry.surrogates.vector`)
over :func:`~.features.math_features`. Whether a script proves a statement depends on the
statement being true and on the tactic reaching it (``lia`` does linear arithmetic,
``reflexivity`` closed computations, an inductive fact needs ``induction``); the features'
tactic x operator pairs carry the second, token n-grams some of the first. Its risks need not
be calibrated - the scheduler's audits supply validity - they only have to rank.
"""

from __future__ import annotations

from foundry.surrogates.vector import VectorEnsembleSurrogate

from .features import math_features

__all__ = ["proof_surrogate"]


def proof_surrogate(n_members: int = 8, seed: int = 0) -> VectorEnsembleSurrogate:
    return VectorEnsembleSurrogate(
        math_features, (), True, n_members=n_members, seed=seed, n_fourier=256
    )
