"""A NumPy-only ensemble surrogate on fixed-length feature vectors.

The default for plugins without torch (the ``foundry new-domain`` scaffold uses it): it needs only
``Domain.featurize``. Each member is a Poisson-bootstrap resample of the labels fitted on its own
random Fourier features (a random draw of the kernel approximation, plus the raw features so that
linear trends extrapolate):

* properties: ridge regression, the penalty chosen per member by generalised cross-validation
  from one eigendecomposition (no refits);
* pass/fail: L2-regularised logistic regression by a few Newton (IRLS) steps.

The members' disagreement is the uncertainty. As for every surrogate here it only has to rank
items; the scheduler's calibration supplies validity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from foundry.contract import Candidate, PluginError, Predictions, PropertySpec, Verdict

from ._training import (
    Standardizer,
    bootstrap_weights,
    check_fit_inputs,
    check_transforms,
    collect_targets,
    constant_pass_probability,
    empty_predictions,
    ensemble_predictions,
    log10_ranges,
)

__all__ = ["VectorEnsembleSurrogate"]

#: Ridge penalties scanned by generalised cross-validation (features are standardised).
RIDGE_GRID: np.ndarray = np.geomspace(1e-3, 1e4, 15)


@dataclass
class _Member:
    """One bootstrap member: its random feature map and fitted coefficients."""

    freqs: np.ndarray  # (d, n_fourier)
    phases: np.ndarray  # (n_fourier,)
    coef: np.ndarray | None  # (n_basis + 1, n_properties), last row = intercept
    pass_coef: np.ndarray | None  # (n_basis + 1,)

    def basis(self, x_std: np.ndarray) -> np.ndarray:
        """[x, sqrt(2/D) cos(x W + b)] in float32: NumPy's float32 cosine is vectorised and
        tens of times faster than float64, and features need no more precision."""
        scale = np.float32(np.sqrt(2.0 / self.freqs.shape[1]))
        arg = (x_std @ self.freqs + self.phases).astype(np.float32)
        return np.hstack([x_std.astype(np.float32), scale * np.cos(arg)])


def _with_intercept(phi: np.ndarray) -> np.ndarray:
    return np.hstack([phi, np.ones((phi.shape[0], 1), dtype=phi.dtype)])


def _ridge_gcv(phi: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted ridge with an unpenalised intercept, penalty picked by GCV. Returns (k + 1,).

    With the Gram matrix ``A^T A = V diag(s) V^T`` and ``c = V^T A^T b / sqrt(s)``, the
    residual sum of squares at penalty ``lam`` is ``|b|^2 - sum(c^2 (2 f - f^2))`` with
    ``f = s / (s + lam)``:
    the whole penalty grid costs O(k) each after one O(n k^2) Gram matrix.
    """
    phi = phi.astype(np.float64)
    total = w.sum()
    mean_phi = w @ phi / total
    mean_y = w @ y / total
    sw = np.sqrt(w)
    a = (phi - mean_phi) * sw[:, None]
    b = (y - mean_y) * sw
    eigval, eigvec = np.linalg.eigh(a.T @ a)
    eigval = np.clip(eigval, 0.0, None)
    rhs = eigvec.T @ (a.T @ b)  # (k,)
    c2 = np.divide(rhs**2, eigval, out=np.zeros_like(rhs), where=eigval > 1e-12 * eigval.max())
    b2 = float(b @ b)
    lams = RIDGE_GRID
    f = eigval[None, :] / (eigval[None, :] + lams[:, None])  # (grid, k)
    rss = np.clip(b2 - (c2[None, :] * (2 * f - f**2)).sum(axis=1), 0.0, None)
    dof = f.sum(axis=1)
    score = rss / np.maximum(total - dof, 1e-9) ** 2
    best = lams[int(np.argmin(score))]
    beta = eigvec @ (rhs / (eigval + best))
    return np.append(beta, mean_y - mean_phi @ beta)


