"""What a run tells the user: log lines, the progress bar, and quiet mode for the libraries.

Engines take a `log` callable and a `progress` flag; the CLI and the notebooks decide where the
lines go. `quiet()` silences the libraries: transformers', diffusers' and accelerate's log
messages and warnings, their tqdm bars ("Loading weights", "Loading pipeline components"), the
Hub client's bars, and Python warnings. The CLI's `--quiet` uses it and turns our lines off too;
the notebooks use it always (keeping the download bars) and turn ours off with `quiet = True`.
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


def voice(log: Log, quiet: bool) -> dict[str, Any]:
    """An engine's `log` and `progress`: `log` and our bar, or (`quiet`) neither."""
    return {"log": no_log, "progress": False} if quiet else {"log": log, "progress": True}


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0,
                 unit: str = "it") -> Any:
    """A tqdm bar (the notebook widget in Jupyter, text on stderr elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


_LIBRARIES = ("transformers", "diffusers", "huggingface_hub", "accelerate", "torch", "kornia")
_HUB = "huggingface_hub.utils"  # its bars are the downloads' (transformers' switch flips them)
_BAR_MODULES = ("transformers.utils.logging", "diffusers.utils.logging", _HUB)  # the Hub's last


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 frame`, `2 frames`: a count and its noun in the right number (`nouns`: irregular)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


@contextlib.contextmanager
def quiet(enabled: bool = True, downloads: bool = False, imports: bool = True) -> Iterator[None]:
    """Silence the libraries' progress bars, log messages and warnings inside the block;
    `downloads`: the Hub client's download bars stay (a big download needs its bar);
    `imports=False`: only the libraries imported already (the block uses no others: importing
    diffusers to silence it takes seconds)."""
    if not enabled:
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        # first: importing the toggles sets up the libraries' loggers
        stack.enter_context(_library_bars_off(downloads, imports))
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
def _library_bars_off(keep_downloads: bool = False, imports: bool = True) -> Iterator[None]:
    """Turn off the tqdm bars of transformers, diffusers and huggingface_hub (but the Hub
    client's download bars with `keep_downloads`; without `imports`, of those imported
    already), then restore each as it was."""
    states = {name: (toggle, toggle[0]()) for name in _BAR_MODULES
              if (imports or name.partition(".")[0] in sys.modules)
              and (toggle := _bar_toggle(name)) is not None}
    for toggle, _was in states.values():
        _switch(toggle, False)
    if keep_downloads and _HUB in states:
        _switch(*states[_HUB])
    try:
        yield
    finally:
        for toggle, was in states.values():  # the Hub's last: transformers' switch flips it too
            _switch(toggle, was)


def _switch(toggle: tuple[Callable, Callable, Callable], on: bool) -> None:
    (toggle[1] if on else toggle[2])()


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
