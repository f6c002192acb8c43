"""The web UI's infotext in PNG, JPEG and WebP; hires, schedule and unknown keys; LoRA and
textual inversion loaded from the workspace, hashed as the web UI hashes them, and unloaded."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import runs
from helpers.cli import main
from helpers.diffusion import extras
from helpers.diffusion.image_info import infotext_params, settings_from_image
from helpers.metadata import exif
from helpers.metadata.infotext import format_infotext, parse_infotext
from helpers.settings import DiffusionSettings

SUFFIXES = (".png", ".jpg", ".webp")
# What the web UI writes into a JPEG or WebP, byte for byte: piexif.dump({"Exif": {UserComment:
# piexif.helper.UserComment.dump(text, encoding="unicode")}}) for WEB_UI_TEXT.
WEB_UI_TEXT = ("a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: "
               "Automatic, CFG scale: 7, Seed: 1, Size: 512x512")
WEB_UI_EXIF = bytes.fromhex(
    "4578696600004d4d002a00000008000187690004000000010000001a00000000000192860007000000fa"
    "00000028554e49434f44450000610020006300610074000a004e0065006700610074006900760065002000"
    "700072006f006d00700074003a00200062006c0075007200720079000a00530074006500700073003a0020"
    "00320030002c002000530061006d0070006c00650072003a002000450075006c0065007200200061002c00"
    "20005300630068006500640075006c006500200074007900700065003a0020004100750074006f006d0061"
    "007400690063002c00200043004600470020007300630061006c0065003a00200037002c00200053006500"
    "650064003a00200031002c002000530069007a0065003a00200035003100320078003500310032")
HIRES_INFOTEXT = (
    "a castle <lora:x:0.7>\nNegative prompt: ugly\nSteps: 20, Sampler: DPM++ 2M, Schedule type: "
    "Karras, CFG scale: 6.5, Seed: 77, Size: 512x768, Model hash: 6ce0161689, Model: sd-1.5, "
    'Denoising strength: 0.55, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Lora '
    'hashes: "x: abc123", Unknown thing: 3, Version: v1.10.1')


def _image() -> Image.Image:
    return Image.new("RGB", (16, 12), (200, 30, 90))


def _loaded(label: str = "test-tiny-sd") -> SimpleNamespace:
    """What infotext_params reads of a loaded model."""
    return SimpleNamespace(model_hash="0123456789", ref=SimpleNamespace(label=label),
                           vae_label="")


def _settings(tmp_path: Path, **changes) -> DiffusionSettings:
    base = {"prompt": "a red cube", "negative_prompt": "blurry", "model": "test-tiny-sd",
            "steps": 3, "seed": 42, "sampler": "Euler a", "out": str(tmp_path)}
    return DiffusionSettings(**{**base, **changes})


# --- EXIF: the web UI's encoding ----------------------------------------------------------------


def test_user_comment_is_unicode_prefix_then_big_endian_utf16() -> None:
    assert exif.encode_user_comment("a é 富") == b"UNICODE\x00" + "a é 富".encode("utf-16-be")


def test_exif_block_types_user_comment_undefined_as_piexif_reads_it() -> None:
    block = exif.exif_block("Steps: 2", '{"kind": "diffusion"}')
    assert block[:12] == b"Exif\x00\x00MM\x00\x2a\x00\x00"
    tiff = block[6:]
    pointer = struct.unpack(">L", tiff[18:22])[0]  # IFD0's one entry: the Exif IFD
    count = struct.unpack(">H", tiff[pointer:pointer + 2])[0]
    entries = [struct.unpack(">HHL", tiff[pointer + 2 + 12 * i:pointer + 10 + 12 * i])
               for i in range(count)]
    assert [(tag, kind) for tag, kind, _ in entries] == [(0x927C, 7), (0x9286, 7)]


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_infotext_the_web_ui_wrote_is_read_from_jpeg_and_webp(tmp_path, suffix) -> None:
    path = tmp_path / f"webui{suffix}"
    _image().save(path, exif=WEB_UI_EXIF)
    assert runs.read_image_info(path) == (WEB_UI_TEXT, None)


@pytest.mark.parametrize(("data", "big_endian", "text"), [
    (b"ASCII\x00\x00\x00Steps: 20", True, "Steps: 20"),
    (b"ASCII\x00\x00\x00caf\xc3\xa9", True, "café"),  # UTF-8 under an ASCII prefix
    (b"\x00" * 8 + b"Steps: 20\x00", True, "Steps: 20"),  # undefined prefix
    (b"Steps: 20", True, "Steps: 20"),  # no prefix at all
    (b"UNICODE\x00" + "Steps: 20".encode("utf-16-le"), False, "Steps: 20"),  # an II block
    (b"UNICODE\x00" + "Steps: 20".encode("utf-16-le"), True, "Steps: 20"),  # mislabelled
    (b"UNICODE\x00" + "Steps: 富".encode("utf-16"), True, "Steps: 富"),  # with a BOM
    (b"UNICODE\x00", True, None),
])
def test_user_comment_is_read_in_the_encodings_tools_write(data, big_endian, text) -> None:
    assert exif.decode_user_comment(data, big_endian) == text


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_infotext_and_settings_round_trip_through_png_jpeg_and_webp(tmp_path, suffix) -> None:
    text = format_infotext("富士山 <lora:x:0.5>", "ぼやけた", {"Steps": 20, "Lora hashes":
                                                             "x: abc123"})
    settings = _settings(tmp_path, prompt="富士山").to_json()
    path = exif.save_with_info(tmp_path / f"frame{suffix}", _image(), text, settings)
    assert runs.read_image_info(path) == (text, json.loads(settings))
    assert settings_from_image(path, out=str(tmp_path)) == DiffusionSettings.from_json(settings)


def test_web_ui_reads_our_jpeg_the_way_it_reads_its_own(tmp_path) -> None:
    path = exif.save_with_info(tmp_path / "ours.jpg", _image(), WEB_UI_TEXT)
    comment = Image.open(path).getexif().get_ifd(exif.EXIF_IFD)[exif.USER_COMMENT]
    assert comment == WEB_UI_EXIF[WEB_UI_EXIF.index(b"UNICODE"):]


def test_jpeg_keeps_the_infotext_when_the_settings_do_not_fit(tmp_path) -> None:
    noise = np.random.default_rng(0).bytes(100_000).hex()  # 100 kB even compressed
    settings = json.dumps({"kind": "diffusion", "noise": noise})
    path = exif.save_with_info(tmp_path / "big.jpg", _image(), "Steps: 2", settings)
    assert runs.read_image_info(path) == ("Steps: 2", None)
    with pytest.raises(ValueError, match="do not fit a JPEG"):
        exif.save_with_info(tmp_path / "huge.jpg", _image(), "x" * 40_000)
    assert not (tmp_path / "huge.jpg").exists()


def test_info_command_prints_a_jpeg_infotext(tmp_path, capsys) -> None:
    path = exif.save_with_info(tmp_path / "a.webp", _image(), WEB_UI_TEXT)
    assert main(["info", str(path)]) == 0
    assert WEB_UI_TEXT in capsys.readouterr().out


# --- reading a web UI infotext ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_web_ui_hires_infotext_is_read_and_unknown_keys_reported_in_one_line(tmp_path,
                                                                              suffix) -> None:
    path = exif.save_with_info(tmp_path / f"webui{suffix}", _image(), HIRES_INFOTEXT)
    lines: list[str] = []
    s = settings_from_image(path, log=lines.append)
    assert (s.prompt, s.negative_prompt, s.model, s.steps, s.cfg_scale, s.seed) == (
        "a castle <lora:x:0.7>", "ugly", "sd-1.5", 20, 6.5, 77)
    assert (s.sampler, s.schedule, s.width, s.height, s.rng) == (
        "DPM++ 2M", "Karras", 512, 768, "gpu")
    assert (s.hires_scale, s.hires_steps, s.hires_upscaler, s.hires_strength, s.strength) == (
        2.0, 10, "Latent", 0.55, DiffusionSettings().strength)
    assert len(lines) == 1 and lines[0].endswith(": Unknown thing")


def test_unknown_model_is_an_error_naming_it_unless_overridden(tmp_path) -> None:
    text = HIRES_INFOTEXT.replace("Model: sd-1.5", "Model: v1-5-pruned-emaonly")
    path = exif.save_with_info(tmp_path / "webui.png", _image(), text)
    with pytest.raises(ValueError, match=r"model: .*'v1-5-pruned-emaonly' \(hash 6ce0161689\)"):
        settings_from_image(path, log=print)
    assert settings_from_image(path, log=print, model="sd-2.1").model == "sd-2.1"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("Hires upscaler", "4x-Foolhardy", "Hires upscaler '4x-Foolhardy'"),
    ("RNG", "Quantum", "RNG 'Quantum'"),
    ("Steps", "many", "Steps 'many' is not a number"),
])
def test_values_we_cannot_read_are_errors_naming_the_key(tmp_path, key, value, message) -> None:
    info = parse_infotext(HIRES_INFOTEXT)
    params = {k: v for k, v in info.items() if k not in ("Prompt", "Negative prompt")
              and not k.startswith("Size-")}
    path = exif.save_with_info(tmp_path / "webui.png", _image(),
                           format_infotext("p", "", {**params, key: value}))
    with pytest.raises(ValueError, match=re.escape(message)):
        settings_from_image(path, log=print)


def test_hires_resize_reads_as_a_scale(tmp_path) -> None:
    text = HIRES_INFOTEXT.replace("Hires upscale: 2", "Hires resize: 768x1152")
    path = exif.save_with_info(tmp_path / "webui.png", _image(), text)
    assert settings_from_image(path, log=print).hires_scale == 1.5


# --- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sampler", "schedule", "written"), [
    ("DPM++ 2M", "Automatic", "Karras"), ("DPM++ 2M SDE", "Automatic", "Exponential"),
    ("Euler a", "Automatic", "Automatic"), ("Euler a", "Karras", "Karras"),
    ("DDIM", "Automatic", "Automatic"),
])
def test_schedule_type_is_written_as_the_web_ui_writes_it(tmp_path, sampler, schedule,
                                                           written) -> None:
    params = infotext_params(_settings(tmp_path, sampler=sampler, schedule=schedule), 1,
                             _loaded())
    assert (params["Sampler"], params["Schedule type"]) == (sampler, written)


def test_hires_keys_are_written_only_when_hires_is_on(tmp_path) -> None:
    off = infotext_params(_settings(tmp_path), 1, _loaded())
    assert not [k for k, v in off.items() if v is not None and k.startswith(("Hires", "Den"))]
    on = infotext_params(_settings(tmp_path, hires_scale=1.5, hires_strength=0.4,
                                   hires_upscaler="lanczos"), 1, _loaded())
    assert (on["Hires upscale"], on["Hires upscaler"], on["Denoising strength"]) == (
        "1.5", "Lanczos", "0.4")
    assert on["Hires steps"] is None
    assert infotext_params(_settings(tmp_path, hires_scale=2, hires_steps=12), 1,
                           _loaded())["Hires steps"] == 12


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_our_infotext_alone_reads_back_to_the_same_settings(tmp_path, suffix) -> None:
    s = _settings(tmp_path, sampler="DPM++ 2M", schedule="Exponential", cfg_scale=5.5,
                  clip_skip=2, rng="nv", hires_scale=2, hires_steps=7, hires_strength=0.45,
                  hires_upscaler="lanczos", width=320, height=256)
    text = format_infotext(s.prompt, s.negative_prompt, infotext_params(s, s.seed, _loaded()))
    path = exif.save_with_info(tmp_path / f"alone{suffix}", _image(), text)
    lines: list[str] = []
    assert settings_from_image(path, log=lines.append, out=s.out) == s
    assert lines == []


# --- LoRA and textual inversion -----------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(pipe, tmp_path_factory) -> Path:
    """loras/detail.safetensors (UNet and text encoder, diffusers' format), the same LoRA in
    kohya-ss' format (loras/kohya.safetensors) and embeddings/myemb.safetensors (two vectors,
    the web UI's `emb_params`)."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("workspace")
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    # peft itself, not transformers' add_adapter: that one demands a newer peft than some of
    # the transformers versions we support can have beside it.
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                       target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
                            pipe.text_encoder)
    (folder / "loras").mkdir()
    pipe.save_lora_weights(folder / "loras", get_peft_model_state_dict(pipe.unet),
                           get_peft_model_state_dict(pipe.text_encoder),
                           weight_name="detail.safetensors")
    pipe.unload_lora_weights()
    lora = load_file(folder / "loras" / "detail.safetensors")  # kohya-ss' keys, as the web UI's
    save_file(convert_state_dict_to_kohya(lora), folder / "loras" / "kohya.safetensors")
    (folder / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(2, 32)}, folder / "embeddings" / "myemb.safetensors")
    return folder


