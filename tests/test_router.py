"""The pure router on given arrays: every route, exactly, with no ledger and no scheduler."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from foundry.loop.book import Thresholds
from foundry.loop.router import route_batch

NONE = -math.inf  # the threshold of a route on which nothing was certified


def certificate(accept: float, reject: float | None, n: int) -> Thresholds:
    """The same certificate for every one of ``n`` items (one stratum)."""
    reject = NONE if reject is None else reject
    certified = accept > NONE or reject > NONE
    return Thresholds(
        accept=np.full(n, accept),
        reject=np.full(n, reject),
        certified=np.full(n, certified),
        calibration=np.full(n, 1 if certified else -1),
        accept_bound=np.full(n, 0.04),
        reject_bound=np.full(n, 0.04),
        alpha=0.05,
        reject_alpha=0.05,
    )


def as_lists(routes):
    return routes.route.tolist(), routes.decision.tolist(), routes.audit.tolist()


def test_without_a_surrogate_every_item_is_an_audit_for_the_ground_truth():
    routes = route_batch(np.array([0.1, 0.9, 0.5]), 0.1, None, has_surrogate=False, scored=False)
    assert as_lists(routes) == (["no_surrogate"] * 3, ["pending"] * 3, [True] * 3)
    assert routes.to_truth.tolist() == [True] * 3


def test_a_surrogate_that_could_not_score_sends_items_to_the_ground_truth_unaudited():
    routes = route_batch(np.array([0.1, 0.9]), 0.1, certificate(0.1, 0.1, 2), scored=False)
    assert as_lists(routes) == (["surrogate_error"] * 2, ["pending"] * 2, [False] * 2)


def test_until_a_certificate_is_in_force_every_scored_item_is_an_audit():
    risks = np.array([0.0, 0.0]), np.array([0.0, 0.0])  # would be decided if certified
    expected = (["uncalibrated"] * 2, ["pending"] * 2, [True] * 2)
    draws = np.array([0.9, 0.9])
    assert as_lists(route_batch(draws, 0.1, None, *risks)) == expected
    uncertified = certificate(NONE, NONE, 2)
    assert not uncertified.certified.any()
    assert as_lists(route_batch(draws, 0.1, uncertified, *risks)) == expected
    # a certified champion that failed to score (only the challenger did) decides nothing
    assert as_lists(route_batch(draws, 0.1, certificate(0.1, 0.1, 2), None, None)) == expected


def test_certified_routes_audit_first_then_accept_then_reject_else_uncertain():
    draws = np.array([0.1, 0.9, 0.9, 0.9, 0.25, 0.9, 0.9, 0.9])
    accept = np.array([0.05, 0.05, 0.5, 0.5, 0.01, 0.15, 0.05, 0.1])
    reject = np.array([0.9, 0.9, 0.1, 0.5, 0.9, 0.2, 0.05, 0.9])
    routes = route_batch(draws, 0.25, certificate(0.1, 0.2, 8), accept, reject)
    route, decision, audit = as_lists(routes)
    assert route == [
        "audit",  # drawn before looking at the score: a low risk does not escape the audit
        "surrogate_accept",
        "surrogate_reject",
        "uncertain",
        "surrogate_accept",  # draw == audit_rate is not an audit
        "surrogate_reject",  # reject_risk == threshold is decided
        "surrogate_accept",  # both risks low: accept is tried first
        "surrogate_accept",  # accept_risk == threshold is decided
    ]
    assert decision == [
        "pending",
        "accepted",
        "rejected",
        "pending",
        "accepted",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert audit == [True, False, False, False, False, False, False, False]
    assert routes.to_truth.tolist() == [True, False, False, True, False, False, False, False]


def test_a_certificate_without_a_reject_route_never_rejects():
    draws = np.array([0.9, 0.9, 0.0])
    accept, reject = np.array([0.5, 0.01, 0.01]), np.array([0.0, 0.0, 0.0])
    routes = route_batch(draws, 0.1, certificate(0.1, None, 3), accept, reject)
    assert as_lists(routes) == (
        ["uncertain", "surrogate_accept", "audit"],
        ["pending", "accepted", "pending"],
        [False, False, True],
    )


def test_a_certificate_for_rejection_only_decides_rejections():
    draws = np.array([0.9, 0.9, 0.9])
    accept, reject = np.array([0.0, 0.0, 0.0]), np.array([0.01, 0.5, 0.02])
    routes = route_batch(draws, 0.1, certificate(NONE, 0.02, 3), accept, reject)
    assert as_lists(routes) == (
        ["surrogate_reject", "uncertain", "surrogate_reject"],
        ["rejected", "pending", "rejected"],
        [False, False, False],
    )


def test_no_audits_at_audit_rate_zero_and_nan_risks_are_never_decided():
    draws = np.array([0.0, 0.0, 0.0])
    accept, reject = np.array([np.nan, 0.01, np.nan]), np.array([np.nan, 0.9, 0.01])
    routes = route_batch(draws, 0.0, certificate(0.1, 0.1, 3), accept, reject)
    assert as_lists(routes) == (
        ["uncertain", "surrogate_accept", "surrogate_reject"],
        ["pending", "accepted", "rejected"],
        [False, False, False],
    )


def test_an_empty_batch_routes_to_empty_arrays():
    routes = route_batch(np.zeros(0), 0.1, certificate(0.1, 0.1, 0), np.zeros(0), np.zeros(0))
    assert as_lists(routes) == ([], [], [])


def test_each_item_is_routed_by_the_certificate_of_its_own_slice():
    """One batch, two slices: slice A is certified (accept <= 0.1), slice B is not; B's items
    are all audits whatever their risk, A's follow the usual order."""
    a, b = certificate(0.1, 0.05, 4), certificate(NONE, NONE, 4)
    in_a = np.array([True, True, False, False])
    mixed = Thresholds(
        accept=np.where(in_a, a.accept, b.accept),
        reject=np.where(in_a, a.reject, b.reject),
        certified=in_a,
        calibration=np.where(in_a, 1, -1),
        accept_bound=a.accept_bound,
        reject_bound=a.reject_bound,
        alpha=0.05,
        reject_alpha=0.05,
    )
    draws = np.array([0.9, 0.9, 0.9, 0.9])
    accept, reject = np.array([0.01, 0.5, 0.01, 0.5]), np.array([0.9, 0.01, 0.9, 0.01])
    routes = route_batch(draws, 0.1, mixed, accept, reject)
    assert as_lists(routes) == (
        ["surrogate_accept", "surrogate_reject", "uncalibrated", "uncalibrated"],
        ["accepted", "rejected", "pending", "pending"],
        [False, False, True, True],
    )


