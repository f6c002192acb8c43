"""Samplers by the names the Stable Diffusion web UIs use, mapped to diffusers schedulers.

The table follows diffusers' own A1111 / k-diffusion mapping (docs: "Schedulers" overview), with
one deliberate difference: the web UI's "DPM++ SDE" is k-diffusion's `sample_dpmpp_sde`, a
single-step second-order *stochastic* sampler (midpoint r = 1/2, Brownian-tree noise). diffusers'
port of exactly that sampler is `DPMSolverSDEScheduler` (it needs the `torchsde` package); the
docs table's `DPMSolverSinglestepScheduler` without options is the deterministic DPM-Solver++
ODE solver, a different sampler.

A scheduler is built from the model's own scheduler config (`from_config`), so the model's
training values (betas, prediction type, timestep spacing: "trailing" for the Turbo models) carry
over, and the sampler's options override the rest. Options a sampler does not name but the class
has (`use_karras_sigmas`, ...) are reset to their defaults, so a model shipped with a Karras
scheduler config does not silently turn "Euler" into "Euler Karras".

No heavy imports at module level: settings validation imports this module.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

KARRAS = "Karras"
AUTOMATIC = "Automatic"  # the web UI's schedule type when a sampler uses its own default schedule
# Options reset to these values unless a sampler sets them (only where the class has them).
_RESET = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
          "use_lu_lambdas": False}


@dataclass(frozen=True)
class Sampler:
    """One web-UI sampler: the diffusers scheduler class and the options that make it that one."""

    name: str  # the web UI's name, e.g. "DPM++ 2M Karras"
    scheduler: str  # diffusers class name
    options: dict[str, Any] = field(default_factory=dict)  # config values set on top of the model's
    sigma_space: bool = False  # k-diffusion style: latents scaled by sigma (init_noise_sigma > 1)

    @property
    def base_name(self) -> str:
        """The sampler name without its schedule type, as web UI 1.9+ writes it in infotexts."""
        return self.name.removesuffix(f" {KARRAS}")

    @property
    def schedule_type(self) -> str:
        """'Karras' for the Karras-sigma variants, else 'Automatic' (the sampler's own)."""
        return KARRAS if self.options.get("use_karras_sigmas") else AUTOMATIC


def _table() -> dict[str, Sampler]:
    karras = {"use_karras_sigmas": True}
    dpmpp_2m = {"algorithm_type": "dpmsolver++", "solver_order": 2}
    dpmpp_2m_sde = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
    samplers = [
        Sampler("Euler", "EulerDiscreteScheduler", sigma_space=True),
        Sampler("Euler a", "EulerAncestralDiscreteScheduler", sigma_space=True),
        Sampler("Heun", "HeunDiscreteScheduler", sigma_space=True),
        Sampler("LMS", "LMSDiscreteScheduler", sigma_space=True),
        Sampler("LMS Karras", "LMSDiscreteScheduler", karras, sigma_space=True),
        Sampler("DPM2", "KDPM2DiscreteScheduler", sigma_space=True),
        Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", sigma_space=True),
        Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", dpmpp_2m),
        Sampler("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {**dpmpp_2m, **karras}),
        Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", dpmpp_2m_sde),
        Sampler("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", {**dpmpp_2m_sde, **karras}),
        Sampler("DPM++ SDE", "DPMSolverSDEScheduler", sigma_space=True),
        Sampler("DPM++ SDE Karras", "DPMSolverSDEScheduler", karras, sigma_space=True),
        Sampler("DDIM", "DDIMScheduler"),
        Sampler("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
        Sampler("UniPC", "UniPCMultistepScheduler"),
        Sampler("LCM", "LCMScheduler"),
    ]
    return {s.name: s for s in samplers}


SAMPLERS: dict[str, Sampler] = _table()
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    """The sampler called `name`; a ValueError lists the valid names."""
    if name not in SAMPLERS:
        shown = ", ".join(SAMPLER_NAMES)
        raise ValueError(f"sampler: unknown sampler {name!r}; choose one of {shown}")
    return SAMPLERS[name]


def scheduler_options(sampler: Sampler, scheduler_class: type) -> dict[str, Any]:
    """The config values to set on `scheduler_class`: the sampler's options plus resets."""
    accepted = inspect.signature(scheduler_class.__init__).parameters
    resets = {k: v for k, v in _RESET.items() if k in accepted}
    return {**resets, **sampler.options}


def make_scheduler(name: str, config: dict[str, Any]):
    """A diffusers scheduler for web-UI sampler `name`, built on a model's scheduler `config`."""
    import diffusers

    sampler = get_sampler(name)
    scheduler_class = getattr(diffusers, sampler.scheduler)
    if sampler.scheduler == "DPMSolverSDEScheduler":
        _require_torchsde(name)
    return scheduler_class.from_config(dict(config), **scheduler_options(sampler, scheduler_class))


def _require_torchsde(name: str) -> None:
    try:
        import torchsde  # noqa: F401
    except ImportError:
        raise ValueError(f"sampler: {name!r} needs the torchsde package (pip install torchsde); "
                         "or choose another sampler such as 'DPM++ 2M SDE'") from None


def infotext_sampler(name: str) -> tuple[str, str]:
    """(Sampler, Schedule type) as web UI 1.9+ writes them: ('DPM++ 2M', 'Karras')."""
    sampler = get_sampler(name)
    return sampler.base_name, sampler.schedule_type


def sampler_from_infotext(sampler: str, schedule_type: str = "") -> str:
    """Our sampler name from an infotext's Sampler and Schedule type (old or new style)."""
    if schedule_type and schedule_type != AUTOMATIC:
        combined = f"{sampler} {schedule_type}"
        if combined in SAMPLERS:
            return combined
        raise ValueError(f"sampler: {sampler!r} with schedule type {schedule_type!r} is not "
                         f"supported; choose one of {', '.join(SAMPLER_NAMES)}")
    return get_sampler(sampler).name
