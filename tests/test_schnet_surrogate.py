"""The SchNet ensemble surrogate on a synthetic but physical molecular problem.

No quantum chemistry: molecules are random clusters of 3-12 H/C/N/O atoms at bonding distances
(no two atoms closer than 0.95 Angstrom), and the "DFT" property is a sum over atom pairs of a
Morse potential whose depth and equilibrium distance depend on the two elements (smoothly cut
off at 5 Angstrom), plus a term in a global feature (an external "field"), plus 0.6 per unit
charge. The "xTB" baseline is biased like a cheap method: it scales the pair energy by 0.85,
adds a per-element offset, and is noisy, the more so for charged molecules (0.02 neutral,
0.17 charged), so that part of the error is unlearnable and, being predictable from the charge,
something the variance head can learn.

Crystals (the second half): random Cu/Au substitutional fcc and bcc cells with random lattice
constants, periodic edges from ASE's neighbour list, and an intensive target (a smooth function
of composition and volume per atom); the decisive check is that a crystal and its supercell
predict the same under ``intensive=True``.
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
import torch
from foundry.surrogates.schnet import (
    MoleculeSample,
    RadiusNeighbors,
    SchNetEnsembleSurrogate,
    _checked,
    _MoleculeStore,
)
from scipy.stats import spearmanr

from foundry.contract import Candidate, PluginError, PropertySpec, Surrogate, Verdict, content_id

torch.set_num_threads(1)

SPEC = (PropertySpec("energy", "eV", abs_tol=0.05),)
ELEMENTS = np.array([1, 6, 7, 8])
#: Morse well depth (eV) and radius (Angstrom) per element; a pair combines them.
DEPTH = {1: 0.5, 6: 1.0, 7: 0.9, 8: 0.8}
RADIUS = {1: 0.45, 6: 0.75, 7: 0.7, 8: 0.65}
#: The baseline's per-element error (eV).
OFFSET = {1: 0.15, 6: -0.2, 7: 0.1, 8: 0.25}
CUTOFF = 5.0

#: Small networks for the tests that check plumbing, not learning (a fit in about a second).
TINY = {
    "n_members": 2,
    "hidden": 16,
    "filters": 16,
    "interactions": 1,
    "gaussians": 16,
    "min_steps": 30,
    "max_steps": 30,
    "max_train_seconds": None,
}


def _cluster(rng: np.random.Generator, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Atoms added one by one 1.0-1.6 Angstrom from a random earlier atom, rejected when
    closer than 0.95 Angstrom to any: a connected cluster at bonding distances."""
    pos = [np.zeros(3)]
    while len(pos) < n_atoms:
        step = rng.normal(size=3)
        new = pos[int(rng.integers(len(pos)))] + rng.uniform(1.0, 1.6) * step / np.linalg.norm(step)
        if np.min(np.linalg.norm(np.array(pos) - new, axis=1)) >= 0.95:
            pos.append(new)
    z = rng.choice(ELEMENTS, n_atoms, p=[0.4, 0.3, 0.15, 0.15])
    return z, np.array(pos)


def _pair_energy(z: np.ndarray, pos: np.ndarray) -> float:
    """Sum over pairs of D_ab ((1 - exp(-1.5 (r - r0_ab)))^2 - 1), cosine cutoff at 5 A."""
    depth = np.array([DEPTH[int(k)] for k in z])
    radius = np.array([RADIUS[int(k)] for k in z])
    r = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    i, j = np.triu_indices(len(z), k=1)
    r = r[i, j]
    morse = np.sqrt(depth[i] * depth[j]) * (
        (1 - np.exp(-1.5 * (r - radius[i] - radius[j]))) ** 2 - 1
    )
    envelope = np.where(r < CUTOFF, 0.5 * (np.cos(np.pi * r / CUTOFF) + 1), 0.0)
    return float(np.sum(morse * envelope))


def _payload(z: np.ndarray, pos: np.ndarray, charge: float, field: float, base: float) -> dict:
    return {"z": z.tolist(), "pos": pos.tolist(), "charge": charge, "field": field, "xtb": base}


def _molecules(
    n: int, seed: int, sizes: tuple[int, int] = (3, 12), squeeze: float = 1.0
) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
    """Candidates, their true property and their baseline. ``squeeze`` < 1 shrinks every
    distance (out of distribution: atoms closer than any training pair)."""
    rng = np.random.default_rng(seed)
    cands, truth, base = [], [], []
    for _ in range(n):
        z, pos = _cluster(rng, int(rng.integers(sizes[0], sizes[1] + 1)))
        pos = pos * squeeze
        charge = float(rng.choice([-1.0, 0.0, 0.0, 1.0]))
        field = float(rng.normal())
        energy = _pair_energy(z, pos)
        y = energy + 0.6 * charge + 0.3 * field + 0.1 * field**2
        noise = rng.normal(0.0, 0.02 + 0.15 * abs(charge))
        b = 0.85 * energy + sum(OFFSET[int(e)] for e in z) + 0.6 * charge + noise
        payload = _payload(z, pos, charge, field, b)
        cands.append(Candidate(payload=payload, id=content_id("test-molecules", payload)))
        truth.append(y)
        base.append(b)
    return cands, np.array(truth), np.array(base)


