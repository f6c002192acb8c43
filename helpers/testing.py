"""Tiny offline models with random weights, for tests, CI and offline demos.

Each builder makes a model in seconds on CPU from a small config and a fixed seed, and saves it in
the same format as the real model (a taming `.ckpt` + `.yaml`; a transformers / diffusers folder),
so the real loading code runs on it. Random weights: they make noise, not art.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = ".complete"  # written last: a folder without it is not a finished build
TEXT_HIDDEN = 32  # hidden size of the tiny CLIP text model (and the tiny SD's cross-attention)
PROJECTION_DIM = 16  # tiny CLIP's joint text / image embedding size
VISION_SIZE = 32  # tiny CLIP's input image size
MAX_LENGTH = 77  # CLIP's context length, as in the real models


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU RNG inside the block; the caller's RNG state is restored afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_vqgan(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight f16 VQGAN as taming's model.ckpt + model.yaml; makes noise, not art.

    64x64 images -> 4x4 latents, codebook 64 x 16. Returns the .ckpt path.
    """
    import torch
    from diffusers import VQModel

    from helpers.vqgan_clip.vqgan import (
        taming_config,
        to_taming_state_dict,
        vqmodel_config,
        write_taming_yaml,
    )

    config = taming_config(ch=32, ch_mult=[1, 1, 1, 1, 2], num_res_blocks=1,
                           attn_resolutions=[16], z_channels=16, embed_dim=16, n_embed=64)
    params = config["model"]["params"]
    with _seeded(seed):
        model = VQModel(**vqmodel_config(params["ddconfig"], params["embed_dim"],
                                         params["n_embed"]))
        torch.nn.init.normal_(model.quantize.embedding.weight)  # codes spread like a trained book
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "model.ckpt"
    torch.save({"state_dict": to_taming_state_dict(model), "global_step": 0}, ckpt)
    write_taming_yaml(ckpt.with_suffix(".yaml"), config)
    return ckpt


def _byte_symbols() -> list[str]:
    """The 256 symbols byte-level BPE (GPT-2 / CLIP) uses for bytes 0..255."""
    printable = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    others = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(others)) for b in range(256)]


def _write_tokenizer(folder: Path):
    """A character-level CLIP tokenizer (every byte, with and without `</w>`, no merges)."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(folder)
    return tokenizer


def _text_config(tokenizer) -> dict:
    return {"vocab_size": len(tokenizer), "hidden_size": TEXT_HIDDEN, "intermediate_size": 37,
            "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": MAX_LENGTH, "projection_dim": PROJECTION_DIM,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


def _image_processor():
    """CLIP's image preprocessing at the tiny vision size (PIL backend where there is one)."""
    try:
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor as Processor
    return Processor(size={"shortest_edge": VISION_SIZE},
                     crop_size={"height": VISION_SIZE, "width": VISION_SIZE})


def tiny_clip(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight CLIPModel + tokenizer + processor folder; makes noise, not art.

    Text: hidden 32, 2 layers; vision: 32x32 images, patch 8; projection_dim 16.
    """
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = _write_tokenizer(folder)
    vision = {"image_size": VISION_SIZE, "patch_size": 8, "hidden_size": 32,
              "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "projection_dim": PROJECTION_DIM}
    config = CLIPConfig(text_config=_text_config(tokenizer), vision_config=vision,
                        projection_dim=PROJECTION_DIM)
    with _seeded(seed):
        model = CLIPModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    processor = _image_processor()
    processor.save_pretrained(folder)
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _tiny_unet(cross_attention_dim: int, in_channels: int = 4, **extra):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, **extra)


def _tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 32, 32, 64), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64)


def _sd_scheduler_values() -> dict:
    """SD 1.5's scheduler values (scheduler_config.json of the released model)."""
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000, "steps_offset": 1}


