"""Restore faces wired into diffusion runs and the upscale command: every image goes through
the restorer after it is made (and after the upscale), the infotext says so as the web UI
writes it and reads back. A stand-in restorer (it negates the face) and a fixed face box keep
these tests free of spandrel, OpenCV and the 350 MB GFPGAN; tests/test_faces.py tests the
restorer itself against spandrel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from common import TINY_SD_CLI
from PIL import Image

from helpers.cli import main
from helpers.diffusion.tools import faces
from helpers.diffusion.tools.faces import FaceRestorer, restore_faces
from helpers.runs import list_frames

BOX = (8, 8, 24, 24)  # x, y, w, h: where the stand-in detector "finds" a face


@pytest.fixture
def stand_in(monkeypatch) -> list[str]:
    """Loading any face model gives a restorer that negates the face; the detector finds
    BOX. Returns the names loaded."""
    loaded: list[str] = []

    def load(name, device="cpu", cache=None, log=None, progress=False):
        loaded.append(name)
        return FaceRestorer("GFPGAN" if name.lower() == "gfpgan" else name, "test",
                            lambda batch: -batch)

    monkeypatch.setattr(faces, "load_face_restorer", load)
    monkeypatch.setattr(faces, "detect_faces", lambda image, min_size=32: [BOX])
    return loaded


def _made(capsys) -> Path:
    return Path(capsys.readouterr().out.split()[-1])


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_a_run_restores_the_faces_of_every_image_and_says_so(tmp_path, capsys, stand_in,
                                                               session_cache):
    from helpers.diffusion.image_info import settings_from_image

    base = [*TINY_SD_CLI, "--out", str(tmp_path), "--seed", "5", "--quiet", "--cache",
            str(session_cache)]
    assert main(base) == 0
    (plain,) = list_frames(_made(capsys))
    assert main([*base, "--restore-faces", "gfpgan", "--face-visibility", "0.5"]) == 0
    (restored,) = list_frames(_made(capsys))
    assert stand_in == ["gfpgan"]
    with Image.open(plain) as image:
        expected = restore_faces(FaceRestorer("x", "test", lambda b: -b), image, 0.5)
    assert np.array_equal(_pixels(restored), np.asarray(expected))
    assert not np.array_equal(_pixels(restored), _pixels(plain))
    with Image.open(restored) as image:
        assert "Face restoration: GFPGAN, Face visibility: 0.5" in image.info["parameters"]
    s = settings_from_image(restored, log=print)
    assert (s.restore_faces, s.face_visibility) == ("GFPGAN", 0.5)


def test_the_upscale_command_restores_faces_after_the_upscale(tmp_path, capsys, stand_in):
    from helpers.diffusion.tools.upscale import read_postprocess

    picture = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(picture)
    assert main(["upscale", str(picture), "--upscaler", "Lanczos", "--scale", "2",
                 "--restore-faces", "codeformer", "--codeformer-weight", "0.3"]) == 0
    made = _made(capsys)
    with Image.open(picture) as image:
        upscaled = image.resize((48, 40), Image.Resampling.LANCZOS)
    expected = restore_faces(FaceRestorer("x", "test", lambda b: -b), upscaled)
    assert np.array_equal(_pixels(made), np.asarray(expected))
    assert read_postprocess(made) == {"Postprocess upscale by": "2",
                                      "Postprocess upscaler": "Lanczos",
                                      "GFPGAN visibility": "1"}


@pytest.mark.parametrize(("flag", "value"), [("--face-visibility", "1.5"),
                                             ("--codeformer-weight", "-0.1")])
def test_bad_face_weights_are_one_error_naming_them_and_write_nothing(tmp_path, capsys,
                                                                      stand_in, flag, value):
    picture = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(picture)
    assert main(["upscale", str(picture), "--upscaler", "Lanczos", "--restore-faces",
                 "gfpgan", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag[2:].replace('-', '_')}: ")
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"] and stand_in == []


def test_a_run_with_a_face_model_that_cannot_load_writes_nothing(tmp_path, capsys,
                                                                  session_cache):
    assert main([*TINY_SD_CLI, "--out", str(tmp_path / "runs"), "--quiet", "--cache",
                 str(session_cache), "--restore-faces", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: restore_faces: "), err
    assert not (tmp_path / "runs").exists()


def test_the_memory_plan_counts_the_face_restorer_beside_the_model():
    from helpers.diffusion.checks import estimate_bytes, plan_memory
    from helpers.diffusion.families import FAMILIES
    from helpers.settings import DiffusionSettings

    sd = FAMILIES["sd"]
    plain, faces = (estimate_bytes(sd, 512, 512, 1, 2, {}, faces=f) for f in (False, True))
    assert 0.4e9 <= faces - plain <= 1.5e9
    off = {"attention_slicing": "off", "vae_slicing": "off", "vae_tiling": "off",
           "cpu_offload": "off"}
    run = DiffusionSettings(prompt="a", model="sd-1.5", width=512, height=512, **off)
    free = plain / 0.9 + 1e6  # just enough for the run alone
    assert plan_memory(run, sd, "cuda", free) == {k: False for k in off}
    with pytest.raises(ValueError, match="width/height: 512x512"):
        plan_memory(run.replace(restore_faces="GFPGAN"), sd, "cuda", free)
