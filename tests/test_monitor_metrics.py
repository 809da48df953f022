"""The monitor's collapse metrics against closed forms, reference numbers and error rates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from foundry.monitor.metrics import (
    kl_divergence,
    median_bandwidth,
    mmd2_rbf,
    mmd_permutation_pvalue,
    rbf_kernel,
    vendi_score,
    wasserstein_1d,
)


def _entropy_score(eigenvalues: np.ndarray) -> float:
    w = eigenvalues[eigenvalues > 0]
    return float(np.exp(-np.sum(w * np.log(w))))


def _gauss_mmd2(mu: float, s: float, h: float) -> float:
    """Population MMD^2 of N(0, s^2) vs N(mu, s^2) under the RBF kernel of bandwidth h.

    E k(X, X') = h / sqrt(h^2 + 2 s^2) and E k(X, Y) = that times exp(-mu^2 / (2 (h^2 + 2 s^2))),
    from X - Y ~ N(-mu, 2 s^2) and the Gaussian integral of exp(-d^2 / (2 h^2)).
    """
    c = h / np.sqrt(h * h + 2 * s * s)
    return float(2 * c * (1 - np.exp(-mu * mu / (2 * (h * h + 2 * s * s)))))


# ---------------------------------------------------------------- bandwidth and kernel


def test_median_bandwidth_known_and_degenerate():
    x = np.array([[0.0], [3.0], [3.0], [3.0]])  # the zero distances between duplicates are ignored
    assert median_bandwidth(x) == 3.0
    assert median_bandwidth(np.ones((10, 3))) == 1.0
    assert median_bandwidth(np.zeros((1, 2))) == 1.0
    assert median_bandwidth(np.zeros((0, 2))) == 1.0
    grid = np.array([[0.0], [1.0], [2.0]])  # distances 1, 1, 2
    assert median_bandwidth(grid) == 1.0


def test_median_bandwidth_subsample_is_seeded():
    x = np.random.default_rng(0).normal(size=(2000, 3))
    a = median_bandwidth(x, np.random.default_rng(3), max_points=200)
    b = median_bandwidth(x, np.random.default_rng(3), max_points=200)
    c = median_bandwidth(x, np.random.default_rng(4), max_points=200)
    assert a == b != c
    assert median_bandwidth(x, max_points=200) == median_bandwidth(x, max_points=200)
    # 3-D standard normal: the distance between two points is sqrt(2) * chi(3), median ~ 2.175;
    # a 200-row subsample scatters by ~3% (sd over seeds), all 2000 rows land within 0.1%
    population = np.sqrt(2 * stats.chi2.median(3))
    assert median_bandwidth(x, max_points=2000) == pytest.approx(population, rel=0.01)
    assert a == pytest.approx(population, rel=0.15)


def test_rbf_kernel_values():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    k = rbf_kernel(x, x, bandwidth=2.0)
    np.testing.assert_array_equal(np.diag(k), [1.0, 1.0])
    assert k[0, 1] == pytest.approx(np.exp(-25 / 8), rel=1e-14)
    assert k.shape == (2, 2) and rbf_kernel(x, x[:1], 1.0).shape == (2, 1)


# ---------------------------------------------------------------- Vendi


def test_vendi_identical_rows_is_one():
    x = np.tile([1.5, -2.0, 0.3], (50, 1))
    assert vendi_score(x, bandwidth=1.0) == pytest.approx(1.0, abs=1e-9)


def test_vendi_equal_separated_clusters_counts_clusters():
    centres = 100.0 * np.arange(4)[:, None] * np.ones((1, 2))
    x = np.repeat(centres, 25, axis=0)  # 4 clusters of 25 identical points, 141 apart
    assert vendi_score(x, bandwidth=1.0) == pytest.approx(4.0, abs=1e-6)


def test_vendi_far_apart_points_counts_points():
    x = 50.0 * np.arange(12, dtype=float)[:, None]
    assert vendi_score(x, bandwidth=1.0) == pytest.approx(12.0, abs=1e-9)


@pytest.mark.parametrize(("d", "h"), [(1.0, 0.8), (0.3, 1.0), (2.0, 1.0)])
def test_vendi_two_points_closed_form(d, h):
    # K / 2 = [[1, k], [k, 1]] / 2 has eigenvalues (1 +- k) / 2
    k = np.exp(-(d**2) / (2 * h**2))
    expected = _entropy_score(np.array([(1 + k) / 2, (1 - k) / 2]))
    x = np.array([[0.0, 0.0], [d, 0.0]])
    assert vendi_score(x, bandwidth=h) == pytest.approx(expected, rel=1e-12)
    assert 1.0 < expected < 2.0


def test_vendi_matches_reference_package():
    # Cross-checked once (not a test dependency) against the PyPI package vendi_score 0.0.3:
    # x = default_rng(0).normal(size=(200, 3)), RBF kernel exp(-|a-b|^2 / (2 h^2)) passed as the
    # pairwise similarity to vendi_score.vendi.score(x, k); it gave 85.06681140983368 (h = 0.5),
    # 20.946156182975955 (h = 1), 5.055764510767451 (h = 2); vendi_score here gave the same to
    # <= 1e-15 relative (85.06681140983368, 20.946156182975955, 5.0557645107674505).
    x = np.random.default_rng(0).normal(size=(200, 3))
    for h, reference in [
        (0.5, 85.06681140983368),
        (1.0, 20.946156182975955),
        (2.0, 5.055764510767451),
    ]:
        assert vendi_score(x, bandwidth=h) == pytest.approx(reference, rel=1e-9)


def test_vendi_grows_with_spread():
    rng = np.random.default_rng(1)
    wide = rng.normal(0.0, 1.0, size=(300, 2))
    narrow = rng.normal(0.0, 0.1, size=(300, 2))
    v_wide, v_narrow = vendi_score(wide, 0.5), vendi_score(narrow, 0.5)
    assert v_wide > 3 * v_narrow
    assert 1.0 <= v_narrow < v_wide <= 300


def test_vendi_subsample_is_seeded():
    x = np.random.default_rng(2).normal(size=(3000, 2))
    a = vendi_score(x, 0.5, np.random.default_rng(7), max_points=400)
    b = vendi_score(x, 0.5, np.random.default_rng(7), max_points=400)
    c = vendi_score(x, 0.5, np.random.default_rng(8), max_points=400)
    assert a == b != c
    assert vendi_score(x, 0.5, max_points=400) == vendi_score(x, 0.5, max_points=400)
    assert 1.0 < a <= 400


def test_vendi_tiny_inputs():
    assert vendi_score(np.zeros((0, 3)), 1.0) == 0.0
    assert vendi_score(np.zeros((1, 3)), 1.0) == 1.0


# ---------------------------------------------------------------- MMD


def test_mmd2_is_the_unbiased_estimator():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(40, 3)) + 0.3
    h = 1.3
    kxx, kyy, kxy = rbf_kernel(x, x, h), rbf_kernel(y, y, h), rbf_kernel(x, y, h)
    m, n = len(x), len(y)
    direct = (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )
    assert mmd2_rbf(x, y, h) == pytest.approx(direct, rel=1e-12)
    assert mmd2_rbf(y, x, h) == pytest.approx(direct, rel=1e-12)
    assert np.isnan(mmd2_rbf(x[:1], y, h))


def test_gauss_mmd2_formula_matches_quadrature():
    # the closed form against a 100 x 100 Gauss-Hermite product rule of E k(a, b) over both normals
    t, w = np.polynomial.hermite_e.hermegauss(100)
    w = w / w.sum()

    def expected_k(m1, m2, s, h):
        a, b = m1 + s * t[:, None], m2 + s * t[None, :]
        return float(w @ np.exp(-((a - b) ** 2) / (2 * h * h)) @ w)

    for mu, s, h in [(1.0, 1.0, 1.0), (0.5, 2.0, 0.7), (2.0, 0.3, 1.5)]:
        quad = expected_k(0, 0, s, h) + expected_k(mu, mu, s, h) - 2 * expected_k(0, mu, s, h)
        assert _gauss_mmd2(mu, s, h) == pytest.approx(quad, abs=1e-9)


def test_mmd2_estimate_matches_population_value():
    # sd of the estimate at n = 2000 is ~0.011 (30 seeds); tolerance ~4 sd
    rng = np.random.default_rng(11)
    x, y = rng.normal(0, 1, size=(2000, 1)), rng.normal(1, 1, size=(2000, 1))
    assert mmd2_rbf(x, y, 1.0, max_points=2000) == pytest.approx(_gauss_mmd2(1, 1, 1), abs=0.045)
    # same distribution: population 0, null sd of the estimate at n = 2000 is ~3e-4
    z = rng.normal(0, 1, size=(2000, 1))
    assert abs(mmd2_rbf(x, z, 1.0, max_points=2000)) < 2e-3


def test_mmd_same_distribution_not_flagged():
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    h = median_bandwidth(np.concatenate([x, y]))
    assert abs(mmd2_rbf(x, y, h)) < 0.01
    assert mmd_permutation_pvalue(x, y, h, np.random.default_rng(0)) > 0.05


def test_mmd_false_alarm_rate():
    # Under H0 the permutation p-value is valid: P(p < 0.05) <= 0.05. Over 100 independent
    # repeats the count of false alarms is then at most Binomial(100, 0.05), for which
    # P(count >= 11) ~ 0.011; so more than 10 alarms would reject validity at the 2% level.
    assert stats.binom.sf(10, 100, 0.05) < 0.02
    pvalues = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 2))
        h = median_bandwidth(np.concatenate([x, y]))  # a function of the pooled set: still valid
        pvalues.append(mmd_permutation_pvalue(x, y, h, rng, n_permutations=200))
    p = np.array(pvalues)
    assert np.all((p >= 1 / 201) & (p <= 1))
    assert np.count_nonzero(p < 0.05) <= 10
    assert 0.4 < p.mean() < 0.6  # uniform p-values: mean 0.5, sd of the mean ~0.03


def test_mmd_detects_one_sd_shift():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(200, 2))
    y = rng.normal(size=(200, 2)) + np.array([1.0, 0.0])
    h = median_bandwidth(np.concatenate([x, y]))
    p = mmd_permutation_pvalue(x, y, h, np.random.default_rng(0), n_permutations=200)
    assert p < 0.01
    assert mmd2_rbf(x, y, h) > 0.05


def test_mmd_pvalue_is_seeded():
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 0.1
    a = mmd_permutation_pvalue(x, y, 1.0, np.random.default_rng(3), max_points=100)
    b = mmd_permutation_pvalue(x, y, 1.0, np.random.default_rng(3), max_points=100)
    assert a == b


# ---------------------------------------------------------------- Wasserstein and KL


def test_wasserstein_shift_is_exact():
    a = np.random.default_rng(20).normal(size=1000)
    assert wasserstein_1d(a, a + 2.5) == pytest.approx(2.5, abs=1e-12)
    assert wasserstein_1d(a, a) == 0.0
    assert wasserstein_1d(np.array([0.0]), np.array([1.0])) == 1.0


def test_wasserstein_same_distribution_small_and_empty():
    rng = np.random.default_rng(21)
    assert wasserstein_1d(rng.normal(size=20000), rng.normal(size=20000)) < 0.03
    assert np.isnan(wasserstein_1d(np.array([]), np.array([1.0])))
    assert np.isnan(wasserstein_1d(np.array([1.0]), np.array([])))


def test_kl_identical_is_zero():
    a = np.random.default_rng(30).normal(size=500)
    assert kl_divergence(a, a) == 0.0
    assert kl_divergence(np.full(5, 2.0), np.full(7, 2.0)) == 0.0


def test_kl_gaussian_shift_closed_form():
    rng = np.random.default_rng(31)
    p, q = rng.normal(0, 1, 200_000), rng.normal(1, 1, 200_000)
    assert kl_divergence(p, q, bins=60) == pytest.approx(0.5, abs=0.1)  # mu^2 / 2


def test_kl_is_asymmetric():
    # KL(N(0,1) || N(0,1.5^2)) = ln 1.5 + 1/4.5 - 1/2 ~ 0.128; the reverse = -ln 1.5 + 1.125 - 1/2
    # ~ 0.220 (histograms slightly underestimate the reverse, whose mass sits in P's thin tails)
    rng = np.random.default_rng(32)
    p, q = rng.normal(0, 1, 200_000), rng.normal(0, 1.5, 200_000)
    pq, qp = kl_divergence(p, q, bins=60), kl_divergence(q, p, bins=60)
    assert pq == pytest.approx(np.log(1.5) + 1 / 4.5 - 0.5, abs=0.03)
    assert qp == pytest.approx(-np.log(1.5) + 1.125 - 0.5, abs=0.03)
    assert qp - pq > 0.05


def test_kl_nonnegative_finite_and_empty():
    rng = np.random.default_rng(33)
    for _ in range(50):
        p = rng.normal(rng.normal(), rng.uniform(0.1, 3), size=rng.integers(1, 300))
        q = rng.standard_t(3, size=rng.integers(1, 300))
        value = kl_divergence(p, q, bins=int(rng.integers(1, 40)))
        assert np.isfinite(value) and value >= 0
    disjoint = kl_divergence(np.zeros(100), np.ones(100) * 10)  # smoothing keeps it finite
    assert np.isfinite(disjoint) and disjoint > 1
    assert np.isnan(kl_divergence(np.array([]), np.array([1.0])))
    assert np.isnan(kl_divergence(np.array([1.0]), np.array([])))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda a: vendi_score(a, 1.0),
        lambda a: mmd2_rbf(a, np.zeros((5, 1)), 1.0),
        lambda a: mmd2_rbf(np.zeros((5, 1)), a, 1.0),
        lambda a: mmd_permutation_pvalue(a, np.zeros((5, 1)), 1.0, np.random.default_rng(0)),
        lambda a: median_bandwidth(a),
        lambda a: rbf_kernel(a, a, 1.0),
    ],
)
def test_non_2d_input_rejected(call):
    for bad in (np.zeros(5), np.zeros((2, 2, 2)), np.float64(1.0)):
        with pytest.raises(ValueError, match="must be a 2-D array") as info:
            call(bad)
        assert "\n" not in str(info.value)


def test_nan_input_rejected():
    x = np.zeros((5, 2))
    x[2, 1] = np.nan
    good = np.zeros((5, 2))
    calls = [
        lambda: vendi_score(x, 1.0),
        lambda: mmd2_rbf(good, x, 1.0),
        lambda: mmd_permutation_pvalue(x, good, 1.0, np.random.default_rng(0)),
        lambda: median_bandwidth(x),
        lambda: wasserstein_1d(x[:, 1], good[:, 1]),
        lambda: kl_divergence(good[:, 1], x[:, 1]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="NaN") as info:
            call()
        assert "\n" not in str(info.value)


def test_other_bad_arguments_rejected():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="bandwidth"):
        vendi_score(x, 0.0)
    with pytest.raises(ValueError, match="feature counts"):
        mmd2_rbf(x, np.zeros((5, 3)), 1.0)
    with pytest.raises(ValueError, match="1-D"):
        wasserstein_1d(x, x)
