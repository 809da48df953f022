"""The chemistry domain's options (``[domain_options]``): level of theory, cost levers, limits.

Defaults follow what was measured here on 400 QM9-like molecules: B3LYP/def2-SVP with density
fitting and grid level 0 costs 4.7 s (median, one thread) against 28-60 s at PySCF's defaults
on two threads, and moved the gap by < 0.01 eV; ``tests/test_chemistry_simulators.py`` checks
the difference again on a sample. Every example records these options.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundry.simulators.pyscf_dft import DFTSettings
from foundry.simulators.xtb import XTBSettings

__all__ = ["OBSERVABLES", "ChemistryOptions"]

#: what both tiers measure, with units in the names
OBSERVABLES: tuple[str, ...] = (
    "gap_ev",
    "homo_ev",
    "lumo_ev",
    "dipole_debye",
    "total_energy_hartree",
)
#: elements the default generator and rule layer support (the NCI reservoir has them all)
SUPPORTED_ELEMENTS: tuple[str, ...] = ("C", "N", "O", "F", "S", "Cl", "P", "Br")


@dataclass(frozen=True)
class ChemistryOptions:
    """``xc``/``basis``: the DFT level of theory (any PySCF functional and basis name, e.g.
    ``6-31G(2df,p)``). ``density_fit``/``grid_level``/``conv_tol_hartree``: DFT cost levers.
    ``dft_threads``: threads one DFT item uses (a declared resource: the executor runs
    ``cores / dft_threads`` items at once). ``elements``/``max_heavy_atoms``: what the rule
    layer admits and the generator makes (QM9-like by default). ``certified``: the observables
    the surrogate predicts and certificates cover; the others are recorded as measurements of
    ground-truth labels. ``*_tol_*``: the tolerance within which a prediction counts as right.
    ``surrogate_members``/``surrogate_max_steps``: the SchNet ensemble's size and training
    length. The level of theory is checked by the simulators' own settings (built here once,
    so a bad value is a config error, not a worker's)."""

    xc: str = "b3lyp"
    basis: str = "def2-svp"
    density_fit: bool = True
    grid_level: int = 0
    conv_tol_hartree: float = 1e-9
    dft_threads: int = 1
    dft_timeout_s: float = 1800.0
    dft_memory_mb: int = 4000
    xtb_method: str = "GFN2-xTB"
    elements: tuple[str, ...] = ("C", "N", "O", "F")
    max_heavy_atoms: int = 9
    certified: tuple[str, ...] = ("gap_ev",)
    gap_tol_ev: float = 0.2
    orbital_tol_ev: float = 0.2
    dipole_tol_debye: float = 0.3
    energy_tol_hartree: float = 0.0016
    surrogate_members: int = 4
    surrogate_max_steps: int = 3000

    def __post_init__(self) -> None:
        unknown = [e for e in self.elements if e not in SUPPORTED_ELEMENTS]
        if unknown or not self.elements:
            raise ValueError(f"elements {unknown or '[]'} not in {list(SUPPORTED_ELEMENTS)}")
        if "C" not in self.elements:
            raise ValueError("elements must include C (the generator builds organic molecules)")
        if not 1 <= self.max_heavy_atoms <= 40:
            raise ValueError(f"max_heavy_atoms must be 1..40, got {self.max_heavy_atoms}")
        bad = [c for c in self.certified if c not in OBSERVABLES]
        if bad or not self.certified or len(set(self.certified)) != len(self.certified):
            raise ValueError(f"certified must name distinct observables of {list(OBSERVABLES)}")
        if self.dft_threads < 1 or self.dft_timeout_s <= 0:
            raise ValueError("dft_threads >= 1 and dft_timeout_s > 0")
        self.dft_settings()
        self.xtb_settings()
        tolerances = (self.gap_tol_ev, self.orbital_tol_ev, self.dipole_tol_debye,
                      self.energy_tol_hartree)  # fmt: skip
        if min(tolerances) <= 0:
            raise ValueError("tolerances must be > 0")
        if self.surrogate_members < 2 or self.surrogate_max_steps < 10:
            raise ValueError("surrogate_members >= 2 and surrogate_max_steps >= 10")

    def dft_settings(self) -> DFTSettings:
        return DFTSettings(
            xc=self.xc,
            basis=self.basis,
            density_fit=self.density_fit,
            grid_level=self.grid_level,
            conv_tol_hartree=self.conv_tol_hartree,
            max_memory_mb=self.dft_memory_mb,
        )

    def xtb_settings(self) -> XTBSettings:
        return XTBSettings(method=self.xtb_method)

    def tolerance(self, name: str) -> tuple[str, float]:
        """(unit, absolute tolerance) of an observable."""
        return {
            "gap_ev": ("eV", self.gap_tol_ev),
            "homo_ev": ("eV", self.orbital_tol_ev),
            "lumo_ev": ("eV", self.orbital_tol_ev),
            "dipole_debye": ("D", self.dipole_tol_debye),
            "total_energy_hartree": ("Ha", self.energy_tol_hartree),
        }[name]
