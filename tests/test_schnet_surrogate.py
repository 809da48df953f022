"""The SchNet ensemble surrogate on a synthetic but physical molecular problem.

No quantum chemistry: molecules are random clusters of 3-12 H/C/N/O atoms at bonding distances
(no two atoms closer than 0.95 Angstrom), and the "DFT" property is a sum over atom pairs of a
Morse potential whose depth and equilibrium distance depend on the two elements (smoothly cut
off at 5 Angstrom), plus a term in a global feature (an external "field"), plus 0.6 per unit
charge. The "xTB" baseline is biased like a cheap method: it scales the pair energy by 0.85,
adds a per-element offset, and is noisy, the more so for charged molecules (0.02 neutral,
0.17 charged), so that part of the error is unlearnable and, being predictable from the charge,
something the variance head can learn.
"""

from __future__ import annotations

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
