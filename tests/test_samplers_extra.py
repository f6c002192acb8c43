"""The web UI's DPM fast, DPM adaptive and Restart samplers.

DPM fast and DPM adaptive are compared with k-diffusion's own functions (`sample_dpm_fast`,
`sample_dpm_adaptive`, loaded here only) on a toy denoiser with the same noise, called as the
web UI calls them: txt2img with the model's sigma range (and the step count), img2img with the
range (and length) of the schedule's kept part.

Restart is not in k-diffusion: its golden values come from the web UI's `restart_sampler`
(AUTOMATIC1111/stable-diffusion-webui, modules/sd_samplers_extra.py at commit 598aef82), run
outside the project with k-diffusion 0.1.1.post1's helpers on this toy denoiser: Karras sigmas
over SD's range (0.0292 to 14.6146), a (2, 1, 2, 2) start noise from seed 7, its re-noising
drawn from the same generator (the web UI's TorchHijack gives the image's next draw).
"""

from __future__ import annotations

import pytest
import torch
from test_sampling_reference import SD15, load_k_diffusion

from helpers.diffusion.families import FAMILIES
from helpers.diffusion.samplers import get_sampler, schedule_of
from helpers.diffusion.sampling.denoiser import Denoiser
from helpers.diffusion.sampling.run import Job, sample
from helpers.diffusion.sampling.samplers import (
    dpm_adaptive,
    dpm_fast,
    restart,
    restart_plan,
)
from helpers.diffusion.sampling.schedules import sigmas_for

SIGMA_MIN, SIGMA_MAX = 0.0292, 14.6146  # SD's
SHAPE = (2, 4, 8, 8)
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# k-diffusion copies its sigma_min / sigma_max with torch.tensor(), which warns for tensors
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")


@pytest.fixture(scope="module")
def kd():
    return load_k_diffusion()


