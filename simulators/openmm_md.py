"""A thin wrapper of OpenMM for crystals under a Morse pair potential: relax, then run MD.

Why OpenMM: it integrates any pair potential written as an expression (``CustomNonbondedForce``)
on CPU, CUDA or OpenCL with the same code, with periodic boxes and tested Langevin integrators.
Why Morse: Girifalco and Weizer fitted one Morse function per cubic metal to its lattice
constant, cohesive energy and compressibility (Phys. Rev. 114, 687 (1959), Table I), which
OpenMM can express exactly; alloys take the mixing rule stated at :data:`MIXING_RULE`.

What this module does, and why each step:

* **Box.** OpenMM needs periodic boxes in *reduced form* (a along x, b in the xy plane,
  ``a_x >= 2|b_x|``, ...), and a cutoff at most half of each box width. A structure's cell is
  rotated to lower-triangular form (distances are unchanged), reduced, and replicated until
  each width is at least twice the cutoff; energies are reported per atom, so the replication
  does not show.
* **Relaxation** (:func:`relax`): the cell is scaled isotropically and, at each scale, the
  atoms are relaxed by OpenMM's L-BFGS minimiser; the scale of lowest energy is found by a
  bounded Brent search. The result: energy per atom, volume per atom, the linear scale (a
  cubic crystal's relaxed lattice constant is its nominal one times the scale) and the relaxed
  positions. Cell *shape* is kept (a strained cell stays strained in shape).
* **MD** (:func:`run_md`): NVT Langevin dynamics (``LangevinMiddleIntegrator``) at the relaxed
  volume, seeded; after equilibration, unwrapped positions are sampled and the Lindemann index
  ``sqrt(mean_i <|r_i - <r_i>|^2>) / d_nn`` (centre-of-mass drift removed; ``d_nn`` the relaxed
  nearest-neighbour distance) and the mean-square displacement over the production window are
  measured. A crystal is called melted when its index exceeds ``melt_lindemann`` (Lindemann's
  criterion puts melting at 0.1-0.15; liquids here give 0.3 and more, since atoms diffuse).
  Non-finite energies or positions ("the run exploded") raise
  :class:`~foundry.contract.SimulationFailed`.

The wrapper knows crystals, not domains: :class:`~foundry.contract.SetupError` when OpenMM or a
requested platform is missing, ``ValueError`` for bad input, ``SimulationFailed`` when the
simulation ran but gave no usable answer.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundry.contract import SetupError, SimulationFailed

__all__ = [
    "MIXING_RULE",
    "MORSE_PARAMETERS",
    "PLATFORMS",
    "MDResult",
    "MDSettings",
    "MorseParameters",
    "RelaxResult",
    "Structure",
    "openmm_version",
    "relax",
    "run_md",
    "run_nve",
]

#: kJ/mol per eV (CODATA 2018: e * N_A / 1000)
KJ_PER_MOL_PER_EV = 96.48533212331002
#: Boltzmann constant in kJ/(mol K) (CODATA 2018: R / 1000)
KB_KJ_PER_MOL_K = 0.0083144626181532
#: Langevin friction while equilibrating (a 0.1 ps coupling time)
_EQUILIBRATION_FRICTION_PER_PS = 10.0
PLATFORMS = ("CPU", "CUDA", "OpenCL", "Reference")
MIXING_RULE = (
    "D_ij = sqrt(D_i D_j), alpha_ij = (alpha_i + alpha_j) / 2, r0_ij = (r0_i + r0_j) / 2 "
    "(a Lorentz-Berthelot-like convention for unlike pairs; not fitted to alloy data)"
)


@dataclass(frozen=True)
class MorseParameters:
    """``E(r) = D [(1 - exp(-alpha (r - r0)))^2 - 1]``, in eV and Angstrom."""

    d_ev: float
    alpha_per_angstrom: float
    r0_angstrom: float
    lattice: str  # the lattice it was fitted in
    source: str = "L. A. Girifalco and V. G. Weizer, Phys. Rev. 114, 687 (1959), Table I"


#: Girifalco and Weizer's Morse parameters (their Table I), for the cubic metals whose
#: nearest-neighbour distance suits a 6-7.5 Angstrom cutoff (the alkali and alkaline-earth
#: metals of the table are left out: their potentials reach two to three times as far).
MORSE_PARAMETERS: dict[str, MorseParameters] = {
    "Al": MorseParameters(0.2703, 1.1646, 3.253, "fcc"),
    "Cu": MorseParameters(0.3429, 1.3588, 2.866, "fcc"),
    "Ni": MorseParameters(0.4205, 1.4199, 2.780, "fcc"),
    "Ag": MorseParameters(0.3323, 1.3690, 3.115, "fcc"),
    "Pb": MorseParameters(0.2348, 1.1836, 3.733, "fcc"),
    "Fe": MorseParameters(0.4174, 1.3885, 2.845, "bcc"),
    "Cr": MorseParameters(0.4414, 1.5721, 2.754, "bcc"),
    "Mo": MorseParameters(0.8032, 1.5079, 2.976, "bcc"),
    "W": MorseParameters(0.9906, 1.4116, 3.032, "bcc"),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class MDSettings:
    """The potential's cutoff and switching distance, the integrator and the run lengths.

    ``cutoff_angstrom`` / ``switch_angstrom``: the Morse interaction is smoothly switched off
    between the two (OpenMM's switching function), so forces stay continuous and NVE
    conserves energy. ``timestep_fs``, ``friction_per_ps``: Langevin middle integrator.
    ``equilibration_steps``, ``production_steps``, ``sample_every``: the run and how often
    positions are read. ``max_scale_change``: the isotropic cell search is bounded to
    ``1 +- max_scale_change``; an optimum at the bound is a failure (the structure is far
    from any equilibrium of the potential). ``minimize_tolerance``: the minimiser's force
    tolerance in kJ/mol/nm. ``platform``: an OpenMM platform name.
    """

    cutoff_angstrom: float = 7.0
    switch_angstrom: float = 6.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    equilibration_steps: int = 500
    production_steps: int = 1000
    sample_every: int = 10
    max_scale_change: float = 0.12
    minimize_tolerance: float = 0.1
    melt_lindemann: float = 0.15
    platform: str = "CPU"

    def __post_init__(self) -> None:
        if not 0 < self.switch_angstrom < self.cutoff_angstrom:
            raise ValueError(
                f"need 0 < switch_angstrom < cutoff_angstrom, got {self.switch_angstrom} and "
                f"{self.cutoff_angstrom}"
            )
        if not 0 < self.timestep_fs <= 10 or self.friction_per_ps <= 0:
            raise ValueError("timestep_fs must be in (0, 10] and friction_per_ps > 0")
        for name in ("equilibration_steps", "production_steps", "sample_every"):
            value = getattr(self, name)
            if not _is_int(value) or value < (0 if name == "equilibration_steps" else 1):
                raise ValueError(f"{name} must be a non-negative integer (>= 1 but for "
                                 f"equilibration_steps), got {value!r}")
        if self.production_steps < 2 * self.sample_every:
            raise ValueError("production_steps must hold at least two samples (2 x sample_every)")
        if not 0 < self.max_scale_change < 0.5:
            raise ValueError("max_scale_change must lie in (0, 0.5)")
        if self.minimize_tolerance <= 0 or self.melt_lindemann <= 0:
            raise ValueError("minimize_tolerance and melt_lindemann must be > 0")
        if self.platform not in PLATFORMS:
            raise ValueError(f"platform must be one of {', '.join(PLATFORMS)}, got "
                             f"{self.platform!r}")


@dataclass(frozen=True)
class Structure:
    """A periodic crystal: element symbols, Cartesian positions and cell rows in Angstrom."""

    symbols: tuple[str, ...]
    positions_angstrom: np.ndarray  # (n, 3)
    cell_angstrom: np.ndarray  # (3, 3), rows are the lattice vectors

    def __post_init__(self) -> None:
        pos = np.asarray(self.positions_angstrom, dtype=np.float64)
        cell = np.asarray(self.cell_angstrom, dtype=np.float64)
        if pos.shape != (len(self.symbols), 3) or not len(self.symbols):
            raise ValueError(f"positions must be (n_atoms={len(self.symbols)}, 3) with n >= 1, "
                             f"got {pos.shape}")
        if cell.shape != (3, 3):
            raise ValueError(f"cell must be 3x3, got {cell.shape}")
        if not (np.isfinite(pos).all() and np.isfinite(cell).all()):
            raise ValueError("positions and cell must be finite")
        if abs(np.linalg.det(cell)) < 1e-6:
            raise ValueError("the cell is singular (zero volume)")
        unknown = sorted(set(self.symbols) - set(MORSE_PARAMETERS))
        if unknown:
            raise ValueError(f"no Morse parameters for {unknown}; have "
                             f"{sorted(MORSE_PARAMETERS)}")
        object.__setattr__(self, "positions_angstrom", pos)
        object.__setattr__(self, "cell_angstrom", cell)

    @property
    def volume_angstrom3(self) -> float:
        return float(abs(np.linalg.det(self.cell_angstrom)))


@dataclass
class RelaxResult:
    """The relaxed crystal (in the input's own frame and cell, scaled) and its energy."""

    structure: Structure
    energy_per_atom_ev: float
    scale: float
    volume_per_atom_angstrom3: float
    nearest_neighbour_angstrom: float
    n_energy_evaluations: int
    n_atoms_simulated: int

    def as_dict(self) -> dict[str, float]:
        return {
            "energy_per_atom_ev": self.energy_per_atom_ev,
            "relaxed_scale": self.scale,
            "volume_per_atom_angstrom3": self.volume_per_atom_angstrom3,
            "nearest_neighbour_angstrom": self.nearest_neighbour_angstrom,
        }


@dataclass
class MDResult:
    """What one MD replica measured at ``temperature_k``."""

    seed: int
    temperature_k: float
    lindemann_index: float
    msd_angstrom2: float
    mean_temperature_k: float
    potential_energy_per_atom_ev: float
    melted: bool
    n_atoms_simulated: int
    n_samples: int
    extra: dict[str, float] = field(default_factory=dict)


def openmm_version() -> str:
    try:
        return importlib.metadata.version("openmm")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _openmm() -> Any:
    try:
        import openmm
    except ImportError as exc:  # pragma: no cover - the materials extra installs it
        raise SetupError("OpenMM is not installed (pip install openmm, or the materials "
                         "extra)") from exc
    return openmm


def _masses(symbols: Sequence[str]) -> np.ndarray:
    from ase.data import atomic_masses, atomic_numbers

    return np.array([atomic_masses[atomic_numbers[s]] for s in symbols])


# -- boxes --------------------------------------------------------------------------------------
def _reduced_frame(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rotation R, reduced cell C) with ``cell @ R`` lower triangular and C the same lattice
    in OpenMM's reduced form (rows a, b, c)."""
    q, r = np.linalg.qr(cell.T)
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    rotation = q * signs  # flips keep it orthogonal; distances are all that matter here
    lower = cell @ rotation
    lower[0, 1:] = 0.0  # exact zeros: OpenMM checks a is along x and b in the xy plane
    lower[1, 2] = 0.0
    a, b, c = (lower[i].copy() for i in range(3))
    c -= b * round(c[1] / b[1])
    c -= a * round(c[0] / a[0])
    b -= a * round(b[0] / a[0])
    return rotation, np.array([a, b, c])


def _widths(cell: np.ndarray) -> np.ndarray:
    """Perpendicular widths of a cell (distance between opposite faces)."""
    volume = abs(np.linalg.det(cell))
    return np.array([
        volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)
    ])


def _supercell(
    structure: Structure, min_width_angstrom: float
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """(positions, reduced box, repeats) of the smallest replication whose reduced box is at
    least ``min_width_angstrom`` wide in x, y and z, in the rotated frame."""
    reps = np.maximum(1, np.ceil(min_width_angstrom / _widths(structure.cell_angstrom))).astype(int)
    for _ in range(12):
        cell = structure.cell_angstrom * reps[:, None]
        rotation, box = _reduced_frame(cell)
        sizes = np.array([box[0, 0], box[1, 1], box[2, 2]])
        if sizes.min() >= min_width_angstrom:
            break
        reps[int(np.argmin(_widths(cell) / reps))] += 1
    else:  # pragma: no cover - a pathological cell
        raise ValueError("cannot replicate this cell into a box twice the cutoff wide")
    shifts = np.array(np.meshgrid(*(np.arange(n) for n in reps), indexing="ij")).reshape(3, -1).T
    offsets = shifts @ structure.cell_angstrom
    positions = (structure.positions_angstrom[None, :, :] + offsets[:, None, :]).reshape(-1, 3)
    return positions @ rotation, box, (int(reps[0]), int(reps[1]), int(reps[2]))


class _Simulation:
    """An OpenMM system of one replicated crystal, with a context to evaluate and integrate."""

    def __init__(self, structure: Structure, settings: MDSettings, threads: int,
                 min_scale: float = 1.0) -> None:
        mm = _openmm()
        self.settings = settings
        self.n_cell_atoms = len(structure.symbols)
        width = 2.0 * settings.cutoff_angstrom / min_scale * (1.0 + 1e-9)
        positions, box, self.repeats = _supercell(structure, width)
        self.positions_nm = positions / 10.0
        self.box_nm = box / 10.0
        copies = int(np.prod(self.repeats))
        symbols = list(structure.symbols) * copies
        self.n_atoms = len(symbols)
        system = mm.System()
        for mass in _masses(symbols):
            system.addParticle(float(mass))
        system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in self.box_nm))
        force = mm.CustomNonbondedForce(
            "D*((1-exp(-al*(r-r0)))^2-1); D=sqrt(D1*D2); al=0.5*(al1+al2); r0=0.5*(r01+r02)"
        )
        for name in ("D", "al", "r0"):
            force.addPerParticleParameter(name)
        for symbol in symbols:
            p = MORSE_PARAMETERS[symbol]
            force.addParticle([p.d_ev * KJ_PER_MOL_PER_EV, p.alpha_per_angstrom * 10.0,
                               p.r0_angstrom / 10.0])
        force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
        force.setCutoffDistance(settings.cutoff_angstrom / 10.0)
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(settings.switch_angstrom / 10.0)
        force.setUseLongRangeCorrection(False)
        system.addForce(force)
        self.system = system
        try:
            self.platform = mm.Platform.getPlatformByName(settings.platform)
        except Exception as exc:
            raise SetupError(f"OpenMM platform {settings.platform!r} is not available here "
                             f"({exc})") from exc
        self.properties = {"Threads": str(threads)} if settings.platform == "CPU" else {}

    def context(self, integrator: Any) -> Any:
        mm = _openmm()
        ctx = mm.Context(self.system, integrator, self.platform, self.properties)
        ctx.setPeriodicBoxVectors(*(mm.Vec3(*row) for row in self.box_nm))
        ctx.setPositions(self.positions_nm)
        return ctx


