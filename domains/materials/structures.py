"""Crystals as payloads: the schema, reading a structure, the rule layer, reference volumes.

A payload is a periodic structure ``{"symbols": [...], "positions_angstrom": [[x, y, z], ...],
"cell_angstrom": [[...], [...], [...]], "pbc": [true, true, true], "temperature_k": T}`` with
optional ``name`` (kept with the example), ``lattice`` (``fcc``/``bcc``/``hcp``/``other``: the
family it was built in, which is its slice) and ``sites`` (lattice sites including vacancies,
for a cubic crystal's lattice constant). Generated payloads carry all of them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from foundry.simulators.openmm_md import MORSE_PARAMETERS, Structure

from .options import CUBIC_ATOMS_PER_CELL, MaterialsOptions

__all__ = [
    "PAYLOAD_SCHEMA",
    "identity_key",
    "lattice_of",
    "reference_volume_per_atom",
    "rule_problem",
    "structure_of",
]

#: atoms a payload may hold at most (the options' max_atoms is usually far below)
MAX_ATOMS = 500
_VECTOR = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}

PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "symbols": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 3},
            "minItems": 1,
            "maxItems": MAX_ATOMS,
        },
        "positions_angstrom": {"type": "array", "items": _VECTOR, "minItems": 1,
                               "maxItems": MAX_ATOMS},
        "cell_angstrom": {"type": "array", "items": _VECTOR, "minItems": 3, "maxItems": 3},
        "pbc": {"type": "array", "items": {"type": "boolean"}, "minItems": 3, "maxItems": 3},
        "temperature_k": {"type": "number", "exclusiveMinimum": 0},
        "name": {"type": "string", "maxLength": 500},
        "lattice": {"enum": ["fcc", "bcc", "hcp", "other"]},
        "sites": {"type": "integer", "minimum": 1, "maximum": 2 * MAX_ATOMS},
    },
    "required": ["symbols", "positions_angstrom", "cell_angstrom", "pbc", "temperature_k"],
    "additionalProperties": False,
}


def structure_of(payload: Mapping[str, Any]) -> Structure:
    """The payload's crystal (``ValueError`` when it is not one)."""
    return Structure(
        tuple(payload["symbols"]),
        np.asarray(payload["positions_angstrom"], dtype=np.float64),
        np.asarray(payload["cell_angstrom"], dtype=np.float64),
    )


def lattice_of(payload: Mapping[str, Any]) -> str:
    return str(payload.get("lattice", "other"))


def identity_key(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Everything but ``name``: two submissions of one structure at one temperature are one
    example, whatever they are called."""
    if not isinstance(payload, Mapping):
        return None
    return {k: v for k, v in payload.items() if k != "name"}


@functools.lru_cache(maxsize=64)
def _element_volume(symbol: str) -> float:
    """Experimental volume per atom of an element in its reference state (ASE's
    ``reference_states``, from Kittel's tables), Angstrom^3."""
    from ase.data import atomic_numbers, reference_states

    state = reference_states[atomic_numbers[symbol]]
    a = float(state["a"])
    return {"fcc": a**3 / 4.0, "bcc": a**3 / 2.0}[state["symmetry"]]


def reference_volume_per_atom(symbols: Sequence[str]) -> float:
    """Vegard's law: the composition-weighted mean of the elements' volumes per atom."""
    return float(np.mean([_element_volume(s) for s in symbols]))


def _pair_r0(a: str, b: str) -> float:
    return 0.5 * (MORSE_PARAMETERS[a].r0_angstrom + MORSE_PARAMETERS[b].r0_angstrom)


def _closest_pair(structure: Structure) -> tuple[float, int, int]:
    """(distance / pair r0, i, j) of the closest pair relative to its Morse r0, periodic
    images included (``ase.neighborlist``)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    atoms = Atoms(structure.symbols, positions=structure.positions_angstrom,
                  cell=structure.cell_angstrom, pbc=True)
    reach = 0.9 * max(MORSE_PARAMETERS[s].r0_angstrom for s in set(structure.symbols))
    i, j, d = neighbor_list("ijd", atoms, reach)
    if not len(d):
        return math.inf, -1, -1
    ratio = d / np.array([_pair_r0(structure.symbols[p], structure.symbols[q])
                          for p, q in zip(i, j, strict=True)])
    k = int(np.argmin(ratio))
    return float(ratio[k]), int(i[k]), int(j[k])


def rule_problem(payload: Mapping[str, Any], options: MaterialsOptions) -> str | None:
    """Why a schema-valid payload cannot be verified, or ``None``."""
    symbols = payload["symbols"]
    if len(payload["positions_angstrom"]) != len(symbols):
        return (f"{len(payload['positions_angstrom'])} positions for {len(symbols)} symbols")
    if not all(payload["pbc"]):
        return "only fully periodic crystals: pbc must be [true, true, true]"
    if len(symbols) > options.max_atoms:
        return f"{len(symbols)} atoms, more than max_atoms = {options.max_atoms}"
    unknown = sorted(set(symbols) - set(options.elements))
    if unknown:
        return f"elements {unknown} not among {list(options.elements)}"
    temperature = float(payload["temperature_k"])
    if not options.temperature_min_k <= temperature <= options.temperature_max_k:
        return (f"temperature_k {temperature:g} outside [{options.temperature_min_k:g}, "
                f"{options.temperature_max_k:g}]")
    lattice = lattice_of(payload)
    if lattice != "other" and lattice not in options.lattices:
        return f"lattice {lattice!r} not among {list(options.lattices)}"
    sites = payload.get("sites", len(symbols))
    if sites < len(symbols):
        return f"sites = {sites} < {len(symbols)} atoms"
    if "lattice_constant_angstrom" in options.certified and lattice not in CUBIC_ATOMS_PER_CELL:
        return f"lattice_constant_angstrom is certified: only cubic lattices, not {lattice!r}"
    try:
        structure = structure_of(payload)
    except ValueError as exc:
        return str(exc)
    cell = structure.cell_angstrom
    lengths = np.linalg.norm(cell, axis=1)
    if lengths.min() < 1.0:
        return f"a cell vector is {lengths.min():.3f} Angstrom long (< 1)"
    for p, q in ((0, 1), (0, 2), (1, 2)):
        cos = float(cell[p] @ cell[q] / (lengths[p] * lengths[q]))
        angle = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
        if not 20.0 <= angle <= 160.0:
            return f"cell angle {angle:.1f} deg between vectors {p} and {q} (outside 20-160)"
    if np.linalg.det(cell) <= 0:
        return "the cell is left-handed or flat (det <= 0): list its vectors right-handed"
    per_site = structure.volume_angstrom3 / sites  # a vacancy keeps its site's volume
    reference = reference_volume_per_atom(symbols)
    lo, hi = options.volume_factor_range
    if not lo * reference <= per_site <= hi * reference:
        return (f"volume per site {per_site:.2f} Angstrom^3 is outside {lo:g}-{hi:g} x the "
                f"composition's reference {reference:.2f}")
    ratio, i, j = _closest_pair(structure)
    if ratio < options.min_distance_factor:
        return (f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are "
                f"{ratio:.2f} x their Morse r0 apart (< {options.min_distance_factor})")
    return None
