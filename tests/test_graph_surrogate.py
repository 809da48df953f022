"""The generic graph ensemble surrogate, away from any domain: it learns a graph property,
reports a spread, and turns a broken graph encoder into a clear PluginError."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from foundry.surrogates.graph import GraphEnsembleSurrogate, GraphSample

from foundry.contract import Candidate, PluginError, PropertySpec, Verdict, content_id

SPECS = (PropertySpec("y", "1", abs_tol=0.3),)


def _chain(cand: Candidate) -> GraphSample:
    """A path of ``n`` nodes with weights ``w``: the property is sum(w) (a graph sum)."""
    w = np.asarray(cand.payload["w"], dtype=np.float32)
    n = len(w)
    src = np.arange(n - 1)
    ei = np.stack([np.concatenate([src, src + 1]), np.concatenate([src + 1, src])])
    x = np.stack([w, np.ones(n, dtype=np.float32)], axis=1)
    ea = np.ones((ei.shape[1], 1), dtype=np.float32)
    return GraphSample(x, ei, ea, np.array([n / 10.0], dtype=np.float32))


def _cands(n: int, seed: int, scale: float = 1.0) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w = scale * rng.uniform(-1, 1, size=int(rng.integers(3, 9)))
        payload = {"w": w.round(4).tolist()}
        out.append(Candidate(payload=payload, id=content_id("chain", payload)))
    return out


def _surrogate(encoder=_chain) -> GraphEnsembleSurrogate:
    return GraphEnsembleSurrogate(
        encoder, SPECS, has_pass_fail=False, hidden=32, layers=2, max_steps=600, num_threads=1
    )


def test_learns_a_graph_sum_with_a_spread() -> None:
    train, test = _cands(600, 0), _cands(200, 1)
    model = _surrogate()
    model.fit(train, [Verdict(True, {"y": float(sum(c.payload["w"]))}) for c in train])
    pred = model.predict(test)
    truth = np.array([sum(c.payload["w"]) for c in test])
    err = np.abs(pred.values["y"] - truth)
    assert np.median(err) < 0.15, np.median(err)
    assert np.all(pred.sigmas["y"] > 0) and np.all(np.isfinite(pred.sigmas["y"]))
    # the spread means something: far outside the training range the members disagree more
    far = model.predict(_cands(200, 3, scale=4.0))
    assert np.median(far.sigmas["y"]) > 2 * np.median(pred.sigmas["y"])


def _broken(kind: str):
    def encode(cand: Candidate) -> GraphSample:
        g = _chain(cand)
        if cand.payload.get("bad") and kind == "nan":
            g.node_features[0, 0] = np.nan
        if cand.payload.get("bad") and kind == "index":
            g.edge_index[0, 0] = 99
        if cand.payload.get("bad") and kind == "type":
            return {"x": g.node_features}  # type: ignore[return-value]
        return g

    return encode


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("nan", "graph 2: node features contain NaN or inf"),
        ("index", "graph 2: edge_index refers to nodes outside"),
        ("type", "not GraphSample"),
    ],
)
def test_a_broken_encoder_is_a_plugin_error(kind: str, message: str) -> None:
    cands = _cands(4, 2)
    cands[2] = Candidate(payload={**cands[2].payload, "bad": True}, id="bad-" + kind)
    verdicts: Sequence[Verdict] = [Verdict(True, {"y": 0.0}) for _ in cands]
    with pytest.raises(PluginError, match=message):
        _surrogate(_broken(kind)).fit(cands, verdicts)
