"""The bubblewrap launcher against a hostile verifier: each attack has no effect on the host.

Each test runs the same probe under ``process`` isolation as a control where that shows the
attack is real (the socket connects, the secret is read), so that the sandboxed result is not
a broken probe passing by accident. bubblewrap is installed by scripts/setup.sh; without it
these tests fail with the SetupError a user would see.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
from test_execution import probe, processes_with, run, spec

from foundry.contract import SetupError
from foundry.execution.host import ChildHost
from foundry.execution.launchers import BwrapLauncher


@pytest.fixture
def sandboxed():
    hosts = []

    def make(isolation: str = "bwrap", **resources):
        h = ChildHost(spec(isolation, **resources))
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.close()


def test_bubblewrap_is_available_here():
    BwrapLauncher().check()  # a SetupError with the install hint otherwise


class Listener:
    """A TCP listener on the host's loopback that records whatever reaches it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_no_network_a_listener_on_the_host_loopback_receives_nothing(sandboxed):
    listener = Listener()
    try:
        (control,) = run(sandboxed("process"), probe("connect", ["127.0.0.1", listener.port]))
        assert control.verdict.measurements["connected"] == 1  # the probe works
        listener.received.clear()
        (boxed,) = run(sandboxed(), probe("connect", ["127.0.0.1", listener.port]))
        assert boxed.verdict.measurements["connected"] == 0
        assert listener.received == []
    finally:
        listener.close()


def test_no_write_outside_the_work_dir(sandboxed, tmp_path):
    tag = uuid.uuid4().hex
    targets = [
        f"/tmp/foundry-escape-{tag}",
        str(Path.home() / f"foundry-escape-{tag}"),
        str(Path(__file__).resolve().parent / f"foundry-escape-{tag}"),  # the code, bound ro
        str(tmp_path / f"escape-{tag}"),
        f"/usr/foundry-escape-{tag}",
    ]
    try:
        (result,) = run(sandboxed(), probe("write", targets))
        assert result.verdict.measurements["wrote_workdir"] == 1
        assert [t for t in targets if os.path.exists(t)] == []
    finally:
        for t in targets:
            if os.path.exists(t):
                os.unlink(t)


def test_a_file_planted_in_the_host_home_cannot_be_read(sandboxed):
    secret = Path.home() / f".foundry-test-secret-{uuid.uuid4().hex}"
    secret.write_text("the cluster password")
    try:
        (control,) = run(sandboxed("process"), probe("read", str(secret)))
        assert control.verdict.measurements["read"] == 1
        (boxed,) = run(sandboxed(), probe("read", str(secret)))
        assert boxed.verdict.measurements["read"] == 0
        (shadow,) = run(sandboxed(), probe("read", "/etc/shadow"))
        assert shadow.verdict.measurements["read"] == 0
    finally:
        secret.unlink()


def test_no_process_outlives_its_item_in_the_sandbox(sandboxed):
    marker = "27.18281"
    h = sandboxed()
    (result, after) = run(h, probe("daemon", float(marker)), probe("ok"))
    assert result.verdict is not None and after.verdict is not None
    assert processes_with(marker) == []


def test_the_sandbox_has_the_same_limits_and_environment(sandboxed, monkeypatch):
    monkeypatch.setenv("FOUNDRY_TEST_SECRET", "token")
    (env,) = run(sandboxed(threads=2), probe("env"))
    assert env.verdict.measurements["omp_threads"] == 2
    assert env.verdict.measurements["secret_visible"] == 0
    (mem,) = run(sandboxed(memory_mb=300), probe("memory", 600))
    assert mem.failure_kind == "resource_limit", mem
    (fds,) = run(sandboxed(), probe("fds"))
    assert fds.verdict.measurements["child_fds"] == 4


def test_a_missing_bwrap_is_a_setup_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SetupError, match="apt-get install bubblewrap"):
        BwrapLauncher().check()


def test_the_current_directory_is_not_exposed_even_when_on_the_import_path(
    sandboxed, tmp_path, monkeypatch
):
    secret = tmp_path / "notes.txt"
    secret.write_text("private")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m ...` run from $HOME does
    (boxed,) = run(sandboxed(), probe("read", str(secret)))
    assert boxed.verdict.measurements["read"] == 0
