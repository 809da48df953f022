"""A static Morse lattice model in numpy: the MD tier's potential without the dynamics.

The same pair potential as :mod:`foundry.simulators.openmm_md` (Girifalco-Weizer Morse terms,
the stated mixing rule, OpenMM's switching polynomial between the switch and cutoff radii), on
the given cell: no replication, no MD, about a millisecond for a 64-atom cell. Two cheap
estimates come out of it, which the materials surrogate learns the correction of:

* ``energy_per_atom_ev`` after relaxing the cell's isotropic scale only (the MD tier also
  relaxes the positions: vacancies and solutes lower it further);
* a harmonic (Einstein) Lindemann index: each atom's force constant ``k_i = (1/3) sum_j
  [phi''(r) + 2 phi'(r) / r]`` gives ``<u_i^2> = 3 kT / k_i``; the index is the root of their
  mean over the nearest-neighbour distance. It leaves out the soft collective modes and all
  anharmonicity, which grow towards melting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .openmm_md import MORSE_PARAMETERS

__all__ = ["MorseEstimate", "morse_estimate"]

#: Boltzmann constant in eV/K (CODATA 2018)
KB_EV_PER_K = 8.617333262e-5


@dataclass(frozen=True)
class MorseEstimate:
    """What the static model says of one cell at one temperature."""

    energy_per_atom_ev: float
    scale: float  # the relaxed isotropic scale
    lindemann_harmonic: float
    nearest_neighbour_angstrom: float


def _pairs(symbols: Sequence[str], positions: np.ndarray, cell: np.ndarray,
           reach_angstrom: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs (i, j) within ``reach`` and the cell shift ``S @ cell`` of each (r_ij =
    p_j - p_i + shift)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(list(symbols), positions=positions, cell=cell, pbc=True)
    i, j, shifts = neighbor_list("ijS", atoms, reach_angstrom)
    return i, j, shifts @ cell


def _switch(r: np.ndarray, switch: float, cutoff: float) -> np.ndarray:
    """OpenMM's switching function: 1 below ``switch``, 0 beyond ``cutoff``, C2 between."""
    x = np.clip((r - switch) / (cutoff - switch), 0.0, 1.0)
    return 1.0 - 10.0 * x**3 + 15.0 * x**4 - 6.0 * x**5


def _switch_derivative(r: np.ndarray, switch: float, cutoff: float) -> np.ndarray:
    width = cutoff - switch
    x = np.clip((r - switch) / width, 0.0, 1.0)
    return (-30.0 * x**2 + 60.0 * x**3 - 30.0 * x**4) / width


def morse_estimate(
    symbols: Sequence[str],
    positions_angstrom: np.ndarray,
    cell_angstrom: np.ndarray,
    temperature_k: float,
    *,
    cutoff_angstrom: float = 7.0,
    switch_angstrom: float = 6.0,
    max_scale_change: float = 0.12,
    skin_angstrom: float = 0.6,
    max_iterations: int = 200,
) -> MorseEstimate:
    """The static model of one periodic cell (see the module docstring): the isotropic scale
    relaxed, then the positions (L-BFGS on a pair list with a ``skin``), then the scale again."""
    from scipy.optimize import minimize, minimize_scalar

    positions = np.asarray(positions_angstrom, dtype=float)
    cell = np.asarray(cell_angstrom, dtype=float)
    lo, hi = 1.0 - max_scale_change, 1.0 + max_scale_change
    params = [MORSE_PARAMETERS[s] for s in symbols]
    depth = np.array([p.d_ev for p in params])
    alpha = np.array([p.alpha_per_angstrom for p in params])
    r0 = np.array([p.r0_angstrom for p in params])
    n = len(symbols)

    i = j = shift = d_ij = a_ij = r0_ij = np.empty(0)

    def build(pos: np.ndarray) -> None:
        nonlocal i, j, shift, d_ij, a_ij, r0_ij
        i, j, shift = _pairs(symbols, pos, cell, cutoff_angstrom / lo + skin_angstrom)
        d_ij = np.sqrt(depth[i] * depth[j])
        a_ij = 0.5 * (alpha[i] + alpha[j])
        r0_ij = 0.5 * (r0[i] + r0[j])

    def vectors(pos: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        v = (pos[j] - pos[i] + shift) * scale
        return v, np.linalg.norm(v, axis=1)

    def energy(pos: np.ndarray, scale: float) -> float:
        _, r = vectors(pos, scale)
        phi = d_ij * ((1.0 - np.exp(-a_ij * (r - r0_ij))) ** 2 - 1.0)
        return 0.5 * float((phi * _switch(r, switch_angstrom, cutoff_angstrom)).sum()) / n

    def energy_and_gradient(flat: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
        pos = flat.reshape(n, 3)
        v, r = vectors(pos, scale)
        e = np.exp(-a_ij * (r - r0_ij))
        phi = d_ij * ((1.0 - e) ** 2 - 1.0)
        sw = _switch(r, switch_angstrom, cutoff_angstrom)
        dphi = 2.0 * d_ij * a_ij * e * (1.0 - e) * sw + phi * _switch_derivative(
            r, switch_angstrom, cutoff_angstrom)
        # each unordered pair appears twice: half of dE/dr_ij on each, times dr/dp = scale
        force = (0.5 / n * scale) * (dphi / r)[:, None] * v
        grad = np.zeros((n, 3))
        np.add.at(grad, j, force)
        np.add.at(grad, i, -force)
        return 0.5 * float((phi * sw).sum()) / n, grad.ravel()

    def relax_scale(pos: np.ndarray) -> float:
        best = minimize_scalar(lambda s: energy(pos, s), bounds=(lo, hi), method="bounded",
                               options={"xatol": 1e-6})  # fmt: skip
        return float(best.x)

    build(positions)
    scale = relax_scale(positions)
    for _ in range(6):  # rounds: the pair list is rebuilt when atoms moved past half the skin
        fit = minimize(energy_and_gradient, positions.ravel(), args=(scale,), jac=True,
                       method="L-BFGS-B", options={"maxiter": max_iterations, "gtol": 1e-6})
        moved = fit.x.reshape(n, 3)
        far = np.abs(moved - positions).max() * hi > skin_angstrom / 2
        positions = moved
        build(positions)
        scale = relax_scale(positions)
        if not far:
            break
    _, r = vectors(positions, scale)
    e = np.exp(-a_ij * (r - r0_ij))
    first = 2.0 * d_ij * a_ij * e * (1.0 - e)  # phi'
    second = 2.0 * d_ij * a_ij**2 * e * (2.0 * e - 1.0)  # phi''
    inside = r < cutoff_angstrom
    k_pair = np.where(inside, second + 2.0 * first / r, 0.0)
    k_atom = np.bincount(i, weights=k_pair, minlength=n) / 3.0  # eV / A^2
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, i, r)
    nn = float(nearest.mean())
    kt = KB_EV_PER_K * float(temperature_k)
    if (k_atom <= 0).any() or not math.isfinite(nn):
        lindemann = math.nan  # a mechanically unstable site: no harmonic estimate
    else:
        lindemann = math.sqrt(float((3.0 * kt / k_atom).mean())) / nn
    return MorseEstimate(
        energy_per_atom_ev=energy(positions, scale),
        scale=scale,
        lindemann_harmonic=lindemann,
        nearest_neighbour_angstrom=nn,
    )
