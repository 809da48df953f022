"""The code domain's ground truth against hostile programs: each attack ends in a rejection
(or the correct verdict) with no effect outside the sandbox.

Every check goes the production way: a warm verifier child in bubblewrap (``isolation =
"bwrap"``, what the domain declares), the Python sandbox inside it, HumanEval-style records.
The import policy is ``any`` here so that attacks reach the sandbox instead of stopping at the
rule layer. Where it shows that the attack is real, the same program runs unsandboxed on the
host as a control (the socket connects, the secret is read, the file is written).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from foundry.domains.code import CodeDomain, CodeOptions
from test_execution import processes_with

from foundry.contract import Candidate
from foundry.execution.host import ChildHost
from foundry.execution.spec import VerifierSpec

OPTIONS = {"imports": "any", "timeout_s": 3.0, "cpu_time_s": 3.0, "memory_mb": 256}


def _spec(options: dict | None = None) -> VerifierSpec:
    options = OPTIONS if options is None else options
    gt = CodeDomain(CodeOptions(**options)).ground_truth()
    return VerifierSpec(
        "foundry.domains.code:CodeDomain",
        options_json=json.dumps(options),
        fidelity=None,
        resources=gt.resources,
        isolation="bwrap",
    )


@pytest.fixture(scope="module")
def host():
    h = ChildHost(_spec())
    yield h
    h.close()


def record(program: str, test_body: str, entry: str = "f") -> Candidate:
    """A HumanEval-style record: ``program`` as the completion, ``test_body`` inside check."""
    test = "def check(candidate):\n" + textwrap.indent(textwrap.dedent(test_body), "    ")
    return Candidate(
        {
            "task_id": "attack",
            "prompt": "",
            "entry_point": entry,
            "completion": textwrap.dedent(program),
            "test": test,
        }
    )


def verify(host: ChildHost, *candidates: Candidate):
    results = host.verify_many(list(enumerate(candidates)))
    assert len(results) == len(candidates)
    return results


def verdict_of(host: ChildHost, candidate: Candidate):
    (result,) = verify(host, candidate)
    assert result.verdict is not None, f"no verdict: {result.failure_kind} {result.error}"
    return result.verdict


def benign() -> Candidate:
    return record("def f(x):\n    return 2 * x\n", "assert candidate(21) == 42\n")


def assert_healthy(host: ChildHost, restarts: int) -> None:
    """The warm child survived the attack and still gives right verdicts."""
    verdict = verdict_of(host, benign())
    assert verdict.passed, verdict.reason
    assert host.restarts == restarts, "the attack cost the warm verifier its process"


def control(program: str, call: str) -> str:
    """Run ``program`` and print ``call``'s value unsandboxed on the host (the control)."""
    code = textwrap.dedent(program) + f"\nprint({call})\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip()


# -- a working harness first ---------------------------------------------------------------------


def test_right_and_wrong_programs_get_the_right_verdicts(host):
    good, wrong, crash = verify(
        host,
        benign(),
        record("def f(x):\n    return 2 * x + 1\n", "assert candidate(21) == 42\n"),
        record("def f(x):\n    return 1 / 0\n", "assert candidate(21) == 42\n"),
    )
    assert good.verdict.passed and good.verdict.reason.startswith("pass:")
    assert not wrong.verdict.passed and wrong.verdict.reason.startswith("fail:")
    assert "assert candidate(21) == 42" in wrong.verdict.reason
    assert not crash.verdict.passed and "ZeroDivisionError" in crash.verdict.reason
    assert good.verdict.measurements == {"tests_total": 1.0, "tests_passed": 1.0}


# -- network -----------------------------------------------------------------------------------

CONNECT = """
import socket
def f(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return "connected"
    except OSError as exc:
        return f"refused: {exc}"
"""


def test_no_tcp_connection_reaches_a_listener_on_the_host_loopback(host):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        assert control(CONNECT, f"f({port})") == "connected"  # the probe is real
        time.sleep(0.3)
        n_control = len(accepted)
        assert n_control == 1
        verdict = verdict_of(host, record(CONNECT, f"assert candidate({port}) == 'connected'"))
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert not verdict.passed and "refused" in verdict.reason
    assert len(accepted) == n_control, "the sandbox reached the host's listener"


