"""A deep ensemble of SchNet networks for domains whose candidates are molecules in 3-D.

Why SchNet: a molecular property is a function of the atoms and their geometry, and SchNet's
continuous-filter convolutions read the geometry through interatomic distances only, so every
prediction is invariant to rotation, translation and atom order by construction, and a sum over
atoms grows with the molecule as extensive properties do. Why an ensemble: the scheduler's
calibration makes release valid whatever the surrogate says, so sigma only has to *rank* items,
and independently initialised members trained on different bootstrap resamples disagree where
they have seen no data (strange geometries, larger molecules), while each member's variance head
adds the error they share (label noise, say on charged species). Why Delta over a baseline: a
cheap method (xTB next to DFT) gets most of a property right and its error is smaller and
smoother than the property, so learning only the correction takes far fewer costly labels.

Network. Each member is a :class:`torch_geometric.nn.models.SchNet` (its embedding, Gaussian
distance expansion and interaction blocks) with ``interaction_graph=`` :class:`RadiusNeighbors`,
a pure-torch radius search, and a readout of our own (:class:`_Member`): the mean of each
property is a sum of per-atom contributions plus a linear term in the standardised global
features plus an MLP of the mean atom features and the global features; the log-variance comes
from a separate head. :class:`_Ensemble` evaluates all members at once with their weights
stacked (a test checks it equals each member's own SchNet forward).

Training (:meth:`SchNetEnsembleSurrogate.fit`): targets minus baselines, standardised; every
member minimises its bootstrap-weighted MSE (AdamW, warm-up then cosine learning rate); each
member keeps its state of lowest loss on a held-out split (``valid_fraction``), and training
stops once none has improved for a quarter of the planned steps. The variance
heads are then fitted by Gaussian NLL to each member's *out-of-bag* squared errors (labels its
bootstrap left out: honest errors, unlike the shrunken ones on the labels it fitted). Finally, on
the held-out split: MAE, Spearman(|error|, sigma) and calibration; where the median of
``|error| / sigma`` is off from its Gaussian value (0.674) by more than a factor 1.5, every
sigma of that property is multiplied by the one factor that puts it there (``sigma_scale``).

Prediction tabulates each continuous filter over distance once per fitted model and interpolates
it per atom pair (within a few 1e-5 of the exact network): 512 molecules of 18 atoms take
0.35-0.55 s on one thread of the (shared) 2-core test machine.

Crystals. In a periodic crystal an atom's neighbours include periodic images of the other atoms
and of itself, which a radius search over the atoms of the cell cannot see; so a sample may
carry its own directed neighbour list (``MoleculeSample.edges``, which the domain computes, say
with ASE, from the cell), and the network then reads the geometry through those distances
instead of :class:`RadiusNeighbors` (the convolution is the same; every edge is a "single"
edge, its reverse being another image). A property *per atom* of a crystal (energy per atom, a
Lindemann index) must not depend on which cell the crystal is given in (conventional, primitive,
a supercell), whereas the default readout's linear term on the *sum* of atom features, right
for a molecule's total energy, grows with the cell; ``intensive=True`` takes that term on the
per-atom *mean* instead and drops the log of the atom count from the variance head's inputs, so
that every output is a function of the atoms' environments and the composition alone: the same
crystal in any cell gets the same prediction.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch_geometric.nn.models import SchNet
from torch_geometric.nn.models.schnet import ShiftedSoftplus

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
    empty_predictions,
    ensemble_predictions,
)

__all__ = ["MoleculeSample", "RadiusNeighbors", "SchNetEnsembleSurrogate"]

#: Largest atomic number accepted (SchNet's embedding table is widened to hold it).
MAX_ATOMIC_NUMBER = 100
#: Gaussian median of |z|: where ``median(|residual| / sigma)`` should lie when calibrated.
_GAUSS_MEDIAN_ABS_Z = 0.6744897501960817
#: Recalibrate sigma only when it is off by more than this factor ("clearly miscalibrated") ...
_RECALIBRATE_BEYOND = 1.5
#: ... and only from at least this many held-out labels of the property, by at most this.
_RECALIBRATE_MIN_LABELS = 10
_RECALIBRATE_LIMIT = 10.0
#: Smallest held-out split worth early stopping on; below it the last state is kept.
_MIN_VALID = 5
#: Planned training length in epochs, between ``min_steps`` and ``max_steps``.
_EPOCHS = 150
#: Scale of the output layers' initial (Xavier) weights.
_OUTPUT_INIT_SCALE = 0.1
#: Full-batch Adam steps, learning rate and weight decay of the variance heads' fit.
_VARIANCE_STEPS = 300
_VARIANCE_LR = 1e-2
_VARIANCE_WEIGHT_DECAY = 1e-2
#: A member with fewer out-of-bag labels of a property fits its variance to all of them.
_VARIANCE_MIN_LABELS = 10
#: The variance heads are fitted on at most this many training labels (a seeded subset).
_VARIANCE_MAX_LABELS = 20_000
#: Atom pairs (sum of n_atoms^2; of crystals, edges plus atoms) per forward pass outside
#: training: the edge tensors of a chunk, a few MB, stay in cache, which on one core matters
#: more than the per-call overhead.
_PAIRS_PER_CHUNK = 4096
#: Distances at which prediction tabulates each continuous filter (see ``_Ensemble``).
_TABLE_POINTS = 2048


@dataclass
class MoleculeSample:
    """One candidate as a molecule (or a crystal): atoms, their positions, and per-molecule
    features.

    ``global_features``: properties of the whole molecule (charge, a cheap method's gap,
    HOMO, LUMO), possibly empty. ``baseline``: a cheap estimate of each property (the xTB gap
    for a DFT gap); when given, the members learn only the residual (``_training.Baselines``).

    ``edges``: for a periodic crystal, its precomputed *directed* neighbour list
    ``(source, receiver, distance_angstrom)``, three (E,) arrays: edge k carries a message from
    atom ``source[k]`` (SchNet's ``x_j``, row 0 of ``edge_index``) to atom ``receiver[k]`` (the
    atom it updates, ``x_i``, row 1), at the distance between the receiver and that periodic
    image of the source. Indices are the sample's own atoms, 0..n_atoms-1; one entry per
    (receiver, image of a source) within the cutoff, both directions of a bond listed, an atom's
    own images included (``source == receiver``, distance > 0). With ASE, ``i, j, d =
    neighbor_list("ijd", atoms, cutoff)`` has ``i`` the centre atom and ``j`` its neighbour,
    so ``edges=(j, i, d)``. With edges the network reads the geometry through these distances
    only (the positions are checked, not used); edges at or beyond the surrogate's
    ``cutoff_angstrom`` are dropped (so one list computed at a generous cutoff serves any
    surrogate); ``max_neighbors`` does not apply (a cap would cut through a shell of equal
    distances by atom order, and the same crystal in two cells would get two graphs). ``None``
    (a molecule): every pair of its atoms closer than the cutoff (:class:`RadiusNeighbors`).
    Samples with and without edges cannot be mixed in one fit or predict call (PluginError).
    """

    atomic_numbers: np.ndarray  # (n_atoms,) int
    positions_angstrom: np.ndarray  # (n_atoms, 3) float
    global_features: np.ndarray  # (d,) float, may be (0,)
    baseline: Mapping[str, float] | None = None
    edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (source, receiver, dist)


def _checked(sample: Any, where: str) -> MoleculeSample:
    """A copy of ``sample`` with coerced dtypes, or a PluginError saying what is wrong."""
    if not isinstance(sample, MoleculeSample):
        raise PluginError(
            f"{where}: to_sample returned {type(sample).__name__}, not MoleculeSample"
        )
    z_raw = np.asarray(sample.atomic_numbers)
    if z_raw.ndim != 1:
        raise PluginError(
            f"{where}: atomic_numbers must be 1-D (n_atoms,), got shape {z_raw.shape}"
        )
    if z_raw.size == 0:
        raise PluginError(f"{where}: empty molecule (no atoms)")
    if z_raw.dtype.kind not in "iuf" or (
        z_raw.dtype.kind == "f" and not np.all(np.isfinite(z_raw) & (z_raw == np.round(z_raw)))
    ):
        raise PluginError(f"{where}: atomic_numbers must be integers, got {z_raw.dtype} {z_raw}")
    z = z_raw.astype(np.int64)
    if z.min() < 1 or z.max() > MAX_ATOMIC_NUMBER:
        bad = int(z[(z < 1) | (z > MAX_ATOMIC_NUMBER)][0])
        raise PluginError(
            f"{where}: atomic number {bad} outside 1..{MAX_ATOMIC_NUMBER} (atomic_numbers = {z})"
        )
    try:
        pos = np.array(sample.positions_angstrom, dtype=np.float64)  # a copy: it is cached
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{where}: positions_angstrom is not a float array ({exc})") from exc
    if pos.shape != (z.size, 3):
        raise PluginError(
            f"{where}: positions_angstrom must have shape (n_atoms={z.size}, 3), got {pos.shape}"
        )
    if not np.isfinite(pos).all():
        raise PluginError(f"{where}: positions_angstrom contain NaN or inf")
    try:
        u = np.array(sample.global_features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{where}: global_features is not a float array ({exc})") from exc
    if u.ndim != 1:
        raise PluginError(f"{where}: global_features must be 1-D (d,), got shape {u.shape}")
    if not np.isfinite(u).all():
        raise PluginError(f"{where}: global_features contain NaN or inf")
    baseline = sample.baseline
    if baseline is not None:
        if not isinstance(baseline, Mapping):
            raise PluginError(f"{where}: baseline must map property -> value, got {baseline!r}")
        for name, value in baseline.items():
            if not isinstance(value, int | float | np.integer | np.floating):
                raise PluginError(f"{where}: baseline[{name!r}] = {value!r} is not a number")
        baseline = {str(k): float(v) for k, v in baseline.items()}
    edges = None if sample.edges is None else _checked_edges(sample.edges, z.size, where)
    return MoleculeSample(z, pos, u, baseline, edges)


def _checked_edges(
    edges: Any, n_atoms: int, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``edges`` as (source int32, receiver int32, distance float32), or a PluginError.

    Compact dtypes: a crystal has tens of edges per atom, and checked samples are cached. The
    distances are not checked against the cutoff here: the cache is shared by every surrogate
    with the same ``to_sample`` whatever its cutoff, so :class:`_MoleculeStore` drops the edges
    beyond the cutoff of the surrogate that uses them."""
    if isinstance(edges, np.ndarray | str | bytes) or not isinstance(edges, Sequence):
        raise PluginError(
            f"{where}: edges must be a tuple (source, receiver, distance_angstrom), "
            f"got {type(edges).__name__}"
        )
    if len(edges) != 3:
        raise PluginError(
            f"{where}: edges must be (source, receiver, distance_angstrom), got {len(edges)} arrays"
        )
    arrays = []
    for name, raw in zip(("source", "receiver", "distance_angstrom"), edges, strict=True):
        try:
            arr = np.asarray(raw)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{where}: edges {name} is not an array ({exc})") from exc
        if arr.ndim != 1:
            raise PluginError(f"{where}: edges {name} must be 1-D (E,), got shape {arr.shape}")
        arrays.append(arr)
    if len({arr.shape[0] for arr in arrays}) != 1:
        shapes = ", ".join(str(arr.shape) for arr in arrays)
        raise PluginError(
            f"{where}: edges source, receiver, distance_angstrom differ in length ({shapes})"
        )
    out: list[np.ndarray] = []
    for name, arr in zip(("source", "receiver"), arrays[:2], strict=True):
        if arr.size and (
            arr.dtype.kind not in "iuf"
            or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))))
        ):
            raise PluginError(
                f"{where}: edges {name} must be integer atom indices, got {arr.dtype}"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= n_atoms):
            bad = arr[(arr < 0) | (arr >= n_atoms)][0]
            raise PluginError(
                f"{where}: edges {name} index {int(bad)} outside 0..{n_atoms - 1} (n_atoms)"
            )
        out.append(arr.astype(np.int32))
    dist_raw = arrays[2]
    if dist_raw.size and dist_raw.dtype.kind not in "iuf":
        raise PluginError(
            f"{where}: edges distance_angstrom is not a float array ({dist_raw.dtype})"
        )
    if not np.isfinite(dist_raw.astype(np.float64)).all():
        raise PluginError(f"{where}: edges distance_angstrom contain NaN or inf")
    dist = dist_raw.astype(np.float32)  # checked as stored: a float64 1e-50 would become 0
    if dist.size and dist.min() <= 0:
        k = int(np.argmin(dist))
        raise PluginError(
            f"{where}: edges distance_angstrom must be > 0, got {float(dist_raw[k])} for the "
            f"edge {out[0][k]} -> {out[1][k]}"
        )
    return out[0], out[1], dist


