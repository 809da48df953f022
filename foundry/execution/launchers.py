"""Launchers: how a verifier child is started (Parsl's one-method extension point).

A launcher turns the child's command line into the command line that starts it where and how
it must run: as is (``process``), inside a bubblewrap sandbox (``bwrap``), later under
``srun`` or apptainer. It only rewrites ``argv``; the host still owns the process (pipes,
deadline, watchdog, kill). Limits that every launcher shares (rlimits, a clean environment,
the resource watchdog) are applied by the host and the child, not here.
"""

from __future__ import annotations

import abc
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from foundry.contract import SetupError
from foundry.execution.resources import Isolation


@dataclass(frozen=True)
class Limits:
    """What the sandbox is told about the item's needs (GPUs need device nodes bound)."""

    gpus: int = 0


class Launcher(abc.ABC):
    """Wraps the command line of a verifier child.

    ``wrap(argv, workdir, limits)`` returns the command to execute instead of ``argv``. The
    child reads and writes only ``workdir`` (and its private /tmp). ``read_paths`` are host
    paths the child must be able to read (its interpreter, the plugin's code, data).
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def wrap(self, argv: Sequence[str], workdir: str, limits: Limits) -> list[str]:
        """The command that runs ``argv`` under this launcher."""

    def check(self) -> None:  # noqa: B027 - optional
        """Raise :class:`SetupError` when this launcher cannot work on this machine."""


class ProcessLauncher(Launcher):
    """The child as a plain process: killable, its own session, clean environment, rlimits."""

    name = "process"

    def wrap(self, argv: Sequence[str], workdir: str, limits: Limits) -> list[str]:
        return list(argv)


#: /etc entries a Python verifier and common tools read; the rest (shadow, ssh keys, cluster
#: credentials) stays out of the sandbox
ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "ssl",
    "ca-certificates",
    "mime.types",
    "fonts",
    "os-release",
    "debian_version",
    "timezone",
    "xdg",
    "gai.conf",
    "protocols",
    "services",
)
#: top-level system paths bound read-only (or re-created as the same symlinks)
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")


def python_read_paths() -> list[str]:
    """Host paths this interpreter and the foundry's packages live in (bound read-only):
    prefixes, import-path entries (except the current directory), the packages' folders."""
    paths: list[str] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        paths.append(p)
    paths.append(str(Path(os.path.realpath(sys.executable)).parent.parent))
    cwd = os.path.realpath(os.getcwd())
    for entry in sys.path:
        # not the current directory: it is often the home directory, and the sandbox must
        # not see it whole (a plugin run under bwrap is imported from elsewhere)
        absolute = os.path.abspath(entry or ".")
        if os.path.isdir(absolute) and os.path.realpath(absolute) != cwd:
            paths.append(absolute)
    import foundry

    for name in ("foundry", "foundry.domains", "foundry.surrogates", "foundry.simulators"):
        try:
            module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        except ImportError:
            continue
        paths.extend(getattr(module, "__path__", []))
    paths.extend(foundry.__path__)
    return paths


def module_paths(module_name: str) -> list[str]:
    """Where the top-level package of ``module_name`` lives (a plugin outside site-packages)."""
    top = module_name.split(".")[0]
    module = sys.modules.get(top)
    if module is None:
        return []
    if hasattr(module, "__path__"):
        return list(module.__path__)
    file = getattr(module, "__file__", None)
    return [str(Path(file).parent)] if file else []


def _minimal(paths: Sequence[str]) -> list[str]:
    """Existing absolute paths, realpath'd and deduplicated, without ones inside another."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    out: list[str] = []
    for p in real:
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


class BwrapLauncher(Launcher):
    """A bubblewrap sandbox per child.

    No network (its own empty network namespace), a read-only view of the system and of the
    Python environment only (not the home directory), a private /tmp and /dev/shm, the fresh
    work dir as the only writable host path, its own PID namespace (nothing outlives the
    sandbox: ``--die-with-parent``), a new session (no terminal injection), no capabilities.
    """

    name = "bwrap"

    def __init__(self, read_paths: Sequence[str] = ()) -> None:
        self.read_paths = tuple(read_paths)

    @staticmethod
    def executable() -> str:
        path = shutil.which("bwrap")
        if path is None:
            raise SetupError(
                "isolation 'bwrap' needs bubblewrap: apt-get install bubblewrap "
                "(or conda install -c conda-forge bubblewrap)"
            )
        return path

    def check(self) -> None:
        _probe(self.executable())

    def wrap(self, argv: Sequence[str], workdir: str, limits: Limits) -> list[str]:
        args = [
            self.executable(),
            "--unshare-all",
            "--unshare-user",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for entry in ETC_ENTRIES:
            path = f"/etc/{entry}"
            if os.path.lexists(path):
                args += ["--ro-bind-try", path, path]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        if limits.gpus:
            for dev in [*sorted(Path("/dev").glob("nvidia*")), Path("/dev/dri")]:
                if dev.exists():
                    args += ["--dev-bind", str(dev), str(dev)]
        system = tuple(p for p in SYSTEM_PATHS if not os.path.islink(p))
        for path in _minimal([*python_read_paths(), *self.read_paths]):
            if not any(path == s or path.startswith(s + "/") for s in system):
                args += ["--ro-bind", path, path]
        # the sandbox's root is bwrap's own tmpfs, which holds the mount points; read-only,
        # so that nothing written outside the work dir and /tmp survives into the next item
        args += ["--bind", workdir, workdir, "--remount-ro", "/", "--chdir", workdir, "--"]
        return args + list(argv)


@functools.cache
def _probe(executable: str) -> None:
    """Start one trivial sandbox; user namespaces may be disabled on this kernel."""
    try:
        done = subprocess.run(
            [
                executable,
                "--unshare-all",
                "--unshare-user",
                "--die-with-parent",
                "--ro-bind",
                "/",
                "/",
                "--",
                "/bin/true",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"bubblewrap does not start here: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise SetupError(
            "bubblewrap cannot create a sandbox here "
            f"({message[-1] if message else f'exit {done.returncode}'}); user namespaces may "
            "be disabled (sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)"
        )


def launcher_for(isolation: Isolation, read_paths: Sequence[str] = ()) -> Launcher:
    if isolation == "bwrap":
        return BwrapLauncher(read_paths)
    if isolation == "process":
        return ProcessLauncher()
    raise ValueError(f"isolation {isolation!r} has no launcher (it runs in the worker)")