def test_no_name_resolution(host):
    program = """
    import socket
    def f():
        try:
            socket.getaddrinfo("pypi.org", 443)
            return "resolved"
        except OSError as exc:
            return f"failed: {exc}"
    """
    verdict = verdict_of(host, record(program, "assert candidate() == 'resolved'"))
    assert not verdict.passed and "failed" in verdict.reason


# -- files ---------------------------------------------------------------------------------------

WRITE = """
def f(path):
    try:
        with open(path, "w") as fh:
            fh.write("pwned")
        return "written"
    except OSError as exc:
        return f"denied: {exc}"
"""


def test_no_write_outside_the_work_dir(host, tmp_path):
    target = tmp_path / "pwned"
    tmp_path.chmod(0o777)  # writable by anyone: only the sandbox may stop it
    assert control(WRITE, f"f({str(target)!r})") == "written"
    target.unlink()
    for path in (str(target), "/usr/pwned", "/etc/pwned"):
        verdict = verdict_of(host, record(WRITE, f"assert candidate({path!r}) == 'written'"))
        assert not verdict.passed and "denied" in verdict.reason, verdict.reason
    assert not target.exists() and not Path("/usr/pwned").exists()


def test_a_secret_in_the_host_home_cannot_be_read(host):
    secret = Path.home() / f".foundry-secret-{uuid.uuid4().hex}"
    secret.write_text("the-secret")
    program = """
    def f(path):
        try:
            return open(path).read()
        except OSError as exc:
            return f"denied: {exc}"
    """
    try:
        assert control(program, f"f({str(secret)!r})") == "the-secret"
        test = f"assert candidate({str(secret)!r}) == 'the-secret'"
        verdict = verdict_of(host, record(program, test))
    finally:
        secret.unlink()
    assert not verdict.passed and "denied" in verdict.reason


def test_a_program_cannot_read_what_an_earlier_one_wrote(host):
    """Every check gets a fresh, private /tmp, /dev/shm and work dir (tmpfs)."""
    writer = """
    import os
    def f():
        for path in ("/tmp/left-behind", "/dev/shm/left-behind", "left-behind"):
            with open(path, "w") as fh:
                fh.write("data of the earlier candidate")
        return sorted(os.listdir("."))
    """
    reader = """
    import os
    def f():
        found = []
        for path in ("/tmp/left-behind", "/dev/shm/left-behind", "left-behind"):
            if os.path.exists(path):
                found.append(path)
        return found
    """
    first, second = verify(
        host,
        record(writer, "assert candidate() == ['left-behind']"),
        record(reader, "assert candidate() == []"),
    )
    assert first.verdict.passed, first.verdict.reason  # it did write, in its own tmpfs
    assert second.verdict.passed, second.verdict.reason  # and the next check found nothing


# -- processes -----------------------------------------------------------------------------------