def to_sample(cand: Candidate) -> MoleculeSample:
    """Module-level (the surrogate must pickle): the payload as a molecule."""
    p = cand.payload
    return MoleculeSample(
        atomic_numbers=np.asarray(p["z"]),
        positions_angstrom=np.asarray(p["pos"], dtype=float).reshape(-1, 3),
        global_features=np.array([p["charge"], p["field"], *p.get("more", [])]),
        baseline={"energy": p["xtb"]},
    )


def _verdicts(truth: np.ndarray) -> list[Verdict]:
    return [Verdict(True, {"energy": float(y)}) for y in truth]


def _moved(cand: Candidate, pos: np.ndarray, z: np.ndarray | None = None) -> Candidate:
    payload = dict(cand.payload, pos=np.asarray(pos).tolist())
    if z is not None:
        payload["z"] = np.asarray(z).tolist()
    return Candidate(payload=payload, id=content_id("test-molecules", payload))  # not cached


@pytest.fixture(scope="module")
def train_set() -> tuple[list[Candidate], np.ndarray, np.ndarray]:
    return _molecules(600, seed=0)


@pytest.fixture(scope="module")
def trained(train_set) -> SchNetEnsembleSurrogate:
    """The default networks, trained on 600 labels for 500 steps (~16 s: the only long fit
    here; the held-out loss bottoms out after about 400 steps on this problem)."""
    cands, truth, _ = train_set
    model = SchNetEnsembleSurrogate(to_sample, SPEC, min_steps=500, max_steps=500, seed=0)
    model.fit(cands, _verdicts(truth))
    return model


@pytest.fixture(scope="module")
def fresh() -> tuple[list[Candidate], np.ndarray, np.ndarray]:
    return _molecules(400, seed=1)


def test_learns_the_correction_to_the_baseline(trained, fresh, train_set) -> None:
    """On fresh molecules the Delta-model's MAE is under 1/6 of the baseline's and under 1/15
    of predicting the training mean (measured: ~1/11 and ~1/30); on the fit's held-out split
    (60 labels) under 1/5 and 1/12."""
    cands, truth, base = fresh
    pred = trained.predict(cands)
    mae = np.mean(np.abs(pred.values["energy"] - truth))
    mae_base = np.mean(np.abs(base - truth))
    mae_mean = np.mean(np.abs(truth - train_set[1].mean()))
    assert mae < mae_base / 6, (mae, mae_base)
    assert mae < mae_mean / 15, (mae, mae_mean)
    report = trained.train_report()
    assert report["valid_mae/energy"] < report["valid_mae_baseline/energy"] / 5, report
    assert report["valid_mae/energy"] < report["valid_mae_mean/energy"] / 12, report
    assert report["n_labels"] == 600 and report["steps"] == 500
    assert report["train_seconds"] > 0 and np.isfinite(report["valid_spearman/energy"])
    assert "sigma_scale/energy" in report


def test_sigma_ranks_errors(trained, fresh) -> None:
    """Larger sigma, larger error: Spearman(|err|, sigma) > 0.2 on fresh molecules (measured
    0.3-0.45 over seeds), and the molecules with the top 20% sigma err over 1.5x more on
    average than the bottom 20% (measured 2.1-3.5x). Much of it is the variance head having
    learned that the baseline is noisier for charged molecules."""
    cands, truth, _ = fresh
    pred = trained.predict(cands)
    err = np.abs(pred.values["energy"] - truth)
    sigma = pred.sigmas["energy"]
    assert np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    rho = spearmanr(err, sigma).statistic
    assert rho > 0.2, rho
    low, high = np.quantile(sigma, [0.2, 0.8])
    assert err[sigma >= high].mean() > 1.5 * err[sigma <= low].mean()


