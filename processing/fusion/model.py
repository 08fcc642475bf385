"""The fusion cost, its gradient and the TV proximal step (pure numpy, float32, maps stacked as (n, H, W)).

Cost (the published one, Schwartz et al. 2022, with the weights written out)::

    F(u) = lambda_HAADF * 1/2 ||b - sum_i w_i u_i**gamma||^2          (HAADF consistency)
         + lambda_chem  * sum_i s_i * D(u_i; m_i)                     (Poisson likelihood of the maps)
         + lambda_TV    * sum_i TV(u_i),        u >= 0                (isotropic total variation)

``u`` are the maps in normalised units (max of each measured map = 1); ``b`` is the HAADF normalised to [0, 1];
``m`` the measured maps, in normalised units (``s_i = 1``) or in counts (``s_i`` = counts per normalised unit, the
Poisson term on counts ``x_i = s_i u_i``). ``D`` is the Poisson negative log-likelihood in deviance form,
``x + bkg - m - m log((x + bkg) / m)`` (0 when the model ``x + bkg`` equals the measurement; the constant the
published code omits does not change the minimiser). TV is isotropic with forward differences and a zero
difference across the last row/column.
"""
from __future__ import annotations

import dataclasses
import functools
import typing

import numpy as np
from numpy.typing import NDArray

__all__ = ["FusionProblem", "CostTerms", "tv_isotropic", "huber_tv", "published_tv_delta", "tv_prox", "tv_prox_numpy",
           "gradient_xy", "divergence"]

F32 = NDArray[np.float32]


@dataclasses.dataclass(frozen=True)
class CostTerms:
    """The three unweighted terms and the weighted total F."""

    haadf: float
    poisson: float
    tv: float
    total: float


def gradient_xy(x: F32) -> tuple[F32, F32]:
    """Forward differences (n, H, W) -> (dy, dx), zero across the last row / column."""
    dy = np.zeros_like(x)
    dx = np.zeros_like(x)
    np.subtract(x[:, 1:, :], x[:, :-1, :], out=dy[:, :-1, :])
    np.subtract(x[:, :, 1:], x[:, :, :-1], out=dx[:, :, :-1])
    return dy, dx


def divergence(py: F32, px: F32) -> F32:
    """Minus the adjoint of :func:`gradient_xy`: div(p) with <grad x, p> = -<x, div p>."""
    out = np.zeros_like(py)
    out[:, :-1, :] += py[:, :-1, :]
    out[:, 1:, :] -= py[:, :-1, :]
    out[:, :, :-1] += px[:, :, :-1]
    out[:, :, 1:] -= px[:, :, :-1]
    return out


def tv_isotropic(x: F32) -> float:
    """sum over maps and pixels of sqrt(dy^2 + dx^2)."""
    dy, dx = gradient_xy(x)
    return float(np.sqrt(dy * dy + dx * dx, dtype=np.float32).sum(dtype=np.float64))


def published_tv_delta(lambda_tv: float, tv_iterations: int, step: float = 1.0) -> float:
    """Huber threshold delta of the regulariser the published loop effectively applies (see :func:`huber_tv`);
    0 when it applies none (``tv_iterations`` 1).

    The published loop takes a gradient step of size ``step`` (1), then ``fgp_tv(x, lambda_TV, K)``: gradient
    projection on the TV dual, no momentum, dual step 1 / (8 lambda'), lambda' = step * lambda_TV, from a zero
    dual. Its C++ kernel (``multimodal-fusion`` 0.6.0) makes K - 1 dual updates: with K = 1 it returns its input
    (checked against a port to 6e-8). With q = lambda' p, each update adds grad(x) / 8 to q, independent of
    lambda', until |q| reaches lambda'. Where |grad x| < 8 lambda' / (K - 1) the TV step is therefore the linear
    diffusion x + (K - 1) Laplacian(x) / 8 (to first order; lambda_TV does not enter). Elsewhere it is the TV prox
    of weight lambda'. The fixed point of "gradient step, then that smoothing" is the stationary point of the smooth
    terms plus lambda_TV * sum Huber_delta(|grad x|), delta = 8 step lambda_TV / (K - 1). That is a quadratic
    (K - 1) / (16 step) |grad x|^2 below delta and lambda_TV |grad x| above. Published defaults (lambda_TV 0.15,
    K 3, step 1): delta = 0.6 (normalised units), a Tikhonov smoothness of weight 1/8 on nearly every gradient of
    an atomic-resolution map.
    """
    updates = int(tv_iterations) - 1
    return 8.0 * step * lambda_tv / updates if updates > 0 else 0.0


