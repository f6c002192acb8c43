"""Web-UI sampler names -> diffusers schedulers, and the DiffusionSettings they live in."""

import json

import pytest

from helpers.diffusion.samplers import (
    SAMPLER_NAMES,
    get_sampler,
    infotext_sampler,
    make_scheduler,
    sampler_from_infotext,
)
from helpers.settings import DiffusionSettings, settings_from_json

# SD 1.5's scheduler config (PNDM), as the model ships it
SD15 = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "skip_prk_steps": True,
        "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
        "timestep_spacing": "leading"}

EXPECTED = {  # name: (class, options that must hold)
    "Euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": False}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler",
                     {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {"use_karras_sigmas": False}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {"use_karras_sigmas": False}),
    "LCM": ("LCMScheduler", {}),
}


def test_every_web_ui_name_of_the_issue_is_offered():
    assert set(SAMPLER_NAMES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_names_map_to_scheduler_classes_and_options(name):
    if EXPECTED[name][0] == "DPMSolverSDEScheduler":
        pytest.importorskip("torchsde")
    scheduler = make_scheduler(name, SD15)
    cls, options = EXPECTED[name]
    assert type(scheduler).__name__ == cls
    for key, value in options.items():
        assert scheduler.config[key] == value, key
    # the model's training values carry over
    assert scheduler.config["beta_schedule"] == "scaled_linear"
    assert scheduler.config["beta_end"] == 0.012


def test_a_model_shipped_with_karras_sigmas_does_not_make_plain_euler_karras():
    karras_config = {**SD15, "_class_name": "DPMSolverMultistepScheduler",
                     "use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"}
    assert make_scheduler("Euler", karras_config).config["use_karras_sigmas"] is False
    dpm = make_scheduler("DPM++ 2M", karras_config)
    assert dpm.config["use_karras_sigmas"] is False
    assert dpm.config["algorithm_type"] == "dpmsolver++"


def test_turbo_models_keep_their_trailing_timestep_spacing():
    turbo = {**SD15, "_class_name": "EulerDiscreteScheduler", "timestep_spacing": "trailing"}
    assert make_scheduler("Euler a", turbo).config["timestep_spacing"] == "trailing"


def test_dpmpp_sde_is_the_stochastic_k_diffusion_sampler_not_the_ode_solver():
    pytest.importorskip("torchsde")
    scheduler = make_scheduler("DPM++ SDE", SD15)
    assert type(scheduler).__name__ == "DPMSolverSDEScheduler"
    assert type(scheduler).__name__ != "DPMSolverSinglestepScheduler"


def test_unknown_sampler_lists_the_valid_names():
    with pytest.raises(ValueError) as e:
        get_sampler("Euler b")
    message = str(e.value)
    assert message.startswith("sampler") and "'Euler b'" in message
    for name in ("Euler a", "DPM++ 2M Karras", "UniPC", "LCM"):
        assert name in message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_infotext_sampler_and_schedule_type_read_back(name):
    sampler, schedule = infotext_sampler(name)
    assert "Karras" not in sampler
    assert schedule == ("Karras" if name.endswith("Karras") else "Automatic")
    assert sampler_from_infotext(sampler, schedule) == name
    assert sampler_from_infotext(name) == name  # old-style infotexts: one combined name


def test_an_unsupported_schedule_type_is_an_error():
    with pytest.raises(ValueError, match="Exponential"):
        sampler_from_infotext("Euler", "Exponential")


# --- DiffusionSettings ---------------------------------------------------------------------------


def test_diffusion_settings_round_trip_through_json():
    s = DiffusionSettings(prompt="a cat:2 | a dog", negative_prompt="blurry", sampler="DDIM",
                          seed=3, sdxl_original_size=(1024, 768), batch_size=2)
    data = json.loads(s.to_json())
    assert data["kind"] == "diffusion"
    assert settings_from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"sampler": "Euler b"}, "sampler", "Euler b"),
        ({"strength": 0.0}, "strength", "0.0"),
        ({"strength": 1.5}, "strength", "1.5"),
        ({"steps": 0}, "steps", "0"),
        ({"cfg_scale": -1.0}, "cfg_scale", "-1.0"),
        ({"width": 4}, "width", "4"),
        ({"clip_skip": 0}, "clip_skip", "0"),
        ({"batch_size": 0}, "batch_size", "0"),
        ({"seed_mode": "sometimes"}, "seed_mode", "sometimes"),
        ({"prompt_mode": "mix"}, "prompt_mode", "mix"),
        ({"cpu_offload": "maybe"}, "cpu_offload", "maybe"),
        ({"sdxl_original_size": (1024,)}, "sdxl_original_size", "1024"),
        ({"prompt": "a cat:1:0.5"}, "prompt", "stop"),
        ({"prompt": "a cat:-1"}, "prompt", "positive"),
        ({"negative_prompt": "blurry:-1"}, "negative_prompt", "-1"),
        ({"negative_prompt": "blurry:1:2"}, "negative_prompt", "stop"),
    ],
)
def test_bad_diffusion_settings_name_the_field_and_value(changes, field, value):
    with pytest.raises(ValueError) as e:
        DiffusionSettings(**{"prompt": "a cat", **changes})
    assert str(e.value).startswith(field)
    assert value in str(e.value)


def test_an_empty_prompt_is_unconditional_generation():
    assert DiffusionSettings(prompt="").prompt == ""
