"""Coordinator overhead: candidates/s through the whole loop with a no-op domain.

Run from the repository root: ``python -m benchmarks.overhead [--quick] [--n N] [--profile]``
(``python benchmarks/overhead.py`` works too). Prints a table; not a test.

Every stage runs for real - generate, schema and rule check, batched surrogate, routing, the
SQLite ledger, ground truth in chunks, audits and calibration - but the domain costs nothing:
the payload is ``{"i": int}``, the truth is "``i`` is even", and the surrogate is right and
confident except on a 5 % "hard" slice it is unsure about. Once certified, about 85 % of the
items are decided by the surrogate; the rest (audits, hard items) go to the ground truth.

The domains live in this module and are named ``benchmarks.overhead:NoopDomain`` (and
``...:SleepyDomain``, ``...:SlowDomain``): ground-truth children and Dask workers import
them by that spec, so :func:`main` puts the repository root on ``sys.path`` and
``PYTHONPATH`` before anything starts.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from foundry.contract import Candidate, Domain, GroundTruth, Predictions, Verdict
from foundry.execution.resources import Resources

ROOT = Path(__file__).resolve().parent.parent
#: seconds spent inside the surrogate's predict, per process (read by the coordinator)
TIMERS: dict[str, float] = {"surrogate_s": 0.0}
HARD_MODULUS = 20  # i % 20 == 1: the surrogate is unsure (p_pass = 0.5)


class NoopSurrogate:
    """Right and confident, except on the hard slice; vectorised numpy."""

    def __init__(self) -> None:
        self.fitted = False

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        self.fitted = True

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        started = time.perf_counter()
        n = len(candidates)
        i = np.fromiter((c.payload["i"] for c in candidates), dtype=np.int64, count=n)
        p_pass = np.where(i % 2 == 0, 1.0 - 1e-5, 1e-5)
        p_pass[i % HARD_MODULUS == 1] = 0.5
        TIMERS["surrogate_s"] += time.perf_counter() - started
        return Predictions(n, p_pass)


class NoopGroundTruth(GroundTruth):
    """``i`` even passes; optionally sleeps ``sleep_s`` to stand in for a real verifier."""

    name = "noop"

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.sleep_s = sleep_s

    @property
    def version(self) -> str:
        return "1"

    def prepare(self, candidate: Candidate) -> int:
        return int(candidate.payload["i"])

    def execute(self, job: int, workdir: str) -> int:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return job

    def parse(self, raw: int, candidate: Candidate) -> Verdict:
        return Verdict(passed=raw % 2 == 0)


class NoopDomain(Domain):
    """A pass/fail domain whose every stage is (almost) free."""

    name = "noop"
    version = "1"
    payload_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"i": {"type": "integer"}},
        "required": ["i"],
    }
    properties = ()
    has_pass_fail = True
    gt_sleep_s: ClassVar[float] = 0.0

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        return [Candidate({"i": v}) for v in rng.integers(0, 2**62, size=n).tolist()]

    def check(self, candidate: Candidate) -> str | None:
        return None

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        i = np.fromiter((c.payload["i"] for c in candidates), dtype=np.int64, count=len(candidates))
        return ((i % 1024) / 1024.0).reshape(-1, 1)

    def surrogate(self) -> NoopSurrogate:
        return NoopSurrogate()

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return NoopGroundTruth(self.gt_sleep_s)


class SleepyDomain(NoopDomain):
    """The no-op domain with a 1 ms ground truth: the verifier should dominate."""

    name = "noop-sleepy"
    gt_sleep_s = 0.001


class SlowGroundTruth(NoopGroundTruth):
    """A 1 s verifier that says so: one item a task from the start."""

    resources = Resources(expected_cost_s=1.0, timeout_s=30.0)


class SlowDomain(NoopDomain):
    """The no-op domain with a 1 s ground truth (a DFT or MD call stands behind it)."""

    name = "noop-slow"

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return SlowGroundTruth(1.0)


# -- the measurement ------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    domain: str
    executor: str
    isolation: str
    #: candidates for this case (None: the run's --n)
    n: int | None = None
    surrogate: bool = True
    deterministic: bool = False


@dataclass
class Result:
    case: Case
    generated: int
    loop_s: float
    total_s: float
    steady_rate: float
    gt_calls: int
    surrogate_frac: float
    ledger_share: float
    surrogate_share: float
    stop_reason: str
    gt_walltime_s: float
    workers: int
    chunk_size: int

    @property
    def busy(self) -> float:
        """Verifier seconds over worker seconds of the loop: how busy the workers were."""
        return self.gt_walltime_s / max(self.workers * self.loop_s, 1e-9)

    @property
    def verifier_limit(self) -> float:
        """Candidates/s at which the workers would be saturated by the verifier alone."""
        if self.gt_walltime_s <= 0.01 * self.loop_s * self.workers:
            return float("inf")
        return self.workers * self.generated / self.gt_walltime_s


def _timed(fn: Callable[..., Any], acc: list[float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - started

    return wrapper


def _steady_rate(samples: list[tuple[float, int]], n: int) -> float:
    """Generation rate between 20 % and 90 % of the budget (no start-up, no drain)."""
    lo = next((s for s in samples if s[1] >= 0.2 * n), None)
    hi = next((s for s in samples if s[1] >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return float("nan")
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def run_case(case: Case, n: int, workdir: Path, n_workers: int | None) -> Result:
    n = case.n or n
    from foundry.config import load_config
    from foundry.loop import RunStats, Scheduler

    module = importlib.import_module("benchmarks.overhead")  # the copy the children import
    module.TIMERS["surrogate_s"] = 0.0
    cfg = load_config(
        None,
        domain=case.domain,
        run_dir=str(workdir / case.label.replace(" ", "_")),
        executor=case.executor,
        isolation=case.isolation,
        n_workers=n_workers,
        progress=False,
        surrogate=case.surrogate,
        deterministic=case.deterministic,
        budget={"max_candidates": n},
    )
    samples: list[tuple[float, int]] = []

    def progress(stats: RunStats) -> None:
        if not samples or samples[-1][1] != stats.generated:
            samples.append((stats.elapsed_s, stats.generated))

    ledger_s = [0.0]
    started = time.perf_counter()
    scheduler = Scheduler(cfg, progress=progress)
    for name in (
        "insert_examples",
        "update_ground_truth",
        "event",
        "add_monitor",
        "add_calibration",
        "add_surrogate",
        "set_meta",
    ):
        setattr(scheduler.ledger, name, _timed(getattr(scheduler.ledger, name), ledger_s))
    # the workers the cluster really started, not a guess at how the executor sizes itself
    client = getattr(scheduler.executor, "client", None)
    workers = len(client.scheduler_info(n_workers=-1)["workers"]) if client is not None else 1
    stats = scheduler.run()
    total = time.perf_counter() - started
    decided = stats.surrogate_accepted + stats.surrogate_rejected
    loop = max(stats.elapsed_s, 1e-9)
    return Result(
        case=case,
        generated=stats.generated,
        loop_s=stats.elapsed_s,
        total_s=total,
        steady_rate=_steady_rate(samples, n),
        gt_calls=stats.gt_calls,
        surrogate_frac=decided / max(stats.generated, 1),
        ledger_share=ledger_s[0] / loop,
        surrogate_share=module.TIMERS["surrogate_s"] / loop,
        stop_reason=stats.stop_reason,
        gt_walltime_s=stats.gt_walltime_s,
        workers=workers,
        chunk_size=stats.chunk_size,
    )


CASES = {
    "a": Case("a: local dask, process", "benchmarks.overhead:NoopDomain", "local", "process"),
    "b": Case("b: inline, none", "benchmarks.overhead:NoopDomain", "inline", "none"),
    "c": Case("c: local dask, 1 ms GT", "benchmarks.overhead:SleepyDomain", "local", "process"),
    "e": Case(
        "e: as a, deterministic",
        "benchmarks.overhead:NoopDomain",
        "local",
        "process",
        deterministic=True,
    ),
    "d": Case(
        "d: local dask, 1 s GT, GT only",
        "benchmarks.overhead:SlowDomain",
        "local",
        "process",
        n=60,
        surrogate=False,
    ),
}


def print_table(results: list[Result], target: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"foundry loop overhead (target >= {target:,.0f} candidates/s)")
    for col in (
        "config",
        "candidates",
        "loop s",
        "total s",
        "cand/s loop",
        "cand/s steady",
        "GT calls",
        "surrogate-decided",
        "chunk",
        "verifier limit",
        "workers busy",
        "ledger",
        "surrogate",
    ):
        table.add_column(col, justify="left" if col == "config" else "right")
    for r in results:
        rate = r.generated / max(r.loop_s, 1e-9)
        table.add_row(
            r.case.label,
            f"{r.generated:,}",
            f"{r.loop_s:.2f}",
            f"{r.total_s:.2f}",
            f"{rate:,.0f}",
            f"{r.steady_rate:,.0f}",
            f"{r.gt_calls:,}",
            f"{r.surrogate_frac:.1%}",
            f"{r.chunk_size:,}",
            "-" if r.verifier_limit == float("inf") else f"{r.verifier_limit:,.0f}",
            f"{r.busy:.1%}",
            f"{r.ledger_share:.1%}",
            f"{r.surrogate_share:.1%}",
        )
    Console(width=max(Console().width, 150)).print(table)
    print(
        "loop s: Scheduler.run() (excludes cluster start-up/shut-down, includes the final drain);"
        " total s: construction + run + close.\nsteady: generation rate between 20 % and 90 %"
        " of the budget. chunk: items per ground-truth task at the end. verifier limit: the rate"
        " (cand/s) at which\nthe verifier alone would saturate the workers (workers x candidates /"
        " verifier seconds; '-' when negligible). workers busy: verifier seconds / (workers x"
        " loop s).\nledger, surrogate: share of loop s spent in Ledger writes, in the"
        " surrogate's predict. d runs 60 candidates, all to the ground truth (target: busy"
        " >= 90 %)."
    )


def _profile(n: int, workdir: Path, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run_case(CASES["b"], n, workdir, None)
    profiler.disable()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
        print(f"\n== cProfile of config b, sorted by {key} ==")
        print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="candidates per config")
    parser.add_argument("--quick", action="store_true", help="20k candidates per config")
    parser.add_argument(
        "--configs", default="abcde", help="which of a, b, c, d, e to run (default abcde)"
    )
    parser.add_argument("--n-workers", type=int, default=None, help="Dask workers (default cores)")
    parser.add_argument("--target", type=float, default=20_000.0)
    parser.add_argument("--profile", action="store_true", help="cProfile config b instead")
    args = parser.parse_args(argv)
    n = args.n or (20_000 if args.quick else 200_000)

    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    with tempfile.TemporaryDirectory(prefix="foundry-overhead-") as tmp:
        if args.profile:
            _profile(n, Path(tmp), 30)
            return 0
        results = []
        for key in args.configs:
            case = CASES[key]
            count = case.n or n
            print(f"running {case.label}, {count:,} candidates ...", file=sys.stderr, flush=True)
            results.append(run_case(case, n, Path(tmp), args.n_workers))
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}")
    print_table(results, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
