"""The program side of the Python sandbox: the fork server, the runner, the value codec.

Standard library only, and run as its own fresh interpreter (``python -I -c <this file>``),
never imported by the server process from the foundry: a runner is forked from a process that
has seen no candidate, no test and no other program, so there is nothing in its memory to
read. See :mod:`foundry.simulators.pysandbox` for the whole design; in short, per check:

* the **fork server** gets a request on its control socket (SOCK_SEQPACKET: one message per
  request, so a judge killed half way cannot leave a partial one) with the two pipe ends of
  the runner and its limits, forks the **keeper** and answers with its pid;
* the keeper enters new user, PID, mount, network and IPC namespaces and forks the
  **runner**, pid 1 of the new PID namespace: when the runner dies, every process the program
  started dies with it; the keeper only waits (killing the keeper kills the runner, by
  ``PR_SET_PDEATHSIG``);
* the runner mounts a fresh, size-limited tmpfs over /tmp, /dev/shm and its work dir (nothing
  another candidate wrote is visible, nothing it writes outlives it), a /proc of its own PID
  namespace, sets rlimits, drops every capability, reads its program, executes it and then
  answers calls: ``{"call": name, "args": [...]}`` -> ``{"value": ...}`` or
  ``{"raised": type, "message": ...}``. Values cross as plain data only (see
  :func:`encode_value`): a returned object can never run code in the judge.
"""

from __future__ import annotations

import array
import base64
import contextlib
import ctypes
import errno
import gc
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

#: most bytes one frame may carry (a program, or one call's arguments or value)
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: deepest nesting of a value that may cross
MAX_DEPTH = 64
_HEADER = struct.Struct("!I")

# -- the value codec -------------------------------------------------------------------------


class UnsupportedValue(TypeError):
    """A value that cannot cross as plain data (an object, a function, a subclass)."""


