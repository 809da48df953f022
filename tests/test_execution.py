"""The execution plane on real processes: protocol, limits, timeouts, environment, CPUs.

Every test starts real verifier children (``process`` isolation; bubblewrap has its own file,
``test_sandbox.py``) running :mod:`probe_domain`, whose verifier does what its payload says -
where a hostile candidate's code would run.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foundry.contract import Candidate, SetupError
from foundry.execution.cpus import usable_cpus
from foundry.execution.executors import ChunkJob, DaskExecutor, InlineExecutor
from foundry.execution.host import ChildHost, InProcessHost
from foundry.execution.outcomes import CRASH, PROTOCOL_ERROR, RESOURCE_LIMIT, TIMEOUT
from foundry.execution.protocol import FrameReader, ProtocolError, encode_frame
from foundry.execution.resources import Resources, resolve_isolation
from foundry.execution.spec import VerifierSpec

PROBE = "probe_domain:ProbeDomain"


def spec(isolation: str = "process", options: dict | None = None, **resources) -> VerifierSpec:
    resources.setdefault("timeout_s", 20.0)
    return VerifierSpec(
        PROBE,
        options_json=json.dumps(options or {}),
        resources=Resources(**resources),
        isolation=isolation,
    )


def probe(name: str, arg=None) -> Candidate:
    payload = {"probe": name} if arg is None else {"probe": name, "arg": arg}
    return Candidate(payload)


def run(host, *candidates: Candidate):
    return host.verify_many(list(enumerate(candidates)))


@pytest.fixture
def host(request):
    hosts = []

    def make(s: VerifierSpec):
        h = ChildHost(s)
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


# -- frames ---------------------------------------------------------------------------------
def _pipe_with(data: bytes) -> FrameReader:
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return FrameReader(r, max_bytes=1024)


def test_frames_round_trip_and_bad_frames_are_protocol_errors():
    assert _pipe_with(encode_frame({"op": "x", "v": [1, 2.5]})).read(1.0) == {
        "op": "x",
        "v": [1, 2.5],
    }
    bad = [
        struct.pack("!I", 4) + b"\xff\xfe{}",  # not UTF-8
        struct.pack("!I", 3) + b"[1]",  # not an object
        struct.pack("!I", 3) + b"NaN",  # NaN is not JSON
        struct.pack("!I", 5000) + b"{}",  # over the cap, refused before reading it
    ]
    for data in bad:
        with pytest.raises(ProtocolError):
            _pipe_with(data).read(1.0)
    with pytest.raises(EOFError):  # half a frame, then the writer is gone
        _pipe_with(struct.pack("!I", 50) + b'{"op"').read(1.0)


def test_a_half_written_frame_hits_the_deadline_instead_of_blocking():
    r, w = os.pipe()
    os.write(w, struct.pack("!I", 50) + b'{"op"')
    started = time.monotonic()
    assert FrameReader(r).read(0.3) is None
    assert 0.25 < time.monotonic() - started < 2.0
    os.close(w)
    os.close(r)


# -- the child: protocol attacks, failures, limits -------------------------------------------
@pytest.mark.parametrize(
    "attack, kind",
    [
        ("garbage_frame", PROTOCOL_ERROR),
        ("oversized_frame", PROTOCOL_ERROR),
        ("half_frame", TIMEOUT),
    ],
)
def test_a_bad_frame_from_the_child_is_a_recorded_failure_and_the_child_is_replaced(
    host, attack, kind
):
    h = host(spec(timeout_s=1.5))
    started = time.monotonic()
    bad, good = run(h, probe(attack), probe("ok"))
    assert time.monotonic() - started < 10
    assert bad.verdict is None and bad.failure_kind == kind, bad
    assert good.verdict is not None and good.verdict.passed
    assert h.restarts >= 1


def test_timeouts_crashes_and_the_items_after_them(host):
    h = host(spec(timeout_s=1.0))
    slow, crashed, fine = run(h, probe("sleep", 30), probe("exit", 3), probe("ok"))
    assert slow.failure_kind == TIMEOUT and "1 s" in slow.error
    assert slow.walltime_s < 5
    assert crashed.failure_kind == CRASH and "exit code 3" in crashed.error
    assert fine.verdict is not None


def test_the_child_gets_its_threads_a_clean_environment_and_its_work_dir(host, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Dask's nanny sets
    monkeypatch.setenv("FOUNDRY_TEST_SECRET", "token")
    (result,) = run(host(spec(threads=2)), probe("env"))
    m = result.verdict.measurements
    assert m["omp_threads"] == 2 and m["mkl_threads"] == 2
    assert m["secret_visible"] == 0
    assert m["cwd_is_workdir"] == 1


def test_domain_options_reach_the_child(host):
    (result,) = run(host(spec(options={"scale": 2.5, "label": "x"})), probe("ok"))
    assert result.verdict.measurements["scale"] == 2.5


def test_protocol_pipes_are_not_inherited_by_programs_the_verifier_runs(host):
    (result,) = run(host(spec()), probe("fds"))
    assert result.verdict.measurements["child_fds"] == 4  # 0, 1, 2 and listdir's own


def test_the_work_dir_is_empty_for_every_item(host):
    h = host(spec())
    _, listed = run(h, probe("write", []), probe("listdir_workdir"))
    assert listed.verdict.measurements["files"] == 0


def processes_with(marker: str) -> list[str]:
    """Command lines of live (not zombie) processes on this host that contain ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(cmdline)
    return found


