"""The static Morse model (``foundry.simulators.morse``): the materials surrogate's baseline.

* Closed form: with only the nearest-neighbour shell inside the cutoff, an fcc crystal relaxes
  to r = r0 (the Morse minimum), its energy is -6 D a atom (12 bonds, each shared) and each
  atom's force constant is k = (12 / 3) phi''(r0) = 8 D alpha^2, so the harmonic Lindemann
  index is sqrt(3 kT / k) / r0.
* Relaxation: a rattled or isotropically strained crystal relaxes back to the perfect one.
* Against the ground truth: the relaxed energy equals OpenMM's relaxation (the MD tier's
  potential) for a perfect crystal, an alloy and a cell with a vacancy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("openmm")
pytest.importorskip("ase")

from ase.build import bulk
from foundry.simulators.morse import KB_EV_PER_K, morse_estimate
from foundry.simulators.openmm_md import MORSE_PARAMETERS, MDSettings, Structure, relax

pytestmark = pytest.mark.simulator


def _estimate(atoms, temperature_k: float = 300.0, **kwargs):
    return morse_estimate(atoms.get_chemical_symbols(), atoms.positions, atoms.cell.array,
                          temperature_k, **kwargs)  # fmt: skip


def test_nearest_neighbour_fcc_matches_the_closed_form() -> None:
    p = MORSE_PARAMETERS["Cu"]
    # r_nn = 2.80 A to start; the second shell (a = 3.96 A) lies beyond the 3.3 A cutoff
    atoms = bulk("Cu", "fcc", a=2.80 * math.sqrt(2.0), cubic=True)
    est = _estimate(atoms, 500.0, cutoff_angstrom=3.3, switch_angstrom=3.2)
    assert est.nearest_neighbour_angstrom == pytest.approx(p.r0_angstrom, rel=1e-5)
    assert est.energy_per_atom_ev == pytest.approx(-6.0 * p.d_ev, rel=1e-8)
    k = 8.0 * p.d_ev * p.alpha_per_angstrom**2
    expected = math.sqrt(3.0 * KB_EV_PER_K * 500.0 / k) / p.r0_angstrom
    assert est.lindemann_harmonic == pytest.approx(expected, rel=1e-4)


def test_rattled_and_strained_crystals_relax_back() -> None:
    perfect = _estimate(bulk("W", "bcc", a=3.165, cubic=True).repeat(2))
    rattled = bulk("W", "bcc", a=3.165, cubic=True).repeat(2)
    rattled.rattle(stdev=0.05, seed=3)
    strained = bulk("W", "bcc", a=3.165 * 1.05, cubic=True).repeat(2)
    for atoms in (rattled, strained):
        est = _estimate(atoms)
        assert est.energy_per_atom_ev == pytest.approx(perfect.energy_per_atom_ev, abs=1e-6)
        assert est.energy_per_atom_ev < -8.5  # W: -8.58 eV/atom at the 7 A cutoff


@pytest.mark.parametrize("case", ["perfect", "alloy", "vacancy"])
def test_the_relaxed_energy_matches_openmm(case: str) -> None:
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(2)
    if case == "alloy":
        for k in (0, 5, 10, 19, 30):
            atoms[k].symbol = "Ni"
    if case == "vacancy":
        del atoms[7]
    est = _estimate(atoms)
    settings = MDSettings()
    relaxed = relax(Structure(tuple(atoms.get_chemical_symbols()), atoms.positions,
                              atoms.cell.array), settings)  # fmt: skip
    gt = relaxed.energy_per_atom_ev
    assert est.energy_per_atom_ev == pytest.approx(gt, abs=2e-3), (case, gt)
    assert np.isfinite(est.lindemann_harmonic) and 0.01 < est.lindemann_harmonic < 0.05
