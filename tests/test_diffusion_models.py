"""Model references, single-file checkpoints and memory options of the diffusion engine."""

import json
import re

import numpy as np
import pytest
import torch
from common import quiet
from PIL import Image

from helpers.catalog import list_models
from helpers.diffusion import generate
from helpers.diffusion.checks import estimate_bytes, plan_memory
from helpers.diffusion.families import FAMILIES
from helpers.diffusion.loading import model_hash
from helpers.diffusion.models import resolve_model
from helpers.memory import GB
from helpers.runs import list_frames
from helpers.settings import DiffusionSettings

# --- writing the tiny SD in the original (LDM) single-file layout, for the loader to read ----


def _resnet(key: str) -> str:
    for new, old in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"),
                     ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
                     ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")):
        key = key.replace(f".{new}.", f".{old}.")
    return key


def _unet_key(key: str, per_block: int) -> str:
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    head, _, tail = key.rpartition(".")
    if head in fixed:
        return f"{fixed[head]}.{tail}"
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + b * (per_block + 1) + j
        out = f"input_blocks.{index}.{0 if kind == 'resnets' else 1}.{rest}"
        return _resnet(out) if kind == "resnets" else out
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m[1]) + 1) * (per_block + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        index = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}[(m[1], int(m[2]))]
        out = f"middle_block.{index}.{m[3]}"
        return _resnet(out) if m[1] == "resnets" else out
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        index = int(m[1]) * (per_block + 1) + int(m[3])
        out = f"output_blocks.{index}.{0 if m[2] == 'resnets' else 1}.{m[4]}"
        return _resnet(out) if m[2] == "resnets" else out
    raise KeyError(key)


def _unet_state(unet) -> dict:
    per_block = unet.config.layers_per_block
    state = {_unet_key(k, per_block): v for k, v in unet.state_dict().items()
             if ".upsamplers." not in k}
    for b, block in enumerate(unet.up_blocks):
        if block.upsamplers:
            index = b * (per_block + 1) + per_block
            slot = 2 if getattr(block, "attentions", None) else 1
            for name, value in block.upsamplers[0].conv.state_dict().items():
                state[f"output_blocks.{index}.{slot}.conv.{name}"] = value
    return {f"model.diffusion_model.{k}": v for k, v in state.items()}


def _vae_key(key: str, up_blocks: int) -> str:
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
    key = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", key)
    key = re.sub(r"up_blocks\.(\d+)\.resnets\.",
                 lambda m: f"up.{up_blocks - 1 - int(m[1])}.block.", key)
    key = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.",
                 lambda m: f"up.{up_blocks - 1 - int(m[1])}.upsample.", key)
    key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
    for new, old in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                     ("to_out.0", "proj_out")):
        key = key.replace(f"mid_block.attentions.0.{new}.", f"mid.attn_1.{old}.")
    return key


def _vae_state(vae) -> dict:
    up_blocks = len(vae.config.up_block_types)
    state = {}
    for key, value in vae.state_dict().items():
        if ".attentions." in key and key.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original stores 1x1 convolutions
        state[f"first_stage_model.{_vae_key(key, up_blocks)}"] = value
    return state


def save_single_file(pipe, path) -> None:
    """The pipeline's weights in the original SD layout, as model-sharing sites ship them."""
    from safetensors.torch import save_file

    state = {**_unet_state(pipe.unet), **_vae_state(pipe.vae)}
    for key, value in pipe.text_encoder.state_dict().items():  # transformers 5 drops the prefix
        key = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{key}"] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


@pytest.fixture(scope="module")
def tiny_pipe(pipe):
    return pipe


def _pixels(run_dir) -> np.ndarray:
    return np.asarray(Image.open(list_frames(run_dir)[0])).astype(int)


