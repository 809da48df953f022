"""The run-level guarantee, measured: over many seeded runs of the analytic domain, the error
rate among surrogate-released examples (checked against the known truth) exceeds alpha in no
more than about delta of the runs.

Each run retrains, recalibrates and promotes surrogate versions as a real run does. The
threshold for the count of bad runs is the binomial quantile at a false-alarm rate of 1e-3 if
the true per-run exceedance probability were exactly delta. A control with the uncalibrated
fixed-band policy on the same seeds must fail often - proof that the test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from analytic_domain import released_wrong
from scipy import stats

from foundry.config import RunConfig
from foundry.loop import Scheduler

ALPHA, DELTA = 0.05, 0.1
FALSE_ALARM = 1e-3


def released_error(tmp_path, seed: int, **kw) -> tuple[float, int]:
    cfg = RunConfig(
        domain="analytic_domain:AnalyticDomain",
        run_dir=tmp_path / f"run{seed}",
        executor="inline",
        isolation="none",
        alpha=ALPHA,
        delta=DELTA,
        seed=seed,
        progress=False,
        min_train_labels=200,
        retrain_every=800,
        challenger_audits=600,
        budget={"max_candidates": 6000},
        **kw,
    )
    Scheduler(cfg).run()
    wrong = released_wrong(cfg.run_dir)
    return (float(wrong.mean()), len(wrong)) if len(wrong) else (0.0, 0)


def _sweep(tmp_path, seeds, **kw):
    return [released_error(tmp_path, s, **kw) for s in seeds]


@pytest.mark.slow
def test_released_error_exceeds_alpha_in_at_most_delta_of_runs(tmp_path):
    seeds = range(120)
    results = _sweep(tmp_path, seeds)
    bad = sum(err > ALPHA for err, n in results if n)
    releasing = sum(1 for _, n in results if n >= 200)
    limit = stats.binom.ppf(1 - FALSE_ALARM, len(seeds), DELTA)
    print(
        f"runs with released error > alpha: {bad}/{len(seeds)} (limit {limit:.0f}); "
        f"runs releasing >= 200: {releasing}; mean released "
        f"{np.mean([n for _, n in results]):.0f}"
    )
    assert bad <= limit
    assert releasing >= 0.8 * len(seeds), "the guarantee must not come from releasing nothing"


@pytest.mark.slow
def test_the_uncalibrated_control_fails_the_same_check(tmp_path):
    seeds = range(40)
    results = _sweep(tmp_path, seeds, policy="fixed_band", fixed_accept_risk=0.15)
    bad = sum(err > ALPHA for err, n in results if n)
    limit = stats.binom.ppf(1 - FALSE_ALARM, len(seeds), DELTA)
    assert bad > limit


def test_a_few_seeded_runs_stay_within_alpha(tmp_path):
    """Fast smoke version of the sweep for the default suite."""
    results = _sweep(tmp_path, range(6))
    assert all(n > 0 for _, n in results)
    assert sum(err > ALPHA for err, _ in results) <= 2


@pytest.mark.slow
def test_the_cost_levers_keep_the_guarantee(tmp_path):
    """Labelling only a share of uncertain items (riskier first) and relaxing the audit rate
    once a certificate holds enough audits: neither touches what certificates rest on, so the
    same check holds (80 runs; limit at a false-alarm rate of 1e-3)."""
    seeds = range(1000, 1080)
    results = _sweep(
        tmp_path, seeds, uncertain_share=0.3, relaxed_audit_rate=0.03, relax_after_audits=500
    )
    bad = sum(err > ALPHA for err, n in results if n)
    limit = stats.binom.ppf(1 - FALSE_ALARM, len(seeds), DELTA)
    releasing = sum(1 for _, n in results if n >= 200)
    print(f"cost levers: runs with released error > alpha: {bad}/{len(seeds)} (limit {limit:.0f})")
    assert bad <= limit
    assert releasing >= 0.8 * len(seeds)
