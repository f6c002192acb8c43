"""Samplers and schedule types by the names the Stable Diffusion web UI (1.9 and later) uses.

Two settings, as in the web UI since 1.9: the sampler (`DPM++ 2M`) and the schedule type
(`Karras`); an old combined name (`DPM++ 2M Karras`) still reads as the two. "Automatic" is the
sampler's own schedule, as the web UI defines it (Karras for DPM++ 2M, DPM++ SDE, DPM++ 2S a,
DPM2, DPM2 a and Restart; Exponential for DPM++ 2M SDE and DPM++ 3M SDE; the model's uniform
schedule for the others). DPM fast and DPM adaptive take a sigma range, not sigmas: in txt2img
the model's whole range whatever the schedule type (which then sets only the start noise's
scale, its first sigma: the same for every type but DDIM and Align Your Steps), in img2img the
range of the schedule's part that runs. Restart from 20 steps on makes its own Karras sigmas
over the schedule's range (`sampling.samplers.restart_plan`).

Two kinds of sampler:
- "k": the k-diffusion samplers the web UI runs, ours in `helpers.diffusion.sampling` (short
  functions over tensors, sigmas from `sampling.schedules`, the web UI's noise);
- "diffusers": the timestep samplers (DDIM, PLMS, UniPC, LCM) through diffusers' schedulers,
  built on the model's own scheduler config so its training values carry over.

No heavy imports at module level: settings validation imports this module.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helpers.diffusion.families import Family

AUTOMATIC = "Automatic"
SCHEDULE_NAMES = ("Automatic", "Uniform", "Karras", "Exponential", "Polyexponential",
                  "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal", "DDIM",
                  "Beta")
# Options reset to these values unless a sampler sets them (only where the class has them).
_RESET = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
          "use_lu_lambdas": False}


@dataclass(frozen=True)
class Sampler:
    """One web-UI sampler: how it is run, and its own choices."""

    name: str  # the web UI's name, e.g. "DPM++ 2M"
    kind: str  # "k": our k-diffusion-style function; "diffusers": a diffusers scheduler
    function: str = ""  # k: the function in helpers.diffusion.sampling.samplers
    schedule: str = "Uniform"  # k: what "Automatic" means for it
    discard_penultimate: bool = False  # k: drop the next-to-last sigma (the web UI's DPM2)
    brownian: bool = False  # k: SDE noise from a Brownian tree seeded by the image's seed
    ancestral: bool = False  # k: draws fresh noise every step
    sigma_range: bool = False  # k: txt2img runs over the model's sigma range, not the schedule
    # prompt editing counts steps in model evaluations, as the web UI does (its total_steps)
    evaluations_per_step: int = 1
    options: dict[str, Any] = field(default_factory=dict)  # k: function keywords
    scheduler: str = ""  # diffusers: the scheduler class
    config: dict[str, Any] = field(default_factory=dict)  # diffusers: config values on top

    @property
    def sigma_space(self) -> bool:
        """k-diffusion style: latents scaled by sigma."""
        return self.kind == "k"

    def reports(self, steps: int) -> int:
        """How many step reports a run of `steps` steps makes: DPM fast spends its model calls
        on third-order steps (n // 3 + 1 of them); DPM adaptive's count is known only as it
        runs (`steps` is said)."""
        return steps // 3 + 1 if self.function == "dpm_fast" else steps


def _table() -> dict[str, Sampler]:
    k = Sampler
    samplers = [
        k("DPM++ 2M", "k", "dpmpp_2m", "Karras"),
        k("DPM++ SDE", "k", "dpmpp_sde", "Karras", brownian=True, evaluations_per_step=2),
        k("DPM++ 2M SDE", "k", "dpmpp_2m_sde", "Exponential", brownian=True),
        k("DPM++ 2M SDE Heun", "k", "dpmpp_2m_sde", "Exponential", brownian=True,
          options={"solver_type": "heun"}),
        k("DPM++ 2S a", "k", "dpmpp_2s_ancestral", "Karras", ancestral=True,
          evaluations_per_step=2),
        k("DPM++ 3M SDE", "k", "dpmpp_3m_sde", "Exponential", discard_penultimate=True,
          brownian=True),
        k("Euler a", "k", "euler_ancestral", ancestral=True),
        k("Euler", "k", "euler"),
        k("LMS", "k", "lms"),
        k("Heun", "k", "heun", evaluations_per_step=2),
        k("DPM2", "k", "dpm_2", "Karras", discard_penultimate=True, evaluations_per_step=2),
        k("DPM2 a", "k", "dpm_2_ancestral", "Karras", discard_penultimate=True, ancestral=True,
          evaluations_per_step=2),
        # eta 1 (the web UI's "Eta for k-diffusion samplers" default), so their steps draw noise
        k("DPM fast", "k", "dpm_fast", ancestral=True, sigma_range=True, options={"eta": 1.0}),
        k("DPM adaptive", "k", "dpm_adaptive", ancestral=True, sigma_range=True,
          options={"eta": 1.0}),
        k("Restart", "k", "restart", "Karras", evaluations_per_step=2),
        k("DDIM", "diffusers", scheduler="DDIMScheduler"),
        k("PLMS", "diffusers", scheduler="PNDMScheduler", config={"skip_prk_steps": True}),
        k("UniPC", "diffusers", scheduler="UniPCMultistepScheduler",
          config={"solver_type": "bh1", "solver_order": 3, "lower_order_final": True}),
        k("LCM", "diffusers", scheduler="LCMScheduler"),
    ]
    return {s.name: s for s in samplers}


SAMPLERS: dict[str, Sampler] = _table()
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)


def get_sampler(name: str) -> Sampler:
    """The sampler called `name` (any case); a ValueError lists the valid names."""
    from helpers.settings.fields import choose

    return SAMPLERS[choose("sampler", name, SAMPLER_NAMES, casefold=True)]


def runs_on_unet(name: str, family: Family) -> bool:
    """Whether the sampler runs as in the web UI, on the family's UNet (`helpers.diffusion.
    sampling`); otherwise a diffusers scheduler runs it in the pipeline. The one place that
    decides the path: loading picks the pipeline's scheduler by it, the loop the sampling."""
    return get_sampler(name).kind == "k" and family.k_samplers


def split_name(name: str, schedule: str = AUTOMATIC) -> tuple[str, str]:
    """(sampler, schedule type) from a name that may carry its schedule, as before the web UI
    1.9: "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras"). Any other name is kept as it is."""
    folded = name.strip().casefold()
    for candidate in sorted(SCHEDULE_NAMES, key=len, reverse=True):
        suffix = " " + candidate.casefold()
        base = folded.removesuffix(suffix)
        if base != folded and any(s.casefold() == base for s in SAMPLER_NAMES):
            if schedule not in (AUTOMATIC, candidate):
                raise ValueError(f"sampler: {name!r} names the schedule type {candidate!r}, and "
                                 f"schedule is {schedule!r}; give one of them")
            sampler = next(s for s in SAMPLER_NAMES if s.casefold() == base)
            return sampler, candidate
    return name, schedule


def schedule_of(sampler: str, schedule: str) -> str:
    """The schedule type a run uses: "Automatic" resolved to the sampler's own."""
    return get_sampler(sampler).schedule if schedule == AUTOMATIC else schedule


def make_scheduler(name: str, config: dict[str, Any]):
    """A diffusers scheduler for a timestep sampler, built on a model's scheduler `config`."""
    import diffusers

    sampler = get_sampler(name)
    if sampler.kind != "diffusers":
        raise ValueError(f"sampler: {name!r} runs in helpers.diffusion.sampling, not as a "
                         "diffusers scheduler")
    scheduler_class = getattr(diffusers, sampler.scheduler)
    accepted = inspect.signature(scheduler_class.__init__).parameters
    resets = {k: v for k, v in _RESET.items() if k in accepted}
    return scheduler_class.from_config(dict(config), **{**resets, **sampler.config})


def sampler_from_infotext(sampler: str, schedule_type: str = "") -> tuple[str, str]:
    """(sampler, schedule type) from an infotext's Sampler and Schedule type (old or new)."""
    from helpers.settings.fields import choose

    name, schedule = split_name(sampler, schedule_type or AUTOMATIC)
    schedule = choose("schedule", schedule, SCHEDULE_NAMES, casefold=True)
    return get_sampler(name).name, schedule