#: ~1 KB a small molecule: 50k molecules stay around 50 MB.
_SAMPLE_CACHE: EncodedCache[MoleculeSample] = EncodedCache(max_items=50_000)


class RadiusNeighbors(nn.Module):
    """SchNet's ``interaction_graph``: every pair of atoms of the same molecule closer than
    ``cutoff``, at most ``max_neighbors`` (the nearest) per receiving atom, in pure torch.

    ``batch`` must number the molecules 0, 1, ... with each molecule's atoms contiguous (as
    collation makes them). Memory is O(sum of n_atoms^2 over the molecules): meant for
    molecules, not proteins; crystals bring their own periodic edges (``MoleculeSample.edges``).
    """

    def __init__(self, cutoff: float, max_neighbors: int) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)

    def forward(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index`` (2, edges), row 0 = source j, row 1 = receiver i (as SchNet's
        convolution reads it), and ``edge_weight`` = the distance, per directed edge."""
        pairs, pair_dist, single, single_dist = self.pairs(pos, batch)
        edge_index = torch.cat([pairs, pairs.flip(0), single], dim=1)
        return edge_index, torch.cat([pair_dist, pair_dist, single_dist])

    def pairs(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The same graph split as (pairs (2, P) with row 0 < row 1, their distances (P,),
        single (2, S) directed edges whose reverse was cut by ``max_neighbors``, their
        distances (S,)). A pair is an edge in both directions with one distance, so the
        filter, a function of the distance, is computed once for both."""
        n_atoms = pos.shape[0]
        device = pos.device
        counts = torch.bincount(batch)
        start = torch.cumsum(counts, 0) - counts  # first atom of each molecule
        size = counts[batch]  # molecule size of each atom
        receiver = torch.repeat_interleave(torch.arange(n_atoms, device=device), size)
        first = torch.repeat_interleave(torch.cumsum(size, 0) - size, size)
        local = torch.arange(receiver.shape[0], device=device) - first
        source = start[batch][receiver] + local
        lo, hi = torch.minimum(source, receiver), torch.maximum(source, receiver)
        dist = (pos[hi] - pos[lo]).norm(dim=-1)  # the same float for both directions
        keep = (source != receiver) & (dist < self.cutoff)
        receiver, source, dist = receiver[keep], source[keep], dist[keep]
        if not receiver.numel() or int(torch.bincount(receiver).max()) <= self.max_neighbors:
            up = source < receiver
            empty = torch.zeros((2, 0), dtype=torch.long, device=device)
            return torch.stack([source[up], receiver[up]]), dist[up], empty, dist[:0]
        # nearest first within each receiver (edges are grouped by receiver already)
        order = torch.argsort(dist, stable=True)
        order = order[torch.argsort(receiver[order], stable=True)]
        receiver, source, dist = receiver[order], source[order], dist[order]
        per = torch.bincount(receiver, minlength=n_atoms)
        rank = torch.arange(receiver.shape[0], device=device) - torch.repeat_interleave(
            torch.cumsum(per, 0) - per, per
        )
        near = rank < self.max_neighbors
        receiver, source, dist = receiver[near], source[near], dist[near]
        both = torch.isin(receiver * n_atoms + source, source * n_atoms + receiver)
        up = both & (source < receiver)
        alone = ~both
        return (
            torch.stack([source[up], receiver[up]]),
            dist[up],
            torch.stack([source[alone], receiver[alone]]),
            dist[alone],
        )


def _variance(log_variance: torch.Tensor) -> torch.Tensor:
    """Predicted variance (standardised units) from the log-variance head's output, softly
    bounded to e^+-12 (a tanh, not a clamp: a clamp has no gradient to come back with)."""
    return torch.exp(12.0 * torch.tanh(log_variance / 12.0)) + 1e-6


class _Member(SchNet):
    """SchNet up to its interaction blocks, with a readout of our own.

    Per-atom features (SchNet's ``lin1`` and activation) are pooled over the molecule; each
    property's mean is ``head([mean-pooled atoms, u]) + skip([sum-pooled atoms, u])``: the
    linear ``skip`` on the sum is a sum of per-atom contributions (the extensive part, as in
    SchNet's own readout) plus a linear term in the global features ``u`` (a cheap method's
    gap predicts the costly one's), and the MLP ``head`` adds what is not additive, on inputs
    of order one whatever the molecule's size. With ``heteroscedastic``, ``variance_head``
    gives a log-variance per property from the composition (the mean atom embedding), ``u``
    and the log of the atom count, detached: it is fitted after the means (see
    :meth:`SchNetEnsembleSurrogate._fit_variance_heads`). It reads no geometry on purpose: on
    a strange geometry an MLP's variance is as arbitrary as its mean, and often *smaller*, so
    the members' disagreement alone speaks for geometry out of distribution. With
    ``intensive``, ``skip`` reads the mean-pooled atoms instead of the sum and the variance head
    gets no atom count: every output is then the same for a crystal in any cell (a supercell
    repeats each atom's environment). Output: (molecules, n_props) means, then (with a variance
    head) n_props log-variances.
    """

    #: Members pickled before the option existed were extensive.
    intensive: bool = False

    def __init__(
        self,
        *,
        hidden: int,
        filters: int,
        interactions: int,
        gaussians: int,
        cutoff: float,
        max_neighbors: int,
        global_dim: int,
        n_props: int,
        heteroscedastic: bool,
        generator: torch.Generator,
        intensive: bool = False,
    ) -> None:
        super().__init__(
            hidden_channels=hidden,
            num_filters=filters,
            num_interactions=interactions,
            num_gaussians=gaussians,
            cutoff=cutoff,
            interaction_graph=RadiusNeighbors(cutoff, max_neighbors),
            max_num_neighbors=max_neighbors,
            readout="add",
        )
        # SchNet's table stops at Z = 99 (row 0 is padding); widen it to hold Z = 100.
        self.embedding = nn.Embedding(MAX_ATOMIC_NUMBER + 1, hidden, padding_idx=0)
        half = max(hidden // 2, 1)
        self.lin1 = nn.Linear(hidden, half)
        self.lin2 = None  # SchNet's scalar output layer: replaced by our readout
        self.head = nn.Sequential(
            nn.Linear(half + global_dim, hidden), ShiftedSoftplus(), nn.Linear(hidden, n_props)
        )
        self.skip = nn.Linear(half + global_dim, n_props, bias=False)
        self.intensive = bool(intensive)
        self.variance_head = (
            nn.Sequential(
                nn.Linear(hidden + global_dim + (0 if self.intensive else 1), hidden),
                ShiftedSoftplus(),
                nn.Linear(hidden, n_props),
            )
            if heteroscedastic
            else None
        )
        self._init_from(generator)

    @torch.no_grad()
    def _init_from(self, generator: torch.Generator) -> None:
        """SchNet's initialisation (Xavier weights, zero biases, N(0, 1) embeddings), drawn
        from ``generator`` rather than torch's global RNG, so a fit is reproducible even while
        other threads draw random numbers."""
        self.embedding.weight.normal_(generator=generator)
        self.embedding.weight[0].zero_()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
        # Output layers start small: every member first predicts about the mean (0 in
        # standardised units) instead of a random number of the order of the pooled sum, which
        # costs hundreds of steps to unlearn (Adam moves a weight by about lr per step).
        self.head[2].weight.mul_(_OUTPUT_INIT_SCALE)
        self.skip.weight.mul_(_OUTPUT_INIT_SCALE)
        if self.variance_head is not None:
            self.variance_head[2].weight.mul_(_OUTPUT_INIT_SCALE)

    def readout_molecules(
        self,
        z: torch.Tensor,
        batch: torch.Tensor,
        u: torch.Tensor,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        edge_attr: torch.Tensor,
    ) -> torch.Tensor:
        """(molecules, n_out) from a neighbour graph and its expansion."""
        h = self.embedding(z)
        composition = self.readout(h, batch, dim=0, dim_size=u.shape[0])
        for interaction in self.interactions:
            h = h + interaction(h, edge_index, edge_weight, edge_attr)
        h = self.act(self.lin1(h))
        pooled = self.readout(h, batch, dim=0, dim_size=u.shape[0])
        count = torch.bincount(batch, minlength=u.shape[0]).clamp_min(1).to(h.dtype)
        mean = pooled / count.unsqueeze(1)
        additive = mean if self.intensive else pooled
        out = self.head(torch.cat([mean, u], dim=1)) + self.skip(torch.cat([additive, u], dim=1))
        if self.variance_head is None:
            return out
        composition = composition.detach() / count.unsqueeze(1)
        inputs = [composition, u] if self.intensive else [composition, u, count.log().unsqueeze(1)]
        return torch.cat([out, self.variance_head(torch.cat(inputs, dim=1))], dim=1)

    def forward(  # type: ignore[override]
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        batch: torch.Tensor,
        u: torch.Tensor,
        edges: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """This member alone, through SchNet's own modules: the reference that
        :class:`_Ensemble` computes for all members at once. ``edges``: (edge_index (2, E),
        distances (E,)) of crystals, as :meth:`_MoleculeStore.collate` gives them; None for
        molecules (the radius graph)."""
        if edges is None:
            edge_index, edge_weight = self.interaction_graph(pos, batch)
        else:
            edge_index, edge_weight = edges
        edge_attr = self.distance_expansion(edge_weight)
        return self.readout_molecules(z, batch, u, edge_index, edge_weight, edge_attr)


_LN2 = math.log(2.0)


def _shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """SchNet's activation, ``softplus(x) - ln 2``."""
    return nn.functional.softplus(x) - _LN2


def _gaussians(expansion: nn.Module, dist: torch.Tensor) -> torch.Tensor:
    """SchNet's Gaussian expansion of distances, with the far tails (below e^-40, 4e-18) set to
    exactly zero. The values agree to float precision, but a tail of denormal floats makes x86
    arithmetic on them (above all the weight gradient of the first filter layer) 5-40x slower."""
    arg = expansion.coeff * (dist.view(-1, 1) - expansion.offset.view(1, -1)).pow(2)
    return torch.where(arg > -40.0, torch.exp(arg.clamp_min(-40.0)), 0.0)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-member linear map: x (M, rows, in) or (rows, in) shared; weight (M, out, in)."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


#: Parameters of a SchNet interaction block (``InteractionBlock``: filter network ``mlp``,
#: continuous-filter convolution ``conv``, output ``lin``), by the ensemble's short names.
_BLOCK_PARAMS = {
    "f0_w": "mlp.0.weight",
    "f0_b": "mlp.0.bias",
    "f2_w": "mlp.2.weight",
    "f2_b": "mlp.2.bias",
    "in_w": "conv.lin1.weight",
    "out_w": "conv.lin2.weight",
    "out_b": "conv.lin2.bias",
    "lin_w": "lin.weight",
    "lin_b": "lin.bias",
}
#: The atom embedding and our readout (per-atom layer, then the molecule-level MLP).
_READOUT_PARAMS = {
    "embedding": "embedding.weight",
    "r_w": "lin1.weight",
    "r_b": "lin1.bias",
    "h0_w": "head.0.weight",
    "h0_b": "head.0.bias",
    "h2_w": "head.2.weight",
    "h2_b": "head.2.bias",
    "skip_w": "skip.weight",
}
#: The log-variance head, when heteroscedastic.
_VARIANCE_PARAMS = {
    "v0_w": "variance_head.0.weight",
    "v0_b": "variance_head.0.bias",
    "v2_w": "variance_head.2.weight",
    "v2_b": "variance_head.2.bias",
}


class _Ensemble(nn.Module):
    """The members, evaluated all at once.

    Each member is a :class:`_Member` (a SchNet). Its forward would run the members one after
    the other, and on small molecules the per-operation overhead, not the arithmetic, dominates;
    so the ensemble stacks the members' weights (``torch.stack`` keeps the gradient flowing to
    each member's own parameters) and runs every layer as one batched matmul over the members:
    the same function as :meth:`_Member.forward` (the tests check it), at a fraction of the
    cost. The neighbour graph and the distance expansion depend on the geometry only and are
    computed once for all members.

    At prediction (``prepared``) each continuous filter ``W(d)``, which depends on the
    distance alone, is evaluated on a grid of ``_TABLE_POINTS`` distances over ``0..cutoff``
    and interpolated linearly per edge, instead of running the filter network on every edge:
    on 512 molecules of 18 atoms that is most of the arithmetic. The grid spacing (2.4e-3
    Angstrom at a 5 Angstrom cutoff) keeps the outputs within a few 1e-5 (relative) of the exact
    network; training and early stopping use the exact one.
    """

    def __init__(self, members: Sequence[_Member]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def _stacked(self) -> dict[str, Any]:
        """The members' parameters stacked along a leading member axis."""
        members: list[_Member] = list(self.members)  # type: ignore[arg-type]

        def stack(name: str) -> torch.Tensor:
            return torch.stack([m.get_parameter(name) for m in members])

        out: dict[str, Any] = {key: stack(name) for key, name in _READOUT_PARAMS.items()}
        out.update(self._stacked_variance())
        out["blocks"] = [
            {key: stack(f"interactions.{i}.{name}") for key, name in _BLOCK_PARAMS.items()}
            for i in range(len(members[0].interactions))
        ]
        return out

    def _stacked_variance(self) -> dict[str, torch.Tensor]:
        """The variance heads' parameters, stacked (empty without variance heads)."""
        members: list[_Member] = list(self.members)  # type: ignore[arg-type]
        if members[0].variance_head is None:
            return {}
        return {
            key: torch.stack([m.get_parameter(name) for m in members])
            for key, name in _VARIANCE_PARAMS.items()
        }

    @staticmethod
    def _filter(block: Mapping[str, torch.Tensor], gauss: torch.Tensor, envelope: torch.Tensor):
        """Continuous filter (M, edges, F) of one interaction block: SchNet's filter network on
        the Gaussian-expanded distances, times the cosine cutoff envelope."""
        w = _shifted_softplus(_linear(gauss, block["f0_w"], block["f0_b"]))
        return _linear(w, block["f2_w"], block["f2_b"]) * envelope.view(1, -1, 1)

    def prepare(self) -> _Prepared:
        """What prediction needs once per call rather than once per chunk of molecules: the
        stacked weights and, per interaction block, its filter on ``_TABLE_POINTS`` distances
        over 0..cutoff, as a (points, 2 * M * F) tensor whose row k holds the filters of all
        members at grid point k, then the step to point k + 1."""
        first: _Member = self.members[0]  # type: ignore[assignment]
        weights = self._stacked()
        grid = torch.linspace(0.0, first.cutoff, _TABLE_POINTS + 1)
        gauss = _gaussians(first.distance_expansion, grid)
        envelope = 0.5 * (torch.cos(grid * math.pi / first.cutoff) + 1.0)
        tables = []
        for block in weights["blocks"]:
            table = self._filter(block, gauss, envelope).transpose(0, 1).flatten(1)  # (K+1, MF)
            tables.append(torch.cat([table[:-1], table[1:] - table[:-1]], dim=1).contiguous())
        return _Prepared(weights=weights, tables=tables)

    def forward(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        batch: torch.Tensor,
        u: torch.Tensor,
        edges: tuple[torch.Tensor, torch.Tensor] | None = None,
        prepared: _Prepared | None = None,
    ) -> torch.Tensor:
        """(members, molecules, n_out): the means, then (heteroscedastic) the log-variances.
        Without ``prepared`` (training, validation) the exact network; with it (from
        :meth:`prepare`) the filters are interpolated from its tables. ``edges``: the crystals'
        directed edges (edge_index, distances), or None for molecules (the radius graph)."""
        weights = self._stacked() if prepared is None else prepared.weights
        means, plain = self.trunk(z, pos, batch, u, edges, weights, prepared)
        if "v0_w" not in weights:
            return means
        return torch.cat([means, self.log_variance(weights, plain)], dim=-1)

    @staticmethod
    def log_variance(weights: Mapping[str, torch.Tensor], plain: torch.Tensor) -> torch.Tensor:
        """(M, molecules, n_props) log-variances from the variance heads' inputs ``plain``."""
        hidden = _shifted_softplus(_linear(plain, weights["v0_w"], weights["v0_b"]))
        return _linear(hidden, weights["v2_w"], weights["v2_b"])

    def trunk(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        batch: torch.Tensor,
        u: torch.Tensor,
        edges: tuple[torch.Tensor, torch.Tensor] | None,
        weights: Mapping[str, Any],
        prepared: _Prepared | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, molecules, n_props) means, and the variance heads' (detached) inputs.

        Edge tensors are laid out (edges, members * F), so that gathering an atom's features
        or a table row reads one contiguous row for all members, and the filter of a pair of
        atoms is computed once for the messages both ways. A crystal's ``edges`` are all
        directed "single" edges (a bond's reverse is another periodic image, with its own
        distance in float arithmetic): the radius graph is not computed."""
        first: _Member = self.members[0]  # type: ignore[assignment]
        cutoff = first.cutoff
        tables = None if prepared is None else prepared.tables
        if edges is None:
            pairs, pair_dist, single, single_dist = first.interaction_graph.pairs(pos, batch)
        else:
            single, single_dist = edges
            pairs, pair_dist = single[:, :0], single_dist[:0]
            if tables is not None:
                order = torch.argsort(single_dist)
                single, single_dist = single[:, order], single_dist[order]
        if tables is not None:
            # by distance: consecutive pairs read neighbouring table rows (cache-friendly)
            order = torch.argsort(pair_dist)
            pairs, pair_dist = pairs[:, order], pair_dist[order]
        n_pairs = pair_dist.shape[0]
        dist = torch.cat([pair_dist, single_dist])
        a, b = pairs[0], pairs[1]
        src, dst = single[0], single[1]
        if tables is not None:
            where = dist * (_TABLE_POINTS / cutoff)
            lower = where.floor().long().clamp(0, _TABLE_POINTS - 1)
            frac = (where - lower).view(-1, 1)
        else:
            gauss = _gaussians(first.distance_expansion, dist)
            envelope = 0.5 * (torch.cos(dist * math.pi / cutoff) + 1.0)
        n_members = len(self.members)
        h = weights["embedding"][:, z]  # (M, atoms, H)
        composition = h.new_zeros(h.shape[0], u.shape[0], h.shape[2]).index_add_(1, batch, h)
        n_atoms = h.shape[1]
        for i, block in enumerate(weights["blocks"]):
            if tables is not None:
                rows = tables[i].index_select(0, lower)
                half = rows.shape[1] // 2
                filt = torch.addcmul(rows[:, :half], rows[:, half:], frac)  # (E, M * F)
            else:
                filt = self._filter(block, gauss, envelope).transpose(0, 1).flatten(1)
            x = torch.bmm(h, block["in_w"].transpose(1, 2))  # (M, atoms, F)
            x = x.transpose(0, 1).flatten(1)  # (atoms, M * F)
            pair_filt = filt[:n_pairs]
            agg = torch.zeros_like(x)
            agg = agg.index_add(0, b, x.index_select(0, a) * pair_filt)
            agg = agg.index_add(0, a, x.index_select(0, b) * pair_filt)
            if src.numel():
                agg = agg.index_add(0, dst, x.index_select(0, src) * filt[n_pairs:])
            x = agg.view(n_atoms, n_members, -1).transpose(0, 1)
            x = _shifted_softplus(_linear(x, block["out_w"], block["out_b"]))
            h = h + _linear(x, block["lin_w"], block["lin_b"])
        h = _shifted_softplus(_linear(h, weights["r_w"], weights["r_b"]))
        pooled = h.new_zeros(h.shape[0], u.shape[0], h.shape[2]).index_add_(1, batch, h)
        count = torch.bincount(batch, minlength=u.shape[0]).clamp_min(1).to(h.dtype)
        mean = pooled / count.view(1, -1, 1)
        u = u.unsqueeze(0).expand(h.shape[0], -1, -1)
        hidden = _shifted_softplus(
            _linear(torch.cat([mean, u], -1), weights["h0_w"], weights["h0_b"])
        )
        out = _linear(hidden, weights["h2_w"], weights["h2_b"])
        additive = mean if first.intensive else pooled
        out = out + _linear(torch.cat([additive, u], dim=-1), weights["skip_w"], None)
        composition = composition.detach() / count.view(1, -1, 1)
        if first.intensive:
            return out, torch.cat([composition, u], dim=-1)
        log_count = count.log().view(1, -1, 1).expand(h.shape[0], -1, -1)
        return out, torch.cat([composition, u, log_count], dim=-1)


@dataclass
class _Prepared:
    """Stacked weights and filter tables of a trained ensemble (see :meth:`_Ensemble.prepare`)."""

    weights: dict[str, Any]
    tables: list[torch.Tensor]


class _MoleculeStore:
    """Many molecules (or crystals, with their edges) concatenated, with vectorised collation of
    any subset. ``cutoff``: crystals' edges at or beyond it are dropped (as the radius graph of
    molecules keeps only pairs closer than the cutoff)."""

    def __init__(
        self,
        samples: Sequence[MoleculeSample],
        global_dim: int,
        source: str = "the fit",
        cutoff: float = math.inf,
    ) -> None:
        for i, s in enumerate(samples):
            if s.global_features.shape[0] != global_dim:
                raise PluginError(
                    f"candidate {i}: {s.global_features.shape[0]} global features, not "
                    f"{global_dim} as in {source}"
                )
        #: whether the samples carry edges (crystals): all of them or none
        self.periodic = bool(samples) and samples[0].edges is not None
        for i, s in enumerate(samples):
            if (s.edges is not None) != self.periodic:
                have = ("has", "has none") if s.edges is not None else ("has no", "has them")
                raise PluginError(
                    f"candidate {i} {have[0]} edges (a periodic neighbour list) but candidate 0 "
                    f"{have[1]}: a fit or predict call takes molecules or crystals, not both"
                )
        n_atoms = np.array([s.atomic_numbers.shape[0] for s in samples], dtype=np.int64)
        self.num = len(samples)
        self.ptr = np.concatenate([[0], np.cumsum(n_atoms)])
        self.z = np.concatenate([s.atomic_numbers for s in samples])
        self.pos = np.concatenate([s.positions_angstrom for s in samples]).astype(np.float32)
        self.u = np.stack([s.global_features for s in samples]).reshape(self.num, global_dim)
        if self.periodic:
            kept = [s.edges[2] < cutoff for s in samples]  # type: ignore[index]
            n_edges = np.array([k.sum() for k in kept], dtype=np.int64)
            self.eptr = np.concatenate([[0], np.cumsum(n_edges)])
            # (2, edges) in each sample's own atom numbering; collate shifts them
            self.edge_index = np.concatenate(
                [
                    np.stack([s.edges[0][k], s.edges[1][k]])  # type: ignore[index]
                    for s, k in zip(samples, kept, strict=True)
                ],
                axis=1,
            ).astype(np.int64)
            self.edge_dist = np.concatenate(
                [s.edges[2][k] for s, k in zip(samples, kept, strict=True)]  # type: ignore[index]
            ).astype(np.float32)

    def standardize(self, scaler: Standardizer) -> None:
        self.u = scaler.transform(self.u).astype(np.float32)

    def chunks(self, ids: np.ndarray) -> list[np.ndarray]:
        """``ids`` cut into consecutive runs of about ``_PAIRS_PER_CHUNK`` atom pairs: n_atoms^2
        a molecule (the radius search looks at every pair), its edges plus its atoms a crystal."""
        size = (self.ptr[ids + 1] - self.ptr[ids]).astype(np.float64)
        cost = (self.eptr[ids + 1] - self.eptr[ids]) + size if self.periodic else size**2
        run = np.floor(np.cumsum(cost) / _PAIRS_PER_CHUNK)
        cuts = np.flatnonzero(np.diff(run)) + 1
        return np.split(ids, cuts) if len(ids) else []

    def collate(self, ids: np.ndarray) -> tuple[Any, ...]:
        """(z, pos, batch, u, edges) of the molecules ``ids``; ``edges`` = (edge_index (2, E),
        row 0 source, row 1 receiver, in the collated atom numbering; distances (E,)) for
        crystals, None for molecules."""
        counts = self.ptr[ids + 1] - self.ptr[ids]
        offset = np.cumsum(counts) - counts
        rows = np.repeat(self.ptr[ids] - offset, counts) + np.arange(counts.sum())
        edges = None
        if self.periodic:
            e_counts = self.eptr[ids + 1] - self.eptr[ids]
            e_offset = np.cumsum(e_counts) - e_counts
            e_rows = np.repeat(self.eptr[ids] - e_offset, e_counts) + np.arange(e_counts.sum())
            shift = np.repeat(offset, e_counts)
            edges = (
                torch.from_numpy(self.edge_index[:, e_rows] + shift),
                torch.from_numpy(self.edge_dist[e_rows]),
            )
        return (
            torch.from_numpy(self.z[rows]),
            torch.from_numpy(self.pos[rows]),
            torch.from_numpy(np.repeat(np.arange(len(ids)), counts)),
            torch.from_numpy(self.u[ids]),
            edges,
        )


@dataclass
class _Fitted:
    model: _Ensemble
    global_dim: int
    global_scaler: Standardizer
    target_scaler: Standardizer
    baselines: Baselines | None
    has_values: np.ndarray
    sigma_scale: np.ndarray
    report: dict[str, float]
    #: built on the first prediction (see :meth:`prepared`), not pickled
    _prepared: _Prepared | None = None

    def prepared(self) -> _Prepared:
        """The model's stacked weights and filter tables (~12 MB), built once. Two threads may
        both build them at first; they build the same, and either may be kept."""
        prepared = self._prepared
        if prepared is None:
            with torch.inference_mode():
                prepared = self.model.prepare()
            self._prepared = prepared
        return prepared

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_prepared"] = None  # rebuilt from the weights after unpickling
        return state


class SchNetEnsembleSurrogate:
    """Deep ensemble of SchNets over molecules; satisfies :class:`foundry.contract.Surrogate`.

    For domains without pass/fail (``p_pass`` is ``None``): it predicts each property with a
    sigma in the property's units, NaN ("no opinion") before the first fit and for properties
    no label has measured. ``to_sample`` (a module-level function, so the surrogate pickles)
    turns a candidate into a :class:`MoleculeSample`; results are cached by candidate id, so
    an id must identify the molecule (as ``content_id`` does).

    Training length: about ``_EPOCHS`` epochs, at least ``min_steps`` and at most ``max_steps``
    optimiser steps; it stops earlier when no member has improved on the held-out split for a
    quarter of that (and at least ``min_steps``), or at ``max_train_seconds``, but never before
    ``min_steps``.
    A fit is deterministic for a fixed ``seed`` unless the time limit cut it (then the number
    of steps depends on the machine's speed). Each ``fit`` retrains from scratch.

    Crystals: a ``to_sample`` that fills :attr:`MoleculeSample.edges` (a periodic neighbour
    list) makes it an ensemble over crystals; a fit or predict call takes samples either all
    with edges or all without (else a PluginError). ``intensive=True`` for properties per atom
    (energy per atom, a Lindemann index): the readout then depends on the atoms' environments
    and the composition only, not on the number of atoms, so a crystal predicts the same in its
    conventional cell as in any supercell; the default (``False``) suits extensive properties
    such as a molecule's total energy. A fitted model keeps the flag it was fitted with.
    """

    has_pass_fail = False
    #: Surrogates pickled before the option existed were extensive.
    intensive = False

    def __init__(
        self,
        to_sample: Callable[[Candidate], MoleculeSample],
        properties: Sequence[PropertySpec],
        *,
        n_members: int = 4,
        hidden: int = 64,
        filters: int = 64,
        interactions: int = 3,
        gaussians: int = 32,
        cutoff_angstrom: float = 5.0,
        max_neighbors: int = 32,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        seed: int = 0,
        min_steps: int = 300,
        max_steps: int | None = 3000,
        max_train_seconds: float | None = 300.0,
        bootstrap: bool = True,
        heteroscedastic: bool = True,
        num_threads: int | None = 1,
        valid_fraction: float = 0.1,
        intensive: bool = False,
    ) -> None:
        if n_members < 2:
            raise ValueError("an ensemble needs n_members >= 2 for a spread")
        if min(hidden, filters, gaussians, batch_size, max_neighbors) < 1 or interactions < 0:
            raise ValueError(
                "hidden, filters, gaussians, batch_size, max_neighbors must be >= 1, "
                "interactions >= 0"
            )
        if gaussians < 2:
            raise ValueError("gaussians must be >= 2 (SchNet spaces them over 0..cutoff)")
        if not cutoff_angstrom > 0:
            raise ValueError("cutoff_angstrom must be > 0")
        if min_steps < 0 or (max_steps is not None and max_steps < max(min_steps, 1)):
            raise ValueError("need 0 <= min_steps <= max_steps and max_steps >= 1")
        if not 0.0 <= valid_fraction <= 0.5:
            raise ValueError("valid_fraction must lie in [0, 0.5]")
        if not properties:
            raise ValueError("a surrogate of a domain without pass/fail needs properties")
        self.to_sample = to_sample
        self.properties = tuple(properties)
        self.transforms = check_transforms(self.properties, {})
        self.n_members = n_members
        self.hidden = hidden
        self.filters = filters
        self.interactions = interactions
        self.gaussians = gaussians
        self.cutoff_angstrom = float(cutoff_angstrom)
        self.max_neighbors = max_neighbors
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.max_train_seconds = max_train_seconds
        self.bootstrap = bootstrap
        self.heteroscedastic = heteroscedastic
        self.num_threads = num_threads
        self.valid_fraction = valid_fraction
        self.intensive = bool(intensive)
        self._fitted: _Fitted | None = None

    # -- samples --------------------------------------------------------------------------
    def _samples(self, candidates: Sequence[Candidate]) -> list[MoleculeSample]:
        def encode_missing(missing: Sequence[int]) -> list[MoleculeSample]:
            out = []
            for i in missing:
                cand = candidates[i]
                where = f"candidate {i}" + (f" ({cand.id})" if cand.id else "")
                out.append(_checked(self.to_sample(cand), where))
            return out

        return _SAMPLE_CACHE.get_many(self.to_sample, candidates, encode_missing)

    @contextmanager
    def _threads(self) -> Iterator[None]:
        """Use ``num_threads`` torch threads. torch's setting is process-wide and the scheduler
        fits in one thread while it predicts in another, so it is set, not restored (as in
        :class:`~foundry.surrogates.graph.GraphEnsembleSurrogate`)."""
        if self.num_threads is not None and torch.get_num_threads() != self.num_threads:
            torch.set_num_threads(self.num_threads)
        yield

    # -- training -------------------------------------------------------------------------
    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        """Train all members from scratch on the properties these verdicts measured."""
        check_fit_inputs(candidates, verdicts)
        with self._threads():
            fitted = self._fit(candidates, verdicts)
        self._fitted = fitted  # one assignment: a concurrent predict sees old or new, whole

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic (train, valid) row indices."""
        n_valid = math.floor(self.valid_fraction * n)
        if n_valid < _MIN_VALID or n - n_valid < 2:
            return np.arange(n), np.zeros(0, dtype=np.int64)
        order = np.random.default_rng([self.seed, n, 1]).permutation(n)
        return np.sort(order[n_valid:]), np.sort(order[:n_valid])

    def _plan_steps(self, n_train: int) -> int:
        steps = max(self.min_steps, _EPOCHS * math.ceil(n_train / self.batch_size), 1)
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def _fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> _Fitted:
        start = time.perf_counter()
        samples = self._samples(candidates)
        global_dim = samples[0].global_features.shape[0]
        store = _MoleculeStore(samples, global_dim, "candidate 0", self.cutoff_angstrom)
        n = len(samples)
        train_ids, valid_ids = self._split(n)

        targets = collect_targets(verdicts, self.properties, self.transforms)
        train_targets = Targets(targets.passed[train_ids], targets.values[train_ids])
        offsets, baselines = self._offsets(samples, train_targets, None)
        residual = targets.values - offsets
        mask = np.isfinite(residual)
        target_scaler = Standardizer.fit(residual[train_ids])
        y = np.where(mask, target_scaler.transform(residual), 0.0).astype(np.float32)
        global_scaler = Standardizer.fit(store.u[train_ids])
        store.standardize(global_scaler)

        rng = np.random.default_rng([self.seed, n])
        weights = np.zeros((self.n_members, n))
        weights[:, train_ids] = (
            bootstrap_weights(rng, self.n_members, len(train_ids))
            if self.bootstrap
            else np.ones((self.n_members, len(train_ids)))
        )
        model = self._build(global_dim)
        trunk = [p for name, p in model.named_parameters() if ".variance_head." not in name]
        optimizer = torch.optim.AdamW(trunk, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        total = self._plan_steps(len(train_ids))
        warmup = max(1, total // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _WarmupCosine(warmup=warmup, total=total)
        )
        t_y = torch.from_numpy(y)
        t_mask = torch.from_numpy(mask.astype(np.float32))
        t_w = torch.from_numpy(weights.astype(np.float32))
        valid = _Validation(store, valid_ids, self.n_members) if valid_ids.size else None
        eval_every = max(math.ceil(len(train_ids) / self.batch_size), 10)
        deadline = None if self.max_train_seconds is None else start + self.max_train_seconds

        # early stopping: no member has improved on the held-out split for a quarter of the
        # planned steps (and at least min_steps)
        patience = max(self.min_steps, total // 4)
        steps = 0
        cut = stalled = False
        model.train()
        while steps < total:
            order = train_ids[rng.permutation(len(train_ids))]
            for first in range(0, len(order), self.batch_size):
                ids = order[first : first + self.batch_size]
                out = model(*store.collate(ids))
                idx = torch.from_numpy(ids)
                per_member = self._loss(out, t_y[idx], t_mask[idx], t_w[:, idx])
                optimizer.zero_grad(set_to_none=True)
                per_member.sum().backward()
                optimizer.step()
                schedule.step()
                steps += 1
                last = steps >= total
                if deadline is not None and steps >= self.min_steps:
                    cut = not last and time.perf_counter() > deadline
                    last = last or cut
                if valid is not None and (steps % eval_every == 0 or last):
                    valid.update(model, self._validation_losses(model, valid, t_y, t_mask), steps)
                    if steps >= self.min_steps and steps - valid.best_step.max() >= patience:
                        stalled = not last
                        last = True
                if last:
                    break
            if cut or stalled:
                break
        if valid is not None:
            valid.restore(model)
        model.eval()
        if self.heteroscedastic:
            # out of bag: labels with bootstrap weight 0 (all training labels without bootstrap)
            rows = train_ids
            if len(rows) > _VARIANCE_MAX_LABELS:
                rows = np.sort(rng.choice(rows, _VARIANCE_MAX_LABELS, replace=False))
            unseen = weights[:, rows] == 0 if self.bootstrap else weights[:, rows] > 0
            self._fit_variance_heads(model, store, rows, t_y, t_mask, unseen)
        for p in model.parameters():
            p.requires_grad_(False)

        has_values = mask[train_ids].any(axis=0)
        fitted = _Fitted(
            model=model,
            global_dim=global_dim,
            global_scaler=global_scaler,
            target_scaler=target_scaler,
            baselines=baselines,
            has_values=has_values,
            sigma_scale=np.ones(len(self.properties)),
            report={},
        )
        report: dict[str, float] = {
            "n_labels": float(n),
            "n_train": float(len(train_ids)),
            "n_valid": float(len(valid_ids)),
            "steps": float(steps),
            "planned_steps": float(total),
            "cut_by_time": float(cut),
            "stopped_early": float(stalled),
        }
        if valid is not None:
            report["best_step_mean"] = float(valid.best_step.mean())
        train_mean = Baselines.fit(train_targets).fallback
        self._calibrate(fitted, store, valid_ids, targets.values, train_mean, offsets, report)
        report["train_seconds"] = time.perf_counter() - start
        fitted.report = report
        return fitted

    def _build(self, global_dim: int) -> _Ensemble:
        generator = torch.Generator().manual_seed(self.seed)

        return _Ensemble(
            [
                _Member(
                    hidden=self.hidden,
                    filters=self.filters,
                    interactions=self.interactions,
                    gaussians=self.gaussians,
                    cutoff=self.cutoff_angstrom,
                    max_neighbors=self.max_neighbors,
                    global_dim=global_dim,
                    n_props=len(self.properties),
                    heteroscedastic=self.heteroscedastic,
                    generator=generator,
                    intensive=self.intensive,
                )
                for _ in range(self.n_members)
            ]
        )

    def _fit_variance_heads(
        self,
        model: _Ensemble,
        store: _MoleculeStore,
        train_ids: np.ndarray,
        t_y: torch.Tensor,
        t_mask: torch.Tensor,
        unseen: np.ndarray,
    ) -> None:
        """Fit each member's variance head, by the Gaussian NLL, to the squared errors its
        final mean makes on its out-of-bag labels (``unseen``, (M, n_train)).

        On the labels a member was fitted to, its residuals shrink as it overfits and say
        little about its error on a new molecule; on those its bootstrap left out they are
        honest, label noise included. Done after the means are final (the variance then
        describes the model that is used) on the fixed, detached features, full batch: a
        fraction of a second for a few thousand labels. The log-variances start at the log of
        each member's mean squared out-of-bag error, so the steps go to learning *where*
        errors are large."""
        with torch.no_grad():
            prepared = model.prepare()
            means, plain = [], []
            for part in store.chunks(train_ids):
                m, p = model.trunk(*store.collate(part), prepared.weights, prepared)
                means.append(m)
                plain.append(p)
            idx = torch.from_numpy(train_ids)
            sq = (torch.cat(means, dim=1) - t_y[idx].unsqueeze(0)) ** 2  # (M, n, P)
            features = torch.cat(plain, dim=1)
            w = torch.from_numpy(unseen.astype(np.float32)).unsqueeze(-1) * t_mask[idx]
            lacking = w.sum(1, keepdim=True) < _VARIANCE_MIN_LABELS  # (M, 1, P)
            w = torch.where(lacking, t_mask[idx].unsqueeze(0).expand_as(w), w)
            norm = w.sum(1).clamp_min(1e-6)
            level = ((sq * w).sum(1) / norm).clamp_min(1e-8).log()  # (M, P)
            for k, member in enumerate(model.members):
                member.variance_head[2].bias.copy_(level[k])
        heads = [p for name, p in model.named_parameters() if ".variance_head." in name]
        optimizer = torch.optim.AdamW(
            heads, lr=_VARIANCE_LR, weight_decay=_VARIANCE_WEIGHT_DECAY, fused=True
        )
        for _ in range(_VARIANCE_STEPS):
            stacked = model._stacked_variance()
            var = _variance(model.log_variance(stacked, features))
            nll = 0.5 * (torch.log(var) + sq / var)
            loss = ((nll * w).sum(1) / norm).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def _offsets(
        self,
        samples: Sequence[MoleculeSample],
        targets: Targets | None,
        baselines: Baselines | None,
    ) -> tuple[np.ndarray, Baselines | None]:
        """Per-item offsets (n, n_properties) the members' residual is added to: the samples'
        baselines (fallback: the training mean), or zero when no sample of the fit had one."""
        if baselines is None:
            if targets is None or all(s.baseline is None for s in samples):
                return np.zeros((len(samples), len(self.properties))), None
            baselines = Baselines.fit(targets)
        estimates = Baselines.matrix(
            [s.baseline for s in samples], self.properties, self.transforms
        )
        return baselines.offsets(estimates), baselines

    def _loss(
        self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Per-member loss (members,): the MSE of the means over the labelled entries, each
        label counted by its bootstrap ``weight`` (M, b)."""
        sq = (out[..., : len(self.properties)] - y.unsqueeze(0)) ** 2
        w = weight.unsqueeze(-1) * mask.unsqueeze(0)  # (M, b, P)
        return ((sq * w).sum(1) / w.sum(1).clamp_min(1e-6)).sum(-1)

    @torch.no_grad()
    def _validation_losses(
        self, model: _Ensemble, valid: _Validation, t_y: torch.Tensor, t_mask: torch.Tensor
    ) -> np.ndarray:
        """Each member's loss (members,) on the held-out split: the MSE, unweighted."""
        n_props = len(self.properties)
        total = torch.zeros(self.n_members, n_props)
        count = torch.zeros(n_props)
        for batch, idx in valid.parts:
            sq = (model(*batch)[..., :n_props] - t_y[idx].unsqueeze(0)) ** 2
            total += (sq * t_mask[idx].unsqueeze(0)).sum(1)
            count += t_mask[idx].sum(0)
        return (total / count.clamp_min(1e-6)).sum(-1).numpy()

    def _calibrate(
        self,
        fitted: _Fitted,
        store: _MoleculeStore,
        valid_ids: np.ndarray,
        truth: np.ndarray,
        train_mean: np.ndarray,
        offsets: np.ndarray,
        report: dict[str, float],
    ) -> None:
        """Held-out error, error ranking and, where clearly off, one sigma factor per property."""
        pred = None
        if valid_ids.size:
            pred = self._predict_store(fitted, store, valid_ids, offsets[valid_ids])
        for j, spec in enumerate(self.properties):
            name = spec.name
            report[f"valid_mae/{name}"] = math.nan
            report[f"valid_mae_baseline/{name}"] = math.nan
            report[f"valid_mae_mean/{name}"] = math.nan
            report[f"valid_spearman/{name}"] = math.nan
            report[f"sigma_scale/{name}"] = 1.0
            if pred is None:
                continue
            t = truth[valid_ids, j]
            ok = np.isfinite(t) & np.isfinite(pred.values[name])
            if not ok.any():
                continue
            err = np.abs(pred.values[name][ok] - t[ok])
            sigma = pred.sigmas[name][ok]
            report[f"valid_mae/{name}"] = float(err.mean())
            report[f"valid_mae_mean/{name}"] = float(np.abs(train_mean[j] - t[ok]).mean())
            if fitted.baselines is not None:
                base = offsets[valid_ids, j][ok]
                report[f"valid_mae_baseline/{name}"] = float(np.abs(base - t[ok]).mean())
            if ok.sum() >= 3 and np.ptp(err) > 0 and np.ptp(sigma) > 0:
                report[f"valid_spearman/{name}"] = float(spearmanr(err, sigma).statistic)
            if ok.sum() >= _RECALIBRATE_MIN_LABELS:
                factor = float(np.median(err / sigma) / _GAUSS_MEDIAN_ABS_Z)
                factor = min(max(factor, 1.0 / _RECALIBRATE_LIMIT), _RECALIBRATE_LIMIT)
                if factor > _RECALIBRATE_BEYOND or factor < 1.0 / _RECALIBRATE_BEYOND:
                    fitted.sigma_scale[j] = factor
                    report[f"sigma_scale/{name}"] = factor

    # -- prediction -----------------------------------------------------------------------
    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        """Ensemble mean and sigma per property (original units); NaN before any fit."""
        fitted = self._fitted
        n = len(candidates)
        if n == 0:
            return empty_predictions(self.properties, has_pass_fail=False)
        if fitted is None:
            nan = {p.name: np.full(n, np.nan) for p in self.properties}
            return Predictions(n=n, values=nan, sigmas={k: v.copy() for k, v in nan.items()})
        with self._threads():
            samples = self._samples(candidates)
            cutoff = fitted.model.members[0].cutoff
            store = _MoleculeStore(samples, fitted.global_dim, cutoff=cutoff)
            store.standardize(fitted.global_scaler)
            offsets, _ = self._offsets(samples, None, fitted.baselines)
            return self._predict_store(fitted, store, np.arange(n), offsets)

    def _predict_store(
        self, fitted: _Fitted, store: _MoleculeStore, ids: np.ndarray, offsets: np.ndarray
    ) -> Predictions:
        chunks = []
        prepared = fitted.prepared()
        with torch.inference_mode():
            for part in store.chunks(ids):
                out = fitted.model(*store.collate(part), prepared=prepared)
                chunks.append(out.double().numpy())
        out = np.concatenate(chunks, axis=1)  # (M, n, n_out)
        n_props = len(self.properties)
        member_var = None
        if self.heteroscedastic:
            member_var = _variance(torch.from_numpy(out[..., n_props:])).numpy()
        pred = ensemble_predictions(
            len(ids),
            self.properties,
            self.transforms,
            fitted.target_scaler,
            {},
            None,
            out[..., :n_props],
            fitted.has_values,
            member_variance_std=member_var,
            offsets_t=offsets,
        )
        for j, spec in enumerate(self.properties):
            pred.sigmas[spec.name] = pred.sigmas[spec.name] * fitted.sigma_scale[j]
        return pred

    def train_report(self) -> dict[str, float]:
        """Numbers of the last fit (empty before it): ``n_labels``, ``steps``,
        ``train_seconds``, and per property, on the held-out split, ``valid_mae/<p>`` next to
        ``valid_mae_baseline/<p>`` (the samples' baseline alone; NaN without one) and
        ``valid_mae_mean/<p>`` (the training mean), ``valid_spearman/<p>`` =
        Spearman(|error|, sigma), and ``sigma_scale/<p>``."""
        return {} if self._fitted is None else dict(self._fitted.report)


class _Validation:
    """The held-out split and, per member, the state at its lowest validation loss."""

    def __init__(self, store: _MoleculeStore, ids: np.ndarray, n_members: int) -> None:
        self.parts = [(store.collate(part), torch.from_numpy(part)) for part in store.chunks(ids)]
        self.best_loss = np.full(n_members, np.inf)
        self.best_step = np.zeros(n_members, dtype=np.int64)
        self.best_state: list[dict[str, torch.Tensor] | None] = [None] * n_members

    def update(self, model: _Ensemble, losses: np.ndarray, step: int) -> None:
        for k, loss in enumerate(losses):
            if loss < self.best_loss[k]:
                self.best_loss[k] = loss
                self.best_step[k] = step
                self.best_state[k] = copy.deepcopy(model.members[k].state_dict())

    def restore(self, model: _Ensemble) -> None:
        for member, state in zip(model.members, self.best_state, strict=True):
            if state is not None:
                member.load_state_dict(state)


@dataclass(frozen=True)
class _WarmupCosine:
    """Learning-rate factor: linear warm-up, then cosine decay to 2% at ``total`` steps
    (a picklable callable, unlike a lambda)."""

    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        frac = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac))
