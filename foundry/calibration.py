"""Certified release thresholds from random audits.

The surrogate turns every candidate into two risks in [0, 1]:

* ``accept_risk`` - its own estimate of the chance that releasing the item on its word is wrong
  (fails the ground truth, or a property lies outside tolerance);
* ``reject_risk`` - its estimate of the chance that rejecting the item is wrong (it would pass).

An item is decided by the surrogate when its risk is at most a threshold ``lam``. Validity does
not rest on those estimates being right: it rests on audits. A uniformly random sample of the
items the surrogate scored goes to the ground truth regardless of score; for each threshold
``lam`` of a grid fixed in advance, the audited items with ``risk <= lam`` are a uniform sample of
the items the surrogate would decide, and their error count is binomial given their number.

The threshold is chosen by Learn-then-Test with fixed-sequence testing: walking the grid from
the strictest threshold up, test H(lam): "error rate among items with risk <= lam exceeds alpha"
with the exact binomial test (equivalently: Clopper-Pearson upper bound <= alpha) and stop at the
first threshold that cannot be certified. The walk starts at the first threshold with enough
audits that a certificate is possible at all - a choice that depends on the audits' scores, not
on their labels. This controls the family-wise error at ``delta``.

A run recalibrates many times (as audits accumulate, and for every new surrogate version). The
j-th calibration of a run spends ``delta * 6 / (pi^2 j^2)``, which sums to at most ``delta``:
with probability at least ``1 - delta`` every threshold ever put in force in the run has true
error rate at most ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv, erf

from foundry.contract import Predictions, PropertySpec, Verdict

#: Ascending risk thresholds scanned by every calibration. Fixed before any data is seen.
RISK_GRID: np.ndarray = np.unique(
    np.concatenate([np.geomspace(1e-4, 0.05, 40), np.linspace(0.05, 0.5, 31)])
)


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided (1 - delta) Clopper-Pearson upper confidence bound of a binomial rate."""
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    # the Beta(errors + 1, n - errors) quantile; betaincinv is that ppf without scipy.stats'
    # per-call argument machinery (~50x faster; calibration evaluates it thousands of times)
    return float(betaincinv(errors + 1, n - errors, 1.0 - delta))


def min_audits(alpha: float, delta: float) -> int:
    """Fewest audits with which zero errors certifies ``alpha`` at confidence ``1 - delta``."""
    return math.ceil(math.log(delta) / math.log1p(-alpha))


def spend_delta(delta: float, index: int) -> float:
    """Confidence budget of the ``index``-th calibration of a run (1-based); sums to <= delta."""
    if index < 1:
        raise ValueError("calibration index starts at 1")
    return delta * 6.0 / (math.pi**2 * index**2)


@dataclass(frozen=True)
class RouteCertificate:
    """The outcome of one threshold scan for one route (accept or reject).

    ``threshold`` is ``-inf`` when nothing could be certified (the surrogate decides nothing on
    this route). ``upper_bound`` is the Clopper-Pearson bound at the chosen threshold: the error
    bound in force for every item decided under this certificate.
    """

    route: str
    threshold: float
    n_audits: int
    n_errors: int
    upper_bound: float
    alpha: float
    delta: float

    @property
    def certified(self) -> bool:
        return math.isfinite(self.threshold)


def certify(
    risks: np.ndarray,
    errors: np.ndarray,
    *,
    alpha: float,
    delta: float,
    route: str = "accept",
    grid: np.ndarray = RISK_GRID,
) -> RouteCertificate:
    """Largest grid threshold reached by fixed-sequence testing whose bound is <= alpha.

    ``risks``: the deciding surrogate's risk for each audited item; ``errors``: whether the
    decision on that route would have been wrong (bool). Items with non-finite risk are never
    decided and are ignored.
    """
    if not 0 < alpha < 1 or not 0 < delta < 1:
        raise ValueError("alpha and delta must lie in (0, 1)")
    risks = np.asarray(risks, dtype=float)
    errors = np.asarray(errors, dtype=bool)
    if risks.shape != errors.shape:
        raise ValueError("risks and errors differ in shape")
    finite = np.isfinite(risks)
    risks, errors = risks[finite], errors[finite]
    order = np.argsort(risks, kind="stable")
    sorted_risks = risks[order]
    cum_errors = np.concatenate([[0], np.cumsum(errors[order])])
    n_needed = min_audits(alpha, delta)
    best = RouteCertificate(route, -math.inf, 0, 0, 1.0, alpha, delta)
    started = False
    for lam in grid:
        n = int(np.searchsorted(sorted_risks, lam, side="right"))
        if not started:
            if n < n_needed:
                continue
            started = True
        k = int(cum_errors[n])
        bound = clopper_pearson_upper(k, n, delta)
        if bound > alpha:
            break
        best = RouteCertificate(route, float(lam), n, k, bound, alpha, delta)
    return best