def test_a_stratum_without_an_accept_certificate_audits_at_the_uncertified_rate():
    """Reject-only certificate: the items it does not reject go to the ground truth anyway,
    so they are audited at the uncertified rate - drawn before the score, like every audit."""
    draws = np.array([0.2, 0.6, 0.2, 0.6])
    accept, reject = np.array([0.0, 0.0, 0.5, 0.5]), np.array([0.01, 0.01, 0.9, 0.9])
    reject_only = certificate(NONE, 0.02, 4)
    routes = route_batch(draws, 0.1, reject_only, accept, reject, uncertified_audit_rate=0.5)
    assert as_lists(routes) == (
        ["audit", "surrogate_reject", "audit", "uncertain"],
        ["pending", "rejected", "pending", "pending"],
        [True, False, True, False],
    )
    both = certificate(0.1, 0.02, 4)  # the accept route certified: the normal audit rate
    routes = route_batch(draws, 0.1, both, accept, reject, uncertified_audit_rate=0.5)
    assert routes.audit.tolist() == [False, False, False, False]


def test_uncertain_share_defers_the_rest_riskier_first_and_never_touches_audits():
    rng = np.random.default_rng(0)
    n = 20_000
    draws = rng.random(n)
    accept = rng.uniform(0.2, 0.9, n)  # every non-audit is uncertain (threshold 0.1)
    full = route_batch(draws, 0.05, certificate(0.1, None, n), accept, None)
    half = route_batch(draws, 0.05, certificate(0.1, None, n), accept, None, uncertain_share=0.3)
    # audits are the same items whatever the budget: the certificate's sample is untouched
    assert np.array_equal(full.audit, half.audit)
    assert np.array_equal(full.route == "audit", half.route == "audit")
    uncertain = full.route == "uncertain"
    deferred = half.route == "deferred"
    assert not (deferred & ~uncertain).any()
    assert set(half.decision[deferred].tolist()) == {"deferred"}
    assert not half.to_truth[deferred].any()
    sent = uncertain & ~deferred
    share = sent.sum() / uncertain.sum()
    assert 0.27 < share < 0.31  # the expected share (a little less where p is capped at 1)
    # riskier items are labelled more often: the sent ones' mean risk is well above the rest's
    assert accept[sent].mean() > accept[deferred].mean() + 0.1
    # reproducible: the same draws give the same choice
    again = route_batch(draws, 0.05, certificate(0.1, None, n), accept, None, uncertain_share=0.3)
    assert np.array_equal(again.route, half.route)


def test_uncertain_share_zero_defers_every_uncertain_item_and_one_defers_none():
    draws = np.array([0.01, 0.5, 0.9, 0.99])
    accept = np.array([0.5, 0.5, 0.05, 0.7])
    none = route_batch(draws, 0.1, certificate(0.1, None, 4), accept, None, uncertain_share=0.0)
    assert none.route.tolist() == ["audit", "deferred", "surrogate_accept", "deferred"]
    every = route_batch(draws, 0.1, certificate(0.1, None, 4), accept, None, uncertain_share=1.0)
    assert every.route.tolist() == ["audit", "uncertain", "surrogate_accept", "uncertain"]


def test_a_relaxed_stratum_audits_at_the_relaxed_rate_decided_before_the_score():
    n = 40_000
    draws = np.random.default_rng(1).random(n)
    accept = np.full(n, 0.01)
    relaxed = np.arange(n) % 2 == 0  # half the items' stratum has relaxed
    cert = dataclasses.replace(certificate(0.1, None, n), relaxed=relaxed)
    routes = route_batch(draws, 0.1, cert, accept, None, relaxed_audit_rate=0.02)
    relaxed_share = routes.audit[relaxed].mean()
    other_share = routes.audit[~relaxed].mean()
    assert 0.017 < relaxed_share < 0.023 and 0.095 < other_share < 0.105
    # a relaxed audit is one the full rate would have drawn too (the draw comes first)
    full = route_batch(draws, 0.1, certificate(0.1, None, n), accept, None)
    assert not (routes.audit & ~full.audit).any()
    # an eager stratum (a route still uncertified) is never relaxed
    cert = dataclasses.replace(cert, eager=np.ones(n, dtype=bool))
    eager = route_batch(draws, 0.1, cert, accept, None, relaxed_audit_rate=0.02,
                        uncertified_audit_rate=1.0)  # fmt: skip
    assert eager.audit.all()
