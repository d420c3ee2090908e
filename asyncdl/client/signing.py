"""Credentials of a storage origin (a container's SAS, an S3 bucket's presigned URLs), added to a
request only as it is sent.

A source whose files live in an object store (the Data Landing Zone) gives the client a
``RequestSigner`` for its container. Hrefs never hold the secret: the client asks the signer
for the URL to send each time it sends a request to a URL the signer covers, and for nothing
else. Such requests never carry AEP's headers, AEP's requests never carry the signature, and
every error and log line names the unsigned URL (``strip_query`` takes any query out of a
foreign library's message as well).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ConfigError
from .origins import origin_of

__all__ = ["RequestSigner", "SignedRequest", "Signers", "strip_query"]

_QUERY = re.compile(r"\?[^\s\"'<>]*")


def strip_query(text: str) -> str:
    """``text`` with every URL query taken out: a SAS or a signature travels in one."""
    return _QUERY.sub("", text)


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedRequest:
    """What to send instead of the unsigned request: the URL (holding the secret) and headers."""

    url: str = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)


class RequestSigner(Protocol):
    """One storage origin's credentials; the client applies them request by request."""

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the store (it must never be the API's)."""

    def covers(self, url: str) -> bool:
        """Whether ``url`` (unsigned) is one of this store's objects."""

    def sign(self, method: str, url: str) -> SignedRequest:
        """The request to send for ``method url``. May raise an ``AsyncdlError`` (credentials
        that expired before the request could be made)."""

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never be shown (scrubbed from what servers echo)."""


class Signers:
    """The stores a run signs requests for; never one at the API's own origin."""

    def __init__(self, api_url: str) -> None:
        self._api_url = api_url
        self._signers: list[RequestSigner] = []

    def add(self, signer: RequestSigner) -> None:
        # AEP must never receive a store's signature, nor the store AEP's token.
        if origin_of(signer.origin) == origin_of(self._api_url):
            raise ConfigError(
                f"the store at {signer.origin} has the API's origin: refusing to mix their "
                "credentials"
            )
        self._signers.append(signer)

    def for_url(self, url: str) -> RequestSigner | None:
        return next((signer for signer in self._signers if signer.covers(url)), None)

    def secrets(self) -> tuple[str, ...]:
        return tuple(secret for signer in self._signers for secret in signer.secrets())