def tiny_sd(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight Stable Diffusion folder (diffusers layout); makes noise, not art.

    VAE factor 8 like SD (64x64 images -> 8x8x4 latents), UNet (32, 64), tiny CLIP text encoder,
    PNDM scheduler with SD 1.5's values, no safety checker.
    """
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = _write_tokenizer(folder / "tokenizer")
    with _seeded(seed):
        unet = _tiny_unet(TEXT_HIDDEN, attention_head_dim=8)
        vae = _tiny_vae()
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer)))
    scheduler = PNDMScheduler(**_sd_scheduler_values(), skip_prk_steps=True,
                              set_alpha_to_one=False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=unet, scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_sd_x4_upscaler(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight SD x4 upscaler folder (diffusers layout); makes noise, not art.

    Laid out as stabilityai/stable-diffusion-x4-upscaler: a UNet taking 7 channels (4 latents +
    the 3-channel noised low-res picture) with a class embedding for the noise level, a
    3-level VAE (factor 4, scaling factor 0.08333), the tiny CLIP text encoder, DDIM
    (v-prediction) and the DDPM low_res_scheduler with the real model's values."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = _write_tokenizer(folder / "tokenizer")
    with _seeded(seed):
        unet = UNet2DConditionModel(
            block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=32, in_channels=7,
            out_channels=4, down_block_types=("DownBlock2D", *("CrossAttnDownBlock2D",) * 2),
            up_block_types=(*("CrossAttnUpBlock2D",) * 2, "UpBlock2D"),
            cross_attention_dim=TEXT_HIDDEN, attention_head_dim=8, use_linear_projection=True,
            num_class_embeds=1000)
        vae = AutoencoderKL(block_out_channels=(32, 32, 64), layers_per_block=1,
                            latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 3,
                            up_block_types=("UpDecoderBlock2D",) * 3, sample_size=128,
                            scaling_factor=0.08333)
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer)))
    betas = {"beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "scaled_linear"}
    scheduler = DDIMScheduler(**betas, clip_sample=False, prediction_type="v_prediction",
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        low_res_scheduler=DDPMScheduler(**betas, clip_sample=True), scheduler=scheduler,
        max_noise_level=350)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_sd_latent_upscaler(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight SD latent x2 upscaler folder (diffusers layout); makes noise, not art.

    Laid out as stabilityai/sd-x2-latent-upscaler: k-diffusion's UNet variant (K blocks,
    Fourier time embedding, 1x1 in / out convs, 8 channels in: latents + the low-res latents;
    5 out, the last one unused), conditioned on the tiny CLIP's pooled output beside the
    noise level (time_cond_proj_dim = 128 + its width), the tiny SD's 4-level VAE, Euler
    predicting the sample with SD's values."""
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionLatentUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = _write_tokenizer(folder / "tokenizer")
    with _seeded(seed):
        unet = UNet2DConditionModel(
            act_fn="gelu", attention_head_dim=8, norm_num_groups=None,
            block_out_channels=(32, 32, 64, 64), layers_per_block=1, sample_size=16,
            time_cond_proj_dim=128 + TEXT_HIDDEN, conv_in_kernel=1, conv_out_kernel=1,
            cross_attention_dim=TEXT_HIDDEN, in_channels=8, out_channels=5,
            down_block_types=("KDownBlock2D", *("KCrossAttnDownBlock2D",) * 3),
            up_block_types=(*("KCrossAttnUpBlock2D",) * 3, "KUpBlock2D"), mid_block_type=None,
            only_cross_attention=False, resnet_time_scale_shift="scale_shift",
            time_embedding_type="fourier", timestep_post_act="gelu")
        vae = _tiny_vae()
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer)))
    scheduler = EulerDiscreteScheduler(**{k: v for k, v in _sd_scheduler_values().items()
                                          if k != "steps_offset"}, prediction_type="sample")
    StableDiffusionLatentUpscalePipeline(vae=vae, text_encoder=text_encoder,
                                         tokenizer=tokenizer, unet=unet,
                                         scheduler=scheduler).save_pretrained(
        folder, safe_serialization=True)
    return folder


def _tiny_sdxl_unet(**changes):
    """The tiny SDXL's UNet: SDXL's size micro-conditioning, linear projections."""
    return _tiny_unet(2 * TEXT_HIDDEN, attention_head_dim=(2, 4), use_linear_projection=True,
                      addition_embed_type="text_time", addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=6 * 8 + TEXT_HIDDEN, **changes)