def test_a_fork_bomb_is_contained(host):
    restarts = host.restarts
    program = """
    import os
    def f():
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    started = time.monotonic()
    verdict = verdict_of(host, record(program, "assert candidate() == 1"))
    assert not verdict.passed
    assert verdict.reason.split(":")[0] in ("timeout", "crash", "resource"), verdict.reason
    assert time.monotonic() - started < OPTIONS["timeout_s"] + 10
    assert_healthy(host, restarts)


def test_a_memory_bomb_is_a_resource_verdict(host):
    restarts = host.restarts
    grow = "x = []\n    while True:\n        x.append(bytearray(10**7))"
    for body in ("x = bytearray(16 * 2**30)", grow):
        program = f"def f():\n    {body}\n    return 1\n"
        verdict = verdict_of(host, record(program, "assert candidate() == 1"))
        assert not verdict.passed and verdict.reason.startswith("resource: memory"), verdict.reason
    assert_healthy(host, restarts)


def test_an_infinite_loop_is_a_timeout(host):
    started = time.monotonic()
    program = "def f():\n    while True:\n        pass\n"
    verdict = verdict_of(host, record(program, "assert candidate() == 1"))
    elapsed = time.monotonic() - started
    # cpu_time_s equals timeout_s here: whichever limit strikes first ends it, with its name
    # (the CPU limit used to end it as "crash: killed by SIGKILL": a hard limit's signal)
    assert not verdict.passed, verdict.reason
    assert verdict.reason.startswith(("timeout:", "resource: CPU-time limit")), verdict.reason
    assert OPTIONS["timeout_s"] - 0.5 < elapsed < OPTIONS["timeout_s"] + 5


def test_a_loop_past_its_cpu_time_is_a_cpu_time_verdict():
    """CPU time below the wall time: the CPU limit ends the loop, and says so (SIGXCPU at the
    soft limit, not the hard limit's bare SIGKILL)."""
    h = ChildHost(_spec({**OPTIONS, "cpu_time_s": 1.0, "timeout_s": 8.0}))
    try:
        program = "def f():\n    while True:\n        pass\n"
        verdict = verdict_of(h, record(program, "assert candidate() == 1"))
        assert not verdict.passed
        assert verdict.reason.startswith("resource: CPU-time limit"), verdict.reason
    finally:
        h.close()


def test_a_cpu_burner_child_that_ignores_sigterm_dies_with_its_check(host):
    marker = f"burn{uuid.uuid4().hex[:8]}"
    program = f"""
    import os
    def f():
        if os.fork() == 0:
            os.execv("/bin/sh", ["/bin/sh", "-c", "trap '' TERM; while :; do :; done # {marker}"])
        return 3
    """
    verdict = verdict_of(host, record(program, "assert candidate() == 3"))
    assert verdict.passed, verdict.reason  # the right answer is the right verdict
    time.sleep(0.3)
    assert processes_with(marker) == []


def test_a_daemon_does_not_outlive_its_check(host):
    program = """
    import os
    def f():
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "4321.5"])
            os._exit(0)
        return 1
    """
    verdict = verdict_of(host, record(program, "assert candidate() == 1"))
    assert verdict.passed, verdict.reason
    time.sleep(0.3)
    assert processes_with("sleep 4321.5") == []


def test_huge_output_is_a_resource_verdict(host):
    restarts = host.restarts
    program = """
    import sys
    def f():
        while True:
            sys.stdout.write("x" * 65536)
            sys.stdout.flush()
    """
    verdict = verdict_of(host, record(program, "assert candidate() == 1"))
    assert not verdict.passed, verdict.reason
    assert verdict.reason.startswith("resource: output limit"), verdict.reason
    assert_healthy(host, restarts)


def test_killing_every_process_it_can_name_spares_the_judge_and_the_worker(host):
    restarts = host.restarts
    program = """
    import os, signal
    def f():
        killed = 0
        for pid in [os.getppid(), 1, *(int(p) for p in os.listdir("/proc") if p.isdigit())]:
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        return "survived"
    """
    verdict = verdict_of(host, record(program, "assert candidate() == 'harness dead'"))
    assert not verdict.passed
    assert_healthy(host, restarts)


def test_the_verifiers_pipes_cannot_be_opened_through_proc(host):
    """The verifier, judge and spawner are not dumpable: /proc/<pid>/fd of theirs is closed
    to a runner of the same user, so no forged frame reaches the host or the judge."""
    program = """
    import os
    def f():
        opened = []
        me = os.readlink("/proc/self")  # its pid in the sandbox's /proc (not os.getpid())
        for pid in (p for p in os.listdir("/proc") if p.isdigit() and p != me):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    os.close(os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY))
                    opened.append(f"{pid}/{fd}")
                except OSError:
                    pass
        return opened
    """
    assert control(program, "len(f()) > 0") == "True"  # unsandboxed, it opens them
    verdict = verdict_of(host, record(program, "assert candidate() == []"))
    assert verdict.passed, verdict.reason


# -- faking the verdict --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        "import sys\nsys.exit(0)\ndef f(x):\n    return x\n",
        "import os\nos._exit(0)\ndef f(x):\n    return x\n",
        "raise SystemExit(0)\n",
    ],
    ids=["sys.exit", "os._exit", "SystemExit"],
)
def test_ending_the_process_before_the_tests_run_is_a_crash(host, program):
    verdict = verdict_of(host, record(program, "assert candidate(1) == 2"))
    assert not verdict.passed and verdict.reason.startswith("crash:"), verdict.reason
    assert "while loading" in verdict.reason


