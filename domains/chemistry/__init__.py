"""Chemistry domain: small organic molecules labelled by Kohn-Sham DFT (PySCF), with GFN2-xTB
(tblite) as the cheap tier of the fidelity ladder and a SchNet ensemble as the surrogate.

Candidates are molecules from RDKit mutation and crossover of real NCI molecules
(``generator.py``), or a user's SMILES or given geometries (``molecules.py``). The ladder runs
xTB first on every candidate (milliseconds, on a worker); the surrogate learns the DFT value
from the xTB value and the 3D structure; DFT (``ground_truth.py``) labels audits, uncertain
items and the training set. Certified: ``gap_ev`` within ``gap_tol_ev`` (0.2 eV) by default
(option ``certified``); HOMO, LUMO, dipole and total energy are recorded with every DFT label.
Slices are element sets (``C,N,O``): a user who keeps only the fluorinated molecules gets
their own bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from foundry.contract import (
    Candidate,
    Domain,
    GroundTruth,
    PropertySpec,
    Surrogate,
    canonical_json,
    example_id,
)
from foundry.schema import PayloadValidator

from .features import descriptor_matrix, molecule_sample
from .generator import STEERING_DEFAULTS, MoleculeGenerator
from .ground_truth import DFTGroundTruth, XTBGroundTruth
from .molecules import (
    PAYLOAD_SCHEMA,
    formula_slice,
    identity_key,
    parse_smiles,
    rule_problem,
)
from .options import ChemistryOptions
from .reservoir import nci_molecules, reservoir_candidates

__all__ = ["ChemistryDomain", "ChemistryOptions", "DFTGroundTruth", "XTBGroundTruth"]

_VALIDATOR = PayloadValidator(PAYLOAD_SCHEMA)


class ChemistryDomain(Domain):
    """Molecules labelled by DFT; xTB the cheap tier; certified HOMO-LUMO gaps."""

    name: ClassVar[str] = "chemistry"
    version: ClassVar[str] = "0.1.0"
    payload_schema: ClassVar[dict[str, Any]] = PAYLOAD_SCHEMA
    #: the class-level declaration (the default options); an instance's ``properties``
    #: follow its options (``certified`` and the tolerances)
    properties: ClassVar[tuple[PropertySpec, ...]] = (PropertySpec("gap_ev", "eV", abs_tol=0.2),)
    has_pass_fail: ClassVar[bool] = False
    fidelities: ClassVar[tuple[str, ...]] = ("xtb", "dft")
    default_ladder: ClassVar[tuple[str, ...] | None] = ("xtb", "dft")
    steering_defaults: ClassVar[dict[str, float]] = dict(STEERING_DEFAULTS)
    Options: ClassVar[type | None] = ChemistryOptions

    def __init__(self, options: ChemistryOptions | None = None) -> None:
        super().__init__(options)
        opts: ChemistryOptions = self.options
        self.properties = tuple(  # type: ignore[misc]
            PropertySpec(name, *opts.tolerance(name)) for name in opts.certified
        )
        self._generator: MoleculeGenerator | None = None

    # -- generation -----------------------------------------------------------------------
    def _parents(self) -> MoleculeGenerator:
        if self._generator is None:
            opts: ChemistryOptions = self.options
            pool = nci_molecules(tuple(opts.elements), opts.max_heavy_atoms)
            if not pool:
                raise ValueError(
                    f"no NCI molecule has only {list(opts.elements)} within "
                    f"{opts.max_heavy_atoms} heavy atoms: no parents to start from"
                )
            parents = [(s, self._example_id({"smiles": s, "name": n})) for s, n in pool]
            self._generator = MoleculeGenerator(parents, opts.elements, opts.max_heavy_atoms)
        return self._generator

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        return [
            Candidate(
                payload={
                    "smiles": child.smiles,
                    "elements": list(child.elements),
                    "coordinates_angstrom": [list(p) for p in child.coordinates_angstrom],
                },
                parent_ids=child.parent_ids,
            )
            for child in self._parents().children(n, rng, steering)
        ]

    # -- rules and identity -----------------------------------------------------------------
    def check(self, candidate: Candidate) -> str | None:
        payload = candidate.payload
        problem = _VALIDATOR(payload)
        if problem is not None:
            return problem
        opts: ChemistryOptions = self.options
        return rule_problem(payload, opts.elements, opts.max_heavy_atoms)

    def identity(self, payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return identity_key(payload)

    def slice_of(self, candidate: Candidate) -> str:
        payload = candidate.payload
        elements = payload.get("elements")
        if not elements and isinstance(payload.get("smiles"), str):
            mol, _ = parse_smiles(payload["smiles"])
            elements = [a.GetSymbol() for a in mol.GetAtoms()] if mol is not None else []
        return formula_slice(elements or [])

    # -- learning -----------------------------------------------------------------------------
    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return descriptor_matrix(candidates)

    def surrogate(self) -> Surrogate:
        from foundry.surrogates.schnet import SchNetEnsembleSurrogate

        opts: ChemistryOptions = self.options
        return SchNetEnsembleSurrogate(
            molecule_sample,
            self.properties,
            n_members=opts.surrogate_members,
            max_steps=opts.surrogate_max_steps,
            min_steps=min(300, opts.surrogate_max_steps),
            num_threads=1,
        )

    # -- verification -------------------------------------------------------------------------
    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        if fidelity not in (None, *self.fidelities):
            raise ValueError(f"unknown fidelity {fidelity!r}; have {self.fidelities}")
        if fidelity == "xtb":
            return XTBGroundTruth(self.options)
        return DFTGroundTruth(self.options)

    def reservoir(self) -> list[Candidate]:
        opts: ChemistryOptions = self.options
        real = reservoir_candidates(opts.elements, opts.max_heavy_atoms)
        for cand in real:  # the ids a run gives them: what children's parent_ids name
            cand.id = self._example_id(cand.payload)
        return real

    def _example_id(self, payload: dict[str, Any]) -> str:
        return example_id(self.name, payload, canonical_json(payload), self.identity)
