"""Kill safety: after any number of kills and resumes, a run has exactly its frames, each equal
to the uninterrupted run's.

The CLI runs in a child process through a small driver that pauses at a chosen moment (right
after a frame is written and before its resume point, the dangerous one; or before a frame),
so the test can kill it there with SIGKILL, or stop it with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from common import frames_with_steps
from PIL import Image

from helpers import runs
from helpers.cli import main

ARGS = ["vqgan-clip", "--vqgan", "test-tiny-vqgan", "--clip", "test-tiny-clip", "--prompt",
        "desert:50 | snow:25", "--size", "64", "64", "--cutn", "2", "--seed", "11",
        "--iterations", "10", "--save-every", "2", "--device", "cpu", "--quiet"]

DRIVER = '''
import os, sys, time
from helpers import runs

def pausing(name, when):
    original = getattr(runs, name)
    def wrapper(run_dir, *args, **kwargs):
        if when(*args):
            print("PAUSED", flush=True)
            time.sleep(120)
        return original(run_dir, *args, **kwargs)
    setattr(runs, name, wrapper)

after = os.environ.get("PAUSE_AFTER_FRAME")  # frame written, its resume point not yet
if after:
    pausing("save_resume_point", lambda state, frames: frames == int(after))
before = os.environ.get("PAUSE_BEFORE_FRAME")  # the frame not written yet
if before:
    pausing("save_frame", lambda index, *rest, **kw: index == int(before))
from helpers.cli import main
sys.exit(main(sys.argv[1:]))
'''


def start(driver: Path, args: list[str], **pause: int) -> subprocess.Popen:
    env = {**os.environ, **{k.upper(): str(v) for k, v in pause.items()}}
    return subprocess.Popen([sys.executable, str(driver), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def stop_when_paused(process: subprocess.Popen, sig: int) -> tuple[int, str]:
    line = process.stdout.readline()
    assert line.strip() == "PAUSED", (line, process.stderr.read())
    process.send_signal(sig)
    _, err = process.communicate(timeout=300)  # a loaded 2-core machine: minutes
    return process.returncode, err


@pytest.mark.slow
def test_kills_and_resumes_leave_exactly_the_uninterrupted_frames(tiny_models, tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "whole")]) == 0
    (whole,) = (tmp_path / "whole" / "runs").iterdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    # 1. killed right after frame 2 is written, before its resume point
    code, _ = stop_when_paused(start(driver, [*ARGS, "--out", str(tmp_path / "ws")],
                                     pause_after_frame=2), signal.SIGKILL)
    assert code == -signal.SIGKILL
    (run_dir,) = (tmp_path / "ws" / "runs").iterdir()
    assert len(runs.list_frames(run_dir)) == 2 and runs.load_state(run_dir)["frames"] == 1
    resume = [*ARGS[:1], "--resume", str(run_dir), "--quiet"]
    # 2. resumed, killed the same way one frame later
    code, _ = stop_when_paused(start(driver, resume, pause_after_frame=3), signal.SIGKILL)
    assert code == -signal.SIGKILL and runs.load_state(run_dir)["frames"] == 2
    # 3. resumed, stopped with Ctrl-C before frame 4: it says how to continue, status 130
    code, err = stop_when_paused(start(driver, resume, pause_before_frame=4), signal.SIGINT)
    assert code == 130 and f"--resume {run_dir}" in err
    # 4. resumed to the end
    assert subprocess.run([sys.executable, "-m", "helpers", *resume], capture_output=True,
                          check=False).returncode == 0

    assert not (run_dir / runs.SET_ASIDE_FOLDER).exists()  # the cut-off frames were the run's
    expected, got = frames_with_steps(whole), frames_with_steps(run_dir)
    assert [s for s, _ in got] == [s for s, _ in expected] == ["2", "4", "6", "8", "10"]
    for (step, want), (_, have) in zip(expected, got, strict=True):
        assert np.array_equal(want, have), f"frame of iteration {step} differs"


def test_a_stopped_diffusion_run_resumes_with_the_images_it_lacks(tiny_models, tmp_path):
    from helpers.diffusion import generate
    from helpers.settings import DiffusionSettings

    settings = DiffusionSettings(prompt="a red cube", model="test-tiny-sd", width=64, height=64,
                                 steps=2, seed=5, batch_count=3, device="cpu",
                                 out=str(tmp_path / "whole"))
    whole = generate(settings, log=lambda _: None, progress=False)

    def stop_after_two(path, _image):
        if path.name == "000002.png":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(settings.replace(out=str(tmp_path / "ws")), log=lambda _: None,
                 progress=False, on_image=stop_after_two)
    (run_dir,) = (tmp_path / "ws" / "runs").iterdir()
    assert len(runs.list_frames(run_dir)) == 2
    made = []
    generate(resume=run_dir, log=lambda _: None, progress=False,
             on_image=lambda path, _image: made.append(path.name))
    assert made == ["000003.png"]  # only the missing image was made
    for want, have in zip(runs.list_frames(whole), runs.list_frames(run_dir), strict=True):
        assert np.array_equal(np.asarray(Image.open(want)), np.asarray(Image.open(have)))
