"""Settings of a latent-diffusion run (the Stable Diffusion family through diffusers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from helpers.diffusion.samplers import SAMPLER_NAMES, SCHEDULE_NAMES, get_sampler, split_name
from helpers.diffusion.sampling.upscale import (
    HIRES_UPSCALERS,
    hires_upscaler,
    model_upscaler_names,
)
from helpers.diffusion.tools.control import (
    CONTROL_MODES,
    CROP_AND_RESIZE,
    DEFAULT_RESOLUTION,
    RESIZE_MODES,
)
from helpers.precision import PRECISIONS
from helpers.settings.base import (
    MAX_FRAMES,
    MAX_SIDE,
    MOTION,
    SWITCHES,
    RunSettings,
    border_setting,
    check_motion,
    motion_setting,
)
from helpers.settings.fields import MAX_EXPRESSION_CHARS, MAX_TEXT_CHARS, fail, setting

ANIMATIONS = ("", "walk", "2d", "video")
MASKED_CONTENT = ("original", "fill", "latent noise", "latent nothing")  # the web UI's names
INPAINT_AREAS = ("whole picture", "only masked")
OUTPAINT_FILLS = ("fill", "latent noise", "mirror", "stretch")  # what a new border starts from
MAX_STEPS = 1000  # the models' training timesteps: more steps cannot add anything
MEMORY_HELP = "(auto: on when the run would not fit in memory otherwise)"


@dataclass(frozen=True)
class DiffusionSettings(RunSettings):
    """A latent-diffusion run (Stable Diffusion family through diffusers): txt2img or img2img."""

    kind: ClassVar[str] = "diffusion"
    PROMPT_MODES: ClassVar[tuple[str, ...]] = ("composable", "blend")
    SEED_MODES: ClassVar[tuple[str, ...]] = ("iter", "fixed", "random")
    PREVIEW_MODES: ClassVar[tuple[str, ...]] = ("fast", "vae")
    MAX_CLIP_SKIP: ClassVar[int] = 12

    negative_prompt: str = setting("", 'what to steer away from; weighted pieces too ("blurry | '
                                   'text:0.5")', metavar="TEXT", flags=("--negative",),
                                   text="long", group="prompt")
    model: str = setting("sd-1.5", "catalogue name, Hub id, diffusers folder, or .safetensors / "
                         ".ckpt file", metavar="NAME|PATH", group="model")
    model_config: str = setting("", "single-file models: a diffusers folder or Hub id with its "
                                "configs; empty = chosen from the file's keys",
                                metavar="ID|DIR", advanced=True, group="model")
    vae: str = setting("", "VAE override: Hub id, diffusers folder or single file; empty = the "
                       "model's own", metavar="NAME|PATH", advanced=True, group="model")
    sampler: str = setting("DPM++ 2M", "the web UI's sampler (any case; an old name such as "
                           "'DPM++ 2M Karras' sets the schedule type too)",
                           choices=SAMPLER_NAMES, casefold=True, metavar="NAME",
                           group="sampling")
    schedule: str = setting("Automatic", "schedule type, as in the web UI 1.9+: Automatic is "
                            "the sampler's own (Karras for DPM++ 2M, Exponential for DPM++ 2M "
                            "SDE, ...)", choices=SCHEDULE_NAMES, casefold=True, metavar="TYPE",
                            group="sampling")
    steps: int = setting(20, "denoising steps; img2img runs about steps x strength of them",
                         min=1, max=MAX_STEPS, unit="steps", metavar="N", group="sampling")
    cfg_scale: float = setting(7.0, "classifier-free guidance scale; <= 1 turns guidance off "
                               "(Turbo models: 0)", min=0, max=100, metavar="X",
                               flags=("--cfg",), group="sampling")
    prompt_mode: str = setting("composable", "how weighted pieces combine: a noise prediction "
                               "per piece (composable) or one on the mean embedding (blend)",
                               choices=PROMPT_MODES, advanced=True, group="prompt")
    clip_skip: int = setting(1, "the web UI's clip skip: 1 = the last CLIP layer, 2 = the one "
                             "before", min=1, max=MAX_CLIP_SKIP, metavar="N", advanced=True,
                             group="sampling")
    rng: str = setting("cpu", "random numbers as the web UI's RNG source: cpu (the same on every "
                       "machine), gpu (the device's own), nv (NVIDIA GPU noise, reproduced on "
                       "any device)", choices=("cpu", "gpu", "nv"), casefold=True,
                       advanced=True, group="sampling")
    hires_scale: float = setting(1.0, "hires fix: make the image, upscale it by this factor, "
                                 "then refine it with img2img; 1 = off", min=1, max=4,
                                 metavar="X", group="hires")
    hires_upscaler: str = setting("Latent", "hires fix: the web UI's upscaler: a Latent mode "
                                  "resizes the latents; None (one Lanczos resize), Lanczos, "
                                  "Nearest or a model upscaler (R-ESRGAN 4x+, ..., or a .pth / "
                                  ".safetensors file) resize the decoded image",
                                  choices=(*HIRES_UPSCALERS, *model_upscaler_names()),
                                  open_choices=True, casefold=True, metavar="NAME",
                                  group="hires")
    hires_steps: int = setting(0, "hires fix: steps of the img2img pass; 0 = the same as steps",
                               min=0, max=MAX_STEPS, metavar="N", group="hires")
    hires_strength: float = setting(0.7, "hires fix: denoising strength of the img2img pass",
                                    min=0, min_open=True, max=1, metavar="X", group="hires")
    restore_faces: str = setting("", "restore faces in every image made: GFPGAN or CodeFormer "
                                 "(a catalogue name, or a .pth / .safetensors file); empty = "
                                 "off", metavar="NAME|PATH", group="postprocess")
    face_visibility: float = setting(1.0, "restore faces: how much of the restored face shows "
                                     "(the web UI's GFPGAN / CodeFormer visibility)", min=0,
                                     max=1, metavar="X", advanced=True, group="postprocess")
    codeformer_weight: float = setting(0.5, "restore faces, CodeFormer: 0 = the most "
                                       "restoration, 1 = the least (the web UI's CodeFormer "
                                       "weight)", min=0, max=1, metavar="X", advanced=True,
                                       group="postprocess")
    init_image: str = setting("", "img2img: the start image (path or URL), resized to the size",
                              metavar="PATH|URL", text="path", group="image")
    strength: float = setting(0.75, "img2img denoising strength; 1 = keep nothing of the image",
                              min=0, min_open=True, max=1, metavar="X", group="image")
    mask: str = setting("", "inpaint: the mask over the init image (path or URL): white = "
                        "repaint, black = keep; an image with transparency: its alpha",
                        metavar="PATH|URL", text="path", group="image")
    mask_prompt: str = setting("", 'inpaint: the mask from words instead of a file, "the sky | '
                               'the sea" (CLIPSeg finds them in the init image)',
                               metavar="TEXT", group="image")
    mask_model: str = setting("clipseg", "mask prompt: the CLIPSeg model (catalogue name, Hub "
                              "id or folder)", metavar="NAME|PATH", advanced=True,
                              group="image")
    mask_threshold: float = setting(0.4, "mask prompt: how sure CLIPSeg must be that a pixel "
                                    "shows the words", min=0, max=1, metavar="X", group="image")
    mask_dilation: int = setting(4, "mask prompt: grow the mask by this many pixels", min=0,
                                 max=64, unit="px", metavar="N", group="image")
    mask_blur: int = setting(4, "inpaint: blur the mask's edge, as the web UI's Mask blur",
                             min=0, max=64, unit="px", metavar="N", group="image")
    masked_content: str = setting("original", "inpaint: what the masked area starts from: "
                                  "original, fill (the colours around it), latent noise, "
                                  "latent nothing", choices=MASKED_CONTENT, casefold=True,
                                  group="image")
    inpaint_area: str = setting("whole picture", "inpaint: whole picture, or only masked (the "
                                "masked region is cut out, made at the full size and pasted "
                                "back)", choices=INPAINT_AREAS, casefold=True, group="image")
    inpaint_padding: int = setting(32, "inpaint, only masked: pixels around the masked region "
                                   "(the web UI's Only masked padding)", min=0, max=256,
                                   unit="px", metavar="N", group="image")
    invert_mask: bool = setting(False, "inpaint: repaint what the mask leaves black (the web "
                                "UI's Inpaint not masked)", group="image")
    outpaint: str = setting("", "outpaint: grow the canvas past the init image (resized to the "
                            "size) and paint the new border: pixels for every side (64), or "
                            "per side (left=128,right=128,up=0,down=64)", metavar="PX|SIDES",
                            group="image")
    outpaint_fill: str = setting("fill", "outpaint: what the new border starts from: fill (the "
                                 "colours around it), latent noise, mirror (the picture "
                                 "reflected), stretch (its edge pixels drawn out)",
                                 choices=OUTPAINT_FILLS, casefold=True, group="image")
    sd_upscale: float = setting(1.0, "SD upscale (the web UI's img2img script): enlarge the "
                                "init image by this factor, then img2img it in tiles of the "
                                "size; 1 = off", min=1, max=4, metavar="X", group="image")
    sd_upscale_overlap: int = setting(64, "SD upscale: pixels the tiles overlap, blended "
                                      "linearly (less than the size's shorter side)", min=0,
                                      max=2048, unit="px", metavar="N", group="image")
    sd_upscale_upscaler: str = setting("Lanczos", "SD upscale: what enlarges the init image: "
                                       "Lanczos, Nearest, a catalogue upscaler (R-ESRGAN 4x+), "
                                       "or a .pth / .safetensors file", metavar="NAME|PATH",
                                       group="image")
    control: str = setting("", "ControlNet units, one a line (the CLI flag: one per use): "
                           "TYPE[@MODEL]:IMAGE[:WEIGHT[:START:END]], TYPE a preprocessor "
                           "(canny, none, invert, threshold, scribble_xdog, lineart_standard, "
                           "tile_resample, depth: the depth model's map, inpaint: the mask "
                           "marked), IMAGE a path or URL, or video: each input frame of "
                           "--animate video, WEIGHT 0..2, START < END fractions of the steps; "
                           "MODEL: the ControlNet, else the catalogue's for TYPE and the "
                           "model's family", metavar="UNIT", text="lines", group="control")
    control_mode: str = setting(CONTROL_MODES[0], "ControlNet: the extension's control mode of "
                                f"every unit ({', '.join(CONTROL_MODES)})",
                                choices=CONTROL_MODES, casefold=True, metavar="MODE",
                                group="control")
    control_resize: str = setting(CROP_AND_RESIZE, "ControlNet: how a control map is fitted to "
                                  f"the size, the extension's resize mode "
                                  f"({', '.join(RESIZE_MODES)})", choices=RESIZE_MODES,
                                  casefold=True, metavar="MODE", group="control")
    control_pixel_perfect: bool = setting(False, "ControlNet: preprocess at the resolution the "
                                          "size needs (the extension's Pixel Perfect)",
                                          group="control")
    control_resolution: int = setting(DEFAULT_RESOLUTION, "ControlNet: the preprocessor "
                                      "resolution (short side) when not pixel perfect", min=64,
                                      max=2048, unit="px", metavar="N", advanced=True,
                                      group="control")
    depth_model: str = setting("depth-anything", "ControlNet depth preprocessor: the "
                               "depth estimator (catalogue name: depth-anything, the "
                               "extension's depth_anything, or depth-anything-small; a "
                               "transformers Hub id or folder)",
                               metavar="NAME|PATH", advanced=True, group="control")
    batch_count: int = setting(1, "batches, one after another", min=1, max=10_000,
                               metavar="N", group="run")
    batch_size: int = setting(1, "images per batch, generated together", min=1, max=64,
                              metavar="N", group="run")
    seed_mode: str = setting("iter", "seeds of the images: iter (seed, seed+1, ...), fixed, or "
                             "random", choices=SEED_MODES, advanced=True,
                             group="run")
    preview_every: int = setting(0, "show a preview every N steps; 0 = none", min=0,
                                 max=MAX_STEPS, metavar="N", advanced=True, group="output")
    preview_mode: str = setting("fast", "previews: fast (latent approximation) or vae (full "
                                "decode)", choices=PREVIEW_MODES, advanced=True,
                                group="output")
    save_trajectory: bool = setting(False, "save every step's image under trajectory/ (for "
                                    "videos of the denoising)", advanced=True, group="output")
    sdxl_original_size: tuple[int, ...] = setting((), "SDXL only: size conditioning W H; empty "
                                                  "= the output size", min=1, max=16384,
                                                  nargs=2, metavar="W H", advanced=True,
                                                  group="model")
    animate: str = setting("", 'animation: "walk" (prompts and seeds blend from keyframe to '
                           'keyframe), "2d" (each frame is the last one moved, noised and '
                           're-drawn by img2img), "video" (img2img over an input video); empty '
                           "= images", choices=ANIMATIONS, group="animation")
    frames: int = setting(0, "frames of an animation; 0 = up to the prompt schedule's last "
                          "key (walk) or every frame of the input video (video)", min=0,
                          max=MAX_FRAMES, metavar="N", group="animation")
    prompt_schedule: str = setting("", 'animations: keyframes by frame, a line each: "0: '
                                   'desert\\n30: snow:1 | sea:0.5"; weights blend from key to '
                                   "key (replaces the prompt)", metavar="TEXT", text="lines",
                                   advanced=True, group="animation")
    zoom: str = motion_setting("zoom", "2d")
    angle: str = motion_setting("angle", "2d")
    translation_x: str = motion_setting("translation_x", "2d")
    translation_y: str = motion_setting("translation_y", "2d")
    motion_border: str = border_setting("2d")
    strength_schedule: str = setting("", "2d, video: img2img strength per frame, a schedule; "
                                     "empty = strength", metavar="S", advanced=True,
                                     group="animation", max_chars=MAX_EXPRESSION_CHARS)
    noise_schedule: str = setting("0.02", "2d: noise added to each frame before img2img "
                                  "(standard deviation on the -1..1 scale), a schedule",
                                  metavar="S", advanced=True, group="animation",
                                  max_chars=MAX_EXPRESSION_CHARS)
    color_coherence: str = setting("lab", "2d, video: match each frame's colours to the first "
                                   "frame's (LAB histograms), or none",
                                   choices=("lab", "none"), advanced=True, group="animation")
    init_video: str = setting("", "video: the input video (mp4, webm, mov, ...)",
                              metavar="PATH", text="path", group="animation")
    video_every: int = setting(1, "video: use every Nth frame of the input video", min=1,
                               max=1000, metavar="N", advanced=True, group="animation")
    precision: str = setting("auto", "arithmetic: auto (fp16 on a GPU, fp32 on the CPU), fp32, "
                             "bf16 or fp16", choices=PRECISIONS, advanced=True, group="device")
    device: str = setting("auto", "auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:1, mps",
                          metavar="DEVICE", advanced=True, group="device")
    attention_slicing: str = setting("auto", f"attention in slices {MEMORY_HELP}",
                                     choices=SWITCHES, advanced=True, group="device")
    vae_slicing: str = setting("auto", f"decode a batch one image at a time {MEMORY_HELP}",
                               choices=SWITCHES, advanced=True, group="device")
    vae_tiling: str = setting("auto", f"decode large images in tiles {MEMORY_HELP}",
                              choices=SWITCHES, advanced=True, group="device")
    cpu_offload: str = setting("auto", f"keep each model on the GPU only while it runs "
                               f"{MEMORY_HELP}", choices=SWITCHES, advanced=True,
                               group="device")

    def __post_init__(self) -> None:
        if isinstance(self.sampler, str) and isinstance(self.schedule, str):
            sampler, schedule = split_name(self.sampler, self.schedule)
            object.__setattr__(self, "sampler", sampler)
            object.__setattr__(self, "schedule", schedule)
        upscaler = self.hires_upscaler  # spelt as the web UI (or the catalogue) spells it
        if isinstance(upscaler, str) and len(upscaler) <= MAX_TEXT_CHARS:  # longer: too long
            try:
                object.__setattr__(self, "hires_upscaler", hires_upscaler(upscaler))
            except ValueError as e:
                raise ValueError(f"hires_upscaler: {e}") from None
        super().__post_init__()

    def canvas_size(self) -> tuple[int, int]:
        """(width, height) of the images made: the size, grown by the outpaint borders."""
        from helpers.diffusion.tools.borders import parse_outpaint

        return parse_outpaint(self.outpaint).grown(self.width, self.height)

    def _parse_prompt(self) -> object:
        from helpers.diffusion.prompt_syntax import positive_pieces

        return positive_pieces(self.prompt)

    def validate(self) -> None:
        """Cross-field rules; `ValueError` naming the field and value of the first bad one."""
        super().validate()
        from helpers.diffusion.prompt_syntax import negative_pieces

        if self.negative_prompt.strip():
            try:
                negative_pieces(self.negative_prompt)
            except ValueError as e:
                raise ValueError(f"negative_prompt: {e}") from None
        if self.sdxl_original_size and len(self.sdxl_original_size) != 2:
            fail("sdxl_original_size", self.sdxl_original_size, "must be empty or W H")
        for name in ("model", "device"):
            if not getattr(self, name).strip():
                fail(name, getattr(self, name), "must not be empty")
        if self.animate:
            _check_animation(self)
        if self.mask or self.mask_prompt.strip():
            _check_inpaint(self)
        if self.outpaint.strip():
            _check_outpaint(self)
        if self.control.strip():
            _check_control(self)
        if self.sd_upscale > 1:
            _check_sd_upscale(self)


def _check_animation(settings: DiffusionSettings) -> None:
    """What an animation needs: one frame at a time, its schedules, its input."""
    if settings.batch_size > 1 or settings.batch_count > 1:
        fail("batch_size", settings.batch_size, "an animation makes one frame at a time; use "
             "batch size and batch count 1")
    for name in (*MOTION, "noise_schedule"):
        check_motion(name, getattr(settings, name))
    if settings.strength_schedule.strip():
        check_motion("strength_schedule", settings.strength_schedule)
    if settings.prompt_schedule.strip():
        from helpers.diffusion.prompt_syntax import positive_pieces
        from helpers.prompts import parse_prompt_schedule

        try:
            parse_prompt_schedule(settings.prompt_schedule)
            for line in settings.prompt_schedule.splitlines():
                if line.strip():  # each keyframe's prompt, with the web UI's syntax too
                    positive_pieces(line.split(":", 1)[1])
        except ValueError as e:
            raise ValueError(f"prompt_schedule: {e}") from None
    if settings.animate == "2d" and settings.frames < 1:
        fail("frames", settings.frames, "a 2d animation needs its number of frames")
    if (settings.animate == "video") != bool(settings.init_video.strip()):
        fail("init_video", settings.init_video, "give an input video for --animate video, "
             "and only then")
    if settings.animate == "walk" and settings.init_image:
        fail("init_image", settings.init_image, "a walk starts from noise, not an image")


def _check_inpaint(settings: DiffusionSettings) -> None:
    """What inpainting needs: an init image, one mask, a web-UI sampler, no animation."""
    name = "mask" if settings.mask else "mask_prompt"
    value = getattr(settings, name)
    if settings.mask and settings.mask_prompt.strip():
        fail("mask_prompt", settings.mask_prompt, "give a mask or a mask prompt, not both")
    if not settings.init_image:
        fail(name, value, "inpainting needs the image to repaint: give init_image too")
    if settings.animate:
        fail(name, value, "animations do not inpaint yet; leave the mask out")
    _check_web_ui_sampler(settings, "inpainting")


def _check_outpaint(settings: DiffusionSettings) -> None:
    """What outpainting needs: its borders, an init image, no mask (the border is the mask),
    the inpaint options it uses at their defaults, a web-UI sampler, no animation."""
    from helpers.diffusion.tools.borders import check_outpaint

    check_outpaint(settings.outpaint)  # its errors name the setting
    width, height = settings.canvas_size()
    if max(width, height) > MAX_SIDE:
        fail("outpaint", settings.outpaint, f"the canvas would be {width}x{height}; at most "
             f"{MAX_SIDE} pixels a side")
    if not settings.init_image:
        fail("outpaint", settings.outpaint, "outpainting grows an image: give init_image too")
    if settings.mask or settings.mask_prompt.strip():
        name = "mask" if settings.mask else "mask_prompt"
        fail(name, getattr(settings, name), "outpaint paints the new border, its own mask; "
             "inpaint and outpaint in two runs")
    defaults = {"masked_content": ("original", "outpaint_fill says what the border starts "
                                   "from"),
                "inpaint_area": ("whole picture", "the border is painted with the whole "
                                 "picture"),
                "invert_mask": (False, "the border is what is painted")}
    for name, (default, why) in defaults.items():
        if getattr(settings, name) != default:
            fail(name, getattr(settings, name), f"not with outpaint: {why}")
    if settings.animate:
        fail("outpaint", settings.outpaint, "animations do not outpaint frames; their "
             "motion_border can outpaint what the motion exposes")
    _check_web_ui_sampler(settings, "outpainting")


def _check_control(settings: DiffusionSettings) -> None:
    """The control units' syntax and numbers, what their images and preprocessors need, and a
    web-UI sampler."""
    from helpers.diffusion.tools.control.units import VIDEO, parse_control

    units = parse_control(settings.control)  # its errors name the setting
    if settings.animate and settings.animate != "video":
        fail("control", settings.control, f"a {settings.animate} animation takes no ControlNet "
             "yet; a video animation does (TYPE:video maps each input frame)")
    if any(u.image == VIDEO for u in units) and settings.animate != "video":
        fail("control", settings.control, f"the image {VIDEO} is each frame of the input "
             "video: only with animate video and init_video (write ./video for a file so "
             "named)")
    if any(u.preprocessor == "inpaint" for u in units) and not (
            settings.mask or settings.mask_prompt.strip() or settings.outpaint.strip()):
        fail("control", settings.control, "the inpaint preprocessor marks the run's inpaint "
             "mask in its image: give mask, mask_prompt or outpaint, with init_image")
    if any(u.preprocessor == "depth" for u in units) and not settings.depth_model.strip():
        fail("depth_model", settings.depth_model, "the depth preprocessor needs a depth "
             "estimator (e.g. depth-anything)")
    _check_web_ui_sampler(settings, "ControlNet")


def _check_sd_upscale(settings: DiffusionSettings) -> None:
    """What SD upscale needs: an init image, tiles that overlap by less than a side, an
    upscaler, and none of the modes that make another picture (inpaint, outpaint, animation,
    the hires fix)."""
    if not settings.init_image:
        fail("sd_upscale", settings.sd_upscale, "SD upscale enlarges the init image: give "
             "init_image too")
    others = {"mask": (settings.mask, "inpaint"), "mask_prompt": (settings.mask_prompt.strip(),
              "inpaint"), "outpaint": (settings.outpaint.strip(), "outpaint"),
              "animate": (settings.animate, "animate"),
              "hires_scale": (settings.hires_scale > 1, "use the hires fix")}
    for name, (used, what) in others.items():
        if used:
            fail(name, getattr(settings, name), f"not with sd_upscale: {what} and SD upscale "
                 "in two runs")
    side = min(settings.width, settings.height)
    if settings.sd_upscale_overlap >= side:
        fail("sd_upscale_overlap", settings.sd_upscale_overlap, f"the tiles are the size, "
             f"{settings.width}x{settings.height}: they overlap by less than {side} pixels")
    if not settings.sd_upscale_upscaler.strip():
        fail("sd_upscale_upscaler", settings.sd_upscale_upscaler, "must not be empty (Lanczos, "
             "Nearest, a catalogue upscaler or a file)")


def _check_web_ui_sampler(settings: DiffusionSettings, what: str) -> None:
    """`what` (inpainting, outpainting, ControlNet) needs one of the web UI's samplers."""
    if get_sampler(settings.sampler).kind == "diffusers":
        fail("sampler", settings.sampler, f"{what} runs on the web UI's k-diffusion samplers "
             "for now, not on the diffusers schedulers (DDIM, PLMS, UniPC, LCM); choose "
             "Euler a, Euler, DPM++ 2M or another")
