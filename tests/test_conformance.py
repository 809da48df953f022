"""The conformance suite passes a well-behaved domain and fails each kind of broken one.

A suite that never fails proves nothing, so most tests here build a domain with exactly one
contract breach and assert that the check named for that breach is the one that fails.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    Knob,
    Predictions,
    PropertySpec,
    SetupError,
    SimulationFailed,
    Verdict,
)
from foundry.testing import (
    DomainCheckError,
    check_domain,
    domain_checks,
    parametrize_with_checks,
)

# -- a minimal well-behaved domain ----------------------------------------------------------


class SquareTruth(GroundTruth):
    """Exact ground truth: x passes when positive; the property is x squared."""

    name = "square"

    @property
    def version(self) -> str:
        return "1.0"

    def prepare(self, candidate: Candidate) -> float:
        return float(candidate.payload["x"])

    def execute(self, job: float, workdir: str) -> float:
        return job * job

    def parse(self, raw: float, candidate: Candidate) -> Verdict:
        x = float(candidate.payload["x"])
        return Verdict(passed=x > 0, properties={"square": raw}, reason="" if x > 0 else "x <= 0")


class MeanSurrogate:
    """The simplest honest surrogate: predicts training means, with their spread as sigma."""

    def __init__(self) -> None:
        self.p = 0.5
        self.mean = 0.0
        self.std = 1.0

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        self.p = float(np.mean([v.passed for v in verdicts]))
        squares = [v.properties["square"] for v in verdicts]
        self.mean, self.std = float(np.mean(squares)), float(np.std(squares))

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        n = len(candidates)
        return Predictions(
            n=n,
            p_pass=np.full(n, self.p),
            values={"square": np.full(n, self.mean)},
            sigmas={"square": np.full(n, self.std)},
        )


class ToyDomain(Domain):
    name = "toy"
    version = "0.1"
    payload_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"x": {"type": "number", "minimum": -5, "maximum": 5}},
        "required": ["x"],
        "additionalProperties": False,
    }
    properties = (PropertySpec("square", "1", abs_tol=1e-9),)
    steering_defaults: ClassVar[dict[str, float]] = {"spread": 5.0}

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        spread = float(steering.get("spread", 5.0))
        return [Candidate(payload={"x": float(x)}) for x in rng.uniform(-spread, spread, n)]

    def check(self, candidate: Candidate) -> str | None:
        x = candidate.payload.get("x")
        if not isinstance(x, int | float) or not -5 <= x <= 5:
            return f"x must be a number in [-5, 5], got {x!r}"
        return None

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        x = np.array([c.payload["x"] for c in candidates], dtype=float)
        return np.stack([x, x**2], axis=1).reshape(len(candidates), 2)

    def surrogate(self) -> MeanSurrogate:
        return MeanSurrogate()

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return SquareTruth()

    def reservoir(self) -> list[Candidate]:
        return [Candidate(payload={"x": 2.0}, source="real")]


# -- broken domains: one breach each, and the check that must catch it -----------------------


class BadName(ToyDomain):
    name = "toy domain"


class ArraySchema(ToyDomain):
    payload_schema: ClassVar[dict[str, Any]] = {"type": "array"}


class InvalidSchema(ToyDomain):
    payload_schema: ClassVar[dict[str, Any]] = {"type": 5}


class DuplicateProperties(ToyDomain):
    properties = (PropertySpec("square", "1", abs_tol=1.0), PropertySpec("square", "1", 0.5))


class NoFidelities(ToyDomain):
    fidelities = ()


class TextSteering(ToyDomain):
    steering_defaults: ClassVar[dict[str, Any]] = {"spread": "wide"}

    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return super().generate(n, rng, {})


class WrongCount(ToyDomain):
    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return super().generate(n + 1, rng, steering)


class NumpyPayload(ToyDomain):
    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return [Candidate(payload={"x": np.float32(x)}) for x in rng.uniform(-5, 5, n)]


class TuplePayload(ToyDomain):
    payload_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return [Candidate(payload={"x": float(x), "t": (1, 2)}) for x in rng.uniform(-5, 5, n)]


class SchemaMismatch(ToyDomain):
    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return [Candidate(payload={"x": float(x), "y": 1}) for x in rng.uniform(-5, 5, n)]


class NonDeterministic(ToyDomain):
    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return super().generate(n, np.random.default_rng(), steering)


class IgnoresRng(ToyDomain):
    def generate(self, n: int, rng: np.random.Generator, steering: Any) -> list[Candidate]:
        return [Candidate(payload={"x": i / n}) for i in range(n)]


class RejectsMost(ToyDomain):
    def check(self, candidate: Candidate) -> str | None:
        return None if candidate.payload.get("x", 0) > 4 else "too small"


class EmptyReason(ToyDomain):
    def check(self, candidate: Candidate) -> str | None:
        return super().check(candidate) and ""


class CheckRaisesOnEmpty(ToyDomain):
    def check(self, candidate: Candidate) -> str | None:
        return None if -5 <= candidate.payload["x"] <= 5 else "out of range"


class FeaturizeNaN(ToyDomain):
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        x = super().featurize(candidates)
        x[0, 0] = np.nan
        return x


class FeaturizeRagged(ToyDomain):
    def featurize(self, candidates: Sequence[Candidate]) -> Any:
        return [np.ones(i + 1) for i in range(len(candidates))]


class FeaturizeBatchWidth(ToyDomain):
    """Pads to the batch size: every call looks fine alone, widths differ across batches."""

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        x = np.zeros((len(candidates), len(candidates) + 1))
        x[:, 0] = [c.payload["x"] for c in candidates]
        return x


class FeaturizeBatchScaled(ToyDomain):
    """Standardises per batch: the same candidate gets different features in different batches."""

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        x = super().featurize(candidates)
        return x - x.mean(axis=0)


class FeaturizeRandom(ToyDomain):
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return super().featurize(candidates) + np.random.default_rng().normal(
            size=(len(candidates), 2)
        )


class SyntheticReservoir(ToyDomain):
    def reservoir(self) -> list[Candidate]:
        return [Candidate(payload={"x": 2.0})]


class SharedSurrogate(ToyDomain):
    _shared = MeanSurrogate()

    def surrogate(self) -> MeanSurrogate:
        return self._shared


class NotASurrogate(ToyDomain):
    def surrogate(self) -> Any:
        return object()


class UnversionedTruth(SquareTruth):
    @property
    def version(self) -> str:
        return ""


class NoVersion(ToyDomain):
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return UnversionedTruth()


class MutatingTruth(SquareTruth):
    def prepare(self, candidate: Candidate) -> float:
        candidate.payload["seen"] = True
        return super().prepare(candidate)


class ImpurePrepare(ToyDomain):
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return MutatingTruth()


class MissingPropertyTruth(SquareTruth):
    def parse(self, raw: float, candidate: Candidate) -> Verdict:
        return Verdict(passed=True, properties={})


class MissingProperty(ToyDomain):
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return MissingPropertyTruth()


class CrashingTruth(SquareTruth):
    def execute(self, job: float, workdir: str) -> float:
        raise SimulationFailed("did not converge")


class AlwaysFails(ToyDomain):
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return CrashingTruth()


class RaisingTruth(SquareTruth):
    def execute(self, job: float, workdir: str) -> float:
        raise ValueError("bad job")


class VerifyRaises(ToyDomain):
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return RaisingTruth()


class NaNSurrogate(MeanSurrogate):
    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        pred = super().predict(candidates)
        pred.values["square"][:] = np.nan
        return pred


class SurrogatePredictsNaN(ToyDomain):
    def surrogate(self) -> MeanSurrogate:
        return NaNSurrogate()


class ShortSurrogate(MeanSurrogate):
    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        return super().predict(candidates[1:])


class SurrogateWrongLength(ToyDomain):
    def surrogate(self) -> MeanSurrogate:
        return ShortSurrogate()


class ProposingToy(ToyDomain):
    """A well-behaved ``propose``: x moved by N(0, 0.1 x scale), clipped to the schema."""

    difficulty_knob: ClassVar[Knob | None] = Knob("spread", 1.0, 5.0, 1.0)

    def propose(self, n, rng, steering, parents, mutation_scale=1.0) -> list[Candidate]:
        picks = rng.integers(0, len(parents), size=n)
        steps = rng.normal(0.0, 0.1 * mutation_scale, size=n)
        return [
            Candidate(
                payload={"x": float(np.clip(parents[i].payload["x"] + d, -5, 5))},
                parent_ids=(parents[i].id,),
            )
            for i, d in zip(picks, steps, strict=True)
        ]


class ForeignParents(ProposingToy):
    def propose(self, n, rng, steering, parents, mutation_scale=1.0) -> list[Candidate]:
        out = super().propose(n, rng, steering, parents, mutation_scale)
        out[0].parent_ids = ("someone-else",)
        return out


class ProposeIgnoresRng(ProposingToy):
    def propose(self, n, rng, steering, parents, mutation_scale=1.0) -> list[Candidate]:
        return super().propose(n, np.random.default_rng(), steering, parents, mutation_scale)


class UnknownDifficultyKnob(ToyDomain):
    difficulty_knob: ClassVar[Knob | None] = Knob("hardness", 0.0, 1.0, 0.1)


BROKEN: list[tuple[type[Domain], str]] = [
    (ForeignParents, "check_propose"),
    (ProposeIgnoresRng, "check_propose"),
    (UnknownDifficultyKnob, "check_difficulty_knob"),
    (BadName, "check_name_and_version"),
    (ArraySchema, "check_payload_schema"),
    (InvalidSchema, "check_payload_schema"),
    (DuplicateProperties, "check_properties"),
    (NoFidelities, "check_fidelities"),
    (TextSteering, "check_steering_defaults"),
    (WrongCount, "check_generate_count"),
    (NumpyPayload, "check_generate_json"),
    (TuplePayload, "check_generate_json"),
    (SchemaMismatch, "check_generate_schema"),
    (NonDeterministic, "check_generate_deterministic"),
    (IgnoresRng, "check_generate_seed_sensitive"),
    (RejectsMost, "check_rule_accepts_generated"),
    (EmptyReason, "check_rule_rejects_broken"),
    (CheckRaisesOnEmpty, "check_rule_rejects_broken"),
    (FeaturizeNaN, "check_featurize_shape"),
    (FeaturizeRagged, "check_featurize_shape"),
    (FeaturizeRandom, "check_featurize_deterministic"),
    (FeaturizeBatchWidth, "check_featurize_batch_independent"),
    (FeaturizeBatchScaled, "check_featurize_batch_independent"),
    (SyntheticReservoir, "check_reservoir"),
    (SharedSurrogate, "check_surrogate_fresh"),
    (NotASurrogate, "check_surrogate_fresh"),
    (NoVersion, "check_ground_truth_identity"),
    (ImpurePrepare, "check_ground_truth_prepare_pure"),
    (MissingProperty, "check_ground_truth_verdicts"),
    (AlwaysFails, "check_ground_truth_verdicts"),
    (VerifyRaises, "check_ground_truth_verdicts"),
    (SurrogatePredictsNaN, "check_surrogate_fit_predict"),
    (SurrogateWrongLength, "check_surrogate_fit_predict"),
]


# -- tests -----------------------------------------------------------------------------------


def test_a_proposing_domain_passes() -> None:
    check_domain(ProposingToy())


def test_well_behaved_domain_passes_quickly() -> None:
    start = time.perf_counter()
    check_domain(ToyDomain())
    assert time.perf_counter() - start < 5.0


@parametrize_with_checks([ToyDomain()])
def test_parametrized_checks_pass(check: Any) -> None:
    check()


@pytest.mark.parametrize(("cls", "expected"), BROKEN, ids=[cls.__name__ for cls, _ in BROKEN])
def test_broken_domain_fails_the_named_check(cls: type[Domain], expected: str) -> None:
    with pytest.raises(DomainCheckError) as info:
        check_domain(cls())
    err = info.value
    assert err.check_name == expected, str(err)
    assert err.domain_name in {cls.name, cls.__name__}
    assert expected in str(err) and err.message in str(err)


def test_error_is_an_assertion_and_pickles() -> None:
    err = DomainCheckError("check_x", "toy", "went wrong")
    assert isinstance(err, AssertionError)
    again = pickle.loads(pickle.dumps(err))
    assert (again.check_name, again.domain_name, again.message) == ("check_x", "toy", "went wrong")


def test_ground_truth_false_skips_the_verifier() -> None:
    class Unavailable(SquareTruth):
        def execute(self, job: float, workdir: str) -> float:
            raise SetupError("simulator not installed")

    class NoTool(ToyDomain):
        def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
            return Unavailable()

    check_domain(NoTool(), ground_truth=False)
    with pytest.raises(DomainCheckError, match="ground_truth=False") as info:
        check_domain(NoTool())
    assert info.value.check_name == "check_ground_truth_verdicts"


def test_check_names_are_unique_and_ordered() -> None:
    names = [name for name, _ in domain_checks(ToyDomain())]
    assert len(names) == len(set(names))
    assert names[0] == "check_name_and_version"
    assert names[-1] == "check_surrogate_fit_predict"
    fast = [name for name, _ in domain_checks(ToyDomain(), ground_truth=False)]
    assert not any("ground_truth" in name or "fit_predict" in name for name in fast)


def test_parametrize_ids_name_domain_and_check() -> None:
    mark = parametrize_with_checks([ToyDomain()], ground_truth=False)
    ids = [p.id for p in mark.args[1]]
    assert "toy-check_generate_deterministic" in ids
    assert len(ids) == len(domain_checks(ToyDomain(), ground_truth=False))


def test_n_must_allow_a_majority() -> None:
    with pytest.raises(ValueError, match="n must be"):
        check_domain(ToyDomain(), n=1)
