"""The k-diffusion samplers the web UI runs, one short function each.

`fn(model, x, sigmas, noise=None, callback=None, **options)`: `model(x, sigma)` is the guided
denoiser (one sigma per image), `x` starts at sigmas[0]'s noise level, `noise(sigma,
sigma_next)` gives unit step noise (ancestral and SDE samplers), `callback(i, x, denoised)` is
called once per step. The update rules are those of the papers: Euler and Heun (Karras et al.
2022, Algorithm 2), DPM-Solver-2 style midpoint steps, linear multistep (LMS), ancestral
variants that step down to sigma_down and add sigma_up of noise, DPM-Solver++(2S), (2M), SDE
and (3M) SDE (Lu et al. 2022) in log-sigma time t = -log(sigma).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Noise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], Any] | None


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The ODE derivative dx/dsigma at x."""
    return (x - denoised) / sigma


def ancestral(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_down, sigma_up): step down deterministically to sigma_down, then add sigma_up of
    fresh noise, so the result has noise level sigma_next."""
    if not eta:
        return sigma_next, torch.zeros_like(sigma_next)
    up = torch.minimum(sigma_next, eta * (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2)
                                          / sigma ** 2) ** 0.5)
    return (sigma_next ** 2 - up ** 2) ** 0.5, up


def _denoise(model: Model, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return model(x, sigma * x.new_ones(x.shape[0]))


def _report(callback: Callback, i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback(i, x, denoised)


@torch.no_grad()
def euler(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None):
    """Euler steps along the probability-flow ODE."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def euler_ancestral(model: Model, x, sigmas, noise: Noise, callback: Callback = None):
    """Euler steps down to sigma_down, then fresh noise up to the next level."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        down, up = ancestral(sigmas[i], sigmas[i + 1])
        _report(callback, i, x, denoised)
        x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * up
    return x


@torch.no_grad()
def heun(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None):
    """Heun steps: the mean of the slopes at both ends (Euler for the last step to 0)."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_end = x + d * dt
        d_end = to_d(x_end, sigmas[i + 1], _denoise(model, x_end, sigmas[i + 1]))
        x = x + (d + d_end) / 2 * dt
    return x


def _midpoint(model: Model, x, sigma, target, d) -> torch.Tensor:
    """A DPM-Solver-2 step from sigma to target through the log-space midpoint's slope."""
    mid = sigma.log().lerp(target.log(), 0.5).exp()
    x_mid = x + d * (mid - sigma)
    return x + to_d(x_mid, mid, _denoise(model, x_mid, mid)) * (target - sigma)


@torch.no_grad()
def dpm_2(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None):
    """DPM-Solver-2 style steps (Euler for the last step to 0)."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            x = _midpoint(model, x, sigmas[i], sigmas[i + 1], d)
    return x


@torch.no_grad()
def dpm_2_ancestral(model: Model, x, sigmas, noise: Noise, callback: Callback = None):
    """DPM-Solver-2 steps down to sigma_down, then fresh noise."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        down, up = ancestral(sigmas[i], sigmas[i + 1])
        _report(callback, i, x, denoised)
        d = to_d(x, sigmas[i], denoised)
        if down == 0:
            x = x + d * (down - sigmas[i])
        else:
            x = _midpoint(model, x, sigmas[i], down, d)
            x = x + noise(sigmas[i], sigmas[i + 1]) * up
    return x


def lms_coefficients(sigmas: list[float], i: int, order: int) -> list[float]:
    """The integrals over [sigma_i, sigma_i+1] of the Lagrange basis through the last `order`
    sigmas (newest first): the weights of linear multistep."""
    import numpy as np
    from numpy.polynomial import polynomial as poly

    nodes = [sigmas[i - k] for k in range(order)]
    weights = []
    for j in range(order):
        basis = np.array([1.0])
        for k in range(order):
            if k != j:
                basis = poly.polymul(basis, np.array([-nodes[k], 1.0]) / (nodes[j] - nodes[k]))
        antiderivative = poly.polyint(basis)
        weights.append(float(poly.polyval(sigmas[i + 1], antiderivative)
                             - poly.polyval(sigmas[i], antiderivative)))
    return weights


@torch.no_grad()
def lms(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None,
        order: int = 4):
    """Linear multistep: the last `order` slopes, integrated through their polynomial."""
    values = sigmas.double().cpu().tolist()
    slopes: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        slopes = [*slopes[-(order - 1):], to_d(x, sigmas[i], denoised)]
        _report(callback, i, x, denoised)
        weights = lms_coefficients(values, i, min(i + 1, order))
        x = x + sum(w * d for w, d in zip(weights, reversed(slopes), strict=False))
    return x


