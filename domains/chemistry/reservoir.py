"""Real molecules: the NCI open database sample shipped inside RDKit (``Data/NCI/first_5K.smi``,
the first 5,000 structures of the NCI/CADD release), filtered to what the domain allows.

They are the generator's first parents and the real data of mixing and monitoring. Each keeps
its NCI serial number as ``name``; multi-fragment records (salts, mixtures), charged species
and radicals are left out.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

from foundry.contract import Candidate

from .molecules import _rdkit, parse_smiles

__all__ = ["NCI_FILE", "nci_molecules"]

NCI_FILE = os.path.join("Data", "NCI", "first_5K.smi")


def _nci_path() -> str:
    import rdkit

    return os.path.join(os.path.dirname(rdkit.__file__), NCI_FILE)


@functools.lru_cache(maxsize=8)
def nci_molecules(
    allowed_elements: tuple[str, ...], max_heavy_atoms: int
) -> tuple[tuple[str, str], ...]:
    """(canonical SMILES, NCI serial) of every usable NCI molecule within the limits."""
    chem = _rdkit()
    allowed = set(allowed_elements) | {"H"}
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    with open(_nci_path()) as fh:
        for line in fh:
            fields = line.split()
            if len(fields) < 2:
                continue
            mol, _ = parse_smiles(fields[0])
            if mol is None or mol.GetNumHeavyAtoms() > max_heavy_atoms:
                continue
            atoms = list(mol.GetAtoms())
            if any(a.GetSymbol() not in allowed for a in atoms):
                continue
            if any(a.GetFormalCharge() or a.GetNumRadicalElectrons() for a in atoms):
                continue
            smiles = chem.MolToSmiles(mol)
            if smiles not in seen:
                seen.add(smiles)
                out.append((smiles, f"NCI {fields[1]}"))
    return tuple(out)


def reservoir_candidates(allowed_elements: Sequence[str], max_heavy_atoms: int) -> list[Candidate]:
    return [
        Candidate(payload={"smiles": smiles, "name": name}, source="real")
        for smiles, name in nci_molecules(tuple(allowed_elements), max_heavy_atoms)
    ]
