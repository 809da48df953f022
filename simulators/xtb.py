"""A thin wrapper of tblite for GFN-xTB single points, run in-process through its Python API.

Why in-process: a GFN2-xTB single point of a small molecule costs milliseconds, far less than
starting an ``xtb`` process and parsing its output files. This module

* converts Angstrom to Bohr (tblite's unit) and passes ``uhf = multiplicity - 1``;
* silences tblite completely (verbosity 0 and a logger that drops every line);
* reads HOMO and LUMO from the orbital energies with the electron count, not from thresholds
  on the occupations, which are fractional at a finite electronic temperature (see
  :func:`run_xtb`);
* raises :class:`~foundry.contract.SetupError` when tblite is missing,
  :class:`~foundry.contract.SimulationFailed` when tblite ran but gave no usable answer
  (non-converged SCC, library errors), ``ValueError`` for bad input.

The wrapper is generic: it knows molecules, not domains.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from foundry.simulators._elements import ATOMIC_NUMBERS
from scipy import constants
from scipy.spatial.distance import pdist

from foundry.contract import SetupError, SimulationFailed

__all__ = ["METHODS", "XTBResult", "XTBSettings", "run_xtb", "tblite_version"]

#: parametrisations tblite ships that this wrapper accepts
METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")

#: atoms closer than this are rejected as input errors
MIN_DISTANCE_ANGSTROM = 0.1
#: CODATA values from scipy
BOHR_ANGSTROM = constants.value("Bohr radius") * 1e10
HARTREE_EV = constants.value("Hartree energy in eV")
KELVIN_HARTREE = constants.value("kelvin-hartree relationship")
#: one e*bohr in Debye (1 D = 1e-21 C m^2 s^-1 / c)
EBOHR_DEBYE = constants.e * constants.value("Bohr radius") * constants.c * 1e21

_HOMO_RULE = (
    "electron count: with n_alpha >= n_beta electrons per spin filled into the energy-ordered "
    "orbitals, HOMO is orbital n_alpha and LUMO orbital n_alpha + 1 (the xtb program's alpha "
    "HOMO/LUMO convention); occupations, fractional at finite electronic temperature, are "
    "only used to count the electrons"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


@dataclass(frozen=True)
class XTBSettings:
    """Parametrisation and SCC controls (``accuracy`` is tblite's threshold multiplier)."""

    method: str = "GFN2-xTB"
    accuracy: float = 1.0
    max_iterations: int = 250
    electronic_temperature_k: float = 300.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not _is_number(self.accuracy) or not self.accuracy > 0:
            raise ValueError(f"accuracy must be a positive number, got {self.accuracy!r}")
        if not _is_int(self.max_iterations) or self.max_iterations < 1:
            raise ValueError(
                f"max_iterations must be a positive integer, got {self.max_iterations!r}"
            )
        t = self.electronic_temperature_k
        if not _is_number(t) or not (0 <= t <= 1e5):
            raise ValueError(f"electronic_temperature_k must be in [0, 1e5] K, got {t!r}")

    def provenance(self) -> dict[str, Any]:
        """Everything needed to repeat a run with these settings, as plain JSON-able data."""
        return {
            "program": "tblite",
            "tblite_version": _version_or_none(),
            "method": self.method,
            "accuracy": self.accuracy,
            "max_iterations": self.max_iterations,
            "electronic_temperature_k": self.electronic_temperature_k,
            "electronic_temperature_hartree": self.electronic_temperature_k * KELVIN_HARTREE,
            "guess": "tblite default (SAD)",
            "mixer": "tblite default (Broyden)",
            "spin_polarization": False,
            "solvation": None,
            "bohr_angstrom": BOHR_ANGSTROM,
            "homo_lumo_rule": _HOMO_RULE,
            "dipole_origin": "tblite's (coordinate origin)",
        }


@dataclass
class XTBResult:
    """One converged xTB single point. Orbital energies in eV, total energy in Hartree.

    ``charges`` are tblite's atomic partial charges (Mulliken populations of the SCC).
    """

    total_energy_hartree: float
    homo_ev: float
    lumo_ev: float
    gap_ev: float
    dipole_debye: float
    charges: list[float]
    walltime_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def tblite_version() -> str:
    """The installed tblite version; SetupError if tblite is missing."""
    _import_tblite()
    return importlib.metadata.version("tblite")


def run_xtb(
    elements: Sequence[str],
    coordinates_angstrom: np.ndarray | Sequence[Sequence[float]],
    charge: int = 0,
    multiplicity: int = 1,
    settings: XTBSettings = XTBSettings(),
) -> XTBResult:
    """One xTB single point.

    HOMO/LUMO: tblite returns one set of orbital energies (no spin polarisation is added) and
    occupations that are Fermi-smeared at the electronic temperature, spin-summed (0..2). The
    number of valence electrons ``n`` is their sum; with ``n_alpha = (n + uhf) / 2`` the HOMO is
    the ``n_alpha``-th orbital in energy order and the LUMO the next one, as the xtb program
    reports them. For a gapped closed shell this is the orbital with occupation > 1 (> 0.5 per
    spin) and the first below; for a radical the HOMO is the singly occupied orbital.
    """
    numbers, positions_bohr = _check_input(elements, coordinates_angstrom, charge, multiplicity)
    Calculator, tblite_error = _import_tblite()
    uhf = int(multiplicity) - 1
    t0 = time.perf_counter()
    log: list[str] = []
    try:
        calc = Calculator(
            settings.method,
            numbers,
            positions_bohr,
            charge=float(charge),
            uhf=uhf,
            color=False,
            logger=log.append,
        )
        calc.set("verbosity", 0)
        calc.set("accuracy", float(settings.accuracy))
        calc.set("max-iter", int(settings.max_iterations))
        calc.set("temperature", float(settings.electronic_temperature_k) * KELVIN_HARTREE)
        res = calc.singlepoint()
        energy = float(res.get("energy"))
        orbital_energies = np.asarray(res.get("orbital-energies"), dtype=float)
        occupations = np.asarray(res.get("orbital-occupations"), dtype=float)
        dipole = np.asarray(res.get("dipole"), dtype=float)
        charges = np.asarray(res.get("charges"), dtype=float)
    except tblite_error as exc:
        raise SimulationFailed(f"tblite {settings.method}: {_one_line(exc)}") from None
    homo, lumo = _frontier(orbital_energies, occupations, uhf)
    values = np.concatenate([[energy, homo], dipole, charges])
    if not np.all(np.isfinite(values)):
        raise SimulationFailed(f"tblite {settings.method} returned non-finite results")
    return XTBResult(
        total_energy_hartree=energy,
        homo_ev=homo * HARTREE_EV,
        lumo_ev=lumo * HARTREE_EV,
        gap_ev=(lumo - homo) * HARTREE_EV,
        dipole_debye=float(np.linalg.norm(dipole)) * EBOHR_DEBYE,
        charges=[float(q) for q in charges],
        walltime_s=time.perf_counter() - t0,
    )


# -- helpers --------------------------------------------------------------------------------
def _import_tblite() -> tuple[Any, type[Exception]]:
    try:
        from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError
        from tblite.interface import Calculator
    except (ImportError, OSError) as exc:
        raise SetupError(f"tblite is not installed or cannot be loaded: {exc}") from exc
    return Calculator, (TBLiteRuntimeError, TBLiteValueError)


def _version_or_none() -> str | None:
    try:
        return tblite_version()
    except (SetupError, importlib.metadata.PackageNotFoundError):
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _check_input(
    elements: Sequence[str],
    coordinates: np.ndarray | Sequence[Sequence[float]],
    charge: int,
    multiplicity: int,
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(elements, str):
        raise ValueError("elements must be a sequence of symbols, not one string")
    numbers = []
    for symbol in elements:
        z = ATOMIC_NUMBERS.get(str(symbol).strip().capitalize())
        if z is None or z > 86:  # GFN parametrisations cover H..Rn
            raise ValueError(f"element {symbol!r} is not covered by GFN-xTB (H..Rn)")
        numbers.append(z)
    if not numbers:
        raise ValueError("need at least one atom")
    coords = np.asarray(coordinates, dtype=float)
    if coords.shape != (len(numbers), 3):
        raise ValueError(f"coordinates must have shape ({len(numbers)}, 3), got {coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise ValueError("coordinates must be finite")
    if len(coords) > 1 and pdist(coords).min() < MIN_DISTANCE_ANGSTROM:
        raise ValueError(f"two atoms are closer than {MIN_DISTANCE_ANGSTROM} A")
    if not _is_int(charge):
        raise ValueError(f"charge must be an integer, got {charge!r}")
    if not _is_int(multiplicity) or multiplicity < 1:
        raise ValueError(f"multiplicity must be a positive integer, got {multiplicity!r}")
    nelectron = sum(numbers) - int(charge)
    unpaired = int(multiplicity) - 1
    if nelectron < 0 or unpaired > nelectron or (nelectron - unpaired) % 2:
        raise ValueError(
            f"charge {charge} and multiplicity {multiplicity} are inconsistent with "
            f"{nelectron} electrons"
        )
    return np.asarray(numbers, dtype=np.int32), coords / BOHR_ANGSTROM


def _frontier(
    orbital_energies: np.ndarray, occupations: np.ndarray, uhf: int
) -> tuple[float, float]:
    """HOMO and LUMO (Hartree) by the electron count; see :func:`run_xtb`."""
    if orbital_energies.ndim != 1 or occupations.shape != orbital_energies.shape:
        raise SimulationFailed(
            f"tblite returned spin-resolved orbitals {orbital_energies.shape}; not handled"
        )
    total = float(occupations.sum())
    nvalence = round(total)
    if abs(total - nvalence) > 1e-6 or (nvalence - uhf) % 2 or nvalence < uhf:
        raise SimulationFailed(f"tblite occupations sum to {total:.6f} electrons (uhf {uhf})")
    n_alpha = (nvalence + uhf) // 2
    energies = np.sort(orbital_energies)
    if n_alpha == 0:
        raise SimulationFailed("no valence electrons, so no HOMO")
    homo = float(energies[n_alpha - 1])
    lumo = float(energies[n_alpha]) if n_alpha < energies.size else float("nan")
    return homo, lumo
