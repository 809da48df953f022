"""Bad plugins and bad ground truth: recorded failures with clear reasons, never acceptance."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from analytic_domain import AnalyticDomain, HostileDomain

from foundry.config import RunConfig
from foundry.contract import Candidate, GroundTruth, PluginError, Predictions, SetupError
from foundry.execution.executors import ChunkJob, InlineExecutor, run_chunk
from foundry.execution.resources import Resources
from foundry.execution.spec import VerifierSpec
from foundry.loop import Scheduler


def _cfg(tmp_path, **kw):
    base = dict(
        domain="analytic_domain:HostileDomain",
        run_dir=tmp_path / "run",
        executor="inline",
        isolation="process",
        progress=False,
        surrogate=False,
        resources={"timeout_s": 2.0},
        budget={"max_candidates": 2 * len(HostileDomain.modes)},
        batch_size=32,
        chunk_size=32,
    )
    base.update(kw)
    return RunConfig(**base)


def test_hostile_ground_truth_is_recorded_and_never_accepted(tmp_path):
    cfg = _cfg(tmp_path)
    stats = Scheduler(cfg).run()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    rows = db.execute(
        "SELECT payload, decision, failure_kind, error, attempts FROM examples ORDER BY seq"
    ).fetchall()
    assert len(rows) == 2 * len(HostileDomain.modes) and stats.pending == 0
    by_mode: dict[str, list] = {}
    for payload, decision, kind, error, attempts in rows:
        by_mode.setdefault(json.loads(payload)["mode"], []).append(
            (decision, kind, error, attempts)
        )
    for decision, kind, _, _ in by_mode["ok"]:
        assert decision in {"accepted", "rejected"} and kind is None
    expectations = {
        "raise": ("plugin_error", "verifier bug"),
        "simfail": ("simulation_failed", "did not converge"),
        "hang": ("timeout", "no verdict within 2 s"),
        "crash": ("crash", "exit code 3"),
        "garbage": ("plugin_error", "not a Verdict"),
        "nan": ("plugin_error", "not finite"),
        "missing": ("plugin_error", "lacks properties"),
        "bad_measurement": ("plugin_error", "measurement 'margin' is str"),
    }
    for mode, (kind, fragment) in expectations.items():
        for decision, got_kind, error, attempts in by_mode[mode]:
            assert decision == "failed", mode
            assert got_kind == kind, (mode, got_kind, error)
            assert fragment in error, (mode, error)
            # crashed / non-converged items are retried once; timeouts and plugin errors are not
            assert attempts == (2 if kind in {"crash", "simulation_failed"} else 1), mode
    assert stats.failed == 2 * len(expectations) and stats.accepted + stats.rejected == 2


def test_timeouts_do_not_stall_the_rest_of_the_chunk():
    dom = HostileDomain()
    cands = dom.generate(8, np.random.default_rng(0), {})
    verifier = VerifierSpec("analytic_domain:HostileDomain", resources=Resources(timeout_s=1.0))
    job = ChunkJob(verifier, tuple(enumerate(cands)))
    results = run_chunk(job)
    assert [r.key for r in results] == list(range(8))
    ok = [r for r in results if r.verdict is not None]
    assert len(ok) == 1 and ok[0].key == 0
    assert sum(r.walltime_s for r in results) < 8  # one timeout, not eight


class FlakyGenerator(AnalyticDomain):
    calls = 0

    def generate(self, n, rng, steering):
        type(self).calls += 1
        if type(self).calls % 2:
            raise RuntimeError("generator glitch")
        return super().generate(n, rng, steering)


def test_a_generator_that_sometimes_raises_is_tolerated_and_logged(tmp_path):
    cfg = _cfg(tmp_path, domain="analytic", isolation="none", budget={"max_candidates": 64})
    stats = Scheduler(cfg, domain=FlakyGenerator()).run()
    assert stats.generated == 64
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    events = db.execute("SELECT message FROM events WHERE kind='generate'").fetchall()
    assert events and "generator glitch" in events[0][0]


class BrokenGenerator(AnalyticDomain):
    def generate(self, n, rng, steering):
        return ["not a candidate"] * n


def test_a_generator_that_keeps_failing_stops_the_run_with_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, domain="analytic", isolation="none", generate_retries=2)
    with pytest.raises(PluginError, match="generator failed 3 times"):
        Scheduler(cfg, domain=BrokenGenerator()).run()


class BadCheck(AnalyticDomain):
    def check(self, candidate):
        if candidate.payload["x"][0] > 0:
            raise ValueError("check exploded")
        return 42 if candidate.payload["x"][1] > 0 else None


def test_rule_check_errors_become_invalid_rows(tmp_path):
    cfg = _cfg(tmp_path, domain="analytic", isolation="none", budget={"max_candidates": 200})
    stats = Scheduler(cfg, domain=BadCheck()).run()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    reasons = [
        r[0] for r in db.execute("SELECT rule_reason FROM examples WHERE decision='invalid'")
    ]
    assert stats.invalid == len(reasons) > 100
    assert any("check exploded" in r for r in reasons)
    assert any("returned 42" in r for r in reasons)
    assert (
        db.execute(
            "SELECT COUNT(*) FROM examples WHERE decision='accepted' AND rule_ok=0"
        ).fetchone()[0]
        == 0
    )


class BadProvenance(AnalyticDomain):
    """A generator that fills in provenance wrongly for three of every four candidates."""

    def generate(self, n, rng, steering):
        out = super().generate(n, rng, steering)
        for i, cand in enumerate(out):
            if i % 4 == 1:
                cand.generation = "2"
            elif i % 4 == 2:
                cand.generation = -1
            elif i % 4 == 3:
                cand.parent_ids = (7, object())
        return out


def test_malformed_provenance_makes_invalid_rows_not_a_crash(tmp_path):
    cfg = _cfg(tmp_path, domain="analytic", isolation="none", budget={"max_candidates": 200})
    stats = Scheduler(cfg, domain=BadProvenance()).run()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    rows = db.execute(
        "SELECT seq, decision, rule_reason, generation, parent_ids FROM examples ORDER BY seq"
    ).fetchall()
    assert stats.generated == len(rows) == 200 and stats.invalid == 150
    for i, (_, decision, reason, generation, parents) in enumerate(rows):
        if i % 4 == 0:
            assert decision != "invalid" and (generation, parents) == (0, "[]")
        elif i % 4 == 1:
            assert reason == "generation must be an integer, not str" and generation == -1
        elif i % 4 == 2:
            assert reason == "generation must be >= 0, got -1"
        else:
            assert reason == "parent_ids must be a tuple of content ids (str)"
            assert "object object" in json.loads(parents)[0]
    db.close()


class GarbageSurrogate:
    def fit(self, candidates, verdicts):
        pass

    def predict(self, candidates):
        return Predictions(len(candidates), p_pass=np.full(3, 0.99))  # wrong shape


class GarbageSurrogateDomain(AnalyticDomain):
    def surrogate(self):
        return GarbageSurrogate()


def test_a_surrogate_returning_garbage_decides_nothing(tmp_path):
    cfg = _cfg(
        tmp_path,
        domain="analytic",
        isolation="none",
        surrogate=True,
        min_train_labels=50,
        budget={"max_candidates": 600},
        batch_size=100,
    )
    stats = Scheduler(cfg, domain=GarbageSurrogateDomain()).run()
    assert stats.surrogate_accepted == stats.surrogate_rejected == 0
    assert stats.gt_calls == 600
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM events WHERE kind='surrogate'").fetchone()[0] > 0
    routes = {r[0] for r in db.execute("SELECT DISTINCT route FROM examples")}
    assert routes <= {"no_surrogate", "surrogate_error"}


class MissingTool(GroundTruth):
    def prepare(self, candidate):
        return None

    def execute(self, job, workdir):
        raise SetupError("simulator 'nosuchtool' not found on PATH")

    def parse(self, raw, candidate):
        raise AssertionError("unreachable")


class MissingToolDomain(AnalyticDomain):
    def ground_truth(self, fidelity=None):
        return MissingTool()


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_missing_simulator_stops_the_run_instead_of_rejecting(tmp_path, isolation):
    cfg = _cfg(tmp_path, domain="analytic", isolation=isolation)
    with pytest.raises(SetupError, match="nosuchtool"):
        Scheduler(cfg, domain=MissingToolDomain()).run()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM examples WHERE decision='rejected'").fetchone()[0] == 0


def test_a_domain_the_worker_cannot_import_is_a_setup_error(tmp_path):
    ex = InlineExecutor()
    ex.submit(ChunkJob(VerifierSpec("no_such_module:Domain"), ((1, Candidate({"x": [0, 0]})),)))
    (outcome,) = ex.collect(0)
    assert isinstance(outcome.error, SetupError)
    ex.close()
