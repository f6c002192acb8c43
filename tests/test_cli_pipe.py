"""The CLI's output read through a pipe whose reader stops early (`... | head -1`)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from helpers.cli import EXIT_PIPE, main


def _frame(tmp_path):
    """A frame with infotext and settings, as a run saves it."""
    from PIL import Image

    from helpers import runs
    from helpers.metadata import infotext
    from helpers.settings import VQGANClipSettings

    settings = VQGANClipSettings(prompt="a lighthouse at dusk", seed=5)
    run_dir = runs.new_run(tmp_path, settings.prompt, settings.to_json())
    text = infotext.format_infotext(settings.prompt, "", {"Steps": 20, "Seed": 5})
    return runs.save_frame(run_dir, 1, Image.new("RGB", (8, 8)), text, settings.to_json())


@pytest.mark.skipif(shutil.which("head") is None, reason="needs the head command")
def test_info_piped_into_head_ends_quietly_with_the_sigpipe_status(tmp_path):
    frame = str(_frame(tmp_path))
    # far more output than a pipe holds (64 KiB), so writing goes on after head has quit
    images = [frame] * 500
    info = subprocess.Popen([sys.executable, "-m", "helpers", "info", *images],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=info.stdout, stdout=subprocess.PIPE)
    info.stdout.close()  # head alone holds the pipe's reading end
    first, _ = head.communicate(timeout=120)
    err = info.stderr.read().decode()
    info.stderr.close()
    assert info.wait(timeout=120) == EXIT_PIPE
    assert first.decode() == f"== {frame}\n"
    assert err == ""


def test_output_to_a_closed_stdout_is_not_reported_as_an_error(monkeypatch, capsys):
    class Closed:
        def write(self, _text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["models", "--kind", "vqgan"]) == EXIT_PIPE
    assert capsys.readouterr().err == ""
