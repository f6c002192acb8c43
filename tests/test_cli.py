import subprocess
import sys

import pytest

from helpers.cli import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "helpers", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_help_lists_the_subcommands_without_importing_torch():
    code = (
        "import sys\n"
        "from helpers.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for command in ("models", "download", "info"):
        assert command in out.stdout
    assert "HEAVY []" in out.stdout


def test_module_entry_point_prints_help():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "models" in result.stdout


def test_unknown_model_is_one_line_error_with_suggestion(tmp_path, capsys):
    assert main(["download", "vqgan_imagenet_f16_1638", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:")
    assert "vqgan_imagenet_f16_16384" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["vqgan", "clip"])
def test_models_lists_catalogue_of_a_kind(kind, tmp_path, capsys):
    assert main(["models", "--kind", kind, "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    from helpers.catalog import list_models

    for model in list_models(kind):
        assert model.name in out
    assert str(tmp_path) in out


def test_download_builds_a_test_model_and_models_shows_it_cached(tmp_path, capsys):
    assert main(["download", "test-tiny-vqgan", "--cache", str(tmp_path), "--quiet"]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(tmp_path) in path
    assert main(["models", "--kind", "vqgan", "--cache", str(tmp_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("test-tiny-vqgan"))
    assert " yes " in line


def test_info_prints_infotext_and_settings(tmp_path, capsys):
    from PIL import Image

    from helpers import runs
    from helpers.metadata import infotext
    from helpers.settings import VQGANClipSettings

    settings = VQGANClipSettings(prompt="desert:50 | snow:25", seed=5)
    run_dir = runs.new_run(tmp_path, settings.prompt, settings.to_json())
    text = infotext.format_infotext(settings.prompt, "", {"Steps": 20, "Seed": 5, "Size": "64x64"})
    frame = runs.save_frame(run_dir, 1, Image.new("RGB", (8, 8)), text, settings.to_json())
    assert main(["info", str(frame)]) == 0
    out = capsys.readouterr().out
    assert "desert:50 | snow:25\nSteps: 20, Seed: 5, Size: 64x64" in out
    assert '"kind": "vqgan-clip"' in out
    assert main(["info", str(tmp_path / "missing.png")]) == 2


@pytest.mark.slow
def test_a_run_shows_our_messages_without_the_libraries_chatter_unless_debugging(tiny_models,
                                                                                 tmp_path):
    args = ("diffusion", "--prompt", "a lake", "--model", "test-tiny-sd", "--steps", "2",
            "--size", "64", "64", "--device", "cpu", "--out", str(tmp_path))
    plain, debug = run_cli(*args), run_cli(*args, "--debug")
    assert plain.returncode == debug.returncode == 0, plain.stderr + debug.stderr
    assert "Loading pipeline components" in debug.stderr  # the chatter is there to hide
    assert "Loading pipeline components" not in plain.stderr
    assert "Loading weights" not in plain.stderr and "torchvision" not in plain.stderr
    assert "run folder:" in plain.stderr and "1 image in" in plain.stderr  # ours stays
