"""The domain plugin contract.

A domain is a small object, in the spirit of scikit-learn estimators and ASE calculators:
capabilities are declared as data (``properties``, ``has_pass_fail``, ``fidelities``), and a
handful of methods do the work. ``foundry.testing.check_domain`` is the conformance suite.

Error taxonomy (after ASE):

* :class:`SetupError` - the tool is missing or misconfigured. The run stops; nothing is judged.
* :class:`SimulationFailed` - the simulation ran and crashed or did not converge. Recorded as a
  failure (retryable); the candidate is neither accepted nor rejected.
* A rejection is a :class:`Verdict` with ``passed=False``, never an exception.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from foundry.execution.resources import Resources

Source = Literal["synthetic", "real", "injected"]
SOURCES: tuple[str, ...] = ("synthetic", "real", "injected")


class FoundryError(Exception):
    """Base class of the foundry's own errors."""


class SetupError(FoundryError):
    """A verifier or plugin cannot run at all here (missing binary, bad install)."""


class SimulationFailed(FoundryError):
    """The ground truth ran but produced no usable answer (crash, non-convergence)."""


class PluginError(FoundryError):
    """A plugin broke its contract (raised, returned garbage, hung)."""


#: one encoder for every payload (json.dumps with options builds a new one per call)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def canonical_json(payload: Mapping[str, Any]) -> str:
    """JSON with sorted keys and no whitespace: the bytes a content id is taken over."""
    return _CANONICAL.encode(payload)


def content_id(domain: str, payload: Mapping[str, Any]) -> str:
    """Stable id of a candidate: the same payload in the same domain has the same id."""
    return content_id_of_text(domain, canonical_json(payload))


def example_id(
    domain: str, payload: Mapping[str, Any], payload_text: str, identity: Any = None
) -> str:
    """The content id of a payload whose :func:`canonical_json` is ``payload_text``, taken
    over ``identity(payload)`` (a :meth:`Domain.identity`) when that gives a key. A hook that
    raises is the plugin's bug; the payload's own text is used then, so ids stay defined."""
    key = None
    if identity is not None:
        try:
            key = identity(payload)
        except Exception:
            key = None
    if key is None:
        return content_id_of_text(domain, payload_text)
    return content_id_of_text(domain, "identity:" + canonical_json(key))


def content_id_of_text(domain: str, payload_text: str) -> str:
    """:func:`content_id` from the payload's :func:`canonical_json` text, if already made."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(domain.encode())
    digest.update(b"\x00")
    digest.update(payload_text.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PropertySpec:
    """A measured property and the tolerance within which a prediction counts as right.

    A prediction ``p`` of a true value ``t`` is right when
    ``|p - t| <= abs_tol + rel_tol * |t|``.
    """

    name: str
    unit: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0

    def __post_init__(self) -> None:
        if self.abs_tol < 0 or self.rel_tol < 0 or (self.abs_tol == 0 and self.rel_tol == 0):
            raise ValueError(f"property {self.name!r}: need abs_tol >= 0, rel_tol >= 0, not both 0")

    def tolerance(self, value: np.ndarray | float) -> np.ndarray:
        return self.abs_tol + self.rel_tol * np.abs(np.asarray(value, dtype=float))

    def within(self, predicted: np.ndarray | float, true: np.ndarray | float) -> np.ndarray:
        predicted = np.asarray(predicted, dtype=float)
        true = np.asarray(true, dtype=float)
        return np.abs(predicted - true) <= self.tolerance(true)


@dataclass(frozen=True)
class Knob:
    """A steering knob a controller may turn: its name, range and one step."""

    name: str
    low: float
    high: float
    step: float

    def turned(self, value: float, steps: int) -> float:
        return float(min(max(value + steps * self.step, self.low), self.high))


@dataclass
class Candidate:
    """One proposed example. ``payload`` is plain JSON data validated by the domain's schema."""

    payload: dict[str, Any]
    source: Source = "synthetic"
    generation: int = 0
    parent_ids: tuple[str, ...] = ()
    #: Filled by the scheduler (``content_id(domain, payload)``) if left empty.
    id: str = ""
    #: Verdicts of the cheaper tiers of the fidelity ladder, keyed by fidelity, once they
    #: have run: what a surrogate learns the correction from (Delta-learning) and what a
    #: costlier tier may start from. Not part of the payload, so not of the content id.
    evidence: dict[str, Verdict] = field(default_factory=dict)
    #: The line (1-based) of the user's file the candidate came from (``foundry verify``);
    #: ``None`` for generated candidates. Provenance, not part of the content id.
    input_line: int | None = None


