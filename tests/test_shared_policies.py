"""Policies both engines share: the memory planner, atomic file writes and precision."""

from __future__ import annotations

import errno
import importlib
import os
import stat
import tempfile

import pytest
import torch

from helpers.files import atomic_replace, atomic_write_bytes, atomic_write_text, writable_folder
from helpers.memory import GB, HEADROOM, available_ram, free_memory, plan
from helpers.precision import autocast_dtype, dtype_kwargs, weights_dtype

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")

# --- memory planner -------------------------------------------------------------------------

ORDER = ("slicing", "tiling", "offload")
SAVES = {"slicing": 2 * GB, "tiling": 3 * GB, "offload": 4 * GB}


def estimate(options) -> float:
    """10 GB, less what each option that is on saves."""
    return 10 * GB - sum(SAVES[name] for name, on in options.items() if on)


def auto(**changes) -> dict[str, str]:
    return {**dict.fromkeys(ORDER, "auto"), **changes}


def fits(need: float) -> float:
    """Free memory for which `need` bytes just fit in the budget (HEADROOM of it)."""
    return need / HEADROOM * (1 + 1e-9)


def test_plan_switches_nothing_on_when_the_run_fits():
    assert plan(estimate, auto(), ORDER, fits(10 * GB), "512x512", "cuda") == \
        dict.fromkeys(ORDER, False)


def test_plan_switches_options_on_in_order_until_it_fits():
    first = plan(estimate, auto(), ORDER, fits(8 * GB), "512x512", "cuda")
    assert first == {"slicing": True, "tiling": False, "offload": False}
    two = plan(estimate, auto(), ORDER, fits(5 * GB), "512x512", "cuda")
    assert two == {"slicing": True, "tiling": True, "offload": False}
    every = plan(estimate, auto(), ORDER, fits(1 * GB), "512x512", "cuda")
    assert every == dict.fromkeys(ORDER, True)


def test_plan_keeps_headroom_below_the_free_memory():
    free = 10 * GB  # 10 GB needed, 10 GB free: more than HEADROOM of it, so one option goes on
    assert plan(estimate, auto(), ORDER, free, "512x512", "cuda")["slicing"] is True
    assert plan(estimate, auto(), ORDER, fits(10 * GB), "512x512", "cuda") == \
        dict.fromkeys(ORDER, False)
    assert plan(estimate, auto(), ORDER, fits(10 * GB) * 0.999, "512x512", "cuda")["slicing"]


def test_plan_never_switches_on_an_option_that_is_off():
    chosen = plan(estimate, auto(slicing="off"), ORDER, fits(7 * GB), "512x512", "cuda")
    assert chosen == {"slicing": False, "tiling": True, "offload": False}


def test_plan_keeps_an_option_that_is_on_even_when_not_needed():
    chosen = plan(estimate, auto(offload="on"), ORDER, fits(10 * GB), "512x512", "cuda")
    assert chosen == {"slicing": False, "tiling": False, "offload": True}


def test_plan_counts_options_that_are_on_before_switching_more():
    chosen = plan(estimate, auto(offload="on"), ORDER, fits(6 * GB), "512x512", "cuda")
    assert chosen == {"slicing": False, "tiling": False, "offload": True}


def test_plan_refuses_a_run_that_fits_with_nothing_allowed_naming_what_and_the_sizes():
    with pytest.raises(ValueError) as error:
        plan(estimate, auto(), ORDER, 1 * GB, "2048x2048 at batch 4", "cuda")
    message = str(error.value)
    assert message.startswith("2048x2048 at batch 4 needs about 1.0 GB of GPU memory, "
                              "1.0 GB is free; use a smaller size")
    assert "turn on" not in message  # every option was allowed already


def test_plan_refusal_suggests_the_options_that_are_off():
    switches = auto(slicing="off", offload="off")
    with pytest.raises(ValueError, match=r"^768x768 needs about 7\.0 GB of memory, 4\.0 GB is "
                                         r"free; use a smaller size or turn on slicing, "
                                         r"offload$"):
        plan(estimate, switches, ORDER, 4 * GB, "768x768", "cpu")


def test_plan_with_unknown_free_memory_leaves_the_switches_as_given():
    def never(_options):
        raise AssertionError("nothing to estimate against")

    switches = auto(slicing="on", tiling="off")
    assert plan(never, switches, ORDER, None, "512x512", "mps") == \
        {"slicing": True, "tiling": False, "offload": False}


def test_available_ram_is_a_positive_number_of_bytes():
    ram = available_ram()
    assert isinstance(ram, int)
    assert ram > 0


def test_free_memory_of_the_cpu_is_the_available_ram_and_unknown_elsewhere():
    assert isinstance(free_memory("cpu"), int) and free_memory(CPU) > 0
    assert free_memory("meta") is None


# --- atomic writes --------------------------------------------------------------------------


def test_atomic_write_bytes_writes_the_content_and_leaves_only_the_file(tmp_path):
    path = tmp_path / "frame.png"
    assert atomic_write_bytes(path, b"\x89PNG data") == path
    assert path.read_bytes() == b"\x89PNG data"
    assert list(tmp_path.iterdir()) == [path]


def test_atomic_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("old")
    atomic_write_text(str(path), "new")
    assert path.read_text() == "new"
    assert list(tmp_path.iterdir()) == [path]


def test_atomic_write_creates_missing_parent_folders(tmp_path):
    path = tmp_path / "run" / "frames" / "0001.png"
    atomic_write_bytes(path, b"x")
    assert path.read_bytes() == b"x"


def test_atomic_write_text_is_utf8(tmp_path):
    path = atomic_write_text(tmp_path / "prompt.txt", "café ✓ 夢")
    assert path.read_bytes() == "café ✓ 夢".encode()