def test_no_process_outlives_its_item(host):
    marker = "31.41592"
    h = host(spec())
    (result,) = run(h, probe("daemon", float(marker)))
    assert result.verdict is not None
    assert processes_with(marker) == []


def test_memory_above_the_limit_is_a_resource_failure(host):
    h = host(spec(memory_mb=300))
    big, fine = run(h, probe("memory", 600), probe("ok"))
    assert big.failure_kind == RESOURCE_LIMIT and "memory" in big.error, big
    assert fine.verdict is not None


def test_a_cpu_burner_that_ignores_sigterm_is_stopped_by_the_cpu_limit(host):
    h = host(spec(cpu_time_s=1.0, timeout_s=30))
    started = time.monotonic()
    (burn,) = run(h, probe("cpu_child", 25))
    assert burn.failure_kind == RESOURCE_LIMIT and "CPU" in burn.error, burn
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    assert processes_with("while True: pass") == []


def test_too_many_processes_is_a_resource_failure(host):
    h = host(spec(max_processes=8))
    (result,) = run(h, probe("fork_many", 30))
    assert result.failure_kind == RESOURCE_LIMIT and "process" in result.error, result
    assert processes_with("sleep 30") == []


def test_output_above_the_limit_is_a_resource_failure(host):
    h = host(spec(output_mb=4))
    loud, fine = run(h, probe("print", 16), probe("print", 1))
    assert loud.failure_kind == RESOURCE_LIMIT and "output" in loud.error, loud
    assert fine.verdict is not None  # the log is per item


def test_a_slow_start_fails_the_items_without_stopping_the_run(host):
    h = host(spec(startup_timeout_s=0.001))
    results = run(h, probe("ok"), probe("ok"))
    assert [r.failure_kind for r in results] == [CRASH, CRASH]
    assert "did not start within" in results[0].error


def test_a_missing_domain_is_a_setup_error(host):
    with pytest.raises(SetupError, match="cannot load domain"):
        run(host(VerifierSpec("no_such_module:Nothing")), probe("ok"))


def test_recycling_replaces_the_child_after_so_many_items(host):
    h = host(spec(recycle_after=2))
    results = run(h, *[probe("ok") for _ in range(5)])
    assert all(r.verdict is not None for r in results)
    assert h.restarts == 2


def test_a_module_named_like_the_stdlib_in_the_cwd_changes_nothing(tmp_path, monkeypatch):
    (tmp_path / "inspect.py").write_text("raise SystemExit('shadowed the stdlib')\n")
    (tmp_path / "json.py").write_text("raise SystemExit('shadowed the stdlib')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` puts the cwd first
    h = ChildHost(spec())
    try:
        (result,) = run(h, probe("ok"))
    finally:
        h.close()
    assert result.verdict is not None, result.error


def test_in_process_host_runs_the_same_runner():
    h = InProcessHost(spec("none", options={"scale": 3.0}))
    (result,) = run(h, probe("ok"))
    h.close()
    assert result.verdict.measurements["scale"] == 3.0


def test_isolation_may_be_strengthened_never_weakened():
    assert resolve_isolation("none", None, "x") == "process"
    assert resolve_isolation("bwrap", None, "x") == "bwrap"
    assert resolve_isolation("process", "bwrap", "x") == "bwrap"
    assert resolve_isolation("none", "none", "x") == "none"
    with pytest.raises(ValueError, match="weaker than x requires"):
        resolve_isolation("bwrap", "process", "x")


def test_resources_are_validated():
    with pytest.raises(ValueError, match="timeout_s"):
        Resources(timeout_s=float("inf"))
    with pytest.raises(ValueError, match="threads"):
        Resources(threads=0)
    assert Resources().replace(threads=4, memory_mb=None).threads == 4


# -- threads on executors, CPUs of the process -------------------------------------------------
def test_a_two_thread_verifier_sees_two_threads_inline_and_on_dask():
    job = ChunkJob(spec(options={"threads": 2}, threads=2), ((0, probe("env")),))
    inline = InlineExecutor()
    inline.submit(job)
    (outcome,) = inline.collect(0)
    inline.close()
    assert outcome.results[0].verdict.measurements["omp_threads"] == 2

    dask = DaskExecutor(n_workers=1, threads_per_task=2)
    try:
        assert dask.slots == 1 * dask.chunks_per_worker  # one 2-thread task at a time
        dask.submit(job)
        outcomes = []
        deadline = time.monotonic() + 60
        while not outcomes and time.monotonic() < deadline:
            outcomes = dask.collect(0.5)
    finally:
        dask.close()
    assert outcomes and outcomes[0].error is None, outcomes
    assert outcomes[0].results[0].verdict.measurements["omp_threads"] == 2


def test_usable_cpus_follow_the_affinity_mask():
    code = (
        "from foundry.execution.cpus import usable_cpus; b = usable_cpus(); "
        "print(b.cpus, b.limited_by)"
    )
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["1", "affinity"]
    assert usable_cpus().cpus == len(os.sched_getaffinity(0))


def test_slurm_allocation_limits_the_cpus(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cpus() == usable_cpus().__class__(1, "slurm")


def test_an_embedded_cluster_under_taskset_starts_one_worker(tmp_path):
    code = (
        "from foundry.execution.executors import DaskExecutor\n"
        "ex = DaskExecutor()\n"
        "print(ex.workers)\n"
        "ex.close()\n"
    )
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=120,
    ).stdout.split()
    assert out[-1] == "1"
