"""The code domain's options (``[domain_options]``): sandbox limits and the import policy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from foundry.simulators.pysandbox import SandboxLimits

__all__ = ["DEFAULT_DENIED_IMPORTS", "CodeOptions"]

#: Modules the default policy refuses: processes, sockets, raw memory, signals and the like.
#: This is a data-quality policy (a task's solution has no business with them), not the
#: security boundary - ``__import__("socket")`` passes any static check; the sandbox holds.
DEFAULT_DENIED_IMPORTS: tuple[str, ...] = (
    "asyncio",
    "ctypes",
    "fcntl",
    "ftplib",
    "http",
    "mmap",
    "multiprocessing",
    "pty",
    "resource",
    "select",
    "selectors",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "ssl",
    "subprocess",
    "telnetlib",
    "threading",
    "urllib",
    "_thread",
)


_LIMITS = SandboxLimits()


@dataclass(frozen=True)
class CodeOptions:
    """``imports``: ``"stdlib"`` (standard-library modules only, minus ``denied_imports``),
    ``"any"`` (anything but ``denied_imports``) or ``"none"`` (no import statement at all).
    ``timeout_s``/``cpu_time_s``/``memory_mb``/``max_processes``/``output_kb``/``tmpfs_kb``: one
    check's sandbox limits (wall time for loading the program and running all its tests; data
    memory above the warm interpreter's; processes alive at once; bytes of any one file,
    stdout included; each private tmpfs). ``max_program_chars``/``max_test_chars``/
    ``max_tests``: what the rule layer admits. ``surrogate_members``: the classifier's
    ensemble size."""

    imports: str = "stdlib"
    denied_imports: tuple[str, ...] = DEFAULT_DENIED_IMPORTS
    # the sandbox's limits, defaulting to the sandbox's own defaults
    timeout_s: float = _LIMITS.timeout_s
    cpu_time_s: float = _LIMITS.cpu_time_s
    memory_mb: int = _LIMITS.memory_mb
    max_processes: int = _LIMITS.max_processes
    output_kb: int = _LIMITS.output_kb
    tmpfs_kb: int = _LIMITS.tmpfs_kb
    max_program_chars: int = 100_000
    max_test_chars: int = 200_000
    max_tests: int = 1000
    surrogate_members: int = 8

    def __post_init__(self) -> None:
        if self.imports not in ("stdlib", "any", "none"):
            raise ValueError(f"imports must be 'stdlib', 'any' or 'none', got {self.imports!r}")
        for name in ("max_program_chars", "max_test_chars", "max_tests", "surrogate_members"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        self.sandbox_limits()  # the limits' own checks, at config time

    def sandbox_limits(self) -> SandboxLimits:
        """The sandbox's limits: the options of the same names."""
        names = [f.name for f in dataclasses.fields(SandboxLimits)]
        return SandboxLimits(**{name: getattr(self, name) for name in names})
