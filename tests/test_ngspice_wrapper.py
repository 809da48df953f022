"""The ngspice wrapper against real ngspice: analyses, error taxonomy, state hygiene, cost."""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
from foundry.simulators import ngspice as ngs
from foundry.simulators.ngspice import AcSweep, NgspiceRunner, OperatingPoint, Transient

from foundry.contract import SetupError, SimulationFailed

RC = "V1 a 0 DC 1 AC 1\nR1 a b 1k\nC1 b 0 100n"
TAU_S = 1e3 * 100e-9
FC_HZ = 1.0 / (2 * math.pi * TAU_S)


@pytest.fixture(scope="module")
def runner() -> NgspiceRunner:
    r = NgspiceRunner()
    try:
        r.version  # noqa: B018 - starts the engine
    except SetupError as exc:  # pragma: no cover - environment without ngspice
        pytest.skip(f"ngspice unavailable: {exc}")
    return r


def test_analysis_cards_are_validated() -> None:
    assert AcSweep(1.0, 1e6, 10).card() == ".ac dec 10 1 1000000"
    assert OperatingPoint().card() == ".op"
    with pytest.raises(ValueError):
        AcSweep(10.0, 1.0).card()
    with pytest.raises(ValueError):
        Transient(step_s=1.0, stop_s=0.5).card()


def test_missing_pyspice_is_a_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PySpice.Spice.NgSpice.Shared", None)
    with pytest.raises(SetupError, match="PySpice"):
        NgspiceRunner().run(RC, [OperatingPoint()])


@pytest.mark.simulator
def test_version_names_ngspice(runner: NgspiceRunner) -> None:
    assert runner.version.startswith("ngspice-")
    assert "None" not in runner.version


@pytest.mark.simulator
def test_ac_op_and_tran_match_first_order_rc(runner: NgspiceRunner) -> None:
    res = runner.run(
        RC.replace("DC 1 AC 1", "DC 1 AC 1 PULSE(0 1 0 1n 1n 1 2)"),
        [AcSweep(FC_HZ, FC_HZ * 10, 10), OperatingPoint(), Transient(1e-6, 5 * TAU_S)],
    )
    f = np.real(res.get("ac", "frequency"))
    h = res.get("ac", "b")
    assert f[0] == pytest.approx(FC_HZ, rel=1e-9)
    assert abs(h[0]) == pytest.approx(1 / math.sqrt(2), rel=1e-6)  # -3 dB at 1/(2 pi RC)
    assert np.angle(h[0], deg=True) == pytest.approx(-45.0, abs=1e-4)
    assert float(np.real(res.get("op", "b")[0])) == pytest.approx(1.0, abs=1e-9)
    t = res.get("tran", "time")
    v = res.get("tran", "b")
    assert np.interp(TAU_S, t, v) == pytest.approx(1 - math.exp(-1), rel=0.01)


@pytest.mark.simulator
@pytest.mark.parametrize(
    ("netlist", "why"),
    [
        (RC + "\nQ9 x y", "rejected the netlist"),  # malformed element
        (RC + "\nX1 a b nosuchsubckt", "unknown subckt"),
        (RC + "\nR2 c d 1k", "singular"),  # island without a DC reference
        ("V1 a 0 DC 1\nV2 a 0 DC 2", "aborted"),  # contradictory sources: no solution
    ],
)
def test_failures_raise_simulation_failed(runner: NgspiceRunner, netlist: str, why: str) -> None:
    with pytest.raises(SimulationFailed, match=why):
        runner.run(netlist, [AcSweep(1.0, 1e6, 10)])
    # the engine is still healthy afterwards
    ok = runner.run(RC, [OperatingPoint()])
    assert float(np.real(ok.get("op", "b")[0])) == pytest.approx(1.0)


@pytest.mark.simulator
def test_missing_vector_is_simulation_failed(runner: NgspiceRunner) -> None:
    res = runner.run(RC, [OperatingPoint()])
    with pytest.raises(SimulationFailed, match="no op vector"):
        res.get("op", "nosuchnode")
    with pytest.raises(ValueError):
        runner.run(RC + "\n.end", [OperatingPoint()])
    with pytest.raises(ValueError):
        runner.run(RC, [])


def _rss_kb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


@pytest.mark.simulator
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_state_is_cleaned_between_runs_and_cost(runner: NgspiceRunner) -> None:
    """Without remcirc/destroy ngspice keeps ~19 KB a run; with them growth must stay small."""
    sweep = [AcSweep(1.0, 1e6, 100)]
    for _ in range(200):  # warm up allocator pools
        runner.run(RC, sweep)
    n = 1500
    before = _rss_kb()
    t0 = time.perf_counter()
    for _ in range(n):
        runner.run(RC, sweep)
    per_run_ms = (time.perf_counter() - t0) / n * 1e3
    growth_kb = (_rss_kb() - before) / n
    print(
        f"\nngspice RC AC sweep (601 points): {per_run_ms:.2f} ms/run, RSS {growth_kb:.2f} KB/run"
    )
    assert ngs.ngspice_available()
    assert growth_kb < 5.0
    assert per_run_ms < 20.0
