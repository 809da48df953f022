"""A verifier's process tree, read from /proc: who is alive, how much memory and CPU it holds.

The host watches the tree of its child (memory, CPU time, process count) and the child sweeps
the processes an item left behind. Linux only, like the sandbox; everywhere a read fails the
process is taken to be gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children_of(pid: int) -> list[int]:
    """Direct children, from /proc/<pid>/task/*/children (no scan of the whole /proc)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (not ``pid`` itself), parents before children."""
    seen: list[int] = []
    stack = _children_of(pid)
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.append(child)
        stack.extend(_children_of(child))
    return seen


def rss_mb(pids: Iterable[int]) -> float:
    """Resident memory of ``pids`` in MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total * _PAGE_BYTES / (1024 * 1024)


def cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of ``pids``, with their reaped children's."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            # fields[11:15] = utime stime cutime cstime (stat fields 14-17)
            ticks += sum(int(x) for x in fields[11:15])
        except (OSError, ValueError, IndexError):
            continue
    return ticks / _TICKS_PER_S


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def has_children() -> bool:
    """Whether this process has any child at all, without reaping one (microseconds)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def sweep(keep: set[int], wait_s: float = 2.0) -> int:
    """Kill every descendant of this process not in ``keep``; reap them. Returns the count.

    With this process a child subreaper, an item's daemons (double-forked, setsid) are
    reparented here when their parents exit, so descendants() finds them all.
    """
    me = os.getpid()
    doomed = [pid for pid in descendants(me) if pid not in keep]
    if not doomed:
        return 0
    kill_all(doomed)
    deadline = time.monotonic() + wait_s
    pending = set(doomed)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not (or no longer) our child: reaped by its parent
                if not os.path.exists(f"/proc/{pid}"):
                    pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        # a killed process's orphans become ours: take them too
        kill_all(p for p in descendants(me) if p not in keep and p not in pending)
        pending.update(p for p in descendants(me) if p not in keep)
        if pending:
            time.sleep(0.005)
    return len(doomed)


def set_child_subreaper() -> bool:
    """Make orphans of this process's descendants its children (prctl PR_SET_CHILD_SUBREAPER)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER = 36
    except (OSError, AttributeError):
        return False