def test_out_of_distribution_molecules_look_uncertain(trained, fresh) -> None:
    """Clusters twice as large get a median sigma over 1.4x that of fresh molecules like the
    training ones (measured 1.9-2.6x), clusters squeezed to 60% (atoms closer than any pair in
    training) over 1.1x (measured 1.3-1.5x). Their errors grow more (about 5x and 7x): the
    members' disagreement ranks such molecules up, it does not size their error."""
    in_sigma = np.median(trained.predict(fresh[0]).sigmas["energy"])
    big = _molecules(100, seed=2, sizes=(20, 24))[0]
    squeezed = _molecules(100, seed=3, squeeze=0.6)[0]
    assert np.median(trained.predict(big).sigmas["energy"]) > 1.4 * in_sigma
    assert np.median(trained.predict(squeezed).sigmas["energy"]) > 1.1 * in_sigma


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_invariant_to_rotation_translation_and_atom_order(trained, fresh) -> None:
    rng = np.random.default_rng(7)
    cands = fresh[0][:40]
    before = trained.predict(cands)
    rotated, permuted = [], []
    for cand in cands:
        pos = np.asarray(cand.payload["pos"])
        z = np.asarray(cand.payload["z"])
        rotated.append(_moved(cand, pos @ _random_rotation(rng).T + rng.normal(0, 10, 3)))
        order = rng.permutation(len(z))
        permuted.append(_moved(cand, pos[order], z[order]))
    for moved in (rotated, permuted):
        after = trained.predict(moved)
        for table in ("values", "sigmas"):
            np.testing.assert_allclose(
                getattr(after, table)["energy"], getattr(before, table)["energy"], rtol=0, atol=1e-4
            )


def test_pickles_to_identical_predictions(trained, fresh) -> None:
    clone = pickle.loads(pickle.dumps(trained))
    a, b = trained.predict(fresh[0][:50]), clone.predict(fresh[0][:50])
    np.testing.assert_array_equal(a.values["energy"], b.values["energy"])
    np.testing.assert_array_equal(a.sigmas["energy"], b.sigmas["energy"])
    assert clone.train_report() == trained.train_report()


def test_same_seed_same_predictions() -> None:
    cands, truth, _ = _molecules(80, seed=4)
    test = _molecules(30, seed=5)[0]
    preds = []
    for seed in (0, 0, 1):
        model = SchNetEnsembleSurrogate(to_sample, SPEC, seed=seed, **TINY)
        model.fit(cands, _verdicts(truth))
        preds.append(model.predict(test))
    for key in ("values", "sigmas"):
        np.testing.assert_allclose(
            getattr(preds[0], key)["energy"], getattr(preds[1], key)["energy"], rtol=0, atol=1e-6
        )
    assert np.abs(preds[0].values["energy"] - preds[2].values["energy"]).max() > 1e-4


def test_no_opinion_before_fit_and_for_unlabelled_properties() -> None:
    specs = (*SPEC, PropertySpec("dipole", "D", abs_tol=0.1))
    model = SchNetEnsembleSurrogate(to_sample, specs, **TINY)
    assert isinstance(model, Surrogate)
    cands, truth, _ = _molecules(40, seed=6)
    pred = model.predict(cands[:5])
    assert pred.n == 5 and pred.p_pass is None
    for table in (pred.values, pred.sigmas):
        assert set(table) == {"energy", "dipole"}
        assert all(v.shape == (5,) and np.isnan(v).all() for v in table.values())
    assert model.train_report() == {}
    empty = model.predict([])
    assert empty.n == 0 and empty.values["energy"].shape == (0,)

    model.fit(cands, _verdicts(truth))  # no verdict measures the dipole
    pred = model.predict(cands[:5])
    pred.validate(specs, has_pass_fail=False)
    assert np.isfinite(pred.values["energy"]).all() and np.isfinite(pred.sigmas["energy"]).all()
    assert np.isnan(pred.values["dipole"]).all() and np.isnan(pred.sigmas["dipole"]).all()


def test_single_atoms_and_no_baseline() -> None:
    """A lone atom has no neighbours (no edges) yet gets a finite prediction; samples without
    a baseline (and here without global features) are regressed directly."""
    cands, truth, _ = _molecules(30, seed=8)
    atoms = []
    for k, z in enumerate([1, 6, 7, 8] * 3):
        payload = _payload(np.array([z]), np.zeros((1, 3)), 0.0, 0.1 * k, 0.0)
        atoms.append(Candidate(payload=payload, id=f"atom-{k}"))
    model = SchNetEnsembleSurrogate(to_sample, SPEC, **TINY)
    model.fit(cands + atoms, _verdicts(np.concatenate([truth, np.zeros(len(atoms))])))
    pred = model.predict(atoms)
    assert np.isfinite(pred.values["energy"]).all() and (pred.sigmas["energy"] > 0).all()

    plain = SchNetEnsembleSurrogate(_bare, SPEC, **TINY)
    plain.fit(cands, _verdicts(truth))
    assert np.isfinite(plain.predict(cands[:3]).values["energy"]).all()
    assert np.isnan(plain.train_report()["valid_mae_baseline/energy"])


def _bare(cand: Candidate) -> MoleculeSample:
    """Atoms and positions only: no global features, no baseline."""
    sample = to_sample(cand)
    return MoleculeSample(sample.atomic_numbers, sample.positions_angstrom, np.zeros(0))