def _tiny_sdxl_parts(folder: Path, seed: int, in_channels: int = 4) -> dict:
    """The tiny SDXL's components (UNet with `in_channels`), tokenizer written into `folder`."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _write_tokenizer(folder / "tokenizer")
    text = CLIPTextConfig(**{**_text_config(tokenizer), "num_hidden_layers": 3,
                             "projection_dim": TEXT_HIDDEN})
    with _seeded(seed):
        unet = _tiny_sdxl_unet(in_channels=in_channels)
        vae = _tiny_vae()
        encoders = CLIPTextModel(text), CLIPTextModelWithProjection(text)
    return {"vae": vae, "text_encoder": encoders[0], "text_encoder_2": encoders[1],
            "tokenizer": tokenizer, "tokenizer_2": tokenizer, "unet": unet,
            "scheduler": EulerDiscreteScheduler(**_sd_scheduler_values())}


def tiny_sdxl(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight SDXL folder (diffusers layout); makes noise, not art.

    Two tiny text encoders (the second with a projection, for the pooled embedding), a UNet
    with SDXL's size micro-conditioning, Euler with SD's values.
    """
    from diffusers import StableDiffusionXLPipeline

    folder = Path(folder)
    StableDiffusionXLPipeline(**_tiny_sdxl_parts(folder, seed)).save_pretrained(
        folder, safe_serialization=True)
    return folder


