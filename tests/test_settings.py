import dataclasses
import json

import pytest

from helpers.settings import RunSettings, VQGANClipSettings, settings_from_json


def test_defaults_are_valid_and_frozen():
    s = VQGANClipSettings(prompt="desert:50 | snow:25")
    assert s.width == 512 and s.lr == 0.1 and s.optimizer == "Adam"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.width = 256  # type: ignore[misc]


def test_json_round_trip_keeps_every_field():
    s = VQGANClipSettings(
        prompt="a cat:1:0.8 | dog:-0.5",
        seed=7,
        augments=("affine", "noise"),
        init_weight=0.5,
        width=300,
    )
    text = s.to_json()
    assert json.loads(text)["kind"] == "vqgan-clip"
    assert VQGANClipSettings.from_json(text) == s
    assert settings_from_json(text) == s


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"width": 0}, "width", "0"),
        ({"height": 10_000}, "height", "10000"),
        ({"seed": -2}, "seed", "-2"),
        ({"iterations": 0}, "iterations", "0"),
        ({"lr": -0.1}, "lr", "-0.1"),
        ({"optimizer": "SGDX"}, "optimizer", "SGDX"),
        ({"precision": "fp8"}, "precision", "fp8"),
        ({"augments": ("affine", "wobble")}, "augments", "wobble"),
        ({"init_noise": "perlin"}, "init_noise", "perlin"),
        ({"cutn": 0}, "cutn", "0"),
        ({"prompt": "a || b"}, "prompt", "a || b"),
        ({"width": "512"}, "width", "512"),
        ({"seed": True}, "seed", "True"),
    ],
)
def test_bad_values_name_the_field_and_value(changes, field, value):
    with pytest.raises(ValueError) as e:
        VQGANClipSettings(**{"prompt": "desert", **changes})
    message = str(e.value)
    assert message.startswith(field)
    assert value in message


def test_unknown_json_keys_are_named():
    data = json.loads(VQGANClipSettings(prompt="x").to_json())
    data["iteratoins"] = 5
    data["colour"] = "red"
    with pytest.raises(ValueError, match="colour, iteratoins"):
        VQGANClipSettings.from_dict(data)


def test_json_of_another_kind_is_refused():
    data = json.loads(VQGANClipSettings(prompt="x").to_json())
    data["kind"] = "diffusion"
    with pytest.raises(ValueError, match="kind"):
        VQGANClipSettings.from_dict(data)
    with pytest.raises(ValueError, match="kind"):
        settings_from_json(json.dumps({"kind": "nope"}))


def test_lists_from_json_become_tuples():
    s = VQGANClipSettings.from_dict({"prompt": "x", "augments": ["jitter"]})
    assert s.augments == ("jitter",)


def test_a_vqgan_clip_run_needs_something_to_aim_at():
    with pytest.raises(ValueError, match="prompt"):
        VQGANClipSettings(prompt="  ")
    assert VQGANClipSettings(image_prompts="a.png").image_prompts == "a.png"


def test_shared_settings_validate_alone():
    assert RunSettings(prompt="x", seed=None).seed is None
    with pytest.raises(ValueError, match="out"):
        RunSettings(out=" ")
