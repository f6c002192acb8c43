"""Loading checkpoints (pickles) without ever running code from them."""

from __future__ import annotations

import os
import pickle
import types
from typing import Any


class _Stub:
    """Stands in for any class a checkpoint names outside the allow-list; never runs its code."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        self = super().__new__(cls)
        self.stub_args, self.stub_items = args, {}
        return self

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        self.stub_state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # pickled dict subclasses
        self.stub_items[key] = value

    def append(self, item: Any) -> None:  # pickled list subclasses
        self.stub_items[len(self.stub_items)] = item

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)


_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor-rebuilding globals; everything else becomes a stub."""

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(name, (_Stub,), {"__module__": f"stub.{module}"})


def _restricted_pickle() -> types.ModuleType:
    """A stand-in for the `pickle` module, for torch.load's `pickle_module`."""
    module = types.ModuleType("dreamframe_restricted_pickle")
    module.Unpickler = _RestrictedUnpickler
    module.load = lambda file, **kw: _RestrictedUnpickler(file, **kw).load()
    return module


def safe_torch_load(path: str | os.PathLike) -> Any:
    """torch.load that never runs code: weights_only, else a stubbing restricted unpickler."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # lightning callbacks, numpy scalars, ... or a broken file: try stubs
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_restricted_pickle())
    except Exception as err:
        raise ValueError(f"truncated or corrupt checkpoint: {path} ({err})") from err


def load_state_dict(path: str | os.PathLike, depth: int | None = None) -> dict | None:
    """A checkpoint's tensors, unwrapped from its "state_dict" keys (at most `depth` levels;
    None: all of them); None when it holds no dict."""
    state = safe_torch_load(path)
    level = 0
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and \
            (depth is None or level < depth):
        state, level = state["state_dict"], level + 1
    return state if isinstance(state, dict) else None


__all__ = ["load_state_dict", "safe_torch_load"]
