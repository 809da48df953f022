"""Math domain: proof checks per second with warm checkers against one prover process per
check, and the certified two-tier loop against checking everything - side by side, one run.

Run from the repository root (Coq and bubblewrap installed)::

    python -m benchmarks.math            # ~10 min on 2 cores
    python -m benchmarks.math --quick    # a smoke run

Part 1, checks per second per core on small lemmas: the domain's generated theorems (default
steering: a third mutated into plausibly false statements, some with the wrong tactic) with
their tactic scripts, the same for every harness:

* ``coqc per check``: one ``coqc`` process per check on a file with the imports, the theorem,
  its proof, ``Qed`` and ``Print Assumptions`` - how a checker without warm state works
  (``--cold-workers`` processes at once, unsandboxed);
* ``foundry, warm``: the execution plane as a run uses it - one warm verifier child per core
  in bubblewrap, each holding a ``coqidetop`` with the imports loaded once, reset between
  checks; chunks of 32.

The soundness check dominates: ``Print Assumptions`` walks every lemma a proof uses, and
Coq does not memoise it across calls (~0.25 s after a ``lia``, milliseconds after
``simpl``/``induction``); the table splits the rate by the proof's first tactic.

Part 2, the loop (Dask LocalCluster, SQLite ledger, rule layer in a guarded child) on the
generated theorems: ``checker only`` proves every candidate; ``certified`` screens with the
proof-success surrogate and releases on its word only under per-slice certificates (alpha,
delta); a fresh check of a sample of what the surrogate released measures its error per slice.
The headline is verified examples per CPU second (the machine's busy time, from /proc/stat:
the prover runs in a sandbox whose processes are killed, not reaped) and its ratio to checker
only. Prints tables; not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from foundry.contract import Candidate

from ._twotier import (
    BenchDomain,
    compare_loops,
    machine_busy_s,
    top_tier_verdict,
)

#: warm checks per second per core on small lemmas (issue: >= 10)
CHECKS_PER_CORE_TARGET = 10.0


def _workload(n: int, seed: int) -> list[dict[str, Any]]:
    from foundry.domains.math import MathDomain

    domain = MathDomain()
    cands = domain.generate(n, np.random.default_rng(seed), domain.steering_defaults)
    return [c.payload for c in cands if domain.check(c) is None]


def _first_tactic(payload: dict[str, Any]) -> str:
    """The tactic a table row is filed under: an arithmetic decision procedure if the script
    calls one (their soundness check dominates), else its first tactic past intros/simpl."""
    from foundry.simulators.coq import sentences

    words = re.findall(r"[A-Za-z_][\w']*", " ".join(sentences(payload["proof"])))
    skip = {"intros", "intro", "simpl", "try", "repeat", "first", "in", "as", "with"}
    words = [w for w in words if w not in skip and len(w) > 2]  # not variable names
    heavy = [w for w in words if w in ("lia", "nia", "ring", "lra", "field")]
    return heavy[0] if heavy else (words[0] if words else "?")


# -- part 1 -----------------------------------------------------------------------------------


def _coqc_once(payload: dict[str, Any], tmp: str, k: int) -> bool:
    """One check the cold way: a file, ``coqc``, the exit code and ``Print Assumptions``."""
    path = Path(tmp) / f"c{k}.v"
    imports = " ".join(payload.get("imports", []))
    head = f"Require Import {imports}.\n" if imports else ""
    path.write_text(
        f"{head}Theorem t : {payload['statement']}.\nProof.\n{payload['proof']}\nQed.\n"
        "Print Assumptions t.\n"
    )
    done = subprocess.run(
        ["coqc", "-q", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp
    )
    return done.returncode == 0 and "Closed under the global context" in done.stdout


def _cold_rate(payloads: list[dict[str, Any]], workers: int) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory(prefix="foundry-bench-coqc-") as tmp:
        cpu0, wall0 = machine_busy_s(), time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            ok = list(pool.map(lambda kp: _coqc_once(kp[1], tmp, kp[0]), enumerate(payloads)))
        wall, cpu = time.perf_counter() - wall0, machine_busy_s() - cpu0
    return len(payloads) / wall, sum(ok), cpu / len(payloads) * 1e3


def _warm_rate(
    payloads: list[dict[str, Any]], workers: int
) -> tuple[float, int, float, dict[str, list[float]]]:
    from foundry.domains.math import MathDomain

    from foundry.execution.host import ChildHost
    from foundry.execution.spec import VerifierSpec

    gt = MathDomain().ground_truth()
    spec = VerifierSpec(
        "foundry.domains.math:MathDomain", "{}", None, gt.resources, "bwrap", gt.sandbox_paths
    )
    candidates = [Candidate(p) for p in payloads]
    hosts = [ChildHost(spec) for _ in range(workers)]
    for h in hosts:  # start-up (sandbox, prover, imports) is paid once per worker: not timed
        h.verify_many([(0, candidates[0])])
    passed = [0]
    walls: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    chunks = [list(enumerate(candidates))[i : i + 32] for i in range(0, len(candidates), 32)]

    def work(k: int) -> None:
        for chunk in chunks[k::workers]:
            results = hosts[k].verify_many(chunk)
            with lock:
                for r in results:
                    passed[0] += bool(r.verdict and r.verdict.passed)
                    walls[_first_tactic(payloads[r.key])].append(r.walltime_s)

    cpu0, wall0 = machine_busy_s(), time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - wall0, machine_busy_s() - cpu0
    for h in hosts:
        h.close()
    return len(payloads) / wall, passed[0], cpu / len(payloads) * 1e3, walls


def _checks_table(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    payloads = _workload(args.checks, seed=7)
    n, cores = len(payloads), os.cpu_count() or 1
    print(f"[bench] coqc per check, {args.cold_workers} processes at once ...", file=sys.stderr)
    cold = _cold_rate(payloads[: args.cold_checks], args.cold_workers)
    print(f"[bench] foundry warm checkers, {cores} workers ...", file=sys.stderr)
    *warm, walls = _warm_rate(payloads, cores)
    table = Table(title=f"proof checks per second, {cores} cores: generated theorems "
                  "(default steering), Coq 8.16")  # fmt: skip
    for col in (
        "harness",
        "checks",
        "checks / s",
        "per core",
        "proved",
        "CPU ms / check",
        "vs cold",
    ):
        table.add_column(col, justify="left" if col == "harness" else "right")
    rows = [(f"coqc per check ({args.cold_workers} at once, no sandbox)", args.cold_checks, *cold),
            (f"foundry, {cores} warm checkers (bwrap)", n, *warm)]  # fmt: skip
    for label, count, rate, ok, cpu_ms in rows:
        table.add_row(label, f"{count:,}", f"{rate:,.1f}", f"{rate / cores:,.1f}",
                      f"{ok:,}/{count:,}", f"{cpu_ms:,.0f}", f"{rate / cold[0]:.1f}x")  # fmt: skip
    Console(width=160).print(table)
    by = Table(title="warm checks by the script's deciding tactic (wall per check, in the child)")
    for col in ("tactic", "checks", "median ms", "p90 ms", "checks / s / core"):
        by.add_column(col, justify="left" if col == "tactic" else "right")
    counts = Counter({k: len(v) for k, v in walls.items()})
    for tactic, count in counts.most_common():
        w = np.array(walls[tactic]) * 1e3
        by.add_row(tactic, f"{count:,}", f"{np.median(w):,.1f}", f"{np.quantile(w, 0.9):,.1f}",
                   f"{1e3 / np.mean(w):,.1f}")  # fmt: skip
    Console(width=160).print(by)
    per_core = warm[0] / cores
    verdict = "met" if per_core >= CHECKS_PER_CORE_TARGET else "NOT met"
    print(f"warm: {per_core:.1f} checks/s/core (target >= {CHECKS_PER_CORE_TARGET:g}: {verdict}); "
          f"{warm[0] / cold[0]:.1f}x one coqc process per check")  # fmt: skip


# -- part 2: the two-tier loop ------------------------------------------------------------------


def _bench(target: float) -> BenchDomain:
    from foundry.domains.math import MathDomain

    return BenchDomain(
        name="math",
        verify=partial(top_tier_verdict, "foundry.domains.math:MathDomain"),
        properties=(),
        tool="the proof checker",
        target_ratio=target,
        slices=tuple(MathDomain.slices or ()),
        slice_kind="theorem group",
        cpu_clock="machine",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2_000, help="warm checks of part 1")
    parser.add_argument("--cold-checks", type=int, default=300, help="coqc checks of part 1")
    parser.add_argument("--cold-workers", type=int, default=2)
    parser.add_argument("--n", type=int, default=20_000, help="candidates of the surrogate run")
    parser.add_argument("--baseline-n", type=int, default=3_000, help="candidates, checker only")
    parser.add_argument("--quick", action="store_true", help="small runs")
    parser.add_argument("--alpha", type=float, default=0.02)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--audit-rate", type=float, default=0.03)
    parser.add_argument("--min-train-labels", type=int, default=2_000)
    parser.add_argument("--retrain-every", type=int, default=6_000)
    parser.add_argument("--challenger-audits", type=int, default=300)
    parser.add_argument("--fresh-per-slice", type=int, default=200)
    parser.add_argument(
        "--target", type=float, default=2.0, help="two-tier ratio to report against"
    )
    parser.add_argument("--skip-checks", action="store_true", help="part 2 only")
    parser.add_argument("--skip-loop", action="store_true", help="part 1 only")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)
    if args.quick:
        args.checks, args.cold_checks, args.n, args.baseline_n = 300, 60, 3_000, 600
        args.min_train_labels, args.retrain_every, args.fresh_per_slice = 400, 1_000, 40
    wall0 = time.perf_counter()
    if not args.skip_checks:
        _checks_table(args)
    if args.skip_loop:
        return 0
    compare_loops(_bench(args.target), args, "checker only", wall0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
