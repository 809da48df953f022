"""A deep-ensemble graph neural network surrogate for domains whose candidates are graphs.

Why an ensemble: the scheduler's calibration makes release valid whatever the surrogate says;
the surrogate's uncertainty only has to *rank* items (those it is likely wrong about must look
uncertain), and the spread of independently initialised networks does that well, above all out of
distribution, where members disagree.

Why one vectorised model: the members share no weights, but every layer holds the weights of all
members stacked as ``(n_members, in, out)`` and runs them in one batched matmul. On a 2-core CPU
the per-step overhead of small graphs dominates, so training ``n_members`` networks costs little
more than training one.

The network is edge-conditioned message passing (GINE-like: message ``relu(h_src + W e)``, sum
aggregation, residual update), sum+mean pooling, concatenated with the graph's global features,
then an MLP with one pass/fail logit and one output per property. Aggregation and pooling use
:func:`torch_geometric.utils.scatter`, which runs on plain torch (no pyg-lib / torch-scatter).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from foundry.contract import Candidate, PluginError, Predictions, PropertySpec, Verdict

from ._cache import EncodedCache
from ._training import (
    Baselines,
    Standardizer,
    Targets,
    bootstrap_weights,
    check_fit_inputs,
    check_transforms,
    collect_targets,
    constant_pass_probability,
    empty_predictions,
    ensemble_predictions,
    log10_ranges,
    window_matrix,
)

__all__ = ["GraphEnsembleSurrogate", "GraphSample"]


@dataclass
class GraphSample:
    """One candidate as a graph. Undirected links appear once in each direction.

    ``baseline``: an optional cheap estimate of each property (a hand analysis, a lower
    fidelity); when given, the networks learn only the residual (see ``_training.Baselines``).
    It travels with the graph so that both are computed, and cached, once per candidate.
    """

    node_features: np.ndarray  # (num_nodes, node_dim) float32
    edge_index: np.ndarray  # (2, num_edges) int64, rows = (source, target)
    edge_features: np.ndarray  # (num_edges, edge_dim) float32
    global_features: np.ndarray  # (global_dim,) float32
    baseline: Mapping[str, float] | None = None


def _checked_many(samples: Sequence[GraphSample]) -> list[GraphSample]:
    """Coerce dtypes and check shapes, indices and finiteness once, so that the collation code
    can trust the arrays. Shapes are checked per graph; values batch-wise (one reduction per
    check for the whole batch, not per graph: this runs on every scored candidate)."""
    out: list[GraphSample] = []
    for sample in samples:
        if not isinstance(sample, GraphSample):
            raise PluginError(f"graph encoder returned {type(sample).__name__}, not GraphSample")
        x = np.asarray(sample.node_features, dtype=np.float32)
        ei = np.asarray(sample.edge_index, dtype=np.int64)
        ea = np.asarray(sample.edge_features, dtype=np.float32)
        u = np.asarray(sample.global_features, dtype=np.float32).reshape(-1)
        if x.ndim != 2:
            raise PluginError(f"node_features must be 2-D (num_nodes, node_dim), got {x.shape}")
        if ei.size == 0:
            ei = ei.reshape(2, 0)
        if ei.ndim != 2 or ei.shape[0] != 2:
            raise PluginError(f"edge_index must have shape (2, num_edges), got {ei.shape}")
        if ea.ndim != 2 or ea.shape[0] != ei.shape[1]:
            raise PluginError(
                f"edge_features must have shape (num_edges={ei.shape[1]}, edge_dim), got {ea.shape}"
            )
        baseline = sample.baseline
        if baseline is not None and not isinstance(baseline, Mapping):
            raise PluginError(f"baseline must be a mapping of property -> value, got {baseline!r}")
        out.append(GraphSample(x, ei, ea, u, dict(baseline) if baseline is not None else None))
    if not out:
        return out
    n_nodes = np.array([g.node_features.shape[0] for g in out])
    n_edges = np.array([g.edge_index.shape[1] for g in out])
    if n_edges.sum():
        ei_all = np.concatenate([g.edge_index for g in out], axis=1)
        limit = np.repeat(n_nodes, n_edges)
        bad = (ei_all < 0) | (ei_all >= limit)
        if bad.any():
            edge = int(np.flatnonzero(bad.any(axis=0))[0])
            graph = int(np.searchsorted(np.cumsum(n_edges), edge, side="right"))
            raise PluginError(
                f"graph {graph}: edge_index refers to nodes outside 0..{n_nodes[graph] - 1}"
            )
    for name, attr in (
        ("node", "node_features"),
        ("edge", "edge_features"),
        ("global", "global_features"),
    ):
        flat = np.concatenate([getattr(g, attr).ravel() for g in out])
        if not np.isfinite(flat).all():
            graph = next(k for k, g in enumerate(out) if not np.isfinite(getattr(g, attr)).all())
            raise PluginError(f"graph {graph}: {name} features contain NaN or inf")
    return out


def _variance(raw: torch.Tensor) -> torch.Tensor:
    """Predicted variance (standardised units) from the raw variance-head output."""
    return nn.functional.softplus(raw) + 1e-6


#: ~2 KB a small circuit graph: 50k graphs stay well under 200 MB.
_GRAPH_CACHE: EncodedCache[GraphSample] = EncodedCache(max_items=50_000)


class _GraphStore:
    """Many graphs concatenated, with O(batch) vectorised collation of any subset.

    ``torch_geometric.data.Batch.from_data_list`` costs ~3 ms per 128 small graphs, which over
    thousands of steps outweighs the network itself; slicing pre-concatenated arrays costs ~0.1 ms.
    """

    def __init__(self, samples: Sequence[GraphSample], dims: tuple[int, int, int]) -> None:
        node_dim, edge_dim, global_dim = dims
        for s in samples:
            got = (s.node_features.shape[1], s.edge_features.shape[1], s.global_features.shape[0])
            if got != dims:
                raise PluginError(f"graph feature sizes (node, edge, global) = {got}, not {dims}")
        self.num_graphs = len(samples)
        n_nodes = np.array([s.node_features.shape[0] for s in samples], dtype=np.int64)
        n_edges = np.array([s.edge_index.shape[1] for s in samples], dtype=np.int64)
        self.node_ptr = np.concatenate([[0], np.cumsum(n_nodes)])
        self.edge_ptr = np.concatenate([[0], np.cumsum(n_edges)])
        self.x = np.concatenate([s.node_features for s in samples]).reshape(-1, node_dim)
        self.edge_attr = np.concatenate([s.edge_features for s in samples]).reshape(-1, edge_dim)
        # Local node numbers; collation adds each graph's offset inside the batch.
        self.edge_index = np.concatenate([s.edge_index for s in samples], axis=1).reshape(2, -1)
        self.u = np.stack([s.global_features for s in samples]).reshape(-1, global_dim)

    def standardize(self, node: Standardizer, edge: Standardizer, glob: Standardizer) -> None:
        self.x = node.transform(self.x).astype(np.float32)
        self.edge_attr = edge.transform(self.edge_attr).astype(np.float32)
        self.u = glob.transform(self.u).astype(np.float32)

    def collate(self, graph_ids: np.ndarray) -> tuple[torch.Tensor, ...]:
        """(x, edge_index, edge_attr, batch, u) of the graphs ``graph_ids``, in that order."""
        n_nodes = self.node_ptr[graph_ids + 1] - self.node_ptr[graph_ids]
        n_edges = self.edge_ptr[graph_ids + 1] - self.edge_ptr[graph_ids]
        node_offset = np.cumsum(n_nodes) - n_nodes  # first node of each graph in the batch
        edge_offset = np.cumsum(n_edges) - n_edges
        node_rows = np.repeat(self.node_ptr[graph_ids] - node_offset, n_nodes) + np.arange(
            n_nodes.sum()
        )
        edge_rows = np.repeat(self.edge_ptr[graph_ids] - edge_offset, n_edges) + np.arange(
            n_edges.sum()
        )
        edge_index = self.edge_index[:, edge_rows] + np.repeat(node_offset, n_edges)
        batch = np.repeat(np.arange(len(graph_ids)), n_nodes)
        return (
            torch.from_numpy(self.x[node_rows]),
            torch.from_numpy(edge_index),
            torch.from_numpy(self.edge_attr[edge_rows]),
            torch.from_numpy(batch),
            torch.from_numpy(self.u[graph_ids]),
        )


class _MemberLinear(nn.Module):
    """``n_members`` independent linear maps applied at once: (M, rows, in) -> (M, rows, out)."""

    def __init__(self, n_members: int, d_in: int, d_out: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in) if d_in > 0 else 0.0
        weight = (torch.rand(n_members, d_in, d_out, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(n_members, 1, d_out, generator=generator) * 2 - 1) * bound
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # shared input for all members
            x = x.unsqueeze(0).expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)


class _EnsembleGNN(nn.Module):
    """Edge-conditioned message passing for all members at once. Output: (M, graphs, n_out)."""

    def __init__(
        self,
        dims: tuple[int, int, int],
        n_out: int,
        n_members: int,
        hidden: int,
        layers: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        node_dim, edge_dim, global_dim = dims
        self.node_in = _MemberLinear(n_members, node_dim, hidden, generator)
        self.edge_in = nn.ModuleList(
            [_MemberLinear(n_members, edge_dim, hidden, generator) for _ in range(layers)]
        )
        self.update = nn.ModuleList(
            [_MemberLinear(n_members, hidden, hidden, generator) for _ in range(layers)]
        )
        self.readout = _MemberLinear(n_members, 2 * hidden + global_dim, hidden, generator)
        self.head = _MemberLinear(n_members, hidden, n_out, generator)

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        batch: torch.Tensor,
        u: torch.Tensor,
    ) -> torch.Tensor:
        n_graphs = u.shape[0]
        src, dst = edge_index[0], edge_index[1]
        h = torch.relu(self.node_in(x))
        for edge_in, update in zip(self.edge_in, self.update, strict=True):
            message = torch.relu(h.index_select(1, src) + edge_in(edge_attr))
            incoming = torch.zeros_like(h).index_add_(1, dst, message)
            h = h + torch.relu(update(h + incoming))
        summed = h.new_zeros(h.shape[0], n_graphs, h.shape[2]).index_add_(1, batch, h)
        counts = torch.bincount(batch, minlength=n_graphs).clamp_min(1).to(h.dtype)
        pooled = torch.cat(
            [summed, summed / counts[:, None], u.unsqueeze(0).expand(h.shape[0], -1, -1)], dim=-1
        )
        return self.head(torch.relu(self.readout(pooled)))


@dataclass
class _Fitted:
    model: _EnsembleGNN
    dims: tuple[int, int, int]
    node_scaler: Standardizer
    edge_scaler: Standardizer
    global_scaler: Standardizer
    target_scaler: Standardizer
    baselines: Baselines | None
    log10_range: dict[str, tuple[float, float]]
    has_values: np.ndarray
    constant_p_pass: float | None
    epochs_run: int
    train_seconds: float


class GraphEnsembleSurrogate:
    """Deep ensemble of edge-conditioned GNNs; satisfies :class:`foundry.contract.Surrogate`.

    ``to_graph`` turns a candidate into a :class:`GraphSample` (results are cached by candidate
    id, across instances); ``to_graphs``, when given, does the same for a list at once (for
    encoders that vectorise, such as a batched physics baseline). ``target_transforms`` maps
    property names to ``"identity"`` or ``"log10"`` (regress in log10 space, for positive
    quantities spanning decades; sigma is reported in original units).
    When the samples carry a ``baseline``, the members learn the residual from it.

    ``pass_window`` (optional) reads each candidate's acceptance window per property, e.g. a
    spec ``{"gain_db": (lo, hi)}`` with ``None`` for an open side. Where pass/fail *is* "every
    property inside its window", ``p_pass`` is then the predictive probability of exactly
    that, instead of a separately learned classifier: sharper, and consistent with the values.

    Training is deterministic for a fixed ``seed`` unless ``max_train_seconds`` cuts it short
    (then the number of epochs depends on the machine's speed). Each ``fit`` retrains from scratch.
    """

    def __init__(
        self,
        to_graph: Callable[[Candidate], GraphSample],
        properties: Sequence[PropertySpec],
        has_pass_fail: bool,
        *,
        target_transforms: Mapping[str, str] = {},
        n_members: int = 4,
        hidden: int = 64,
        layers: int = 3,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 3e-3,
        seed: int = 0,
        max_train_seconds: float | None = 120.0,
        device: str = "cpu",
        bootstrap: bool = True,
        weight_decay: float = 1e-4,
        min_steps: int = 400,
        max_steps: int | None = 1500,
        heteroscedastic: bool = True,
        num_threads: int | None = None,
        pass_window: Callable[[Candidate], Mapping[str, tuple[float | None, float | None]]]
        | None = None,
        to_graphs: Callable[[Sequence[Candidate]], Sequence[GraphSample]] | None = None,
    ) -> None:
        if n_members < 2:
            raise ValueError("an ensemble needs n_members >= 2 for a spread")
        if min(hidden, layers + 1, epochs, batch_size) < 1:
            raise ValueError("hidden, epochs and batch_size must be >= 1, layers >= 0")
        self.to_graph = to_graph
        self.properties = tuple(properties)
        self.has_pass_fail = bool(has_pass_fail)
        self.transforms = check_transforms(self.properties, target_transforms)
        self.n_members = n_members
        self.hidden = hidden
        self.layers = layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.max_train_seconds = max_train_seconds
        self.device = torch.device(device)
        self.bootstrap = bootstrap
        self.weight_decay = weight_decay
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.heteroscedastic = heteroscedastic
        self.num_threads = num_threads
        self.pass_window = pass_window
        self.to_graphs = to_graphs
        if pass_window is not None and not (has_pass_fail and self.properties):
            raise ValueError("pass_window needs a pass/fail domain with properties")
        self._fitted: _Fitted | None = None

    # -- graphs ---------------------------------------------------------------------------
    def _graphs(self, candidates: Sequence[Candidate]) -> list[GraphSample]:
        encode = self.to_graphs or (lambda cands: [self.to_graph(c) for c in cands])

        def encode_missing(missing: Sequence[int]) -> list[GraphSample]:
            return _checked_many(encode([candidates[i] for i in missing]))

        return _GRAPH_CACHE.get_many(self.to_graph, candidates, encode_missing)

    # -- training -------------------------------------------------------------------------
    @contextmanager
    def _threads(self) -> Iterator[None]:
        """Use ``num_threads`` torch threads. torch's setting is process-wide and the scheduler
        fits in one thread while it predicts in another, so it is set, not restored: small
        graphs run no faster on two OpenMP threads than on one, and cost twice the CPU."""
        if self.num_threads is not None and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        yield

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        """Train all members from scratch on these labels (pass head on all verdicts, each
        property head on the verdicts that measured it)."""
        check_fit_inputs(candidates, verdicts)
        with self._threads():
            self._fit(candidates, verdicts)

    def _fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        start = time.perf_counter()
        samples = self._graphs(candidates)
        s0 = samples[0]
        dims = (s0.node_features.shape[1], s0.edge_features.shape[1], s0.global_features.shape[0])
        store = _GraphStore(samples, dims)
        node_scaler = Standardizer.fit(store.x)
        edge_scaler = Standardizer.fit(store.edge_attr)
        global_scaler = Standardizer.fit(store.u)
        store.standardize(node_scaler, edge_scaler, global_scaler)

        targets = collect_targets(verdicts, self.properties, self.transforms)
        residual, baselines = self._residual_targets(samples, targets)
        target_scaler = Standardizer.fit(residual)
        mask = targets.mask
        y = np.where(mask, target_scaler.transform(residual), 0.0)
        by_window = self.pass_window is not None
        constant_p = (
            constant_pass_probability(targets.passed)
            if self.has_pass_fail and not by_window
            else None
        )
        train_pass = self.has_pass_fail and constant_p is None and not by_window

        n = len(candidates)
        rng = np.random.default_rng([self.seed, n])
        weights = (
            bootstrap_weights(rng, self.n_members, n)
            if self.bootstrap
            else np.ones((self.n_members, n))
        )
        generator = torch.Generator().manual_seed(self.seed)
        n_props = len(self.properties)
        n_out = 1 + n_props * (2 if self.heteroscedastic else 1)
        model = _EnsembleGNN(dims, n_out, self.n_members, self.hidden, self.layers, generator)
        model.to(self.device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        steps_per_epoch = math.ceil(n / self.batch_size)
        epochs = max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
        if self.max_steps is not None:
            epochs = max(min(epochs, self.max_steps // steps_per_epoch), 1)
        total_steps = epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.lr, total_steps=total_steps, pct_start=0.1
        )

        t_pass = torch.as_tensor(targets.passed, dtype=torch.float32, device=self.device)
        t_y = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        t_mask = torch.as_tensor(mask, dtype=torch.float32, device=self.device)
        t_w = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        deadline = None if self.max_train_seconds is None else start + self.max_train_seconds
        epochs_run = 0
        model.train()
        for _epoch in range(epochs):
            order = rng.permutation(n)
            for first in range(0, n, self.batch_size):
                ids = order[first : first + self.batch_size]
                tensors = [t.to(self.device) for t in store.collate(ids)]
                out = model(*tensors)  # (M, b, n_out)
                idx = torch.from_numpy(ids).to(self.device)
                loss = self._loss(
                    out, t_pass[idx], t_y[idx], t_mask[idx], t_w[:, idx], train_pass, n_props
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            epochs_run += 1
            if deadline is not None and time.perf_counter() > deadline:
                break
        model.eval()
        self._fitted = _Fitted(
            model=model,
            dims=dims,
            node_scaler=node_scaler,
            edge_scaler=edge_scaler,
            global_scaler=global_scaler,
            target_scaler=target_scaler,
            baselines=baselines,
            log10_range=log10_ranges(targets, self.properties, self.transforms),
            has_values=mask.any(axis=0),
            constant_p_pass=constant_p,
            epochs_run=epochs_run,
            train_seconds=time.perf_counter() - start,
        )

    def _residual_targets(
        self, samples: Sequence[GraphSample], targets: Targets
    ) -> tuple[np.ndarray, Baselines | None]:
        """Targets minus the samples' baselines (regression space); as-is without baselines."""
        if all(s.baseline is None for s in samples):
            return targets.values, None
        estimates = Baselines.matrix(
            [s.baseline for s in samples], self.properties, self.transforms
        )
        baselines = Baselines.fit(targets)
        return targets.values - baselines.offsets(estimates), baselines

    @staticmethod
    def _loss(
        out: torch.Tensor,
        passed: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor,
        weight: torch.Tensor,
        train_pass: bool,
        n_props: int,
    ) -> torch.Tensor:
        """Sum over members of weighted BCE, masked weighted MSE per property and, with a
        variance head, the Gaussian NLL of the residuals under it.

        Members share no parameters, so summing their losses trains each on its own. The
        variance head sees the mean detached: it learns how large the errors are where, and
        cannot buy a smaller NLL by moving the mean."""
        total = out.new_zeros(())
        if train_pass:
            bce = nn.functional.binary_cross_entropy_with_logits(
                out[..., 0], passed.expand_as(out[..., 0]), reduction="none"
            )
            total = total + ((bce * weight).sum(1) / weight.sum(1).clamp_min(1e-6)).sum()
        if n_props:
            mean = out[..., 1 : 1 + n_props]
            w = weight.unsqueeze(-1) * mask.unsqueeze(0)  # (M, b, P)
            norm = w.sum(1).clamp_min(1e-6)
            sq = (mean - y.unsqueeze(0)) ** 2
            total = total + ((sq * w).sum(1) / norm).sum()
            if out.shape[-1] > 1 + n_props:
                var = _variance(out[..., 1 + n_props :])
                nll = 0.5 * (torch.log(var) + sq.detach() / var)
                total = total + ((nll * w).sum(1) / norm).sum()
        return total

    # -- prediction -----------------------------------------------------------------------
    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        """Ensemble mean and spread; p_pass is the mean of the members' probabilities."""
        fitted = self._fitted
        if fitted is None:
            raise RuntimeError("GraphEnsembleSurrogate.predict called before fit")
        if len(candidates) == 0:
            return empty_predictions(self.properties, self.has_pass_fail)
        with self._threads():
            return self._predict(fitted, candidates)

    def _predict(self, fitted: _Fitted, candidates: Sequence[Candidate]) -> Predictions:
        samples = self._graphs(candidates)
        store = _GraphStore(samples, fitted.dims)
        store.standardize(fitted.node_scaler, fitted.edge_scaler, fitted.global_scaler)
        chunks = []
        with torch.inference_mode():
            for first in range(0, store.num_graphs, 4096):
                ids = np.arange(first, min(first + 4096, store.num_graphs))
                tensors = [t.to(self.device) for t in store.collate(ids)]
                chunks.append(fitted.model(*tensors).double().cpu().numpy())
        out = np.concatenate(chunks, axis=1)  # (M, n, n_out)
        n = len(candidates)
        n_props = len(self.properties)
        member_var = None
        if out.shape[-1] > 1 + n_props:
            member_var = _variance(torch.from_numpy(out[..., 1 + n_props :])).double().numpy()
        member_p = None
        windows = None
        if self.pass_window is not None:
            windows = window_matrix(
                [self.pass_window(c) for c in candidates], self.properties, self.transforms
            )
        elif self.has_pass_fail:
            if fitted.constant_p_pass is not None:
                member_p = np.full((1, n), fitted.constant_p_pass)
            else:
                member_p = 1.0 / (1.0 + np.exp(-np.clip(out[..., 0], -60.0, 60.0)))
        offsets = None
        if fitted.baselines is not None:
            estimates = Baselines.matrix(
                [s.baseline for s in samples], self.properties, self.transforms
            )
            offsets = fitted.baselines.offsets(estimates)
        return ensemble_predictions(
            n,
            self.properties,
            self.transforms,
            fitted.target_scaler,
            fitted.log10_range,
            member_p,
            out[..., 1 : 1 + n_props] if self.properties else None,
            fitted.has_values,
            member_variance_std=member_var,
            offsets_t=offsets,
            windows_t=windows,
        )

    @property
    def train_report(self) -> dict[str, float]:
        """Epochs run and wall seconds of the last fit (for benchmarks and logs)."""
        if self._fitted is None:
            return {}
        return {"epochs": self._fitted.epochs_run, "seconds": self._fitted.train_seconds}
