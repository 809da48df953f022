"""The execution plane inside real runs: slow verifiers, threads, options, guarded checks."""

from __future__ import annotations

import json
import sqlite3

import pytest
from probe_domain import ProbeDomain

from foundry.config import RunConfig
from foundry.contract import Candidate
from foundry.execution.executors import DaskExecutor
from foundry.loop import Scheduler
from foundry.options import OptionsError


def _cfg(tmp_path, **kw) -> RunConfig:
    base = dict(
        domain="probe_domain:ProbeDomain",
        run_dir=tmp_path / "run",
        executor="inline",
        progress=False,
        surrogate=False,
        budget={"max_candidates": None},
    )
    base.update(kw)
    return RunConfig(**base)


def _stream(*payloads):
    return iter([[Candidate(dict(p)) for p in payloads]])


def _rows(cfg):
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM examples ORDER BY seq").fetchall()
    db.close()
    return rows


class RecordingDask(DaskExecutor):
    """The real DaskExecutor, noting the size of every task it is given."""

    sizes: list[int]

    def submit(self, job) -> None:
        self.sizes.append(len(job.items))
        super().submit(job)


@pytest.mark.slow
def test_a_slow_verifier_runs_one_item_a_task_with_its_own_timeout(tmp_path):
    cfg = _cfg(
        tmp_path,
        executor="local",
        domain_options={"expected_cost_s": 1.0, "timeout_s": 2.5},
        chunk_target_s=0.05,
    )
    executor = RecordingDask(n_workers=2)
    executor.sizes = []
    payloads = [{"probe": "sleep", "arg": 1.0, "i": i} for i in range(5)]
    payloads.append({"probe": "sleep", "arg": 30.0})
    try:
        stats = Scheduler(cfg, executor=executor, candidates=_stream(*payloads)).run()
    finally:
        executor.close()
    assert executor.sizes == [1] * 6
    rows = _rows(cfg)
    kinds = sorted((r["failure_kind"] or "") for r in rows)
    assert kinds == [""] * 5 + ["timeout"]
    slow = next(r for r in rows if r["failure_kind"] == "timeout")
    assert "2.5 s" in slow["error"]
    assert stats.elapsed_s < 20  # 5 s of sleeping on two workers, one 2.5 s timeout


def test_options_threads_and_provenance_reach_the_ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = _cfg(tmp_path, domain_options={"threads": 2, "scale": 4.0, "label": "run-a"})
    Scheduler(cfg, candidates=_stream({"probe": "env"})).run()
    (row,) = _rows(cfg)
    measured = json.loads(row["gt_measurements"])
    assert measured["omp_threads"] == 2 and measured["scale"] == 4.0
    assert json.loads(row["domain_options"]) == {
        "expected_cost_s": None, "isolation": "none", "label": "run-a", "scale": 4.0,
        "threads": 2, "timeout_s": 20.0,
    }  # fmt: skip


def test_unknown_or_mistyped_options_fail_before_the_run_dir_exists(tmp_path):
    with pytest.raises(OptionsError, match=r"unknown option\(s\) \['basis'\]"):
        Scheduler(_cfg(tmp_path, domain_options={"basis": "def2-svp"}))
    with pytest.raises(OptionsError, match="scale"):
        Scheduler(_cfg(tmp_path, domain_options={"scale": "lots"}))
    with pytest.raises(OptionsError, match="takes no options"):
        Scheduler(_cfg(tmp_path, domain="analytic_domain:AnalyticDomain", domain_options={"a": 1}))
    assert not (tmp_path / "run").exists()


def test_options_of_a_domain_object_and_of_the_config_must_agree(tmp_path):
    with pytest.raises(ValueError, match="differ"):
        Scheduler(_cfg(tmp_path, domain_options={"scale": 2.0}), domain=ProbeDomain())