def encode_value(value: Any, depth: int = 0) -> Any:
    """Plain data as tagged JSON. Exact types only: an ``int`` subclass with an ``__eq__``
    that always says yes is refused, not passed on to be compared."""
    if depth > MAX_DEPTH:
        raise UnsupportedValue(f"value nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:  # hex: Python refuses decimal strings above 4,300 digits, not hex ones
        return {"i": hex(value)}
    if kind is float:
        return {"f": value.hex()}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    if kind is bytes:
        return {"b": base64.b64encode(value).decode()}
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        tag = {list: "l", tuple: "t", set: "s", frozenset: "z"}[kind]
        return {tag: [encode_value(v, depth + 1) for v in value]}
    if kind is dict:
        return {
            "d": [
                [encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in value.items()
            ]
        }
    raise UnsupportedValue(f"a {kind.__qualname__} cannot cross the sandbox (plain data only)")


def decode_value(data: Any, depth: int = 0) -> Any:
    """The inverse of :func:`encode_value`; anything else is a :class:`ValueError`."""
    if depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH}")
    if data is None or type(data) is bool or type(data) is str:
        return data
    if type(data) is not dict or len(data) != 1:
        raise ValueError("not an encoded value")
    ((tag, body),) = data.items()
    if tag == "i" and type(body) is str and len(body) <= 1_000_000:
        return int(body, 16)
    if tag == "f" and type(body) is str:
        return float.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2:
        return complex(float.fromhex(body[0]), float.fromhex(body[1]))
    if tag == "b" and type(body) is str:
        return base64.b64decode(body, validate=True)
    if tag in ("l", "t", "s", "z") and type(body) is list:
        items = [decode_value(v, depth + 1) for v in body]
        return {"l": list, "t": tuple, "s": set, "z": frozenset}[tag](items)
    if tag == "d" and type(body) is list:
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("not an encoded dict item")
            out[decode_value(pair[0], depth + 1)] = decode_value(pair[1], depth + 1)
        return out
    raise ValueError(f"unknown value tag {tag!r}")


# -- frames on pipes -------------------------------------------------------------------------


def send(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_FRAME_BYTES:
        raise UnsupportedValue(f"a message of {len(data)} bytes is above {MAX_FRAME_BYTES}")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def receive(fd: int, deadline: float) -> dict[str, Any]:
    """One frame, by ``deadline`` (``time.monotonic()``). Raises TimeoutError, EOFError (the
    peer is gone), or ValueError (not a frame)."""
    header = _read_exactly(fd, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes is above {MAX_FRAME_BYTES}")
    message = json.loads(_read_exactly(fd, size, deadline))
    if type(message) is not dict:
        raise ValueError("frame is not an object")
    return message


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    chunks, missing = [], size
    while missing:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# -- the runner ------------------------------------------------------------------------------

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount_tmpfs(path: str, size_kb: int) -> None:
    flags = _MS_NOSUID | _MS_NODEV
    options = f"size={size_kb}k,mode=1777".encode()
    _check(_LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", flags, options), f"mount {path}")


def _drop_capabilities() -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    _check(_LIBC.capset(ctypes.byref(header), data), "capset")
    _check(_LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _set_limit(which: int, value: int, grace: int = 0) -> None:
    """Soft limit ``value``, hard limit ``value + grace`` (never above the current hard one)."""
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    top = value + grace
    resource.setrlimit(which, (value, top if hard == resource.RLIM_INFINITY else min(top, hard)))


def _vm_data_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1])
    return 0


def _keep_only(fds: tuple[int, ...]) -> None:
    """Close every inherited descriptor but ``fds`` (the candidate must find none)."""
    top = max(fds) + 1
    os.closerange(0, min(fds))
    for fd in range(min(fds) + 1, top):
        if fd not in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.closerange(top, 1 << 16)


def _runner(request: dict[str, Any], req_fd: int, resp_fd: int) -> None:
    """Set the runner up; if that fails, say so on the response pipe (a harness failure, not
    the program's), then load the program and answer calls."""
    try:
        timeout_s = _set_up_runner(request, req_fd, resp_fd)
    except BaseException as exc:
        send(resp_fd, {"setup_failed": f"{type(exc).__name__}: {_text(exc)}"})
        return
    _serve(req_fd, resp_fd, timeout_s)


def _set_up_runner(request: dict[str, Any], req_fd: int, resp_fd: int) -> float:
    limits = request["limits"]
    _check(_LIBC.unshare(_CLONE_NEWNS | _CLONE_NEWIPC), "unshare")
    size_kb = int(limits["tmpfs_kb"])
    workdir = request["workdir"]
    for path in ("/tmp", "/dev/shm"):
        if os.path.isdir(path):
            _mount_tmpfs(path, size_kb)
    if os.path.isdir(workdir):  # not under /tmp: hide the verifier's own work dir, too
        _mount_tmpfs(workdir, size_kb)
    else:  # under /tmp: the same path, empty, in the fresh tmpfs
        os.makedirs(workdir, mode=0o700)
    # a /proc of the runner's own PID namespace, where the kernel allows it (not under
    # bubblewrap, whose /proc has read-only sub-mounts): else the outer one lists the judge
    # and the spawner, which the runner can neither signal (another PID namespace) nor open
    # (not dumpable, and it has no capabilities)
    proc_flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _LIBC.mount(b"proc", b"/proc", b"proc", proc_flags, None)
    os.chdir(workdir)
    _keep_only((req_fd, resp_fd))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open("/tmp/.output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in (null, out):
        if fd > 2:
            os.close(fd)
    memory_kb = int(limits["memory_mb"]) * 1024
    _set_limit(resource.RLIMIT_DATA, (_vm_data_kb() + memory_kb) * 1024)
    # a second between the soft and the hard CPU limit: the program gets SIGXCPU (a CPU-time
    # verdict) rather than the SIGKILL a hard limit sends (a "crash" that says nothing)
    _set_limit(resource.RLIMIT_CPU, max(1, int(limits["cpu_time_s"] + 0.999)), grace=1)
    _set_limit(resource.RLIMIT_FSIZE, int(limits["output_kb"]) * 1024)
    _set_limit(resource.RLIMIT_NPROC, int(limits["max_processes"]))
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_NOFILE, 256)
    _drop_capabilities()
    os.environ.clear()
    os.environ.update(
        {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    )
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = sys.stdout
    return float(limits["timeout_s"])


def _serve(req_fd: int, resp_fd: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    message = receive(req_fd, deadline)
    namespace: dict[str, Any] = {"__name__": "__candidate__", "__builtins__": __builtins__}
    try:
        code = compile(message["program"], "<program>", "exec")
        exec(code, namespace)
    except BaseException as exc:  # SystemExit too: the program ended before the tests ran
        reply = {"loaded": False, "raised": type(exc).__name__, "message": _text(exc)}
        if isinstance(exc, MemoryError):
            reply["limit"] = "memory limit"
        elif isinstance(exc, OSError) and exc.errno in _LIMIT_ERRNOS:
            reply["limit"] = _LIMIT_ERRNOS[exc.errno]
        send(resp_fd, reply)
        return
    names = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("__"))
    send(resp_fd, {"loaded": True, "names": names})
    while True:
        try:
            call = receive(req_fd, deadline)
        except (EOFError, TimeoutError):
            return
        function = namespace.get(call.get("call", ""))
        try:
            args = decode_value(call["args"])
            kwargs = decode_value(call["kwargs"])
            result = function(*args, **kwargs)  # type: ignore[misc]
            reply: dict[str, Any] = {"value": encode_value(result)}
        except UnsupportedValue as exc:
            reply = {"unsupported": _text(exc)}
        except BaseException as exc:  # the program's exception (SystemExit, too) is an answer
            reply = {"raised": type(exc).__name__, "message": _text(exc)}
            if isinstance(exc, OSError) and exc.errno in _LIMIT_ERRNOS:
                reply["limit"] = _LIMIT_ERRNOS[exc.errno]
        try:
            send(resp_fd, reply)
        except UnsupportedValue as exc:
            send(resp_fd, {"unsupported": _text(exc)})


#: errors that mean a sandbox limit was reached, not that the program is wrong as such
_LIMIT_ERRNOS = {
    errno.EFBIG: "output limit",
    errno.ENOSPC: "disk limit (private tmpfs full)",
    errno.EAGAIN: "process limit",
    errno.EMFILE: "open-file limit",
}


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:500]
    except BaseException:
        return "(unprintable)"


# -- the judge ---------------------------------------------------------------------------------


class RunnerGone(Exception):
    """The runner stopped answering; ``how`` is ``timeout``, ``crash:<detail>`` or
    ``resource:<detail>``."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


class Undecidable(Exception):
    """The harness cannot run this test faithfully (an argument that is not plain data)."""


class CandidateError(Exception):
    """The program raised an exception that is not a built-in one (re-raised in the judge)."""


#: Built-in exceptions the judge re-raises as themselves (a test may expect one); anything
#: else, and SystemExit/KeyboardInterrupt/GeneratorExit, arrives as CandidateError.
_REPLAYABLE = {
    name: cls
    for name, cls in vars(__import__("builtins")).items()
    if isinstance(cls, type) and issubclass(cls, Exception)
}
_BUILTINS = frozenset(dir(__import__("builtins")))
_RESOURCE_SIGNALS = {signal.SIGXCPU: "CPU-time limit", signal.SIGXFSZ: "output limit"}


class Runner:
    """The judge's end of one runner: its pipes, and the spawner that knows how it ended."""

    def __init__(self, spawner: Spawner, req_w: int, resp_r: int, deadline: float) -> None:
        self.spawner, self.req_w, self.resp_r, self.deadline = spawner, req_w, resp_r, deadline
        #: what the program last answered (a failed assert's reason shows it)
        self.last_answer = ""

    def send(self, message: dict[str, Any]) -> None:
        try:
            send(self.req_w, message)
        except OSError:
            raise RunnerGone(self.how_it_ended()) from None

    def receive(self) -> dict[str, Any]:
        try:
            return receive(self.resp_r, self.deadline)
        except TimeoutError:
            raise RunnerGone("timeout") from None
        except (EOFError, ValueError, OSError):
            raise RunnerGone(self.how_it_ended()) from None

    def how_it_ended(self) -> str:
        code = self.spawner.exit_code(self.deadline)
        if code is None:
            return "timeout"
        if code >= 0:
            return f"crash:ended its process (exit status {code})"
        sig = signal.Signals(-code)
        if sig in _RESOURCE_SIGNALS:
            return f"resource:{_RESOURCE_SIGNALS[sig]}"
        return f"crash:was killed by {sig.name}"

    def close(self) -> None:
        for fd in (self.req_w, self.resp_r):
            with contextlib.suppress(OSError):
                os.close(fd)


class Proxy:
    """A function of the program, as the tests see it."""

    def __init__(self, runner: Runner, name: str) -> None:
        self._runner = runner
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            message = {
                "call": self.__name__,
                "args": encode_value(list(args)),
                "kwargs": encode_value(kwargs),
            }
        except UnsupportedValue as exc:
            raise Undecidable(f"a test passes {exc} to {self.__name__}") from None
        self._runner.send(message)
        reply = self._runner.receive()
        if "value" in reply:
            try:
                value = decode_value(reply["value"])
            except (ValueError, TypeError, OverflowError) as exc:
                raise RunnerGone(f"crash:sent a malformed value ({exc})") from None
            self._runner.last_answer = f"{self.__name__} returned {_short_repr(value)}"
            return value
        if "unsupported" in reply:
            raise CandidateError(f"{self.__name__} returned {reply['unsupported']}")
        name, text = str(reply.get("raised", "")), str(reply.get("message", ""))
        if name == "MemoryError":
            raise RunnerGone(f"resource:memory limit (MemoryError in {self.__name__})")
        if reply.get("limit"):
            raise RunnerGone(f"resource:{reply['limit']} ({name} in {self.__name__}: {text})")
        cls = _REPLAYABLE.get(name)
        raise cls(text) if cls is not None else CandidateError(f"{name}: {text}")


def report(status: str, reason: str, total: int, passed: int, test: str = "") -> dict[str, Any]:
    return {
        "status": status,
        "reason": reason[:500],
        "tests_total": total,
        "tests_passed": passed,
        "failed_test": test,
    }


def run_tests(runner: Runner, task: dict[str, Any]) -> dict[str, Any]:
    """Load the program in the runner, then run the setup and each test here."""
    tests = [(str(t["name"]), str(t["source"])) for t in task["tests"]]
    setup, n = str(task.get("setup", "")), len(tests)
    try:
        runner.send({"program": task["program"]})
        hello = runner.receive()
    except RunnerGone as gone:
        return _gone(gone, n, 0, "while loading the program")
    if "setup_failed" in hello:
        return report("error", f"the runner could not be set up: {hello['setup_failed']}", n, 0)
    if not hello.get("loaded") and hello.get("limit"):
        what = f"{hello['limit']} ({hello.get('raised')}: {hello.get('message', '')})"
        return report("resource", f"{what} while loading the program", n, 0)
    if not hello.get("loaded"):
        raised = str(hello.get("raised", "an exception"))
        what = "exited" if raised == "SystemExit" else f"raised {raised}"
        return report(
            "crash", f"the program {what} while loading: {hello.get('message', '')}", n, 0
        )
    namespace: dict[str, Any] = {"__name__": "__test__"}
    entry = str(task.get("entry_point", ""))
    for name in hello.get("names", ()):
        # a program's ``abs`` or ``sorted`` would answer for the tests' own calls of them:
        # builtins are never shadowed, but for the entry point the record names
        if (
            isinstance(name, str)
            and name.isidentifier()
            and (name not in _BUILTINS or name == entry)
        ):
            namespace[name] = Proxy(runner, name)
    sources = {"setup": setup, **dict(tests)}
    if setup:
        try:
            exec(compile(setup, "<test:setup>", "exec"), namespace)
        except RunnerGone as gone:
            return _gone(gone, n, 0, "in the test setup")
        except Undecidable as exc:
            return report("error", f"cannot run the test setup: {exc}", n, 0)
        except BaseException as exc:
            return report(
                "fail",
                f"the test setup failed{_failing_line(exc, sources)}: {_describe(exc)}",
                n,
                0,
            )
    passed = 0
    for name, source in tests:
        try:
            exec(compile(source, f"<test:{name}>", "exec"), namespace)
        except RunnerGone as gone:
            return _gone(gone, n, passed, f"in {name}", name)
        except Undecidable as exc:
            return report("error", f"cannot check {name}: {exc}", n, passed, name)
        except BaseException as exc:  # an assert, the program's exception, SystemExit in a test
            what = _describe(exc)
            if isinstance(exc, AssertionError) and runner.last_answer:
                what = f"{what} ({runner.last_answer})"
            where = _failing_line(exc, sources)
            return report("fail", f"{name} failed{where}: {what}", n, passed, name)
        passed += 1
    return report("pass", f"passed {passed}/{n} tests", n, passed)


def _gone(gone: RunnerGone, n: int, passed: int, where: str, test: str = "") -> dict[str, Any]:
    kind, _, detail = gone.how.partition(":")
    if kind == "timeout":
        return report("timeout", f"no answer within the time limit {where}", n, passed, test)
    if kind == "resource":
        return report("resource", f"{detail} {where}", n, passed, test)
    return report("crash", f"the program {detail or 'died'} {where}", n, passed, test)


def _failing_line(exc: BaseException, sources: dict[str, str]) -> str:
    """`` at line k: <source line>`` of the innermost test frame, for the reason."""
    tb = exc.__traceback__
    frame_file, lineno = "", 0
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith("<test:"):
            frame_file, lineno = name, tb.tb_lineno
        tb = tb.tb_next
    if not frame_file:
        return ""
    part = frame_file[len("<test:") : -1]
    lines = sources.get(part, "").splitlines()
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return f" at line {lineno}{' of the test setup' if part == 'setup' else ''}: {text[:200]}"


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _describe(exc: BaseException) -> str:
    text = _text(exc)
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


# -- the spawner: pid 1 of the runners' namespaces ---------------------------------------------


class SpawnerGone(Exception):
    """The spawner died or stopped answering: the judge cannot go on."""


class Spawner:
    """The judge's handle on the spawner, over a SOCK_SEQPACKET socket (one message each)."""

    def __init__(self, control: socket.socket, pid: int) -> None:
        self.control, self.pid = control, pid
        self._exit: int | None = None

    @classmethod
    def start(cls) -> Spawner:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                _enter_namespaces(theirs)
            finally:
                os._exit(0)
        theirs.close()
        spawner = cls(ours, pid)
        if spawner._next(time.monotonic() + 60.0).get("op") != "ready":
            raise SpawnerGone("the spawner did not start")
        return spawner

    def _next(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.control], [], [], left)[0]:
            raise TimeoutError
        data = self.control.recv(1 << 12)
        if not data:
            raise SpawnerGone("the spawner is gone")
        message = json.loads(data)
        if message.get("op") == "exit":
            self._exit = int(message["code"])
        return message

    def spawn(self, limits: dict[str, Any], workdir: str, req_r: int, resp_w: int) -> None:
        self._exit = None
        body = json.dumps({"op": "spawn", "limits": limits, "workdir": workdir}).encode()
        fds = array.array("i", [req_r, resp_w]).tobytes()
        self.control.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        self._await("spawned", time.monotonic() + 30.0)

    def _await(self, op: str, deadline: float) -> None:
        try:
            while self._next(deadline).get("op") != op:
                pass
        except TimeoutError:
            raise SpawnerGone(f"the spawner did not answer ({op})") from None

    def exit_code(self, deadline: float) -> int | None:
        """How the runner ended (the waitstatus as an exit code), or None by ``deadline``."""
        try:
            while self._exit is None:
                self._next(min(deadline, time.monotonic() + 1.0))
        except TimeoutError:
            return None
        return self._exit

    def close(self) -> None:
        """Stop the spawner (it kills what is left) and wait for it, so that the CPU time of
        every runner is accounted to this process's children."""
        self.control.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def reset(self) -> None:
        """Kill every process in the runners' namespace (the runner, whatever it started)."""
        self.control.send(b'{"op": "reset"}')
        self._await("clean", time.monotonic() + 30.0)


def _enter_namespaces(control: socket.socket) -> None:
    """New user, PID, network and IPC namespaces; the spawner is pid 1 there. This process
    only waits for it (and dies with the judge, taking the spawner with it)."""
    outer_uid, outer_gid = os.getuid(), os.getgid()
    _check(_LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    namespaces = _CLONE_NEWUSER | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC
    try:
        _check(_LIBC.unshare(namespaces), "unshare")
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{outer_uid} {outer_uid} 1"),
            ("gid_map", f"{outer_gid} {outer_gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError as exc:
        control.send(json.dumps({"op": "failed", "error": str(exc)}).encode())
        return
    pid = os.fork()
    if pid == 0:
        try:
            _check(_LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
            _check(_LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
            serve_spawns(control)
        finally:
            os._exit(0)
    control.close()
    os.waitpid(pid, 0)


def serve_spawns(control: socket.socket) -> None:
    """The spawner's loop: fork a runner per ``spawn`` (its two pipe ends come with the
    message), report its exit, kill everything on ``reset``. As pid 1 of the namespace it
    cannot be signalled from inside (only SIGCHLD has a handler, and that only wakes it)."""
    for name in WARM_MODULES:
        __import__(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    gc.collect()
    gc.freeze()  # what is loaded now is never scanned (so never copied) by a runner's GC
    control.send(b'{"op": "ready"}')
    runner = 0
    while True:
        ready = select.select([control, wake_r], [], [])[0]
        if wake_r in ready:
            os.read(wake_r, 1 << 12)
        while True:  # reap: the runner, and orphans re-parented to pid 1
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            if pid == runner:
                runner = 0
                code = os.waitstatus_to_exitcode(status)
                control.send(json.dumps({"op": "exit", "code": code}).encode())
        if control not in ready:
            continue
        fds = array.array("i")
        data, ancillary, _flags, _addr = control.recvmsg(1 << 16, socket.CMSG_LEN(2 * fds.itemsize))
        if not data:
            _kill_all()
            return
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        message = json.loads(data)
        if message.get("op") == "reset":
            _kill_all()
            runner = 0
            control.send(b'{"op": "clean"}')
        elif message.get("op") == "spawn" and len(fds) == 2:
            runner = os.fork()
            if runner == 0:
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    control.close()
                    _runner(message, fds[0], fds[1])
                finally:
                    os._exit(70)
            control.send(b'{"op": "spawned"}')
        for fd in fds:
            os.close(fd)


def _kill_all() -> None:
    """SIGKILL to every process of the namespace but this one, and reap them all."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


# -- the judge ---------------------------------------------------------------------------------


def serve_checks(task_fd: int, report_fd: int) -> None:
    """The judge's loop: per check, a request and a task from the verifier, a runner from the
    spawner, the tests in a fresh namespace, the report back. Tests the verifier does not
    trust (``isolate_tests``: a user's records bring their own) run in a fork of this process,
    so that whatever they do to the interpreter (a patched builtin, a rebound module) ends
    with their check; trusted tests (the domain's generated tasks, its reservoir) run here,
    without the fork's cost."""
    _check(_LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")
    try:
        spawner = Spawner.start()
    except (SpawnerGone, OSError, ValueError) as exc:
        send(report_fd, report("error", f"cannot start the runners' namespaces: {exc}", 0, 0))
        return
    gc.collect()
    gc.freeze()  # a check's fork then copies fewer pages for the collector's sake
    while True:
        try:
            request = receive(task_fd, time.monotonic() + 365 * 86400.0)
            task = receive(task_fd, time.monotonic() + 60.0)
        except (EOFError, TimeoutError, ValueError):
            spawner.close()
            return
        try:
            if request.get("isolate_tests", True):
                result = _check_in_fork(spawner, request, task)
            else:
                result = check_one(spawner, request, task)
        except (SpawnerGone, OSError) as exc:
            send(report_fd, report("error", str(exc), len(task.get("tests", ())), 0))
            return
        send(report_fd, result)


def _check_in_fork(spawner: Spawner, request: dict[str, Any], task: dict[str, Any]) -> dict:
    """``check_one`` in a forked process, its report handed back over a pipe (a fork killed
    once its report is out - the verifier sweeps what an item leaves - costs nothing)."""
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(result_r)
            gc.disable()
            send(result_w, check_one(spawner, request, task))
        finally:
            os._exit(0)
    os.close(result_w)
    try:
        return receive(result_r, time.monotonic() + 365 * 86400.0)
    except (EOFError, ValueError, OSError):
        _, status = os.waitpid(pid, 0)
        spawner.reset()  # clear the namespace of what the dead check left
        code = os.waitstatus_to_exitcode(status)
        return report("error", f"the judge's check process ended ({code})", 0, 0)
    finally:
        os.close(result_r)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def check_one(spawner: Spawner, request: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    limits = request["limits"]
    deadline = time.monotonic() + float(limits["timeout_s"])
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    try:
        spawner.spawn(limits, str(request["workdir"]), req_r, resp_w)
    finally:
        os.close(req_r)
        os.close(resp_w)
    runner = Runner(spawner, req_w, resp_r, deadline)
    try:
        return run_tests(runner, task)
    except (RunnerGone, SpawnerGone):
        raise
    except BaseException as exc:  # the harness's own failure: no verdict
        return report("error", f"the judge failed: {_describe(exc)}", 0, 0)
    finally:
        runner.close()
        spawner.reset()


#: modules a typical program imports, loaded once so that no runner pays for them
WARM_MODULES = (
    "math",
    "re",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "typing",
    "random",
    "statistics",
    "fractions",
    "decimal",
    "operator",
    "copy",
    "datetime",
    "hashlib",
    "json",
)


def main() -> None:
    serve_checks(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
