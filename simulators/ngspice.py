"""A thin wrapper of ngspice, run in-process through PySpice's ``NgSpiceShared``.

Why in-process: a SPICE evaluation of a small circuit costs about a millisecond, while starting
an ``ngspice -b`` process costs several. The price is shared, global state inside libngspice,
so this wrapper

* removes the circuit (``remcirc``) and all plots (``destroy all``) after every run; measured
  here, that keeps growth under 1 KB a simulation instead of ~19 KB without it;
* classifies ngspice's own messages itself: PySpice treats every stderr line as an error,
  including harmless notes such as "One successful gmin step", so its exceptions are not used
  as the verdict on a run;
* raises :class:`~foundry.contract.SetupError` when PySpice or libngspice is absent and
  :class:`~foundry.contract.SimulationFailed` when ngspice ran but gave no usable answer.

The wrapper is generic: it knows netlists and analyses, not domains.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from foundry.contract import SetupError, SimulationFailed

__all__ = [
    "AcSweep",
    "Analysis",
    "NgspiceRunner",
    "OperatingPoint",
    "SimulationResult",
    "Transient",
    "ngspice_available",
]

#: stderr text that means the run did not produce a trustworthy answer. ngspice reports
#: recoverable trouble as "Note:"/"Warning:" lines and then succeeds, so those are not listed.
_FATAL_PATTERNS = (
    re.compile(r"^\s*error", re.IGNORECASE),
    re.compile(r"singular", re.IGNORECASE),
    re.compile(r"aborted", re.IGNORECASE),
    re.compile(r"timestep too small", re.IGNORECASE),
    re.compile(r"no convergence", re.IGNORECASE),
    re.compile(r"not parsed", re.IGNORECASE),
    re.compile(r"unknown (model|subckt|device)", re.IGNORECASE),
    re.compile(r"could not find", re.IGNORECASE),
)


@dataclass(frozen=True)
class AcSweep:
    """Small-signal AC sweep, logarithmic in frequency (``.ac dec``)."""

    f_start_hz: float
    f_stop_hz: float
    points_per_decade: int = 50

    kind = "ac"

    def card(self) -> str:
        if not (0 < self.f_start_hz < self.f_stop_hz) or self.points_per_decade < 1:
            raise ValueError(f"bad AC sweep {self}")
        return f".ac dec {self.points_per_decade} {self.f_start_hz:.12g} {self.f_stop_hz:.12g}"


@dataclass(frozen=True)
class OperatingPoint:
    """DC operating point (``.op``)."""

    kind = "op"

    def card(self) -> str:
        return ".op"


@dataclass(frozen=True)
class Transient:
    """Transient analysis (``.tran``)."""

    step_s: float
    stop_s: float
    start_s: float = 0.0

    kind = "tran"

    def card(self) -> str:
        if not (0 < self.step_s < self.stop_s) or self.start_s < 0:
            raise ValueError(f"bad transient {self}")
        return f".tran {self.step_s:.12g} {self.stop_s:.12g} {self.start_s:.12g}"


Analysis = AcSweep | OperatingPoint | Transient


@dataclass
class SimulationResult:
    """Vectors of every analysis that ran, keyed by analysis kind ("ac", "op", "tran").

    Node voltages are keyed by lower-case node name, branch currents as ``"v1#branch"``, the
    sweep variable as ``"frequency"`` or ``"time"``. AC vectors are complex.
    """

    vectors: dict[str, dict[str, np.ndarray]]
    log: str = ""
    elapsed_s: float = 0.0

    def get(self, kind: str, name: str) -> np.ndarray:
        """One vector; SimulationFailed if ngspice did not produce it."""
        try:
            return self.vectors[kind][name.lower()]
        except KeyError:
            have = sorted(self.vectors.get(kind, {}))
            raise SimulationFailed(
                f"ngspice produced no {kind} vector {name!r} (have {have})"
            ) from None


@dataclass
class _Stats:
    simulations: int = 0
    failures: int = 0
    busy_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _quiet_pyspice_logging() -> None:
    """PySpice logs 'Unsupported Ngspice version 39' and every ngspice stderr line as an error.

    We read ngspice's messages ourselves, so only PySpice's own critical messages are kept.
    """
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)


def _load_shared() -> Any:
    _quiet_pyspice_logging()
    try:
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared
    except ImportError as exc:  # PySpice itself missing
        raise SetupError(f"PySpice is not installed: {exc}") from exc
    except OSError as exc:  # cffi could not dlopen libngspice
        raise SetupError(f"libngspice could not be loaded: {exc}") from exc
    return NgSpiceShared


def ngspice_available() -> bool:
    """Whether PySpice and libngspice load here (for skipping tests, not for control flow)."""
    try:
        NgspiceRunner().version  # noqa: B018 - property starts the engine
    except SetupError:
        return False
    return True


class NgspiceRunner:
    """One in-process ngspice engine. Keep one per worker process and reuse it.

    libngspice is a process-wide singleton, so runs are serialised by a lock.
    """

    _lock = threading.Lock()

    def __init__(self, ngspice_id: int = 0) -> None:
        self._ngspice_id = ngspice_id
        self._ng: Any = None
        self._version: str | None = None
        self.stats = _Stats()

    # -- engine ---------------------------------------------------------------------------
    def _engine(self) -> Any:
        if self._ng is None:
            shared_cls = _load_shared()
            try:
                self._ng = shared_cls.new_instance(ngspice_id=self._ngspice_id)
            except (OSError, NameError) as exc:
                raise SetupError(f"libngspice could not be started: {exc}") from exc
        return self._ng

    @property
    def version(self) -> str:
        """E.g. ``"ngspice-39"`` (PySpice's version appended) - recorded with every verdict."""
        if self._version is None:
            ng = self._engine()
            try:
                import PySpice

                pyspice = f" (PySpice {PySpice.__version__})"
            except Exception:  # pragma: no cover - version only
                pyspice = ""
            number = getattr(ng, "ngspice_version", None)
            self._version = f"ngspice-{number}{pyspice}"
        return self._version

    # -- running --------------------------------------------------------------------------
    def run(
        self, netlist: str, analyses: Sequence[Analysis], *, title: str = "foundry"
    ) -> SimulationResult:
        """Simulate ``netlist`` (elements, models, subcircuits; no analyses, no ``.end``).

        Raises SimulationFailed for parse errors, singular matrices, non-convergence and
        missing or non-finite output; SetupError if ngspice cannot be loaded.
        """
        if not analyses:
            raise ValueError("need at least one analysis")
        if re.search(r"^\s*\.end\s*$", netlist, re.IGNORECASE | re.MULTILINE):
            raise ValueError("pass the netlist without '.end'; the runner adds analyses and .end")
        text = "\n".join(
            [title.replace("\n", " ") or "foundry", netlist.strip()]
            + [a.card() for a in analyses]
            + [".end", ""]
        )
        ng = self._engine()
        with self._lock:
            t0 = time.perf_counter()
            try:
                return self._run_locked(ng, text, analyses, t0)
            finally:
                self._cleanup(ng)
                self.stats.simulations += 1
                self.stats.busy_s += time.perf_counter() - t0

    def _run_locked(
        self, ng: Any, text: str, analyses: Sequence[Analysis], t0: float
    ) -> SimulationResult:
        # PySpice raises on any "error" in stdout; ngspice's messages are judged below instead
        with contextlib.suppress(Exception):
            ng.load_circuit(text)
        load_msgs = ng.stdout + "\n" + ng.stderr
        fatal = _fatal_lines(load_msgs)
        if fatal or "error" in ng.stdout.lower():
            self.stats.failures += 1
            raise SimulationFailed(
                "ngspice rejected the netlist: " + ("; ".join(fatal) or _tail(ng.stdout))
            )
        # PySpice raises on any stderr line (even "Note:"); judged below from ngspice's messages
        with contextlib.suppress(Exception):
            ng.run()
        stderr = ng.stderr
        fatal = _fatal_lines(stderr)
        if fatal:
            self.stats.failures += 1
            raise SimulationFailed("ngspice: " + "; ".join(fatal))
        log = [load_msgs.strip(), stderr.strip()]
        vectors = self._collect(ng)
        for analysis in analyses:
            table = vectors.get(analysis.kind)
            if not table:
                self.stats.failures += 1
                raise SimulationFailed(f"ngspice produced no {analysis.kind} results")
            for name, arr in table.items():
                if arr.size == 0 or not np.all(np.isfinite(arr)):
                    self.stats.failures += 1
                    raise SimulationFailed(
                        f"{analysis.kind} vector {name!r} is empty or not finite"
                    )
        return SimulationResult(
            vectors=vectors, log="\n".join(s for s in log if s), elapsed_s=time.perf_counter() - t0
        )

    @staticmethod
    def _collect(ng: Any) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for plot_name in ng.plot_names:
            kind = plot_name.rstrip("0123456789")
            if kind == "const" or kind in out:
                continue
            plot = ng.plot(None, plot_name)
            # Vector._data is the raw numpy copy PySpice makes; to_waveform() would wrap it in
            # unit objects we do not need.
            out[kind] = {name.lower(): np.asarray(vec._data) for name, vec in plot.items()}
        return out

    @staticmethod
    def _cleanup(ng: Any) -> None:
        """Drop the circuit and its plots: ngspice otherwise keeps every one of them."""
        for command in ("remcirc", "destroy all"):
            # "no circuit loaded" after a parse failure is fine
            with contextlib.suppress(Exception):
                ng.exec_command(command)

    def close(self) -> None:
        """Forget the engine handle (libngspice itself stays loaded for the process)."""
        if self._ng is not None:
            self._cleanup(self._ng)
        self._ng = None


def _fatal_lines(text: str, limit: int = 4) -> list[str]:
    """ngspice messages that mean no usable answer; recovered "Warning:" lines are ignored."""
    found: list[str] = []
    for line in text.splitlines():
        if "warning:" in line.lower():
            continue
        if any(p.search(line) for p in _FATAL_PATTERNS):
            found.append(" ".join(line.split()))
    return list(dict.fromkeys(found))[:limit]


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text[-n:]