def test_single_safetensors_file_gives_the_same_images_as_the_folder(tiny_models, tiny_pipe,
                                                                     tmp_path):
    folder = tiny_models["test-tiny-sd"]
    single = tmp_path / "tiny-sd.safetensors"
    save_single_file(tiny_pipe, single)
    common = {"prompt": "a red cube", "width": 64, "height": 64, "steps": 2, "seed": 5,
              "sampler": "DDIM"}
    from_folder = generate(DiffusionSettings(model=str(folder), out=str(tmp_path / "a"),
                                             **common), log=quiet)
    from_file = generate(DiffusionSettings(model=str(single), model_config=str(folder),
                                           out=str(tmp_path / "b"), **common), log=quiet)
    assert np.array_equal(_pixels(from_folder), _pixels(from_file))
    info = Image.open(list_frames(from_file)[0]).text["parameters"]
    assert "Model: tiny-sd," in info


def test_a_pickled_ckpt_is_read_without_running_code_and_cached_as_safetensors(
        tiny_models, tiny_pipe, tmp_path):
    single = tmp_path / "tiny-sd.safetensors"
    save_single_file(tiny_pipe, single)
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny-sd.ckpt"
    torch.save({"state_dict": load_file(str(single)), "global_step": 1}, ckpt)
    ref = resolve_model(str(ckpt), cache=tmp_path / "cache")
    assert (ref.kind, ref.family, ref.file_type) == ("file", "sd", "v1")
    assert list((tmp_path / "cache" / "converted").glob("tiny-sd-*.safetensors"))


def test_a_file_that_is_not_a_stable_diffusion_checkpoint_is_refused(tmp_path):
    from safetensors.torch import save_file

    lora = tmp_path / "style-lora.safetensors"
    save_file({"lora_unet_down_blocks_0.alpha": torch.ones(1)}, str(lora))
    with pytest.raises(ValueError, match="not a Stable Diffusion checkpoint"):
        resolve_model(str(lora))
    garbage = tmp_path / "broken.safetensors"
    garbage.write_bytes(b"not safetensors at all")
    with pytest.raises(ValueError, match="cannot read"):
        resolve_model(str(garbage))
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(ValueError, match=r"not a \.safetensors or \.ckpt"):
        resolve_model(str(notes))


def test_model_specs_resolve_to_their_kind_and_family(tiny_models, tmp_path):
    assert resolve_model("sd-1.5").family == "sd"
    assert resolve_model("sdxl-turbo").family == "sdxl"
    folder = resolve_model(str(tiny_models["test-tiny-sd"]))
    assert (folder.kind, folder.family) == ("folder", "sd")
    hub = resolve_model("someone/some-model")
    assert (hub.kind, hub.family) == ("hub", None)
    with pytest.raises(ValueError, match=r"Did you mean 'sd-1\.5'"):
        resolve_model("sd-1.6")
    with pytest.raises(ValueError, match="not a diffusion model"):
        resolve_model("vqgan_imagenet_f16_16384")
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path / "missing.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"model_index\.json"):
        resolve_model(str(tmp_path / "empty"))


def test_every_catalogue_diffusion_model_has_a_family_and_fp16_weights():
    for model in list_models("diffusion"):
        assert model.family in ("sd", "sdxl", "ldm", "sd-inpaint", "sdxl-inpaint"), model.name
        if model.test:
            continue
        assert model.hub_repo and model.approx_size
        assert "model_index.json" in model.allow_patterns
        assert model.weights[0] in model.allow_patterns
        weights = [p for p in model.allow_patterns if p.endswith((".safetensors", ".bin"))]
        if model.name != "ldm-text2im-256":  # only .bin weights exist for it
            assert weights and all(".fp16." in p for p in weights), model.name


def test_model_hash_is_the_short_sha256_of_the_unet_weights(tiny_models, tmp_path):
    import hashlib

    folder = tiny_models["test-tiny-sd"]
    unet = next((folder / "unet").glob("diffusion_pytorch_model*"))
    expected = hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    assert model_hash(folder, cache=tmp_path) == expected
    assert json.loads((tmp_path / "model-hashes.json").read_text())  # remembered
    assert model_hash(folder, cache=tmp_path) == expected


# --- memory options --------------------------------------------------------------------------


def _settings(**changes) -> DiffusionSettings:
    return DiffusionSettings(**{"prompt": "x", **changes})