def huber_tv(x: F32, delta: float, *, with_gradient: bool = True) -> tuple[float, F32 | None]:
    """Huber total variation sum_pixels H_delta(|grad x|), H(g) = g^2 / (2 delta) for g <= delta, g - delta / 2
    above (isotropic, forward differences as :func:`tv_isotropic`; -> TV as delta -> 0), and its gradient
    -div(grad x / max(|grad x|, delta)) (Lipschitz constant 8 / delta). Returns (value, gradient or None)."""
    dy, dx = gradient_xy(x)
    norm = np.sqrt(dy * dy + dx * dx, dtype=np.float32)
    d = np.float32(delta)
    value = float(np.where(norm <= d, norm * norm / (2 * d), norm - d / 2).sum(dtype=np.float64))
    if not with_gradient:
        return value, None
    np.maximum(norm, d, out=norm)
    np.divide(dy, norm, out=dy)
    np.divide(dx, norm, out=dx)
    grad = divergence(dy, dx)
    np.negative(grad, out=grad)
    return value, grad


def tv_prox(v: F32, weight: float, dual: tuple[F32, F32] | None, iterations: int, delta: float = 0.0
            ) -> tuple[F32, tuple[F32, F32]]:
    """argmin_{x >= 0} 1/2 ||x - v||^2 + weight * TV(x) by ``iterations`` of FGP, warm-started from ``dual``: the
    numba kernel (:func:`processing.fusion._kernels.fgp_tv`, 10x the numpy version); :func:`tv_prox_numpy` is its
    reference. ``delta`` > 0: the Huber-TV of :func:`huber_tv` instead of TV. Returns (x, dual); ``dual`` is not
    modified. ``weight`` <= 0 returns max(v, 0).
    """
    if weight <= 0:
        return np.maximum(v, 0.0), dual if dual is not None else (np.zeros_like(v), np.zeros_like(v))
    from processing.fusion._kernels import fgp_tv
    v32 = np.ascontiguousarray(v, dtype=np.float32)
    py, px = (np.zeros_like(v32), np.zeros_like(v32)) if dual is None else (
        np.array(dual[0], dtype=np.float32, order="C"), np.array(dual[1], dtype=np.float32, order="C"))
    x = fgp_tv(v32, float(weight), py, px, int(iterations), float(delta))
    return x, (py, px)


def tv_prox_numpy(v: F32, weight: float, dual: tuple[F32, F32] | None, iterations: int, delta: float = 0.0
                  ) -> tuple[F32, tuple[F32, F32]]:
    """argmin_{x >= 0} 1/2 ||x - v||^2 + weight * TV(x), by ``iterations`` of FGP (Beck & Teboulle 2009, fast
    gradient projection on the dual, with momentum), warm-started from ``dual`` (the dual returned last time).

    Returns (x, dual). ``weight`` <= 0 returns max(v, 0).
    """
    if weight <= 0:
        return np.maximum(v, 0.0), dual if dual is not None else (np.zeros_like(v), np.zeros_like(v))
    py, px = (np.zeros_like(v), np.zeros_like(v)) if dual is None else dual
    ry, rx = py.copy(), px.copy()
    t = 1.0
    step = np.float32(1.0 / (8.0 * weight + delta))
    w32 = np.float32(weight)
    d32 = np.float32(delta)
    for _ in range(iterations):
        x = np.maximum(v + w32 * divergence(ry, rx), 0.0)
        gy, gx = gradient_xy(x)
        ny: F32 = (ry + step * (gy - d32 * ry)).astype(np.float32, copy=False)
        nx: F32 = (rx + step * (gx - d32 * rx)).astype(np.float32, copy=False)
        norm = np.sqrt(ny * ny + nx * nx)
        np.maximum(norm, 1.0, out=norm)
        ny /= norm
        nx /= norm
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = np.float32((t - 1.0) / t_next)
        ry = ny + beta * (ny - py)
        rx = nx + beta * (nx - px)
        py, px, t = ny, nx, t_next
    x = np.maximum(v + w32 * divergence(py, px), 0.0)
    return x, (py, px)


