"""New molecules from real ones: valence-correct graph mutation and crossover with RDKit.

Each child starts from parents drawn from a pool (the reservoir of real molecules, later the
verified examples of earlier generations) and undergoes crossover (the fragment of one parent
on one side of a cut acyclic single bond, joined to a fragment of the other) and/or a few
mutations: change an element, add or remove a terminal atom, raise or lower a bond order,
close or open a ring. Every step is followed by RDKit sanitisation; a step that breaks valence
is discarded. Children record their parents (``parent_ids``) and are deterministic given the
RNG.

Steering knobs (``STEERING_DEFAULTS``):

* ``max_heavy_atoms`` - children above it are discarded (at most the domain option's cap);
* ``mutation_steps`` - mean mutations per child (1 + Poisson);
* ``crossover_rate`` - share of children made by crossover;
* ``weight_c`` / ``weight_n`` / ``weight_o`` / ``weight_f`` - the element mix of atoms a
  mutation adds or changes to (only elements the domain allows);
* ``gap_min_ev`` / ``gap_max_ev`` - a HOMO-LUMO gap window: children whose Hueckel estimate
  of the gap (:func:`hueckel_gap_ev`, a rough proxy, within ~1.5 eV) lies outside are redrawn
  up to ``GAP_WINDOW_TRIES`` times. It shifts what is proposed; the label is the DFT gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .molecules import _rdkit, canonical_smiles, embed

__all__ = ["STEERING_DEFAULTS", "MoleculeGenerator", "hueckel_gap_ev"]

STEERING_DEFAULTS: dict[str, float] = {
    "max_heavy_atoms": 9.0,
    "mutation_steps": 1.0,
    "crossover_rate": 0.3,
    "weight_c": 4.0,
    "weight_n": 1.0,
    "weight_o": 1.0,
    "weight_f": 0.3,
    "gap_min_ev": 0.0,
    "gap_max_ev": 100.0,
}
#: redraws of a child whose gap estimate falls outside the steering window
GAP_WINDOW_TRIES = 8
#: attempts at one child before the generator gives up on it (and draws fresh parents)
CHILD_TRIES = 30
#: maximum bond order a mutation may create (1 single, 2 double, 3 triple)
_MAX_ORDER = 3


def hueckel_gap_ev(mol: Any) -> float:
    """A Hueckel-theory estimate of the HOMO-LUMO gap in eV.

    The pi system is the atoms in double, triple or aromatic bonds, coupled along conjugated
    bonds with one electron each; the gap of its adjacency spectrum, in units of |beta|, is
    mapped to eV by ``2.4 + 2.6 x`` (a rough fit: ethylene 7.6, butadiene 5.6, hexatriene 4.7,
    cf. B3LYP gaps ~7.6 / 5.6 / 4.6 eV). A saturated molecule (no pi system) gets 9 eV, and
    lone pairs are ignored: a proxy for steering, not a label.
    """
    pi_atoms = sorted(
        {
            idx
            for bond in mol.GetBonds()
            if bond.GetBondTypeAsDouble() > 1.0 or bond.GetIsAromatic()
            for idx in (bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
        }
    )
    if not pi_atoms:
        return 9.0
    where = {a: i for i, a in enumerate(pi_atoms)}
    adjacency = np.zeros((len(pi_atoms), len(pi_atoms)))
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if a in where and b in where and (bond.GetIsConjugated() or bond.GetBondTypeAsDouble() > 1):
            adjacency[where[a], where[b]] = adjacency[where[b], where[a]] = 1.0
    levels = np.sort(np.linalg.eigvalsh(adjacency))[::-1]  # bonding (positive) first
    n_occupied = (len(pi_atoms) + 1) // 2
    if n_occupied >= len(levels):
        return 9.0
    gap_beta = float(levels[n_occupied - 1] - levels[n_occupied])
    return 2.4 + 2.6 * gap_beta


@dataclass(frozen=True)
class Child:
    smiles: str
    elements: tuple[str, ...]
    coordinates_angstrom: tuple[tuple[float, float, float], ...]
    parent_ids: tuple[str, ...]


class MoleculeGenerator:
    """Children of a pool of parent molecules (canonical SMILES with their ids)."""

    def __init__(
        self, pool: Sequence[tuple[str, str]], allowed_elements: Sequence[str], cap: int
    ) -> None:
        if not pool:
            raise ValueError("the generator needs at least one parent molecule")
        self.pool = list(pool)
        chem = _rdkit()
        self._heavy = np.array([chem.MolFromSmiles(s).GetNumHeavyAtoms() for s, _ in self.pool])
        self.allowed = tuple(e for e in ("C", "N", "O", "F", "S", "Cl", "P", "Br")
                             if e in allowed_elements) or tuple(allowed_elements)  # fmt: skip
        self.cap = cap

    # -- public ---------------------------------------------------------------------------
    def children(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Child]:
        knobs = {**STEERING_DEFAULTS, **steering}
        limit = int(min(self.cap, max(1, round(knobs["max_heavy_atoms"]))))
        weights = np.array(
            [max(0.0, float(knobs.get(f"weight_{e.lower()}", 0.0))) for e in self.allowed]
        )
        if weights.sum() <= 0:
            weights = np.ones(len(self.allowed))
        weights = weights / weights.sum()
        window = (float(knobs["gap_min_ev"]), float(knobs["gap_max_ev"]))
        out: list[Child] = []
        while len(out) < n:
            out.append(self._child(rng, knobs, limit, weights, window))
        return out

    # -- one child ------------------------------------------------------------------------
    def _child(
        self,
        rng: np.random.Generator,
        knobs: Mapping[str, float],
        limit: int,
        weights: np.ndarray,
        window: tuple[float, float],
    ) -> Child:
        chem = _rdkit()
        fallback: Child | None = None
        # parents near the size limit at most (a child of a large parent would only be trimmed)
        near = np.flatnonzero(self._heavy <= limit + 1)
        pick = near if near.size else np.arange(len(self.pool))
        for attempt in range(CHILD_TRIES):
            first = self.pool[int(pick[int(rng.integers(pick.size))])]
            parents = [first]
            mol = chem.MolFromSmiles(first[0])
            if rng.random() < float(knobs["crossover_rate"]) and len(self.pool) > 1:
                second = self.pool[int(pick[int(rng.integers(pick.size))])]
                crossed = _crossover(mol, chem.MolFromSmiles(second[0]), rng)
                if crossed is not None:
                    mol = crossed
                    parents.append(second)
            steps = 1 + int(rng.poisson(max(0.0, float(knobs["mutation_steps"]))))
            for _ in range(steps):
                mutated = _mutate(mol, rng, self.allowed, weights)
                if mutated is not None:
                    mol = mutated
            for _ in range(3):  # trim terminal atoms of a child just above the limit
                if mol is None or mol.GetNumHeavyAtoms() <= limit:
                    break
                mol = _trim(mol, rng)
            if mol is None or mol.GetNumHeavyAtoms() > limit or mol.GetNumHeavyAtoms() == 0:
                continue
            if len(chem.GetMolFrags(mol)) != 1 or _formal_charge(mol) or _radicals(mol):
                continue
            smiles = canonical_smiles(chem.MolToSmiles(mol))
            if smiles is None or smiles in (p[0] for p in parents):
                continue
            if any(a.GetSymbol() not in self.allowed for a in mol.GetAtoms()):
                continue
            got = embed(smiles)
            if isinstance(got, str):
                continue
            child = Child(smiles, got[0], got[1], tuple(p[1] for p in parents))
            gap = hueckel_gap_ev(chem.MolFromSmiles(smiles))
            if window[0] <= gap <= window[1] or attempt >= GAP_WINDOW_TRIES:
                return child
            fallback = fallback or child
        if fallback is not None:
            return fallback
        raise RuntimeError(
            f"no valid child in {CHILD_TRIES} tries (max_heavy_atoms {limit} too small for "
            "the parents?)"
        )


def _formal_charge(mol: Any) -> int:
    return sum(abs(a.GetFormalCharge()) for a in mol.GetAtoms())


def _radicals(mol: Any) -> int:
    return sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())


def _sanitized(rw: Any) -> Any | None:
    chem = _rdkit()
    mol = rw.GetMol()
    try:
        chem.SanitizeMol(mol)
    except Exception:
        return None
    # round-trip through SMILES: kekulisation and aromaticity are then re-perceived
    return chem.MolFromSmiles(chem.MolToSmiles(mol))


def _mutate(
    mol: Any, rng: np.random.Generator, elements: Sequence[str], weights: np.ndarray
) -> Any | None:
    """One random valence-correct edit of ``mol``, or ``None`` if the edit broke it."""
    chem = _rdkit()
    if mol is None:
        return None
    chem.Kekulize(mol, clearAromaticFlags=True)
    rw = chem.RWMol(mol)
    n = rw.GetNumAtoms()
    kind = int(rng.integers(6))
    new_element = str(elements[int(rng.choice(len(elements), p=weights))])
    if kind == 0:  # change an element
        atom = rw.GetAtomWithIdx(int(rng.integers(n)))
        atom.SetAtomicNum(chem.GetPeriodicTable().GetAtomicNumber(new_element))
        atom.SetNoImplicit(False)
        atom.SetNumExplicitHs(0)
    elif kind == 1:  # add a terminal atom where there is a hydrogen to replace
        hosts = [a.GetIdx() for a in rw.GetAtoms() if a.GetTotalNumHs() > 0]
        if not hosts:
            return None
        host = int(hosts[int(rng.integers(len(hosts)))])
        new = rw.AddAtom(chem.Atom(new_element))
        rw.AddBond(host, new, chem.BondType.SINGLE)
    elif kind == 2:  # remove a terminal heavy atom
        leaves = [a.GetIdx() for a in rw.GetAtoms() if a.GetDegree() == 1]
        if not leaves or n < 2:
            return None
        rw.RemoveAtom(int(leaves[int(rng.integers(len(leaves)))]))
    elif kind in (3, 4):  # raise (3) or lower (4) a bond order
        bonds = list(rw.GetBonds())
        if not bonds:
            return None
        bond = bonds[int(rng.integers(len(bonds)))]
        order = round(bond.GetBondTypeAsDouble())
        if kind == 3:
            a, b = bond.GetBeginAtom(), bond.GetEndAtom()
            if order >= _MAX_ORDER or a.GetTotalNumHs() == 0 or b.GetTotalNumHs() == 0:
                return None
            order += 1
        else:
            if order <= 1:
                return None
            order -= 1
        bond.SetBondType(
            {1: chem.BondType.SINGLE, 2: chem.BondType.DOUBLE, 3: chem.BondType.TRIPLE}[order]
        )
    else:  # close a ring (3-7 members) or open one
        ring_bonds = [b for b in rw.GetBonds() if b.IsInRing()]
        if ring_bonds and rng.random() < 0.5:
            bond = ring_bonds[int(rng.integers(len(ring_bonds)))]
            rw.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
        else:
            dist = chem.GetDistanceMatrix(rw)
            pairs = [
                (i, j)
                for i in range(n)
                for j in range(i + 1, n)
                if 2 <= dist[i, j] <= 6
                and rw.GetAtomWithIdx(i).GetTotalNumHs() > 0
                and rw.GetAtomWithIdx(j).GetTotalNumHs() > 0
            ]
            if not pairs:
                return None
            i, j = pairs[int(rng.integers(len(pairs)))]
            rw.AddBond(int(i), int(j), chem.BondType.SINGLE)
    return _sanitized(rw)


def _trim(mol: Any, rng: np.random.Generator) -> Any | None:
    """``mol`` less one terminal heavy atom (``None`` if it has none)."""
    chem = _rdkit()
    leaves = [a.GetIdx() for a in mol.GetAtoms() if a.GetDegree() == 1]
    if not leaves or mol.GetNumAtoms() < 2:
        return None
    chem.Kekulize(mol, clearAromaticFlags=True)
    rw = chem.RWMol(mol)
    rw.RemoveAtom(int(leaves[int(rng.integers(len(leaves)))]))
    return _sanitized(rw)


def _crossover(a: Any, b: Any, rng: np.random.Generator) -> Any | None:
    """Join a fragment of ``a`` to a fragment of ``b`` across one cut acyclic single bond
    of each (RDKit ``FragmentOnBonds`` then ``molzip`` on matching dummy labels)."""
    chem = _rdkit()
    halves = []
    for mol, label in ((a, 1), (b, 1)):
        if mol is None:
            return None
        cuts = [
            bond.GetIdx()
            for bond in mol.GetBonds()
            if bond.GetBondType() == chem.BondType.SINGLE and not bond.IsInRing()
        ]
        if not cuts:
            return None
        cut = int(cuts[int(rng.integers(len(cuts)))])
        pieces = chem.FragmentOnBonds(mol, [cut], addDummies=True, dummyLabels=[(label, label)])
        frags = chem.GetMolFrags(pieces, asMols=True, sanitizeFrags=False)
        if len(frags) != 2:
            return None
        halves.append(frags[int(rng.integers(2))])
    left, right = halves
    for frag in (left, right):
        for atom in frag.GetAtoms():
            if atom.GetAtomicNum() == 0:
                atom.SetIsotope(0)
                atom.SetAtomMapNum(1)
    try:
        joined = chem.molzip(left, right)
    except Exception:
        return None
    return _sanitized(chem.RWMol(joined))
