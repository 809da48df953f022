"""Conformance suite for domain plugins, in the manner of scikit-learn's ``check_estimator``.

A plugin author (in-tree or third-party) proves a domain honours :mod:`foundry.contract` by
running::

    from foundry.testing import check_domain
    check_domain(MyDomain())

or, to get one pytest item per check with a readable id::

    from foundry.testing import parametrize_with_checks

    @parametrize_with_checks([MyDomain()])
    def test_conformance(check):
        check()

Every check is a small named zero-argument callable. A failing check raises
:class:`DomainCheckError`, which names the check and the domain so that the message alone says
what to fix. ``check_domain`` stops at the first failure (as ``check_estimator`` does): later
checks often depend on earlier ones (no payloads, no features), so one root cause would
otherwise be reported many times.

The suite is sized for a millisecond-scale domain (well under five seconds). The ground truth
is run on a handful of candidates only; pass ``ground_truth=False`` where its tool is not
installed (for example ngspice on a laptop).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import numpy as np

from foundry.contract import (
    SOURCES,
    Candidate,
    Domain,
    GroundTruth,
    Knob,
    PluginError,
    Predictions,
    PropertySpec,
    SetupError,
    SimulationFailed,
    Surrogate,
    Verdict,
    canonical_json,
)

if TYPE_CHECKING:
    import pytest

__all__ = [
    "DomainCheckError",
    "check_domain",
    "domain_checks",
    "parametrize_with_checks",
]

#: How many rule-passing candidates are sent to the ground truth. Small, so that the suite stays
#: fast for a millisecond domain and bearable for a second-scale one.
N_VERIFY = 8

Check = Callable[[], None]


class DomainCheckError(AssertionError, PluginError):
    """A conformance check failed: ``check_name`` on ``domain_name``, because ``message``.

    An ``AssertionError`` so that pytest reports it as a test failure, and a ``PluginError``
    because that is what it means to the foundry: the plugin broke its contract.
    """

    def __init__(self, check_name: str, domain_name: str, message: str) -> None:
        super().__init__(f"{check_name} failed for domain {domain_name!r}: {message}")
        self.check_name = check_name
        self.domain_name = domain_name
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would re-call __init__ with the formatted text only.
        return (type(self), (self.check_name, self.domain_name, self.message))


class _Fail(Exception):
    """Raised inside a check; the runner turns it into a DomainCheckError."""


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise _Fail(message)


def _domain_name(domain: Domain) -> str:
    name = getattr(domain, "name", None)
    return name if isinstance(name, str) and name else type(domain).__name__


def _fingerprint(candidate: Any) -> str:
    """Comparable text of a candidate, tolerant of payloads that are not JSON."""
    try:
        return f"{candidate.source}|{canonical_json(candidate.payload)}"
    except (TypeError, ValueError, AttributeError):
        return repr(candidate)


def _same(a: Any, b: Any) -> bool:
    """Structural equality that copes with numpy arrays and plain objects without ``__eq__``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a).__eq__ is object.__eq__ and hasattr(a, "__dict__"):
        return _same(vars(a), vars(b))
    try:
        return bool(a == b)
    except Exception:
        return False


