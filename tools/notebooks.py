"""Write the five notebooks from this one description (run: `python tools/notebooks.py`).

Every notebook gets the same connect cell (the repository URL and the version from
`helpers/project.py`), a `parameters` cell for papermill, and one call per action into
`helpers.notebook`: no cell holds logic. `--check` exits with status 1 when a committed notebook
differs from what this script writes (a test runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers.project import NOTEBOOKS, install_spec, version  # noqa: E402

COMMON = '''workspace = ""        # empty: a folder on Google Drive (Colab), or ./workspace here
test_models = False   # True: tiny test models that make noise in seconds, to try things out
engine = ""           # "vqgan-clip" or "diffusion"; empty: the engine chosen in notebook 2'''

CONNECT = '''# Connect: Dreamframe from this checkout, or the version this notebook is for.
DREAMFRAME_VERSION = "{version}"
import importlib.util, pathlib, subprocess, sys
if (pathlib.Path.cwd().parent / "helpers" / "notebook.py").is_file():
    sys.path.insert(0, str(pathlib.Path.cwd().parent))
if importlib.util.find_spec("helpers.notebook") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{spec}"], check=True)
from helpers import notebook
notebook.check_version(DREAMFRAME_VERSION);'''

INTROS = {
    "1_setup": """# 1 · Setup

Welcome to **Dreamframe**. This first notebook gets your machine ready: it connects your
**Google Drive** (on Colab), where your models, pictures and videos are kept between sessions,
and checks the **graphics card** (GPU) that makes pictures in seconds instead of minutes.

Press **Run all**. On Colab, allow access to your Drive when asked. Nothing here changes your
pictures; run it again whenever you start a new session.""",
    "2_model_choice": """# 2 · Choose the models

Pick the **engine** that paints your pictures and the **models** it uses:

- **VQGAN+CLIP** shapes an image step by step until CLIP, a model that reads pictures and words,
  agrees it matches your prompt: dreamy, painterly, surprising.
- **Diffusion** (Stable Diffusion) draws an image out of noise: detailed, realistic or stylised.

Each model shows its download size, its licence, and whether you have it already. Downloads land
in your workspace (on Drive), so you fetch each model only once. For diffusion, the
`-inpainting` models repaint masked parts best, and the **ControlNets** you pick here steer
pictures by edges, lines or depth in notebook 3. The **image tools** are optional: upscalers
make pictures and videos bigger and sharper, face restorers (GFPGAN, CodeFormer) fix faces,
and a caption model describes a picture for you ("Describe an image" in notebook 3).""",
    "3_parameters": """# 3 · Describe your picture

Write your **prompt** and set the parameters. Weighted prompts mix ideas:
`desert:50 | snow:25` means twice as much desert as snow; a negative weight pushes an idea away.
The preview under the prompt shows how it is read, and says so in red if something is off.

For diffusion, the **Image** section's mode says what to make: **txt2img** (from the prompt),
**img2img** (from a picture of yours), **inpaint** (repaint the masked part of a picture) or
**outpaint** (grow a picture past its edges); previews show the mask and the grown canvas.

Basic options are shown; more are folded under **Advanced**. You can also fill the form from a
picture made before (ours, or one from the Stable Diffusion web UI). **Save** when you are
happy.""",
    "4_run": """# 4 · Make it

This notebook makes the picture (or the animation) you described in notebook 3. A progress bar
shows how far it is, and the preview updates as it goes. Every frame is saved in your workspace.

If it stops (you press stop, or Colab disconnects), nothing is lost: set `resume = "latest"`
below and run this notebook again to continue where it stopped. To make a finished run longer,
set `resume = "latest"` and `more` (the iterations, images or frames to add).""",
    "5_video": """# 5 · Make a video

Turn the frames of a run into a video: choose the speed (frames per second), the format,
smoothing between frames, ping-pong (forwards then backwards), and a soundtrack if you like.
The newest run is picked for you. The video plays here and is saved beside the frames.

