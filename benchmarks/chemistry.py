"""Chemistry end to end: DFT labels through the certified two-tier loop against DFT only.

Run from the repository root (the chemistry extra installed)::

    python -m benchmarks.chemistry --quick     # up to 6 heavy atoms, ~15 min on 2 cores
    python -m benchmarks.chemistry             # QM9-like (9 heavy atoms), hours on 2 cores

Runs of the real loop (Dask LocalCluster, tblite and PySCF in worker children, SQLite ledger),
one after the other in this process:

1. ``DFT only``: every candidate labelled by DFT (the baseline; no xTB, no surrogate);
2. ``certified``: xTB on every candidate (the ladder's cheap tier), the SchNet ensemble learns
   the DFT gap from the xTB gap and the 3D structure; items are released on its word only
   under a certificate of their slice (element set) at ``alpha``, tolerance ``--tolerance``
   eV on ``gap_ev``; uncertain items and a random audit sample go to DFT;
3. ``fixed band``: the same surrogate trusted inside a fixed risk level with no audits (as
   DP-GEN-style trust levels select DFT work): no bound.

Then fresh random samples of the surrogate-released molecules are labelled by DFT (outside the
timed runs; stratified by slice for the certified run) and the measured error is printed
beside alpha and the certificates. ``--tolerances`` adds one certified run per further
tolerance: speedup, coverage (share of candidates released on the surrogate's word) and the
DFT labels behind each. CPU seconds include every worker and child. Prints tables; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from foundry.contract import Candidate, SimulationFailed, Verdict

from ._twotier import BenchDomain, draw, fresh_check, print_report, run_case

TARGET_RATIO = 20.0
_OPTIONS_VAR = "FOUNDRY_BENCH_CHEMISTRY_OPTIONS"
_GT: Any = None


def _verify(payload: dict[str, Any]) -> Verdict | None:
    """DFT at the benchmark's level of theory (passed to the pool's children in the env)."""
    global _GT
    if _GT is None:
        from foundry.domains.chemistry import ChemistryDomain

        from foundry.options import parse_options

        options = parse_options(ChemistryDomain, json.loads(os.environ.get(_OPTIONS_VAR, "{}")))
        _GT = ChemistryDomain(options).ground_truth("dft")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _GT.verify(Candidate(payload=payload), tmp)
    except SimulationFailed:
        return None


def _bench(options: dict[str, Any]) -> BenchDomain:
    from foundry.domains.chemistry import ChemistryDomain

    from foundry.options import parse_options

    domain = ChemistryDomain(parse_options(ChemistryDomain, options))
    os.environ[_OPTIONS_VAR] = json.dumps(options)
    return BenchDomain(
        name="chemistry",
        verify=_verify,
        properties=domain.properties,
        tool="PySCF DFT",
        target_ratio=TARGET_RATIO,
        slice_kind="element set",
        domain_options=options,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6_000, help="candidates of the surrogate runs")
    parser.add_argument("--baseline-n", type=int, default=200, help="candidates, DFT only")
    parser.add_argument("--quick", action="store_true", help="small molecules, short runs")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--tolerance", type=float, default=0.2, help="eV on gap_ev")
    parser.add_argument(
        "--tolerances", type=str, default="", help="more certified runs, e.g. 0.1,0.3,0.5"
    )
    parser.add_argument("--audit-rate", type=float, default=0.05)
    parser.add_argument(
        "--uncertain-share",
        type=float,
        default=0.25,
        help="expected share of uncertain items labelled by DFT (the rest deferred)",
    )
    parser.add_argument("--min-train-labels", type=int, default=400)
    parser.add_argument("--retrain-every", type=int, default=400)
    parser.add_argument("--challenger-audits", type=int, default=150)
    parser.add_argument("--max-heavy-atoms", type=int, default=9)
    parser.add_argument("--elements", type=str, default="C,N,O,F")
    parser.add_argument("--xc", type=str, default="b3lyp")
    parser.add_argument("--basis", type=str, default="def2-svp")
    parser.add_argument("--fixed-accept-risk", type=float, default=0.05)
    parser.add_argument("--fresh", type=int, default=200, help="fresh DFT sample, fixed band")
    parser.add_argument("--fresh-per-slice", type=int, default=60)
    parser.add_argument("--skip-fixed-band", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument(
        "--levers-only", action="store_true", help="only the DFT threads / settings table"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.baseline_n = min(args.n, 700), min(args.baseline_n, 60)
        args.max_heavy_atoms = min(args.max_heavy_atoms, 6)
        args.elements = "C,N,O"
        args.min_train_labels, args.retrain_every = 150, 150
        args.challenger_audits, args.audit_rate = 60, 0.1
        args.fresh, args.fresh_per_slice = 40, 25
    options: dict[str, Any] = {
        "xc": args.xc,
        "basis": args.basis,
        "elements": args.elements.split(","),
        "max_heavy_atoms": args.max_heavy_atoms,
        "gap_tol_ev": args.tolerance,
    }
    bench = _bench(options)
    cost_levers(options)
    if args.levers_only:
        return 0
    common = dict(alpha=args.alpha, delta=args.delta)
    surrogate_cfg = dict(
        common,
        audit_rate=args.audit_rate,
        min_train_labels=args.min_train_labels,
        retrain_every=args.retrain_every,
        challenger_audits=args.challenger_audits,
        uncertain_share=args.uncertain_share,
        batch_size=100,
    )
    level = level_of_theory(options)
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foundry-bench-chemistry-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [
            run_case(
                bench,
                "DFT only",
                workdir,
                args.baseline_n,
                seed=1,
                surrogate=False,
                ladder=["dft"],
                **common,
            )
        ]
        results.append(run_case(bench, "certified", workdir, args.n, seed=2, **surrogate_cfg))
        if not args.skip_fixed_band:
            results.append(
                run_case(
                    bench,
                    "fixed band",
                    workdir,
                    args.n,
                    seed=3,
                    policy="fixed_band",
                    fixed_accept_risk=args.fixed_accept_risk,
                    fixed_reject_risk=args.fixed_accept_risk,
                    **surrogate_cfg,
                )
            )
        sweep = []
        for tol in [float(t) for t in args.tolerances.split(",") if t.strip()]:
            other = _bench({**options, "gap_tol_ev": tol})
            sweep.append(
                (
                    tol,
                    run_case(
                        other, f"certified {tol:g} eV", workdir, args.n, seed=2, **surrogate_cfg
                    ),
                )
            )
        _bench(options)  # the fresh check labels at the main run's options
        samples = {
            r.label: (r, draw(r, args.fresh_per_slice if r.certified else None, args.fresh, 99))
            for r in results[1:]
        }
        n_fresh = sum(len(s) for _, s in samples.values())
        print(
            f"[bench] DFT on fresh samples of released molecules ({n_fresh:,}) ...",
            file=sys.stderr,
            flush=True,
        )
        fresh_check(bench, samples)
    print(
        f"level of theory: {level}; xTB tier GFN2-xTB (tblite); "
        f"{os.cpu_count()} cores, python {sys.version.split()[0]}"
    )
    print(
        f"alpha {args.alpha}, delta {args.delta}, tolerance {args.tolerance} eV on gap_ev, "
        f"audit rate {args.audit_rate}, uncertain share {args.uncertain_share}, first fit at "
        f"{args.min_train_labels} labels, retrain "
        f"every {args.retrain_every}, challenger audits {args.challenger_audits}, elements "
        f"{args.elements}, <= {args.max_heavy_atoms} heavy atoms, fresh "
        f"{args.fresh_per_slice} a slice (certified) / {args.fresh} (fixed band), total wall "
        f"{time.perf_counter() - wall0:,.0f} s"
    )
    print_report(bench, results, args)
    _tolerance_table(results, sweep, args.tolerance)
    return 0


#: molecules of the cost-lever table: small to QM9-sized (SMILES, name)
LEVER_MOLECULES = (("O", "water"), ("CCO", "ethanol"), ("c1ccccc1", "benzene"),
                   ("CC(=O)Oc1ccccc1", "phenyl acetate"))  # fmt: skip


def cost_levers(options: dict[str, Any]) -> None:
    """DFT wall time and gap per molecule: the run's settings at 1 and 2 threads, and the exact
    settings (no density fitting, grid level 3) - side by side in one process."""
    from foundry.domains.chemistry.molecules import geometry_of
    from foundry.simulators.pyscf_dft import DFTSettings, run_dft
    from rich.console import Console
    from rich.table import Table

    fast = DFTSettings(xc=options["xc"], basis=options["basis"])
    exact = DFTSettings(xc=options["xc"], basis=options["basis"], density_fit=False, grid_level=3)
    t = Table(title=f"DFT cost levers ({fast.xc}/{fast.basis}); OMP_WAIT_POLICY=PASSIVE")
    for col in (
        "molecule",
        "atoms",
        "1 thread s",
        "2 threads s",
        "speed-up",
        "exact s",
        "exact / run",
        "gap diff eV",
    ):
        t.add_column(col, justify="left" if col == "molecule" else "right")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    for smiles, name in LEVER_MOLECULES:
        g = geometry_of({"smiles": smiles})
        args = (list(g.elements), g.coordinates_angstrom, g.charge, g.multiplicity)
        one = run_dft(*args, settings=fast, threads=1)
        two = run_dft(*args, settings=fast, threads=2)
        ref = run_dft(*args, settings=exact, threads=2)
        t.add_row(
            name,
            f"{len(g.elements)}",
            f"{one.walltime_s:.2f}",
            f"{two.walltime_s:.2f}",
            f"{one.walltime_s / two.walltime_s:.2f}x",
            f"{ref.walltime_s:.2f}",
            f"{ref.walltime_s / two.walltime_s:.1f}x",
            f"{one.gap_ev - ref.gap_ev:+.4f}",
        )
    Console(width=160).print(t)


def level_of_theory(options: dict[str, Any]) -> str:
    """The DFT tier's own description (functional, basis, density fitting, grid, PySCF)."""
    from foundry.domains.chemistry import ChemistryDomain

    from foundry.options import parse_options

    return ChemistryDomain(parse_options(ChemistryDomain, options)).ground_truth("dft").version


def _tolerance_table(results: list[Any], sweep: list[tuple[float, Any]], tol: float) -> None:
    from rich.console import Console
    from rich.table import Table

    base = results[0]
    rows = [(tol, results[1]), *sweep]
    t = Table(title="speedup and coverage by tolerance on gap_ev (certified runs)")
    for col in (
        "tolerance eV",
        "candidates",
        "DFT labels",
        "released by surrogate",
        "coverage",
        "accepted / CPU s",
        "vs DFT only",
    ):
        t.add_column(col, justify="right")
    for tolerance, r in sorted(rows, key=lambda x: x[0]):
        s = r.stats
        t.add_row(
            f"{tolerance:g}",
            f"{s.generated:,}",
            f"{s.gt_calls:,}",
            f"{s.surrogate_accepted:,}",
            f"{s.surrogate_accepted / max(s.generated, 1):.1%}",
            f"{r.per_cpu_s:.3f}",
            f"{r.per_cpu_s / base.per_cpu_s:.2f}x",
        )
    Console(width=160).print(t)


if __name__ == "__main__":
    sys.exit(main())
