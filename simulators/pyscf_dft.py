"""A thin wrapper of PySCF for Kohn-Sham DFT (and Hartree-Fock) single points, run in-process.

Why a wrapper: a ground truth must either give a converged, reproducible answer or fail
loudly. Bare PySCF returns an unconverged SCF with only a log warning, prints to stdout, writes
checkpoint files and takes its thread count from process-global state. This module

* runs restricted Kohn-Sham for closed shells (multiplicity 1) and unrestricted otherwise;
* checks SCF convergence and walks a fixed fallback ladder (plain DIIS, then level shift with
  damping from the last density, then the second-order solver); when no step converges it
  raises :class:`~foundry.contract.SimulationFailed`, so an unconverged result never escapes;
* silences PySCF (``verbose=0``, no output file, no checkpoint file) and sets, then restores,
  PySCF's OpenMP thread count around each call;
* records everything needed to repeat a run (:meth:`DFTSettings.provenance`), including the
  density-fitting basis actually used.

A note on names: in PySCF 2.14 ``"b3lyp"`` is libxc's ``HYB_GGA_XC_B3LYP``, whose LDA
correlation is VWN-RPA (Gaussian's, Psi4's and NWChem's default B3LYP; ``"b3lypg"`` is the same
functional); ``"b3lyp5"`` uses VWN5 (Turbomole's default). ``xc="hf"`` selects Hartree-Fock.

Missing PySCF raises :class:`~foundry.contract.SetupError`; bad input (unknown element, basis or
functional, inconsistent charge and multiplicity) raises ``ValueError``. The wrapper is generic:
it knows molecules, not domains.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from foundry.simulators._elements import ATOMIC_NUMBERS
from scipy.spatial.distance import pdist

from foundry.contract import SetupError, SimulationFailed

__all__ = [
    "FALLBACK_LADDER",
    "DFTResult",
    "DFTSettings",
    "pyscf_version",
    "run_dft",
]

#: the SCF solvers tried in order; each later one starts from the density of the one before
FALLBACK_LADDER = ("diis", "level_shift", "newton")
#: second rung: level shift (Hartree) throughout, Fock damping until DIIS starts at this cycle
LEVEL_SHIFT_HARTREE = 0.4
DAMPING = 0.3
DIIS_START_CYCLE = 5
#: atoms closer than this are rejected as input errors
MIN_DISTANCE_ANGSTROM = 0.1


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _ladder_description() -> list[str]:
    return [
        "diis: plain DIIS from PySCF's default (minao) guess",
        f"level_shift: level shift {LEVEL_SHIFT_HARTREE} Ha, Fock damping {DAMPING} until DIIS "
        f"starts at cycle {DIIS_START_CYCLE}, from the last density",
        "newton: second-order (augmented-Hessian) solver mf.newton() from the last density",
    ]


@dataclass(frozen=True)
class DFTSettings:
    """Level of theory and SCF controls.

    ``basis`` is any basis name PySCF knows (case-insensitive, e.g. ``"def2-svp"``,
    ``"6-31G(2df,p)"``); ``basis_overrides`` replaces it for single elements, each value being
    a basis name or a basis in NWChem format (text with a newline). ``density_fit`` uses
    PySCF's density fitting (for J and, with hybrids, K) with its default auxiliary basis for
    the orbital basis (``pyscf.df.addons.make_auxbasis``). ``diis_max_cycle`` caps the first,
    plain-DIIS rung only (``None``: ``max_cycle``); the other rungs get ``max_cycle``.
    ``xc`` and ``basis`` are checked against PySCF when :func:`run_dft` runs.
    """

    xc: str = "b3lyp"
    basis: str = "def2-svp"
    density_fit: bool = True
    grid_level: int = 0
    conv_tol_hartree: float = 1e-9
    max_cycle: int = 100
    max_memory_mb: int = 4000
    diis_max_cycle: int | None = None
    basis_overrides: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.xc, str) or not self.xc.strip():
            raise ValueError(f"xc must be a non-empty string, got {self.xc!r}")
        if not isinstance(self.basis, str) or not self.basis.strip():
            raise ValueError(f"basis must be a non-empty string, got {self.basis!r}")
        if not isinstance(self.density_fit, bool):
            raise ValueError(f"density_fit must be a bool, got {self.density_fit!r}")
        if not _is_int(self.grid_level) or not 0 <= self.grid_level <= 9:
            raise ValueError(f"grid_level must be an integer in 0..9, got {self.grid_level!r}")
        tol = self.conv_tol_hartree
        if not isinstance(tol, int | float) or not (0 < tol <= 1e-3):
            raise ValueError(f"conv_tol_hartree must be in (0, 1e-3], got {tol!r}")
        if not _is_int(self.max_cycle) or self.max_cycle < 1:
            raise ValueError(f"max_cycle must be a positive integer, got {self.max_cycle!r}")
        if not _is_int(self.max_memory_mb) or self.max_memory_mb < 100:
            raise ValueError(f"max_memory_mb must be an integer >= 100, got {self.max_memory_mb!r}")
        if self.diis_max_cycle is not None and (
            not _is_int(self.diis_max_cycle) or self.diis_max_cycle < 0
        ):
            raise ValueError(
                f"diis_max_cycle must be None or an integer >= 0, got {self.diis_max_cycle!r}"
            )
        overrides = tuple(tuple(pair) for pair in self.basis_overrides)
        for pair in overrides:
            if len(pair) != 2 or not all(isinstance(p, str) and p.strip() for p in pair):
                raise ValueError(f"basis_overrides must be (element, basis) pairs, got {pair!r}")
        object.__setattr__(self, "basis_overrides", overrides)

    @property
    def is_hartree_fock(self) -> bool:
        return self.xc.strip().lower() == "hf"

    def provenance(self) -> dict[str, Any]:
        """Everything needed to repeat a run with these settings, as plain JSON-able data."""
        return {
            "program": "pyscf",
            "pyscf_version": _version_or_none(),
            "method": "RHF/UHF" if self.is_hartree_fock else "RKS/UKS",
            "xc": self.xc,
            "basis": self.basis,
            "basis_overrides": [list(p) for p in self.basis_overrides],
            "cartesian_basis": False,
            "density_fit": self.density_fit,
            "auxbasis": (
                "pyscf.df.addons.make_auxbasis default for the orbital basis "
                "(per-element names in DFTResult.auxbasis)"
                if self.density_fit
                else None
            ),
            "grid_level": None if self.is_hartree_fock else self.grid_level,
            "conv_tol_hartree": self.conv_tol_hartree,
            "conv_tol_grad": "pyscf default, sqrt(conv_tol)",
            "max_cycle": self.max_cycle,
            "diis_max_cycle": self.max_cycle
            if self.diis_max_cycle is None
            else self.diis_max_cycle,
            "max_memory_mb": self.max_memory_mb,
            "initial_guess": "minao",
            "spin_treatment": "restricted for multiplicity 1, unrestricted otherwise",
            "dipole_origin": "centre of nuclear charge",
            "fallback_ladder": list(FALLBACK_LADDER),
            "fallback_ladder_detail": _ladder_description(),
        }


@dataclass
class DFTResult:
    """A converged SCF. Energies of orbitals in eV, total energy in Hartree.

    For unrestricted runs HOMO is the highest occupied level of either spin and LUMO the lowest
    unoccupied one; LUMO and gap are NaN if the basis has no virtual orbitals. ``n_cycles`` is
    the total number of SCF (macro) cycles over all rungs of the ladder that ran; ``solver``
    names the rung that converged; ``n_basis_functions`` counts the (spherical) orbital basis.
    ``auxbasis`` maps each element to its density-fitting basis
    (``"even-tempered"`` where PySCF generated one), ``None`` without density fitting.
    """

    total_energy_hartree: float
    homo_ev: float
    lumo_ev: float
    gap_ev: float
    dipole_debye: float
    converged: bool
    solver: str
    n_cycles: int | None
    restricted: bool
    spin_square: float | None
    walltime_s: float
    auxbasis: dict[str, str] | None = None
    n_basis_functions: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pyscf_version() -> str:
    """The installed PySCF version; SetupError if PySCF is missing."""
    return _import_pyscf().__version__


def run_dft(
    elements: Sequence[str],
    coordinates_angstrom: np.ndarray | Sequence[Sequence[float]],
    charge: int = 0,
    multiplicity: int = 1,
    settings: DFTSettings = DFTSettings(),
    threads: int | None = None,
) -> DFTResult:
    """One SCF single point; returns only converged results.

    Fallback ladder (:data:`FALLBACK_LADDER`): 1) plain DIIS from the minao guess; 2) level
    shift of 0.4 Ha with Fock damping 0.3 before DIIS starts (cycle 5), from the last density;
    3) the second-order solver (``mf.newton()``) from the last density. If none converges,
    SimulationFailed.
    ``threads`` sets PySCF's OpenMP thread count for this call only (``None``: leave it).
    """
    symbols, coords = _check_geometry(elements, coordinates_angstrom)
    if threads is not None and (not _is_int(threads) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    pyscf = _import_pyscf()
    from pyscf import lib

    _check_spin(symbols, charge, multiplicity)
    basis = _basis_for(symbols, settings)
    if not settings.is_hartree_fock:
        _check_xc(settings.xc)

    t0 = time.perf_counter()
    with _pyscf_threads(lib, threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mol = pyscf.gto.Mole()
        mol.atom = [(s, tuple(xyz)) for s, xyz in zip(symbols, coords, strict=True)]
        mol.unit = "Angstrom"
        mol.basis = basis
        mol.charge = int(charge)
        mol.spin = int(multiplicity) - 1
        mol.verbose = 0
        mol.output = None
        mol.max_memory = settings.max_memory_mb
        try:
            mol.build(dump_input=False, parse_arg=False)
            mf, auxbasis = _make_mean_field(mol, settings, restricted=multiplicity == 1)
            solver, n_cycles = _converge(mf, settings)
            result = _collect(mf, mol, solver, n_cycles, restricted=multiplicity == 1)
        except SimulationFailed:
            raise
        except Exception as exc:  # PySCF ran on checked input and broke (memory, linear algebra)
            raise SimulationFailed(f"pyscf failed: {type(exc).__name__}: {_one_line(exc)}") from exc
    result.auxbasis = auxbasis
    result.n_basis_functions = int(mol.nao_nr())
    result.walltime_s = time.perf_counter() - t0
    return result


# -- input checks ---------------------------------------------------------------------------
def _check_geometry(
    elements: Sequence[str], coordinates: np.ndarray | Sequence[Sequence[float]]
) -> tuple[list[str], np.ndarray]:
    if isinstance(elements, str):
        raise ValueError("elements must be a sequence of symbols, not one string")
    symbols = [_normalise_symbol(e) for e in elements]
    coords = np.asarray(coordinates, dtype=float)
    if not symbols:
        raise ValueError("need at least one atom")
    if coords.shape != (len(symbols), 3):
        raise ValueError(f"coordinates must have shape ({len(symbols)}, 3), got {coords.shape}")
    if not np.all(np.isfinite(coords)):
        raise ValueError("coordinates must be finite")
    if len(coords) > 1 and pdist(coords).min() < MIN_DISTANCE_ANGSTROM:
        raise ValueError(f"two atoms are closer than {MIN_DISTANCE_ANGSTROM} A")
    return symbols, coords


def _normalise_symbol(symbol: Any) -> str:
    name = str(symbol).strip().capitalize()
    if name not in ATOMIC_NUMBERS:
        raise ValueError(f"unknown element symbol {symbol!r}")
    return name


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _check_spin(symbols: Sequence[str], charge: int, multiplicity: int) -> int:
    if not _is_int(charge):
        raise ValueError(f"charge must be an integer, got {charge!r}")
    if not _is_int(multiplicity) or multiplicity < 1:
        raise ValueError(f"multiplicity must be a positive integer, got {multiplicity!r}")
    nelectron = sum(ATOMIC_NUMBERS[s] for s in symbols) - int(charge)
    unpaired = int(multiplicity) - 1
    if nelectron < 0 or unpaired > nelectron or (nelectron - unpaired) % 2:
        raise ValueError(
            f"charge {charge} and multiplicity {multiplicity} are inconsistent with "
            f"{nelectron} electrons"
        )
    return nelectron


def _check_xc(xc: str) -> None:
    from pyscf.dft import libxc

    try:
        libxc.parse_xc(xc)
    except (KeyError, ValueError, TypeError, NotImplementedError) as exc:
        raise ValueError(
            f"unknown exchange-correlation functional {xc!r}: {_one_line(exc)}"
        ) from None


def _basis_for(symbols: Sequence[str], settings: DFTSettings) -> dict[str, Any]:
    """PySCF basis per element (a name, or parsed shells for NWChem text); ValueError if the
    basis does not cover an element."""
    from pyscf import gto

    overrides = {_normalise_symbol(el): b for el, b in settings.basis_overrides}
    out: dict[str, Any] = {}
    for symbol in dict.fromkeys(symbols):
        spec = overrides.get(symbol, settings.basis)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "install basis-set-exchange" hints
            try:
                if "\n" in spec:
                    shells = gto.basis.parse(spec, symb=symbol)
                else:
                    shells = gto.basis.load(spec.strip(), symbol)
            except Exception as exc:  # BasisNotFoundError, KeyError, parse errors
                name = "the given NWChem-format basis" if "\n" in spec else f"basis {spec!r}"
                reason = _one_line(exc)[:120]
                raise ValueError(f"{name} is not available for {symbol}: {reason}") from None
        if not shells:
            raise ValueError(f"basis {spec.strip()!r} has no functions for {symbol}")
        # names stay names, so that PySCF picks the auxiliary basis tabulated for them
        out[symbol] = shells if "\n" in spec else spec.strip()
    return out


# -- running --------------------------------------------------------------------------------
def _import_pyscf() -> Any:
    try:
        import pyscf
        import pyscf.dft
        import pyscf.gto
        import pyscf.scf
    except ImportError as exc:
        raise SetupError(f"pyscf is not installed: {exc}") from exc
    return pyscf


def _version_or_none() -> str | None:
    try:
        return pyscf_version()
    except SetupError:
        return None


@contextlib.contextmanager
def _pyscf_threads(lib: Any, threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    previous = lib.num_threads()
    lib.num_threads(int(threads))
    try:
        yield
    finally:
        lib.num_threads(previous)


def _make_mean_field(
    mol: Any, settings: DFTSettings, *, restricted: bool
) -> tuple[Any, dict[str, str] | None]:
    from pyscf import dft, scf

    if settings.is_hartree_fock:
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    else:
        mf = dft.RKS(mol, xc=settings.xc) if restricted else dft.UKS(mol, xc=settings.xc)
        mf.grids.level = settings.grid_level
    mf.verbose = 0
    mf.chkfile = None
    mf.init_guess = "minao"
    mf.max_memory = settings.max_memory_mb
    mf.conv_tol = settings.conv_tol_hartree
    auxbasis_names: dict[str, str] | None = None
    if settings.density_fit:
        from pyscf.df import addons

        auxbasis = addons.make_auxbasis(mol)
        auxbasis_names = {
            el: b if isinstance(b, str) else "even-tempered" for el, b in auxbasis.items()
        }
        mf = mf.density_fit(auxbasis=auxbasis)
    return mf, auxbasis_names


def _converge(mf: Any, settings: DFTSettings) -> tuple[str, int]:
    """Walk the fallback ladder; the name of the rung that converged and the total cycles."""
    total = 0
    # 1) plain DIIS
    mf.max_cycle = (
        settings.max_cycle if settings.diis_max_cycle is None else settings.diis_max_cycle
    )
    mf.kernel()
    total += int(mf.cycles)
    if _converged(mf):
        return "diis", total
    dm = _last_density(mf)
    # 2) level shift with damping, from the last density
    mf.max_cycle = settings.max_cycle
    diis_start = mf.diis_start_cycle
    mf.level_shift, mf.damp, mf.diis_start_cycle = LEVEL_SHIFT_HARTREE, DAMPING, DIIS_START_CYCLE
    mf.kernel(dm0=dm)
    total += int(mf.cycles)
    mf.level_shift, mf.damp, mf.diis_start_cycle = 0.0, 0.0, diis_start
    if _converged(mf):
        return "level_shift", total
    dm = _last_density(mf)
    # 3) second-order solver, from the last density
    newton = mf.newton()
    newton.max_cycle = settings.max_cycle
    macro = [0]

    def count(envs: dict[str, Any]) -> None:
        macro[0] = max(macro[0], int(envs.get("imacro", -1)) + 1)

    newton.callback = count
    newton.kernel(dm0=dm)
    total += macro[0]
    if _converged(newton):
        _adopt(mf, newton)
        return "newton", total
    raise SimulationFailed(
        f"SCF did not converge after {', '.join(FALLBACK_LADDER)} ({total} cycles)"
    )


def _converged(mf: Any) -> bool:
    return bool(mf.converged) and bool(np.isfinite(mf.e_tot))


def _last_density(mf: Any) -> Any:
    if mf.mo_coeff is None or mf.mo_occ is None:
        return None
    return mf.make_rdm1(mf.mo_coeff, mf.mo_occ)


def _adopt(mf: Any, other: Any) -> None:
    for name in ("e_tot", "mo_energy", "mo_coeff", "mo_occ", "converged"):
        setattr(mf, name, getattr(other, name))


def _collect(mf: Any, mol: Any, solver: str, n_cycles: int, *, restricted: bool) -> DFTResult:
    from pyscf.data import nist

    mo_energy = np.atleast_2d(np.asarray(mf.mo_energy, dtype=float))
    mo_occ = np.atleast_2d(np.asarray(mf.mo_occ, dtype=float))
    occupied = mo_energy[mo_occ > 0]
    virtual = mo_energy[mo_occ <= 0]
    homo = float(occupied.max()) * nist.HARTREE2EV
    lumo = float(virtual.min()) * nist.HARTREE2EV if virtual.size else float("nan")
    charges = mol.atom_charges()
    origin = charges @ mol.atom_coords(unit="Bohr") / charges.sum()
    dipole = mf.dip_moment(mol, mf.make_rdm1(), unit="Debye", origin=origin, verbose=0)
    spin_square = None if restricted else float(mf.spin_square()[0])
    energy = float(mf.e_tot)
    if not np.isfinite(energy) or not np.isfinite(homo):
        raise SimulationFailed(f"SCF converged to a non-finite energy ({energy})")
    return DFTResult(
        total_energy_hartree=energy,
        homo_ev=homo,
        lumo_ev=lumo,
        gap_ev=lumo - homo,
        dipole_debye=float(np.linalg.norm(dipole)),
        converged=True,
        solver=solver,
        n_cycles=n_cycles,
        restricted=restricted,
        spin_square=spin_square,
        walltime_s=0.0,
    )