def _schema_error(schema: dict[str, Any], payload: Any) -> str | None:
    """The most relevant reason ``payload`` breaks ``schema``, or ``None`` when it matches."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is None:
        return None
    return f"at {'/'.join(map(str, error.path)) or '<root>'}: {error.message}"


class _Suite:
    """Shared, lazily computed state of one run: generated batches, ground-truth labels.

    Checks are independent callables, but generating and verifying once keeps the whole
    suite cheap. Every accessor returns deep copies so a check (or a mutating plugin) cannot
    corrupt what the next check sees.
    """

    def __init__(self, domain: Domain, *, n: int, seed: int) -> None:
        if n < 2:
            raise ValueError(f"n must be >= 2 (majority and batch checks need it), got {n}")
        self.domain = domain
        self.n = n
        self.seed = seed
        self._batches: dict[tuple[int, int], list[Candidate]] = {}
        self._labels: list[tuple[Candidate, Verdict | SimulationFailed]] | None = None

    # -- generation ----------------------------------------------------------------------
    def generate(self, seed: int, n: int | None = None) -> list[Candidate]:
        n = self.n if n is None else n
        key = (seed, n)
        if key not in self._batches:
            steering = dict(self.domain.steering_defaults)
            out = self.domain.generate(n, np.random.default_rng(seed), steering)
            self._batches[key] = list(out)
        return copy.deepcopy(self._batches[key])

    def batch(self, offset: int = 0) -> list[Candidate]:
        """The standard batch of the run (``offset`` selects an independent one)."""
        batch = self.generate(self.seed + offset)
        _require(
            len(batch) == self.n and all(isinstance(c, Candidate) for c in batch),
            f"generate({self.n}, ...) did not return {self.n} Candidate objects "
            "(see check_generate_count)",
        )
        return batch

    def accepted(self, offset: int = 0) -> list[Candidate]:
        """Rule-passing candidates: the only ones the scheduler sends further."""
        accepted = [c for c in self.batch(offset) if self.domain.check(c) is None]
        _require(
            accepted, "no generated candidate passes check() (see check_rule_accepts_generated)"
        )
        return accepted

    # -- ground truth --------------------------------------------------------------------
    def labels(self) -> list[tuple[Candidate, Verdict | SimulationFailed]]:
        """Verify up to ``N_VERIFY`` accepted candidates once; reuse the outcome."""
        if self._labels is None:
            labels: list[tuple[Candidate, Verdict | SimulationFailed]] = []
            gt = self.domain.ground_truth()
            try:
                with tempfile.TemporaryDirectory(prefix="foundry-check-") as tmp:
                    for i, cand in enumerate(self.accepted()[:N_VERIFY]):
                        workdir = Path(tmp) / f"c{i}"
                        workdir.mkdir()
                        try:
                            outcome: Verdict | SimulationFailed = gt.verify(cand, str(workdir))
                        except SimulationFailed as exc:
                            outcome = exc
                        except SetupError as exc:
                            raise _Fail(
                                f"ground truth is not set up here ({exc}); install its tool or "
                                "run the suite with ground_truth=False"
                            ) from exc
                        except Exception as exc:
                            raise _Fail(
                                f"verify raised {type(exc).__name__} ({exc}) for {cand.payload!r}; "
                                "a crash must surface as SimulationFailed, a missing tool as "
                                "SetupError, and a rejection as a Verdict"
                            ) from exc
                        labels.append((cand, outcome))
            finally:
                gt.close()
            self._labels = labels
        return list(self._labels)


# -- the checks ----------------------------------------------------------------------------
# Each takes the shared _Suite and raises _Fail (or anything else) on a contract breach.

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name_and_version(s: _Suite) -> None:
    """Registry name and plugin version are recorded with every example."""
    name, version = getattr(s.domain, "name", None), getattr(s.domain, "version", None)
    _require(
        isinstance(name, str) and _IDENTIFIER.fullmatch(name),
        f"name must be an identifier-like str (entry point name), got {name!r}",
    )
    _require(
        isinstance(version, str) and version.strip(),
        f"version must be a non-empty str, got {version!r}",
    )
    _require(isinstance(s.domain.has_pass_fail, bool), "has_pass_fail must be a bool")
    json.dumps(s.domain.describe())  # what the ledger stores about the domain


def check_payload_schema(s: _Suite) -> None:
    """The payload schema is what the ledger and third parties rely on to read candidates."""
    schema = getattr(s.domain, "payload_schema", None)
    _require(
        isinstance(schema, dict), f"payload_schema must be a dict, got {type(schema).__name__}"
    )
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _Fail(f"payload_schema is not a valid JSON schema: {exc.message}") from exc
    _require(
        schema.get("type") == "object",
        f"payload_schema must have type 'object', got {schema.get('type')!r}",
    )


def check_properties(s: _Suite) -> None:
    """Properties are keyed by name in verdicts and predictions, so names must be unique."""
    props = s.domain.properties
    _require(isinstance(props, tuple), f"properties must be a tuple, got {type(props).__name__}")
    bad = [p for p in props if not isinstance(p, PropertySpec)]
    _require(not bad, f"properties must hold PropertySpec objects, got {bad!r}")
    names = [p.name for p in props]
    dupes = sorted({x for x in names if names.count(x) > 1})
    _require(not dupes, f"duplicate property names {dupes}")
    _require(
        s.domain.has_pass_fail or props,
        "a domain without pass/fail must declare at least one property (else it measures nothing)",
    )


def check_fidelities(s: _Suite) -> None:
    """The fidelity ladder names the verifiers ``ground_truth(fidelity)`` accepts."""
    fids = s.domain.fidelities
    _require(
        isinstance(fids, tuple) and fids, f"fidelities must be a non-empty tuple, got {fids!r}"
    )
    _require(
        all(isinstance(f, str) and f for f in fids), f"fidelities must be non-empty strs: {fids!r}"
    )
    _require(len(set(fids)) == len(fids), f"duplicate fidelities in {fids!r}")


def check_options(s: _Suite) -> None:
    """Options travel to workers as JSON and are rebuilt there: they must round-trip."""
    options_type = type(s.domain).Options
    if options_type is None:
        _require(
            getattr(s.domain, "options", None) is None,
            "a domain without Options must have options None",
        )
        return
    import dataclasses

    from foundry.options import options_json, parse_options

    _require(dataclasses.is_dataclass(options_type), "Options must be a dataclass")
    _require(
        isinstance(s.domain.options, options_type),
        f"domain.options is {type(s.domain.options).__name__}, not {options_type.__name__}",
    )
    text = options_json(s.domain.options)
    rebuilt = parse_options(type(s.domain), json.loads(text))
    _require(
        rebuilt == s.domain.options,
        f"options do not survive JSON: {s.domain.options!r} came back as {rebuilt!r}",
    )


def check_steering_defaults(s: _Suite) -> None:
    """Steering knobs are numbers a policy can turn; the monitor stores them as floats."""
    knobs = s.domain.steering_defaults
    _require(
        isinstance(knobs, dict), f"steering_defaults must be a dict, got {type(knobs).__name__}"
    )
    for key, value in knobs.items():
        _require(isinstance(key, str), f"steering_defaults key {key!r} is not a str")
        _require(
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
            f"steering_defaults[{key!r}] must be a finite float, got {value!r}",
        )


def check_difficulty_knob(s: _Suite) -> None:
    """A curriculum turns ``difficulty_knob`` through the steering: it must be a knob the
    domain has, with a range and a positive step."""
    knob = s.domain.difficulty_knob
    if knob is None:
        return
    _require(isinstance(knob, Knob), f"difficulty_knob must be a Knob, got {knob!r}")
    _require(
        knob.name in s.domain.steering_defaults,
        f"difficulty_knob {knob.name!r} is not in steering_defaults",
    )
    _require(
        knob.low < knob.high and knob.step > 0,
        f"difficulty_knob {knob.name!r} needs low < high and step > 0, got {knob}",
    )


def check_propose(s: _Suite) -> None:
    """Generations come from ``propose``: n Candidates, deterministic given rng, each naming
    only parents it was given, in the schema, mostly rule-valid (skipped for a domain that
    does not propose)."""
    if not s.domain.proposes():
        return
    parents = s.accepted()
    for i, p in enumerate(parents):
        p.id = p.id or f"parent-{i}"
    steering = dict(s.domain.steering_defaults)
    for scale in (1.0, 4.0):
        out = s.domain.propose(s.n, np.random.default_rng(s.seed), steering, parents, scale)
        _require(
            isinstance(out, list)
            and len(out) == s.n
            and all(isinstance(c, Candidate) for c in out),
            f"propose({s.n}, ...) must return {s.n} Candidate objects",
        )
        again = s.domain.propose(s.n, np.random.default_rng(s.seed), steering, parents, scale)
        _require(
            [_fingerprint(c) for c in out] == [_fingerprint(c) for c in again],
            f"two propose() calls with rng seeded {s.seed} gave different candidates",
        )
        known = {p.id for p in parents}
        for c in out:
            _require(
                c.parent_ids and set(c.parent_ids) <= known,
                f"a proposed candidate names parents {c.parent_ids!r}, not ids of those given",
            )
            error = _schema_error(s.domain.payload_schema, c.payload)
            _require(error is None, f"proposed payload does not match payload_schema: {error}")
        n_ok = sum(s.domain.check(c) is None for c in out)
        _require(
            n_ok > len(out) / 2,
            f"check() accepts only {n_ok}/{len(out)} proposed candidates (mutation_scale {scale})",
        )


def check_generate_count(s: _Suite) -> None:
    """The scheduler sizes batches; a generator that returns more or fewer breaks accounting."""
    for n in (s.n, 1):
        out = s.generate(s.seed, n)
        _require(isinstance(out, list), f"generate must return a list, got {type(out).__name__}")
        _require(len(out) == n, f"generate({n}, ...) returned {len(out)} candidates")
        for c in out:
            _require(
                isinstance(c, Candidate), f"generate returned a {type(c).__name__}, not a Candidate"
            )
            _require(
                isinstance(c.payload, dict),
                f"payload must be a dict, got {type(c.payload).__name__}",
            )
            _require(c.source in SOURCES, f"source {c.source!r} is not one of {SOURCES}")


def check_generate_json(s: _Suite) -> None:
    """Payloads are stored as JSON and content ids hash that JSON: it must round-trip exactly."""
    for c in s.batch():
        try:
            text = canonical_json(c.payload)
        except (TypeError, ValueError) as exc:
            raise _Fail(f"payload is not JSON-serialisable ({exc}): {c.payload!r}") from exc
        _require(
            json.loads(text) == c.payload,
            "payload changes in a JSON round trip (tuples? numpy scalars?), so a candidate read "
            f"back from the ledger differs from the one generated: {c.payload!r}",
        )


def check_generate_schema(s: _Suite) -> None:
    """Generated payloads must match the schema the domain publishes."""
    for c in s.batch():
        error = _schema_error(s.domain.payload_schema, c.payload)
        _require(error is None, f"payload {c.payload!r} does not match payload_schema: {error}")


def check_generate_deterministic(s: _Suite) -> None:
    """Reproducible runs need generate to depend on ``rng`` only (no global RNG, no clock)."""
    first = [_fingerprint(c) for c in s.generate(s.seed)]
    steering = dict(s.domain.steering_defaults)
    again = s.domain.generate(s.n, np.random.default_rng(s.seed), steering)
    _require(
        first == [_fingerprint(c) for c in again],
        f"two calls with rng seeded {s.seed} gave different candidates",
    )


def check_generate_seed_sensitive(s: _Suite) -> None:
    """A generator that ignores ``rng`` produces the same batch forever."""
    a = [_fingerprint(c) for c in s.generate(s.seed)]
    b = [_fingerprint(c) for c in s.generate(s.seed + 1)]
    _require(a != b, f"seeds {s.seed} and {s.seed + 1} gave identical batches: is rng used?")


def check_identity(s: _Suite) -> None:
    """``identity`` (what makes two payloads the same example) is JSON, deterministic, and
    tells apart payloads the generator means to be different."""
    keys = []
    for c in s.batch():
        key = s.domain.identity(c.payload)
        if key is None:
            keys.append(canonical_json(c.payload))
            continue
        _require(isinstance(key, Mapping), f"identity() must return a mapping or None: {key!r}")
        try:
            text = canonical_json(key)
        except (TypeError, ValueError) as exc:
            raise _Fail(f"identity() of {c.payload!r} is not JSON: {exc}") from exc
        again = s.domain.identity(json.loads(canonical_json(c.payload)))
        _require(
            again is not None and canonical_json(again) == text,
            f"identity() of {c.payload!r} changes between calls",
        )
        keys.append(text)
    distinct = len({canonical_json(c.payload) for c in s.batch()})
    _require(
        len(set(keys)) * 2 > distinct,
        f"identity() maps {distinct} distinct generated payloads to {len(set(keys))} examples",
    )


def check_rule_accepts_generated(s: _Suite) -> None:
    """A rule layer that rejects most of its own generator's output wastes the pipeline."""
    results = [s.domain.check(c) for c in s.batch()]
    for r in results:
        _require(
            r is None or (isinstance(r, str) and r.strip()),
            f"check() must return None or a non-empty reason str, got {r!r}",
        )
    n_ok = sum(r is None for r in results)
    reasons = sorted({r for r in results if r is not None})[:3]
    _require(
        n_ok > len(results) / 2,
        f"check() accepts only {n_ok}/{len(results)} generated candidates; reasons: {reasons}",
    )


