"""Real crystals shipped with ASE, as the reservoir: published structures with provenance.

Two sources per supported element: the Delta-project set (``ase/collections/dcdft.json``: the
equilibrium structures of the elemental crystals from all-electron PBE, WIEN2k; Lejaeghere et
al., Science 351, aad3000 (2016)) and ASE's ``reference_states`` (the experimental lattice
constant of each element's ground-state structure, from Kittel's tables). Each at the
reservoir temperatures (300 K and 1,000 K: a room-temperature crystal and a hot one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from foundry.contract import Candidate

__all__ = ["RESERVOIR_TEMPERATURES_K", "reservoir_payloads"]

RESERVOIR_TEMPERATURES_K: tuple[float, ...] = (300.0, 1000.0)


def _payload(atoms: Any, temperature_k: float, lattice: str, name: str) -> dict[str, Any]:
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions_angstrom": [[round(float(x), 6) for x in p] for p in atoms.positions],
        "cell_angstrom": [[round(float(x), 6) for x in v] for v in atoms.cell.array],
        "pbc": [True, True, True],
        "temperature_k": temperature_k,
        "lattice": lattice,
        "sites": len(atoms),
        "name": name,
    }


def reservoir_payloads(elements: Sequence[str], lattices: Sequence[str]) -> list[dict[str, Any]]:
    from ase.build import bulk
    from ase.collections import dcdft
    from ase.data import atomic_numbers, reference_states

    out = []
    for symbol in elements:
        state = reference_states[atomic_numbers[symbol]]
        lattice = str(state["symmetry"])
        if lattice not in lattices:
            continue
        experimental = bulk(symbol, lattice, a=float(state["a"]), cubic=True)
        computed = dcdft[symbol] if symbol in dcdft.names else None
        for temperature in RESERVOIR_TEMPERATURES_K:
            out.append(_payload(experimental, temperature, lattice,
                                f"{symbol} {lattice}, experimental a = {state['a']} A "
                                f"(ASE reference_states), {temperature:g} K"))
            if computed is not None:
                out.append(_payload(computed, temperature, lattice,
                                    f"{symbol} {lattice}, PBE equilibrium (ASE dcdft, Delta "
                                    f"project), {temperature:g} K"))
    return out


def reservoir_candidates(elements: Sequence[str], lattices: Sequence[str]) -> list[Candidate]:
    return [Candidate(payload=p, source="real") for p in reservoir_payloads(elements, lattices)]