def toy(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A denoiser with a closed form: Gaussian data (mean 0.3, std 0.5) plus a nonlinear term."""
    s = sigma[:, None, None, None]
    return (0.25 * x + 0.3 * s ** 2) / (0.25 + s ** 2) + 0.1 * torch.tanh(x) / (1 + s)


class Counted:
    """The toy denoiser, counting its evaluations."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += 1
        return toy(x, sigma)


def start(sigmas: torch.Tensor, seed: int = 3, shape=SHAPE):
    """(x at sigmas[0], unit noise drawn next from the same generator)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator) * sigmas[0]
    return x, lambda _sigma, _sigma_next: torch.randn(shape, generator=generator)


def karras(steps: int) -> torch.Tensor:
    ramp = torch.linspace(0, 1, steps)
    low, high = SIGMA_MIN ** (1 / 7), SIGMA_MAX ** (1 / 7)
    return torch.cat([(high + ramp * (low - high)) ** 7, torch.zeros(1)])


def web_ui_range(sigmas: torch.Tensor, img2img: bool, steps: int) -> dict:
    """sigma_min, sigma_max, n as the web UI passes them (n: DPM fast only)."""
    if img2img:
        return {"sigma_min": sigmas[-2], "sigma_max": sigmas[0], "n": len(sigmas) - 1}
    return {"sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX, "n": steps}


def both(kd, name: str, sigmas: torch.Tensor, img2img: bool, steps: int, **options):
    """(ours, theirs): each (x, model evaluations, steps reported), from the same start."""
    ours_fn, theirs_fn = {"fast": (dpm_fast, kd.sampling.sample_dpm_fast),
                          "adaptive": (dpm_adaptive, kd.sampling.sample_dpm_adaptive)}[name]
    found = web_ui_range(sigmas, img2img, steps)
    if name == "adaptive":
        found.pop("n")
    model, reports = Counted(), []
    x, noise = start(sigmas)
    ours = ours_fn(model, x, sigmas, noise, lambda i, _x, _d: reports.append(i), **options,
                   **({} if img2img else found))
    ours = (ours, model.calls, reports)
    model, reports = Counted(), []
    x, noise = start(sigmas)
    theirs = theirs_fn(model, x, **found, noise_sampler=noise, disable=True,
                       callback=lambda d: reports.append(d["i"]), **options)
    return ours, (theirs, model.calls, reports)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("img2img", [False, True], ids=["txt2img", "img2img"])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 10, 20, 31])
def test_dpm_fast_is_k_diffusions(kd, steps, img2img, eta):
    sigmas = karras(40)[39 - steps:] if img2img else karras(steps)  # img2img: steps + 1 run
    (x, calls, reports), (their_x, their_calls, their_reports) = both(
        kd, "fast", sigmas, img2img, steps, eta=eta)
    torch.testing.assert_close(x, their_x, **TOLERANCE)
    assert calls == their_calls == len(sigmas) - 1  # n model evaluations
    assert reports == their_reports == list(range(len(reports)))  # one report a solver step


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("img2img", [False, True], ids=["txt2img", "img2img"])
def test_dpm_adaptive_is_k_diffusions_with_as_many_model_evaluations(kd, img2img, order, eta):
    sigmas = karras(20)[8:] if img2img else karras(20)
    (x, calls, reports), (their_x, their_calls, tries) = both(
        kd, "adaptive", sigmas, img2img, 20, order=order, eta=eta)
    torch.testing.assert_close(x, their_x, **TOLERANCE)
    assert calls == their_calls == order * len(tries)
    assert len(reports) <= len(tries)  # k-diffusion reports rejected tries too
    assert reports == list(range(len(reports)))


def test_dpm_adaptive_reports_each_accepted_step(kd):
    sigmas = karras(20)
    model = Counted()
    x, noise = start(sigmas)
    _, info = kd.sampling.sample_dpm_adaptive(model, x, SIGMA_MIN, SIGMA_MAX, disable=True,
                                              eta=1.0, noise_sampler=noise, return_info=True)
    reports = []
    x, noise = start(sigmas)
    dpm_adaptive(Counted(), x, sigmas, noise, lambda i, _x, _d: reports.append(i), eta=1.0,
                 sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    assert reports == list(range(info["n_accept"])) and info["n_reject"] > 0
    with pytest.raises(ValueError, match="order"):
        dpm_adaptive(Counted(), x, sigmas, noise, order=1)


class ToyDenoiser(Denoiser):
    """SD's discrete schedule with the toy in place of the UNet."""

    def __call__(self, x, sigma, guidance):
        return toy(x, sigma)


@pytest.mark.parametrize("schedule", ["Automatic", "DDIM"])
@pytest.mark.parametrize("name", ["DPM fast", "DPM adaptive"])
def test_a_run_gives_them_the_web_uis_range(kd, name, schedule):
    """txt2img: the model's range and the step count, the start scaled by the schedule's first
    sigma (DDIM's is under sigma_max); img2img: the kept schedule's range and length."""
    denoiser = ToyDenoiser(None, SD15, FAMILIES["sd"])
    seeds, shape, steps = [11, 12], (4, 8, 8), 9
    function = getattr(kd.sampling, f"sample_{get_sampler(name).function}")
    sigmas = sigmas_for(schedule_of(name, schedule), steps, denoiser)
    init = torch.linspace(-1, 1, 2 * 4 * 8 * 8).view(2, 4, 8, 8)
    for img2img in (False, True):
        job = Job(name, schedule, steps, seeds, init=init if img2img else None, strength=0.6)
        ours = sample(denoiser, None, job, shape, "cpu")
        generators = [torch.Generator().manual_seed(s) for s in seeds]

        def draw(*_, generators=generators):
            return torch.stack([torch.randn(shape, generator=g) for g in generators])

        run = sigmas[steps - int(0.6 * steps) - 1:] if img2img else sigmas
        x = init + draw() * run[0] if img2img else draw() * run[0]
        found = {"sigma_min": run[-2], "sigma_max": run[0], "n": len(run) - 1} if img2img \
            else {"sigma_min": denoiser.sigmas[0].item(),
                  "sigma_max": denoiser.sigmas[-1].item(), "n": steps}
        if name == "DPM adaptive":
            found.pop("n")
        theirs = function(lambda x_, s: toy(x_, s), x, **found, eta=1.0, noise_sampler=draw,
                          disable=True)
        torch.testing.assert_close(ours, theirs, **TOLERANCE)
    if schedule == "DDIM":
        assert float(sigmas[0]) < denoiser.sigma_max * 0.99  # the start's scale differs


# ((steps, kept of a 30-step schedule or None), model evaluations, re-noising jumps in the plan
# (step index, sigma before, sigma after), the final x): the web UI's restart_sampler's
GOLDEN = [
    ((10, None), 19, [],
     [0.3075679, 1.005147, 1.110313, -0.4808824, 1.564323, -0.3101552, 0.1329049, 1.290049]),
    ((20, None), 39, [(9, 0.07442877, 2.232691)],
     [0.5161874, -0.6090807, 0.8462268, 0.3007982, 0.8531204, 0.4268798, 1.263757, 1.486702]),
    ((24, None), 47, [(12, 0.1072843, 1.910859)],
     [0.5045829, -0.5762613, 0.8514128, 0.2722143, 0.8739165, 0.4006504, 1.236892, 1.485232]),
    ((40, None), 79, [(16, 0.1214351, 1.991427), (26, 0.1214351, 1.991427)],
     [1.865331, 0.2855622, 1.94577, 1.605789, 1.605244, -0.2277413, 0.3763423, 0.2655604]),
    ((30, 25), 49, [(13, 0.08143982, 1.71284)],
     [0.496307, -0.5498102, 0.8638688, 0.2407379, 0.8993455, 0.3735835, 1.218643, 1.495096]),
    ((30, 21), 41, [(9, 0.09264483, 1.836697)],
     [0.489183, -0.5801861, 0.8427931, 0.2515428, 0.8689546, 0.3809711, 1.220968, 1.477269]),
]


@pytest.mark.parametrize(("run", "calls", "jumps", "final"), GOLDEN,
                         ids=[f"{s}-of-{k}" if k else str(s) for (s, k), *_ in GOLDEN])
def test_restart_is_the_web_uis(run, calls, jumps, final):
    steps, kept = run
    sigmas = karras(steps) if kept is None else karras(steps)[steps - kept:]
    plan = restart_plan(sigmas)
    assert len(plan) == len(sigmas) - 1  # restarts take steps from the main run, not add them
    found = [(i, float(plan[i - 1][1]), float(plan[i][0])) for i in range(1, len(plan))
             if plan[i][0] > plan[i - 1][1]]
    assert [i for i, *_ in found] == [i for i, *_ in jumps]
    torch.testing.assert_close(torch.tensor([s for _, *s in found]),
                               torch.tensor([s for _, *s in jumps]), **TOLERANCE)
    assert all(plan[i][0] == plan[i - 1][1] for i in range(1, len(plan))
               if i not in [j for j, *_ in jumps])  # otherwise one continuous descent
    assert float(plan[0][0]) == float(sigmas[0]) and float(plan[-1][1]) == 0

    model, draws, reports = Counted(), [], []
    x, noise = start(sigmas, seed=7, shape=(2, 1, 2, 2))
    out = restart(model, x, sigmas, lambda a, b: draws.append(b) or noise(a, b),
                  lambda i, _x, _d: reports.append(i))
    torch.testing.assert_close(out.flatten(), torch.tensor(final), **TOLERANCE)
    assert model.calls == calls and len(draws) == len(jumps)  # one draw per restart
    assert reports == list(range(len(plan)))


@pytest.mark.parametrize("sampler", ["DPM fast", "Euler", "Restart"])
def test_step_reports_say_how_many_come(pipe, sampler):
    from helpers.diffusion.conditioning import encode_plan, plan_prompts
    from helpers.diffusion.families import FAMILIES
    from helpers.diffusion.guidance import Conditioning
    from helpers.diffusion.sampling.pipeline import generate_batch
    from helpers.settings import DiffusionSettings

    settings = DiffusionSettings(prompt="x", sampler=sampler, steps=7, width=32, height=32)
    conditioning = Conditioning.fixed(*encode_plan(pipe, plan_prompts("a cat")))
    reports = []
    generate_batch(pipe, FAMILIES["sd"], settings, conditioning, [1],
                   report=lambda i, total, *_: reports.append((i, total)))
    assert [i for i, _ in reports] == list(range(len(reports)))  # the progress bar's count
    assert {total for _, total in reports} == {len(reports)}
