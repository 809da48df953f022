"""Warm-state hygiene: the order-independence conformance check, reset and health hooks."""

from __future__ import annotations

import pytest
from probe_domain import ProbeDomain, ResettingStatefulDomain, StatefulDomain
from test_execution import probe, run, spec

from foundry.contract import Candidate
from foundry.execution.host import ChildHost
from foundry.execution.spec import VerifierSpec
from foundry.testing import DomainCheckError, domain_checks


def _check(domain, name):
    return dict(domain_checks(domain))[name]


def test_the_order_independence_check_fails_on_a_stateful_verifier():
    with pytest.raises(DomainCheckError, match="verdicts depend on order"):
        _check(StatefulDomain(), "check_ground_truth_order_independent")()


def test_the_order_independence_check_passes_once_reset_undoes_the_state():
    _check(ResettingStatefulDomain(), "check_ground_truth_order_independent")()
    _check(ProbeDomain(), "check_ground_truth_order_independent")()


def test_the_host_calls_reset_between_items():
    h = ChildHost(VerifierSpec("probe_domain:ResettingStatefulDomain"))
    try:
        results = h.verify_many([(i, Candidate({"probe": "ok", "i": i})) for i in range(4)])
    finally:
        h.close()
    assert [r.verdict.passed for r in results] == [True] * 4
    h = ChildHost(VerifierSpec("probe_domain:StatefulDomain"))
    try:
        results = h.verify_many([(i, Candidate({"probe": "ok", "i": i})) for i in range(3)])
    finally:
        h.close()
    assert [r.verdict.passed for r in results] == [True, False, False]  # the control


def test_options_round_trip_check():
    _check(ProbeDomain(), "check_options")()


def test_a_child_above_its_memory_threshold_is_recycled():
    h = ChildHost(spec(recycle_above_mb=1))  # any Python process is above 1 MB: every item
    try:
        results = run(h, probe("ok"), probe("ok"), probe("ok"))
    finally:
        h.close()
    assert all(r.verdict is not None for r in results)
    assert h.restarts == 3


def test_an_unhealthy_verifier_is_replaced_after_its_item():
    h = ChildHost(VerifierSpec("probe_domain:SickDomain"))
    try:
        results = h.verify_many([(i, Candidate({"probe": "ok", "i": i})) for i in range(3)])
    finally:
        h.close()
    assert all(r.verdict is not None and r.verdict.passed for r in results)
    assert h.restarts == 3  # health() said no after each item
