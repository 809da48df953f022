"""Molecules as payloads: reading SMILES or a given geometry, the rule layer, 3D embedding.

A payload is either ``{"smiles": ...}`` (a geometry is embedded, ETKDG then MMFF) or a given
geometry ``{"elements": [...], "coordinates_angstrom": [[x, y, z], ...]}``, used as is; both
take optional ``charge``, ``multiplicity`` and ``name``. Generated candidates carry both the
canonical SMILES and the embedded geometry, so workers never re-embed them.

Embedding is seeded by the canonical SMILES: the same molecule gets the same conformer on
every machine running the same RDKit, so a SMILES-only payload means one geometry, whichever
process embeds it (the surrogate in the coordinator, the ground truth on a worker).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MIN_DISTANCE_FACTOR",
    "PAYLOAD_SCHEMA",
    "Geometry",
    "canonical_smiles",
    "embed",
    "geometry_of",
    "rule_problem",
]

#: No two atoms closer than this share of the sum of their covalent radii (H2: 0.22 A; a
#: C-H bond at 1.09 A is 1.7 times the limit). Closer atoms are a broken geometry, and an
#: SCF on one diverges or gives nonsense.
MIN_DISTANCE_FACTOR = 0.6
#: atoms per molecule a payload may hold (a DFT on 200 atoms at def2-SVP is hours)
MAX_ATOMS = 200

PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "smiles": {"type": "string", "minLength": 1, "maxLength": 1000},
        "elements": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 3},
            "minItems": 1,
            "maxItems": MAX_ATOMS,
        },
        "coordinates_angstrom": {
            "type": "array",
            "items": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 3,
                "maxItems": 3,
            },
            "minItems": 1,
            "maxItems": MAX_ATOMS,
        },
        "charge": {"type": "integer", "minimum": -8, "maximum": 8},
        "multiplicity": {"type": "integer", "minimum": 1, "maximum": 9},
        "name": {"type": "string", "maxLength": 500},
    },
    "anyOf": [{"required": ["smiles"]}, {"required": ["elements", "coordinates_angstrom"]}],
    "additionalProperties": False,
}


def _rdkit() -> Any:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # RDKit's own complaints become our one-line reasons
    return Chem


@dataclass(frozen=True)
class Geometry:
    """What a quantum-chemistry code needs: atoms, Cartesian coordinates, charge, spin."""

    elements: tuple[str, ...]
    coordinates_angstrom: np.ndarray  # (n, 3)
    charge: int
    multiplicity: int

    @property
    def atomic_numbers(self) -> np.ndarray:
        return np.array([_atomic_number(e) for e in self.elements], dtype=np.int64)


@functools.lru_cache(maxsize=128)
def _periodic_table() -> Any:
    return _rdkit().GetPeriodicTable()


def _atomic_number(symbol: str) -> int:
    try:
        return int(_periodic_table().GetAtomicNumber(symbol))
    except RuntimeError:
        return 0


def _element_symbol_ok(symbol: str) -> bool:
    z = _atomic_number(symbol)
    return 0 < z <= 118 and _periodic_table().GetElementSymbol(z) == symbol


def _covalent_radius(symbol: str) -> float:
    return float(_periodic_table().GetRcovalent(_atomic_number(symbol)))


def parse_smiles(smiles: str) -> tuple[Any | None, str | None]:
    """(RDKit molecule, None) or (None, why not): sanitisation included."""
    chem = _rdkit()
    mol = chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None, f"SMILES {smiles!r} does not parse"
    problems = chem.DetectChemistryProblems(mol)
    if problems:
        return None, f"SMILES {smiles!r} fails sanitisation: {problems[0].Message()}"
    try:
        chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises several classes; the message is what counts
        return None, f"SMILES {smiles!r} fails sanitisation: {str(exc).splitlines()[0]}"
    if mol.GetNumAtoms() == 0:
        return None, "SMILES has no atoms"
    if len(chem.GetMolFrags(mol)) > 1:
        return None, f"SMILES {smiles!r} has several fragments; give one molecule a line"
    return mol, None


@functools.lru_cache(maxsize=65536)
def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES, or ``None`` when it does not parse (cached: the id of every
    candidate is taken over it)."""
    mol, _ = parse_smiles(smiles)
    return None if mol is None else _rdkit().MolToSmiles(mol)


