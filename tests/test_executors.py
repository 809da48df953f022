"""Ground truth on Dask: the scheduler accepts any cluster object or client it is handed.

A cluster built by the user (here a LocalCluster; on a machine with Slurm, a SLURMCluster)
goes through exactly the code path of the embedded default, and is left running for its
owner when the run ends.
"""

from __future__ import annotations

import sqlite3

import pytest
from analytic_domain import HostileDomain
from distributed import Client, LocalCluster

from foundry.config import RunConfig
from foundry.contract import Candidate
from foundry.execution.executors import ChunkJob, DaskExecutor
from foundry.execution.spec import VerifierSpec
from foundry.loop import Scheduler


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40,
    ) as c:  # fmt: skip
        yield c


def _cfg(tmp_path, **kw):
    base = dict(
        domain="analytic_domain:AnalyticDomain",
        run_dir=tmp_path / "run",
        progress=False,
        alpha=0.05,
        delta=0.1,
        budget={"max_candidates": 4000},
    )
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("handle", ["cluster", "client"])
def test_a_users_cluster_or_client_runs_the_ground_truth_and_survives(
    tmp_path, cluster, handle
) -> None:
    target = cluster if handle == "cluster" else Client(cluster)
    executor = DaskExecutor(target)
    assert executor.slots == 2 * executor.chunks_per_worker
    stats = Scheduler(_cfg(tmp_path), executor=executor).run()
    assert stats.generated == 4000 and stats.gt_calls > 0 and stats.pending == 0
    assert stats.chunk_size > 32, "a sub-millisecond verifier gets bigger tasks"
    db = sqlite3.connect(tmp_path / "run" / "ledger.sqlite")
    (pending,) = db.execute("SELECT COUNT(*) FROM examples WHERE decision = 'pending'").fetchone()
    (workers,) = db.execute(
        "SELECT COUNT(DISTINCT worker_host) FROM examples WHERE decided_by = 'ground_truth'"
    ).fetchone()
    db.close()
    assert pending == 0 and workers >= 1
    executor.close()
    # not ours to stop: the user's cluster still takes work
    with Client(cluster) as client:
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    if handle == "client":
        target.close()


def test_hostile_verifiers_on_dask_workers_are_recorded_failures(tmp_path, cluster) -> None:
    executor = DaskExecutor(cluster)
    cfg = _cfg(
        tmp_path,
        domain="analytic_domain:HostileDomain",
        surrogate=False,
        resources={"timeout_s": 2.0},
        batch_size=32,  # one batch: every mode twice
        chunk_size=8,
        budget={"max_candidates": 2 * len(HostileDomain.modes)},
    )
    stats = Scheduler(cfg, executor=executor).run()
    executor.close()
    db = sqlite3.connect(tmp_path / "run" / "ledger.sqlite")
    rows = db.execute("SELECT payload, decision, failure_kind FROM examples").fetchall()
    db.close()
    import json

    by_mode = {json.loads(p)["mode"]: (d, k) for p, d, k in rows}
    assert by_mode["ok"][0] in ("accepted", "rejected")
    for mode in HostileDomain.modes[1:]:
        assert by_mode[mode][0] == "failed", (mode, by_mode[mode])
    assert by_mode["hang"][1] == "timeout" and by_mode["crash"][1] == "crash"
    assert stats.failed == 2 * (len(HostileDomain.modes) - 1)


def test_a_lost_chunk_is_an_error_outcome_not_an_exception(cluster) -> None:
    executor = DaskExecutor(cluster)
    job = ChunkJob(VerifierSpec("no_such_module:Domain"), ((1, Candidate({"x": [0, 0]})),))
    executor.submit(job)
    outcomes = []
    for _ in range(100):
        outcomes += executor.collect(0.5)
        if outcomes:
            break
    executor.close()
    assert len(outcomes) == 1 and outcomes[0].error is not None
    assert "no_such_module" in str(outcomes[0].error)
