"""The statistics of certified release: bounds, the threshold scan, and its error guarantee."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from foundry.calibration import (
    RISK_GRID,
    accept_error,
    certify,
    clopper_pearson_upper,
    first_test,
    min_audits,
    reject_error,
    risks_from_predictions,
    spend_delta,
)
from foundry.contract import Predictions, PropertySpec, Verdict


def test_clopper_pearson_zero_errors_closed_form():
    # with k = 0 the bound solves (1 - p)^n = delta
    for n in (10, 100, 1000):
        assert clopper_pearson_upper(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)


def test_clopper_pearson_is_dual_to_the_binomial_test():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(5, 2000))
        k = int(rng.integers(0, n))
        delta = float(rng.uniform(0.01, 0.2))
        bound = clopper_pearson_upper(k, n, delta)
        # P(Binom(n, bound) <= k) == delta at the bound itself
        assert stats.binom.cdf(k, n, bound) == pytest.approx(delta, rel=1e-6, abs=1e-9)


def test_edge_cases_of_the_bound():
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0
    assert clopper_pearson_upper(7, 7, 0.05) == 1.0


def test_min_audits_is_the_smallest_certifying_count():
    for alpha, delta in [(0.02, 0.05), (0.05, 0.1), (0.01, 0.01)]:
        n = min_audits(alpha, delta)
        assert clopper_pearson_upper(0, n, delta) <= alpha
        assert clopper_pearson_upper(0, n - 1, delta) > alpha
    assert min_audits(0.02, 0.05) == 149


def test_delta_spending_sums_below_delta():
    total = sum(spend_delta(0.05, j) for j in range(1, 100_000))
    assert total < 0.05
    assert total > 0.0499
    with pytest.raises(ValueError):
        spend_delta(0.05, 0)


def test_certify_releases_the_clean_region_and_stops_at_the_dirty_one():
    # 1000 audits: risk < 0.01 are always right, risk >= 0.01 are wrong half the time
    rng = np.random.default_rng(1)
    risks = rng.uniform(0, 0.02, 1000)
    errors = (risks >= 0.01) & (rng.random(1000) < 0.5)
    cert = certify(risks, errors, alpha=0.05, delta=0.05)
    assert cert.certified
    assert cert.upper_bound <= 0.05
    assert 0.0095 <= cert.threshold < 0.0115
    assert cert.threshold in RISK_GRID
    assert cert.n_audits == int((risks <= cert.threshold).sum())


def test_certify_refuses_without_enough_audits_or_with_errors_everywhere():
    assert not certify(np.zeros(50), np.zeros(50, bool), alpha=0.02, delta=0.05).certified
    errors = np.ones(5000, bool)
    cert = certify(np.zeros(5000), errors, alpha=0.02, delta=0.05)
    assert not cert.certified and cert.threshold == -math.inf


def test_certify_ignores_items_without_a_finite_risk():
    risks = np.concatenate([np.zeros(300), np.full(300, np.inf)])
    errors = np.concatenate([np.zeros(300, bool), np.ones(300, bool)])
    cert = certify(risks, errors, alpha=0.05, delta=0.05)
    assert cert.certified and cert.n_audits == 300 and cert.n_errors == 0


def test_first_test_predicts_from_the_risks_alone_whether_certify_succeeds():
    """The label-free pre-check: certify() certifies iff the n lowest-risk audits hold at most
    k_max errors. Checked against certify() itself on 400 random audit sets."""
    rng = np.random.default_rng(7)
    assert first_test(np.zeros(50), alpha=0.02, delta=0.05) is None  # too few audits anywhere
    for _ in range(400):
        n_audits = int(rng.integers(100, 1500))
        risks = rng.uniform(0, rng.choice([0.01, 0.1, 0.5]), n_audits)
        risks[rng.random(n_audits) < 0.05] = np.inf
        errors = rng.random(n_audits) < rng.uniform(0, 3) * risks
        alpha, delta = float(rng.choice([0.02, 0.05])), float(rng.choice([0.01, 0.05]))
        test = first_test(risks, alpha=alpha, delta=delta)
        cert = certify(risks, errors, alpha=alpha, delta=delta)
        if test is None:
            assert not cert.certified
            continue
        n, k_max = test
        lowest = np.argsort(np.where(np.isfinite(risks), risks, np.inf), kind="stable")[:n]
        assert cert.certified == (int(errors[lowest].sum()) <= k_max)
        if k_max >= 0:  # k_max is the largest error count that still certifies at n
            assert clopper_pearson_upper(k_max, n, delta) <= alpha
        assert clopper_pearson_upper(k_max + 1, n, delta) > alpha


@pytest.mark.parametrize("alpha,delta", [(0.05, 0.1), (0.02, 0.05)])
def test_certified_threshold_has_true_risk_below_alpha_in_all_but_delta_of_trials(alpha, delta):
    """The guarantee itself, on a model where the true conditional risk is known exactly.

    Items have risk score r ~ U(0, 1) and are wrong with probability 0.6 r^2 (the surrogate's
    risk ranks items but is miscalibrated). The true error rate among items with r <= lam is
    0.2 lam^2. Over 2000 seeded calibrations the fraction with true risk > alpha must stay
    below delta; the check allows binomial noise at a false-alarm rate of 1e-3.
    """
    rng = np.random.default_rng(12345)
    trials, n = 2000, 3000
    violations = certified = 0
    for _ in range(trials):
        r = rng.random(n)
        wrong = rng.random(n) < 0.6 * r**2
        cert = certify(r, wrong, alpha=alpha, delta=delta)
        if cert.certified:
            certified += 1
            if 0.2 * min(cert.threshold, 1.0) ** 2 > alpha:
                violations += 1
    limit = stats.binom.ppf(1 - 1e-3, trials, delta)
    assert violations <= limit
    assert certified > 0.8 * trials  # the test is not vacuous: calibration does release


def test_risks_from_predictions_combine_pass_and_tolerance():
    spec = PropertySpec("y", "eV", abs_tol=0.1)
    pred = Predictions(
        3,
        p_pass=np.array([0.99, 0.5, np.nan]),
        values={"y": np.array([1.0, 1.0, 1.0])},
        sigmas={"y": np.array([0.01, 0.1, 0.01])},
    )
    accept, reject = risks_from_predictions(pred, [spec], has_pass_fail=True)
    # item 0: P(within tol) = erf(0.1 / (0.01 sqrt 2)) ~ 1
    assert accept[0] == pytest.approx(0.01, abs=1e-6)
    # item 1: P(within tol) = erf(1 / sqrt 2) = 0.6827
    assert accept[1] == pytest.approx(1 - 0.5 * 0.682689, abs=1e-5)
    assert reject[1] == pytest.approx(0.5)
    assert math.isinf(accept[2]) and math.isinf(reject[2])

    no_pf = Predictions(1, None, {"y": np.array([0.0])}, {"y": np.array([0.05])})
    accept, reject = risks_from_predictions(no_pf, [spec], has_pass_fail=False)
    assert accept[0] == pytest.approx(1 - 0.9545, abs=1e-3)
    assert math.isinf(reject[0])


def test_errors_are_judged_against_the_ground_truth():
    spec = PropertySpec("y", "1", abs_tol=0.1, rel_tol=0.0)
    good = Verdict(True, {"y": 1.0})
    assert not accept_error(good, {"y": 1.05}, [spec])
    assert accept_error(good, {"y": 1.2}, [spec])
    assert accept_error(Verdict(False, {"y": 1.0}), {"y": 1.0}, [spec])
    assert accept_error(None, {"y": 1.0}, [spec])  # a failed simulation never counts as right
    assert reject_error(good) and not reject_error(Verdict(False)) and not reject_error(None)
