"""A pids cgroup per verifier child: the process limit a fork bomb cannot outrun.

``RLIMIT_NPROC`` counts a user's processes, and the kernel exempts root's: a foundry run as
root (containers, CI, some clusters' service accounts) has no per-process-tree limit from
rlimits at all, and the host's watchdog samples the tree every few milliseconds - a fork bomb
fills the machine's pid table between two samples. A pids cgroup is enforced by the kernel on
every fork. Where the foundry may create one (cgroup v1's ``pids`` hierarchy, or a cgroup v2
subtree with the ``pids`` controller delegated), each verifier child starts inside its own,
with ``pids.max`` = the verifier's ``max_processes`` plus the child's own processes. Where it
may not, nothing changes: rlimits and the watchdog remain (an ordinary user's
``RLIMIT_NPROC`` does hold).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

#: processes of the verifier child itself (bwrap's two, the child, a warm helper or two)
CHILD_OVERHEAD_PROCESSES = 16
_V1_ROOT = Path("/sys/fs/cgroup/pids")
_V2_ROOT = Path("/sys/fs/cgroup")


def _v2_own_dir() -> Path | None:
    """This process's cgroup v2 directory, when v2 is mounted at /sys/fs/cgroup."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                path = _V2_ROOT / line[3:].lstrip("/")
                if (path / "cgroup.controllers").exists():
                    return path
    return None


def _parent_dir() -> Path | None:
    """Where a new pids cgroup can be made by this process, or None."""
    if (_V1_ROOT / "cgroup.procs").exists() and os.access(_V1_ROOT, os.W_OK):
        return _V1_ROOT
    own = _v2_own_dir()
    if own is not None and os.access(own, os.W_OK):
        with contextlib.suppress(OSError):
            if "pids" in (own / "cgroup.subtree_control").read_text().split():
                return own
    return None


class PidsCgroup:
    """One pids cgroup; ``enter_prefix()`` is the command prefix that starts a program in it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, max_pids: int) -> PidsCgroup | None:
        """A new cgroup limited to ``max_pids`` processes, or None where none can be made."""
        parent = _parent_dir()
        if parent is None:
            return None
        path = parent / f"foundry-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def enter_prefix(self) -> list[str]:
        """``sh`` moves itself into the cgroup, then becomes the command: every process the
        command starts is born inside (moving a started tree would miss its children)."""
        procs = str(self.path / "cgroup.procs")
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs]

    def current(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int((self.path / "pids.current").read_text())
        return 0

    def refusals(self) -> int:
        """Forks refused at the limit so far (``max`` in ``pids.events``)."""
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / "pids.events").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "max":
                    return int(value)
        return 0

    def remove(self) -> None:
        """Remove the cgroup (once its processes are gone; a leftover is harmless)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()
