"""The verifier child: the process (or sandbox) a worker's warm ground truth lives in.

Started by :class:`foundry.execution.host.ChildHost` as
``python -I -c BOOTSTRAP PATHS IN_FD OUT_FD``: isolated mode (nothing added to sys.path
implicitly, no PYTHON* variables), the parent's import paths given explicitly with the
current directory last, so that nothing there shadows the standard library. Frames travel
on two private pipes, never on stdin/stdout: fd 0 is /dev/null and fds 1 and 2 go to a log
the host reads for error messages, so whatever a tool prints cannot reach the protocol.

Per item: verify, then sweep the processes the item left (this process is a child
subreaper, so double-forked daemons come back to it), clean the work dir, reset the warm
state and check its health.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from typing import Any

from foundry.contract import SetupError
from foundry.execution import proctree
from foundry.execution.protocol import (
    MAX_FRAME_BYTES,
    FrameReader,
    candidate_from_wire,
    verdict_to_wire,
    write_frame,
)
from foundry.execution.resources import Resources
from foundry.execution.runner import VerifierRunner, short_error
from foundry.execution.spec import VerifierSpec

#: the command the host runs; argv[1] is a JSON list of import paths
BOOTSTRAP = (
    "import sys, json; sys.path[0:0] = json.loads(sys.argv[1]); "
    "from foundry.execution.child import main; main(sys.argv[2:])"
)

#: the pipe the child writes frames to (module-level so tests can play a hostile verifier)
PROTOCOL_OUT: int | None = None


def apply_limits(resources: Resources) -> None:
    """rlimits for this process and everything it starts (inherited across fork/exec)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if resources.memory_mb:
        data = resources.memory_mb * 1024 * 1024
        _lower(resource.RLIMIT_DATA, data)
    if resources.output_mb:
        _lower(resource.RLIMIT_FSIZE, int(resources.output_mb * 1024 * 1024))
    if resources.max_processes:
        # counted per user, and not enforced for root: the host's watchdog is the real limit
        _lower(resource.RLIMIT_NPROC, resources.max_processes + 64)


def _lower(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (value, hard))


def _spec_from_wire(data: dict[str, Any]) -> VerifierSpec:
    return VerifierSpec(
        domain_spec=data["domain_spec"],
        options_json=data["options_json"],
        fidelity=data["fidelity"],
        resources=Resources(**data["resources"]),
        isolation=data["isolation"],
    )


def main(argv: list[str]) -> None:
    global PROTOCOL_OUT
    in_fd, out_fd = int(argv[0]), int(argv[1])
    os.set_inheritable(in_fd, False)
    os.set_inheritable(out_fd, False)
    PROTOCOL_OUT = out_fd
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr  # print() in a plugin goes to the log, like fd 1 already does
    reader = FrameReader(in_fd, MAX_FRAME_BYTES)
    init = reader.read(timeout_s=60.0)
    if init is None or init.get("op") != "init":
        return
    try:
        spec = _spec_from_wire(init["spec"])
        apply_limits(spec.resources)
        proctree.set_child_subreaper()
        runner = VerifierRunner(spec, workdir=init["workdir"])
    except Exception as exc:  # a setup problem of any kind: the host stops the run
        write_frame(out_fd, {"op": "setup_error", "error": short_error(exc)})
        return
    write_frame(
        out_fd,
        {
            "op": "ready",
            "simulator": runner.simulator,
            "simulator_version": runner.simulator_version,
        },
    )
    try:
        _serve(reader, out_fd, runner)
    finally:
        with contextlib.suppress(Exception):
            runner.close()
        proctree.sweep(keep=set())  # warm processes included: nothing outlives the child


def _serve(reader: FrameReader, out_fd: int, runner: VerifierRunner) -> None:
    while True:
        try:
            message = reader.read(timeout_s=3600.0 * 24)
        except EOFError:
            return
        if message is None or message.get("op") == "stop":
            return
        op = message.get("op")
        for key, wire in message.get("items", ()):
            warm = set(proctree.descendants(os.getpid())) if proctree.has_children() else set()
            candidate = candidate_from_wire(wire)
            _reset_log()
            if op == "check":
                reason = runner.check(candidate)
                _sweep(warm)
                write_frame(out_fd, {"op": "checked", "key": key, "reason": reason})
                continue
            try:
                outcome = runner.verify(candidate)
            except SetupError as exc:
                write_frame(out_fd, {"op": "setup_error", "key": key, "error": short_error(exc)})
                return
            _sweep(warm)
            recycle = runner.after_item()
            verdict = outcome.verdict
            write_frame(
                out_fd,
                {
                    "op": "result",
                    "key": key,
                    "verdict": verdict_to_wire(verdict) if verdict is not None else None,
                    "kind": outcome.kind,
                    "error": outcome.error,
                    "walltime_s": outcome.walltime_s,
                    "recycle": recycle,
                },
            )
            if recycle:
                return


def _reset_log() -> None:
    """Start the item's output at offset 0 of the log (fds 1 and 2 share one file and its
    offset), so that the ``output_mb`` rlimit counts one item's output, not the child's."""
    with contextlib.suppress(OSError):
        if os.lseek(1, 0, os.SEEK_CUR):
            os.ftruncate(1, 0)
            os.lseek(1, 0, os.SEEK_SET)


def _sweep(warm: set[int]) -> None:
    """Kill what the item started; keep the verifier's own warm processes."""
    if proctree.has_children():
        proctree.sweep(keep=warm)
