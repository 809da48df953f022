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
    Knob,
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


class AlwaysFailingDomain(HostileDomain):
    """Every ground-truth call crashes its process: a run must not end "fine"."""

    name = "always_failing"
    modes: tuple[str, ...] = ("crash",)


# -- a surrogate that is worse in one region, and domains built on it -----------------------
#
# For tests/test_statistical_slices.py: per-slice certificates (the bad region is a slice),
# steering into the bad region (a new regime), and completion order correlated with errors.


def quadrant(x: np.ndarray) -> np.ndarray:
    """The quadrant of each point: q1 (x0 >= 0, x1 >= 0), q2 (x0 < 0, x1 >= 0), q3, q4."""
    x = np.atleast_2d(x)
    upper, right = x[:, 1] >= 0, x[:, 0] >= 0
    return np.where(upper, np.where(right, "q1", "q2"), np.where(right, "q4", "q3"))


def item_hash(x: np.ndarray) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) per point."""
    x = np.atleast_2d(x)
    v = np.sin(12.9898 * x[:, 0] + 78.233 * x[:, 1]) * 43758.5453
    return v - np.floor(v)


class UnevenAnalyticSurrogate(AnalyticSurrogate):
    """The analytic surrogate, learning, and overconfident in one quadrant.

    * It learns: its systematic error shrinks as its labels grow (``skill`` falls from 1 at
      :attr:`learn_from` labels to 0.5), so later versions decide more and may take over.
    * In :attr:`bad_quadrant` its actual error is :attr:`gain` times the error its own
      uncertainty reflects, and a share :attr:`glitch_rate` of the items there carry an extra
      :attr:`glitch` its uncertainty does not show at all: its risks there are too low, so a
      certificate earned elsewhere lets far more errors through there.
    """

    bad_quadrant: ClassVar[str] = "q1"
    gain: ClassVar[float] = 1.3
    glitch_rate: ClassVar[float] = 0.0
    glitch: ClassVar[float] = 0.3
    learn_from: ClassVar[int] = 300

    def __init__(self) -> None:
        super().__init__()
        self.skill = 1.0

    def errors(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actual error, the error its uncertainty reflects) per item, before the offset."""
        x = np.atleast_2d(x)
        seen = self.skill * surrogate_error(x)
        bad = quadrant(x) == self.bad_quadrant
        glitch = self.glitch * (item_hash(x) < self.glitch_rate)
        return np.where(bad, self.gain * seen + glitch, seen), seen

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        x = np.array([c.payload["x"] for c in candidates], dtype=float).reshape(-1, 2)
        y = np.array([v.properties["y"] for v in verdicts])
        self.skill = float(np.clip((self.learn_from / max(len(x), 1)) ** 0.35, 0.5, 1.0))
        actual, _ = self.errors(x)
        self.offset = float(np.mean(y - truth(x) - actual))
        self.fitted = True

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        n = len(candidates)
        if n == 0:
            return Predictions(0, np.zeros(0), {"y": np.zeros(0)}, {"y": np.zeros(0)})
        x = np.array([c.payload["x"] for c in candidates], dtype=float)
        actual, seen = self.errors(x)
        y_hat = truth(x) + actual + self.offset
        sigma = 0.4 * np.abs(seen) + 0.01
        p_pass = ndtr((y_hat - PASS_LEVEL) / np.maximum(sigma, 0.02))
        return Predictions(n, p_pass, {"y": y_hat}, {"y": sigma})


class GlitchyAnalyticSurrogate(UnevenAnalyticSurrogate):
    """Learning, and in its bad quadrant (q1) a fifth of the items are off by 0.3 while it
    is as sure of them as of the rest: errors there at every risk level."""

    gain: ClassVar[float] = 1.0
    glitch_rate: ClassVar[float] = 0.2


class SlicedAnalyticDomain(AnalyticDomain):
    """The analytic domain sliced by quadrant of x, with a surrogate that is bad in q1."""

    name = "analytic_sliced"
    slices: ClassVar[tuple[str, ...] | None] = ("q1", "q2", "q3", "q4")

    def slice_of(self, candidate: Candidate) -> str:
        return str(quadrant(np.asarray(candidate.payload["x"], dtype=float))[0])

    def surrogate(self) -> UnevenAnalyticSurrogate:
        return GlitchyAnalyticSurrogate()


class PooledSlicedAnalyticDomain(SlicedAnalyticDomain):
    """Control: the same domain and surrogate with one slice for all (pooled certificates)."""

    name = "analytic_pooled"
    slices: ClassVar[tuple[str, ...] | None] = None
    slice_of = Domain.slice_of


class SteeredAnalyticDomain(AnalyticDomain):
    """The uneven surrogate, on a generator with a ``shift`` knob in [0, 1]:
    ``x0 ~ U(-1 + shift, 1)``, ``x1 ~ U(-1 + shift, shift)``.

    ``shift = 0`` draws x from the lower half (q3, q4), where the surrogate is good;
    ``shift = 1`` from q1, where it is overconfident.
    """

    name = "analytic_steered"
    steering_defaults: ClassVar[dict[str, float]] = {"shift": 0.0}

    def shift(self, n: int, steering: Mapping[str, float]) -> float:
        return float(steering.get("shift", 0.0))

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        shift = float(np.clip(self.shift(n, steering), 0.0, 1.0))
        x = rng.uniform(0.0, 1.0, size=(n, 2))
        x[:, 0] = -1.0 + shift + (2.0 - shift) * x[:, 0]
        x[:, 1] = -1.0 + shift + x[:, 1]
        return [Candidate({"x": [float(a), float(b)]}) for a, b in x]

    def surrogate(self) -> UnevenAnalyticSurrogate:
        return UnevenAnalyticSurrogate()


