"""helpers.safeload: checkpoints load their tensors, and code pickled in them never runs."""

from __future__ import annotations

import enum
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import safeload
from helpers.safeload import _Stub, safe_torch_load
from helpers.vqgan_clip import vqgan


class Exploit:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Callback:
    """Stands for a pytorch-lightning object that weights_only refuses."""

    def __init__(self):
        self.best_model_score = 0.5


class _AttributeDict(dict):
    """Like lightning's hyper-parameter dict: a dict subclass weights_only refuses."""


class _Stage(enum.Enum):
    FIT = "fit"


@pytest.mark.parametrize("zip_format", [True, False])
def test_lightning_like_objects_are_stubbed_in_both_pickle_formats(tmp_path, zip_format):
    path = tmp_path / "lightning.ckpt"
    weights = {"w": torch.randn(3, 3)}
    payload = {"state_dict": weights, "hyper_parameters": _AttributeDict(lr=1e-4),
               "loops": {_Stage.FIT: Callback()}, "score": np.float64(0.5)}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    loaded = safe_torch_load(path)
    torch.testing.assert_close(loaded["state_dict"]["w"], weights["w"])
    assert loaded["hyper_parameters"].stub_items == {"lr": 1e-4}
    assert all(isinstance(v, _Stub) for v in loaded["loops"].values())


def test_restricted_unpickler_stubs_unknown_globals(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x": torch.ones(2), "evil": Exploit(marker)}, path)
    loaded = safe_torch_load(path)
    assert not marker.exists()
    torch.testing.assert_close(loaded["x"], torch.ones(2))
    assert isinstance(loaded["evil"], _Stub)


def test_unreadable_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"truncated or corrupt checkpoint: .*broken\.ckpt"):
        safe_torch_load(path)


def test_vqgan_still_exports_safe_torch_load():
    assert vqgan.safe_torch_load is safeload.safe_torch_load


def test_importing_safeload_does_not_import_torch():
    code = "import sys, helpers.safeload; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
