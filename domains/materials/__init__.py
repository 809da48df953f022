"""Materials domain: metal crystals and alloys built with ASE, labelled by molecular dynamics
with OpenMM under Girifalco and Weizer's Morse potentials, with a SchNet ensemble on the
periodic neighbour graph as the surrogate.

Candidates are fcc / bcc / hcp cells of Al, Cu, Ni, Ag, Pb, Fe, Cr, Mo, W: supercells,
substitutional alloys, vacancies, strain, and a target temperature (``generator.py``), or a
user's structures (``structures.py``). The ground truth (``ground_truth.py``) relaxes the cell
and runs independent Langevin replicas at the temperature: energy per atom after relaxation,
the Lindemann index at the temperature (melting detected), volume per atom and, for cubic
families, the relaxed lattice constant. Certified by default: ``energy_per_atom_ev`` within
0.02 eV/atom and ``lindemann_index`` within 0.005 + 10 %. Slices are lattice families: a user
who keeps only the bcc crystals gets their own bound. The ``short-md`` tier (one short
replica) is an optional cheap tier of the ladder (``ladder = ["short-md", "md"]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    Knob,
    PropertySpec,
    Surrogate,
    canonical_json,
    example_id,
)
from foundry.schema import PayloadValidator

from .features import SAMPLE_CUTOFF_ANGSTROM, crystal_sample, descriptor_matrix
from .generator import STEERING_DEFAULTS, generate_payloads, mutate_payload
from .ground_truth import MDGroundTruth, ShortMDGroundTruth
from .options import MaterialsOptions
from .reservoir import reservoir_candidates
from .structures import PAYLOAD_SCHEMA, identity_key, lattice_of, rule_problem

__all__ = ["MDGroundTruth", "MaterialsDomain", "MaterialsOptions", "ShortMDGroundTruth"]

_VALIDATOR = PayloadValidator(PAYLOAD_SCHEMA)


class MaterialsDomain(Domain):
    """Metal crystals verified by OpenMM MD; certified energies and Lindemann indices."""

    name: ClassVar[str] = "materials"
    version: ClassVar[str] = "0.1.0"
    payload_schema: ClassVar[dict[str, Any]] = PAYLOAD_SCHEMA
    #: the class-level declaration (the default options); an instance's ``properties``
    #: follow its options (``certified`` and the tolerances)
    properties: ClassVar[tuple[PropertySpec, ...]] = (
        PropertySpec("energy_per_atom_ev", "eV/atom", abs_tol=0.02),
        PropertySpec("lindemann_index", "1", abs_tol=0.005, rel_tol=0.10),
    )
    has_pass_fail: ClassVar[bool] = False
    fidelities: ClassVar[tuple[str, ...]] = ("short-md", "md")
    steering_defaults: ClassVar[dict[str, float]] = dict(STEERING_DEFAULTS)
    Options: ClassVar[type | None] = MaterialsOptions
    #: hotter is harder: near melting the surrogate is least sure and replicas disagree
    difficulty_knob: ClassVar[Knob | None] = Knob("temperature_max_k", 600.0, 5000.0, 200.0)

    def __init__(self, options: MaterialsOptions | None = None) -> None:
        super().__init__(options)
        opts: MaterialsOptions = self.options
        self.properties = tuple(  # type: ignore[misc]
            PropertySpec(name, *opts.tolerance(name)) for name in opts.certified
        )

    # -- generation -----------------------------------------------------------------------
    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        return [Candidate(payload=p) for p in generate_payloads(n, rng, steering, self.options)]

    def propose(
        self,
        n: int,
        rng: np.random.Generator,
        steering: Mapping[str, float],
        parents: Sequence[Candidate],
        mutation_scale: float = 1.0,
    ) -> list[Candidate]:
        """Children of parents drawn uniformly (with replacement): each its parent with one
        substitution, vacancy, temperature move or strain (more when the scale is raised)."""
        if not parents:
            return []
        out = []
        for i in rng.integers(0, len(parents), size=n):
            parent = parents[int(i)]
            child = mutate_payload(parent.payload, rng, steering, self.options, mutation_scale)
            out.append(Candidate(payload=child, parent_ids=(parent.id,)))
        return out

    # -- rules and identity -----------------------------------------------------------------
    def check(self, candidate: Candidate) -> str | None:
        problem = _VALIDATOR(candidate.payload)
        if problem is not None:
            return problem
        return rule_problem(candidate.payload, self.options)

    def identity(self, payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return identity_key(payload)

    def slice_of(self, candidate: Candidate) -> str:
        return lattice_of(candidate.payload)

    # -- learning -----------------------------------------------------------------------------
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return descriptor_matrix(candidates)

    def surrogate(self) -> Surrogate:
        from foundry.surrogates.schnet import SchNetEnsembleSurrogate

        opts: MaterialsOptions = self.options
        return SchNetEnsembleSurrogate(
            crystal_sample,
            self.properties,
            n_members=opts.surrogate_members,
            max_steps=opts.surrogate_max_steps,
            min_steps=min(300, opts.surrogate_max_steps),
            cutoff_angstrom=min(opts.surrogate_cutoff_angstrom, SAMPLE_CUTOFF_ANGSTROM),
            intensive=True,
            num_threads=1,
        )

    # -- verification -------------------------------------------------------------------------
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        if fidelity not in (None, *self.fidelities):
            raise ValueError(f"unknown fidelity {fidelity!r}; have {self.fidelities}")
        if fidelity == "short-md":
            return ShortMDGroundTruth(self.options)
        return MDGroundTruth(self.options)

    def reservoir(self) -> list[Candidate]:
        opts: MaterialsOptions = self.options
        real = reservoir_candidates(opts.elements, opts.lattices)
        for cand in real:  # the ids a run gives them: what children's parent_ids name
            cand.id = example_id(self.name, cand.payload, canonical_json(cand.payload),
                                 self.identity)
        return real