class HiddenShiftAnalyticDomain(SteeredAnalyticDomain):
    """Control: the same shift, made by the generator itself once it has made
    :attr:`switch_at` candidates (a count it keeps), not by steering - so the regime (the
    generator's hash) stays the same when the distribution changes."""

    name = "analytic_hidden_shift"
    steering_defaults: ClassVar[dict[str, float]] = {}
    switch_at: int = 3000

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.generated = 0

    def shift(self, n: int, steering: Mapping[str, float]) -> float:
        shift = 1.0 if self.generated >= self.switch_at else 0.0
        self.generated += n
        return shift


# -- completion order correlated with errors -------------------------------------------------


#: where the latency domain draws (x0, x1): the lower right quadrant, where most items pass
LATENCY_BOX = ((0.0, 1.0), (-1.0, 0.0))


def _typical_offset(box: tuple[tuple[float, float], tuple[float, float]]) -> float:
    """The offset :class:`AnalyticSurrogate` learns from uniform labels in ``box`` (minus its
    mean error there)."""
    (a, b), (c, d) = box
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(a, b, 200_000), rng.uniform(c, d, 200_000)])
    return float(-np.mean(surrogate_error(x)))


#: what :class:`AnalyticSurrogate` adds to its predictions after a fit on the latency domain
TYPICAL_OFFSET = _typical_offset(LATENCY_BOX)
#: seconds the ground truth takes on an item whose release would be wrong (from, to)
SLOW_S = (0.005, 0.02)


def release_would_be_wrong(x: np.ndarray) -> np.ndarray:
    """``accept_error`` of the analytic surrogate (with its typical offset) per point: the
    item fails, or the prediction is off by more than the tolerance."""
    x = np.atleast_2d(x)
    y = truth(x)
    y_hat = y + surrogate_error(x) + TYPICAL_OFFSET
    return (y <= PASS_LEVEL) | (np.abs(y_hat - y) > TOL)


class LatencyGroundTruth(AnalyticGroundTruth):
    """The analytic truth, slow (5-20 ms) exactly on the items whose release on the
    surrogate's word would be wrong: those complete late, the right ones early."""

    name = "analytic_latency"

    def execute(self, job: np.ndarray, workdir: str) -> float:
        if bool(release_would_be_wrong(job)[0]):
            lo, hi = SLOW_S
            time.sleep(lo + (hi - lo) * float(item_hash(job)[0]))
        return super().execute(job, workdir)


class LatencyAnalyticDomain(AnalyticDomain):
    """The analytic domain on the lower right quadrant (most items pass, so the errors that
    matter are the surrogate's), whose ground truth is slow exactly where releasing on the
    surrogate's word would be wrong."""

    name = "analytic_latency"
    #: where the generator draws x0 and x1
    box: ClassVar[tuple[tuple[float, float], tuple[float, float]]] = LATENCY_BOX

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        (a, b), (c, d) = self.box
        x = np.column_stack([rng.uniform(a, b, n), rng.uniform(c, d, n)])
        return [Candidate({"x": [float(u), float(v)]}) for u, v in x]

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return LatencyGroundTruth()


# -- judging what a run released, against the known truth -------------------------------------


def is_wrong(x: np.ndarray, y_hat: np.ndarray) -> np.ndarray:
    """Per item, whether releasing it with prediction ``y_hat`` was wrong: it fails, or the
    prediction is off by more than the tolerance (``accept_error`` against the truth)."""
    y = truth(np.asarray(x, dtype=float).reshape(-1, 2))
    return (y <= PASS_LEVEL) | (np.abs(np.asarray(y_hat, dtype=float) - y) > TOL)


def released_wrong(run_dir) -> np.ndarray:
    """For every example a run released on the surrogate's word, whether it is wrong."""
    import json
    import sqlite3
    from pathlib import Path

    db = sqlite3.connect(Path(run_dir) / "ledger.sqlite")
    rows = db.execute(
        "SELECT payload, predicted FROM examples "
        "WHERE decided_by='surrogate' AND decision='accepted'"
    ).fetchall()
    db.close()
    if not rows:
        return np.zeros(0, dtype=bool)
    x = np.array([json.loads(p)["x"] for p, _ in rows])
    y_hat = np.array([json.loads(q)["y"] for _, q in rows])
    return is_wrong(x, y_hat)


class EvolvingAnalyticDomain(SlicedAnalyticDomain):
    """The sliced analytic domain with a ``propose``: a child is its parent's x moved by
    ``N(0, 0.05 * mutation_scale)`` per coordinate (kept inside +-``spread``, at most 0.99),
    and a difficulty knob: ``spread`` (wider draws reach the corners the surrogate gets
    wrong)."""

    name = "analytic_evolving"
    difficulty_knob: ClassVar[Knob | None] = Knob("spread", 0.2, 1.0, 0.2)

    def propose(
        self,
        n: int,
        rng: np.random.Generator,
        steering: Mapping[str, float],
        parents: Sequence[Candidate],
        mutation_scale: float = 1.0,
    ) -> list[Candidate]:
        picks = rng.integers(0, len(parents), size=n)
        x = np.array([parents[i].payload["x"] for i in picks], dtype=float)
        bound = min(float(steering.get("spread", 1.0)), 0.99)
        x = np.clip(x + rng.normal(0.0, 0.05 * mutation_scale, size=x.shape), -bound, bound)
        return [
            Candidate({"x": [float(a), float(b)]}, parent_ids=(parents[i].id,))
            for (a, b), i in zip(x, picks, strict=True)
        ]
