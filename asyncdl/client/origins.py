"""Origins: which URLs are the API's (credentials go only there), with default ports explicit."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ForeignOriginError, ProtocolError

__all__ = ["DEFAULT_PORTS", "Origin", "OriginLock", "origin_of", "origin_text"]

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme://host:port with the default port made explicit, so ``:443`` compares equal."""

    scheme: str
    host: str
    port: int


def origin_of(url: str) -> Origin:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError as exc:
        raise ProtocolError(f"invalid port in {url!r}") from exc
    return Origin(scheme, host, port)


def origin_text(url: str) -> str:
    o = origin_of(url)
    return f"{o.scheme}://{o.host}:{o.port}"


class OriginLock:
    """Where credentials may go: the base URL's origin, however it is spelled; hosts the user
    allowed by name are followed without credentials; anything else is refused."""

    def __init__(self, base_url: str, allowed_hosts: frozenset[str]) -> None:
        self._origin = origin_of(base_url)
        self._allowed = allowed_hosts
        # Spellings of the origin that need no parsing: a URL that starts with one of them has
        # exactly that origin (the authority ends at the first "/"). Anything else is parsed.
        o = self._origin
        host = f"[{o.host}]" if ":" in o.host else o.host  # IPv6
        authority = f"{o.scheme}://{host}"
        self._prefixes: tuple[str, ...] = (f"{authority}:{o.port}/",)
        if DEFAULT_PORTS.get(o.scheme) == o.port:
            self._prefixes += (f"{authority}/",)

    def credentials_for(self, url: str) -> bool:
        """True when ``url`` may receive credentials; False for an allowed foreign host.

        Raises ForeignOriginError for anything else.
        """
        if url.startswith(self._prefixes):
            return True
        origin = origin_of(url)
        if origin == self._origin:
            return True
        if origin.host in self._allowed and origin.scheme in DEFAULT_PORTS:
            return False
        raise ForeignOriginError(url)