def test_a_run_cannot_weaken_the_isolation_a_verifier_declares(tmp_path):
    cfg = _cfg(tmp_path, domain_options={"isolation": "bwrap"}, isolation="process")
    with pytest.raises(ValueError, match="weaker than"):
        Scheduler(cfg)
    strong = Scheduler(_cfg(tmp_path, domain_options={"isolation": "process"}, isolation="bwrap"))
    assert strong.verifier.isolation == "bwrap"
    strong.ledger.close()
    default = Scheduler(_cfg(tmp_path))
    assert default.verifier.isolation == "process"  # the default, above the declared 'none'
    default.ledger.close()


def test_resource_overrides_apply_and_absurd_limits_are_config_errors(tmp_path):
    s = Scheduler(_cfg(tmp_path, resources={"timeout_s": 3.0, "memory_mb": 512}))
    assert s.verifier.resources.timeout_s == 3.0 and s.verifier.resources.memory_mb == 512
    s.ledger.close()
    for bad in ({"timeout_s": float("inf")}, {"timeout_s": 0}, {"threads": 0}, {"bogus": 1}):
        with pytest.raises(ValueError):
            _cfg(tmp_path, resources=bad)


def test_an_untrusted_rule_check_that_hangs_or_crashes_costs_one_candidate(tmp_path):
    cfg = _cfg(tmp_path, domain="probe_domain:UntrustedProbeDomain", check_timeout_s=1.0)
    stream = _stream(
        {"probe": "ok", "i": 1},
        {"probe": "hang_check"},
        {"probe": "ok", "i": 2},
        {"probe": "crash_check"},
        {"probe": "reject_check"},
        {"probe": "ok", "i": 3},
    )
    stats = Scheduler(cfg, candidates=stream).run()
    rows = _rows(cfg)
    by_probe = {json.loads(r["payload"])["probe"] + str(r["seq"]): r for r in rows}
    decisions = [(json.loads(r["payload"])["probe"], r["decision"]) for r in rows]
    assert decisions == [
        ("ok", "accepted"), ("hang_check", "invalid"), ("ok", "accepted"),
        ("crash_check", "invalid"), ("reject_check", "invalid"), ("ok", "accepted"),
    ]  # fmt: skip
    reasons = [r["reason"] for r in rows if r["decision"] == "invalid"]
    assert "rule check timed out" in reasons[0] and "1 s" in reasons[0]
    assert "rule check failed" in reasons[1] and "exit code 9" in reasons[1]
    assert reasons[2] == "rejected by the rules"
    assert stats.invalid == 3 and by_probe


def test_the_run_reports_its_workers(tmp_path):
    s = Scheduler(_cfg(tmp_path))
    assert s.stats.workers == 1
    s.ledger.close()


def test_the_cli_reports_config_errors_of_the_execution_plane_in_one_line(tmp_path, capsys):
    from foundry.cli import main

    base = ["run", "--domain", "probe_domain:ProbeDomain", "--run-dir", str(tmp_path / "r"),
            "--executor", "inline", "--no-progress", "--max-candidates", "4"]  # fmt: skip
    cases = [
        (["--set", "domain_options.basis=def2-svp"], "unknown option(s) ['basis']"),
        (["--set", "domain_options.isolation=bwrap", "--isolation", "process"], "weaker than"),
        (["--set", "resources.timeout_s=-1"], "timeout_s"),
        (["--timeout-s", "0"], "timeout_s"),
    ]
    for extra, fragment in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert fragment in err, (extra, err)
        assert len(err.splitlines()) <= 2, err


def test_a_run_with_options_from_the_cli(tmp_path):
    from foundry.cli import main

    run_dir = tmp_path / "r"
    args = ["run", "--domain", "probe_domain:ProbeDomain", "--run-dir", str(run_dir),
            "--executor", "inline", "--no-progress", "--max-candidates", "5",
            "--set", "domain_options.scale=7.5", "--set", "surrogate=false",
            "--timeout-s", "5"]  # fmt: skip
    assert main(args) == 0
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    measured = [
        json.loads(m)["scale"] for (m,) in db.execute("SELECT gt_measurements FROM examples")
    ]
    meta = json.loads(db.execute("SELECT value FROM meta WHERE key='verifier'").fetchone()[0])
    db.close()
    assert measured == [7.5] * 5
    assert meta["resources"]["timeout_s"] == 5.0 and meta["isolation"] == "process"