def _logistic_irls(
    phi: np.ndarray, passed: np.ndarray, w: np.ndarray, l2: float, steps: int
) -> np.ndarray:
    """L2-regularised (intercept free) logistic regression by Newton steps. Returns (k + 1,)."""
    design32 = _with_intercept(phi).astype(np.float32)
    design = design32.astype(np.float64)
    # The Hessian only steers the Newton steps, so float32 (twice as fast) costs no accuracy at
    # the optimum; the gradient stays float64.
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 1e-6  # keeps the Hessian invertible without shrinking the intercept
    beta = np.zeros(design.shape[1])
    for _ in range(steps):
        eta = np.clip(design @ beta, -30.0, 30.0)
        p = 1.0 / (1.0 + np.exp(-eta))
        grad = design.T @ (w * (p - passed)) + penalty * beta
        curvature = w * p * (1.0 - p)
        hessian = (design32 * curvature[:, None].astype(np.float32)).T @ design32
        step = np.linalg.solve(hessian.astype(np.float64) + np.diag(penalty), grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-4:
            break
    return beta


class VectorEnsembleSurrogate:
    """Bootstrap ensemble of random-feature ridge / logistic models; satisfies
    :class:`foundry.contract.Surrogate` with NumPy alone.

    ``featurize`` maps candidates to an ``(n, d)`` float array (usually ``Domain.featurize``).
    ``target_transforms`` as for the graph surrogate: ``"identity"`` or ``"log10"``.
    ``lengthscale`` is the kernel width relative to ``sqrt(d)`` of standardised features.
    Deterministic for a fixed ``seed``.
    """

    def __init__(
        self,
        featurize: Callable[[Sequence[Candidate]], np.ndarray],
        properties: Sequence[PropertySpec],
        has_pass_fail: bool,
        *,
        target_transforms: Mapping[str, str] = {},
        n_members: int = 8,
        seed: int = 0,
        n_fourier: int = 128,
        lengthscale: float = 1.0,
        pass_l2: float = 1.0,
        newton_steps: int = 8,
        bootstrap: bool = True,
    ) -> None:
        if n_members < 2:
            raise ValueError("an ensemble needs n_members >= 2 for a spread")
        if n_fourier < 1 or lengthscale <= 0 or pass_l2 <= 0 or newton_steps < 1:
            raise ValueError("need n_fourier >= 1, lengthscale > 0, pass_l2 > 0, newton_steps >= 1")
        self.featurize = featurize
        self.properties = tuple(properties)
        self.has_pass_fail = bool(has_pass_fail)
        self.transforms = check_transforms(self.properties, target_transforms)
        self.n_members = n_members
        self.seed = seed
        self.n_fourier = n_fourier
        self.lengthscale = lengthscale
        self.pass_l2 = pass_l2
        self.newton_steps = newton_steps
        self.bootstrap = bootstrap
        self._members: list[_Member] | None = None

    def _features(self, candidates: Sequence[Candidate]) -> np.ndarray:
        x = np.asarray(self.featurize(candidates), dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(candidates):
            raise PluginError(f"featurize must return ({len(candidates)}, d), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise PluginError("featurize returned NaN or inf")
        return x

    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        """Refit every member from scratch on these labels."""
        check_fit_inputs(candidates, verdicts)
        x = self._features(candidates)
        self._x_scaler = Standardizer.fit(x)
        x_std = self._x_scaler.transform(x)
        targets = collect_targets(verdicts, self.properties, self.transforms)
        self._y_scaler = Standardizer.fit(targets.values)
        self._log10_range = log10_ranges(targets, self.properties, self.transforms)
        mask = targets.mask
        self._has_values = mask.any(axis=0)
        y_std = np.where(mask, self._y_scaler.transform(targets.values), 0.0)
        self._constant_p = constant_pass_probability(targets.passed) if self.has_pass_fail else None
        train_pass = self.has_pass_fail and self._constant_p is None

        n, d = x_std.shape
        rng = np.random.default_rng([self.seed, n])
        weights = (
            bootstrap_weights(rng, self.n_members, n)
            if self.bootstrap
            else np.ones((self.n_members, n))
        )
        # Properties measured on the same rows share one Gram matrix and eigendecomposition.
        groups: dict[bytes, list[int]] = {}
        for j in np.flatnonzero(self._has_values):
            groups.setdefault(mask[:, j].tobytes(), []).append(int(j))

        members = []
        for m in range(self.n_members):
            width = self.lengthscale * np.sqrt(max(d, 1))
            member = _Member(
                freqs=rng.normal(0.0, 1.0 / width, size=(d, self.n_fourier)),
                phases=rng.uniform(0.0, 2 * np.pi, size=self.n_fourier),
                coef=None,
                pass_coef=None,
            )
            phi = member.basis(x_std)
            if groups:
                coef = np.zeros((phi.shape[1] + 1, len(self.properties)))
                for cols in groups.values():
                    rows = mask[:, cols[0]]
                    w = weights[m, rows]
                    if w.sum() == 0:  # the resample missed every labelled row
                        w = np.ones_like(w)
                    for j in cols:
                        coef[:, j] = _ridge_gcv(phi[rows], y_std[rows, j], w)
                member.coef = coef
            if train_pass:
                member.pass_coef = _logistic_irls(
                    phi, targets.passed, weights[m], self.pass_l2, self.newton_steps
                )
            members.append(member)
        self._members = members

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        """Ensemble mean and spread; p_pass is the mean of the members' probabilities."""
        if self._members is None:
            raise RuntimeError("VectorEnsembleSurrogate.predict called before fit")
        if len(candidates) == 0:
            return empty_predictions(self.properties, self.has_pass_fail)
        x_std = self._x_scaler.transform(self._features(candidates))
        n = len(candidates)
        values = np.zeros((self.n_members, n, len(self.properties)))
        probs = np.zeros((self.n_members, n))
        for m, member in enumerate(self._members):
            phi = member.basis(x_std).astype(np.float64)
            if member.coef is not None:
                values[m] = phi @ member.coef[:-1] + member.coef[-1]
            if member.pass_coef is not None:
                eta = phi @ member.pass_coef[:-1] + member.pass_coef[-1]
                probs[m] = 1.0 / (1.0 + np.exp(-np.clip(eta, -30.0, 30.0)))
        member_p = None
        if self.has_pass_fail:
            member_p = np.full((1, n), self._constant_p) if self._constant_p is not None else probs
        return ensemble_predictions(
            n,
            self.properties,
            self.transforms,
            self._y_scaler,
            self._log10_range,
            member_p,
            values if self.properties else None,
            self._has_values,
        )
