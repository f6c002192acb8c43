"""The k-diffusion samplers the web UI runs, one short function each.

`fn(model, x, sigmas, noise=None, callback=None, **options)`: `model(x, sigma)` is the guided
denoiser (one sigma per image), `x` starts at sigmas[0]'s noise level, `noise(sigma,
sigma_next)` gives unit step noise (ancestral and SDE samplers), `callback(i, x, denoised)` is
called once per step. The update rules are those of the papers: Euler and Heun (Karras et al.
2022, Algorithm 2), DPM-Solver-2 style midpoint steps, linear multistep (LMS), ancestral
variants that step down to sigma_down and add sigma_up of noise, DPM-Solver++(2S), (2M), SDE
and (3M) SDE (Lu et al. 2022) in log-sigma time t = -log(sigma), DPM-Solver-1/2/3 with fixed
(DPM fast) or adaptive (DPM adaptive) steps, and the web UI's Restart sampler (Xu et al. 2023).
DPM fast and DPM adaptive use only the range of `sigmas` (and DPM fast its length) unless given
sigma_min, sigma_max (and n), as the web UI gives them in txt2img.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise
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


def _heun_step(model: Model, x, sigma, sigma_next, denoised) -> torch.Tensor:
    """A Heun step from sigma to sigma_next given x's denoised image: the mean of the slopes at
    both ends (Euler for a step to 0)."""
    d = to_d(x, sigma, denoised)
    dt = sigma_next - sigma
    x_end = x + d * dt
    if sigma_next == 0:
        return x_end
    d_end = to_d(x_end, sigma_next, _denoise(model, x_end, sigma_next))
    return x + (d + d_end) / 2 * dt


@torch.no_grad()
def heun(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None):
    """Heun steps: the mean of the slopes at both ends (Euler for the last step to 0)."""
    for i in range(len(sigmas) - 1):
        denoised = _denoise(model, x, sigmas[i])
        _report(callback, i, x, denoised)
        x = _heun_step(model, x, sigmas[i], sigmas[i + 1], denoised)
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


def _eps(model: Model, x, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(denoised, eps) of x at log-sigma time t: the model's image and the noise it sees."""
    sigma = _sigma(t)
    denoised = _denoise(model, x, sigma)
    return denoised, (x - denoised) / sigma