def test_auto_memory_options_stay_off_when_the_run_fits():
    chosen = plan_memory(_settings(), FAMILIES["sd"], "cuda", 40 * GB)
    assert not any(chosen.values())


def test_auto_memory_options_switch_on_as_free_memory_shrinks():
    roomy = plan_memory(_settings(width=1024, height=1024), FAMILIES["sdxl"], "cuda", 24 * GB)
    tight = plan_memory(_settings(width=1024, height=1024), FAMILIES["sdxl"], "cuda", 8 * GB)
    assert sum(tight.values()) > sum(roomy.values())
    assert tight["cpu_offload"]


def test_explicit_memory_options_are_kept():
    chosen = plan_memory(_settings(attention_slicing="on", vae_tiling="off"), FAMILIES["sd"],
                         "cuda", 40 * GB)
    assert chosen["attention_slicing"] and not chosen["vae_tiling"]


def test_a_size_too_large_for_the_gpu_is_an_error_naming_the_size():
    with pytest.raises(ValueError, match=r"width/height: 4096x4096 .* GB is free"):
        plan_memory(_settings(width=4096, height=4096, batch_size=8), FAMILIES["sdxl"], "cuda",
                    4 * GB)


def test_memory_estimate_grows_with_size_and_shrinks_with_options():
    small = estimate_bytes(FAMILIES["sd"], 512, 512, 1, 2, {})
    large = estimate_bytes(FAMILIES["sd"], 1024, 1024, 1, 2, {})
    saving = estimate_bytes(FAMILIES["sd"], 1024, 1024, 1, 2, dict.fromkeys(
        ("vae_slicing", "vae_tiling", "attention_slicing", "cpu_offload"), True))
    assert small < large and saving < large


def test_cpu_offload_without_cuda_is_an_error_and_cpu_runs_choose_nothing():
    with pytest.raises(ValueError, match="cpu_offload"):
        plan_memory(_settings(cpu_offload="on"), FAMILIES["sd"], "cpu", None)
    assert not any(plan_memory(_settings(), FAMILIES["sd"], "cpu", 64 * GB, 4).values())
    assert plan_memory(_settings(batch_size=4), FAMILIES["sd"], "cpu", None)["vae_slicing"]


def test_the_cpu_plan_uses_the_free_ram_and_refuses_what_cannot_fit():
    with pytest.raises(ValueError, match=r"4096x4096 .* GB of memory"):
        plan_memory(_settings(width=4096, height=4096), FAMILIES["sd"], "cpu", 16 * GB, 4)
    tight = plan_memory(_settings(width=1024, height=1024), FAMILIES["sd"], "cpu", 10 * GB, 4)
    assert tight["attention_slicing"] and not tight["cpu_offload"]


# --- VAE override ------------------------------------------------------------------------------


def test_vae_override_from_a_folder_or_a_single_file(tiny_models, tiny_pipe, tmp_path):
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    folder = tiny_models["test-tiny-sd"]
    common = {"prompt": "a red cube", "model": str(folder), "width": 64, "height": 64,
              "steps": 2, "seed": 5, "sampler": "DDIM"}
    own = generate(DiffusionSettings(out=str(tmp_path / "own"), **common), log=quiet)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        other = AutoencoderKL.from_config(tiny_pipe.vae.config)
    other.save_pretrained(tmp_path / "other-vae")
    single = tmp_path / "other-vae.safetensors"  # web-UI style: no first_stage_model. prefix
    save_file({k.removeprefix("first_stage_model."): v.contiguous()
               for k, v in _vae_state(other).items()}, str(single))
    from_folder = generate(DiffusionSettings(out=str(tmp_path / "f"), vae=str(tmp_path /
                                             "other-vae"), **common), log=quiet)
    from_file = generate(DiffusionSettings(out=str(tmp_path / "s"), vae=str(single), **common),
                         log=quiet)
    assert not np.array_equal(_pixels(own), _pixels(from_folder))
    assert np.array_equal(_pixels(from_folder), _pixels(from_file))
    info = Image.open(list_frames(from_file)[0]).text["parameters"]
    assert "VAE: other-vae" in info
