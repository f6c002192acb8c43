"""Why a download failed, in one line: exceptions of gdown, requests and the Hub client read."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus


@dataclass(frozen=True)
class Failure:
    where: str  # the source, as shown to the user
    reason: str  # one line
    unreachable: bool  # DNS failure, refused or timed-out connection, or offline mode


class DownloadError(RuntimeError):
    """A model or file could not be got from any of its sources; `failures` says why, each."""

    def __init__(self, message: str, failures: tuple[Failure, ...] = ()):
        super().__init__(message)
        self.failures = tuple(failures)

    @property
    def offline(self) -> bool:
        """Whether every source failed for want of a network (or in offline mode)."""
        return bool(self.failures) and all(f.unreachable for f in self.failures)


class BadFile(Exception):
    """A download finished but is not the expected file."""


class OverLimit(Exception):
    """A bounded download (an input image) took too long or grew too large; says which."""


class Unreachable(OSError):
    """The quick look before a download found no way to the server; the message says why."""


_NAMED = (  # exception class name -> reason, for errors whose name says it all
    ("GatedRepoError", "gated repo: accept its terms on huggingface.co and log in with "
     "`hf auth login`"),
    ("RepositoryNotFoundError", "repository not found (or private)"),
    ("RevisionNotFoundError", "revision not found"),
    ("RemoteEntryNotFoundError", "file not found in the repository"),
    ("FileURLRetrievalError", "Google Drive would not serve the file (not shared publicly, or "
     "its download quota is used up)"),
)


def describe(exc: BaseException, where: str) -> Failure:
    """Turn a download exception into a one-line reason."""
    chain = list(_chain(exc))
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    if isinstance(exc, (BadFile, OverLimit)):
        return Failure(where, str(exc), False)
    if isinstance(exc, Unreachable):
        return Failure(where, str(exc), True)
    if "OfflineModeIsEnabled" in names:
        return Failure(where, "offline mode (HF_HUB_OFFLINE is set)", True)
    unreachable = _unreachable(chain, names)
    if unreachable:
        return Failure(where, unreachable, True)
    for name, reason in _NAMED:
        if name in names:
            return Failure(where, reason, False)
    for e in chain:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 400:
            return Failure(where, f"HTTP {status} {_phrase(status)}", False)
    dropped = re.search(r"received (\d+) bytes", str(exc))
    if dropped or names & {"ChunkedEncodingError", "IncompleteRead", "ProtocolError",
                           "RemoteProtocolError"}:
        got = f" after {dropped.group(1)} bytes" if dropped else ""
        return Failure(where, f"connection dropped{got}; the partial download is kept and "
                       "resumes next time", False)
    if names & {"Timeout", "ReadTimeout", "ReadTimeoutError", "TimeoutException"}:
        return Failure(where, "the server stopped responding (timed out)", False)
    text = (str(exc).strip().splitlines() or [""])[0]
    return Failure(where, f"{type(exc).__name__}: {text}"[:300], False)


def _unreachable(chain: list[BaseException], names: set[str]) -> str | None:
    text = " ".join(str(e) for e in chain)
    dns = ("Name or service not known", "Temporary failure in name resolution",
           "nodename nor servname", "getaddrinfo failed", "No address associated")
    if "NameResolutionError" in names or any(isinstance(e, socket.gaierror) for e in chain) \
            or any(s in text for s in dns):
        return "DNS lookup failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text \
            or "actively refused" in text:
        return "connection refused"
    if names & {"ConnectTimeout", "ConnectTimeoutError"}:
        return "connection timed out"
    if "Network is unreachable" in text:
        return "network unreachable"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the errors wrapped in its args/reason."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        inner = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        todo.extend(x for x in inner if isinstance(x, BaseException))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
