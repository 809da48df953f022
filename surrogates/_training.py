"""Helpers shared by the ensemble surrogates (NumPy only, so the vector surrogate needs no torch).

Both surrogates learn the same things from the same labels: a pass/fail probability from every
verdict, and one regression per property from the verdicts that measured it. They differ only in
the learner; the bookkeeping around it (targets with gaps, transforms, standardisation, turning
member outputs into :class:`~foundry.contract.Predictions`) lives here once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from foundry.contract import Candidate, PluginError, Predictions, PropertySpec, Verdict

#: Target transforms a property may be regressed in.
TRANSFORMS: tuple[str, ...] = ("identity", "log10")
#: Floor of the ensemble spread, in standardised target units: members that agree exactly still
#: leave this much uncertainty, so no item gets sigma = 0 (which the calibration reads as certain).
SIGMA_FLOOR_STD: float = 1e-3
#: Predicted log10 values are clipped to the training range widened by this many decades, so a
#: far out-of-distribution input cannot overflow to inf on the way back to original units.
LOG10_MARGIN_DECADES: float = 6.0
_LN10: float = math.log(10.0)


def check_transforms(
    properties: Sequence[PropertySpec], target_transforms: Mapping[str, str]
) -> dict[str, str]:
    """Validate ``target_transforms`` and return one transform per property (default identity)."""
    names = {p.name for p in properties}
    unknown = set(target_transforms) - names
    if unknown:
        raise ValueError(f"target_transforms names unknown properties {sorted(unknown)}")
    out: dict[str, str] = {}
    for spec in properties:
        kind = target_transforms.get(spec.name, "identity")
        if kind not in TRANSFORMS:
            raise ValueError(f"property {spec.name!r}: transform {kind!r} not in {TRANSFORMS}")
        out[spec.name] = kind
    return out


def check_fit_inputs(candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
    """Refuse mismatched or empty label sets with a message that says what is wrong."""
    if len(candidates) != len(verdicts):
        raise ValueError(f"{len(candidates)} candidates but {len(verdicts)} verdicts")
    if len(candidates) == 0:
        raise PluginError("fit needs at least one labelled candidate")


@dataclass
class Targets:
    """Training targets in regression space.

    ``passed``: (n,) 0/1. ``values``: (n, n_properties) transformed values, NaN where a verdict
    did not measure the property (failing verdicts may be partial).
    """

    passed: np.ndarray
    values: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.values)


def collect_targets(
    verdicts: Sequence[Verdict], properties: Sequence[PropertySpec], transforms: Mapping[str, str]
) -> Targets:
    """Gather pass labels and (transformed) property values; missing values become NaN."""
    passed = np.array([bool(v.passed) for v in verdicts], dtype=np.float64)
    values = np.full((len(verdicts), len(properties)), np.nan)
    for j, spec in enumerate(properties):
        for i, verdict in enumerate(verdicts):
            if spec.name not in verdict.properties:
                continue
            raw = float(verdict.properties[spec.name])
            if not math.isfinite(raw):
                raise PluginError(f"verdict {i}: property {spec.name!r} is not finite ({raw})")
            if transforms[spec.name] == "log10":
                if raw <= 0:
                    raise PluginError(
                        f"verdict {i}: property {spec.name!r} = {raw} but its transform is "
                        "log10, which needs positive values"
                    )
                raw = math.log10(raw)
            values[i, j] = raw
    return Targets(passed=passed, values=values)


@dataclass
class Standardizer:
    """Per-column affine map to zero mean / unit spread, fitted on training rows only."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray, weights: np.ndarray | None = None) -> Standardizer:
        """Fit on the finite entries of columns (NaN = missing); constant columns get scale 1."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2:
            raise ValueError("Standardizer.fit needs a 2-D array")
        finite = np.isfinite(data)
        w = finite.astype(np.float64) if weights is None else finite * weights[:, None]
        count = w.sum(axis=0)
        filled = np.where(finite, data, 0.0)
        seen = count > 0
        n_cols = data.shape[1]
        mean = np.divide((w * filled).sum(axis=0), count, out=np.zeros(n_cols), where=seen)
        sq = (w * (filled - mean) ** 2).sum(axis=0)
        var = np.divide(sq, count, out=np.ones(n_cols), where=seen)
        scale = np.sqrt(var)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)
        return cls(mean=mean, scale=scale)

    def transform(self, data: np.ndarray) -> np.ndarray:
        return (np.asarray(data, dtype=np.float64) - self.mean) / self.scale


def constant_pass_probability(passed: np.ndarray) -> float | None:
    """When every label is the same class there is nothing to discriminate: return a shrunk
    constant rate (Jeffreys-style, never exactly 0 or 1) instead of a learner driven to +-inf.
    ``None`` when both classes occur."""
    n_pass = float(passed.sum())
    if 0 < n_pass < len(passed):
        return None
    return (n_pass + 0.5) / (len(passed) + 1.0)


def ensemble_predictions(
    n: int,
    properties: Sequence[PropertySpec],
    transforms: Mapping[str, str],
    target_scaler: Standardizer,
    log10_range: Mapping[str, tuple[float, float]],
    member_pass_prob: np.ndarray | None,
    member_values_std: np.ndarray | None,
    has_values: np.ndarray,
    *,
    member_variance_std: np.ndarray | None = None,
    offsets_t: np.ndarray | None = None,
    windows_t: np.ndarray | None = None,
) -> Predictions:
    """Turn member outputs into :class:`Predictions` in original units.

    ``member_pass_prob``: (n_members, n) probabilities, or None without pass/fail (or when
    ``windows_t`` gives pass/fail from the properties).
    ``member_values_std``: (n_members, n, n_properties) in standardised transformed space.
    ``has_values``: (n_properties,) whether the property had any training label; a property never
    seen predicts NaN ("no opinion", the item goes to the ground truth).
    ``member_variance_std``: (n_members, n, n_properties) each member's own predicted error
    variance, standardised (deep ensembles with a variance head): the predictive variance is
    then the members' mean variance plus the variance of their means.
    ``offsets_t``: (n, n_properties) baseline added back in transformed space (the members
    learned the residual; see :class:`Baselines`).
    ``windows_t``: (n, n_properties, 2) pass window per property in transformed space (+-inf
    where open): ``p_pass`` is then the predictive probability that every property lies in
    its window, under ``N(mean, sigma^2)`` per property in regression space.

    Mean and spread are taken in regression space; a log10 property reports ``10**mean`` and,
    by the delta method, ``sigma = ln(10) * 10**mean * sigma_log10`` in original units.
    """
    p_pass = None
    if member_pass_prob is not None:
        p_pass = np.clip(np.mean(member_pass_prob, axis=0), 0.0, 1.0).astype(np.float64)
    elif windows_t is not None:
        p_pass = np.ones(n)
    values: dict[str, np.ndarray] = {}
    sigmas: dict[str, np.ndarray] = {}
    for j, spec in enumerate(properties):
        if member_values_std is None or not has_values[j]:
            values[spec.name] = np.full(n, np.nan)
            sigmas[spec.name] = np.full(n, np.nan)
            if windows_t is not None and p_pass is not None:
                bounded = np.isfinite(windows_t[:, j, :]).any(axis=1)
                p_pass = np.where(bounded, np.nan, p_pass)
            continue
        members = member_values_std[:, :, j].astype(np.float64)
        mean_std = members.mean(axis=0)
        variance = members.var(axis=0) + SIGMA_FLOOR_STD**2
        if member_variance_std is not None:
            variance = variance + member_variance_std[:, :, j].mean(axis=0)
        spread_std = np.sqrt(variance)
        mean_t = mean_std * target_scaler.scale[j] + target_scaler.mean[j]
        sigma_t = spread_std * target_scaler.scale[j]
        if offsets_t is not None:
            mean_t = mean_t + offsets_t[:, j]
        if windows_t is not None and p_pass is not None:
            lo, hi = windows_t[:, j, 0], windows_t[:, j, 1]
            inside = ndtr((hi - mean_t) / sigma_t) - ndtr((lo - mean_t) / sigma_t)
            p_pass = p_pass * np.clip(inside, 0.0, 1.0)
        if transforms[spec.name] == "log10":
            low, high = log10_range[spec.name]
            mean_t = np.clip(mean_t, low - LOG10_MARGIN_DECADES, high + LOG10_MARGIN_DECADES)
            value = np.power(10.0, mean_t)
            values[spec.name] = value
            sigmas[spec.name] = _LN10 * value * sigma_t
        else:
            values[spec.name] = mean_t
            sigmas[spec.name] = sigma_t
    return Predictions(n=n, p_pass=p_pass, values=values, sigmas=sigmas)


def empty_predictions(properties: Sequence[PropertySpec], has_pass_fail: bool) -> Predictions:
    """Predictions for zero candidates (same keys, empty arrays)."""
    return Predictions(
        n=0,
        p_pass=np.zeros(0) if has_pass_fail else None,
        values={p.name: np.zeros(0) for p in properties},
        sigmas={p.name: np.zeros(0) for p in properties},
    )


def log10_ranges(
    targets: Targets, properties: Sequence[PropertySpec], transforms: Mapping[str, str]
) -> dict[str, tuple[float, float]]:
    """Observed (min, max) of each log10-regressed property, for the overflow guard."""
    out: dict[str, tuple[float, float]] = {}
    for j, spec in enumerate(properties):
        col = targets.values[:, j]
        col = col[np.isfinite(col)]
        if transforms[spec.name] == "log10" and col.size:
            out[spec.name] = (float(col.min()), float(col.max()))
    return out


def bootstrap_weights(rng: np.random.Generator, n_members: int, n: int) -> np.ndarray:
    """Poisson(1) bootstrap weights (n_members, n): each member sees a different resample of the
    labels without changing array shapes, so all members can be trained in one pass."""
    return rng.poisson(1.0, size=(n_members, n)).astype(np.float64)


def transform_value(value: float | None, transform: str) -> float:
    """One value in regression space; NaN when absent, non-finite or outside the transform's
    domain (a log10 of a non-positive number)."""
    if value is None:
        return math.nan
    value = float(value)
    if not math.isfinite(value):
        return math.nan
    if transform == "log10":
        return math.log10(value) if value > 0 else math.nan
    return value


@dataclass
class Baselines:
    """Cheap physics estimates of the properties, which the members learn the residual of.

    Delta-learning: a hand analysis, a lower-fidelity solver or an empirical rule often gets a
    property to within a few per cent; a learner fitting only what that estimate misses needs
    far fewer labels for the same precision. ``fallback`` (per property, regression space) is
    the training mean used for items without an estimate, so those items are regressed
    directly; the domain should flag them in its features.
    """

    fallback: np.ndarray

    @staticmethod
    def matrix(
        estimates: Sequence[Mapping[str, float] | None],
        properties: Sequence[PropertySpec],
        transforms: Mapping[str, str],
    ) -> np.ndarray:
        """(n, n_properties) estimates in regression space, NaN where there is none."""
        out = np.full((len(estimates), len(properties)), np.nan)
        for i, est in enumerate(estimates):
            if not est:
                continue
            for j, spec in enumerate(properties):
                out[i, j] = transform_value(est.get(spec.name), transforms[spec.name])
        return out

    @classmethod
    def fit(cls, targets: Targets) -> Baselines:
        cols = targets.values.shape[1]
        fallback = np.zeros(cols)
        for j in range(cols):
            col = targets.values[:, j]
            col = col[np.isfinite(col)]
            fallback[j] = float(col.mean()) if col.size else 0.0
        return cls(fallback=fallback)

    def offsets(self, estimates_t: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(estimates_t), estimates_t, self.fallback[None, :])


def window_matrix(
    windows: Sequence[Mapping[str, tuple[float | None, float | None]]],
    properties: Sequence[PropertySpec],
    transforms: Mapping[str, str],
) -> np.ndarray:
    """(n, n_properties, 2) pass windows in regression space; open sides are -inf / +inf.

    A log10 window's lower bound at or below zero is no bound at all (every positive value
    clears it)."""
    out = np.empty((len(windows), len(properties), 2))
    out[..., 0] = -np.inf
    out[..., 1] = np.inf
    for i, window in enumerate(windows):
        for j, spec in enumerate(properties):
            lo, hi = window.get(spec.name, (None, None))
            if lo is not None:
                t = transform_value(lo, transforms[spec.name])
                out[i, j, 0] = t if math.isfinite(t) else -np.inf
            if hi is not None:
                t = transform_value(hi, transforms[spec.name])
                if not math.isfinite(t):
                    raise PluginError(f"pass window of {spec.name!r}: upper bound {hi} invalid")
                out[i, j, 1] = t
    return out
