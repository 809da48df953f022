"""A small analytic domain with known truth and a deliberately imperfect surrogate.

Truth: ``y = sin(3 x0) + x1^2`` on ``[-1, 1]^2``; an item passes when ``y > 0.3``.
The surrogate is wrong on purpose: a systematic, position-dependent bias (up to 0.25, larger
than the 0.1 tolerance) plus item-specific noise, and an uncertainty that only partly tracks
its own error (it underestimates it). Its risks rank items usefully but are miscalibrated, so
any guarantee must come from the audits, not from the surrogate's own confidence.

The module also holds :class:`HostileDomain`, whose payload says how its plugin should
misbehave (raise, hang, crash, return garbage), for the failure-handling tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtr

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    Predictions,
    PropertySpec,
    SimulationFailed,
    Verdict,
)

PASS_LEVEL = 0.3
TOL = 0.1


def truth(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    return np.sin(3 * x[:, 0]) + x[:, 1] ** 2


def surrogate_error(x: np.ndarray) -> np.ndarray:
    """Systematic bias plus deterministic per-item noise (what the surrogate gets wrong)."""
    x = np.atleast_2d(x)
    bias = 0.25 * np.sin(7 * x[:, 0] + 2 * x[:, 1]) * (x[:, 1] > -0.2)
    noise = 0.04 * np.sin(1000 * x[:, 0] + 3000 * x[:, 1])
    return bias + noise


class AnalyticSurrogate:
    """Imperfect on purpose; ``fit`` learns only a global offset from the labels."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.fitted = False

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        x = np.array([c.payload["x"] for c in candidates])
        y = np.array([v.properties["y"] for v in verdicts])
        raw = truth(x) + surrogate_error(x)
        self.offset = float(np.mean(y - raw))
        self.fitted = True

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        n = len(candidates)
        if n == 0:
            return Predictions(0, np.zeros(0), {"y": np.zeros(0)}, {"y": np.zeros(0)})
        x = np.array([c.payload["x"] for c in candidates], dtype=float)
        err = surrogate_error(x)
        y_hat = truth(x) + err + self.offset
        sigma = 0.4 * np.abs(err) + 0.01
        p_pass = ndtr((y_hat - PASS_LEVEL) / np.maximum(sigma, 0.02))
        return Predictions(n, p_pass, {"y": y_hat}, {"y": sigma})


class AnalyticGroundTruth(GroundTruth):
    name = "analytic"

    @property
    def version(self) -> str:
        return "1.0"

    def prepare(self, candidate: Candidate) -> np.ndarray:
        return np.asarray(candidate.payload["x"], dtype=float)

    def execute(self, job: np.ndarray, workdir: str) -> float:
        return float(truth(job)[0])

    def parse(self, raw: float, candidate: Candidate) -> Verdict:
        # the margin is an extra observable: recorded, neither predicted nor certified
        return Verdict(
            passed=raw > PASS_LEVEL,
            properties={"y": raw},
            measurements={"margin": raw - PASS_LEVEL},
        )


class AnalyticDomain(Domain):
    name = "analytic"
    version = "1.0"
    payload_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "x": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
        },
        "required": ["x"],
    }
    properties = (PropertySpec("y", "1", abs_tol=TOL),)
    has_pass_fail = True
    steering_defaults: ClassVar[dict[str, float]] = {"spread": 1.0}

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        spread = float(steering.get("spread", 1.0))
        x = rng.uniform(-spread, spread, size=(n, 2))
        return [Candidate({"x": [float(a), float(b)]}) for a, b in x]

    def check(self, candidate: Candidate) -> str | None:
        x = candidate.payload.get("x")
        if not isinstance(x, list) or len(x) != 2:
            return "x must be a list of two numbers"
        if not all(isinstance(v, int | float) and abs(v) <= 1 for v in x):
            return "x outside [-1, 1]^2"
        return None

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return np.array([c.payload["x"] for c in candidates], dtype=float).reshape(-1, 2)

    def surrogate(self) -> AnalyticSurrogate:
        return AnalyticSurrogate()

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return AnalyticGroundTruth()

    def reservoir(self) -> list[Candidate]:
        grid = np.linspace(-0.9, 0.9, 4)
        return [Candidate({"x": [float(a), float(b)]}, source="real") for a in grid for b in grid]


# -- a plugin that misbehaves on request ------------------------------------------------------


class HostileGroundTruth(AnalyticGroundTruth):
    name = "hostile"

    def execute(self, job: np.ndarray, workdir: str) -> float:
        return float(truth(job)[0])

    def verify(self, candidate: Candidate, workdir: str) -> Verdict:
        mode = candidate.payload.get("mode", "ok")
        if mode == "raise":
            raise RuntimeError("verifier bug")
        if mode == "simfail":
            raise SimulationFailed("did not converge")
        if mode == "hang":
            time.sleep(3600)
        if mode == "crash":
            os._exit(3)
        if mode == "garbage":
            return "PASS"  # type: ignore[return-value]
        if mode == "nan":
            return Verdict(passed=True, properties={"y": float("nan")})
        if mode == "missing":
            return Verdict(passed=True, properties={})
        if mode == "bad_measurement":
            y = float(truth(candidate.payload["x"])[0])
            return Verdict(passed=True, properties={"y": y}, measurements={"margin": "big"})  # type: ignore[dict-item]
        return super().verify(candidate, workdir)


class HostileDomain(AnalyticDomain):
    """Payload ``mode`` picks the ground truth's misbehaviour; the rest is analytic."""

    name = "hostile"
    modes: tuple[str, ...] = (
        "ok",
        "raise",
        "simfail",
        "hang",
        "crash",
        "garbage",
        "nan",
        "missing",
        "bad_measurement",
    )

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        out = super().generate(n, rng, steering)
        for i, cand in enumerate(out):
            cand.payload["mode"] = self.modes[i % len(self.modes)]
        return out

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return HostileGroundTruth()
