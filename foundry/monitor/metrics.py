"""Distribution metrics for spotting a collapsing generated stream: diversity and two-sample drift.

Pure numpy/scipy, so the monitor can run them on any worker. The kernel metrics take the
bandwidth explicitly: a monitor fixes it once on its reference (``median_bandwidth``) so that
scores from different windows stay comparable. Large inputs are subsampled to bound the
O(n^2) kernel cost; without a ``rng`` a fixed seed is used, so results are reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist
from scipy.stats import wasserstein_distance

__all__ = [
    "kl_divergence",
    "median_bandwidth",
    "mmd2_rbf",
    "mmd_permutation_pvalue",
    "rbf_kernel",
    "vendi_score",
    "wasserstein_1d",
]

_DEFAULT_SEED = 0


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` as a finite float 2-D array (rows = samples), else a one-line ValueError."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples x features), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _values(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as a finite float 1-D sample, else a one-line ValueError."""
    v = np.asarray(a, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of samples, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return v


def _check_bandwidth(bandwidth: float) -> float:
    h = float(bandwidth)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
    return h


def _same_width(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y have different feature counts: {x.shape[1]} != {y.shape[1]}")


def _subsample(x: np.ndarray, rng: np.random.Generator, max_points: int) -> np.ndarray:
    """At most ``max_points`` rows of ``x``, drawn without replacement (bounds O(n^2) cost)."""
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if len(x) <= max_points:
        return x
    return x[np.sort(rng.choice(len(x), max_points, replace=False))]


def median_bandwidth(
    x: np.ndarray, rng: np.random.Generator | None = None, max_points: int = 512
) -> float:
    """Median heuristic for the RBF bandwidth: the median distance between distinct rows.

    Pairs of identical rows are left out, so duplicates (the very thing a collapsing stream
    produces) cannot drive the bandwidth to zero; 1.0 if there are no two distinct rows.
    """
    x = _subsample(_rows(x, "x"), rng or np.random.default_rng(_DEFAULT_SEED), max_points)
    if len(x) < 2:
        return 1.0
    d = pdist(x)
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def rbf_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel matrix exp(-||a - b||^2 / (2 h^2)) between the rows of ``x`` and ``y``.

    Distances come from direct differences (``cdist``), so identical rows give exactly 1.
    """
    x, y = _rows(x, "x"), _rows(y, "y")
    _same_width(x, y)
    h = _check_bandwidth(bandwidth)
    return np.exp(-cdist(x, y, "sqeuclidean") / (2.0 * h * h))


def vendi_score(
    x: np.ndarray,
    bandwidth: float,
    rng: np.random.Generator | None = None,
    max_points: int = 1024,
) -> float:
    """Vendi score: the effective number of distinct rows at the scale ``bandwidth``.

    exp of the Shannon entropy of the eigenvalues of K/n, K the RBF kernel matrix (Friedman &
    Dieng 2023, TMLR). n identical rows give 1, n rows much farther apart than the bandwidth
    give n, so a falling score reads directly as a stream losing distinct modes.
    """
    x = _rows(x, "x")
    h = _check_bandwidth(bandwidth)
    if len(x) < 2:
        return float(len(x))
    x = _subsample(x, rng or np.random.default_rng(_DEFAULT_SEED), max_points)
    w = np.linalg.eigvalsh(rbf_kernel(x, x, h) / len(x))
    w = w[w > 0]  # clip round-off negatives; 0 log 0 = 0
    return float(np.exp(-np.sum(w * np.log(w))))


def _mmd2_from_kernel(k: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) for each row of the 0/1 labels ``z``.

    ``k`` is the kernel on the pooled sample, ``z[p, i] = 1`` puts point i in the first group
    under labelling p. All labellings are scored by one matrix product, which makes the
    permutation test cheap and gives ties the exact same value as the observed labelling.
    """
    m = z[0].sum()
    n = k.shape[0] - m
    diag, rowsum, total = np.diag(k), k.sum(axis=1), k.sum()
    zkz = np.einsum("pi,pi->p", z @ k, z)  # sum over both points in group x
    zk1 = z @ rowsum  # sum over point in x, any point
    s_xx = zkz - z @ diag
    s_xy = zk1 - zkz
    s_yy = total - 2.0 * zk1 + zkz - (diag.sum() - z @ diag)
    return s_xx / (m * (m - 1)) + s_yy / (n * (n - 1)) - 2.0 * s_xy / (m * n)


def _pooled(
    x: np.ndarray, y: np.ndarray, bandwidth: float, rng: np.random.Generator, max_points: int
) -> tuple[np.ndarray, int] | None:
    """Kernel on the subsampled pooled rows and the size of the x part; None if a side < 2."""
    x, y = _rows(x, "x"), _rows(y, "y")
    _same_width(x, y)
    h = _check_bandwidth(bandwidth)
    x, y = _subsample(x, rng, max_points), _subsample(y, rng, max_points)
    if len(x) < 2 or len(y) < 2:
        return None
    pooled = np.concatenate([x, y])
    return rbf_kernel(pooled, pooled, h), len(x)


def mmd2_rbf(
    x: np.ndarray,
    y: np.ndarray,
    bandwidth: float,
    rng: np.random.Generator | None = None,
    max_points: int = 512,
) -> float:
    """Unbiased estimate of the squared RBF-kernel MMD between the row distributions of x and y.

    Unbiased, so it is near 0 (and may be negative) when the two agree, whatever the sample
    sizes; nan if either side has fewer than 2 rows.
    """
    pooled = _pooled(x, y, bandwidth, rng or np.random.default_rng(_DEFAULT_SEED), max_points)
    if pooled is None:
        return float("nan")
    k, m = pooled
    z = np.zeros((1, k.shape[0]))
    z[0, :m] = 1.0
    return float(_mmd2_from_kernel(k, z)[0])


def mmd_permutation_pvalue(
    x: np.ndarray,
    y: np.ndarray,
    bandwidth: float,
    rng: np.random.Generator,
    n_permutations: int = 200,
    max_points: int = 256,
) -> float:
    """Permutation-test p-value of "x and y come from the same distribution" using MMD^2.

    (1 + #{permuted >= observed}) / (1 + n_permutations), which is a valid p-value (never below
    the nominal false-alarm rate), so thresholding it bounds the monitor's false alarms. nan if
    either side has fewer than 2 rows.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    pooled = _pooled(x, y, bandwidth, rng, max_points)
    if pooled is None:
        return float("nan")
    k, m = pooled
    base = np.zeros(k.shape[0])
    base[:m] = 1.0
    z = np.vstack([base, rng.permuted(np.tile(base, (n_permutations, 1)), axis=1)])
    stats = _mmd2_from_kernel(k, z)
    return float((1 + np.count_nonzero(stats[1:] >= stats[0])) / (1 + n_permutations))


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein (earth mover's) distance between two 1-D samples, in the data's units.

    Unlike KL it needs no binning and grows linearly with a shift; nan if either side is empty.
    """
    a, b = _values(a, "a"), _values(b, "b")
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def kl_divergence(
    p_samples: np.ndarray, q_samples: np.ndarray, bins: int = 20, smoothing: float = 0.5
) -> float:
    """KL(P || Q) in nats between histograms of two 1-D samples on shared equal-width bins.

    The bins span both samples; ``smoothing`` is added to every bin count so that a bin empty in
    Q gives a large but finite value. nan if either side is empty, 0 for identical samples.
    """
    p, q = _values(p_samples, "p_samples"), _values(q_samples, "q_samples")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if not smoothing > 0:
        raise ValueError(f"smoothing must be positive, got {smoothing!r}")
    if p.size == 0 or q.size == 0:
        return float("nan")
    lo, hi = min(p.min(), q.min()), max(p.max(), q.max())
    if lo == hi:  # both samples are the same single value
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    cp = np.histogram(p, edges)[0] + smoothing
    cq = np.histogram(q, edges)[0] + smoothing
    pp, qq = cp / cp.sum(), cq / cq.sum()
    return max(float(np.sum(pp * np.log(pp / qq))), 0.0)
