"""Slurm: worker jobs through dask-jobqueue, worker loss, and ``foundry submit``.

The unit tests need no Slurm. The ``slurm``-marked ones need a real, running Slurm (the
single-node one of ``../shared/tools/slurm-local.sh``; ``scripts/test.sh`` starts it with
``FOUNDRY_SLURM=1``): they submit real worker jobs and a real coordinator job, and cancel
them with the real ``scancel``. Nothing of Slurm is mocked there. Two unit tests use a fake
on purpose, to test this project's own error handling: a chunk outcome carrying Dask's
``KilledWorker`` (the dispatcher's re-queue rule), and a missing ``dask_jobqueue`` module.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from analytic_domain import AnalyticDomain, AnalyticGroundTruth

from foundry.cli import main
from foundry.config import ConfigError, load_config
from foundry.contract import Candidate, GroundTruth, SetupError, Verdict
from foundry.execution.executors import ChunkJob, ChunkOutcome
from foundry.execution.outcomes import CRASH, GTResult
from foundry.execution.resources import Resources
from foundry.execution.slurm import (
    WORKER_JOB_NAME,
    SlurmSettings,
    cluster_kwargs,
    make_slurm_executor,
    slurm_time,
)
from foundry.execution.spec import VerifierSpec
from foundry.loop.dispatch import (
    MAX_WORKER_LOSSES,
    WORKER_LOST,
    Dispatcher,
    DispatchParams,
    PendingItem,
)
from foundry.loop.stats import RunStats
from foundry.submit import detect_activation, render_script

TESTS = Path(__file__).parent
FOUNDRY = str(Path(sys.executable).with_name("foundry"))


# -- a domain that says where its ground truth ran ----------------------------------------


class SlurmJobTruth(AnalyticGroundTruth):
    """The analytic truth, noting the Slurm job it ran in (measurement ``slurm_job``, -1
    outside Slurm) and taking ``sleep_s`` a call."""

    name = "analytic_slurm"
    pass_env = ("SLURM_JOB_ID",)

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.sleep_s = sleep_s

    def execute(self, job: np.ndarray, workdir: str) -> float:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return super().execute(job, workdir)

    def parse(self, raw: float, candidate: Candidate) -> Verdict:
        verdict = super().parse(raw, candidate)
        job = float(os.environ.get("SLURM_JOB_ID", "-1"))
        return Verdict(
            passed=verdict.passed,
            properties=verdict.properties,
            measurements={**verdict.measurements, "slurm_job": job},
        )


class SlurmJobDomain(AnalyticDomain):
    name = "analytic_slurm"
    sleep_s: ClassVar[float] = 0.0

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return SlurmJobTruth(self.sleep_s)


class SlowSlurmJobDomain(SlurmJobDomain):
    """50 ms a ground-truth call: long enough runs to kill something in the middle of."""

    sleep_s: ClassVar[float] = 0.05


# -- helpers ------------------------------------------------------------------------------


def _spec(**resources: Any) -> VerifierSpec:
    return VerifierSpec("analytic_domain:AnalyticDomain", resources=Resources(**resources))


def _slurm_answers() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _jobs_under(path: Path, *states: str) -> list[tuple[str, str, str]]:
    """(id, name, state) of the queued or running jobs whose log lies under ``path``: this
    test's jobs only, whoever else uses the same Slurm."""
    fmt = "JobID:30,Name:60,State:30,STDERR:2000"
    args = ["squeue", "-h", "-O", fmt, *(["-t", ",".join(states)] if states else [])]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30).stdout
    jobs = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith(str(path)):
            jobs.append((parts[0], parts[1], parts[2]))
    return jobs