def _draw(pipe, prompt: str, negative: str) -> np.ndarray:
    image = pipe(prompt, negative_prompt=negative, num_inference_steps=2, height=64, width=64,
                 guidance_scale=7.0, generator=torch.Generator().manual_seed(3)).images[0]
    return np.asarray(image).astype(int)


def _state(pipe) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in ("unet", "text_encoder")
            for k, v in getattr(pipe, n).state_dict().items()}


def test_lora_and_embedding_change_the_image_and_leave_the_pipeline_as_it_was(pipe, workspace):
    s = DiffusionSettings(prompt="a cat <lora:detail:0.8>", negative_prompt="myemb, blurry",
                          out=str(workspace))
    before, tokens = _state(pipe), len(pipe.tokenizer)
    plain = _draw(pipe, "a cat ", "myemb, blurry")
    messages: list[str] = []
    with extras.applied(pipe, s, messages.append) as used:
        assert (used.prompt, used.negative_prompt) == ("a cat ", "myemb myemb_1, blurry")
        assert pipe.tokenizer.tokenize("myemb myemb_1")[:2] == ["myemb", "myemb_1"]
        changed = _draw(pipe, used.prompt, used.negative_prompt)
    assert np.abs(changed - plain).max() > 10
    assert messages == ["using lora detail, embedding myemb"]
    after = _state(pipe)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert len(pipe.tokenizer) == tokens == pipe.text_encoder.config.vocab_size
    assert np.array_equal(_draw(pipe, "a cat ", "myemb, blurry"), plain)


