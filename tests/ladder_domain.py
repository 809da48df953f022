"""A three-tier analytic domain: the fidelity ladder with known truth at every tier.

Tiers, cheapest first: ``coarse`` (the truth plus a smooth error of up to 0.3, three times
the tolerance), ``fine`` (plus an error of up to 0.05) and ``exact`` (the truth of
:mod:`analytic_domain`). The surrogate learns the correction over the best cheaper tier it
is shown (Delta-learning): its mean is that tier's value, its spread the residual it measured
on the labels, so with ``fine`` evidence it is sharp and with ``coarse`` evidence loose. With
no evidence it is :class:`analytic_domain.AnalyticSurrogate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from analytic_domain import (
    PASS_LEVEL,
    AnalyticDomain,
    AnalyticGroundTruth,
    AnalyticSurrogate,
    truth,
)
from scipy.special import ndtr

from foundry.contract import Candidate, GroundTruth, Predictions, Verdict
from foundry.execution.resources import Resources

TIERS = ("coarse", "fine", "exact")


def tier_error(fidelity: str, x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    if fidelity == "coarse":
        return 0.3 * np.sin(5 * x[:, 0] - 3 * x[:, 1])
    if fidelity == "fine":
        return 0.05 * np.sin(11 * x[:, 0] + 7 * x[:, 1])
    return np.zeros(len(x))


#: what each tier declares: a cheap tier is fast and needs little, the top tier more
TIER_RESOURCES = {
    "coarse": Resources(expected_cost_s=1e-4, timeout_s=5.0),
    "fine": Resources(expected_cost_s=1e-3, timeout_s=10.0),
    "exact": Resources(expected_cost_s=1e-2, timeout_s=30.0, threads=1),
}


class TierGroundTruth(AnalyticGroundTruth):
    def __init__(self, fidelity: str) -> None:
        self.fidelity = fidelity
        self.name = f"analytic-{fidelity}"  # type: ignore[misc]
        self.resources = TIER_RESOURCES[fidelity]

    def execute(self, job: np.ndarray, workdir: str) -> float:
        return float(truth(job)[0] + tier_error(self.fidelity, job)[0])


class LadderSurrogate(AnalyticSurrogate):
    """Learns, per evidence tier, the spread of the truth around that tier's value."""

    def __init__(self) -> None:
        super().__init__()
        self.spread: dict[str, float] = {}

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        super().fit(candidates, verdicts)
        for fidelity in ("fine", "coarse"):
            residuals = [
                v.properties["y"] - c.evidence[fidelity].properties["y"]
                for c, v in zip(candidates, verdicts, strict=True)
                if fidelity in c.evidence and "y" in c.evidence[fidelity].properties
            ]
            if len(residuals) >= 20:
                self.spread[fidelity] = float(np.sqrt(np.mean(np.square(residuals)))) + 1e-3

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        base = super().predict(candidates)
        y, sigma = base.values["y"].copy(), base.sigmas["y"].copy()
        for i, cand in enumerate(candidates):
            for fidelity in ("fine", "coarse"):
                verdict = cand.evidence.get(fidelity)
                if verdict is not None and fidelity in self.spread:
                    y[i] = verdict.properties["y"]
                    sigma[i] = self.spread[fidelity]
                    break
        p_pass = ndtr((y - PASS_LEVEL) / np.maximum(sigma, 1e-3))
        return Predictions(len(candidates), p_pass, {"y": y}, {"y": sigma})


class LadderDomain(AnalyticDomain):
    name = "ladder"
    fidelities = TIERS

    def surrogate(self) -> LadderSurrogate:
        return LadderSurrogate()

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        fidelity = fidelity or TIERS[-1]
        if fidelity not in TIERS:
            raise ValueError(f"unknown fidelity {fidelity!r}")
        return TierGroundTruth(fidelity)
