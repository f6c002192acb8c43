"""Write a pip constraints file for one of CI's environments (run: `python tools/constraints.py
oldest|colab > FILE`, then `PIP_CONSTRAINT=FILE` before the README's test command).

- `oldest`: every runtime dependency at the lower bound requirements.txt gives it, so a bound
  that no longer works fails CI instead of staying written down untrue.
- `colab`: the versions Google Colab ships (`.ci/colab.txt`, with its date and source).

torch is the exception in both. `oldest` gets the CPU build of torch 2.13.0, which pip takes on
CI's machines without downloading a CUDA build of several GB. `colab` gets torch 2.14.1 with
its torchvision 0.29.1, both on CI's disk (a CUDA build, run on the CPU): Colab ships torch with
torchvision, and spandrel (the upscalers) imports torchvision, which has no release on the
index that imports beside the CPU build of 2.13.0.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH = {"oldest": ("torch==2.13.0",), "colab": ("torch==2.14.1", "torchvision==0.29.1")}
BOUND = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^\s,;#]+)")


def lower_bounds(requirements: str) -> list[str]:
    """`name==version` for every `name>=version` line of a requirements file."""
    pins = []
    for line in requirements.splitlines():
        match = BOUND.match(line)
        if match:
            name = re.sub(r"\[.*\]", "", match.group(1))
            pins.append(f"{name}=={match.group(2)}")
    return pins


def colab() -> list[str]:
    """The pins of `.ci/colab.txt`, without its comments."""
    text = (ROOT / ".ci" / "colab.txt").read_text()
    return [line.split("#")[0].strip() for line in text.splitlines()
            if line.split("#")[0].strip()]


def constraints(kind: str) -> str:
    """The constraints file's text for `kind` (`oldest` or `colab`)."""
    if kind == "oldest":
        pins = lower_bounds((ROOT / "requirements.txt").read_text())
    elif kind == "colab":
        pins = colab()
    else:
        raise ValueError(f"kind: {kind!r} is not 'oldest' or 'colab'")
    pins = [p for p in pins if not p.lower().startswith(("torch==", "torchvision=="))]
    return "\n".join([*pins, *TORCH[kind]]) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/constraints.py oldest|colab")
    sys.stdout.write(constraints(sys.argv[1]))