def _broken(cand: Candidate):
    """A to_sample that breaks in the way the candidate's payload names."""
    sample = to_sample(cand)
    kind = cand.payload.get("break")
    if kind == "shape":
        sample.positions_angstrom = sample.positions_angstrom[:, :2]
    elif kind == "nan":
        sample.positions_angstrom[0, 1] = np.nan
    elif kind == "z0":
        sample.atomic_numbers[0] = 0
    elif kind == "z101":
        sample.atomic_numbers[-1] = 101
    elif kind == "empty":
        sample.atomic_numbers = np.zeros(0, dtype=int)
        sample.positions_angstrom = np.zeros((0, 3))
    elif kind == "fractional":
        sample.atomic_numbers = sample.atomic_numbers + 0.5
    elif kind == "global":
        sample.global_features = np.array([np.inf, 0.0])
    elif kind == "type":
        return {"z": sample.atomic_numbers}
    return sample


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("shape", r"candidate 2 \(bad\): positions_angstrom must have shape \(n_atoms=\d+, 3\)"),
        ("nan", "positions_angstrom contain NaN or inf"),
        ("z0", "atomic number 0 outside 1..100"),
        ("z101", "atomic number 101 outside 1..100"),
        ("empty", "empty molecule"),
        ("fractional", "atomic_numbers must be integers"),
        ("global", "global_features contain NaN or inf"),
        ("type", "not MoleculeSample"),
    ],
)
def test_bad_molecules_are_plugin_errors(kind: str, message: str) -> None:
    cands, truth, _ = _molecules(4, seed=9)
    cands[2] = Candidate(payload=dict(cands[2].payload, **{"break": kind}), id="bad")
    model = SchNetEnsembleSurrogate(_broken, SPEC, **TINY)
    with pytest.raises(PluginError, match=message):
        model.fit(cands, _verdicts(truth))


def test_global_feature_size_must_match_the_fit() -> None:
    cands, truth, _ = _molecules(20, seed=10)
    model = SchNetEnsembleSurrogate(to_sample, SPEC, **TINY)
    model.fit(cands, _verdicts(truth))
    odd = Candidate(payload=dict(cands[0].payload, more=[1.0]), id="odd")
    with pytest.raises(PluginError, match="candidate 0: 3 global features, not 2 as in the fit"):
        model.predict([odd])


def test_vectorised_ensemble_is_the_members_own_schnet() -> None:
    """The batched forward over all members (exact, and with tabulated filters) equals each
    member's own SchNet forward; with a tight max_neighbors some edges run one way only."""
    cands, _, _ = _molecules(24, seed=11, sizes=(1, 12))
    samples = [_checked(to_sample(c), "test") for c in cands]
    for max_neighbors in (32, 3):
        model = SchNetEnsembleSurrogate(
            to_sample, SPEC, n_members=3, interactions=2, max_neighbors=max_neighbors
        )
        ensemble = model._build(global_dim=2).eval()
        store = _MoleculeStore(samples, 2)
        store.u = store.u.astype(np.float32)
        batch = store.collate(np.arange(len(samples)))
        with torch.inference_mode():
            each = torch.stack([member(*batch) for member in ensemble.members])
            exact = ensemble(*batch)
            tabulated = ensemble(*batch, prepared=ensemble.prepare())
        scale = each.abs().max().item()
        assert (exact - each).abs().max().item() < 1e-5 * scale
        assert (tabulated - each).abs().max().item() < 1e-4 * scale


def test_radius_neighbors_against_brute_force() -> None:
    rng = np.random.default_rng(12)
    molecules = [_cluster(rng, n)[1] for n in (1, 2, 7, 12, 30)]
    pos = torch.tensor(np.concatenate(molecules), dtype=torch.float32)
    batch = torch.tensor(np.repeat(np.arange(len(molecules)), [len(m) for m in molecules]))
    for max_neighbors in (32, 4):
        graph = RadiusNeighbors(cutoff=3.0, max_neighbors=max_neighbors)
        edge_index, dist = graph(pos, batch)
        got = {(int(s), int(r)) for s, r in edge_index.T}
        want = set()
        d = torch.cdist(pos, pos)
        for i in range(len(pos)):
            near = [j for j in range(len(pos)) if j != i and batch[j] == batch[i] and d[i, j] < 3]
            near.sort(key=lambda j: float(d[i, j]))
            want |= {(j, i) for j in near[:max_neighbors]}
        assert got == want
        assert len(got) == edge_index.shape[1]
        np.testing.assert_allclose(dist, d[edge_index[1], edge_index[0]], atol=1e-5)


def test_miscalibrated_sigma_is_rescaled_on_the_held_out_split() -> None:
    """Without a variance head two briefly trained members agree far more than they are right:
    the fit scales sigma up by one factor so that held-out |error| / sigma has its Gaussian
    median (0.674), and fresh molecules are then about calibrated too."""
    cands, truth, _ = _molecules(200, seed=13)
    model = SchNetEnsembleSurrogate(
        to_sample, SPEC, **dict(TINY, min_steps=100, max_steps=100), heteroscedastic=False
    )
    model.fit(cands, _verdicts(truth))
    scale = model.train_report()["sigma_scale/energy"]
    assert scale > 1.5, scale
    test, test_truth, _ = _molecules(200, seed=14)
    pred = model.predict(test)
    z = np.abs(pred.values["energy"] - test_truth) / pred.sigmas["energy"]
    assert 0.674 / 2 < np.median(z) < 0.674 * 2, np.median(z)