@dataclass
class Verdict:
    """What the ground truth says about one candidate.

    ``passed`` is the pass/fail answer (always ``True`` for a domain without pass/fail once the
    simulation succeeded). ``properties`` holds the measured values, keyed by
    ``PropertySpec.name``: what the surrogate learns and is judged on. ``measurements`` holds
    further observables the simulation yields for free (an operating point, a bandwidth); they
    are recorded with the example but neither predicted nor certified.
    """

    passed: bool
    properties: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    measurements: dict[str, float] = field(default_factory=dict)

    def validate(self, specs: Sequence[PropertySpec]) -> None:
        """Raise :class:`PluginError` unless this is a well-formed verdict for ``specs``."""
        if not isinstance(self.passed, bool | np.bool_):
            raise PluginError(f"Verdict.passed must be bool, got {type(self.passed).__name__}")
        if not isinstance(self.properties, dict):
            raise PluginError("Verdict.properties must be a dict")
        if self.passed:
            missing = [s.name for s in specs if s.name not in self.properties]
            if missing:
                raise PluginError(f"passing verdict lacks properties {missing}")
        if not isinstance(self.measurements, dict):
            raise PluginError("Verdict.measurements must be a dict")
        for kind, table in (("property", self.properties), ("measurement", self.measurements)):
            for name, value in table.items():
                if not isinstance(name, str):
                    raise PluginError(f"{kind} name {name!r} is not a string")
                if not isinstance(value, int | float | np.floating | np.integer):
                    raise PluginError(f"{kind} {name!r} is {type(value).__name__}, not a number")
                if not math.isfinite(float(value)):
                    raise PluginError(f"{kind} {name!r} is not finite: {value}")


@dataclass
class Predictions:
    """Batched surrogate output for ``n`` candidates.

    ``p_pass``: probability of passing (``None`` for domains without pass/fail).
    ``values`` / ``sigmas``: predicted mean and standard deviation of each property.
    A NaN anywhere for an item means "no opinion": the item goes to the ground truth.
    """

    n: int
    p_pass: np.ndarray | None = None
    values: dict[str, np.ndarray] = field(default_factory=dict)
    sigmas: dict[str, np.ndarray] = field(default_factory=dict)

    def validate(self, specs: Sequence[PropertySpec], has_pass_fail: bool) -> None:
        """Raise :class:`PluginError` unless shapes and keys match the domain's declaration."""
        if has_pass_fail and (self.p_pass is None or np.shape(self.p_pass) != (self.n,)):
            raise PluginError(f"p_pass must have shape ({self.n},)")
        for spec in specs:
            for kind, table in (("values", self.values), ("sigmas", self.sigmas)):
                arr = table.get(spec.name)
                if arr is None or np.shape(arr) != (self.n,):
                    raise PluginError(f"{kind}[{spec.name!r}] must have shape ({self.n},)")


@runtime_checkable
class Surrogate(Protocol):
    """A fast learned verifier. Trained only from ground-truth labels.

    ``fit`` may be called repeatedly with a growing label set; each call yields a new version
    (the scheduler numbers versions; the surrogate need not).
    """

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None: ...

    def predict(self, candidates: Sequence[Candidate]) -> Predictions: ...