def _dpm_solver(model: Model, x, t, t_next, eps, order: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """DPM-Solver-`order` (1, 2 or 3) from t to t_next in log-sigma time, given x's `eps`, and
    its embedded step one order lower: (x_next, lower). Intermediate points sit at r = 1/2 of
    the step (order 2; the lower step is DPM-Solver-1) or at 1/3 and 2/3 (order 3; the lower
    step is DPM-Solver-2 through 1/3, which shares its model evaluation)."""
    h = t_next - t
    sigma_next = _sigma(t_next)
    first = x - sigma_next * h.expm1() * eps
    if order == 1:
        return first, first
    r1 = 1 / 2 if order == 2 else 1 / 3
    s1 = t + r1 * h
    eps_1 = _eps(model, x - _sigma(s1) * (r1 * h).expm1() * eps, s1)[1]
    second = first - sigma_next / (2 * r1) * h.expm1() * (eps_1 - eps)
    if order == 2:
        return second, first
    r2 = 2 / 3
    s2 = t + r2 * h
    u2 = x - _sigma(s2) * (r2 * h).expm1() * eps \
        - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (eps_1 - eps)
    eps_2 = _eps(model, u2, s2)[1]
    return first - sigma_next / r2 * (h.expm1() / h - 1) * (eps_2 - eps), second


def _solver_range(x, sigmas, sigma_min, sigma_max) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_start, t_end): the log-sigma times of sigma_max and sigma_min, by default the first
    and the last positive of `sigmas` (the web UI's img2img range)."""
    low = sigmas[-2] if sigma_min is None else sigma_min
    high = sigmas[0] if sigma_max is None else sigma_max
    if low <= 0 or high <= 0:
        raise ValueError("sigma_min and sigma_max must be positive")
    return tuple(_t(torch.as_tensor(s, dtype=torch.float32, device=x.device))
                 for s in (high, low))


def _down(t, t_next, t_end, eta: float):
    """(t_down, sigma_up) of an ancestral DPM-Solver step: down to sigma_down (not past the
    run's end), then sigma_up of fresh noise brings x back to t_next's level."""
    if not eta:
        return t_next, 0.0
    down = _t(ancestral(_sigma(t), _sigma(t_next), eta)[0])
    t_down = torch.minimum(t_end, down)
    return t_down, (_sigma(t_next) ** 2 - _sigma(t_down) ** 2) ** 0.5


@torch.no_grad()
def dpm_fast(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None,
             eta: float = 0.0, s_noise: float = 1.0, sigma_min: float | None = None,
             sigma_max: float | None = None, n: int | None = None):
    """DPM-Solver-Fast (Lu et al. 2022, "DPM-Solver", arXiv:2206.00927, section 3.4): `n` model
    evaluations in steps evenly spaced in log-sigma time from sigma_max to sigma_min, third
    order but the last one or two (n = 3k: 3, ..., 3, 2, 1; otherwise 3, ..., 3, n mod 3).
    It ends at sigma_min, not 0: the result keeps that little noise, as in k-diffusion. By
    default the range and n come from `sigmas` (first, last positive, len - 1), as the web UI
    gives them in img2img. With eta, each step goes down to sigma_down and adds s_noise x
    sigma_up of fresh noise (one draw a step). `callback` gets each step: n // 3 + 1 of them."""
    t_start, t_end = _solver_range(x, sigmas, sigma_min, sigma_max)
    n = len(sigmas) - 1 if n is None else n
    count = n // 3 + 1
    orders = [3] * (count - 2) + [2, 1] if n % 3 == 0 else [3] * (count - 1) + [n % 3]
    ts = torch.linspace(t_start, t_end, count + 1, device=x.device)
    for i, order in enumerate(orders):
        t_down, up = _down(ts[i], ts[i + 1], t_end, eta)
        denoised, eps = _eps(model, x, ts[i])
        _report(callback, i, x, denoised)
        x = _dpm_solver(model, x, ts[i], t_down, eps, order)[0]
        if eta:
            x = x + up * s_noise * noise(_sigma(ts[i]), _sigma(ts[i + 1]))
    return x


class StepControl:
    """PID control of an adaptive step size (Söderlind 2003, "Digital filters in adaptive
    time-stepping"): h is multiplied by 1 + atan(f - 1), f = e0^b1 e1^b2 e2^b3 over the inverse
    errors of this step and the last two accepted ones, b = ((p + i + d), -(p + 2d), d) / order;
    a step whose factor is under accept_safety is rejected (and retried with the smaller h)."""

    def __init__(self, h: float, order: float, pcoeff: float, icoeff: float, dcoeff: float,
                 accept_safety: float):
        self.h, self.accept_safety = h, accept_safety
        self.exponents = ((pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order,
                          dcoeff / order)
        self.accepted: list[float] = []  # inverse errors of the last two accepted steps

    def accept(self, error: torch.Tensor) -> bool:
        """Whether a step of this error passes; h becomes the next step's size either way."""
        inverse = 1 / (float(error) + 1e-8)
        self.accepted = self.accepted or [inverse, inverse]
        b1, b2, b3 = self.exponents
        factor = 1 + math.atan(inverse ** b1 * self.accepted[0] ** b2
                               * self.accepted[1] ** b3 - 1)
        self.h *= factor
        if factor < self.accept_safety:
            return False
        self.accepted = [inverse, self.accepted[0]]
        return True


@torch.no_grad()
def dpm_adaptive(model: Model, x, sigmas, noise: Noise | None = None, callback: Callback = None,
                 order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
                 pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0,
                 accept_safety: float = 0.81, eta: float = 0.0, s_noise: float = 1.0,
                 sigma_min: float | None = None, sigma_max: float | None = None):
    """DPM-Solver-23 (order 3) or -12 (order 2) with adaptive steps (Lu et al. 2022, section
    3.4): each try takes a DPM-Solver step and its embedded lower-order one; their difference,
    scaled by max(atol, rtol |x|), is the error (RMS over the whole batch) that `StepControl`
    turns into the next step size in log-sigma time, starting from h_init. From sigma_max to
    sigma_min (by default `sigmas`' first and last positive; their count does not matter): the
    number of model evaluations is `order` per try, whatever the run's steps. It ends at
    sigma_min, not 0, as in k-diffusion. With eta, as `dpm_fast` (one draw per accepted step).
    `callback` gets each accepted step, i counting them from 0: how many there will be is not
    known in advance (k-diffusion reports every try, rejected ones too)."""
    if order not in (2, 3):
        raise ValueError(f"order: {order!r}; DPM adaptive takes 2 or 3")
    t, t_end = _solver_range(x, sigmas, sigma_min, sigma_max)
    control = StepControl(h_init, 1.5 if eta else order, pcoeff, icoeff, dcoeff, accept_safety)
    lower_last, accepted = x, 0
    while t < t_end - 1e-5:
        t_next = torch.minimum(t_end, t + control.h)
        t_down, up = _down(t, t_next, t_end, eta)
        denoised, eps = _eps(model, x, t)
        x_next, lower = _dpm_solver(model, x, t, t_down, eps, order)
        scale = torch.clamp(rtol * torch.maximum(lower.abs(), lower_last.abs()), min=atol)
        error = torch.linalg.norm((lower - x_next) / scale) / x.numel() ** 0.5
        if not control.accept(error):
            continue
        _report(callback, accepted, x, denoised)
        accepted += 1
        lower_last, x = lower, x_next
        if eta:
            x = x + up * s_noise * noise(_sigma(t), _sigma(t_next))
        t = t_next
    return x


def _karras(n: int, low: float, high: float, rho: float = 7.0) -> torch.Tensor:
    """n sigmas from high to low, evenly spaced in sigma ** (1 / rho) (Karras et al. 2022)."""
    return (high ** (1 / rho) + torch.linspace(0, 1, n) * (low ** (1 / rho) - high ** (1 / rho))
            ) ** rho


RESTART_TO, RESTART_FROM = 0.1, 2.0  # the web UI's restart interval (nearest sigmas)


def restart_plan(sigmas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (sigma, sigma_next) steps Restart takes, as the web UI plans them from a run of
    len(sigmas) - 1 steps. Under 20 steps: the sigmas as they are. From 20: Karras sigmas over
    the same range (sigmas[0] to the last positive) with fewer steps, and after the step that
    reaches the sigma nearest 0.1, the interval from the sigma nearest 2 back down to it in
    Karras steps: 9 steps once, or from 36 steps steps // 4 steps twice; the total stays."""
    steps = len(sigmas) - 1
    if steps < 20:
        return list(pairwise(sigmas))
    length, times = (steps // 4, 2) if steps >= 36 else (9, 1)
    main = _karras(steps - length * times, float(sigmas[-2]), float(sigmas[0]))
    sigmas = torch.cat([main, main.new_zeros(1)]).to(sigmas.device)
    low = int(torch.argmin((sigmas - RESTART_TO).abs()))
    high = int(torch.argmin((sigmas - RESTART_FROM).abs()))
    plan = []
    for i in range(steps - length * times):
        plan.append((sigmas[i], sigmas[i + 1]))
        if i + 1 == low and high < low:
            again = _karras(length + 1, float(sigmas[low]), float(sigmas[high]))
            again = again.to(sigmas.device)
            plan += list(pairwise(again)) * times
    return plan


@torch.no_grad()
def restart(model: Model, x, sigmas, noise: Noise, callback: Callback = None,
            s_noise: float = 1.0):
    """Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes",
    arXiv:2306.14878) as the web UI runs it: Heun steps along `restart_plan(sigmas)`, and where
    the plan jumps back up from sigma to a higher sigma', fresh noise of s_noise x
    sqrt(sigma'^2 - sigma^2) first (one draw of `noise` per restart)."""
    last = None
    for i, (sigma, sigma_next) in enumerate(restart_plan(sigmas)):
        if last is not None and last < sigma:
            x = x + noise(last, sigma) * s_noise * (sigma ** 2 - last ** 2) ** 0.5
        denoised = _denoise(model, x, sigma)
        _report(callback, i, x, denoised)
        x = _heun_step(model, x, sigma, sigma_next, denoised)
        last = sigma_next
    return x


FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {  # Sampler.function -> the function
    "euler": euler, "euler_ancestral": euler_ancestral, "heun": heun, "dpm_2": dpm_2,
    "dpm_2_ancestral": dpm_2_ancestral, "lms": lms, "dpmpp_2s_ancestral": dpmpp_2s_ancestral,
    "dpmpp_sde": dpmpp_sde, "dpmpp_2m": dpmpp_2m, "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_3m_sde": dpmpp_3m_sde, "dpm_fast": dpm_fast, "dpm_adaptive": dpm_adaptive,
    "restart": restart,
}