def test_time_limit_stops_training_but_not_before_min_steps() -> None:
    cands, truth, _ = _molecules(40, seed=16)
    limits = dict(TINY, min_steps=5, max_steps=1000, max_train_seconds=0.0)
    model = SchNetEnsembleSurrogate(to_sample, SPEC, **limits)
    model.fit(cands, _verdicts(truth))
    report = model.train_report()
    assert report["steps"] == 5 and report["cut_by_time"] == 1.0
    assert report["planned_steps"] == 300  # 150 epochs of 2 batches


def test_training_stops_when_the_held_out_loss_stalls() -> None:
    """Patience is a quarter of the planned steps: with 90 labels and a high learning rate the
    held-out loss stops improving long before the 450 planned (150 epochs of 3 batches)."""
    cands, truth, _ = _molecules(100, seed=17)
    limits = dict(TINY, min_steps=20, max_steps=1000, lr=1e-2)
    model = SchNetEnsembleSurrogate(to_sample, SPEC, **limits)
    model.fit(cands, _verdicts(truth))
    report = model.train_report()
    assert report["planned_steps"] == 450
    assert report["stopped_early"] == 1.0 and report["steps"] < 450, report
    assert report["steps"] - report["best_step_mean"] >= 450 // 4


def test_predict_while_a_fit_runs_in_another_thread() -> None:
    """The scheduler refits in a background thread: predictions meanwhile come from the
    previous version, unchanged, and the new version replaces it whole."""
    cands, truth, _ = _molecules(60, seed=15)
    model = SchNetEnsembleSurrogate(to_sample, SPEC, **dict(TINY, min_steps=80, max_steps=80))
    model.fit(cands[:30], _verdicts(truth[:30]))
    before = model.predict(cands[30:]).values["energy"]
    fit = threading.Thread(target=model.fit, args=(cands, _verdicts(truth)))
    fit.start()
    during = []
    while fit.is_alive():
        during.append(model.predict(cands[30:]).values["energy"])
    fit.join()
    after = model.predict(cands[30:]).values["energy"]
    assert model.train_report()["n_labels"] == 60
    assert len(during) > 1 and not np.array_equal(after, before)
    for values in during:  # the old version or the new one, never a mixture
        assert np.array_equal(values, before) or np.array_equal(values, after)


# -- crystals: periodic edges and the intensive readout ----------------------------------------

#: Two elements on fcc and bcc lattices; cutoff of the crystal surrogates and their edges.
CU, AU = 29, 79
CRYSTAL_CUTOFF = 4.5
CRYSTAL_SPEC = (PropertySpec("energy_per_atom", "eV/atom", abs_tol=0.01),)
#: Small networks that learn the crystal target in about 7 s on one thread.
CRYSTAL_NET = {
    "n_members": 3,
    "hidden": 32,
    "filters": 32,
    "interactions": 2,
    "gaussians": 24,
    "cutoff_angstrom": CRYSTAL_CUTOFF,
    "min_steps": 300,
    "max_steps": 300,
    "max_train_seconds": None,
}


def _atoms_of(cand: Candidate):
    from ase import Atoms

    p = cand.payload
    return Atoms(numbers=p["z"], positions=p["pos"], cell=p["cell"], pbc=True)