class GroundTruth(abc.ABC):
    """The expensive verifier, split as prepare (pure) -> execute (the tool) -> parse (pure).

    An instance lives on a worker and is reused across many candidates (warm state: a loaded
    library, a started checker). Constructing one must be cheap and must not start its tool
    (the coordinator builds one to read ``resources``): start it on first use.

    ``resources`` declares what one item needs (threads, memory, timeout, isolation, ...; see
    :class:`~foundry.execution.resources.Resources`); set it on the class, or on the instance
    when it depends on the domain's options. ``sandbox_paths``: host paths the verifier must
    read inside a sandbox (a Lean project, a basis-set library). ``pass_env``: environment
    variables it needs from the worker's environment (the child's is otherwise clean).
    """

    name: ClassVar[str] = "ground-truth"
    resources: Resources = Resources()
    sandbox_paths: tuple[str, ...] = ()
    pass_env: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """Version of the underlying tool, recorded with every verdict."""
        return "unknown"

    @abc.abstractmethod
    def prepare(self, candidate: Candidate) -> Any:
        """Turn a candidate into the tool's input (pure; testable without the tool)."""

    @abc.abstractmethod
    def execute(self, job: Any, workdir: str) -> Any:
        """Run the tool. Raise SimulationFailed on crash/non-convergence, SetupError if absent."""

    @abc.abstractmethod
    def parse(self, raw: Any, candidate: Candidate) -> Verdict:
        """Turn the tool's output into a verdict (pure)."""

    def verify(self, candidate: Candidate, workdir: str) -> Verdict:
        return self.parse(self.execute(self.prepare(candidate), workdir), candidate)

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Undo whatever the last item left in warm state (a REPL's environment, caches).

        Called after every item. A verdict must not depend on what the verifier saw before:
        ``check_domain`` verifies A, B, A and B alone and compares.
        """

    def health(self) -> str | None:
        """``None`` when the warm state is fit for the next item, else why it is not (the
        child is then replaced). Called after every item and :meth:`reset`: keep it cheap."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release warm state (processes, handles)."""


class Domain(abc.ABC):
    """A domain plugin: generator, rule layer, featurizer, surrogate, ground truth, reservoir.

    Class attributes declare capabilities as data; the scheduler reads them and never
    special-cases a domain by name.
    """

    #: Short registry name (entry point name in ``foundry.domains``).
    name: ClassVar[str]
    #: Version of the plugin; part of every example's provenance.
    version: ClassVar[str]
    #: JSON schema of ``Candidate.payload``.
    payload_schema: ClassVar[dict[str, Any]]
    #: Properties measured by the ground truth (may be empty for pass/fail domains).
    properties: ClassVar[tuple[PropertySpec, ...]] = ()
    #: Whether the ground truth gives a meaningful pass/fail (spec met, proof checks, tests pass).
    has_pass_fail: ClassVar[bool] = True
    #: Fidelity ladder, cheapest first; the last is the ground truth by default.
    fidelities: ClassVar[tuple[str, ...]] = ("ground-truth",)
    #: The tiers a run uses when its config names neither ``ladder`` nor ``fidelity`` (a
    #: cheap tier the surrogate learns the correction of: xTB before DFT). ``None``: only the
    #: top tier.
    default_ladder: ClassVar[tuple[str, ...] | None] = None
    #: Generator knobs a steering policy may turn, with defaults.
    steering_defaults: ClassVar[dict[str, float]] = {}
    #: The dataclass of this domain's options (basis set, a Lean project, a sandbox policy),
    #: or ``None`` for a domain without options. Options come from ``[domain_options]`` in
    #: the run config, are validated there, recorded with every example, and passed to the
    #: domain's constructor on every worker.
    Options: ClassVar[type | None] = None
    #: The slices ``slice_of`` returns, when they are known up front (circuits: its
    #: topologies): the run's confidence is then shared equally among them. ``None``: slices
    #: are open-ended and shared by order of first appearance.
    slices: ClassVar[tuple[str, ...] | None] = None
    #: True when ``check`` parses hostile input (programs, proofs): it then runs in a guarded
    #: child process under a time limit, and a hang or crash makes the candidate invalid.
    untrusted_check: ClassVar[bool] = False
    #: The steering knob that makes candidates harder (a higher value: harder), which a
    #: curriculum turns to keep the acceptance rate in a band; ``None``: no such knob.
    difficulty_knob: ClassVar[Knob | None] = None

    def __init__(self, options: Any = None) -> None:
        if self.Options is None:
            if options is not None:
                raise TypeError(f"domain {self.name!r} takes no options")
            self.options: Any = None
        else:
            self.options = self.Options() if options is None else options

    @abc.abstractmethod
    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        """Propose ``n`` candidates. Must be deterministic given ``rng``."""

    @abc.abstractmethod
    def check(self, candidate: Candidate) -> str | None:
        """Cheap rule layer: ``None`` when fine, else the reason for rejection."""

    @abc.abstractmethod
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Fixed-length float vectors (n, d) for diversity/drift monitors and simple surrogates."""

    @abc.abstractmethod
    def surrogate(self) -> Surrogate:
        """A fresh, untrained surrogate."""

    @abc.abstractmethod
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        """The verifier for ``fidelity`` (default: the last of ``fidelities``)."""

    def reservoir(self) -> list[Candidate]:
        """Real, published examples (``source='real'``) for mixing and monitoring."""
        return []

    def propose(
        self,
        n: int,
        rng: np.random.Generator,
        steering: Mapping[str, float],
        parents: Sequence[Candidate],
        mutation_scale: float = 1.0,
    ) -> list[Candidate]:
        """``n`` candidates made from verified ``parents`` (mutation, crossover): the next
        generation of a closed loop. Each sets ``parent_ids`` to the ids of the parents it
        came from. ``mutation_scale`` multiplies the domain's own nominal step (1.0); the
        monitors raise it when a loop narrows. Must be deterministic given ``rng``. A
        domain that does not override it cannot run generations."""
        raise NotImplementedError(f"domain {self.name!r} cannot propose from parents")

    @classmethod
    def proposes(cls) -> bool:
        """Whether the domain makes candidates from parents (can run generations)."""
        return cls.propose is not Domain.propose

    def identity(self, payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """What makes two payloads the same example when their JSON differs (a molecule's
        canonical SMILES, not how it was spelt): content ids, and so duplicates, are taken
        over it. ``None`` (the default): the whole payload. Called on every candidate before
        the rule layer, so it must be cheap and return ``None`` for what it cannot read."""
        return None

    def slice_of(self, candidate: Candidate) -> str:
        """The slice a user filters by (topology, element set, difficulty). Each slice gets its
        own certificate, so the guarantee holds for every slice, not only on average."""
        return "all"

    # -- helpers shared by every domain ---------------------------------------------------
    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "version": cls.version,
            "has_pass_fail": cls.has_pass_fail,
            "properties": [
                {"name": p.name, "unit": p.unit, "abs_tol": p.abs_tol, "rel_tol": p.rel_tol}
                for p in cls.properties
            ],
            "fidelities": list(cls.fidelities),
            "steering_defaults": dict(cls.steering_defaults),
            "untrusted_check": cls.untrusted_check,
            "slices": list(cls.slices) if cls.slices is not None else None,
            "proposes": cls.proposes(),
            "difficulty_knob": cls.difficulty_knob.name if cls.difficulty_knob else None,
        }