def check_rule_rejects_broken(s: _Suite) -> None:
    """A malformed payload is a rejection with a reason, never a crash of the rule layer."""
    broken = Candidate(payload={})
    try:
        reason = s.domain.check(broken)
    except Exception as exc:
        raise _Fail(
            f"check() raised {type(exc).__name__} on payload {{}} instead of returning "
            f"a reason: {exc}"
        ) from exc
    _require(
        isinstance(reason, str) and reason.strip(),
        f"check() must reject payload {{}} with a non-empty reason str, got {reason!r}",
    )


def _features(s: _Suite, candidates: Sequence[Candidate]) -> np.ndarray:
    x = s.domain.featurize(candidates)
    _require(
        isinstance(x, np.ndarray), f"featurize must return a numpy array, got {type(x).__name__}"
    )
    _require(x.dtype.kind == "f", f"featurize must return floats, got dtype {x.dtype}")
    _require(
        x.ndim == 2 and x.shape[0] == len(candidates) and x.shape[1] >= 1,
        f"featurize of {len(candidates)} candidates has shape {x.shape}, "
        f"want ({len(candidates)}, d>=1)",
    )
    bad_rows = sorted(set(np.argwhere(~np.isfinite(x))[:, 0].tolist()))
    _require(not bad_rows, f"featurize returned non-finite values in rows {bad_rows}")
    return x