def _edges(atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASE's periodic neighbour list as (source, receiver, distance): ``i`` is the centre
    atom (the receiver), ``j`` the neighbour (the source)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return j, i, d


def crystal_sample(cand: Candidate) -> MoleculeSample:
    """Module-level (the surrogate must pickle): the payload as a periodic crystal."""
    atoms = _atoms_of(cand)
    return MoleculeSample(
        atoms.numbers, atoms.positions, np.zeros(0), edges=_edges(atoms, CRYSTAL_CUTOFF)
    )


def crystal_wide_edges(cand: Candidate) -> MoleculeSample:
    """Edges computed at a larger cutoff than the surrogate's: the surplus must be dropped."""
    atoms = _atoms_of(cand)
    return MoleculeSample(
        atoms.numbers, atoms.positions, np.zeros(0), edges=_edges(atoms, CRYSTAL_CUTOFF + 1.5)
    )


def crystal_as_molecule(cand: Candidate) -> MoleculeSample:
    """The cell's atoms alone, without periodic images (no edges)."""
    atoms = _atoms_of(cand)
    return MoleculeSample(atoms.numbers, atoms.positions, np.zeros(0))


def _crystal(atoms) -> Candidate:
    payload = {
        "z": atoms.numbers.tolist(),
        "pos": atoms.positions.tolist(),
        "cell": np.asarray(atoms.cell).tolist(),
    }
    return Candidate(payload=payload, id=content_id("test-crystals", payload))


def _crystal_target(atoms) -> float:
    """A smooth function of composition (fraction of Au) and volume per atom."""
    x = float(np.mean(atoms.numbers == AU))
    v = atoms.get_volume() / len(atoms)
    return 0.8 * x + 1.5 * x * (1 - x) + 0.04 * (v - 13.0) ** 2


def _crystals(n: int, seed: int) -> tuple[list[Candidate], np.ndarray]:
    """Random Cu/Au substitutional cells: fcc (conventional, 4 atoms, or 8) or bcc (2 or 8),
    lattice constants spread so that the volume per atom spans 9.8-16.4 A^3 on both."""
    from ase.build import bulk

    rng = np.random.default_rng(seed)
    cands, truth = [], []
    for _ in range(n):
        if rng.random() < 0.5:
            atoms = bulk("Cu", "fcc", a=rng.uniform(3.4, 4.0), cubic=True)
            atoms = atoms.repeat((2, 1, 1)) if rng.random() < 0.5 else atoms
        else:
            atoms = bulk("Cu", "bcc", a=rng.uniform(2.7, 3.2), cubic=True)
            atoms = atoms.repeat((2, 2, 1)) if rng.random() < 0.5 else atoms
        atoms.numbers = np.where(rng.random(len(atoms)) < rng.random(), AU, CU)
        cands.append(_crystal(atoms))
        truth.append(_crystal_target(atoms))
    return cands, np.array(truth)


def _crystal_verdicts(truth: np.ndarray) -> list[Verdict]:
    return [Verdict(True, {"energy_per_atom": float(y)}) for y in truth]


def _cells_and_supercells() -> list:
    """Conventional fcc Cu, and a Cu/Au alloy cell with a vacancy; each followed by its 2x2x2
    supercell (8 times the atoms, each in the same environment)."""
    from ase.build import bulk

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    alloy = cu.repeat((2, 1, 1))
    alloy.numbers[[1, 4, 6]] = AU
    del alloy[3]  # the vacancy
    return [cu, cu.repeat((2, 2, 2)), alloy, alloy.repeat((2, 2, 2))]


@pytest.fixture(scope="module")
def crystal_train() -> tuple[list[Candidate], np.ndarray]:
    return _crystals(200, seed=20)


@pytest.fixture(scope="module")
def intensive(crystal_train) -> SchNetEnsembleSurrogate:
    """An intensive ensemble fitted to 200 random cells (about 7 s)."""
    cands, truth = crystal_train
    model = SchNetEnsembleSurrogate(crystal_sample, CRYSTAL_SPEC, intensive=True, **CRYSTAL_NET)
    model.fit(cands, _crystal_verdicts(truth))
    return model


def test_learns_a_periodic_target(intensive, crystal_train) -> None:
    """Held-out MAE on fresh random cells below 0.3x the target's std (measured 0.07-0.12x
    over data and model seeds)."""
    cands, truth = _crystals(100, seed=21)
    pred = intensive.predict(cands)
    mae = np.mean(np.abs(pred.values["energy_per_atom"] - truth))
    assert mae < 0.3 * truth.std(), (mae, truth.std())
    assert np.all(pred.sigmas["energy_per_atom"] > 0)
    report = intensive.train_report()
    assert report["valid_mae/energy_per_atom"] < 0.3 * report["valid_mae_mean/energy_per_atom"]


def test_intensive_prediction_does_not_depend_on_the_cell(intensive, crystal_train) -> None:
    """The decisive one: a crystal and its 2x2x2 supercell (every atom in the same
    environment) get the same value and sigma from the intensive ensemble, in one call or
    apart; the extensive readout's sum over atoms makes the supercell's differ."""
    cells = [_crystal(atoms) for atoms in _cells_and_supercells()]
    together = intensive.predict(cells)
    apart = [intensive.predict([cand]) for cand in cells]
    for table in ("values", "sigmas"):
        got = getattr(together, table)["energy_per_atom"]
        np.testing.assert_allclose(got[1::2], got[0::2], rtol=1e-5, atol=0)
        alone = np.concatenate([getattr(p, table)["energy_per_atom"] for p in apart])
        np.testing.assert_allclose(alone, got, rtol=1e-5, atol=0)

    cands, truth = crystal_train
    extensive = SchNetEnsembleSurrogate(
        crystal_sample, CRYSTAL_SPEC, **dict(CRYSTAL_NET, min_steps=30, max_steps=30)
    )
    extensive.fit(cands, _crystal_verdicts(truth))
    values = extensive.predict(cells).values["energy_per_atom"]
    assert np.all(np.abs(values[1::2] - values[0::2]) > 1e-2 * np.abs(values[0::2])), values


def test_periodic_edges_change_the_answer(intensive) -> None:
    """The same atoms as a molecule (no periodic images) predict otherwise; edges computed at a
    larger cutoff than the surrogate's predict as the exact list (the surplus is dropped)."""
    cells = [_crystal(atoms) for atoms in _cells_and_supercells()[::2]]
    periodic = intensive.predict(cells).values["energy_per_atom"]
    molecule = copy.copy(intensive)
    molecule.to_sample = crystal_as_molecule
    alone = molecule.predict(cells).values["energy_per_atom"]
    assert np.all(np.abs(alone - periodic) > 1e-2), (alone, periodic)
    wide = copy.copy(intensive)
    wide.to_sample = crystal_wide_edges
    np.testing.assert_allclose(wide.predict(cells).values["energy_per_atom"], periodic, rtol=1e-5)


def test_crystal_invariant_to_translation_and_atom_order(intensive) -> None:
    """All atoms translated (and wrapped back into the cell), or listed in another order: the
    neighbour lists differ in order and in the last bits of the distances, not the answers."""
    rng = np.random.default_rng(22)
    cands = _crystals(20, seed=23)[0] + [_crystal(a) for a in _cells_and_supercells()]
    before = intensive.predict(cands)
    moved, permuted = [], []
    for cand in cands:
        atoms = _atoms_of(cand)
        shifted = atoms.copy()
        shifted.translate(rng.normal(0, 5, 3))
        shifted.wrap()
        moved.append(_crystal(shifted))
        permuted.append(_crystal(atoms[rng.permutation(len(atoms))]))
    for other in (moved, permuted):
        after = intensive.predict(other)
        for table in ("values", "sigmas"):
            np.testing.assert_allclose(
                getattr(after, table)["energy_per_atom"],
                getattr(before, table)["energy_per_atom"],
                rtol=1e-5,
                atol=1e-6,
            )


def test_vectorised_ensemble_with_periodic_edges_is_the_members_own_schnet() -> None:
    """With crystals' edges, extensive or intensive, the batched forward (exact and tabulated)
    equals each member's own SchNet forward on the same edge_index."""
    cands = _crystals(12, seed=24)[0] + [_crystal(a) for a in _cells_and_supercells()]
    samples = [_checked(crystal_sample(c), "test") for c in cands]
    for intensive in (False, True):
        model = SchNetEnsembleSurrogate(
            crystal_sample, CRYSTAL_SPEC, n_members=3, interactions=2, intensive=intensive
        )
        model.cutoff_angstrom = CRYSTAL_CUTOFF
        ensemble = model._build(global_dim=0).eval()
        store = _MoleculeStore(samples, 0, cutoff=CRYSTAL_CUTOFF)
        store.u = store.u.astype(np.float32)
        batch = store.collate(np.arange(len(samples)))
        assert batch[4] is not None
        with torch.inference_mode():
            each = torch.stack([member(*batch) for member in ensemble.members])
            exact = ensemble(*batch)
            tabulated = ensemble(*batch, prepared=ensemble.prepare())
        assert each.shape == (3, len(samples), 2)
        scale = each.abs().max().item()
        assert (exact - each).abs().max().item() < 1e-5 * scale
        assert (tabulated - each).abs().max().item() < 1e-4 * scale


def test_store_collates_crystal_edges_in_the_collated_numbering() -> None:
    """Edges of the selected crystals, in the order selected, shifted to the collated atoms;
    edges at or beyond the cutoff dropped; chunks sized by edges, not n_atoms^2."""
    z = np.array([CU, AU])
    samples = [
        MoleculeSample(z[:1], np.zeros((1, 3)), np.zeros(0), edges=([0, 0], [0, 0], [2.0, 6.0])),
        MoleculeSample(z, np.eye(3)[:2], np.zeros(0), edges=([0, 1, 1], [1, 0, 1], [1.0, 1.0, 3])),
        MoleculeSample(z, np.eye(3)[1:], np.zeros(0), edges=([1], [0], [4.0])),
    ]
    store = _MoleculeStore([_checked(s, "test") for s in samples], 0, cutoff=5.0)
    _, _, batch, _, (edge_index, dist) = store.collate(np.array([2, 0, 1]))
    assert batch.tolist() == [0, 0, 1, 2, 2]
    assert edge_index.tolist() == [[1, 2, 3, 4, 4], [0, 2, 4, 3, 4]]
    np.testing.assert_array_equal(dist.numpy(), [4.0, 2.0, 1.0, 1.0, 3.0])
    assert edge_index.dtype == torch.long and dist.dtype == torch.float32
    # 40 crystals of 4 atoms and 100 edges: 104 each, 4096 // 104 = 39 to a chunk (n^2: 1024)
    many = MoleculeSample(
        np.full(4, CU),
        np.zeros((4, 3)),
        np.zeros(0),
        edges=(np.zeros(100, int), np.ones(100, int), np.full(100, 2.0)),
    )
    store = _MoleculeStore([_checked(many, "test")] * 40, 0, cutoff=5.0)
    assert [len(c) for c in store.chunks(np.arange(40))] == [39, 1]


def test_intensive_flag_pickles_and_old_pickles_are_extensive(intensive, crystal_train) -> None:
    """A fitted intensive surrogate pickles to the same predictions; one pickled before the
    flag existed (no ``intensive`` attribute anywhere) loads as extensive and still predicts."""
    cells = [_crystal(a) for a in _cells_and_supercells()]
    clone = pickle.loads(pickle.dumps(intensive))
    assert clone.intensive and clone._fitted.model.members[0].intensive
    a, b = intensive.predict(cells), clone.predict(cells)
    np.testing.assert_array_equal(a.values["energy_per_atom"], b.values["energy_per_atom"])
    np.testing.assert_array_equal(a.sigmas["energy_per_atom"], b.sigmas["energy_per_atom"])

    cands, truth, _ = _molecules(20, seed=25)
    model = SchNetEnsembleSurrogate(to_sample, SPEC, **TINY)
    model.fit(cands, _verdicts(truth))
    before = model.predict(cands)
    old = pickle.loads(pickle.dumps(model))
    del old.__dict__["intensive"]
    for member in old._fitted.model.members:
        del member.__dict__["intensive"]
    old._fitted._prepared = None
    old = pickle.loads(pickle.dumps(old))
    assert not old.intensive and not old._fitted.model.members[0].intensive
    np.testing.assert_array_equal(old.predict(cands).values["energy"], before.values["energy"])


def _broken_edges(cand: Candidate):
    """A crystal to_sample whose edges break in the way the candidate's payload names."""
    sample = crystal_sample(cand)
    src, dst, dist = (np.array(a) for a in sample.edges)
    n_atoms = len(sample.atomic_numbers)
    kind = cand.payload.get("break")
    if kind == "array":
        sample.edges = np.stack([src, dst, dist])
    elif kind == "two":
        sample.edges = (src, dst)
    elif kind == "2d":
        sample.edges = (src.reshape(-1, 1), dst, dist)
    elif kind == "length":
        sample.edges = (src, dst[:-1], dist)
    elif kind == "fractional":
        sample.edges = (src + 0.5, dst, dist)
    elif kind == "text":
        sample.edges = (src, dst.astype(str), dist)
    elif kind == "high":
        dst[3] = n_atoms
        sample.edges = (src, dst, dist)
    elif kind == "negative":
        src[0] = -1
        sample.edges = (src, dst, dist)
    elif kind == "nan":
        dist[2] = np.nan
        sample.edges = (src, dst, dist)
    elif kind == "zero":
        dist[1] = 0.0
        sample.edges = (src, dst, dist)
    elif kind == "mixed":
        sample.edges = None
    return sample


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("array", r"candidate 2 \(bad-array\): edges must be a tuple \(source, receiver"),
        ("two", r"edges must be \(source, receiver, distance_angstrom\), got 2 arrays"),
        ("2d", r"edges source must be 1-D \(E,\), got shape \(\d+, 1\)"),
        ("length", "edges source, receiver, distance_angstrom differ in length"),
        ("fractional", "edges source must be integer atom indices"),
        ("text", "edges receiver must be integer atom indices"),
        ("high", r"edges receiver index (\d+) outside 0\.\.\d+ \(n_atoms\)"),
        ("negative", r"edges source index -1 outside 0\.\.\d+"),
        ("nan", "edges distance_angstrom contain NaN or inf"),
        ("zero", r"edges distance_angstrom must be > 0, got 0.0 for the edge \d+ -> \d+"),
        ("mixed", "candidate 2 has no edges .* but candidate 0 has them: .* not both"),
    ],
)
def test_bad_edges_are_plugin_errors(kind: str, message: str) -> None:
    cands, truth = _crystals(4, seed=26)
    cands[2] = Candidate(payload=dict(cands[2].payload, **{"break": kind}), id=f"bad-{kind}")
    model = SchNetEnsembleSurrogate(_broken_edges, CRYSTAL_SPEC, **TINY)
    with pytest.raises(PluginError, match=message):
        model.fit(cands, _crystal_verdicts(truth))


def test_molecules_and_crystals_do_not_mix_in_one_call(intensive) -> None:
    cands = _crystals(3, seed=27)[0]
    cands[0] = Candidate(payload=dict(cands[0].payload, **{"break": "mixed"}), id="mixed-0")
    mixed = copy.copy(intensive)
    mixed.to_sample = _broken_edges
    with pytest.raises(PluginError, match=r"candidate 1 has edges .* but candidate 0 has none"):
        mixed.predict(cands)