def first_test(
    risks: np.ndarray, *, alpha: float, delta: float, grid: np.ndarray = RISK_GRID
) -> tuple[int, int] | None:
    """What the first test of :func:`certify` will need, decided from the risks alone.

    Returns ``(n, k_max)``: the scan's first tested set is the ``n`` audits of lowest risk, and
    :func:`certify` certifies something iff at most ``k_max`` of them are errors (``k_max`` is
    -1 when even zero errors would not do). ``None`` when no grid threshold has enough audits.
    Label-free: the scheduler uses it to see whether a calibration can succeed before spending
    confidence on one.
    """
    risks = np.asarray(risks, dtype=float)
    sorted_risks = np.sort(risks[np.isfinite(risks)])
    counts = np.searchsorted(sorted_risks, grid, side="right")
    reachable = np.nonzero(counts >= min_audits(alpha, delta))[0]
    if len(reachable) == 0:
        return None
    n = int(counts[reachable[0]])
    lo, hi = -1, n  # invariant: bound(lo) <= alpha (or lo == -1), bound(hi) > alpha
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if clopper_pearson_upper(mid, n, delta) <= alpha:
            lo = mid
        else:
            hi = mid
    return n, lo


# -- from predictions to risks, from verdicts to errors ---------------------------------------


def _within_tolerance_probability(
    values: np.ndarray, sigmas: np.ndarray, spec: PropertySpec
) -> np.ndarray:
    """P(|error| <= tol) for a Gaussian predictive distribution N(value, sigma^2)."""
    tol = spec.tolerance(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = tol / (np.sqrt(2.0) * np.asarray(sigmas, dtype=float))
    prob = erf(z)
    prob = np.where(np.asarray(sigmas) <= 0, 1.0, prob)
    return np.where(np.isfinite(prob), prob, np.nan)


def risks_from_predictions(
    pred: Predictions, specs: Sequence[PropertySpec], has_pass_fail: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(accept_risk, reject_risk) per item; NaN inputs become +inf (never decided).

    ``reject_risk`` is +inf for domains without pass/fail: they have no reject route.
    """
    ok = np.ones(pred.n)
    for spec in specs:
        ok = ok * _within_tolerance_probability(
            pred.values[spec.name], pred.sigmas[spec.name], spec
        )
    if has_pass_fail:
        p_pass = np.clip(np.asarray(pred.p_pass, dtype=float), 0.0, 1.0)
        accept = 1.0 - p_pass * ok
        reject = p_pass.copy()
    else:
        accept = 1.0 - ok
        reject = np.full(pred.n, np.inf)
    accept = np.where(np.isfinite(accept), accept, np.inf)
    reject = np.where(np.isfinite(reject), reject, np.inf)
    return accept, reject


def accept_error(
    verdict: Verdict | None,
    predicted: dict[str, float],
    specs: Sequence[PropertySpec],
) -> bool:
    """Would releasing this item on the surrogate's word have been wrong?

    A ground-truth failure (no verdict) counts as an error: the surrogate would have released an
    item the truth could not confirm. Conservative on purpose.
    """
    if verdict is None or not verdict.passed:
        return True
    for spec in specs:
        true = verdict.properties.get(spec.name)
        guess = predicted.get(spec.name)
        if true is None or guess is None or not bool(spec.within(guess, true)):
            return True
    return False


def reject_error(verdict: Verdict | None) -> bool:
    """Would rejecting this item on the surrogate's word have been wrong? (it actually passes)"""
    return verdict is not None and bool(verdict.passed)
