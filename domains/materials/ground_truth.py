"""The materials tiers: MD with OpenMM (the ground truth) and a short MD (the cheap tier).

Both run on workers (a child process by default), never in the coordinator. ``prepare`` reads
the payload's structure and derives the MD seeds from the payload itself (the same structure at
the same temperature gets the same seeds on every machine, and a verdict never depends on what
a worker ran before); ``execute`` relaxes the crystal (isotropic cell + positions) and runs
``md_replicas`` independent Langevin replicas at the target temperature; ``parse`` makes the
verdict: the label is the replicas' mean, and the spread between them is recorded with it. An
item whose replicas differ by more than the tolerance (melting is stochastic near the melting
point of a periodic crystal) is a recorded failure, never a label.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, ClassVar

import numpy as np

from foundry.contract import Candidate, GroundTruth, SimulationFailed, Verdict, canonical_json
from foundry.execution.resources import Resources

from .options import CUBIC_ATOMS_PER_CELL, MaterialsOptions
from .structures import identity_key, lattice_of, structure_of

__all__ = ["MDGroundTruth", "ShortMDGroundTruth"]


def md_seeds(payload: dict[str, Any], replicas: int, offset: int = 0) -> list[int]:
    """Seeds of an item's replicas, from a hash of its structure and temperature."""
    digest = hashlib.blake2b(canonical_json(identity_key(payload) or {}).encode(),
                             digest_size=8).digest()
    base = int.from_bytes(digest, "little") % 2**30 + offset
    return [base + k for k in range(replicas)]


class _MDTier(GroundTruth):
    """Relax, then ``replicas`` MD runs with ``settings`` (shared by both tiers)."""

    replicas: int = 1

    def __init__(self, options: MaterialsOptions, short: bool) -> None:
        self.options = options
        self.settings = options.md_settings(short=short)
        gpus = 1 if options.md_platform in ("CUDA", "OpenCL") else 0
        self.resources = Resources(
            threads=options.md_threads,
            gpus=gpus,
            memory_mb=2000,
            timeout_s=options.md_timeout_s,
            expected_cost_s=(0.5 if short else 2.5),
            isolation="process",
        )

    @property
    def version(self) -> str:
        from foundry.simulators.openmm_md import openmm_version

        s = self.settings
        return (
            f"openmm {openmm_version()} morse girifalco-weizer-1959 cutoff={s.cutoff_angstrom:g}A "
            f"switch={s.switch_angstrom:g}A langevin-middle dt={s.timestep_fs:g}fs "
            f"friction={s.friction_per_ps:g}/ps steps={s.equilibration_steps}+"
            f"{s.production_steps} replicas={self.replicas} platform={s.platform}"
        )

    def prepare(self, candidate: Candidate) -> dict[str, Any]:
        payload = candidate.payload
        return {
            "symbols": list(payload["symbols"]),
            "positions_angstrom": payload["positions_angstrom"],
            "cell_angstrom": payload["cell_angstrom"],
            "temperature_k": float(payload["temperature_k"]),
            "lattice": lattice_of(payload),
            "sites": int(payload.get("sites", len(payload["symbols"]))),
            "seeds": md_seeds(payload, self.replicas, self.options.md_seed_offset),
        }

    def execute(self, job: dict[str, Any], workdir: str) -> dict[str, Any]:
        from foundry.simulators.openmm_md import relax, run_md

        structure = structure_of(job)
        threads = self.options.md_threads
        relaxed = relax(structure, self.settings, threads=threads)
        runs = [run_md(relaxed, job["temperature_k"], seed, self.settings, threads=threads)
                for seed in job["seeds"]]
        out: dict[str, Any] = relaxed.as_dict()
        out["lindemann_by_replica"] = [r.lindemann_index for r in runs]
        out["msd_by_replica"] = [r.msd_angstrom2 for r in runs]
        out["mean_temperature_k"] = float(np.mean([r.mean_temperature_k for r in runs]))
        out["potential_energy_at_t_per_atom_ev"] = float(
            np.mean([r.potential_energy_per_atom_ev for r in runs]))
        out["atoms_simulated"] = runs[0].n_atoms_simulated
        out["seeds"] = list(job["seeds"])
        if job["lattice"] in CUBIC_ATOMS_PER_CELL:
            per_site = relaxed.structure.volume_angstrom3 / job["sites"]
            out["lattice_constant_angstrom"] = (CUBIC_ATOMS_PER_CELL[job["lattice"]]
                                                * per_site) ** (1.0 / 3.0)
        return out

    def parse(self, raw: dict[str, Any], candidate: Candidate) -> Verdict:
        opts = self.options
        replicas = [float(x) for x in raw["lindemann_by_replica"]]
        lindemann = float(np.mean(replicas))
        spread = max(replicas) - min(replicas)
        _, abs_tol, rel_tol = opts.tolerance("lindemann_index")
        if len(replicas) > 1 and spread > abs_tol + rel_tol * lindemann:
            raise SimulationFailed(
                f"the Lindemann index differs between seeds by {spread:.4f} (replicas "
                f"{', '.join(f'{x:.4f}' for x in replicas)}), more than the tolerance "
                f"{abs_tol + rel_tol * lindemann:.4f}: not determined at this temperature"
            )
        values = {
            "energy_per_atom_ev": float(raw["energy_per_atom_ev"]),
            "lindemann_index": lindemann,
            "volume_per_atom_angstrom3": float(raw["volume_per_atom_angstrom3"]),
        }
        if "lattice_constant_angstrom" in raw:
            values["lattice_constant_angstrom"] = float(raw["lattice_constant_angstrom"])
        missing = [name for name in opts.certified if name not in values]
        if missing:
            raise SimulationFailed(f"no {', '.join(missing)} for this structure")
        properties = {name: values[name] for name in opts.certified}
        measurements = {k: v for k, v in values.items() if k not in properties}
        melted = [x > self.settings.melt_lindemann for x in replicas]
        measurements.update(
            lindemann_seed_spread=spread,
            melted=float(all(melted)),
            melted_replicas=float(sum(melted)),
            msd_angstrom2=float(np.mean(raw["msd_by_replica"])),
            mean_temperature_k=float(raw["mean_temperature_k"]),
            potential_energy_at_t_per_atom_ev=float(raw["potential_energy_at_t_per_atom_ev"]),
            relaxed_scale=float(raw["relaxed_scale"]),
            nearest_neighbour_angstrom=float(raw["nearest_neighbour_angstrom"]),
            atoms_simulated=float(raw["atoms_simulated"]),
            md_seed=float(raw["seeds"][0]),
        )
        bad = [k for k, v in {**properties, **measurements}.items() if not math.isfinite(v)]
        if bad:
            raise SimulationFailed(f"non-finite {', '.join(bad)}")
        return Verdict(passed=True, properties=properties, measurements=measurements)


class MDGroundTruth(_MDTier):
    """Relaxation and ``md_replicas`` full Langevin runs: the top tier."""

    name: ClassVar[str] = "openmm-md"

    def __init__(self, options: MaterialsOptions) -> None:
        super().__init__(options, short=False)
        self.replicas = options.md_replicas


class ShortMDGroundTruth(_MDTier):
    """Relaxation (exact: the same potential) and one replica of ``short_md_fraction`` of the
    steps: the cheap tier, whose Lindemann index the surrogate may learn the correction of."""

    name: ClassVar[str] = "openmm-short-md"

    def __init__(self, options: MaterialsOptions) -> None:
        super().__init__(options, short=True)
        self.replicas = 1
