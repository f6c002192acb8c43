"""Schedule types: the sigmas a sampler steps through, as the web UI 1.9+ makes them.

Each takes the number of steps and the model's discrete schedule (`Denoiser`) and returns
n + 1 sigmas, the last one 0. The model's own sigma range (sigma_min to sigma_max: 0.029 to
14.61 for SD) is used whatever its diffusers scheduler config says about timestep spacing, as
the web UI does. "Automatic" is resolved by the sampler (`samplers.schedule_of`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

# NVIDIA's published Align Your Steps sigmas for 10 steps (research.nvidia.com/labs/toronto-ai/
# AlignYourSteps), interpolated log-linearly for other step counts, as the web UI does.
AYS_SD = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
AYS = {"SD": AYS_SD, "SDXL": AYS_SDXL}  # by `Family.ays`
BETA_ALPHA = BETA_BETA = 0.6  # the web UI's defaults for the Beta schedule


def with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """The sigmas with a final 0 (where sampling ends)."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def uniform(n: int, model: Any) -> torch.Tensor:
    """Evenly spaced in (fractional) timesteps from the model's last to its first."""
    t = torch.linspace(len(model.sigmas) - 1, 0, n)
    return with_zero(model.t_to_sigma(t))


def karras(n: int, model: Any, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): evenly spaced in sigma ** (1 / rho)."""
    low, high = model.sigma_min ** (1 / rho), model.sigma_max ** (1 / rho)
    return with_zero((high + torch.linspace(0, 1, n) * (low - high)) ** rho)


def exponential(n: int, model: Any) -> torch.Tensor:
    """Evenly spaced in log sigma."""
    return with_zero(torch.linspace(math.log(model.sigma_max), math.log(model.sigma_min), n).exp())


def polyexponential(n: int, model: Any, rho: float = 1.0) -> torch.Tensor:
    """Log sigma along a polynomial ramp of degree rho (1: exponential)."""
    ramp = torch.linspace(1, 0, n) ** rho
    low, high = math.log(model.sigma_min), math.log(model.sigma_max)
    return with_zero(torch.exp(ramp * (high - low) + low))


def sgm_uniform(n: int, model: Any) -> torch.Tensor:
    """Evenly spaced timesteps from sigma_max's to sigma_min's, the last left out (SGM)."""
    start = model.sigma_to_t(torch.tensor(model.sigma_max))
    end = model.sigma_to_t(torch.tensor(model.sigma_min))
    t = torch.linspace(float(start), float(end), n + 1)[:-1]
    return with_zero(torch.stack([model.t_to_sigma(s) for s in t]).float())


def normal(n: int, model: Any) -> torch.Tensor:
    """Evenly spaced timesteps from sigma_max's to sigma_min's, both included."""
    start = model.sigma_to_t(torch.tensor(model.sigma_max))
    end = model.sigma_to_t(torch.tensor(model.sigma_min))
    t = torch.linspace(float(start), float(end), n)
    return with_zero(torch.stack([model.t_to_sigma(s) for s in t]).float())


def kl_optimal(n: int, model: Any) -> torch.Tensor:
    """Evenly spaced in arctan(sigma) (the "KL optimal" schedule); ends at sigma_min's tan."""
    low = torch.arctan(torch.tensor(model.sigma_min))
    high = torch.arctan(torch.tensor(model.sigma_max))
    steps = torch.arange(n + 1) / n
    return torch.tan(steps * low + (1.0 - steps) * high)


def align_your_steps(n: int, model: Any) -> torch.Tensor:
    """NVIDIA's Align Your Steps sigmas (SD or SDXL table), log-linear for other counts."""
    table = AYS[model.family.ays]
    if n == len(table):
        return with_zero(torch.tensor(table, dtype=torch.float32))
    import numpy as np

    logs = np.log(np.array(table[::-1]))
    new = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(table)), logs)
    return with_zero(torch.from_numpy(np.exp(new)[::-1].copy()).float())


def simple(n: int, model: Any) -> torch.Tensor:
    """Every (len / n)-th of the model's sigmas, from the top."""
    step = len(model.sigmas) / n
    return with_zero(torch.tensor([float(model.sigmas[-(1 + int(i * step))]) for i in range(n)]))


def ddim(n: int, model: Any) -> torch.Tensor:
    """The model's sigmas at DDIM's evenly spaced timesteps (1, 1 + k, ...), from the top."""
    step = max(len(model.sigmas) // n, 1)
    picked = [float(model.sigmas[i]) for i in range(1, len(model.sigmas), step)]
    return with_zero(torch.tensor(picked[::-1]))


def beta(n: int, model: Any) -> torch.Tensor:
    """Timesteps at the quantiles of a Beta(0.6, 0.6) distribution (Lee et al. 2024)."""
    from scipy import stats

    quantiles = 1 - torch.linspace(0, 1, n).double().numpy()
    t = stats.beta.ppf(quantiles, BETA_ALPHA, BETA_BETA)
    return with_zero(torch.tensor(model.sigma_min + t * (model.sigma_max - model.sigma_min),
                                  dtype=torch.float32))


SCHEDULES: dict[str, Callable[[int, Any], torch.Tensor]] = {
    "Uniform": uniform, "Karras": karras, "Exponential": exponential,
    "Polyexponential": polyexponential, "SGM Uniform": sgm_uniform, "KL Optimal": kl_optimal,
    "Align Your Steps": align_your_steps, "Simple": simple, "Normal": normal, "DDIM": ddim,
    "Beta": beta,
}


def sigmas_for(schedule: str, steps: int, model: Any, discard_penultimate: bool = False
               ) -> torch.Tensor:
    """The sigmas of a run: `steps` steps of a schedule type; with `discard_penultimate` one
    more is made and the next-to-last dropped (the web UI's DPM2 and DPM++ 3M SDE)."""
    count = steps + 1 if discard_penultimate else steps
    sigmas = SCHEDULES[schedule](count, model).float()
    if discard_penultimate:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas
