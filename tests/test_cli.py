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
