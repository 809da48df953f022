"""Crystal and alloy structures built with ASE, and their mutations.

``generate``: a lattice family (fcc / bcc / hcp, by weight), a host element (by weight) and, for
an alloy, a solute; the conventional cell (hcp at the ideal c/a) replicated up to ``max_repeat``
per axis within the options' ``max_atoms``; the lattice constant from Vegard's law on the
elements' experimental volumes; random substitution of solute atoms, vacancies, a random
symmetric strain; a target temperature. ``mutate``: one to a few of substitute one atom, open
a vacancy, move the temperature, strain the cell - a child of its parent, nothing else.

Steering knobs (``STEERING_DEFAULTS``): ``temperature_min_k``/``temperature_max_k``,
``weight_fcc``/``weight_bcc``/``weight_hcp`` (lattice family), ``weight_<element>`` (host and
solute choice), ``alloy_probability``, ``solute_fraction_max``, ``vacancy_probability``,
``strain_max`` (largest strain component), ``max_repeat``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from foundry.simulators.openmm_md import MORSE_PARAMETERS

from .options import CUBIC_ATOMS_PER_CELL, MaterialsOptions
from .structures import reference_volume_per_atom

__all__ = ["STEERING_DEFAULTS", "generate_payloads", "mutate_payload"]

#: hcp at the ideal ratio c/a = sqrt(8/3)
_HCP_C_OVER_A = math.sqrt(8.0 / 3.0)

STEERING_DEFAULTS: dict[str, float] = {
    "temperature_min_k": 200.0,
    "temperature_max_k": 2500.0,
    "weight_fcc": 1.0,
    "weight_bcc": 1.0,
    "weight_hcp": 0.5,
    **{f"weight_{el.lower()}": 1.0 for el in MORSE_PARAMETERS},
    "alloy_probability": 0.6,
    "solute_fraction_max": 0.5,
    "vacancy_probability": 0.3,
    "strain_max": 0.02,
    "max_repeat": 2.0,
}


def _pick(rng: np.random.Generator, names: Sequence[str], weights: Sequence[float]) -> str:
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if w.sum() <= 0:
        w = np.ones(len(names))
    return str(names[int(rng.choice(len(names), p=w / w.sum()))])


def _conventional(lattice: str, a: float) -> tuple[np.ndarray, np.ndarray]:
    """(fractional positions, cell) of the conventional cell with lattice constant ``a``."""
    from ase.build import bulk

    if lattice == "hcp":
        atoms = bulk("Cu", "hcp", a=a, c=a * _HCP_C_OVER_A)
    else:
        atoms = bulk("Cu", lattice, a=a, cubic=True)
    return atoms.get_scaled_positions(), atoms.cell.array.copy()


def _lattice_constant(lattice: str, volume_per_atom: float) -> float:
    if lattice in CUBIC_ATOMS_PER_CELL:
        return (CUBIC_ATOMS_PER_CELL[lattice] * volume_per_atom) ** (1.0 / 3.0)
    # hcp: 2 atoms in a cell of volume (sqrt(3) / 2) a^2 c
    return (2.0 * volume_per_atom / (math.sqrt(3.0) / 2.0 * _HCP_C_OVER_A)) ** (1.0 / 3.0)


def _strained(cell: np.ndarray, positions: np.ndarray, rng: np.random.Generator,
              strain_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell and positions under a random symmetric strain with components in +-strain_max."""
    if strain_max <= 0:
        return cell, positions
    eps = rng.uniform(-strain_max, strain_max, size=(3, 3))
    deform = np.eye(3) + 0.5 * (eps + eps.T)
    return cell @ deform, positions @ deform


def _payload(symbols: Sequence[str], positions: np.ndarray, cell: np.ndarray,
             temperature_k: float, lattice: str, sites: int) -> dict[str, Any]:
    return {
        "symbols": list(symbols),
        "positions_angstrom": np.round(positions, 6).tolist(),
        "cell_angstrom": np.round(cell, 6).tolist(),
        "pbc": [True, True, True],
        "temperature_k": round(float(temperature_k), 1),
        "lattice": lattice,
        "sites": int(sites),
    }