@dataclasses.dataclass(frozen=True)
class FusionProblem:
    """Prepared data of one fusion (all float32).

    b : (H, W) normalised HAADF. m : (n, H, W) measured maps (normalised, or counts). scale : (n,) counts per
    normalised unit (1 in normalised mode). weights : (n,) HAADF weights w_i. mask : (H, W) bool or None, the
    pixels that count (the others, e.g. not yet acquired, are free and ignored).
    """

    b: F32
    m: F32
    scale: F32
    weights: F32
    gamma: float
    lambda_haadf: float
    lambda_chem: float
    lambda_tv: float
    background: float
    mask: NDArray[np.bool_] | None = None
    tv_delta: float = 0.0  # > 0: the regulariser is Huber-TV with this threshold (the published loop's); 0: TV

    def regulariser(self, u: F32, *, with_gradient: bool = False) -> tuple[float, F32 | None]:
        """(unweighted regulariser value, its gradient or None): Huber-TV when ``tv_delta`` > 0, else TV (no
        gradient: TV goes through its proximal step)."""
        if self.tv_delta > 0:
            return huber_tv(u, self.tv_delta, with_gradient=with_gradient)
        return tv_isotropic(u), None

    def predicted(self, u: F32) -> F32:
        """The HAADF the maps predict: sum_i w_i u_i**gamma, (H, W)."""
        powered = np.power(u, np.float32(self.gamma))
        return typing.cast(F32, np.tensordot(self.weights, powered, axes=1).astype(np.float32))

    @functools.cached_property
    def _poisson_constants(self) -> tuple[F32, F32 | None, float]:
        """(m masked, mask as float32 or None, sum of mask * (m - m log m)): the parts of D that do not depend on x."""
        m = self.m if self.mask is None else self.m * self.mask
        with np.errstate(divide="ignore", invalid="ignore"):
            m_log_m = np.where(m > 0, m * np.log(np.where(m > 0, m, 1.0)), 0.0)
        constant = float(np.sum(m, dtype=np.float64) - np.sum(m_log_m, dtype=np.float64))
        weights = None if self.mask is None else np.broadcast_to(self.mask, self.m.shape).astype(np.float32)
        return m.astype(np.float32), weights, constant

    def _poisson(self, x: F32) -> tuple[float, F32]:
        """Deviance sum(model - m - m log(model / m)) with model = x + bkg, and its derivative wrt x."""
        m, weights, constant = self._poisson_constants
        model = x + np.float32(self.background)
        model_sum = float(np.sum(model if weights is None else model * weights, dtype=np.float64))
        dev = model_sum - float(np.vdot(m, np.log(model))) - constant
        deriv = (1.0 if weights is None else weights) - m / model
        return dev, typing.cast(F32, deriv.astype(np.float32, copy=False))

    def smooth(self, u: F32, *, with_gradient: bool = True) -> tuple[float, float, F32 | None]:
        """(HAADF term, Poisson term, gradient of lambda_H * HAADF + lambda_chem * Poisson), unweighted terms."""
        g = np.float32(self.gamma)
        u_gm1 = np.power(u, g - np.float32(1.0))
        powered = u_gm1 * u
        residual = np.tensordot(self.weights, powered, axes=1).astype(np.float32, copy=False) - self.b
        if self.mask is not None:
            residual *= self.mask
        haadf = 0.5 * float(np.dot(residual.ravel(), residual.ravel()))
        s = self.scale[:, None, None]
        poisson, deriv = self._poisson(u * s)
        if not with_gradient:
            return haadf, poisson, None
        grad = (np.float32(self.lambda_haadf) * g) * (self.weights[:, None, None] * u_gm1) * residual[None]
        grad += np.float32(self.lambda_chem) * s * deriv
        return haadf, poisson, grad.astype(np.float32)

    def terms(self, u: F32) -> CostTerms:
        haadf, poisson, _ = self.smooth(u, with_gradient=False)
        tv, _ = self.regulariser(u)
        return self.combine(haadf, poisson, tv)

    def combine(self, haadf: float, poisson: float, tv: float) -> CostTerms:
        total = self.lambda_haadf * haadf + self.lambda_chem * poisson + self.lambda_tv * tv
        return CostTerms(haadf, poisson, tv, total)