def _seed_of(smiles: str) -> int:
    return int.from_bytes(hashlib.blake2b(smiles.encode(), digest_size=4).digest(), "little") >> 1


@functools.lru_cache(maxsize=4096)
def embed(smiles: str) -> tuple[tuple[str, ...], tuple[tuple[float, float, float], ...]] | str:
    """A 3D conformer (elements with hydrogens, coordinates in A) of a canonical SMILES by
    ETKDG, relaxed with MMFF94 (UFF where MMFF lacks parameters); else why not (a string)."""
    chem = _rdkit()
    from rdkit.Chem import AllChem

    mol, problem = parse_smiles(smiles)
    if mol is None:
        return str(problem)
    mol = chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = _seed_of(smiles)
    params.numThreads = 1
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            return f"no 3D geometry for {smiles!r}: ETKDG embedding failed"
    try:
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
        else:
            AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    except Exception as exc:  # a force-field failure leaves the ETKDG geometry: still sane
        del exc
    conf = mol.GetConformer()
    elements = tuple(atom.GetSymbol() for atom in mol.GetAtoms())
    coords = tuple(
        (float(p.x), float(p.y), float(p.z))
        for p in (conf.GetAtomPosition(i) for i in range(mol.GetNumAtoms()))
    )
    return elements, coords


def _smiles_charge_and_radicals(mol: Any) -> tuple[int, int]:
    charge = sum(atom.GetFormalCharge() for atom in mol.GetAtoms())
    radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    return int(charge), int(radicals)


def _spin_problem(n_electrons: int, multiplicity: int) -> str | None:
    unpaired = multiplicity - 1
    if n_electrons <= 0:
        return f"{n_electrons} electrons: the charge removes them all"
    if unpaired > n_electrons or (n_electrons - unpaired) % 2:
        return (
            f"multiplicity {multiplicity} is impossible with {n_electrons} electrons "
            f"({'even' if n_electrons % 2 == 0 else 'odd'} count)"
        )
    return None


def default_multiplicity(n_electrons: int) -> int:
    return 1 if n_electrons % 2 == 0 else 2


def geometry_of(payload: Mapping[str, Any]) -> Geometry:
    """The geometry a payload stands for (embedding a SMILES-only one). Assumes the payload
    passed :func:`rule_problem`; raises ``ValueError`` otherwise. The charge is the payload's,
    else the SMILES's formal charge (as the rule layer reads it), else 0."""
    mol = parse_smiles(payload["smiles"])[0] if "smiles" in payload else None
    if "charge" in payload:
        charge = int(payload["charge"])
    else:
        charge = _smiles_charge_and_radicals(mol)[0] if mol is not None else 0
    if "coordinates_angstrom" in payload:
        elements = tuple(payload["elements"])
        coords = np.asarray(payload["coordinates_angstrom"], dtype=np.float64).reshape(-1, 3)
    else:
        smiles = canonical_smiles(payload["smiles"])
        if smiles is None:
            raise ValueError(f"SMILES {payload['smiles']!r} does not parse")
        got = embed(smiles)
        if isinstance(got, str):
            raise ValueError(got)
        elements, coord_rows = got
        coords = np.asarray(coord_rows, dtype=np.float64)
    n_electrons = sum(_atomic_number(e) for e in elements) - charge
    return Geometry(elements, coords, charge, multiplicity_of(payload, mol, n_electrons))


def multiplicity_of(payload: Mapping[str, Any], mol: Any | None, n_electrons: int) -> int:
    """The payload's multiplicity; without one, the SMILES's radical count + 1, else the
    lowest the electron count allows."""
    if "multiplicity" in payload:
        return int(payload["multiplicity"])
    if mol is not None:
        return _smiles_charge_and_radicals(mol)[1] + 1
    return default_multiplicity(n_electrons)


