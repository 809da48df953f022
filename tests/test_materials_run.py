"""The materials domain end to end with real tools: ASE structures, OpenMM MD on Dask workers.

* the conformance suite (``check_domain``) on small cells with short MD;
* ``foundry verify`` of a user's JSONL - written from an extended-XYZ file by the README's ASE
  one-liner - with duplicates by structure, bad lines and a name kept, each line answered, and
  the thermal energy of the MD checked against equipartition;
* ``foundry run``: MD labels train the periodic SchNet surrogate, which then screens the rest.

Sized for CI: cells of at most 8 atoms, MD of 200 + 400 steps (about a second an item).
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openmm")
pytest.importorskip("ase")
pytest.importorskip("torch_geometric")

import ase.io
from ase.build import bulk
from foundry.domains.materials import MaterialsDomain, MaterialsOptions

from foundry.cli import main
from foundry.testing import check_domain

pytestmark = [pytest.mark.simulator, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
BOLTZMANN_EV_PER_K = 8.617333262e-5  # CODATA 2018
SHORT_MD = ["--set", "domain_options.md_equilibration_steps=200",
            "--set", "domain_options.md_production_steps=400",
            "--set", "domain_options.max_atoms=8"]  # fmt: skip


def _rows(run_dir: Path, sql: str) -> list[dict]:
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql)]
    finally:
        db.close()


def _readme_xyz_one_liner() -> str:
    """The extended-XYZ conversion exactly as the README documents it."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## The materials domain"):]
    match = re.search(r"(python -c \"import ase\.io.*?crystals\.jsonl)", section, re.S)
    assert match, "the README's materials section documents an extended-XYZ one-liner"
    return " ".join(match.group(1).split())


def test_the_domain_passes_the_conformance_suite() -> None:
    options = MaterialsOptions(max_atoms=8, md_equilibration_steps=200, md_production_steps=400,
                               surrogate_max_steps=60, surrogate_members=2)  # fmt: skip
    check_domain(MaterialsDomain(options), n=6)


def test_verify_answers_every_line_of_an_extended_xyz_file(tmp_path: Path) -> None:
    w = bulk("W", "bcc", a=3.165, cubic=True)
    w.info["temperature_k"] = 300.0
    w.info["name"] = "W bcc, experimental a"
    w.info["lattice"] = "bcc"
    cu = bulk("Cu", "fcc", a=3.615, cubic=True)
    cu.info["temperature_k"] = 300.0
    cu_again = cu.copy()  # the same crystal under another name: a duplicate
    cu_again.info["name"] = "copper, again"
    squeezed = bulk("Al", "fcc", a=2.4, cubic=True)  # far too dense
    squeezed.info["temperature_k"] = 300.0
    close = cu.copy()  # one atom moved next to another
    close.positions[1] = close.positions[0] + [0.9, 0.0, 0.0]
    zr = bulk("Zr", "hcp", a=3.23, c=5.15)  # no Morse parameters
    zr.info["temperature_k"] = 300.0
    xyz = tmp_path / "crystals.xyz"
    ase.io.write(xyz, [w, cu, cu_again, squeezed, close, zr], format="extxyz")
    command = _readme_xyz_one_liner().replace("crystals.xyz", str(xyz))
    command, _, target = command.rpartition(" > ")
    out = subprocess.run(command, shell=True, check=True, capture_output=True, text=True,
                         executable="/bin/bash",
                         env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})  # fmt: skip
    assert target.endswith(".jsonl")
    lines = [*out.stdout.splitlines(), "not json", json.dumps({"symbols": ["Cu"]})]
    inp = tmp_path / "crystals.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "v"
    code = main(["verify", str(inp), "--domain", "materials", "--run-dir", str(run_dir),
                 "--n-workers", "2", "--no-progress", *SHORT_MD])  # fmt: skip
    assert code == 0
    verdicts = [json.loads(x) for x in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    assert [v["line"] for v in verdicts] == list(range(1, 9))
    by_line = {v["line"]: v for v in verdicts}
    for line in (1, 2):
        assert by_line[line]["decision"] == "accepted", by_line[line]
        assert by_line[line]["decided_by"] == "ground_truth"
    assert by_line[3]["decision"] == "duplicate" and "line 2" in by_line[3]["reason"]
    assert by_line[4]["decision"] == "invalid" and "volume per site" in by_line[4]["reason"]
    assert by_line[5]["decision"] == "invalid" and "Morse r0 apart" in by_line[5]["reason"]
    assert by_line[6]["decision"] == "invalid" and "Zr" in by_line[6]["reason"]
    assert by_line[7]["decision"] == "invalid" and by_line[8]["decision"] == "invalid"
    assert "positions_angstrom" in by_line[8]["reason"]
    # Girifalco-Weizer at the 7 A cutoff: W -8.58, Cu -3.4 eV/atom after relaxation
    energies = {line: by_line[line]["properties"]["energy_per_atom_ev"] for line in (1, 2)}
    assert energies[1] == pytest.approx(-8.58, abs=0.05)
    assert -3.6 < energies[2] < -3.2
    rows = _rows(run_dir, "SELECT payload, gt_measurements FROM examples WHERE input_line = 1")
    assert json.loads(rows[0]["payload"])["name"] == "W bcc, experimental a"
    m = json.loads(rows[0]["gt_measurements"])
    # a classical harmonic crystal holds 3/2 kT of potential energy per atom (equipartition);
    # W at 300 K is far below melting, so anharmonic corrections are a few per cent
    thermal_ev = m["potential_energy_at_t_per_atom_ev"] - energies[1]
    assert thermal_ev == pytest.approx(1.5 * BOLTZMANN_EV_PER_K * 300.0, rel=0.2)
    assert m["lattice_constant_angstrom"] == pytest.approx(3.165, rel=0.01)


def test_run_trains_the_surrogate_on_md_labels_and_screens(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    code = main(["run", "--domain", "materials", "--run-dir", str(run_dir), "--seed", "3",
                 "--max-candidates", "56", "--batch-size", "28", "--min-train-labels", "25",
                 "--retrain-every", "1000", "--n-workers", "2", "--no-progress",
                 "--set", "domain_options.surrogate_max_steps=300",
                 "--set", "domain_options.surrogate_members=2", *SHORT_MD])  # fmt: skip
    assert code == 0
    versions = _rows(run_dir, "SELECT version, n_labels FROM surrogates")
    assert versions and versions[0]["n_labels"] >= 25
    scored = _rows(
        run_dir,
        "SELECT predicted, gt_properties FROM examples "
        "WHERE predicted IS NOT NULL AND gt_properties IS NOT NULL",
    )
    assert scored, "items after the first fit are scored and still labelled by MD (audits)"
    errors = [
        abs(json.loads(r["predicted"])["energy_per_atom_ev"]
            - json.loads(r["gt_properties"])["energy_per_atom_ev"])
        for r in scored
    ]  # fmt: skip
    # energies span ~1-9 eV/atom across the nine metals: a constant would be off by eV
    assert sum(errors) / len(errors) < 0.5
    lattices = _rows(run_dir, "SELECT payload FROM examples WHERE rule_ok = 1")
    assert {json.loads(r["payload"])["lattice"] for r in lattices} == {"fcc", "bcc", "hcp"}
