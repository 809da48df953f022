"""The chemistry domain end to end with real tools: tblite xTB and PySCF DFT on Dask workers.

* the conformance suite (``check_domain``) on small molecules;
* ``foundry verify`` of a user's JSONL in both input formats (SMILES, given geometry), with
  duplicates by molecule and bad lines, each line answered;
* ``foundry run``: the ladder runs xTB then DFT on every item, the SchNet surrogate is trained
  on DFT labels and screens the rest.

Sized for CI: molecules of at most 3-4 heavy atoms (DFT well under a second each).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("pyscf")
pytest.importorskip("tblite")
pytest.importorskip("torch_geometric")

from foundry.domains.chemistry import ChemistryDomain, ChemistryOptions

from foundry.cli import main
from foundry.testing import check_domain

pytestmark = [pytest.mark.simulator, pytest.mark.slow]

SMALL = ["--set", "domain_options.max_heavy_atoms=3", "--set",
         'domain_options.elements=["C", "N", "O"]']  # fmt: skip
WATER_GEOMETRY = {
    "elements": ["O", "H", "H"],
    "coordinates_angstrom": [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]],
    "name": "water, experimental geometry",
}


def _rows(run_dir: Path, sql: str) -> list[dict]:
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql)]
    finally:
        db.close()


def test_the_domain_passes_the_conformance_suite() -> None:
    options = ChemistryOptions(max_heavy_atoms=4, surrogate_max_steps=60, surrogate_members=2)
    check_domain(ChemistryDomain(options), n=8)


def test_verify_answers_every_line_of_both_formats(tmp_path: Path) -> None:
    lines = [
        json.dumps({"smiles": "CCO", "name": "ethanol"}),  # 1
        json.dumps(WATER_GEOMETRY),  # 2: used as given
        json.dumps({"smiles": "OCC"}),  # 3: ethanol again, spelt differently
        json.dumps({"smiles": "C1CC"}),  # 4: does not parse
        json.dumps({"smiles": "[CH3]", "multiplicity": 2}),  # 5: a radical, UKS
        json.dumps({**WATER_GEOMETRY, "multiplicity": 2}),  # 6: impossible spin
        "not json",  # 7
        json.dumps({"smiles": "C#N"}),  # 8
    ]
    inp = tmp_path / "molecules.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "v"
    code = main(["verify", str(inp), "--domain", "chemistry", "--run-dir", str(run_dir),
                 "--n-workers", "2", "--no-progress", *SMALL])  # fmt: skip
    assert code == 0
    verdicts = [json.loads(x) for x in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    assert [v["line"] for v in verdicts] == list(range(1, 9))
    by_line = {v["line"]: v for v in verdicts}
    for line in (1, 2, 5, 8):
        v = by_line[line]
        assert v["decision"] == "accepted" and v["decided_by"] == "ground_truth", v
    assert by_line[3]["decision"] == "duplicate" and "line 1" in by_line[3]["reason"]
    assert by_line[4]["decision"] == "invalid" and "does not parse" in by_line[4]["reason"]
    assert by_line[6]["decision"] == "invalid" and "impossible" in by_line[6]["reason"]
    assert by_line[7]["decision"] == "invalid"
    # B3LYP/def2-SVP: saturated closed shells have wide gaps (water's widest), the radical's
    # UKS gap is far smaller (measured: water 9.2, ethanol 8.5, CH3 4.7 eV)
    gaps = {line: by_line[line]["properties"]["gap_ev"] for line in (1, 2, 5, 8)}
    assert 8.0 < gaps[2] < 10.5 and 7.0 < gaps[1] < gaps[2] and gaps[5] < 6.0
    rows = _rows(run_dir, "SELECT seq, payload, input_line FROM examples WHERE rule_ok = 1")
    payloads = {r["input_line"]: json.loads(r["payload"]) for r in rows}
    assert payloads[2] == WATER_GEOMETRY  # the given geometry and the name kept as given
    tiers = _rows(run_dir, "SELECT fidelity, COUNT(*) AS n, MIN(simulator_version) AS v "
                           "FROM verifications GROUP BY fidelity")  # fmt: skip
    by_tier = {t["fidelity"]: t for t in tiers}
    assert by_tier["xtb"]["n"] == 4 and "GFN2-xTB" in by_tier["xtb"]["v"]
    assert by_tier["dft"]["n"] == 4 and "b3lyp/def2-svp" in by_tier["dft"]["v"]
    measured = _rows(run_dir, "SELECT gt_measurements FROM examples WHERE input_line = 5")
    spin_square = json.loads(measured[0]["gt_measurements"])["spin_square"]
    assert spin_square == pytest.approx(0.754, abs=0.01)


def test_run_trains_the_surrogate_on_dft_labels_and_screens(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    code = main(["run", "--domain", "chemistry", "--run-dir", str(run_dir), "--seed", "3",
                 "--max-candidates", "90", "--batch-size", "30", "--min-train-labels", "40",
                 "--retrain-every", "1000", "--n-workers", "2", "--no-progress",
                 "--set", "domain_options.surrogate_max_steps=150",
                 "--set", "domain_options.surrogate_members=2", *SMALL])  # fmt: skip
    assert code == 0
    versions = _rows(run_dir, "SELECT version, n_labels FROM surrogates")
    assert versions and versions[0]["n_labels"] >= 40
    scored = _rows(
        run_dir,
        "SELECT predicted, gt_properties FROM examples "
        "WHERE predicted IS NOT NULL AND gt_properties IS NOT NULL",
    )
    assert scored, "items after the first fit are scored and still labelled by DFT (audits)"
    errors = [
        abs(json.loads(r["predicted"])["gap_ev"] - json.loads(r["gt_properties"])["gap_ev"])
        for r in scored
    ]
    assert sum(errors) / len(errors) < 1.0  # eV: learnt from xTB + geometry, not a constant
    tiers = _rows(run_dir, "SELECT fidelity, COUNT(*) AS n FROM verifications GROUP BY 1")
    assert {t["fidelity"] for t in tiers} == {"xtb", "dft"}
    parents = _rows(run_dir, "SELECT parent_ids FROM examples WHERE rule_ok = 1 LIMIT 5")
    assert all(json.loads(p["parent_ids"]) for p in parents)
