"""What the network predicts (eps, x0 or v) and the conversions between them.

With x_t = alpha_t x0 + sigma_t eps (Ho et al. 2020, eq. 4; alpha_t^2 + sigma_t^2 = 1), any two of
(x_t, x0, eps) give the third, and v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022, sec. 4 and appendix D).
alpha and sigma are floats or tensors that broadcast against x (e.g. (B, 1, 1, 1, 1) for x (B, 3, F, h, w)).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Prediction = Literal["eps", "x0", "v"]
PREDICTIONS: tuple[Prediction, ...] = ("eps", "x0", "v")
Scalar = float | Tensor


def x0_from_eps(x_t: Tensor, eps: Tensor, alpha: Scalar, sigma: Scalar) -> Tensor:
    """x0 = (x_t - sigma_t eps) / alpha_t (Ho et al. 2020, eq. 15)."""
    return (x_t - sigma * eps) / alpha


def eps_from_x0(x_t: Tensor, x0: Tensor, alpha: Scalar, sigma: Scalar) -> Tensor:
    """eps = (x_t - alpha_t x0) / sigma_t (Ho et al. 2020, eq. 4 solved for eps)."""
    return (x_t - alpha * x0) / sigma


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha: Scalar, sigma: Scalar) -> Tensor:
    """v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022, sec. 4)."""
    return alpha * eps - sigma * x0


def x0_from_v(x_t: Tensor, v: Tensor, alpha: Scalar, sigma: Scalar) -> Tensor:
    """x0 = alpha_t x_t - sigma_t v (Salimans & Ho 2022, appendix D)."""
    return alpha * x_t - sigma * v


def eps_from_v(x_t: Tensor, v: Tensor, alpha: Scalar, sigma: Scalar) -> Tensor:
    """eps = sigma_t x_t + alpha_t v (Salimans & Ho 2022, appendix D)."""
    return sigma * x_t + alpha * v


def check_prediction(kind: str) -> Prediction:
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction {kind!r}: expected one of {PREDICTIONS}")
    return kind  # type: ignore[return-value]


def predict(
    kind: Prediction, output: Tensor, x_t: Tensor, alpha: Scalar, sigma: Scalar
) -> tuple[Tensor, Tensor]:
    """(x0_pred, eps_pred) from the network ``output`` (B, ...) for a ``kind``-predicting network."""
    if kind == "eps":
        return x0_from_eps(x_t, output, alpha, sigma), output
    if kind == "x0":
        return output, eps_from_x0(x_t, output, alpha, sigma)
    if kind == "v":
        return x0_from_v(x_t, output, alpha, sigma), eps_from_v(x_t, output, alpha, sigma)
    raise ValueError(f"unknown prediction {kind!r}: expected one of {PREDICTIONS}")


def target(kind: Prediction, x0: Tensor, eps: Tensor, alpha: Scalar, sigma: Scalar) -> Tensor:
    """What a ``kind``-predicting network is trained to output for x_t = alpha_t x0 + sigma_t eps."""
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return v_from_x0_eps(x0, eps, alpha, sigma)
    raise ValueError(f"unknown prediction {kind!r}: expected one of {PREDICTIONS}")