@pytest.mark.parametrize("interrupt", [OSError(errno.ENOSPC, "No space left on device"),
                                       KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, interrupt):
    path = tmp_path / "state.pt"
    path.write_bytes(b"old state")

    def fail(_fd):
        raise interrupt

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(interrupt)):
        atomic_write_bytes(path, b"new state")
    assert path.read_bytes() == b"old state"
    assert list(tmp_path.iterdir()) == [path]


def test_a_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "frame.png", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_mode_of_a_plain_open_under_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = atomic_write_bytes(tmp_path / "frame.png", b"x")
    assert stat.S_IMODE(path.stat().st_mode) == mode == 0o666 & ~mask


def test_atomic_replace_moves_a_private_temporary_into_place_readable(tmp_path, umask):
    umask(0o022)
    fd, tmp = tempfile.mkstemp(dir=tmp_path)  # made 0600
    os.write(fd, b"video")
    os.close(fd)
    path = atomic_replace(tmp, tmp_path / "run.mp4")
    assert path.read_bytes() == b"video"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert list(tmp_path.iterdir()) == [path]


# --- writable_folder ------------------------------------------------------------------------


def test_writable_folder_accepts_an_existing_folder(tmp_path):
    assert writable_folder(tmp_path, "out") == tmp_path


def test_writable_folder_accepts_a_folder_to_be_made_and_makes_nothing(tmp_path):
    path = tmp_path / "runs" / "today"
    assert writable_folder(str(path), "out") == path
    assert list(tmp_path.iterdir()) == []


def test_writable_folder_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert writable_folder("~/runs", "out") == tmp_path / "runs"


def test_writable_folder_refuses_a_file_naming_the_field(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"^out: .*notes\.txt is a file, not a folder"):
        writable_folder(path, "out")


def test_writable_folder_refuses_a_path_under_a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"^cache: cannot make the folder .*notes\.txt/runs/a: "
                                         r".*notes\.txt is a file$"):
        writable_folder(path / "runs" / "a", "cache")


def test_writable_folder_refuses_a_folder_where_nothing_can_be_created(tmp_path, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # a read-only disk, even for root
    with pytest.raises(ValueError, match=r"^out: cannot write in .* \(permission denied or a "
                                         r"read-only disk\); give another folder$"):
        writable_folder(tmp_path / "new", "out")


def test_writable_folder_refuses_a_dangling_symlink(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(ValueError, match=r"^out: "):
        writable_folder(link, "out")


# --- precision ------------------------------------------------------------------------------


@pytest.mark.parametrize(("precision", "dtype"), [("auto", None), ("fp32", None),
                                                  ("bf16", torch.bfloat16)])
def test_autocast_dtype_on_the_cpu(precision, dtype):
    assert autocast_dtype(precision, CPU) is dtype


@pytest.mark.parametrize(("precision", "dtype"), [("auto", torch.float32),
                                                  ("fp32", torch.float32),
                                                  ("bf16", torch.bfloat16)])
def test_weights_dtype_on_the_cpu(precision, dtype):
    assert weights_dtype(precision, CPU) is dtype


@pytest.mark.parametrize("policy", [autocast_dtype, weights_dtype])
def test_fp16_on_the_cpu_is_refused(policy):
    with pytest.raises(ValueError, match=r"^precision: 'fp16' needs a GPU \(the device is cpu\)"):
        policy("fp16", CPU)


@pytest.mark.parametrize("policy", [autocast_dtype, weights_dtype])
@pytest.mark.parametrize("precision", ["fp8", "FP16", "half", ""])
def test_unknown_precision_is_refused_with_the_choices(policy, precision):
    with pytest.raises(ValueError, match=r"^precision: must be one of auto, fp32, bf16, fp16 "):
        policy(precision, CPU)


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, None)])
def test_autocast_auto_on_cuda_is_bf16_only_where_the_gpu_has_it(monkeypatch, bf16, dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert autocast_dtype("auto", CUDA) is dtype
    assert autocast_dtype("fp16", CUDA) is torch.float16


@pytest.mark.parametrize("device", [CUDA, MPS])
def test_weights_auto_on_a_gpu_is_fp16(device):
    assert weights_dtype("auto", device) is torch.float16
    assert weights_dtype("fp16", device) is torch.float16


@pytest.mark.parametrize(("library", "folder"), [("diffusers", "unet"),
                                                ("transformers", "text_encoder")])
def test_dtype_kwargs_load_in_that_dtype_without_a_deprecation(library, folder, tiny_models,
                                                                 capfd):
    import warnings

    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    model_class = {"diffusers": UNet2DConditionModel, "transformers": CLIPTextModel}[library]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = model_class.from_pretrained(tiny_models["test-tiny-sd"] / folder,
                                            **dtype_kwargs(library, torch.float16))
    assert next(model.parameters()).dtype == torch.float16
    said = capfd.readouterr().err + " ".join(str(w.message) for w in caught)
    assert "torch_dtype" not in said


@pytest.mark.parametrize(("library", "version", "key"), [
    ("diffusers", "0.39.2", "torch_dtype"),
    ("diffusers", "0.40.0.dev0", "dtype"),
    ("diffusers", "0.40.0", "dtype"),
    ("diffusers", "1.0.0", "dtype"),
    ("transformers", "4.55.4", "torch_dtype"),
    ("transformers", "4.56.0", "dtype"),
    ("transformers", "5.0.0rc1", "dtype"),
])
def test_dtype_kwargs_uses_torch_dtype_before_the_rename(monkeypatch, library, version, key):
    # the module object as imported now: transformers swaps its entry in sys.modules
    monkeypatch.setattr(importlib.import_module(library), "__version__", version)
    assert dtype_kwargs(library, torch.bfloat16) == {key: torch.bfloat16}
