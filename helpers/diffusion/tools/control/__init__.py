"""ControlNet as the web UI's ControlNet extension (Mikubill/sd-webui-controlnet) runs it.

Zhang et al. 2023, "Adding Conditional Control to Text-to-Image Diffusion Models"
(arXiv:2302.05543). Four parts:

- `unet`: `ControlledUNet`, a UNet with the UNet's call signature that runs one or more
  ControlNets (`ControlUnit`s) on the same inputs and adds their residuals, with the
  extension's weight, guidance start / end (a fraction of the sampler's steps) and control
  modes ("My prompt is more important": residual i scaled by 0.825 ** (12 - i); "ControlNet is
  more important": that, and the control on the conditional rows only);
- `images`: the control map fitted to the generation size by the extension's resize modes, and
  its pixel-perfect preprocessing resolution;
- `annotators`: preprocessors without heavy dependencies (kornia, transformers);
- `loading`: ControlNets from the catalogue, the Hub, a folder or a single file, refused when
  their family is not the model's.

A run reaches them through `units` (the `control` setting's syntax and default ControlNets, no
torch), `depth` (the `depth_model` setting: the depth preprocessor's estimator) and `run` (the
check stage's units, their loading, the sampler's `RunControl`, a video animation's
`FrameControl` that maps each input frame, the saved maps and the infotext keys).

The names here (modes, preprocessors, union control types) are plain data, so settings can
validate against them without importing torch; the classes and functions load lazily.
"""

from __future__ import annotations

from helpers.lazy import lazy_exports

BALANCED, PROMPT, CONTROL = ("Balanced", "My prompt is more important",
                             "ControlNet is more important")
CONTROL_MODES = (BALANCED, PROMPT, CONTROL)  # the extension's ControlMode values
JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL = ("Just Resize", "Crop and Resize",
                                                 "Resize and Fill")
RESIZE_MODES = (JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL)  # the extension's ResizeMode
DEFAULT_RESOLUTION = 512  # the extension's preprocessor resolution when not pixel perfect
# The extension's preprocessor names we provide (`annotators.PREPROCESSORS` has their functions)
PREPROCESSOR_NAMES = ("none", "invert", "canny", "threshold", "scribble_xdog",
                      "lineart_standard", "tile_resample", "depth", "inpaint")
# A union ControlNet's control types (xinsir's ControlNet++ order, as the extension numbers them)
UNION_TYPES = {"openpose": 0, "depth": 1, "softedge": 2, "scribble": 2, "canny": 3,
               "lineart": 3, "mlsd": 3, "normalmap": 4, "segmentation": 5, "tile": 6,
               "inpaint": 7}

_EXPORTS = {
    "ControlUnit": "unet",
    "ControlledUNet": "unet",
    "hires_unit": "unet",
    "conditional_rows": "unet",
    "soft_weights": "unet",
    "fit": "images",
    "pixel_perfect_resolution": "images",
    "to_control": "images",
    "from_pil": "images",
    "to_pil": "images",
    "preprocess": "annotators",
    "inpaint_hint": "annotators",
    "load_depth_estimator": "annotators",
    "control_map": "annotators",
    "load_controlnet": "loading",
    "controlnet_config": "loading",
    "check_family": "loading",
}

__all__ = sorted([*_EXPORTS, "CONTROL_MODES", "RESIZE_MODES", "PREPROCESSOR_NAMES",
                  "UNION_TYPES", "DEFAULT_RESOLUTION"])

__getattr__ = lazy_exports(__name__, _EXPORTS)