def _job_info(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as a dict (Slurm keeps ended jobs for MinJobAge seconds)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(part.split("=", 1) for part in out.split() if "=" in part)


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[None]:
    """A running Slurm (fail, do not skip: a CI that starts Slurm must run these), and no
    job of this test (its logs under ``tmp_path``) left behind afterwards."""
    if not _slurm_answers():
        pytest.fail(
            "no running Slurm: bash ../shared/tools/slurm-local.sh install && ... start "
            "(or deselect with -m 'not slurm')"
        )
    yield
    deadline = time.monotonic() + 30
    left = _jobs_under(tmp_path, "PD", "R")
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _jobs_under(tmp_path, "PD", "R")
    if left:  # a failed test's coordinator, or worker jobs that outlived their cluster
        subprocess.run(["scancel", *(job for job, _, _ in left)], timeout=30)
    assert not left, f"jobs outlived the test: {left}"


def _slurm_config(tmp_path: Path, domain: str, budget: int, **slurm: Any) -> Path:
    """A TOML config of a surrogate-free run on Slurm worker jobs; the workers find the
    test domains through PYTHONPATH, set in the job script's prologue."""
    table = {
        "max_jobs": 2,
        "walltime_s": 600,
        "job_script_prologue": [f"export PYTHONPATH={TESTS}"],
        **slurm,
    }
    lines = [
        f'domain = "{domain}"',
        'executor = "slurm"',
        "surrogate = false",
        "progress = false",
        "[budget]",
        f"max_candidates = {budget}",
        "[slurm]",
        *(f"{k} = {json.dumps(v)}" for k, v in table.items()),
    ]
    path = tmp_path / "run.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(run_dir: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM examples ORDER BY seq").fetchall()
    db.close()
    return rows


def _events(run_dir: Path, kind: str) -> list[str]:
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    found = [m for (m,) in db.execute("SELECT message FROM events WHERE kind = ?", (kind,))]
    db.close()
    return found


def _jobs_of(rows: list[sqlite3.Row]) -> set[int]:
    """The Slurm job ids the ground truth of ``rows`` ran in."""
    return {
        int(json.loads(r["gt_measurements"])["slurm_job"]) for r in rows if r["gt_measurements"]
    }


# -- (a) settings, cluster shape and errors, without Slurm --------------------------------


@pytest.mark.parametrize(
    "slurm, where",
    [
        ({"walltime_s": -5}, "slurm.walltime_s"),
        ({"walltime_s": float("inf")}, "slurm.walltime_s"),
        ({"cores": 0}, "slurm.cores"),
        ({"max_jobs": 2, "min_jobs": 3}, "min_jobs (3) > max_jobs (2)"),
        ({"partition": "two words"}, "slurm.partition"),
        ({"walltime_s": 600, "worker_lifetime_s": 700}, "worker_lifetime_s"),
        ({"job_extra_directives": ["#SBATCH --exclusive"]}, "without '#SBATCH'"),
        ({"job_script_prologue": ["module load x\nrm -rf /"]}, "one line"),
        ({"walltime": 600}, "slurm.walltime: Extra inputs are not permitted"),
    ],
)
def test_bad_slurm_settings_are_one_line_config_errors(slurm: dict, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, executor="slurm", slurm=slurm)
    message = str(err.value)
    assert "\n" not in message and where in message and message.startswith("config slurm")


