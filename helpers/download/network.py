"""A quick look at the server before a download, so that an offline machine fails at once.

Without it, the libraries find out slowly and loudly: gdown retries a refused connection,
and the Hub client retries the metadata request of a file it does not have five times with
back-off (about 25 s, a log line each time), with no timeout at all on some requests. One TCP
connection to the source's host (or to the proxy the environment names for it) with a short
timeout tells a missing network in a moment: no DNS answer, a refused or a timed-out
connection is an `Unreachable` error, and no library runs. A host that answers is asked again
by the library itself, so a download costs one extra connection.
"""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit

from helpers.download.errors import Unreachable

CONNECT_TIMEOUT = 4.0  # seconds: lets the kernel send the SYN a third time (at 1 s and 3 s)
_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080, "socks4": 1080}


class Probes:
    """`check` URLs, each host once: mirrors on one host cost one look, not one each."""

    def __init__(self, timeout: float = CONNECT_TIMEOUT):
        self.timeout = timeout
        self._seen: dict[tuple[str, int, bool], str | None] = {}  # address -> why unreachable

    def check(self, url: str) -> None:
        """Return if the URL's server (or its proxy) takes a TCP connection; else `Unreachable`."""
        address = connect_address(url)
        if address not in self._seen:
            self._seen[address] = _connect(address, self.timeout)
        reason = self._seen[address]
        if reason is not None:
            raise Unreachable(reason)


def connect_address(url: str) -> tuple[str, int, bool]:
    """(host, port, is a proxy) that a request for `url` first connects to."""
    from urllib.request import getproxies, proxy_bypass  # as requests and httpx read them

    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    proxies = getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy and not proxy_bypass(host):
        proxied = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        port = proxied.port or _PORTS.get(proxied.scheme.lower(), 80)
        return proxied.hostname or "", port, True
    return host, parts.port or _PORTS.get(scheme, 443), False


def _connect(address: tuple[str, int, bool], timeout: float) -> str | None:
    """None if a TCP connection to `address` opens within `timeout`, else why not."""
    host, port, proxy = address
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return _reason(e) + (f" (the proxy {host}:{port})" if proxy else "")
    return None


def _reason(error: OSError) -> str:
    """A failed connection in a few words (the words `errors.describe` uses)."""
    if isinstance(error, socket.gaierror):
        return "DNS lookup failed"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "connection timed out"
    if error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable"
    return f"cannot connect ({error.strerror or error})"