def test_a_loras_text_encoder_weights_reach_the_text_encoder_and_leave_with_it(pipe, workspace):
    from safetensors.torch import load_file

    keys = load_file(workspace / "loras" / "detail.safetensors").keys()
    assert any(k.startswith("text_encoder.") for k in keys)
    assert not any("lora" in name for name, _ in pipe.text_encoder.named_modules())
    ids = pipe.tokenizer("a cat", return_tensors="pt").input_ids

    def encode() -> torch.Tensor:
        with torch.no_grad():
            return pipe.text_encoder(ids)[0]

    plain = encode()
    s = DiffusionSettings(prompt="a cat <lora:detail:1>", out=str(workspace))
    with extras.applied(pipe, s, print):
        with_lora = encode()
    assert (with_lora - plain).abs().max() > 1e-3
    assert torch.allclose(encode(), plain, atol=1e-6)


def test_only_the_lora_weight_changes_the_image(pipe, workspace):
    def draw(weight: str) -> np.ndarray:
        s = DiffusionSettings(prompt=f"a cat <lora:detail:{weight}>", out=str(workspace))
        with extras.applied(pipe, s, print) as used:
            return _draw(pipe, used.prompt, "")

    assert np.array_equal(draw("0"), _draw(pipe, "a cat ", ""))
    assert not np.array_equal(draw("0.5"), draw("1"))