def test_the_config_takes_a_slurm_table_without_importing_dask(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('executor = "slurm"\n[slurm]\npartition = "gpu"\nmax_jobs = 8\n')
    code = (
        "import sys; from foundry.config import load_config; "
        f"c = load_config(__import__('pathlib').Path({str(path)!r})); "
        "assert c.slurm.partition == 'gpu' and c.slurm.max_jobs == 8, c; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', "
        "'dask_jobqueue')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_worker_jobs_are_shaped_by_the_verifiers_and_the_settings() -> None:
    settings = SlurmSettings(
        partition="cpu",
        account="chem",
        qos="long",
        walltime_s=7200,
        processes=2,
        job_extra_directives=["--constraint=skylake"],
        job_script_prologue=["module load gcc"],
        local_directory="$TMPDIR",
    )
    kw = cluster_kwargs(settings, [_spec(threads=1), _spec(threads=2, memory_mb=1500)])
    # default cores: the largest threads per worker process; memory: declared + the worker's
    assert kw["cores"] == 4 and kw["processes"] == 2
    assert kw["job_mem"] == "4024M" and kw["memory"] == "4024MiB"
    assert kw["queue"] == "cpu" and kw["account"] == "chem" and kw["walltime"] == "02:00:00"
    assert kw["job_extra_directives"] == ["--qos=long", "--constraint=skylake"]
    assert kw["job_script_prologue"] == ["module load gcc"]
    assert kw["local_directory"] == "$TMPDIR"
    args = kw["worker_extra_args"]
    assert args[:2] == ["--resources", "threads=2,memory_mb=2012"]
    lifetime = float(args[args.index("--lifetime") + 1].rstrip("s"))
    stagger = float(args[args.index("--lifetime-stagger") + 1].rstrip("s"))
    assert lifetime + stagger < 7200 - 60, "a worker retires well before its wall time"
    # loopback by default; a cluster names its interface or scheduler address
    assert kw["scheduler_options"]["host"] == "127.0.0.1" and kw["interface"] is None
    kw = cluster_kwargs(SlurmSettings(interface="ib0", gpus=2), [_spec(gpus=1)])
    assert "host" not in kw["scheduler_options"] and kw["interface"] == "ib0"
    assert "--gres=gpu:2" in kw["job_extra_directives"]
    assert kw["worker_extra_args"][1] == "threads=1,gpus=2"
    kw = cluster_kwargs(SlurmSettings(scheduler_host="10.0.0.5"), [_spec()])
    assert kw["scheduler_options"]["host"] == "10.0.0.5"
    assert kw["memory"] == "1024MiB", "the floor when no verifier declares memory"


def test_worker_jobs_too_small_for_a_verifier_are_a_setup_error() -> None:
    with pytest.raises(SetupError, match="threads = 4"):
        cluster_kwargs(SlurmSettings(cores=2), [_spec(threads=4)])
    with pytest.raises(SetupError, match="GPU"):
        cluster_kwargs(SlurmSettings(), [_spec(gpus=1)])
    with pytest.raises(SetupError, match="memory_mb = 8000"):
        cluster_kwargs(SlurmSettings(memory_mb=4000), [_spec(memory_mb=8000)])


def test_slurm_time_rounds_up_to_minutes() -> None:
    assert slurm_time(60) == "00:01:00"
    assert slurm_time(61) == "00:02:00"
    assert slurm_time(3 * 86400 + 3600) == "3-01:00:00"


def test_no_sbatch_or_no_dask_jobqueue_is_a_one_line_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no sbatch
    with pytest.raises(SetupError, match="sbatch on PATH") as err:
        make_slurm_executor(SlurmSettings(), [_spec()])
    assert "\n" not in str(err.value)
    # a fake: dask_jobqueue made unimportable, to test the message for a missing extra
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(SetupError, match=r"pip install 'foundry-sci\[slurm\]'"):
        make_slurm_executor(SlurmSettings(), [_spec()])


def test_a_slurm_run_without_slurm_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    args = ["run", "--domain", "analytic_domain:AnalyticDomain", "--executor", "slurm"]
    assert main([*args, "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sbatch on PATH" in err


# -- (a) worker loss in the dispatcher ------------------------------------------------------


class _Events:
    """Stands in for the ledger: the dispatcher only records events in it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def event(self, level: str, kind: str, message: str) -> None:
        self.events.append((level, kind, message))


class _LosingExecutor:
    """A fake executor (to test the dispatcher's own rule): the first ``losses`` chunks end
    as Dask ends a chunk whose worker died, the rest verify for real, in process."""

    slots = 1
    remote = False
    workers = 1

    def __init__(self, losses: int) -> None:
        from distributed.scheduler import KilledWorker

        self.losses = losses
        from types import SimpleNamespace

        last_worker = SimpleNamespace(address="tcp://127.0.0.1:40001")
        self.error = KilledWorker("run_chunk_timed-abc", last_worker, 3)
        self.done: list[ChunkOutcome] = []

    def submit(self, job: ChunkJob) -> None:
        from foundry.execution.executors import run_chunk_timed

        if self.losses > 0:
            self.losses -= 1
            self.done.append(ChunkOutcome(job, error=self.error))
        else:
            results, busy_s = run_chunk_timed(job)
            self.done.append(ChunkOutcome(job, results, busy_s=busy_s))

    def collect(self, timeout_s: float) -> list[ChunkOutcome]:
        done, self.done = self.done, []
        return done

    def in_flight(self) -> int:
        return len(self.done)

    def close(self) -> None:
        pass


def _dispatch(losses: int, n: int = 3) -> tuple[list[tuple[PendingItem, GTResult]], Any]:
    spec = VerifierSpec("analytic_domain:AnalyticDomain", isolation="none")
    params = DispatchParams((spec,), None, 0.05, 2, None, 16)
    ledger = _Events()
    dispatcher = Dispatcher(_LosingExecutor(losses), params, RunStats(), ledger)  # type: ignore[arg-type]
    for seq in range(n):
        cand = Candidate({"x": [0.1 * seq, 0.2]})
        dispatcher.add(seq, PendingItem(cand, audit=False, route="ground_truth", scores=[]))
    settled = []
    for _ in range(50):
        dispatcher.submit()
        settled += list(dispatcher.settle(dispatcher.collect(0.0)))
        if not dispatcher.busy():
            break
    return settled, dispatcher, ledger


def test_items_lost_with_their_worker_are_requeued_without_an_attempt() -> None:
    settled, dispatcher, ledger = _dispatch(losses=MAX_WORKER_LOSSES - 1)
    assert len(settled) == 3 and not dispatcher.pending
    for item, result in settled:
        assert result.verdict is not None and result.failure_kind == ""
        assert item.attempts == 1, "a lost worker is not an attempt of the verifier"
        assert item.worker_losses == MAX_WORKER_LOSSES - 1
    assert [kind for _, kind, _ in ledger.events] == [WORKER_LOST] * (MAX_WORKER_LOSSES - 1)
    assert all(level == "warning" for level, _, _ in ledger.events)


def test_a_verifier_that_always_loses_its_worker_fails_as_worker_lost() -> None:
    settled, dispatcher, _ = _dispatch(losses=10**6)
    assert len(settled) == 3 and not dispatcher.pending
    for item, result in settled:
        assert result.verdict is None and result.failure_kind == WORKER_LOST
        assert item.worker_losses == MAX_WORKER_LOSSES and item.attempts == 0
        assert "KilledWorker" in result.error and f"{MAX_WORKER_LOSSES} times" in result.error


class _PoisonedWorkersExecutor(_LosingExecutor):
    """A fake (of Dask's failure mode, to test the dispatcher's handling of it): two slots,
    and whenever a chunk holding the poison item is in flight, the worker dies and takes every
    chunk in flight with it - Dask blames them all alike."""

    slots = 2

    def __init__(self, poison_seq: int) -> None:
        super().__init__(losses=0)
        self.poison_seq = poison_seq
        self.running: list[ChunkJob] = []
        self.alone_runs = 0

    def submit(self, job: ChunkJob) -> None:
        self.running.append(job)

    def collect(self, timeout_s: float) -> list[ChunkOutcome]:
        from foundry.execution.executors import run_chunk_timed

        running, self.running = self.running, []
        if any(seq == self.poison_seq for job in running for seq, _ in job.items):
            self.alone_runs += len(running) == 1
            return [ChunkOutcome(job, error=self.error) for job in running]
        outcomes = []
        for job in running:
            results, busy_s = run_chunk_timed(job)
            outcomes.append(ChunkOutcome(job, results, busy_s=busy_s))
        return outcomes

    def in_flight(self) -> int:
        return len(self.running)


@pytest.mark.parametrize("chunk_size", [1, 4])
def test_neighbours_of_a_worker_killing_item_are_not_failed_with_it(chunk_size: int) -> None:
    """Losses do not say which item killed the worker: an item lost SUSPECT_AFTER_LOSSES times
    runs alone, and only the one that dies alone ends as ``worker_lost``."""
    spec = VerifierSpec("analytic_domain:AnalyticDomain", isolation="none")
    params = DispatchParams((spec,), chunk_size, 0.05, 2, None, 16)
    executor = _PoisonedWorkersExecutor(poison_seq=0)
    dispatcher = Dispatcher(executor, params, RunStats(), _Events())  # type: ignore[arg-type]
    for seq in range(8):
        cand = Candidate({"x": [0.1 * seq, 0.2]})
        dispatcher.add(seq, PendingItem(cand, audit=False, route="ground_truth", scores=[]))
    settled = []
    for _ in range(200):
        dispatcher.submit()
        settled += list(dispatcher.settle(dispatcher.collect(0.0)))
        if not dispatcher.busy():
            break
    by_seq = {dict(item.candidate.payload)["x"][0]: (item, res) for item, res in settled}
    assert len(settled) == 8 and not dispatcher.pending
    poison, poison_result = by_seq[0.0]
    assert poison_result.failure_kind == WORKER_LOST and "running alone" in poison_result.error
    assert poison.worker_losses == MAX_WORKER_LOSSES
    others = [res for x, (_, res) in by_seq.items() if x != 0.0]
    assert all(res.verdict is not None and res.failure_kind == "" for res in others)
    assert executor.alone_runs == 1, "the poison item ran alone once, and died alone"


def test_other_chunk_errors_still_crash_and_count_attempts() -> None:
    spec = VerifierSpec("analytic_domain:AnalyticDomain", isolation="none")
    params = DispatchParams((spec,), None, 0.05, 2, None, 16)
    dispatcher = Dispatcher(_LosingExecutor(0), params, RunStats(), _Events())  # type: ignore[arg-type]
    dispatcher.add(0, PendingItem(Candidate({"x": [0.0, 0.0]}), False, "ground_truth", []))
    job = ChunkJob(spec, ((0, Candidate({"x": [0.0, 0.0]})),))
    out = list(dispatcher.settle([ChunkOutcome(job, error=RuntimeError("harness bug"))]))
    assert out == [] and dispatcher.pending[0].attempts == 1  # re-queued as a crash retry
    out = list(dispatcher.settle([ChunkOutcome(job, error=RuntimeError("harness bug"))]))
    assert out[0][1].failure_kind == CRASH and out[0][0].attempts == 2


def test_a_verifier_that_kills_its_dask_worker_fails_as_worker_lost_and_others_finish(
    tmp_path: Path,
) -> None:
    """A real Dask cluster (LocalCluster; no Slurm needed): an item whose verifier takes its
    worker process down (``os._exit`` with isolation none) is lost with its worker every
    time - Dask's KilledWorker - and ends as ``worker_lost`` after MAX_WORKER_LOSSES tries (the
    last alone), while the other items - lost with it on the way - finish."""
    import dask

    from foundry.config import RunConfig
    from foundry.loop import Scheduler

    cfg = RunConfig(
        domain="analytic_domain:HostileDomain",
        run_dir=tmp_path / "run",
        executor="local",
        n_workers=2,
        isolation="none",
        chunk_size=1,
        surrogate=False,
        progress=False,
        budget={"max_candidates": None},
    )
    payloads = [{"x": [0.1, 0.2], "mode": "crash"}]
    payloads += [{"x": [0.05 * i, -0.3], "mode": "ok"} for i in range(6)]
    stream = iter([[Candidate(p) for p in payloads]])
    # without Dask's own retries each loss reaches the dispatcher (the scheduler is local)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        Scheduler(cfg, candidates=stream).run()
    rows = _rows(cfg.run_dir)
    by_mode = {json.loads(r["payload"])["mode"]: r for r in rows}
    crashed = by_mode["crash"]
    assert crashed["decision"] == "failed" and crashed["failure_kind"] == WORKER_LOST
    assert f"{MAX_WORKER_LOSSES} times" in crashed["error"] and "KilledWorker" in crashed["error"]
    ok = [r for r in rows if json.loads(r["payload"])["mode"] == "ok"]
    assert len(ok) == 6 and all(r["decision"] in {"accepted", "rejected"} for r in ok)
    # the crash item's losses, and maybe those of ok items whose finished results died with
    # the worker before they were fetched (and whose recomputation a crash took down again)
    assert len(_events(cfg.run_dir, WORKER_LOST)) >= MAX_WORKER_LOSSES


# -- (a) the coordinator's batch script ---------------------------------------------------


def test_activation_of_a_conda_env_a_venv_or_nothing() -> None:
    conda = {"CONDA_PREFIX": "/opt/conda/envs/sci", "CONDA_EXE": "/opt/conda/bin/conda"}
    line = detect_activation(conda, "/opt/conda/envs/sci", "/opt/conda/envs/sci")
    assert line == "source /opt/conda/etc/profile.d/conda.sh && conda activate /opt/conda/envs/sci"
    # no CONDA_EXE: the base is found from the env's path
    line = detect_activation({"CONDA_PREFIX": "/c/envs/x"}, "/c/envs/x", "/c/envs/x")
    assert line == "source /c/etc/profile.d/conda.sh && conda activate /c/envs/x"
    # a venv (also one made from a conda Python, with the conda env still active)
    assert detect_activation({}, "/home/u/.venv", "/usr") == "source /home/u/.venv/bin/activate"
    line = detect_activation({**conda, "VIRTUAL_ENV": "/p/v"}, "/p/v", "/opt/conda/envs/sci")
    assert line == "source /p/v/bin/activate"
    assert detect_activation({}, "/usr", "/usr") is None


def test_the_script_activates_cds_and_execs_foundry_run_resume() -> None:
    text = render_script(
        run_dir=Path("/scratch/u/run_1"),
        workdir=Path("/home/u/proj"),
        command=["foundry", "run", "--run-dir", "/scratch/u/run_1", "--resume"],
        activation="source /home/u/.venv/bin/activate",
        job_name="foundry-run_1",
        walltime_s=7200,
        cpus=2,
        mem_mb=4096,
        partition="cpu",
        account="chem",
        qos=None,
        signal_s=300,
        extra_options=["--constraint=skylake"],
    )
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in (
        "--job-name=foundry-run_1",
        "--partition=cpu",
        "--account=chem",
        "--time=02:00:00",
        "--cpus-per-task=2",
        "--mem=4096M",
        "--output=/scratch/u/run_1/slurm-coordinator-%j.out",
        "--error=/scratch/u/run_1/slurm-coordinator-%j.err",
        "--signal=B:TERM@300",
        "--requeue",
        "--open-mode=append",
        "--constraint=skylake",
    ):
        assert f"#SBATCH {directive}" in lines
    assert not any("--qos" in line for line in lines)
    body = lines[lines.index("set -e") :]
    assert body[1:] == [
        "# the Python environment foundry was submitted from",
        "source /home/u/.venv/bin/activate",
        "cd /home/u/proj",
        "# exec: foundry becomes the batch shell, so Slurm's signals reach it",
        "exec foundry run --run-dir /scratch/u/run_1 --resume",
    ]


def test_submit_dry_run_writes_the_script_with_absolute_paths_and_the_run_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # --dry-run needs no sbatch
    Path("run.toml").write_text('domain = "analytic_domain:AnalyticDomain"\n[slurm]\nqos = "hi"\n')
    args = ["submit", "--config", "run.toml", "--run-dir", "runs/a", "--dry-run"]
    args += ["--seed", "7", "--alpha", "0.05", "--set", "steering.spread=0.5", "--walltime-s"]
    args += ["1800", "--activate", "module load python && source ~/env/bin/activate"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    script = tmp_path / "runs" / "a" / "submit.sbatch"
    text = script.read_text()
    assert text in printed and os.access(script, os.X_OK)
    run = next(line for line in text.splitlines() if line.startswith("exec "))
    assert run.split() == [
        "exec", "foundry", "run", "--config", str(tmp_path / "run.toml"), "--run-dir",
        str(tmp_path / "runs" / "a"), "--resume", "--no-progress", "--seed", "7",
        "--alpha", "0.05", "--walltime-s", "1800.0", "--set", "steering.spread=0.5",
    ]  # fmt: skip
    assert f"cd {tmp_path}" in text.splitlines()
    assert "module load python && source ~/env/bin/activate" in text.splitlines()
    assert "#SBATCH --qos=hi" in text  # from the config's [slurm] table
    assert "#SBATCH --time=00:42:00" in text  # budget 1800 s + 120 s warning + 600 s slack
    # a bad config fails at submission, not in the queue
    assert main(["submit", "--run-dir", "runs/b", "--seed", "-1", "--dry-run"]) == 2


# -- (b) a run on Slurm worker jobs ---------------------------------------------------------


@pytest.mark.slurm
def test_a_run_on_slurm_worker_jobs_end_to_end(slurm: None, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = _slurm_config(tmp_path, "test_slurm:SlurmJobDomain", 600)
    args = ["run", "--config", str(config), "--run-dir", str(run_dir), "--chunk-size", "25"]
    started = time.monotonic()
    assert main(args) == 0
    elapsed = time.monotonic() - started
    rows = _rows(run_dir)
    assert len(rows) == 600
    assert {r["decision"] for r in rows} <= {"accepted", "rejected"}
    assert all(r["decided_by"] == "ground_truth" and not r["failure_kind"] for r in rows)
    # every ground-truth call ran inside a Slurm job, and each such job is a worker job
    jobs = _jobs_of(rows)
    assert jobs and -1 not in jobs
    for job in jobs:
        info = _job_info(str(job))
        assert info["JobName"] == WORKER_JOB_NAME, info
        assert (run_dir / "slurm-workers" / f"{WORKER_JOB_NAME}-{job}.err").exists()
    assert elapsed < 90


@pytest.mark.slurm
@pytest.mark.parametrize("allowed_failures", [None, 0], ids=["dask-retries", "no-dask-retries"])
def test_a_scancelled_worker_job_loses_no_item(
    slurm: None, tmp_path: Path, allowed_failures: int | None
) -> None:
    """``scancel`` of a worker job mid-run (what walltime expiry or preemption does too).

    With Dask's defaults, Dask may itself run a task of the lost worker again. With its
    retries turned off (``allowed-failures = 0``; the scheduler runs in this process), a
    task on the killed worker ends as KilledWorker and the dispatcher must re-queue it."""
    import dask

    run_dir = tmp_path / "run"
    config = _slurm_config(tmp_path, "test_slurm:SlowSlurmJobDomain", 400)
    killed: list[str] = []

    def kill_one_worker_job() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = [job for job, _, _ in _jobs_under(run_dir, "R")]
            db = run_dir / "ledger.sqlite"
            decided = 0
            if db.exists():
                try:
                    decided = sum(r["decision"] != "pending" for r in _rows(run_dir))
                except sqlite3.Error:
                    decided = 0
            if len(running) == 2 and decided >= 60:
                subprocess.run(["scancel", running[0]], check=True, timeout=30)
                killed.append(running[0])
                return
            time.sleep(0.3)

    killer = threading.Thread(target=kill_one_worker_job, daemon=True)
    settings = {} if allowed_failures is None else {"distributed.scheduler.allowed-failures": 0}
    with dask.config.set(settings):
        killer.start()
        args = ["run", "--config", str(config), "--run-dir", str(run_dir), "--chunk-size", "4"]
        assert main(args) == 0
    killer.join(5)
    assert killed, "no moment with two running worker jobs and work done"
    rows = _rows(run_dir)
    assert len(rows) == 400
    assert {r["decision"] for r in rows} <= {"accepted", "rejected"}
    assert not [r["failure_kind"] for r in rows if r["failure_kind"]]
    assert int(killed[0]) in _jobs_of(rows), "the killed job had done work before"
    lost = _events(run_dir, WORKER_LOST)
    if allowed_failures == 0:
        assert lost and all("KilledWorker" in m for m in lost), lost
    assert _wait_for_job(killed[0], timeout_s=60)["JobState"] == "CANCELLED"


@pytest.mark.slurm
def test_workers_retire_before_their_walltime_and_are_replaced(slurm: None, tmp_path: Path) -> None:
    """``worker_lifetime_s``: each worker job ends itself (gracefully) long before its wall
    time; adaptive scaling submits new ones, and no item fails."""
    run_dir = tmp_path / "run"
    config = _slurm_config(
        tmp_path, "test_slurm:SlowSlurmJobDomain", 400, walltime_s=120, worker_lifetime_s=6
    )
    args = ["run", "--config", str(config), "--run-dir", str(run_dir), "--chunk-size", "4"]
    assert main(args) == 0
    rows = _rows(run_dir)
    assert len(rows) == 400 and not [r for r in rows if r["failure_kind"]]
    jobs = _jobs_of(rows)
    assert len(jobs) >= 3, f"workers were not replaced: {jobs}"
    assert not _events(run_dir, WORKER_LOST), "a retiring worker hands its tasks back"
    for job in jobs:
        info = _wait_for_job(str(job), timeout_s=60)  # the last may still be COMPLETING
        assert info["JobName"] == WORKER_JOB_NAME
        assert info["JobState"] in {"COMPLETED", "CANCELLED"}, info["JobState"]


# -- (d) foundry submit, scancel, submit again ----------------------------------------------


def _wait_for_job(job: str, timeout_s: float, until: frozenset[str] = frozenset()) -> dict:
    """The job's record once it has ended (or reached a state in ``until``)."""
    active = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED"} - until
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = _job_info(job)
        if info.get("JobState") not in active:
            return info
        time.sleep(0.5)
    raise AssertionError(f"job {job} still {_job_info(job).get('JobState')}")


def _decided(run_dir: Path) -> int:
    """Rows with a final decision, read from outside the job (0 before the ledger exists)."""
    try:
        return sum(r["decision"] != "pending" for r in _rows(run_dir))
    except sqlite3.Error:
        return 0


def _status(run_dir: Path) -> dict[str, Any]:
    """``foundry status --json``, as from a login node while the job runs or after it."""
    done = subprocess.run(
        [FOUNDRY, "status", str(run_dir), "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slurm
@pytest.mark.parametrize("stop", ["walltime-warning", "scancel", "requeue"])
def test_submit_stop_mid_run_and_continue_finishes_the_run(
    slurm: None, tmp_path: Path, stop: str
) -> None:
    """``foundry submit`` -> the coordinator job runs (its ground truth on worker jobs) ->
    stopped mid-run -> continued: the script's ``--resume`` finishes the run, with every
    candidate decided once.

    * walltime-warning: what ``--signal=B:TERM@N`` does before the wall time (SIGTERM to the
      batch shell, which is foundry); continued by ``foundry submit`` again.
    * scancel: a user's ``scancel`` (SIGTERM to every process of the job, SIGKILL
      KillWait s later); continued by ``sbatch <run_dir>/submit.sbatch``, as printed.
    * requeue: ``scontrol requeue`` (what a node failure or preemption does with
      ``--requeue``); the same job runs again by itself (its 2-minute requeue hold lifted).
    """
    n = 500
    run_dir = tmp_path / "run"
    config = _slurm_config(tmp_path, "test_slurm:SlowSlurmJobDomain", n)
    env = {**os.environ, "PYTHONPATH": str(TESTS)}  # the coordinator job imports test_slurm
    submit = [
        FOUNDRY, "submit", "--config", str(config), "--run-dir", str(run_dir),
        "--chunk-size", "4", "--job-cpus", "1", "--job-mem-mb", "2048",
        "--job-walltime-s", "600",
    ]  # fmt: skip
    first = subprocess.run(submit, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    job = first.stdout.split()[3].rstrip(":")
    assert f"squeue -j {job}" in first.stdout and f"foundry status {run_dir}" in first.stdout
    assert "--resume" in (run_dir / "submit.sbatch").read_text()

    # mid-run (the job may first wait in the queue): some results in the ledger
    _wait_for_job(job, 120, until=frozenset({"RUNNING"}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _decided(run_dir) < 100:
        time.sleep(0.5)
    assert 100 <= _decided(run_dir) < n, "not mid-run"
    assert _status(run_dir)["total"] >= 100
    if stop == "requeue":
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
        _wait_for_job(job, 60, until=frozenset({"PENDING"}))
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], timeout=30)
        job2 = job
    else:
        if stop == "walltime-warning":
            subprocess.run(["scancel", "--batch", "--signal=TERM", job], check=True, timeout=30)
        else:
            subprocess.run(["scancel", job], check=True, timeout=30)
        ended = _wait_for_job(job, 60)
        assert _decided(run_dir) < n, f"the run was not stopped mid-run: {ended['JobState']}"
        assert not _status(run_dir)["finished"]
        if stop == "walltime-warning":
            assert ended["ExitCode"] == "143:0", ended  # foundry stopped itself, exit 143
            again = subprocess.run(submit, env=env, cwd=tmp_path, capture_output=True, text=True)
            assert again.returncode == 0, again.stderr
            job2 = again.stdout.split()[3].rstrip(":")
        else:
            script = str(run_dir / "submit.sbatch")
            again = subprocess.run(
                ["sbatch", "--parsable", script], env=env, capture_output=True, text=True
            )
            assert again.returncode == 0, again.stderr
            job2 = again.stdout.strip().split(";")[0]
    info = _wait_for_job(job2, 150)
    log = (run_dir / f"slurm-coordinator-{job2}.err").read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", (info, log[-3000:])
    if stop == "requeue":
        assert info["Restarts"] == "1"  # the same job, run again; its log appended
    rows = _rows(run_dir)
    assert len(rows) == n, "the run was finished, not restarted or duplicated"
    assert len({r["content_id"] for r in rows}) == n
    assert {r["decision"] for r in rows} <= {"accepted", "rejected"}
    assert not [r for r in rows if r["failure_kind"]]
    assert -1 not in _jobs_of(rows), "ground truth ran on worker jobs"
    summary = _status(run_dir)
    assert summary["finished"] and summary["total"] == n
