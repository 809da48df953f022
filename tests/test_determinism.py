"""Deterministic decisions: given seed, config and ground-truth answers, the decisions do not
depend on when the answers arrive - on a real Dask cluster whose verifier has random latency."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest
from analytic_domain import AnalyticDomain, AnalyticGroundTruth

from foundry.config import RunConfig
from foundry.contract import Candidate, GroundTruth, Verdict
from foundry.execution.executors import DaskExecutor
from foundry.loop import Scheduler

COLUMNS = (
    "seq, content_id, slice, route, decision, audit, surrogate_version, calibration_version, "
    "decided_by, gt_passed"
)


class JitteryGroundTruth(AnalyticGroundTruth):
    """The analytic truth after 0-5 ms of true randomness: arrival order varies run to run."""

    def verify(self, candidate: Candidate, workdir: str) -> Verdict:
        time.sleep(int.from_bytes(os.urandom(1), "big") / 255 * 0.005)
        return super().verify(candidate, workdir)


class JitteryDomain(AnalyticDomain):
    name = "jittery"

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return JitteryGroundTruth()


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40,
    ) as c:  # fmt: skip
        yield c


def _run(tmp_path, cluster, name: str, **kw):
    cfg = RunConfig(
        domain="test_determinism:JitteryDomain",
        run_dir=tmp_path / name,
        seed=7,
        progress=False,
        alpha=0.05,
        delta=0.1,
        min_train_labels=200,
        retrain_every=600,
        challenger_audits=300,
        max_item_risk=0.3,
        chunk_size=8,
        batch_size=256,
        budget={"max_candidates": 6000},
        **kw,
    )
    executor = DaskExecutor(cluster)
    try:
        stats = Scheduler(cfg, executor=executor).run()
    finally:
        executor.close()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    rows = db.execute(f"SELECT {COLUMNS} FROM examples ORDER BY seq").fetchall()
    cals = db.execute(
        "SELECT surrogate_version, slice, look, audits_used, accept_threshold, reject_threshold "
        "FROM calibrations ORDER BY version"
    ).fetchall()
    db.close()
    return stats, rows, cals


@pytest.mark.slow
def test_two_dask_runs_with_the_same_seed_make_identical_decisions(tmp_path, cluster):
    stats_a, rows_a, cals_a = _run(tmp_path, cluster, "a", deterministic=True)
    _, rows_b, cals_b = _run(tmp_path, cluster, "b", deterministic=True)
    assert len(rows_a) == 6000
    assert stats_a.surrogate_accepted > 0, "the comparison must cover surrogate decisions"
    assert stats_a.surrogate_versions >= 2
    assert cals_a == cals_b
    assert rows_a == rows_b
