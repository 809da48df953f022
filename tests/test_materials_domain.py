"""The materials domain without long MD: generator, rule layer (every reason), identity,
slices, reservoir, seeds, and the verdict's handling of replicas that disagree."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("openmm")
pytest.importorskip("ase")

from ase.build import bulk
from foundry.domains.materials import MaterialsDomain, MaterialsOptions
from foundry.domains.materials.ground_truth import md_seeds
from foundry.domains.materials.structures import reference_volume_per_atom

from foundry.contract import Candidate, SimulationFailed


def _payload(atoms, temperature_k: float = 300.0, **extra) -> dict:
    return {
        "symbols": atoms.get_chemical_symbols(),
        "positions_angstrom": atoms.positions.tolist(),
        "cell_angstrom": atoms.cell.array.tolist(),
        "pbc": [True, True, True],
        "temperature_k": temperature_k,
        **extra,
    }


@pytest.fixture(scope="module")
def domain() -> MaterialsDomain:
    return MaterialsDomain()


def test_generated_crystals_pass_the_rules_and_span_the_options(domain) -> None:
    cands = domain.generate(300, np.random.default_rng(1), domain.steering_defaults)
    assert all(domain.check(c) is None for c in cands)
    slices = Counter(domain.slice_of(c) for c in cands)
    assert set(slices) == {"fcc", "bcc", "hcp"} and slices["hcp"] < slices["fcc"]
    elements = Counter(s for c in cands for s in set(c.payload["symbols"]))
    assert set(elements) == set(domain.options.elements)
    alloys = sum(len(set(c.payload["symbols"])) > 1 for c in cands)
    vacancies = sum(len(c.payload["symbols"]) < c.payload["sites"] for c in cands)
    assert 0.4 < alloys / 300 < 0.75 and 0.15 < vacancies / 300 < 0.45
    temps = [c.payload["temperature_k"] for c in cands]
    assert min(temps) >= 200 and max(temps) <= 2500
    assert max(len(c.payload["symbols"]) for c in cands) <= domain.options.max_atoms
    again = domain.generate(300, np.random.default_rng(1), domain.steering_defaults)
    assert [c.payload for c in again] == [c.payload for c in cands]


def test_steering_moves_what_is_generated(domain) -> None:
    steering = {**domain.steering_defaults, "weight_fcc": 0.0, "weight_hcp": 0.0,
                "temperature_min_k": 1000.0, "temperature_max_k": 1200.0,
                "alloy_probability": 0.0}  # fmt: skip
    steering.update({k: 0.0 for k in steering if k.startswith("weight_") and k not in
                     ("weight_bcc", "weight_w")})  # fmt: skip
    cands = domain.generate(50, np.random.default_rng(2), steering)
    assert {domain.slice_of(c) for c in cands} == {"bcc"}
    assert {s for c in cands for s in c.payload["symbols"]} == {"W"}
    assert all(1000 <= c.payload["temperature_k"] <= 1200 for c in cands)


def test_the_lattice_constant_follows_vegard(domain) -> None:
    steering = {**domain.steering_defaults, "strain_max": 0.0, "vacancy_probability": 0.0}
    for cand in domain.generate(40, np.random.default_rng(3), steering):
        p = cand.payload
        volume = abs(np.linalg.det(np.array(p["cell_angstrom"]))) / p["sites"]
        assert volume == pytest.approx(reference_volume_per_atom(p["symbols"]), rel=1e-4)


def test_children_name_their_parents_and_pass_the_rules(domain) -> None:
    parents = domain.reservoir()[:4]
    kids = domain.propose(40, np.random.default_rng(4), domain.steering_defaults, parents, 2.0)
    ids = {p.id for p in parents}
    assert all(k.parent_ids and set(k.parent_ids) <= ids for k in kids)
    assert all(domain.check(k) is None for k in kids)
    assert any(k.payload != next(p for p in parents if p.id == k.parent_ids[0]).payload
               for k in kids)  # fmt: skip


def test_the_reservoir_is_real_and_named(domain) -> None:
    real = domain.reservoir()
    assert len(real) == 9 * 2 * 2  # 9 elements, experimental + PBE structures, 2 temperatures
    assert all(c.source == "real" and domain.check(c) is None for c in real)
    names = [c.payload["name"] for c in real]
    assert any("reference_states" in n for n in names) and any("dcdft" in n for n in names)
    assert len({c.id for c in real}) == len(real)


CU = bulk("Cu", "fcc", a=3.615, cubic=True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: p.update(pbc=[True, True, False]), "fully periodic"),
        (lambda p: p.update(symbols=["Au"] * 4), "not among"),
        (lambda p: p.update(temperature_k=9000.0), "outside"),
        (lambda p: p.update(temperature_k=-1.0), "temperature_k"),
        (lambda p: p.update(positions_angstrom=p["positions_angstrom"][:3]), "3 positions"),
        (lambda p: p.update(cell_angstrom=(np.array(p["cell_angstrom"]) * 1.5).tolist()),
         "volume per site"),
        (lambda p: p["positions_angstrom"].__setitem__(1, [0.5, 0.0, 0.0]), "Morse r0 apart"),
        (lambda p: p.update(cell_angstrom=[[3.6, 0, 0], [3.6, 0.3, 0], [0, 0, 3.6]]),
         "cell angle"),
        (lambda p: p.update(cell_angstrom=[[3.615, 0, 0], [0, 0, 3.615], [0, 3.615, 0]]),
         "left-handed"),
        (lambda p: p.update(sites=2), "sites"),
        (lambda p: p.update(lattice="diamond"), "lattice"),
        (lambda p: p.update(extra=1), "extra"),
        (lambda p: p.update(cell_angstrom=[[0.0] * 3] * 3), "cell"),
    ],
)
def test_every_rule_says_why(domain, change, reason) -> None:
    payload = json.loads(json.dumps(_payload(CU)))
    assert domain.check(Candidate(payload=payload)) is None
    change(payload)
    problem = domain.check(Candidate(payload=payload))
    assert problem is not None and reason in problem, problem


def test_certifying_the_lattice_constant_needs_cubic_lattices() -> None:
    with pytest.raises(ValueError, match="cubic"):
        MaterialsOptions(certified=("lattice_constant_angstrom",))
    cubic = MaterialsDomain(MaterialsOptions(certified=("lattice_constant_angstrom",),
                                             lattices=("fcc", "bcc")))  # fmt: skip
    assert "only cubic" in cubic.check(Candidate(payload=_payload(CU)))
    assert cubic.check(Candidate(payload=_payload(CU, lattice="fcc", sites=4))) is None
    with pytest.raises(ValueError, match="elements"):
        MaterialsOptions(elements=("Cu", "Au"))


def test_identity_ignores_the_name_and_seeds_come_from_the_structure(domain) -> None:
    a = _payload(CU, name="copper")
    b = _payload(CU, name="Cu again")
    assert domain.identity(a) == domain.identity(b)
    assert md_seeds(a, 2) == md_seeds(b, 2) and md_seeds(a, 2)[1] == md_seeds(a, 2)[0] + 1
    hotter = _payload(CU, temperature_k=301.0)
    assert md_seeds(hotter, 1) != md_seeds(a, 1)


def test_replicas_that_disagree_are_a_failure_not_a_label(domain) -> None:
    gt = domain.ground_truth()
    cand = Candidate(payload=_payload(CU, lattice="fcc", sites=4))
    raw = {"energy_per_atom_ev": -3.42, "relaxed_scale": 1.0, "volume_per_atom_angstrom3": 11.9,
           "nearest_neighbour_angstrom": 2.56, "msd_by_replica": [0.1, 0.2],
           "mean_temperature_k": 300.0, "potential_energy_at_t_per_atom_ev": -3.38,
           "atoms_simulated": 256, "seeds": [1, 2], "lattice_constant_angstrom": 3.62}  # fmt: skip
    ok = gt.parse({**raw, "lindemann_by_replica": [0.100, 0.108]}, cand)
    assert ok.properties["lindemann_index"] == pytest.approx(0.104)
    assert ok.measurements["lindemann_seed_spread"] == pytest.approx(0.008)
    assert ok.measurements["lattice_constant_angstrom"] == 3.62
    with pytest.raises(SimulationFailed, match="differs between seeds"):
        gt.parse({**raw, "lindemann_by_replica": [0.12, 0.30]}, cand)


def test_one_real_md_verdict(domain) -> None:
    """The MD tier on a 2-atom bcc W cell at 300 K (~1 s): every observable recorded."""
    w = bulk("W", "bcc", a=3.165, cubic=True)
    cand = Candidate(payload=_payload(w, lattice="bcc", sites=2))
    verdict = domain.ground_truth().verify(cand, "/tmp")
    verdict.validate(domain.properties)
    m = verdict.measurements
    assert m["lattice_constant_angstrom"] == pytest.approx(3.165, rel=0.01)
    assert verdict.properties["energy_per_atom_ev"] == pytest.approx(-8.58, abs=0.05)
    assert 0.01 < verdict.properties["lindemann_index"] < 0.05 and m["melted"] == 0.0
    assert m["lindemann_seed_spread"] < 0.005 and m["atoms_simulated"] >= 250
    short = domain.ground_truth("short-md").verify(cand, "/tmp")
    assert short.properties["energy_per_atom_ev"] == verdict.properties["energy_per_atom_ev"]