def tiny_sdxl_inpaint(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight SDXL inpainting folder (diffusers layout); makes noise, not art.

    The tiny SDXL (`tiny_sdxl`) with a 9-channel UNet (latents, mask, masked-image latents),
    saved as a `StableDiffusionXLInpaintPipeline` like SDXL 1.0 inpainting 0.1 (no aesthetic
    score conditioning).
    """
    from diffusers import StableDiffusionXLInpaintPipeline

    folder = Path(folder)
    pipe = StableDiffusionXLInpaintPipeline(**_tiny_sdxl_parts(folder, seed, in_channels=9),
                                            requires_aesthetics_score=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_ldm(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight latent-diffusion folder (LDMBert, DDIM); makes noise, not art."""
    from diffusers import DDIMScheduler, LDMTextToImagePipeline
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import (
        LDMBertConfig,
        LDMBertModel,
    )

    folder = Path(folder)
    tokenizer = _write_tokenizer(folder / "tokenizer")
    config = LDMBertConfig(vocab_size=len(tokenizer), encoder_layers=2, encoder_ffn_dim=37,
                           encoder_attention_heads=4, head_dim=8, d_model=TEXT_HIDDEN)
    with _seeded(seed):
        bert = LDMBertModel(config)
        unet = _tiny_unet(TEXT_HIDDEN, attention_head_dim=8)
        vae = _tiny_vae()
    scheduler = DDIMScheduler(**{k: v for k, v in _sd_scheduler_values().items()
                                 if k != "steps_offset"})
    LDMTextToImagePipeline(vae, bert, tokenizer, unet, scheduler).save_pretrained(folder)
    return folder


def tiny_clipseg(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight CLIPSeg folder (model, tokenizer, image processor); makes noise, not art.

    Laid out as CIDAS/clipseg-rd64-refined: tiny CLIP text model and tokenizer, 64x64 images with
    patch 16, the refined decoder (reduce_dim 16), ViT preprocessing with the real ImageNet mean /
    std. The decoder's last layer is scaled down so the random logits stay within a few units, as
    a trained model's do (else every probability is exactly 0 or 1).
    """
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    try:
        from transformers import ViTImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import ViTImageProcessor as Processor
    folder = Path(folder)
    tokenizer = _write_tokenizer(folder)
    vision = {"image_size": 64, "patch_size": 16, "hidden_size": 32, "intermediate_size": 37,
              "num_hidden_layers": 2, "num_attention_heads": 4}
    config = CLIPSegConfig(text_config=_text_config(tokenizer), vision_config=vision,
                           projection_dim=PROJECTION_DIM, extract_layers=[0, 1], reduce_dim=16,
                           decoder_num_attention_heads=2, decoder_intermediate_size=37,
                           use_complex_transposed_convolution=True)
    with _seeded(seed):
        model = CLIPSegForImageSegmentation(config)
    last = model.decoder.transposed_convolution[-1]
    with torch.no_grad():
        last.weight.mul_(0.02)
        last.bias.mul_(0.02)
    model.save_pretrained(folder, safe_serialization=True)
    Processor(size={"height": 64, "width": 64}, resample=2, image_mean=[0.485, 0.456, 0.406],
              image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def tiny_sd_inpaint(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight Stable Diffusion inpainting folder (diffusers layout); makes noise.

    The tiny SD (`tiny_sd`) with a 9-channel UNet (latents, mask, masked-image latents), saved
    as a `StableDiffusionInpaintPipeline` like SD 1.5 inpainting.
    """
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = _write_tokenizer(folder / "tokenizer")
    with _seeded(seed):
        config = {**_tiny_unet(TEXT_HIDDEN, attention_head_dim=8).config, "in_channels": 9}
        unet = UNet2DConditionModel.from_config(config)
        vae = _tiny_vae()
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer)))
    scheduler = PNDMScheduler(**_sd_scheduler_values(), skip_prk_steps=True,
                              set_alpha_to_one=False)
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=text_encoder,
                                          tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_depth(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight Depth Anything folder (model + image processor); makes noise, not art.

    Laid out as LiheYoung/depth-anything-large-hf: a `DepthAnythingForDepthEstimation` on a
    tiny DINOv2 backbone (patch 14, 4 layers of width 32, 56 px), the DPT image processor with
    the real one's values at 56 px (aspect kept, multiples of 14, bicubic, ImageNet mean /
    std). The neck's and head's convolutions get PyTorch's default initialisation and the last
    one a bias of 1, so the depth is positive and varies as a trained model's does (with
    transformers' small normal initialisation most pixels leave the final ReLU at 0).
    """
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    try:
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import DPTImageProcessor as Processor
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=37, image_size=56, patch_size=14,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                                 patch_size=14, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8)
    with _seeded(seed):
        model = DepthAnythingForDepthEstimation(config)
        with torch.no_grad():
            for module in (*model.neck.modules(), *model.head.modules()):
                if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    module.reset_parameters()
            model.head.conv3.bias.fill_(1.0)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    Processor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
              resample=3, image_mean=[0.485, 0.456, 0.406],
              image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


_BLIP_WORDS = ("a", "an", "the", "of", "on", "in", "with", "and", "photo", "painting", "cat",
               "dog", "red", "blue", "sky", "tree", "house", "person", "field", "sea", "night")


def tiny_blip(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight BLIP captioner folder (model + processor); makes noise, not captions.

    Laid out as Salesforce/blip-image-captioning-large: a `BlipForConditionalGeneration` (text
    and vision width 32, 2 layers, 32 px images, patch 8) and a `BlipProcessor` whose BERT
    WordPiece tokenizer has a tiny vocabulary written here (specials, `[DEC]` as the start
    token as in BLIP, letters, `##` letters and a few words), saved with `save_pretrained`.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as Processor
    except ImportError:  # transformers 4.x
        from transformers import BlipImageProcessor as Processor
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", ",", ".", *letters,
             *(f"##{c}" for c in letters), *_BLIP_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, bos_token="[DEC]",
                              model_max_length=64)
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64,
            "bos_token_id": vocab.index("[DEC]"), "pad_token_id": 0,
            "sep_token_id": vocab.index("[SEP]"), "eos_token_id": vocab.index("[SEP]")}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
              "num_hidden_layers": 2, "num_attention_heads": 4}
    with _seeded(seed):
        model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision,
                                                        projection_dim=PROJECTION_DIM))
    model.save_pretrained(folder, safe_serialization=True)
    processor = Processor(size={"height": 32, "width": 32}, resample=3)  # bicubic, as BLIP's
    BlipProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _controlnet_from(unet, folder: str | os.PathLike) -> Path:
    """A ControlNet copied from a tiny UNet (as real ones start from their model's), its zero
    convolutions given small random weights so that it changes the residuals, and its map
    encoder He-initialised (no biases) with a larger last layer, so that the map itself does:
    with PyTorch's default initialisation the map's signal fades through the encoder's seven
    layers (two maps' residuals differed by 1e-6 of their size; now by about a fifth)."""
    import torch
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    embedding = net.controlnet_cond_embedding
    zeros = [embedding.conv_out, *net.controlnet_down_blocks, net.controlnet_mid_block]
    with torch.no_grad():
        for conv in zeros:
            torch.nn.init.normal_(conv.weight, std=0.05)
            torch.nn.init.normal_(conv.bias, std=0.05)
        for conv in (embedding.conv_in, *embedding.blocks):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.zeros_(conv.bias)
        torch.nn.init.normal_(embedding.conv_out.weight, std=0.2)
    folder = Path(folder)
    net.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_controlnet(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight ControlNet folder (diffusers layout) for the tiny SD; makes noise, not art.

    Started from a UNet built as the tiny SD's is (the same with the same seed); it takes control
    images of the tiny SD's size (64x64, factor 8)."""
    with _seeded(seed):
        return _controlnet_from(_tiny_unet(TEXT_HIDDEN, attention_head_dim=8), folder)


def tiny_controlnet_sdxl(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight ControlNet folder (diffusers layout) for the tiny SDXL; makes noise, not art.

    It takes SDXL's added conditioning (pooled text embeddings and size ids)."""
    with _seeded(seed):
        return _controlnet_from(_tiny_sdxl_unet(), folder)


def _rrdb_state_dict(in_channels: int, features: int = 4, grow: int = 32, blocks: int = 1,
                     ) -> dict:
    """Random weights under Real-ESRGAN's (basicsr's RRDBNet) keys and shapes: two 2x
    upsampling convs (a 4x network), `in_channels` 3 or 12 (2x with pixel unshuffle); `grow`
    is 32 in every released RRDBNet (spandrel assumes it)."""
    import torch

    def conv(name: str, out: int, into: int) -> None:
        std = (1 / (into * 9)) ** 0.5  # keeps the values in range through the random layers
        state[f"{name}.weight"] = torch.randn(out, into, 3, 3) * std
        state[f"{name}.bias"] = torch.zeros(out)

    state: dict = {}
    conv("conv_first", features, in_channels)
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for i in range(1, 6):
                out = features if i == 5 else grow
                conv(f"body.{block}.rdb{rdb}.conv{i}", out, features + (i - 1) * grow)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, features, features)
    conv("conv_last", 3, features)
    state["conv_last.bias"] += 0.5  # mid-grey on average, so little is clamped at 0 or 1
    return state


def _tiny_esrgan(folder: str | os.PathLike, seed: int, in_channels: int) -> Path:
    import torch
    from safetensors.torch import save_file

    with _seeded(seed):
        state = _rrdb_state_dict(in_channels)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": state}, folder / "model.pth")  # as Real-ESRGAN's releases
    save_file(state, folder / "model.safetensors")
    return folder / "model.pth"


def tiny_esrgan(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight 4x Real-ESRGAN (RRDBNet: 4 features, 1 block) as Real-ESRGAN's .pth
    (`{"params_ema": state dict}`) and the same weights as .safetensors; makes noise, not art.

    Returns the .pth path; spandrel recognises both files as ESRGAN.
    """
    return _tiny_esrgan(folder, seed, 3)


def tiny_esrgan_x2(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight 2x Real-ESRGAN laid out as RealESRGAN_x2plus (pixel unshuffle: 12 input
    channels, a 4x network), .pth and .safetensors; makes noise, not art. Returns the .pth."""
    return _tiny_esrgan(folder, seed, 12)


def tiny_swinir(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight 4x SwinIR laid out as the real-world SwinIR-L release (spandrel's
    class: "nearest+conv" upsampler, "3conv" residual, window 8) but tiny (16 features, two
    layers of two blocks), as a .pth with `params_ema`; makes noise, not art. Returns it.

    Its attention weights are drawn at 1/sqrt(fan-in) (not SwinIR's 0.02) so the windows
    matter, and its last conv is scaled up so the output is not a flat grey."""
    import torch
    from spandrel.architectures.SwinIR import SwinIR

    with _seeded(seed):
        model = SwinIR(img_size=32, in_chans=3, embed_dim=16, depths=[2, 2], num_heads=[2, 2],
                       window_size=8, mlp_ratio=2.0, upscale=4, img_range=1.0,
                       upsampler="nearest+conv", resi_connection="3conv")
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.normal_(0, layer.in_features ** -0.5)
            model.conv_last.weight.mul_(16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.pth"
    torch.save({"params_ema": model.state_dict()}, path)  # as SwinIR's real-world releases
    return path


def _save_params_ema(state: dict, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": state}, path)  # as GFPGAN's and CodeFormer's releases
    return path


def tiny_gfpgan(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight GFPGAN v1.4 (spandrel's GFPGANv1Clean, full size: spandrel builds GFPGAN
    at 512 whatever the weights say) as GFPGANv1.4.pth with `params_ema`; makes noise, not art.

    About 350 MB, 87M parameters; one 512x512 face takes seconds on a CPU.
    """
    from spandrel.architectures.GFPGAN import GFPGAN

    with _seeded(seed):  # the hyperparameters spandrel loads GFPGAN with
        model = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2,
                       decoder_load_path=None, fix_decoder=False, num_mlp=8,
                       input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return _save_params_ema(model.state_dict(), Path(folder) / "GFPGANv1.4.pth")


def tiny_codeformer(folder: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight CodeFormer (spandrel_extra_arches' class) as codeformer.pth with
    `params_ema`; makes noise, not art. Its transformer is small (1 layer, 64 features, 64
    codes); its VQGAN encoder and generator are CodeFormer's full-size ones (fixed there)."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    with _seeded(seed):
        model = CodeFormer(dim_embd=64, n_head=8, n_layers=1, codebook_size=64,
                           latent_size=256, connect_list=["32", "64", "128", "256"])
    return _save_params_ema(model.state_dict(), Path(folder) / "codeformer.pth")


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "test-tiny-vqgan": tiny_vqgan,
    "test-tiny-clip": tiny_clip,
    "test-tiny-sd": tiny_sd,
    "test-tiny-sdxl": tiny_sdxl,
    "test-tiny-ldm": tiny_ldm,
    "test-tiny-clipseg": tiny_clipseg,
    "test-tiny-sd-inpaint": tiny_sd_inpaint,
    "test-tiny-sdxl-inpaint": tiny_sdxl_inpaint,
    "test-tiny-controlnet": tiny_controlnet,
    "test-tiny-controlnet-sdxl": tiny_controlnet_sdxl,
    "test-tiny-depth": tiny_depth,
    "test-tiny-esrgan": tiny_esrgan,
    "test-tiny-esrgan-x2": tiny_esrgan_x2,
    "test-tiny-swinir": tiny_swinir,
    "test-tiny-sd-x4-upscaler": tiny_sd_x4_upscaler,
    "test-tiny-sd-latent-upscaler": tiny_sd_latent_upscaler,
    "test-tiny-gfpgan": tiny_gfpgan,
    "test-tiny-codeformer": tiny_codeformer,
    "test-tiny-blip": tiny_blip,
}


def _result(folder: Path) -> Path:
    """What a finished build at `folder` returns (the .ckpt for a VQGAN, else the folder)."""
    return folder / (folder / MARKER).read_text(encoding="utf-8").strip()


def _sweep_dead_builds(folder: Path) -> None:
    """Remove the temporary folders of builds whose process is gone (killed mid-build)."""
    for tmp in folder.parent.glob(f".{folder.name}.*.tmp"):
        pid = tmp.name[len(folder.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def build_test_model(name: str, folder: str | os.PathLike) -> Path:
    """Build tiny model `name` into `folder` once (random weights, for tests / CI / demos).

    Builds in a temporary sibling folder and renames it into place with a `.complete` marker,
    so an interrupted build never looks finished; a finished folder is returned as it is.
    """
    if name not in BUILDERS:
        raise ValueError(f"test model name: unknown {name!r}; expected one of {sorted(BUILDERS)}")
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return _result(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep_dead_builds(folder)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.{os.getpid()}.",
                                suffix=".tmp"))
    try:
        built = BUILDERS[name](tmp)
        (tmp / MARKER).write_text(str(built.relative_to(tmp)) + "\n", encoding="utf-8")
        if folder.exists() and not (folder / MARKER).is_file():  # unfinished leftover: replace
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except OSError:
        if not (folder / MARKER).is_file():  # not a concurrent build that finished first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _result(folder)
