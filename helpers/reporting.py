"""What a run tells the user: log lines, the progress bar, and quiet mode for the libraries.

Engines take a `log` callable and a `progress` flag; the CLI and the notebooks decide where the
lines go. `quiet()` silences our lines' libraries too: transformers' and diffusers' progress
bars and warnings, the Hub client's bars, and Python warnings.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

Log = Callable[[str], object]  # where a run's messages go: print, a notebook widget, a list


def stderr_log(message: str) -> None:
    """The CLI's log: one line on stderr."""
    print(message, file=sys.stderr)


def no_log(_message: str) -> None:
    """A log that drops every message."""


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0,
                 unit: str = "it") -> Any:
    """A tqdm bar (the notebook widget in Jupyter, text on stderr elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


_LIBRARIES = ("transformers", "diffusers", "huggingface_hub", "accelerate", "torch", "kornia")


@contextlib.contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """Silence the libraries' progress bars, log messages and warnings inside the block."""
    if not enabled:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(_library_bars_off())  # first: it sets up the libraries' loggers
        for name in _LIBRARIES:
            stack.enter_context(logger_level(name, logging.ERROR))
        yield


@contextlib.contextmanager
def logger_level(name: str, level: int) -> Iterator[None]:
    """A logger's level inside the block (ERROR: only errors get through), then restored."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def library_bars(enabled: bool) -> contextlib.AbstractContextManager:
    """The libraries' own progress bars (loading weights, downloads) on, or off in the block."""
    return contextlib.nullcontext() if enabled else _library_bars_off()


@contextlib.contextmanager
def _library_bars_off() -> Iterator[None]:
    """Turn off the tqdm bars of transformers, diffusers and huggingface_hub, then restore."""
    toggles = []
    for module in ("transformers.utils.logging", "diffusers.utils.logging",
                   "huggingface_hub.utils"):
        toggles.append(_bar_toggle(module))
    states = [(t, t[0]()) for t in toggles if t is not None]
    for (_is_on, _on, off), _was in states:
        off()
    try:
        yield
    finally:
        for (_is_on, on, _off), was in states:
            if was:
                on()


def _bar_toggle(module_name: str) -> tuple[Callable, Callable, Callable] | None:
    """(is_enabled, enable, disable) for a library's progress bars, if it is installed."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    if hasattr(module, "are_progress_bars_disabled"):  # huggingface_hub
        return (lambda: not module.are_progress_bars_disabled(), module.enable_progress_bars,
                module.disable_progress_bars)
    return module.is_progress_bar_enabled, module.enable_progress_bar, module.disable_progress_bar
