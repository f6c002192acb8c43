"""The web UI's samplers and schedule types by name, and the DiffusionSettings they live in."""

import json

import pytest

from helpers.diffusion.samplers import (
    SAMPLER_NAMES,
    SCHEDULE_NAMES,
    get_sampler,
    make_scheduler,
    sampler_from_infotext,
    split_name,
)
from helpers.settings import DiffusionSettings, settings_from_json

# SD 1.5's scheduler config (PNDM), as the model ships it
SD15 = {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "skip_prk_steps": True,
        "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
        "timestep_spacing": "leading"}

WEB_UI = {  # the web UI 1.9+'s samplers: (k-diffusion function, its Automatic schedule)
    "DPM++ 2M": ("dpmpp_2m", "Karras"), "DPM++ SDE": ("dpmpp_sde", "Karras"),
    "DPM++ 2M SDE": ("dpmpp_2m_sde", "Exponential"),
    "DPM++ 2M SDE Heun": ("dpmpp_2m_sde", "Exponential"),
    "DPM++ 2S a": ("dpmpp_2s_ancestral", "Karras"),
    "DPM++ 3M SDE": ("dpmpp_3m_sde", "Exponential"), "Euler a": ("euler_ancestral", "Uniform"),
    "Euler": ("euler", "Uniform"), "LMS": ("lms", "Uniform"), "Heun": ("heun", "Uniform"),
    "DPM2": ("dpm_2", "Karras"), "DPM2 a": ("dpm_2_ancestral", "Karras"),
    "DPM fast": ("dpm_fast", "Uniform"), "DPM adaptive": ("dpm_adaptive", "Uniform"),
    "Restart": ("restart", "Karras"),
}
SECOND_ORDER = {"DPM++ 2S a", "DPM++ SDE", "DPM2", "DPM2 a", "Heun", "Restart"}  # the web UI's
TIMESTEP = {"DDIM": "DDIMScheduler", "PLMS": "PNDMScheduler",
            "UniPC": "UniPCMultistepScheduler", "LCM": "LCMScheduler"}


def test_every_web_ui_sampler_is_offered():
    assert set(SAMPLER_NAMES) == set(WEB_UI) | set(TIMESTEP)


@pytest.mark.parametrize("name", sorted(WEB_UI))
def test_web_ui_samplers_run_as_k_diffusion_does(name):
    sampler = get_sampler(name)
    assert (sampler.kind, sampler.function, sampler.schedule) == ("k", *WEB_UI[name])
    assert sampler.discard_penultimate == (name in ("DPM2", "DPM2 a", "DPM++ 3M SDE"))
    assert sampler.brownian == ("SDE" in name)
    assert get_sampler(name.upper()).name == name  # any case


def test_second_order_samplers_count_two_model_evaluations_a_step_as_in_the_web_ui():
    assert {n for n in SAMPLER_NAMES if get_sampler(n).evaluations_per_step == 2} == SECOND_ORDER
    assert {get_sampler(n).evaluations_per_step for n in SAMPLER_NAMES} == {1, 2}


def test_dpm_fast_and_adaptive_take_a_sigma_range_and_draw_noise_with_the_web_uis_eta():
    for name in ("DPM fast", "DPM adaptive"):
        sampler = get_sampler(name)
        assert sampler.sigma_range and sampler.ancestral and sampler.options == {"eta": 1.0}
    assert not any(get_sampler(n).sigma_range for n in SAMPLER_NAMES
                   if n not in ("DPM fast", "DPM adaptive"))


@pytest.mark.parametrize("name", sorted(TIMESTEP))
def test_timestep_samplers_are_diffusers_schedulers_on_the_models_config(name):
    scheduler = make_scheduler(name, SD15)
    assert type(scheduler).__name__ == TIMESTEP[name]
    assert scheduler.config["beta_schedule"] == "scaled_linear"  # the model's values carry over
    if name == "UniPC":  # the web UI's options
        assert (scheduler.config["solver_type"], scheduler.config["solver_order"]) == ("bh1", 3)


def test_a_model_shipped_with_karras_sigmas_does_not_make_unipc_karras():
    karras = {**SD15, "_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}
    assert make_scheduler("UniPC", karras).config["use_karras_sigmas"] is False


def test_unknown_sampler_lists_the_valid_names_and_the_closest():
    with pytest.raises(ValueError) as e:
        get_sampler("Euler b")
    message = str(e.value)
    assert message.startswith("sampler") and "'Euler b'" in message
    assert "did you mean 'Euler a' or 'Euler'" in message
    for name in ("DPM++ 2M", "UniPC", "LCM"):
        assert name in message


@pytest.mark.parametrize(("old", "new"), [
    ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")), ("LMS Karras", ("LMS", "Karras")),
    ("DPM++ SDE Karras", ("DPM++ SDE", "Karras")), ("Euler", ("Euler", "Automatic")),
    ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
])
def test_old_combined_names_still_work(old, new):
    assert split_name(old) == new
    assert sampler_from_infotext(old) == new
    settings = DiffusionSettings(prompt="x", sampler=old)
    assert (settings.sampler, settings.schedule) == new


def test_infotext_sampler_and_schedule_type_read_as_two_settings():
    assert sampler_from_infotext("DPM++ 2M", "Karras") == ("DPM++ 2M", "Karras")
    assert sampler_from_infotext("Euler a", "") == ("Euler a", "Automatic")
    assert sampler_from_infotext("DPM++ 2M", "Align Your Steps") == ("DPM++ 2M",
                                                                     "Align Your Steps")
    with pytest.raises(ValueError, match="Karas"):
        sampler_from_infotext("DPM++ 2M", "Karas")
    assert sampler_from_infotext("DPM adaptive") == ("DPM adaptive", "Automatic")
    assert sampler_from_infotext("Restart", "Karras") == ("Restart", "Karras")
    assert sampler_from_infotext("DPM fast", "Automatic") == ("DPM fast", "Automatic")
    with pytest.raises(ValueError, match="DPM Ultra"):
        sampler_from_infotext("DPM Ultra")
    assert "Beta" in SCHEDULE_NAMES


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
