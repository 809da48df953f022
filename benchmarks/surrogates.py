"""Fit/predict timings and held-out quality of the ensemble surrogates on synthetic data.

Run: ``python benchmarks/surrogates.py [n_train]``. Prints a table; not a test.

The synthetic graph task has a known answer: ``y = sum over links of log10(value) + 0.5 * (number
of type-2 nodes)``, pass = ``y > 3``; out-of-distribution graphs are larger and carry values
outside the training range.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy import stats

from foundry.contract import Candidate, PropertySpec, Verdict, content_id

SPEC = PropertySpec("y", "1", abs_tol=0.3)


def random_graph_payload(rng: np.random.Generator, shift: float = 0.0, big: bool = False) -> dict:
    n = int(rng.integers(21, 30) if big else rng.integers(5, 21))
    links = [(int(rng.integers(0, i)), i) for i in range(1, n)]  # a random tree: connected
    for _ in range(int(rng.integers(0, 4))):
        a, b = rng.choice(n, 2, replace=False)
        links.append((int(a), int(b)))
    return {
        "node_type": rng.integers(0, 3, n).tolist(),
        "links": links,
        "log10_value": (rng.uniform(-1.0, 1.0, len(links)) + shift).tolist(),
    }


def truth(payload: dict) -> tuple[float, bool]:
    y = float(np.sum(payload["log10_value"])) + 0.5 * payload["node_type"].count(2)
    return y, y > 3.0


def to_graph(candidate: Candidate):
    from foundry.surrogates.graph import GraphSample

    p = candidate.payload
    n = len(p["node_type"])
    links = np.asarray(p["links"], dtype=np.int64).reshape(-1, 2).T
    vals = np.asarray(p["log10_value"], dtype=np.float32)
    return GraphSample(
        node_features=np.eye(3, dtype=np.float32)[p["node_type"]],
        edge_index=np.concatenate([links, links[::-1]], axis=1),
        edge_features=np.concatenate([vals, vals])[:, None],
        global_features=np.array([n / 20.0], dtype=np.float32),
    )


def make(n: int, seed: int, **kw) -> tuple[list[Candidate], list[Verdict]]:
    rng = np.random.default_rng(seed)
    cands, verdicts = [], []
    for _ in range(n):
        payload = random_graph_payload(rng, **kw)
        cands.append(Candidate(payload=payload, id=content_id("bench", payload)))
        y, ok = truth(payload)
        verdicts.append(Verdict(passed=ok, properties={"y": y}))
    return cands, verdicts


def report(name: str, pred, verdicts, fit_s: float, pred_s: float) -> None:
    y = np.array([v.properties["y"] for v in verdicts])
    mu, sig = pred.values["y"], pred.sigmas["y"]
    r2 = 1 - np.mean((mu - y) ** 2) / np.var(y)
    acc = np.mean((pred.p_pass > 0.5) == np.array([v.passed for v in verdicts]))
    rho = stats.spearmanr(np.abs(mu - y), sig).statistic
    print(
        f"{name:28s} fit {fit_s:6.2f} s  predict {pred_s * 1e3:7.1f} ms  R2 {r2:6.3f}  "
        f"acc {acc:5.3f}  spearman(|err|,sigma) {rho:5.2f}  mean sigma {sig.mean():.3f}"
    )


def main() -> None:
    from foundry.surrogates.graph import GraphEnsembleSurrogate

    n_train = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    train_c, train_v = make(n_train, 0)
    test_c, test_v = make(1000, 1)
    ood_c, ood_v = make(1000, 2, shift=0.7, big=True)
    sur = GraphEnsembleSurrogate(to_graph, [SPEC], True, seed=0)
    t = time.perf_counter()
    sur.fit(train_c, train_v)
    fit_s = time.perf_counter() - t
    print("train report", sur.train_report)
    for name, c, v in (("gnn in-dist", test_c, test_v), ("gnn out-of-dist", ood_c, ood_v)):
        sur.predict(c[:10])
        t = time.perf_counter()
        pred = sur.predict(c)
        report(name, pred, v, fit_s, time.perf_counter() - t)


if __name__ == "__main__":
    main()