def _distance_problem(elements: Sequence[str], coords: np.ndarray) -> str | None:
    if len(elements) < 2:
        return None
    diff = coords[:, None, :] - coords[None, :, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    radii = np.array([_covalent_radius(e) for e in elements])
    limit = MIN_DISTANCE_FACTOR * (radii[:, None] + radii[None, :])
    np.fill_diagonal(dist, np.inf)
    close = np.argwhere(dist < limit)
    if close.size:
        i, j = (int(k) for k in close[0])
        return (
            f"atoms {i} ({elements[i]}) and {j} ({elements[j]}) are {dist[i, j]:.3f} A apart, "
            f"closer than {limit[i, j]:.3f} A ({MIN_DISTANCE_FACTOR} x their covalent radii)"
        )
    return None


def rule_problem(
    payload: Mapping[str, Any], allowed_elements: Sequence[str], max_heavy_atoms: int
) -> str | None:
    """The rule layer for a schema-valid payload: ``None`` when fine, else why not.

    SMILES sanitise and are one fragment; the formal charge of a SMILES is the payload's
    charge; charge and multiplicity fit the electron count; elements are in
    ``allowed_elements`` (plus H); at most ``max_heavy_atoms`` non-hydrogen atoms; a geometry
    exists (a SMILES embeds; given coordinates match the elements, are finite and no two
    atoms are unphysically close); SMILES and coordinates given together name the same atoms.
    """
    allowed = set(allowed_elements) | {"H"}
    charge = int(payload.get("charge", 0))
    smiles = payload.get("smiles")
    mol = None
    if smiles is not None:
        mol, problem = parse_smiles(smiles)
        if mol is None:
            return problem
        smiles_charge, _ = _smiles_charge_and_radicals(mol)
        if "charge" in payload and smiles_charge != charge:
            return f"charge {charge} differs from the SMILES's formal charge {smiles_charge}"
        charge = smiles_charge
    if "coordinates_angstrom" in payload:
        elements = list(payload["elements"])
        coords = np.asarray(payload["coordinates_angstrom"], dtype=np.float64)
        if len(elements) != len(coords):
            return f"{len(elements)} elements but {len(coords)} coordinate rows"
        bad = [e for e in elements if not _element_symbol_ok(e)]
        if bad:
            return f"unknown element symbol {bad[0]!r}"
        if not np.isfinite(coords).all() or np.abs(coords).max() > 1e4:
            return "coordinates must be finite numbers within 10,000 A"
        if mol is not None:
            chem = _rdkit()
            with_h = chem.AddHs(mol)
            if sorted(a.GetSymbol() for a in with_h.GetAtoms()) != sorted(elements):
                return "the coordinates' elements are not the SMILES's atoms (hydrogens included)"
        problem = _distance_problem(elements, coords)
        if problem:
            return problem
    else:
        assert mol is not None  # the schema requires smiles or a geometry
        elements = [a.GetSymbol() for a in _rdkit().AddHs(mol).GetAtoms()]
    outside = sorted({e for e in elements if e not in allowed})
    if outside:
        return f"element(s) {outside} outside the allowed set {sorted(allowed)} (option elements)"
    heavy = sum(e != "H" for e in elements)
    if heavy > max_heavy_atoms:
        return f"{heavy} heavy atoms, more than max_heavy_atoms = {max_heavy_atoms}"
    n_electrons = sum(_atomic_number(e) for e in elements) - charge
    problem = _spin_problem(n_electrons, multiplicity_of(payload, mol, n_electrons))
    if problem:
        return problem
    if "coordinates_angstrom" not in payload:
        got = embed(canonical_smiles(smiles) or smiles)
        if isinstance(got, str):
            return got
    return None


def identity_key(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """Two payloads are the same example when they name the same molecule by SMILES (canonical
    form: ``OCC`` is ``CCO``) with the same charge, multiplicity and given geometry (none: the
    geometry is then a function of the SMILES). ``name`` is a label, not part of the identity.
    ``None`` (the payload's JSON) for what does not parse: the rule layer says why."""
    if not isinstance(payload, Mapping):
        return None
    key = {k: v for k, v in payload.items() if k != "name"}
    smiles = payload.get("smiles")
    if isinstance(smiles, str):
        canonical = canonical_smiles(smiles)
        if canonical is None:
            return None
        key["smiles"] = canonical
    elif "name" not in payload:
        return None
    return key


def heavy_atom_count(elements: Sequence[str]) -> int:
    return sum(e != "H" for e in elements)


def formula_slice(elements: Sequence[str]) -> str:
    """The element set of a molecule, heavy atoms in Hill-like order (C first): ``C,N,O``."""
    heavy = sorted({e for e in elements if e != "H"}, key=lambda e: (e != "C", e))
    return ",".join(heavy) if heavy else "H"