def check_featurize_shape(s: _Suite) -> None:
    """Monitors and simple surrogates need a finite (n, d) float matrix."""
    _features(s, s.batch())


def check_featurize_deterministic(s: _Suite) -> None:
    """Drift and diversity metrics compare features across time: same input, same vector."""
    batch = s.batch()
    _require(
        np.array_equal(_features(s, batch), _features(s, batch)),
        "featurize gave different results twice",
    )


def check_featurize_batch_independent(s: _Suite) -> None:
    """Features must not depend on the batch (no per-batch padding or scaling)."""
    batch = s.batch()
    full = _features(s, batch)
    for lo, hi in ((0, 1), (1, 3), (0, len(batch) // 2)):
        part = _features(s, batch[lo:hi])
        _require(
            part.shape[1] == full.shape[1],
            f"featurize width depends on the batch: d={part.shape[1]} for {hi - lo} candidates, "
            f"d={full.shape[1]} for {len(batch)}",
        )
        _require(
            np.allclose(part, full[lo:hi], rtol=1e-9, atol=1e-12),
            f"rows {lo}:{hi} differ when featurized alone instead of in the full batch",
        )


def check_reservoir(s: _Suite) -> None:
    """Reservoir items are mixed into training data as ``real``: they must be valid and tagged."""
    items = s.domain.reservoir()
    _require(isinstance(items, list), f"reservoir must return a list, got {type(items).__name__}")
    for c in items:
        _require(
            isinstance(c, Candidate), f"reservoir returned a {type(c).__name__}, not a Candidate"
        )
        _require(
            c.source == "real",
            f"reservoir candidate has source {c.source!r}, want 'real': {c.payload!r}",
        )
        try:
            canonical_json(c.payload)
        except (TypeError, ValueError) as exc:
            raise _Fail(
                f"reservoir payload is not JSON-serialisable ({exc}): {c.payload!r}"
            ) from exc
        error = _schema_error(s.domain.payload_schema, c.payload)
        _require(
            error is None,
            f"reservoir payload {c.payload!r} does not match payload_schema: {error}",
        )
        reason = s.domain.check(c)
        _require(reason is None, f"check() rejects reservoir payload {c.payload!r}: {reason}")
    if items:
        width = _features(s, s.batch()).shape[1]
        got = _features(s, items).shape[1]
        _require(got == width, f"reservoir features have d={got}, generated ones d={width}")


def check_surrogate_fresh(s: _Suite) -> None:
    """Each call must give a new untrained surrogate: versions must not share fitted state."""
    a, b = s.domain.surrogate(), s.domain.surrogate()
    _require(
        isinstance(a, Surrogate),
        f"surrogate() returned {type(a).__name__}, which lacks fit/predict",
    )
    _require(a is not b, "surrogate() returned the same object twice; it must build a fresh one")


def check_ground_truth_identity(s: _Suite) -> None:
    """Every verdict records the verifier's name and tool version; every fidelity must resolve."""
    for fidelity in (None, *s.domain.fidelities):
        gt = s.domain.ground_truth(fidelity)
        try:
            _require(
                isinstance(gt, GroundTruth),
                f"ground_truth({fidelity!r}) returned {type(gt).__name__}, not a GroundTruth",
            )
            _require(
                isinstance(gt.name, str) and gt.name,
                f"ground truth name must be a non-empty str, got {gt.name!r}",
            )
            _require(
                isinstance(gt.version, str) and gt.version,
                f"ground truth version must be a non-empty str, got {gt.version!r}",
            )
        finally:
            if isinstance(gt, GroundTruth):
                gt.close()


def check_ground_truth_resources(s: _Suite) -> None:
    """Resources are data the executor reads in the coordinator, before any worker starts:
    building a GroundTruth must be cheap (the tool starts on first use)."""
    from foundry.execution.resources import Resources

    for fidelity in s.domain.fidelities:
        started = time.perf_counter()
        gt = s.domain.ground_truth(fidelity)
        built_s = time.perf_counter() - started
        try:
            _require(
                isinstance(gt.resources, Resources),
                f"ground_truth({fidelity!r}).resources is {type(gt.resources).__name__}, "
                "not foundry.execution.resources.Resources",
            )
            _require(
                built_s < 2.0,
                f"ground_truth({fidelity!r}) took {built_s:.1f} s to build; start the tool "
                "lazily, on the first verify",
            )
            for attr in ("sandbox_paths", "pass_env"):
                value = getattr(gt, attr)
                _require(
                    isinstance(value, tuple) and all(isinstance(v, str) for v in value),
                    f"{attr} must be a tuple of str, got {value!r}",
                )
        finally:
            gt.close()


def check_ground_truth_prepare_pure(s: _Suite) -> None:
    """prepare is pure so it can be tested and cached without the tool."""
    gt = s.domain.ground_truth()
    try:
        for c in s.accepted()[:3]:
            before = copy.deepcopy(c.payload)
            first, second = gt.prepare(c), gt.prepare(c)
            _require(c.payload == before, f"prepare mutated the candidate payload {before!r}")
            _require(
                _same(first, second),
                f"prepare gave different jobs for the same candidate {before!r}",
            )
    finally:
        gt.close()


def check_ground_truth_verdicts(s: _Suite) -> None:
    """Verdicts carry the declared properties; only SimulationFailed may escape verify."""
    labels = s.labels()
    declared = {p.name for p in s.domain.properties}
    for cand, outcome in labels:
        if isinstance(outcome, SimulationFailed):
            continue
        _require(
            isinstance(outcome, Verdict),
            f"verify returned {type(outcome).__name__}, not a Verdict, for {cand.payload!r}",
        )
        try:
            outcome.validate(s.domain.properties)
        except PluginError as exc:
            raise _Fail(f"bad verdict for {cand.payload!r}: {exc}") from exc
        extra = sorted(set(outcome.properties) - declared)
        _require(not extra, f"verdict reports undeclared properties {extra} for {cand.payload!r}")
        _require(
            s.domain.has_pass_fail or outcome.passed,
            "a domain without pass/fail must return passed=True for a successful simulation",
        )
    failed = [o for _, o in labels if isinstance(o, SimulationFailed)]
    _require(
        len(failed) < len(labels),
        f"all {len(labels)} verifications raised SimulationFailed, "
        f"e.g. {failed[0] if failed else ''}",
    )


def _verify_warm(gt: GroundTruth, candidate: Candidate, workdir: str) -> Any:
    """One item as a warm worker runs it: verify, clean the work dir, reset."""
    from foundry.execution.runner import clean_directory

    try:
        outcome: Any = gt.verify(candidate, workdir)
    except SimulationFailed as exc:
        outcome = exc
    clean_directory(workdir)
    gt.reset()
    return outcome


def _same_outcome(a: Any, b: Any, specs: Sequence[PropertySpec]) -> str | None:
    """Why two outcomes of one candidate differ (None when they agree), within 1 % of each
    property's tolerance (numerical noise of a re-run is not state)."""
    if isinstance(a, SimulationFailed) or isinstance(b, SimulationFailed):
        same = isinstance(a, SimulationFailed) and isinstance(b, SimulationFailed)
        return None if same else f"{a!r} vs {b!r}"
    if a.passed != b.passed:
        return f"passed={a.passed} vs passed={b.passed}"
    if a.properties.keys() != b.properties.keys():
        return f"properties {sorted(a.properties)} vs {sorted(b.properties)}"
    tolerances = {p.name: p for p in specs}
    for name, value in a.properties.items():
        other = b.properties[name]
        spec = tolerances.get(name)
        tol = 0.01 * float(spec.tolerance(value)) if spec else 1e-9 * max(abs(value), 1.0)
        if abs(value - other) > tol:
            return f"{name}={value!r} vs {other!r}"
    if a.measurements.keys() != b.measurements.keys():
        return f"measurements {sorted(a.measurements)} vs {sorted(b.measurements)}"
    for name, value in a.measurements.items():
        other = b.measurements[name]
        if not math.isclose(value, other, rel_tol=1e-6, abs_tol=1e-9):
            return f"measurement {name}={value!r} vs {other!r}"
    return None


def check_ground_truth_order_independent(s: _Suite) -> None:
    """A verdict must not depend on what the warm verifier saw before: verify A, B, A in one
    instance (reset between items, as workers do) and B in a fresh one; all must agree."""
    accepted = s.accepted()
    distinct = {_fingerprint(c): c for c in accepted}
    _require(len(distinct) >= 2, "need two distinct rule-passing candidates to compare")
    a, b = list(distinct.values())[:2]
    with tempfile.TemporaryDirectory(prefix="foundry-order-") as tmp:
        warm = s.domain.ground_truth()
        try:
            first_a = _verify_warm(warm, copy.deepcopy(a), tmp)
            after_a = _verify_warm(warm, copy.deepcopy(b), tmp)
            again_a = _verify_warm(warm, copy.deepcopy(a), tmp)
        finally:
            warm.close()
        fresh = s.domain.ground_truth()
        try:
            alone_b = _verify_warm(fresh, copy.deepcopy(b), tmp)
        finally:
            fresh.close()
    specs = s.domain.properties
    for what, x, y in (
        ("A before and after B", first_a, again_a),
        ("B after A and B alone", after_a, alone_b),
    ):
        why = _same_outcome(x, y, specs)
        _require(
            why is None,
            f"verdicts depend on order ({what}: {why}); warm state leaks between items - "
            "undo it in GroundTruth.reset()",
        )


def check_surrogate_fit_predict(s: _Suite) -> None:
    """A surrogate trained on real labels must predict well-formed, finite numbers.

    Properties that no training verdict measured may be NaN ("no opinion", as the contract
    allows); everything else must be finite, with probabilities in [0, 1] and sigmas >= 0.
    """
    pairs = [(c, v) for c, v in s.labels() if isinstance(v, Verdict)]
    _require(
        pairs, "no successful verdicts to train the surrogate on (see check_ground_truth_verdicts)"
    )
    surrogate = s.domain.surrogate()
    surrogate.fit([c for c, _ in pairs], [v for _, v in pairs])
    new = s.accepted(offset=2)
    pred = surrogate.predict(new)
    _require(
        isinstance(pred, Predictions), f"predict returned {type(pred).__name__}, not Predictions"
    )
    _require(pred.n == len(new), f"Predictions.n is {pred.n} for {len(new)} candidates")
    try:
        pred.validate(s.domain.properties, s.domain.has_pass_fail)
    except PluginError as exc:
        raise _Fail(f"malformed predictions: {exc}") from exc
    if s.domain.has_pass_fail:
        p = np.asarray(pred.p_pass, dtype=float)
        _require(
            np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all(),
            f"p_pass must be finite probabilities, got {p}",
        )
    measured = {name for _, v in pairs for name in v.properties}
    for spec in s.domain.properties:
        values = np.asarray(pred.values[spec.name], dtype=float)
        sigmas = np.asarray(pred.sigmas[spec.name], dtype=float)
        if spec.name not in measured:
            # No label measured it (e.g. only partial failing verdicts): NaN, "no opinion", is
            # the honest answer, but infinities are still wrong.
            _require(not np.isinf(values).any(), f"values[{spec.name!r}] has infinities")
            continue
        _require(np.isfinite(values).all(), f"values[{spec.name!r}] not finite: {values}")
        _require(
            np.isfinite(sigmas).all() and (sigmas >= 0).all(),
            f"sigmas[{spec.name!r}] must be finite and >= 0: {sigmas}",
        )


_BASIC_CHECKS: tuple[Callable[[_Suite], None], ...] = (
    check_name_and_version,
    check_payload_schema,
    check_properties,
    check_fidelities,
    check_steering_defaults,
    check_difficulty_knob,
    check_options,
    check_generate_count,
    check_generate_json,
    check_generate_schema,
    check_generate_deterministic,
    check_generate_seed_sensitive,
    check_identity,
    check_rule_accepts_generated,
    check_rule_rejects_broken,
    check_featurize_shape,
    check_featurize_deterministic,
    check_featurize_batch_independent,
    check_reservoir,
    check_propose,
    check_surrogate_fresh,
)
_GROUND_TRUTH_CHECKS: tuple[Callable[[_Suite], None], ...] = (
    check_ground_truth_identity,
    check_ground_truth_resources,
    check_ground_truth_prepare_pure,
    check_ground_truth_verdicts,
    check_ground_truth_order_independent,
    check_surrogate_fit_predict,
)


def _bind(check: Callable[[_Suite], None], suite: _Suite) -> Check:
    name = check.__name__

    @functools.wraps(check)
    def run() -> None:
        try:
            check(suite)
        except DomainCheckError:
            raise
        except _Fail as exc:
            raise DomainCheckError(name, _domain_name(suite.domain), str(exc)) from exc
        except Exception as exc:
            raise DomainCheckError(
                name, _domain_name(suite.domain), f"unexpected {type(exc).__name__}: {exc}"
            ) from exc

    return run


def domain_checks(
    domain: Domain, *, ground_truth: bool = True, n: int = 16, seed: int = 0
) -> list[tuple[str, Check]]:
    """The conformance checks for ``domain`` as ``(name, check)`` pairs, in dependency order.

    The checks share one lazily filled cache (generated batches, ground-truth labels), so
    running them all costs about one generation and ``N_VERIFY`` verifications.
    ``ground_truth=False`` leaves out the checks that run the verifier.
    """
    suite = _Suite(domain, n=n, seed=seed)
    checks = _BASIC_CHECKS + (_GROUND_TRUTH_CHECKS if ground_truth else ())
    return [(c.__name__, _bind(c, suite)) for c in checks]


def check_domain(domain: Domain, *, ground_truth: bool = True, n: int = 16, seed: int = 0) -> None:
    """Run every conformance check; raise :class:`DomainCheckError` at the first failure.

    ``n`` is the batch size generated per seed; ``seed`` makes the run reproducible.
    """
    for _, check in domain_checks(domain, ground_truth=ground_truth, n=n, seed=seed):
        check()


def parametrize_with_checks(
    domains: Iterable[Domain], *, ground_truth: bool = True, n: int = 16, seed: int = 0
) -> pytest.MarkDecorator:
    """A ``pytest.mark.parametrize`` over every (domain, check), with ids ``<domain>-<check>``.

    The decorated test takes one argument, ``check``, and calls it::

        @parametrize_with_checks([MyDomain()])
        def test_conformance(check):
            check()
    """
    import pytest  # not a runtime dependency of the foundry

    params = [
        pytest.param(check, id=f"{_domain_name(domain)}-{name}")
        for domain in domains
        for name, check in domain_checks(domain, ground_truth=ground_truth, n=n, seed=seed)
    ]
    return pytest.mark.parametrize("check", params)