def _energy_kj(ctx: Any) -> float:
    state = ctx.getState(getEnergy=True)
    return float(state.getPotentialEnergy()._value)


def _nearest_neighbour(positions: np.ndarray, box: np.ndarray, n_first: int) -> float:
    """Mean over the first ``n_first`` atoms of the distance to their nearest neighbour
    (minimum image in a box at least twice the cutoff wide, so one image suffices)."""
    inv = np.linalg.inv(box)
    nearest = []
    for i in range(n_first):
        d = positions - positions[i]
        frac = d @ inv
        frac -= np.round(frac)
        dist = np.linalg.norm(frac @ box, axis=1)
        dist[i] = np.inf
        nearest.append(dist.min())
    return float(np.mean(nearest))


def relax(
    structure: Structure, settings: MDSettings | None = None, threads: int = 1
) -> RelaxResult:
    """Isotropic cell scale and atomic positions of lowest energy (see the module docstring)."""
    from scipy.optimize import minimize_scalar

    settings = settings or MDSettings()
    mm = _openmm()
    lo, hi = 1.0 - settings.max_scale_change, 1.0 + settings.max_scale_change
    sim = _Simulation(structure, settings, threads, min_scale=lo)
    ctx = sim.context(mm.VerletIntegrator(0.001))
    reference = sim.positions_nm.copy()
    best: dict[str, Any] = {}
    calls = 0

    def energy_at(scale: float) -> float:
        nonlocal calls
        calls += 1
        ctx.setPeriodicBoxVectors(*(mm.Vec3(*row) for row in sim.box_nm * scale))
        ctx.setPositions(reference * scale)
        mm.LocalEnergyMinimizer.minimize(ctx, settings.minimize_tolerance, 2000)
        value = _energy_kj(ctx)
        if not math.isfinite(value):
            raise SimulationFailed(f"non-finite energy at cell scale {scale:.4f}: atoms overlap")
        if not best or value < best["energy"]:
            state = ctx.getState(getPositions=True)
            best.update(energy=value, scale=scale,
                        positions=np.asarray(state.getPositions(asNumpy=True)._value))
        return value

    found = minimize_scalar(energy_at, bounds=(lo, hi), method="bounded",
                            options={"xatol": 1e-5, "maxiter": 80})
    scale = float(found.x)
    if min(scale - lo, hi - scale) < 1e-3:
        raise SimulationFailed(
            f"the relaxed cell scale {scale:.3f} sits at the search bound (1 +- "
            f"{settings.max_scale_change}): the structure is far from equilibrium"
        )
    energy_at(scale)  # leave the best state at the optimum itself
    positions_nm = best["positions"]
    rotation, _ = _reduced_frame(structure.cell_angstrom * np.array(sim.repeats)[:, None])
    # the first n atoms are the input cell's own (replica 0), rotated back to its frame
    own = positions_nm[: sim.n_cell_atoms] * 10.0 @ rotation.T
    relaxed = Structure(structure.symbols, own, structure.cell_angstrom * best["scale"])
    box = sim.box_nm * 10.0 * best["scale"]
    n = len(structure.symbols)
    return RelaxResult(
        structure=relaxed,
        energy_per_atom_ev=best["energy"] / KJ_PER_MOL_PER_EV / sim.n_atoms,
        scale=float(best["scale"]),
        volume_per_atom_angstrom3=relaxed.volume_angstrom3 / n,
        nearest_neighbour_angstrom=_nearest_neighbour(positions_nm * 10.0, box, n),
        n_energy_evaluations=calls,
        n_atoms_simulated=sim.n_atoms,
    )


