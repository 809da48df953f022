"""Circuits domain: analog circuits from topology templates, verified by ngspice.

Candidates are RC/RLC filters, a 2N2222A common-emitter stage and LMV981 op-amp gain stages,
each with a design target and a spec window (see ``templates.py``). The ground truth is an AC
sweep in ngspice (``ground_truth.py``); it measures ``gain_db`` (passband / midband gain) and
``fc_hz`` (the characteristic frequency: -3 dB corner of a low- or high-pass, centre of a
band-pass, upper -3 dB corner of an amplifier) and passes a candidate when both lie in its spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from foundry.contract import Candidate, Domain, GroundTruth, Knob, PropertySpec, Surrogate
from foundry.schema import PayloadValidator

from .ground_truth import CircuitsGroundTruth
from .netlist import KIND_NAMES, PAYLOAD_SCHEMA, TOPOLOGIES, component_value, structural_problem
from .reservoir import reservoir_candidates
from .templates import STEERING_DEFAULTS, generate_payloads, mutate_payloads

__all__ = ["CircuitsDomain", "CircuitsGroundTruth"]

#: Component slots in the feature vector (the largest template has 13 parts).
MAX_COMPONENTS = 16

_VALIDATOR = PayloadValidator(PAYLOAD_SCHEMA)


class CircuitsDomain(Domain):
    """Analog circuits verified by ngspice; pass = measured gain and corner inside the spec."""

    name: ClassVar[str] = "circuits"
    version: ClassVar[str] = "0.1.0"
    payload_schema: ClassVar[dict[str, Any]] = PAYLOAD_SCHEMA
    properties: ClassVar[tuple[PropertySpec, ...]] = (
        PropertySpec("gain_db", "dB", abs_tol=0.5),
        PropertySpec("fc_hz", "Hz", rel_tol=0.05),
    )
    has_pass_fail: ClassVar[bool] = True
    fidelities: ClassVar[tuple[str, ...]] = ("ngspice-ac",)
    steering_defaults: ClassVar[dict[str, float]] = dict(STEERING_DEFAULTS)
    #: more candidates on the edge of their spec window: harder to call, more of them fail
    difficulty_knob: ClassVar[Knob | None] = Knob("marginal_fraction", 0.0, 0.9, 0.1)
    #: certificates per topology: a user who keeps only the BJT amplifiers gets their bound
    slices: ClassVar[tuple[str, ...] | None] = tuple(TOPOLOGIES)

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        return [Candidate(payload=p) for p in generate_payloads(n, rng, steering)]

    def propose(
        self,
        n: int,
        rng: np.random.Generator,
        steering: Mapping[str, float],
        parents: Sequence[Candidate],
        mutation_scale: float = 1.0,
    ) -> list[Candidate]:
        """Children of parents drawn uniformly (with replacement): each the parent's topology
        redesigned for a nearby design frequency (see ``templates.mutate_payloads``)."""
        if not parents:
            return []
        picks = rng.integers(0, len(parents), size=n)
        payloads = mutate_payloads(
            [parents[i].payload for i in picks], rng, steering, mutation_scale
        )
        return [
            Candidate(payload=p, parent_ids=(parents[i].id,))
            for p, i in zip(payloads, picks, strict=True)
        ]

    def slice_of(self, candidate: Candidate) -> str:
        return str(candidate.payload.get("topology", "?"))

    def check(self, candidate: Candidate) -> str | None:
        payload = candidate.payload
        problem = _VALIDATOR(payload)
        if problem is not None:
            return problem
        return structural_problem(payload)

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Topology one-hot, per slot (kind code, log10 value) padded to 16 parts, target, spec."""
        width = len(TOPOLOGIES) + 2 * MAX_COMPONENTS + 8
        out = np.zeros((len(candidates), width), dtype=np.float64)
        for row, cand in enumerate(candidates):
            out[row] = _features(cand.payload, width)
        return out

    def surrogate(self) -> Surrogate:
        from foundry.surrogates.graph import GraphEnsembleSurrogate

        from .graph import to_graph, to_graphs

        return GraphEnsembleSurrogate(
            to_graph=to_graph,
            to_graphs=to_graphs,
            properties=self.properties,
            has_pass_fail=True,
            target_transforms={"fc_hz": "log10"},
            pass_window=spec_window,
            # the networks learn a small residual of the hand analysis: a narrow, shallow
            # model is as accurate as a wide one and four times cheaper to run
            hidden=32,
            layers=2,
            num_threads=1,
            # the residual task saturates early: 600 steps fit 5,000 labels as well as 1,500
            max_steps=600,
        )

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        if fidelity not in (None, *self.fidelities):
            raise ValueError(f"unknown fidelity {fidelity!r}; have {self.fidelities}")
        return CircuitsGroundTruth()

    def reservoir(self) -> list[Candidate]:
        return reservoir_candidates()


def spec_window(candidate: Candidate) -> dict[str, tuple[float | None, float | None]]:
    """The candidate's spec as pass windows: pass/fail *is* both properties inside them."""
    spec = candidate.payload["spec"]
    return {
        "gain_db": (spec["gain_db_min"], spec["gain_db_max"]),
        "fc_hz": (spec["fc_hz_min"], spec["fc_hz_max"]),
    }


def _log_or_zero(value: float | None) -> float:
    return math.log10(value) if value is not None and value > 0 else 0.0


def _features(payload: Mapping[str, Any], width: int) -> np.ndarray:
    vec = np.zeros(width, dtype=np.float64)
    vec[TOPOLOGIES.index(payload["topology"])] = 1.0
    base = len(TOPOLOGIES)
    for i, comp in enumerate(payload["components"][:MAX_COMPONENTS]):
        vec[base + 2 * i] = (KIND_NAMES.index(comp["kind"]) + 1) / len(KIND_NAMES)
        value = component_value(comp)
        if value is not None:
            vec[base + 2 * i + 1] = (
                value / 10.0 if comp["kind"] == "dc_voltage" else math.log10(value)
            )
    base += 2 * MAX_COMPONENTS
    target, spec = payload["target"], payload["spec"]
    vec[base : base + 8] = [
        target["gain_db"] / 20.0,
        _log_or_zero(target["fc_hz"]),
        (spec["gain_db_min"] or 0.0) / 20.0,
        (spec["gain_db_max"] or 0.0) / 20.0,
        _log_or_zero(spec["fc_hz_min"]),
        _log_or_zero(spec["fc_hz_max"]),
        float(spec["fc_hz_min"] is None and spec["fc_hz_max"] is None),
        len(payload["components"]) / MAX_COMPONENTS,
    ]
    return vec