def _t(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.log().neg()


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


@torch.no_grad()
def dpmpp_2s_ancestral(model: Model, x, sigmas, noise: Noise, callback: Callback = None):
    """DPM-Solver++(2S): a midpoint step in log-sigma time down to sigma_down, then noise."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        down, up = ancestral(sigmas[i], sigmas[i + 1])
        _report(callback, i, x, denoised)
        if down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            t, t_next = _t(sigmas[i]), _t(down)
            h = t_next - t
            s = t + h / 2
            x_mid = (_sigma(s) / _sigma(t)) * x - (-h / 2).expm1() * denoised
            denoised_mid = _denoise(model, x_mid, _sigma(s))
            x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * denoised_mid
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * up
    return x


@torch.no_grad()
def dpmpp_sde(model: Model, x, sigmas, noise: Noise, callback: Callback = None, r: float = 0.5):
    """DPM-Solver++ (stochastic): two ancestral half steps with Brownian noise."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        down, up = ancestral(_sigma(t), _sigma(s))
        t_down = _t(down)
        x_mid = (_sigma(t_down) / _sigma(t)) * x - (t - t_down).expm1() * denoised
        x_mid = x_mid + noise(_sigma(t), _sigma(s)) * up
        denoised_mid = _denoise(model, x_mid, _sigma(s))
        down, up = ancestral(_sigma(t), _sigma(t_next))
        t_down = _t(down)
        mixed = (1 - 1 / (2 * r)) * denoised + (1 / (2 * r)) * denoised_mid
        x = (_sigma(t_down) / _sigma(t)) * x - (t - t_down).expm1() * mixed
        x = x + noise(_sigma(t), _sigma(t_next)) * up
    return x


@torch.no_grad()
def dpmpp_2m(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None):
    """DPM-Solver++(2M): second order from the last two denoised images."""
    previous = None
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        t, t_next = _t(sigmas[i]), _t(sigmas[i + 1])
        h = t_next - t
        target = denoised
        if previous is not None and sigmas[i + 1] != 0:
            r = (t - _t(sigmas[i - 1])) / h
            target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        x = (_sigma(t_next) / _sigma(t)) * x - (-h).expm1() * target
        previous = denoised
    return x


@torch.no_grad()
def dpmpp_2m_sde(model: Model, x, sigmas, noise: Noise, callback: Callback = None,
                 eta: float = 1.0, solver_type: str = "midpoint"):
    """DPM-Solver++(2M) SDE, the midpoint or Heun form of the second-order correction."""
    previous, h_last = None, None
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = _t(sigmas[i + 1]) - _t(sigmas[i])
            eta_h = eta * h
            decay = (-h - eta_h).expm1().neg()
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + decay * denoised
            if previous is not None:
                correction = decay / (-h - eta_h) + 1 if solver_type == "heun" else 0.5 * decay
                x = x + correction * (h / h_last) * (denoised - previous)
            if eta:
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                    * (-2 * eta_h).expm1().neg().sqrt()
            h_last = h
        previous = denoised
    return x


@torch.no_grad()
def dpmpp_3m_sde(model: Model, x, sigmas, noise: Noise, callback: Callback = None,
                 eta: float = 1.0):
    """DPM-Solver++(3M) SDE: third order from the last three denoised images."""
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (denoised, h), newest first
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            history.insert(0, (denoised, None))
            continue
        h = _t(sigmas[i + 1]) - _t(sigmas[i])
        h_eta = h * (eta + 1)
        x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
        x = x + _third_order(denoised, history[:2], h, h_eta)
        if eta:
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] \
                * (-2 * h * eta).expm1().neg().sqrt()
        history.insert(0, (denoised, h))
    return x


def _third_order(denoised, history, h, h_eta) -> torch.Tensor | float:
    """The multistep correction of DPM-Solver++(3M) from up to two earlier steps."""
    phi_2 = h_eta.neg().expm1() / h_eta + 1
    if len(history) == 2 and history[1][1] is not None:
        (d_1, h_1), (d_2, h_2) = history
        r0, r1 = h_1 / h, h_2 / h
        d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        return phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
    if history and history[0][1] is not None:
        d_1, h_1 = history[0]
        return phi_2 * (denoised - d_1) / (h_1 / h)
    return 0.0


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": euler, "euler_ancestral": euler_ancestral, "heun": heun, "dpm_2": dpm_2,
    "dpm_2_ancestral": dpm_2_ancestral, "lms": lms, "dpmpp_2s_ancestral": dpmpp_2s_ancestral,
    "dpmpp_sde": dpmpp_sde, "dpmpp_2m": dpmpp_2m, "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_3m_sde": dpmpp_3m_sde,
}
