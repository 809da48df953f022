"""The chemistry domain without DFT: rule layer, identity, generator, steering, reservoir.

RDKit only (fast); the tiers' physics is in ``test_chemistry_simulators.py`` and the loop end
to end in ``test_chemistry_run.py``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytest.importorskip("rdkit")

from foundry.domains.chemistry import ChemistryDomain, ChemistryOptions
from foundry.domains.chemistry.generator import hueckel_gap_ev
from foundry.domains.chemistry.molecules import _rdkit, canonical_smiles, geometry_of

from foundry.contract import Candidate
from foundry.options import OptionsError, parse_options

WATER = {
    "elements": ["O", "H", "H"],
    "coordinates_angstrom": [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]],
}


@pytest.fixture(scope="module")
def domain() -> ChemistryDomain:
    return ChemistryDomain()


def _check(domain: ChemistryDomain, payload: dict) -> str | None:
    return domain.check(Candidate(payload=payload))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"smiles": "C1CC"}, "does not parse"),
        ({"smiles": "C(C)(C)(C)(C)C"}, "sanitisation"),  # pentavalent carbon
        ({"smiles": "CC.O"}, "several fragments"),
        ({"smiles": "[NH4+]", "charge": 0}, "formal charge 1"),
        ({"smiles": "CS"}, "outside the allowed set"),
        ({"smiles": "CCCCCCCCCC"}, "10 heavy atoms"),
        ({"smiles": "C", "multiplicity": 2}, "impossible with 10 electrons"),
        ({**WATER, "multiplicity": 2}, "impossible with 10 electrons"),
        ({**WATER, "charge": 1, "multiplicity": 1}, "impossible with 9 electrons"),
        ({"elements": ["O", "H"], "coordinates_angstrom": [[0, 0, 0]]}, "2 elements but 1"),
        ({"elements": ["O", "Xx"], "coordinates_angstrom": [[0, 0, 0], [1, 0, 0]]}, "'Xx'"),
        (
            {
                "elements": ["O", "H", "H"],
                "coordinates_angstrom": [[0, 0, 0], [0.3, 0, 0], [0, 1, 0]],
            },
            "closer than",
        ),
        ({"smiles": "O", **WATER, "elements": ["O", "H", "F"]}, "not the SMILES's atoms"),
        ({"smiles": "O", "extra": 1}, "extra"),
        ({"name": "no molecule"}, ""),
    ],
)
def test_rule_layer_rejects_with_a_reason(
    domain: ChemistryDomain, payload: dict, reason: str
) -> None:
    got = _check(domain, payload)
    assert got is not None, payload
    assert reason in got


@pytest.mark.parametrize(
    "payload",
    [
        {"smiles": "CCO"},
        {"smiles": "[CH3]"},  # a radical: multiplicity 2 from the SMILES
        {"smiles": "C[NH3+]", "charge": 1},
        {**WATER, "charge": 0, "multiplicity": 1, "name": "water"},
        {"smiles": "O", **WATER},
        {"elements": ["O", "H"], "coordinates_angstrom": [[0, 0, 0], [0.97, 0, 0]]},  # OH radical
    ],
)
def test_rule_layer_accepts_sane_molecules(domain: ChemistryDomain, payload: dict) -> None:
    assert _check(domain, payload) is None


def test_geometry_follows_the_payload() -> None:
    radical = geometry_of({"smiles": "[CH3]"})
    assert radical.multiplicity == 2 and radical.elements.count("H") == 3
    oh = geometry_of({"elements": ["O", "H"], "coordinates_angstrom": [[0, 0, 0], [0.97, 0, 0]]})
    assert oh.multiplicity == 2
    cation = geometry_of({"smiles": "C[NH3+]"})  # the charge follows the SMILES
    assert (cation.charge, cation.multiplicity) == (1, 1)
    given = geometry_of(WATER)  # used as is: no re-embedding, no optimisation
    assert np.array_equal(given.coordinates_angstrom, np.array(WATER["coordinates_angstrom"]))
    # a SMILES embeds to the same conformer every time (seeded by the canonical SMILES)
    first = geometry_of({"smiles": "OCC"}).coordinates_angstrom
    embedded = geometry_of({"smiles": "CCO"}).coordinates_angstrom
    assert np.array_equal(first, embedded)
    bonds = np.linalg.norm(embedded[:, None] - embedded[None], axis=-1)
    np.fill_diagonal(bonds, np.inf)
    assert 0.9 < bonds.min() < 1.2  # C-H / O-H bonds after MMFF


def test_duplicates_are_the_same_molecule_not_the_same_json(domain: ChemistryDomain) -> None:
    assert domain.identity({"smiles": "OCC"}) == domain.identity({"smiles": "C(O)C"})
    assert domain.identity({"smiles": "OCC", "name": "ethanol"}) == domain.identity(
        {"smiles": "CCO"}
    )
    assert domain.identity({"smiles": "CCO"}) != domain.identity({"smiles": "COC"})
    assert domain.identity({"smiles": "CCO"}) != domain.identity({"smiles": "CCO", "charge": 0})
    # a given geometry is its own example; a name does not make it another
    assert domain.identity({**WATER, "name": "a"}) == domain.identity({**WATER, "name": "b"})
    assert domain.identity({"smiles": "C1CC"}) is None  # unparsable: its JSON, the rules say why


def test_generator_is_deterministic_valid_and_records_parents(domain: ChemistryDomain) -> None:
    first = domain.generate(60, np.random.default_rng(7), {})
    again = domain.generate(60, np.random.default_rng(7), {})
    assert [c.payload for c in first] == [c.payload for c in again]
    # parents are named by the ids a run gives the reservoir's molecules (lineage joins up)
    reservoir_ids = {c.id for c in domain.reservoir()}
    assert reservoir_ids == {pid for _, pid in domain._parents().pool}
    for cand in first:
        assert domain.check(cand) is None, cand.payload
        assert cand.parent_ids and set(cand.parent_ids) <= reservoir_ids
        assert cand.payload["smiles"] == canonical_smiles(cand.payload["smiles"])
    assert len({c.payload["smiles"] for c in first}) >= 55  # few repeats
    assert Counter(len(c.parent_ids) for c in first)[2] >= 5  # crossover happens
    reservoir_smiles = {s for s, _ in domain._parents().pool}
    novel = sum(c.payload["smiles"] not in reservoir_smiles for c in first)
    assert novel >= 50  # mutation makes new molecules, not copies of the parents


def test_steering_moves_size_elements_and_crossover(domain: ChemistryDomain) -> None:
    rng = np.random.default_rng

    def heavy(cands: list[Candidate]) -> list[int]:
        return [sum(e != "H" for e in c.payload["elements"]) for c in cands]

    small = domain.generate(40, rng(1), {"max_heavy_atoms": 5})
    assert max(heavy(small)) <= 5
    no_cross = domain.generate(40, rng(2), {"crossover_rate": 0.0})
    assert all(len(c.parent_ids) == 1 for c in no_cross)

    def nitrogen_share(steering: dict) -> float:
        cands = domain.generate(80, rng(3), {"mutation_steps": 3.0, **steering})
        atoms = [e for c in cands for e in c.payload["elements"] if e != "H"]
        return atoms.count("N") / len(atoms)

    assert nitrogen_share({"weight_n": 20.0}) > 1.5 * nitrogen_share({"weight_n": 0.0})


def test_hueckel_proxy_orders_conjugation() -> None:
    chem = _rdkit()
    gaps = [hueckel_gap_ev(chem.MolFromSmiles(s)) for s in ("C=C", "C=CC=C", "C=CC=CC=C")]
    assert gaps[0] > gaps[1] > gaps[2]
    assert hueckel_gap_ev(chem.MolFromSmiles("CCO")) == 9.0


def test_gap_window_shifts_the_proxy(domain: ChemistryDomain) -> None:
    low = domain.generate(60, np.random.default_rng(4), {"gap_max_ev": 6.0})
    high = domain.generate(60, np.random.default_rng(4), {"gap_min_ev": 8.5})
    chem = _rdkit()

    def proxy(cands: list[Candidate]) -> np.ndarray:
        return np.array([hueckel_gap_ev(chem.MolFromSmiles(c.payload["smiles"])) for c in cands])

    assert np.mean(proxy(low) <= 6.0) > 0.8
    assert np.mean(proxy(high) >= 8.5) > 0.8


def test_slices_are_element_sets(domain: ChemistryDomain) -> None:
    assert domain.slice_of(Candidate(payload={"smiles": "OCC"})) == "C,O"
    assert domain.slice_of(Candidate(payload={"smiles": "FC(F)N"})) == "C,F,N"
    assert domain.slice_of(Candidate(payload=WATER)) == "O"


def test_reservoir_is_real_nci_molecules(domain: ChemistryDomain) -> None:
    real = domain.reservoir()
    assert len(real) > 300
    assert all(c.source == "real" and c.payload["name"].startswith("NCI ") for c in real)
    assert all(domain.check(c) is None for c in real[:100])


def test_featurize_is_invariant_and_fixed_width(domain: ChemistryDomain) -> None:
    rotated = (
        np.array(WATER["coordinates_angstrom"])
        @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)
        + 3.0
    )
    turned = {**WATER, "coordinates_angstrom": rotated.tolist()}
    feats = domain.featurize([Candidate(payload=WATER), Candidate(payload=turned)])
    assert feats.shape == (2, 23)
    assert np.allclose(feats[0], feats[1])
    assert feats[0, 0] == 2 and feats[0, 3] == 1  # two H, one O


def test_options_are_checked_at_config_time() -> None:
    wanted = {"basis": "6-31G(2df,p)", "certified": ["gap_ev", "homo_ev"]}
    opts = parse_options(ChemistryDomain, wanted)
    domain = ChemistryDomain(opts)
    assert [p.name for p in domain.properties] == ["gap_ev", "homo_ev"]
    assert domain.properties[0].abs_tol == 0.2
    for bad in ({"elements": ["C", "U"]}, {"certified": ["bandgap"]}, {"max_heavy_atoms": 0},
                {"grid_level": 12}, {"gap_tol_ev": 0}, {"colour": "red"}):  # fmt: skip
        with pytest.raises(OptionsError):
            parse_options(ChemistryDomain, bad)
    assert ChemistryOptions().xc == "b3lyp" and ChemistryOptions().basis == "def2-svp"


def test_a_calculation_without_a_gap_is_a_failure_not_a_label(domain: ChemistryDomain) -> None:
    from foundry.contract import SimulationFailed

    raw = {"gap_ev": float("nan"), "homo_ev": -7.0, "lumo_ev": float("nan"),
           "dipole_debye": 0.0, "total_energy_hartree": -1.0, "n_cycles": 3}  # fmt: skip
    with pytest.raises(SimulationFailed, match="gap_ev"):
        domain.ground_truth("dft").parse(raw, Candidate(payload=WATER))
    ok = domain.ground_truth("dft").parse({**raw, "gap_ev": 9.0}, Candidate(payload=WATER))
    assert ok.properties == {"gap_ev": 9.0} and "lumo_ev" not in ok.measurements
