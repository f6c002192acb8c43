"""`helpers.reporting.quiet`, as the notebooks use it: the libraries' bars, logs and warnings off
in the block and back as they were after it; the Hub client's download bars kept on request;
nothing imported when asked not to."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from helpers import reporting


def bars() -> dict[str, bool]:
    """Whether each library's progress bars are on now."""
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub
    import transformers.utils.logging as transformers_logging

    return {"transformers": transformers_logging.is_progress_bar_enabled(),
            "diffusers": diffusers_logging.is_progress_bar_enabled(),
            "hub": not hub.are_progress_bars_disabled()}


ALL_ON = {"transformers": True, "diffusers": True, "hub": True}


@pytest.fixture
def libraries_on():
    """Every library's bars on, as in a fresh kernel (and again after the test)."""
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    transformers_logging.enable_progress_bar()  # the Hub's too
    diffusers_logging.enable_progress_bar()
    yield
    transformers_logging.enable_progress_bar()
    diffusers_logging.enable_progress_bar()


def test_quiet_turns_the_libraries_bars_and_logs_off_then_back_on(libraries_on, caplog):
    assert bars() == ALL_ON
    with reporting.quiet():
        assert bars() == {"transformers": False, "diffusers": False, "hub": False}
        logging.getLogger("transformers.models.clip").warning("requires torchvision")
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("a library's warning", UserWarning, stacklevel=1)
    assert caught == [] and "requires torchvision" not in caplog.text
    assert bars() == ALL_ON
    assert logging.getLogger("transformers").level != logging.ERROR


def test_the_notebooks_keep_the_hub_clients_download_bars(libraries_on):
    with reporting.quiet(downloads=True):
        assert bars() == {"transformers": False, "diffusers": False, "hub": True}
    assert bars() == ALL_ON


def test_bars_that_were_off_stay_off_after_the_block(libraries_on):
    import huggingface_hub.utils as hub

    hub.disable_progress_bars()
    with reporting.quiet(downloads=True):
        assert bars()["hub"] is False  # kept means: as it was, never turned on
    assert bars() == {"transformers": True, "diffusers": True, "hub": False}


def test_quiet_without_imports_imports_no_library():
    code = ("import sys\nfrom helpers import reporting\n"
            "with reporting.quiet(imports=False):\n    pass\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