To make the video bigger and sharper, set `upscale` (2 or 4) below: every frame is upscaled
first (Real-ESRGAN by default) into a folder beside the run's frames, never over them, and a
stopped upscale continues where it stopped.""",
}

# the `quiet` line of the notebooks that load, fetch or encode
QUIET = '''\
quiet = False         # True: no progress bar or messages, only errors (the libraries' own
                      # warnings and loading bars are always hidden)'''

PARAMETERS = {
    "1_setup": "",
    "2_model_choice": '''\
vqgan = ""            # VQGAN+CLIP: catalogue name, or path / URL / Drive id
clip = ""             # VQGAN+CLIP: CLIP models, "name:1 | name:0.5"
model = ""            # diffusion: a catalogue name, Hub id, folder or .safetensors file
vae = ""              # diffusion: another VAE (empty: the model's own)
controlnets = ""      # diffusion: ControlNets to download for notebook 3, "name, name"
tools = ""            # upscalers, face restorers, caption models to download, "name, name"
''' + QUIET,
    "3_parameters": '''\
upload = False        # True on Colab: Colab's upload button, for images of 1 MB or more
prompt = ""           # empty: the prompt the workspace holds
seed = None           # None: the workspace's; -1: a new random seed each run
width = None          # None: the workspace's
height = None
mode = ""             # diffusion: "txt2img", "img2img", "inpaint" or "outpaint"; empty: what
                      # the fields below (or the workspace) make
init_image = ""       # img2img, inpaint, outpaint: the picture to start from (path or URL)
mask = ""             # inpaint: the mask image (white = repaint, black = keep), or
mask_prompt = ""      # inpaint: the words of what to repaint ("the sky")
outpaint = ""         # outpaint: pixels to add on every side ("64"), or "left=128,right=128"
control = ""          # diffusion: ControlNet units, a line each, "canny:IMAGE[:WEIGHT]"''',
    "4_run": '''\
resume = ""           # "latest": continue the newest run; or a run folder
more = 0              # with resume: make the run longer by this many iterations (VQGAN+CLIP),
                      # images (diffusion) or frames (animations)
''' + QUIET,
    "5_video": '''\
run = ""              # empty: the newest run; or a run folder
fps = None            # None: the form's default (12)
format = ""           # "mp4", "webm" or "gif"; empty: mp4
smooth = ""           # "blend" or "motion" up to target_fps; empty: none
target_fps = None
pingpong = None       # True: forwards, then backwards
audio = ""            # a soundtrack file
upscale = 0           # 2 or 4: upscale every frame first (0: the frames as they are)
upscaler = ""         # with upscale: "R-ESRGAN 4x+" (empty), "R-ESRGAN 4x+ Anime6B",
                      # "Lanczos", or a .pth / .safetensors file
''' + QUIET,
}

ACTIONS = {
    "1_setup": ["notebook.setup(ws);"],
    "2_model_choice": [
        "choice = notebook.model_form(ws, engine, test_models, vqgan=vqgan, clip=clip, "
        "model=model, vae=vae, controlnets=controlnets, tools=tools)",
        "## Download\nThe next cell checks your choice, downloads what is missing (with a "
        "progress bar) and saves it for the other notebooks.",
        "notebook.save_models(ws, choice, quiet=quiet);",
    ],
    "3_parameters": [
        "notebook.upload(ws, upload);",
        "form = notebook.parameters_form(ws, engine, test_models, prompt=prompt, seed=seed, "
        "width=width, height=height, mode=mode, init_image=init_image, mask=mask, "
        "mask_prompt=mask_prompt, outpaint=outpaint, control=control)",
        "## Save\nRun the next cell (or press **Save** in the form) to keep these settings for "
        "notebook 4.",
        "notebook.save_parameters(ws, form);",
    ],
    "4_run": ["run_dir = notebook.run(ws, engine, test_models, resume, more=more, quiet=quiet)"],
    "5_video": [
        "form = notebook.video_form(ws, run, fps=fps, format=format, smooth=smooth, "
        "target_fps=target_fps, pingpong=pingpong, audio=audio)",
        "video = notebook.make_video(ws, form, quiet=quiet, upscale=upscale, "
        "upscaler=upscaler, test_models=test_models)",
    ],
}


def build(name: str) -> nbformat.NotebookNode:
    """One notebook, cells in order: intro, connect, parameters, workspace, actions."""
    cells = [nbformat.v4.new_markdown_cell(INTROS[name]),
             nbformat.v4.new_code_cell(CONNECT.format(version=version(),
                                                      spec=install_spec(version())))]
    parameters = "\n".join(filter(None, [COMMON, PARAMETERS[name]]))
    cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    cells.append(nbformat.v4.new_code_cell("ws = notebook.connect(workspace)"))
    for text in ACTIONS[name]:
        cell = nbformat.v4.new_markdown_cell if text.startswith("#") else \
            nbformat.v4.new_code_cell
        cells.append(cell(text))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"},
    })
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name.split('_')[0]}-{index}"  # stable ids: no churn in git
    return notebook


def main(argv: list[str] | None = None) -> int:
    """Write the notebooks, or with --check say which differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        path = ROOT / "notebooks" / f"{name}.ipynb"
        text = nbformat.writes(build(name)) + "\n"
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/notebooks.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
