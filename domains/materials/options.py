"""The materials domain's options (``[domain_options]``): elements, limits, MD settings, tolerances.

Defaults follow what was measured here (2026-12-04, 2 cores): a 256-500-atom replica of a
metal under the Girifalco-Weizer Morse potentials at a 7 Angstrom cutoff takes ~0.75 ms a
Langevin step on one CPU thread, so 500 equilibration + 1,000 production steps (3 ps at 2 fs)
cost ~1.1 s a replica; the relaxation ~0.1 s. The Lindemann index of Cu varied between seeds
by <= 4 % at 300-2,000 K and by <= 8 % at 3,000 K (three seeds each): the default tolerance
(0.005 + 10 %) exceeds it, and an item whose two replicas differ by more than the tolerance is
a recorded failure, not a label.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundry.simulators.openmm_md import MORSE_PARAMETERS, MDSettings

__all__ = ["CUBIC_ATOMS_PER_CELL", "LATTICES", "OBSERVABLES", "MaterialsOptions"]

#: what the MD tier measures and a surrogate may be certified on, with units in the names
OBSERVABLES: tuple[str, ...] = (
    "energy_per_atom_ev",
    "lindemann_index",
    "lattice_constant_angstrom",
    "volume_per_atom_angstrom3",
)
#: lattice families the generator builds (``other``: a user's structure of no stated family)
LATTICES: tuple[str, ...] = ("fcc", "bcc", "hcp")
#: atoms in the conventional cubic cell: a cubic crystal's lattice constant is
#: ``(atoms_per_cell * volume / sites) ** (1/3)``
CUBIC_ATOMS_PER_CELL: dict[str, int] = {"fcc": 4, "bcc": 2}


@dataclass(frozen=True)
class MaterialsOptions:
    """``elements``: what the rule layer admits and the generator uses (each needs Morse
    parameters: Al, Cu, Ni, Ag, Pb, Fe, Cr, Mo, W). ``max_atoms``: atoms a candidate cell may
    hold (the MD replicates it to twice the cutoff anyway). ``temperature_*_k``: the range the
    rule layer admits. ``min_distance_factor``: no two atoms (periodic images included) closer
    than this share of their pair's Morse r0. ``volume_factor_range``: the volume per atom
    must lie within this range of the composition's reference volume (Vegard's average of the
    elements' experimental volumes). ``certified``: the observables the surrogate predicts and
    certificates cover (``lattice_constant_angstrom`` restricts the rule layer to cubic
    families); the rest are recorded with every label. ``md_*``: the MD tier (see
    :class:`~foundry.simulators.openmm_md.MDSettings`); ``md_replicas`` independent seeds
    per item, the label their mean. ``short_md_fraction``: the ``short-md`` tier runs one
    replica of this share of the steps. ``md_seed_offset``: added to every
    item's seeds (an independent re-simulation of the same items: another offset).
    ``surrogate_*``: the SchNet ensemble."""

    elements: tuple[str, ...] = tuple(MORSE_PARAMETERS)
    lattices: tuple[str, ...] = LATTICES
    max_atoms: int = 64
    temperature_min_k: float = 1.0
    temperature_max_k: float = 6000.0
    min_distance_factor: float = 0.6
    volume_factor_range: tuple[float, float] = (0.6, 1.7)
    certified: tuple[str, ...] = ("energy_per_atom_ev", "lindemann_index")
    energy_tol_ev: float = 0.02
    lindemann_abs_tol: float = 0.005
    lindemann_rel_tol: float = 0.10
    lattice_tol_angstrom: float = 0.01
    volume_tol_angstrom3: float = 0.2
    md_cutoff_angstrom: float = 7.0
    md_switch_angstrom: float = 6.0
    md_timestep_fs: float = 2.0
    md_friction_per_ps: float = 1.0
    md_equilibration_steps: int = 500
    md_production_steps: int = 1000
    md_sample_every: int = 10
    md_replicas: int = 2
    md_platform: str = "CPU"
    md_threads: int = 1
    md_timeout_s: float = 900.0
    melt_lindemann: float = 0.15
    short_md_fraction: float = 0.2
    md_seed_offset: int = 0
    surrogate_members: int = 4
    surrogate_max_steps: int = 2000
    surrogate_cutoff_angstrom: float = 5.0

    def __post_init__(self) -> None:
        unknown = [e for e in self.elements if e not in MORSE_PARAMETERS]
        if unknown or not self.elements or len(set(self.elements)) != len(self.elements):
            raise ValueError(f"elements must be distinct names of {list(MORSE_PARAMETERS)}, "
                             f"got {list(self.elements)}")
        bad = [x for x in self.lattices if x not in LATTICES]
        if bad or not self.lattices:
            raise ValueError(f"lattices must name some of {list(LATTICES)}, got {bad}")
        if not 1 <= self.max_atoms <= 500:
            raise ValueError(f"max_atoms must be 1..500, got {self.max_atoms}")
        if not 0 < self.temperature_min_k < self.temperature_max_k:
            raise ValueError("need 0 < temperature_min_k < temperature_max_k")
        lo, hi = self.volume_factor_range
        if not 0 < lo < 1 < hi or not 0 < self.min_distance_factor < 1:
            raise ValueError("need 0 < volume_factor_range[0] < 1 < volume_factor_range[1] "
                             "and 0 < min_distance_factor < 1")
        bad = [c for c in self.certified if c not in OBSERVABLES]
        if bad or not self.certified or len(set(self.certified)) != len(self.certified):
            raise ValueError(f"certified must name distinct observables of {list(OBSERVABLES)}")
        if "lattice_constant_angstrom" in self.certified and "hcp" in self.lattices:
            raise ValueError("certifying lattice_constant_angstrom needs cubic lattices only: "
                             "set lattices = ['fcc', 'bcc']")
        if min(self.energy_tol_ev, self.lindemann_abs_tol, self.lattice_tol_angstrom,
               self.volume_tol_angstrom3) <= 0 or self.lindemann_rel_tol < 0:
            raise ValueError("tolerances must be > 0 (lindemann_rel_tol >= 0)")
        if self.md_replicas < 1 or self.md_threads < 1 or self.md_timeout_s <= 0:
            raise ValueError("md_replicas >= 1, md_threads >= 1 and md_timeout_s > 0")
        if not 0 <= self.md_seed_offset < 2**30:
            raise ValueError("md_seed_offset must lie in [0, 2^30)")
        if not 0 < self.short_md_fraction <= 1:
            raise ValueError("short_md_fraction must lie in (0, 1]")
        if self.surrogate_members < 2 or self.surrogate_max_steps < 10:
            raise ValueError("surrogate_members >= 2 and surrogate_max_steps >= 10")
        if not 2.0 <= self.surrogate_cutoff_angstrom <= self.md_cutoff_angstrom:
            raise ValueError("surrogate_cutoff_angstrom must lie in [2, md_cutoff_angstrom]")
        self.md_settings()
        self.md_settings(short=True)

    def md_settings(self, short: bool = False) -> MDSettings:
        """The MD tier's settings (``short``: the short-md tier's, a share of the steps)."""
        share = self.short_md_fraction if short else 1.0
        sample_every = self.md_sample_every
        production = max(2 * sample_every, round(self.md_production_steps * share))
        return MDSettings(
            cutoff_angstrom=self.md_cutoff_angstrom,
            switch_angstrom=self.md_switch_angstrom,
            timestep_fs=self.md_timestep_fs,
            friction_per_ps=self.md_friction_per_ps,
            equilibration_steps=round(self.md_equilibration_steps * share),
            production_steps=production,
            sample_every=sample_every,
            melt_lindemann=self.melt_lindemann,
            platform=self.md_platform,
        )

    def tolerance(self, name: str) -> tuple[str, float, float]:
        """(unit, absolute tolerance, relative tolerance) of an observable."""
        return {
            "energy_per_atom_ev": ("eV/atom", self.energy_tol_ev, 0.0),
            "lindemann_index": ("1", self.lindemann_abs_tol, self.lindemann_rel_tol),
            "lattice_constant_angstrom": ("Angstrom", self.lattice_tol_angstrom, 0.0),
            "volume_per_atom_angstrom3": ("Angstrom^3", self.volume_tol_angstrom3, 0.0),
        }[name]