def _temperature(rng: np.random.Generator, steering: Mapping[str, float],
                 options: MaterialsOptions) -> float:
    lo = max(options.temperature_min_k, float(steering["temperature_min_k"]))
    hi = min(options.temperature_max_k, float(steering["temperature_max_k"]))
    return float(rng.uniform(lo, max(lo, hi)))


def _one(rng: np.random.Generator, steering: Mapping[str, float],
         options: MaterialsOptions) -> dict[str, Any]:
    lattice = _pick(rng, options.lattices, [steering[f"weight_{x}"] for x in options.lattices])
    elements = list(options.elements)
    weights = [steering[f"weight_{e.lower()}"] for e in elements]
    host = _pick(rng, elements, weights)
    frac, cell = _conventional(lattice, 1.0)
    per_cell = len(frac)
    max_repeat = max(1, int(steering["max_repeat"]))
    while True:  # replicate within max_atoms
        reps = rng.integers(1, max_repeat + 1, size=3)
        if per_cell * int(np.prod(reps)) <= options.max_atoms or reps.sum() == 3:
            break
    shifts = np.array(np.meshgrid(*(np.arange(n) for n in reps), indexing="ij")).reshape(3, -1).T
    frac = ((frac[None, :, :] + shifts[:, None, :]) / reps).reshape(-1, 3)
    n = len(frac)
    symbols = [host] * n
    others = [e for e in elements if e != host]
    if others and n > 1 and rng.random() < float(steering["alloy_probability"]):
        solute = _pick(rng, others, [w for e, w in zip(elements, weights, strict=True)
                                     if e != host])
        share = rng.uniform(0.0, max(0.0, float(steering["solute_fraction_max"])))
        count = max(1, min(n - 1, round(share * n)))
        for i in rng.choice(n, size=count, replace=False):
            symbols[int(i)] = solute
    sites = n
    keep = np.ones(n, dtype=bool)
    if n > 2 and rng.random() < float(steering["vacancy_probability"]):
        keep[rng.choice(n, size=1 + int(n >= 32), replace=False)] = False
    a = _lattice_constant(lattice, reference_volume_per_atom(symbols))
    full_cell = (cell * a) * reps[:, None]
    positions = frac @ full_cell
    full_cell, positions = _strained(full_cell, positions, rng, float(steering["strain_max"]))
    symbols = [s for s, k in zip(symbols, keep, strict=True) if k]
    return _payload(symbols, positions[keep], full_cell, _temperature(rng, steering, options),
                    lattice, sites)


def generate_payloads(n: int, rng: np.random.Generator, steering: Mapping[str, float],
                      options: MaterialsOptions) -> list[dict[str, Any]]:
    return [_one(rng, steering, options) for _ in range(n)]


def mutate_payload(parent: Mapping[str, Any], rng: np.random.Generator,
                   steering: Mapping[str, float], options: MaterialsOptions,
                   scale: float = 1.0) -> dict[str, Any]:
    """A child: ``max(1, round(scale))`` of substitute, vacancy, temperature, strain."""
    symbols = list(parent["symbols"])
    positions = np.asarray(parent["positions_angstrom"], dtype=float)
    cell = np.asarray(parent["cell_angstrom"], dtype=float)
    temperature = float(parent["temperature_k"])
    sites = int(parent.get("sites", len(symbols)))
    lattice = str(parent.get("lattice", "other"))
    for _ in range(max(1, round(scale))):
        op = int(rng.integers(0, 4))
        if op == 0 and len(options.elements) > 1:
            i = int(rng.integers(0, len(symbols)))
            choices = [e for e in options.elements if e != symbols[i]]
            symbols[i] = str(choices[int(rng.integers(0, len(choices)))])
        elif op == 1 and len(symbols) > 2 and len(symbols) > 0.8 * sites:
            i = int(rng.integers(0, len(symbols)))
            del symbols[i]
            positions = np.delete(positions, i, axis=0)
        elif op == 2:
            lo = max(options.temperature_min_k, float(steering["temperature_min_k"]))
            hi = max(lo, min(options.temperature_max_k, float(steering["temperature_max_k"])))
            temperature = float(np.clip(temperature + rng.normal(0.0, 200.0 * scale), lo, hi))
        else:
            cell, positions = _strained(cell, positions, rng, 0.01 * scale)
    return _payload(symbols, positions, cell, temperature, lattice, sites)