def test_a_lora_in_kohya_format_draws_what_the_same_lora_in_diffusers_format_draws(pipe,
                                                                                  workspace):
    def draw(name: str) -> np.ndarray:
        s = DiffusionSettings(prompt=f"a cat <lora:{name}:0.7>", out=str(workspace))
        with extras.applied(pipe, s, print) as used:
            return _draw(pipe, used.prompt, "")

    kohya = draw("kohya")
    assert np.abs(kohya - draw("detail")).max() <= 1
    assert np.abs(kohya - _draw(pipe, "a cat ", "")).max() > 10


def test_pickled_lora_and_web_ui_embedding_files_load_without_running_code(pipe, workspace,
                                                                            tmp_path):
    from safetensors.torch import load_file

    (tmp_path / "loras").mkdir()
    (tmp_path / "embeddings").mkdir()
    torch.save(load_file(workspace / "loras" / "detail.safetensors"), tmp_path / "loras" / "p.pt")
    vector = torch.randn(1, 32)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vector}, "name": "old",
                "step": 100}, tmp_path / "embeddings" / "oldemb.pt")

    def draw(folder: Path, name: str) -> np.ndarray:
        s = DiffusionSettings(prompt=f"a cat <lora:{name}:0.7>", out=str(folder))
        with extras.applied(pipe, s, print) as used:
            return _draw(pipe, used.prompt, "")

    assert np.abs(draw(tmp_path, "p") - draw(workspace, "detail")).max() <= 1
    s = DiffusionSettings(prompt="an oldemb cat", out=str(tmp_path))
    with extras.applied(pipe, s, print):
        ids = pipe.tokenizer("oldemb", add_special_tokens=False).input_ids
        assert len(ids) == 1
        assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids[0]], vector[0])
    assert "oldemb" not in pipe.tokenizer.get_vocab()


