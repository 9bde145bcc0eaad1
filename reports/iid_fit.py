"""The i.i.d. reference curve, estimated: one smooth increasing curve in log n per replicate, with a shared shape.

Why a fit. Reading a strategy's accuracy off the raw i.i.d. points (through their running maximum, so that the
curve can be inverted) biases every ratio downward: the running maximum of noisy points sits above the true
curve, so the i.i.d. examples "needed" for an accuracy come out too few. A strategy drawn exactly like i.i.d.
came out at 0.92 [0.83, 1.00] that way. A least-squares fit has no such bias.

The model, for replicate r and i.i.d. budget i (n_i examples, test accuracy a_ri):

    a_ri = alpha_r + sum_{k=1..d} beta_k x_i^k + noise,      x_i = log n_i - c   (c: the mean log budget)

- Accuracy against log data is close to a straight line over the one or two orders of magnitude a comparison
  spans (the shape learning curves take in the data-scaling literature); terms of degree 2-3 take up its bending
  (saturation at large n, a slow start at small n).
- The shape (beta) is shared by all replicates and fitted from all their points at once, each replicate keeping
  its own level alpha_r (its data draw, its round-0 model). A replicate has 4-7 i.i.d. points, too few to fit a
  curved shape alone without the shape's noise dominating; pooled, the shape is precise, and the pairing (a
  strategy is compared with its own replicate's curve) is kept.
- The degree d is the largest of 1..3 that leaves two points per replicate over the coefficients (d <= K - 2 for
  K budgets; d = 1 for K <= 3) and whose curve increases over the whole measured range, so it can be inverted.
- The curve is inverted only inside the measured range [n_min, n_max]: an accuracy above the curve's value at
  n_max is censored (the true n_R is at least n_max), one below its value at n_min likewise (at most n_min).

Replicates are the rows of a [R, K] matrix of accuracies over the shared budgets (NaN where a replicate lacks a
point); `fit` takes bootstrap weights [B, R] (how often each replicate is drawn) and returns B fits at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DEGREE = 3


@dataclass(frozen=True)
class Curves:
    """B fits of the model: shape [B, d], levels [B, R], on budgets x = log n - centre in [x_min, x_max];
    `increasing` [B]: whether each fit increases over the range (only those can be inverted)."""

    shape: np.ndarray
    levels: np.ndarray
    centre: float
    x_min: float
    x_max: float
    increasing: np.ndarray | None = None

    def accuracy(self, x: np.ndarray) -> np.ndarray:
        """Fitted accuracy at x (broadcast against [B, R])."""
        out = self.levels + 0.0 * x
        for k in range(self.shape.shape[1]):
            out = out + self.shape[:, k : k + 1] * x ** (k + 1)
        return out

    def log_examples_needed(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log n_R for each target accuracy (broadcast against the levels [B, R]) and its censoring: +1 where the
        target is above the
        curve at n_max (log n_R >= log n_max), -1 where below it at n_min, 0 inside."""
        target = np.asarray(target, dtype=float)
        t = np.broadcast_to(target, np.broadcast_shapes(target.shape, self.levels.shape))
        lo = np.full(t.shape, self.x_min)
        hi = np.full(t.shape, self.x_max)
        f_lo, f_hi = self.accuracy(lo), self.accuracy(hi)
        censor = np.where(t > f_hi, 1, np.where(t < f_lo, -1, 0))
        for _ in range(50):  # bisection, valid because every curve increases on [x_min, x_max]
            mid = 0.5 * (lo + hi)
            below = self.accuracy(mid) < t
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        x = np.where(censor > 0, self.x_max, np.where(censor < 0, self.x_min, 0.5 * (lo + hi)))
        return x + self.centre, censor


def choose_degree(n_budgets: int) -> int:
    return max(1, min(MAX_DEGREE, n_budgets - 2))


def _increasing(shape: np.ndarray, x_min: float, x_max: float) -> np.ndarray:
    """[B] whether each fitted shape has a positive slope all over [x_min, x_max]."""
    grid = np.linspace(x_min, x_max, 65)
    slope = sum((k + 1) * shape[:, k : k + 1] * grid[None, :] ** k for k in range(shape.shape[1]))
    return np.all(slope > 0, axis=1)


def fit(budgets: np.ndarray, accuracy: np.ndarray, weights: np.ndarray | None = None,
        degree: int | None = None) -> Curves:
    """Fit the model to accuracies [R, K] over `budgets` [K] (n examples), once per row of `weights` [B, R].

    Each fit whose curve would not increase over the range falls back to a straight line (its coefficients
    refitted); a fit whose straight line does not increase either (the i.i.d. accuracies do not grow with n) is
    marked in `increasing` and cannot be inverted.
    """
    n = np.asarray(budgets, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    if a.ndim != 2 or a.shape[1] != len(n):
        raise ValueError(f"accuracy must be [replicates, budgets] = [R, {len(n)}], got {a.shape}")
    if len(np.unique(n)) != len(n) or np.any(n <= 0) or len(n) < 2:
        raise ValueError(f"the i.i.d. curve needs at least two distinct positive budgets, got {n.tolist()}")
    w = np.ones((1, a.shape[0])) if weights is None else np.asarray(weights, dtype=float)
    centre = float(np.log(n).mean())
    x = np.log(n) - centre
    d = degree or choose_degree(len(n))
    curves = _fit(x, a, w, d)
    if d > 1:
        bad = ~_increasing(curves.shape, float(x.min()), float(x.max()))
        if bad.any():
            line = _fit(x, a, w[bad], 1)
            shape = np.zeros_like(curves.shape)
            shape[~bad] = curves.shape[~bad]
            shape[bad, :1] = line.shape
            levels = curves.levels.copy()
            levels[bad] = line.levels
            curves = Curves(shape, levels, 0.0, curves.x_min, curves.x_max)
    increasing = _increasing(curves.shape, float(x.min()), float(x.max()))
    return Curves(curves.shape, curves.levels, centre, float(x.min()), float(x.max()), increasing)


def _fit(x: np.ndarray, a: np.ndarray, w: np.ndarray, degree: int) -> Curves:
    """Pooled least squares with per-replicate levels: demean within each replicate, solve for the shape."""
    valid = np.isfinite(a)
    if (valid.sum(1) < 2).any():
        raise ValueError("every replicate needs at least two i.i.d. points")
    design = np.stack([x ** (k + 1) for k in range(degree)], axis=1)  # [K, d]
    count = valid.sum(1)  # [R]
    y = np.where(valid, a, 0.0)
    xbar = (valid[:, :, None] * design[None]).sum(1) / count[:, None]  # [R, d]
    ybar = y.sum(1) / count  # [R]
    xc = (design[None] - xbar[:, None, :]) * valid[:, :, None]  # [R, K, d]
    yc = (y - ybar[:, None]) * valid
    m_r = np.einsum("rkd,rke->rde", xc, xc)  # per-replicate normal equations
    v_r = np.einsum("rkd,rk->rd", xc, yc)
    m = np.einsum("br,rde->bde", w, m_r)
    v = np.einsum("br,rd->bd", w, v_r)
    shape = np.linalg.solve(m + 1e-12 * np.eye(degree), v[..., None])[..., 0]  # [B, d]
    levels = ybar[None, :] - np.einsum("rd,bd->br", xbar, shape)  # [B, R]
    return Curves(shape, levels, 0.0, float(x.min()), float(x.max()))
