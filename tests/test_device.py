"""pick_device: `auto`, named devices, and a clear error for a device this machine lacks."""

from __future__ import annotations

import pytest
import torch

from helpers.device import pick_device


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine with neither CUDA nor MPS, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA GPUs and no MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_without_a_gpu_is_the_cpu_with_one_warning(no_gpu):
    lines = []
    assert pick_device("auto", log=lines.append) == torch.device("cpu")
    assert len(lines) == 1
    assert lines[0].startswith("warning: no GPU found")


def test_auto_prefers_cuda_and_says_nothing(two_gpus):
    lines = []
    assert pick_device("auto", log=lines.append) == torch.device("cuda")
    assert lines == []


def test_auto_uses_mps_when_there_is_no_cuda(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    lines = []
    assert pick_device("auto", log=lines.append) == torch.device("mps")
    assert lines == []


def test_default_is_auto(no_gpu):
    assert pick_device(log=lambda _: None) == torch.device("cpu")


@pytest.mark.parametrize("name", ["cpu", " CPU ", "Cpu"])
def test_cpu_by_name_in_any_case_and_spacing(name, no_gpu):
    lines = []
    assert pick_device(name, log=lines.append) == torch.device("cpu")
    assert lines == []  # a device the user named gets no warning


@pytest.mark.parametrize(("name", "expected"), [("cuda", "cuda"), ("cuda:0", "cuda:0"),
                                                ("CUDA:1", "cuda:1")])
def test_cuda_gpus_that_exist_are_returned(name, expected, two_gpus):
    assert pick_device(name) == torch.device(expected)


def test_mps_by_name_when_present(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("mps") == torch.device("mps")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:5"])
def test_cuda_without_a_gpu_is_refused(name, no_gpu):
    with pytest.raises(ValueError, match=r"^device: .*needs an NVIDIA GPU") as error:
        pick_device(name)
    assert repr(name) in str(error.value)
    assert "'auto' or 'cpu'" in str(error.value)


def test_cuda_index_beyond_the_gpus_says_which_exist(two_gpus):
    with pytest.raises(ValueError, match=r"^device: 'cuda:5' does not exist") as error:
        pick_device("cuda:5")
    assert "2 CUDA GPUs, cuda:0 to cuda:1" in str(error.value)


def test_cuda_index_equal_to_the_count_is_refused(two_gpus):
    with pytest.raises(ValueError, match=r"^device: 'cuda:2' does not exist"):
        pick_device("cuda:2")


def test_mps_when_absent_is_refused(no_gpu):
    with pytest.raises(ValueError, match=r"^device: 'mps' needs Apple's Metal \(MPS\)"):
        pick_device("mps")


def test_mps_index_other_than_zero_is_refused(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"^device: 'mps:1'"):
        pick_device("mps:1")


@pytest.mark.parametrize("name", ["gpu0", "cuda0", "cuda:abc", "cuda:-1", "cpu,cuda", "", "  "])
def test_garbage_is_not_a_device_and_the_choices_are_listed(name, no_gpu):
    with pytest.raises(ValueError, match=r"^device: .* is not a device; use auto") as error:
        pick_device(name)
    assert "cpu, cuda, cuda:1, mps" in str(error.value)


@pytest.mark.parametrize("name", ["meta", "xpu", "hip"])
def test_torch_devices_the_project_does_not_run_on_are_refused(name, no_gpu):
    with pytest.raises(ValueError, match=rf"^device: '{name}' is not supported; use auto"):
        pick_device(name)