def run_md(
    relaxed: RelaxResult,
    temperature_k: float,
    seed: int,
    settings: MDSettings | None = None,
    threads: int = 1,
) -> MDResult:
    """One NVT replica at the relaxed volume: Lindemann index, MSD, melting (module docstring)."""
    settings = settings or MDSettings()
    if not (math.isfinite(temperature_k) and temperature_k > 0):
        raise ValueError(f"temperature_k must be a positive number, got {temperature_k!r}")
    if not _is_int(seed) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2^31), got {seed!r}")
    mm = _openmm()
    sim = _Simulation(relaxed.structure, settings, threads)
    integrator = mm.LangevinMiddleIntegrator(
        temperature_k, settings.friction_per_ps, settings.timestep_fs / 1000.0
    )
    integrator.setRandomNumberSeed(int(seed))
    ctx = sim.context(integrator)
    ctx.setVelocitiesToTemperature(temperature_k, int(seed))
    masses = _masses(list(relaxed.structure.symbols) * int(np.prod(sim.repeats)))
    if settings.equilibration_steps:
        # a strong coupling first: from the relaxed (0 K) positions half the kinetic energy
        # flows into the potential, and at 1/ps the bath would take picoseconds to refill it
        integrator.setFriction(_EQUILIBRATION_FRICTION_PER_PS)
        integrator.step(settings.equilibration_steps)
        integrator.setFriction(settings.friction_per_ps)
    n_samples = settings.production_steps // settings.sample_every
    frames = np.empty((n_samples, sim.n_atoms, 3))
    potential = np.empty(n_samples)
    kinetic = np.empty(n_samples)
    for k in range(n_samples):
        integrator.step(settings.sample_every)
        state = ctx.getState(getPositions=True, getEnergy=True)
        frames[k] = np.asarray(state.getPositions(asNumpy=True)._value) * 10.0
        potential[k] = state.getPotentialEnergy()._value
        kinetic[k] = state.getKineticEnergy()._value
    if not (np.isfinite(frames).all() and np.isfinite(potential).all()
            and np.isfinite(kinetic).all()):
        raise SimulationFailed("the MD run exploded: non-finite energies or positions")
    # centre-of-mass drift (the thermostat's random kicks move the whole crystal) removed
    com = (frames * masses[None, :, None]).sum(axis=1) / masses.sum()
    frames -= (com - com[0])[:, None, :]
    mean_position = frames.mean(axis=0)
    rms = math.sqrt(float(((frames - mean_position) ** 2).sum(axis=2).mean()))
    lindemann = rms / relaxed.nearest_neighbour_angstrom
    msd = float(((frames[-1] - frames[0]) ** 2).sum(axis=1).mean())
    dof = 3 * sim.n_atoms - 3
    mean_temperature = float(2.0 * kinetic.mean() / (dof * KB_KJ_PER_MOL_K))
    if not math.isfinite(lindemann):
        raise SimulationFailed("the MD run gave a non-finite Lindemann index")
    return MDResult(
        seed=int(seed),
        temperature_k=float(temperature_k),
        lindemann_index=float(lindemann),
        msd_angstrom2=msd,
        mean_temperature_k=mean_temperature,
        potential_energy_per_atom_ev=float(potential.mean() / KJ_PER_MOL_PER_EV / sim.n_atoms),
        melted=bool(lindemann > settings.melt_lindemann),
        n_atoms_simulated=sim.n_atoms,
        n_samples=n_samples,
    )


