"""Which pass/fail surrogate for the code domain: measured accuracy on sandbox labels.

Run from the repository root::

    python -m benchmarks.code_surrogates            # 8,000 generated tasks, ~2 min
    python -m benchmarks.code_surrogates --n 3000

Generates tasks with the domain's generator (half mutated), labels every one in the Python
sandbox, trains each candidate surrogate on the first ``k`` labels (a growing prefix, as a
run's retraining sees them) and scores it on the rest: accuracy at 0.5, AUC, Brier score,
and what matters to the scheduler - how many held-out items it could decide at a given risk
and how often it is wrong there (the share of items with accept or reject risk below 2 %,
and the error among them). Prints a table; not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from foundry.contract import Candidate, SimulationFailed, Verdict


def _label(candidates: list[Candidate]) -> list[Verdict | None]:
    from foundry.domains.code import CodeDomain

    gt = CodeDomain().ground_truth()
    out: list[Verdict | None] = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in candidates:
            try:
                out.append(gt.verify(c, tmp))
            except SimulationFailed:
                out.append(None)
    gt.close()
    return out


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y.sum()
    neg = len(y) - pos
    return (
        float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg)) if pos and neg else float("nan")
    )


def main(argv: list[str] | None = None) -> int:
    from foundry.domains.code import CodeDomain
    from foundry.domains.code.features import code_features
    from foundry.domains.code.surrogate import ProgramMemorySurrogate
    from foundry.surrogates.vector import VectorEnsembleSurrogate
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8_000)
    parser.add_argument("--train", type=int, nargs="+", default=[500, 2_000, 5_000])
    parser.add_argument("--risk", type=float, default=0.02)
    args = parser.parse_args(argv)
    domain = CodeDomain()
    candidates = domain.generate(args.n, np.random.default_rng(7), domain.steering_defaults)
    print(f"[bench] labelling {args.n:,} tasks in the sandbox ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    verdicts = _label(candidates)
    label_s = time.perf_counter() - t0
    keep = [i for i, v in enumerate(verdicts) if v is not None]
    cands = [candidates[i] for i in keep]
    labels = [verdicts[i] for i in keep]
    y = np.array([bool(v.passed) for v in labels])  # type: ignore[union-attr]
    makers = {
        "token + AST ensemble (vector)": lambda: VectorEnsembleSurrogate(
            code_features, (), has_pass_fail=True, n_members=8
        ),
        "program memory over the ensemble": lambda: ProgramMemorySurrogate(n_members=8),
    }
    table = Table(title=f"code surrogates on {len(cands):,} sandbox labels (pass share "
                  f"{y.mean():.0%}); held out = the items after the training prefix")  # fmt: skip
    for col in ("surrogate", "train labels", "held out", "accuracy", "AUC", "Brier",
                f"decided at risk < {args.risk:.0%}", "error among decided", "fit s"):  # fmt: skip
        table.add_column(col, justify="left" if col == "surrogate" else "right")
    for k in args.train:
        if k >= len(cands):
            continue
        test_c, test_y = cands[k:], y[k:]
        for name, make in makers.items():
            model = make()
            t = time.perf_counter()
            model.fit(cands[:k], labels[:k])  # type: ignore[arg-type]
            fit_s = time.perf_counter() - t
            p = np.asarray(model.predict(test_c).p_pass, dtype=float)
            decided = (p > 1 - args.risk) | (p < args.risk)
            wrong = decided & ((p > 0.5) != test_y)
            table.add_row(
                name, f"{k:,}", f"{len(test_c):,}", f"{np.mean((p > 0.5) == test_y):.1%}",
                f"{_auc(p, test_y):.3f}", f"{np.mean((p - test_y) ** 2):.3f}",
                f"{decided.mean():.1%}", f"{wrong.sum() / max(decided.sum(), 1):.2%}",
                f"{fit_s:.1f}",
            )  # fmt: skip
    Console(width=170).print(table)
    print(f"labelling: {label_s:.1f} s for {args.n:,} tasks ({label_s / args.n * 1e3:.1f} ms each, "
          f"one sandbox); {args.n - len(cands)} undecidable")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