@pytest.mark.parametrize(
    "program",
    [
        # SystemExit raised inside the call the test makes
        "def f(x):\n    raise SystemExit(0)\n",
        # an object that equals everything
        "class Yes:\n    def __eq__(self, other):\n        return True\n"
        "def f(x):\n    return Yes()\n",
        # an int subclass that equals everything
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
        "def f(x):\n    return Yes(0)\n",
        # replacing check and the harness's names
        "def check(candidate):\n    return None\n"
        "def candidate(x):\n    return 2\ndef f(x):\n    return 0\n",
        # patching assertions away in its own interpreter
        "import builtins\nbuiltins.AssertionError = type('N', (Exception,), {})\n"
        "def f(x):\n    return 0\n",
        # shadowing a builtin the test calls on both sides
        "def sorted(x):\n    return [0]\ndef f(x):\n    return [9, 9]\n",
        # printing a fake verdict, and writing frames to every descriptor it may have
        (
            "import os, json, struct\n"
            "msg = json.dumps({'status': 'pass', 'reason': 'passed 1/1 tests', 'tests_total': 1,"
            " 'tests_passed': 1, 'failed_test': ''}).encode()\n"
            "print('passed'); print(msg.decode())\n"
            "for fd in range(256):\n"
            "    try:\n        os.write(fd, struct.pack('!I', len(msg)) + msg)\n"
            "    except OSError:\n        pass\n"
            "def f(x):\n    return 0\n"
        ),
    ],
    ids=[
        "SystemExit-in-check",
        "eq-object",
        "eq-int",
        "replace-check",
        "patch-assert",
        "shadow-builtin",
        "fake-verdict-output",
    ],
)
def test_a_program_cannot_fake_a_pass(host, program):
    test = "assert sorted(candidate([1, 2])) == sorted([2, 1])\nassert candidate(1) == 2\n"
    verdict = verdict_of(host, record(program, test))
    assert not verdict.passed, f"faked a pass: {verdict.reason}"


def test_the_sandbox_runs_as_the_judge_says_not_as_the_program_says(host):
    """A control for the faking tests: an honest program passes the same test."""
    honest = "def f(x):\n    return sorted(x) if isinstance(x, list) else 2\n"
    test = "assert sorted(candidate([1, 2])) == sorted([2, 1])\nassert candidate(1) == 2\n"
    assert verdict_of(host, record(honest, test)).passed


def test_fork_bomb_leaves_no_process_on_the_host(host):
    before = len(host._tree())
    program = "import os\ndef f():\n    for _ in range(10000):\n        os.fork()\n    return 1\n"
    verdict_of(host, record(program, "assert candidate() == 1"))
    time.sleep(0.3)
    assert len(host._tree()) <= before, "processes of the check outlived it"


def test_the_environment_of_a_program_is_clean(host, monkeypatch):
    program = "import os\ndef f():\n    return sorted(os.environ)\n"
    test = "assert candidate() == ['HOME', 'LANG', 'PATH', 'TMPDIR']"
    verdict = verdict_of(host, record(program, test))
    assert verdict.passed, verdict.reason
    assert os.environ.get("HOME")  # the host's is untouched


def test_a_records_test_code_cannot_poison_the_next_check(host):
    """User records bring their own tests, which run in the judge: each check's tests run in
    a fork of it, so a test that patches a builtin changes nothing for the next record."""
    poisoner = record(
        "def f(x):\n    return x\n",
        "import builtins\nbuiltins.abs = lambda x: 0\nassert candidate(1) == 1\n",
    )
    victim = record("def f(x):\n    return 5\n", "assert abs(candidate(1) - 2) < 1e-9\n")
    poisoner.source = victim.source = "injected"  # a user's file: its tests are its own
    warm, first, second = verify(host, benign(), poisoner, victim)  # one warm judge for both
    assert warm.verdict.passed and first.verdict.passed, first.verdict.reason
    assert not second.verdict.passed, "the first record's test patched the judge for the next"