def run_nve(
    relaxed: RelaxResult,
    temperature_k: float,
    steps: int,
    seed: int = 0,
    settings: MDSettings | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Total energy per atom (eV) every ``sample_every`` steps of a velocity-Verlet (NVE) run
    started at ``temperature_k`` after a Langevin equilibration: the check that the potential
    and its switching conserve energy at the settings' timestep."""
    settings = settings or MDSettings()
    mm = _openmm()
    sim = _Simulation(relaxed.structure, settings, threads)
    langevin = mm.LangevinMiddleIntegrator(temperature_k, _EQUILIBRATION_FRICTION_PER_PS,
                                           settings.timestep_fs / 1000.0)
    langevin.setRandomNumberSeed(int(seed))
    ctx = sim.context(langevin)
    ctx.setVelocitiesToTemperature(temperature_k, int(seed))
    langevin.step(max(settings.equilibration_steps, 1))
    state = ctx.getState(getPositions=True, getVelocities=True)
    verlet = mm.VerletIntegrator(settings.timestep_fs / 1000.0)
    nve = sim.context(verlet)
    nve.setPositions(state.getPositions())
    nve.setVelocities(state.getVelocities())
    energies = []
    for _ in range(max(1, steps // settings.sample_every)):
        verlet.step(settings.sample_every)
        s = nve.getState(getEnergy=True)
        total = s.getPotentialEnergy()._value + s.getKineticEnergy()._value
        energies.append(total / KJ_PER_MOL_PER_EV / sim.n_atoms)
    out = np.asarray(energies)
    if not np.isfinite(out).all():
        raise SimulationFailed("the NVE run exploded: non-finite energies")
    return out
