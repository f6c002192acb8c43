"""The README's offline examples run as written: each is a command a newcomer pastes first."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.prompts import parse_prompts

ROOT = Path(__file__).resolve().parent.parent


def offline_examples() -> list[str]:
    """The README's `python -m helpers ...` lines that use only the tiny test models."""
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line for line in lines
            if line.startswith("python -m helpers ") and "test-tiny-" in line]


def test_the_readme_has_offline_examples_for_both_engines_and_the_sample_image():
    examples = offline_examples()
    assert any(" vqgan-clip " in e for e in examples)
    assert any(" diffusion " in e and "--init-image assets/" in e for e in examples)


@pytest.mark.slow
@pytest.mark.parametrize("example", offline_examples())
def test_each_offline_example_of_the_readme_runs_and_prints_its_run_folder(example, tmp_path,
                                                                           tiny_models):
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    args = shlex.split(example)
    result = subprocess.run([sys.executable, *args[1:], "--quiet"], cwd=tmp_path,
                            capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr
    run = tmp_path / result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"workspace/runs/\d{8}-\d{6}-.+", str(run.relative_to(tmp_path)))
    assert (run / "settings.json").is_file() and sorted(run.rglob("*.png"))


def test_the_sample_assets_are_small_pictures_of_one_size():
    from PIL import Image

    sizes = {}
    for name in ("init.png", "mask.png", "control.png"):
        path = ROOT / "assets" / name
        assert path.stat().st_size < 64_000
        with Image.open(path) as image:
            sizes[name] = image.size
    assert len(set(sizes.values())) == 1
    prompts = [line for line in (ROOT / "assets" / "prompts.txt").read_text().splitlines()
               if line and not line.startswith("#")]
    assert all(parse_prompts(p) for p in prompts)