def test_extras_are_unloaded_when_the_run_fails(pipe, workspace):
    s = DiffusionSettings(prompt="myemb <lora:detail>", out=str(workspace))
    before = _state(pipe)
    with pytest.raises(KeyboardInterrupt), extras.applied(pipe, s, print):
        raise KeyboardInterrupt
    assert not getattr(pipe.unet, "peft_config", None) and "myemb" not in pipe.tokenizer.get_vocab()
    assert all(torch.equal(_state(pipe)[k], v) for k, v in before.items())


def test_an_embedding_for_another_text_encoder_is_refused(pipe, tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "embeddings").mkdir()
    save_file({"emb_params": torch.randn(1, 768)}, tmp_path / "embeddings" / "wide.safetensors")
    s = DiffusionSettings(prompt="a wide cat", out=str(tmp_path))
    with pytest.raises(ValueError, match=r"wide\.safetensors is not an embedding for this"), \
            extras.applied(pipe, s, print):
        pass
    assert "wide" not in pipe.tokenizer.get_vocab()


def test_missing_lora_is_an_error_naming_the_folder(tmp_path):
    s = DiffusionSettings(prompt="a cat <lora:nowhere:0.5>", out=str(tmp_path))
    with pytest.raises(ValueError, match=rf"<lora:nowhere>.*{re.escape(str(tmp_path))}/loras"):
        extras.check_extras(s)


@pytest.mark.parametrize(("tag", "weights"), [
    ("<lora:x>", (1.0, 1.0)), ("<lora:x:0.5>", (0.5, 0.5)), ("<lora:x:0.5:0.2>", (0.5, 0.2)),
    ("<lora:x:te=0.3:unet=0.7>", (0.3, 0.7)), ("<lyco:x:0.4>", (0.4, 0.4)),
])
def test_lora_tags_read_as_the_web_ui_reads_them(tag, weights):
    assert extras.lora_tags(f"a {tag} cat") == [("x", weights)]
    assert extras.strip_tags(f"a {tag} cat") == "a  cat"


@pytest.mark.parametrize(("prompt", "message"), [
    ("<hypernet:x:1>", "only <lora:name:weight>"), ("<lora:x:much>", "'much' is not a number"),
    ("<lora:x:1:2:3>", "write <lora:name>"), ("<lora:x:0.5> <lora:x:1>", "two weights"),
])
def test_bad_lora_tags_are_errors(tmp_path, prompt, message):
    with pytest.raises(ValueError, match=message):
        extras.check_extras(DiffusionSettings(prompt=prompt, out=str(tmp_path)))


def test_hashes_are_the_web_uis_and_go_into_the_infotext(workspace, tmp_path):
    lora = workspace / "loras" / "detail.safetensors"
    data = lora.read_bytes()
    addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
    embedding = workspace / "embeddings" / "myemb.safetensors"
    ti = hashlib.sha256(embedding.read_bytes()).hexdigest()[:12]
    s = DiffusionSettings(prompt="a <lora:detail:0.8> cat", negative_prompt="myemb",
                          out=str(workspace))
    text = format_infotext(s.prompt, s.negative_prompt, infotext_params(s, 1, _loaded()))
    assert f'Lora hashes: "detail: {addnet}", TI hashes: "myemb: {ti}"' in text
    assert parse_infotext(text)["Lora hashes"] == f"detail: {addnet}"


def test_lora_hash_stated_in_the_metadata_is_used(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "stated.safetensors"
    save_file({"w": torch.zeros(2)}, path, metadata={"sshs_model_hash": "f" * 64})
    assert extras.lora_hash(path) == "f" * 12
