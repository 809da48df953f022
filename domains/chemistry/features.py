"""What the surrogate and the monitors see of a molecule.

``molecule_sample``: atoms and coordinates (SchNet's input), the cheap tier's answer as global
features and as the baseline the networks learn the correction of (Delta-learning of DFT from
xTB). ``descriptor_matrix``: fixed-length vectors for drift and diversity monitors - element
counts and the sorted eigenvalues of the Coulomb matrix (Rupp et al., PRL 108, 058301 (2012)),
which are invariant to rotation, translation and atom order and defined for any geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from foundry.contract import Candidate

from .molecules import geometry_of
from .options import OBSERVABLES

__all__ = ["CHEAP_TIER", "descriptor_matrix", "molecule_sample"]

#: the fidelity whose verdict is the surrogate's baseline
CHEAP_TIER = "xtb"
#: elements counted one by one in the descriptors (the rest share one count)
_COUNTED = ("H", "C", "N", "O", "F")
#: Coulomb-matrix eigenvalues kept (largest first; zero-padded)
N_EIGENVALUES = 16
_GLOBAL_NAMES = ("has_xtb", "gap_ev", "homo_ev", "lumo_ev", "dipole_debye")


def _xtb_values(candidate: Candidate) -> dict[str, float] | None:
    verdict = candidate.evidence.get(CHEAP_TIER)
    if verdict is None or not verdict.passed:
        return None
    values = {**verdict.measurements, **verdict.properties}
    return {name: float(values[name]) for name in OBSERVABLES if name in values}


def molecule_sample(candidate: Candidate):  # -> MoleculeSample (torch is imported lazily)
    """The SchNet input of one candidate (module-level, so fitted surrogates pickle)."""
    from foundry.surrogates.schnet import MoleculeSample

    geometry = geometry_of(candidate.payload)
    xtb = _xtb_values(candidate)
    glob = np.zeros(len(_GLOBAL_NAMES) + 2, dtype=np.float64)
    if xtb is not None:
        glob[0] = 1.0
        for k, name in enumerate(_GLOBAL_NAMES[1:], start=1):
            glob[k] = xtb.get(name, 0.0)
    glob[-2] = geometry.charge
    glob[-1] = geometry.multiplicity - 1
    return MoleculeSample(
        atomic_numbers=geometry.atomic_numbers,
        positions_angstrom=geometry.coordinates_angstrom,
        global_features=glob,
        baseline=xtb,
    )


def descriptor_matrix(candidates: Sequence[Candidate]) -> np.ndarray:
    """(n, 7 + N_EIGENVALUES): element counts, heavy atoms, charge, Coulomb eigenvalues."""
    width = len(_COUNTED) + 2 + N_EIGENVALUES
    out = np.zeros((len(candidates), width))
    for row, cand in enumerate(candidates):
        try:
            geometry = geometry_of(cand.payload)
        except (ValueError, KeyError, TypeError):
            continue  # an unusable payload (the rule layer says why) has no features
        elements = geometry.elements
        for k, symbol in enumerate(_COUNTED):
            out[row, k] = sum(e == symbol for e in elements)
        out[row, len(_COUNTED)] = sum(e not in _COUNTED for e in elements)
        out[row, len(_COUNTED) + 1] = geometry.charge
        z = geometry.atomic_numbers.astype(np.float64)
        xyz = geometry.coordinates_angstrom / 0.529177210903  # bohr
        dist = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
        np.fill_diagonal(dist, 1.0)
        cm = np.outer(z, z) / dist
        np.fill_diagonal(cm, 0.5 * z**2.4)
        eig = np.sort(np.linalg.eigvalsh(cm))[::-1][:N_EIGENVALUES]
        out[row, len(_COUNTED) + 2 : len(_COUNTED) + 2 + len(eig)] = eig / 100.0
    return out
