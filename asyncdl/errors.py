"""The exception tree: every failure asyncdl reports is one of these.

Foreign exceptions (aiohttp, OSError, pyarrow) are translated once, where they happen, with
``raise ... from exc``; nothing above that boundary matches on message text. Only ``cli`` turns
these into printed lines and exit codes.

::

    AsyncdlError
    ├── ConfigError                 bad usage: missing credentials, invalid option values
    ├── TransportError              the network failed before a usable answer arrived
    │   ├── ConnectError            nothing listens / DNS / TLS handshake failed
    │   ├── RequestTimeoutError     no answer or no bytes within the timeout
    │   └── StreamInterruptedError  the body stopped before Content-Length was reached
    ├── APIError                    the API answered with an error status (keeps AEP's code)
    │   ├── AuthError               401/403: bad, expired or missing credentials
    │   │   └── SourceAuthError     the source store refused the landing zone's SAS or keys
    │   ├── NotFoundError           404: unknown dataset, batch or file
    │   ├── PreconditionFailedError 412: the object is no longer the version asked for
    │   ├── RateLimitedError        429: too many requests (may carry Retry-After)
    │   └── ServerError             5xx (may carry Retry-After)
    ├── ProtocolError               the answer does not have the shape the API documents
    │   ├── RangeMismatchError      a 206 for another range than the one asked for
    │   └── StaleListingError       the server's size of a file is not the listing's
    ├── UnsafeResponseError         the server tried something the client refuses
    │   ├── ForeignOriginError      an href points to an origin credentials must not go to
    │   └── UnsafeNameError         a file name that would escape the output directory
    ├── VerificationError           downloaded bytes disagree with the listing or the Catalog
    ├── StorageError                the destination refused (full, read-only, permissions)
    │   └── StorageAuthError        an object store refused the destination's credentials
    ├── BusyError                   another run holds what this one needs (a sync's directory)
    ├── NoBatchError                the dataset has no batch matching the request
    ├── LandingZoneError            the Data Landing Zone cannot give what was asked
    │   ├── NoLandingZoneError      the org's sandbox has no landing zone (credentials 404/empty)
    │   ├── NoExportError           no (complete) export of the dataset, or not at that time
    │   └── LandingZoneExpiredError the credentials AEP handed out have expired
    └── ExportJobError              an audience export job did not produce its batches
        ├── ExportJobFailedError    AEP ended the job FAILED/CANCELLED (with AEP's errors)
        └── ExportTimeoutError      still running when the wait's timeout ran out
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "RUN_ENDING",
    "APIError",
    "AsyncdlError",
    "AuthError",
    "BusyError",
    "ConfigError",
    "ConnectError",
    "ExportJobError",
    "ExportJobFailedError",
    "ExportTimeoutError",
    "ForeignOriginError",
    "LandingZoneError",
    "LandingZoneExpiredError",
    "NoBatchError",
    "NoExportError",
    "NoLandingZoneError",
    "NotFoundError",
    "PreconditionFailedError",
    "ProtocolError",
    "RangeMismatchError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "SourceAuthError",
    "StaleListingError",
    "StorageAuthError",
    "StorageError",
    "StreamInterruptedError",
    "TransportError",
    "UnsafeNameError",
    "UnsafeResponseError",
    "VerificationError",
]


class AsyncdlError(Exception):
    """Root of every error asyncdl raises on purpose."""


class ConfigError(AsyncdlError):
    """The user's input cannot work: a missing variable, a value out of range."""


class TransportError(AsyncdlError):
    """The network failed before a complete answer arrived."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ConnectError(TransportError):
    """No connection could be made (refused, DNS, TLS)."""


class RequestTimeoutError(TransportError):
    """The server sent nothing for longer than the timeout allows."""


class StreamInterruptedError(TransportError):
    """The body ended early or the connection dropped mid-stream."""


class APIError(AsyncdlError):
    """The API answered with an error status.

    ``code`` and ``reason`` come from AEP's body (gateway ``error_code``/``message`` or the
    RFC 7807 ``title``/``detail``) when it has one.
    """

    def __init__(
        self,
        *,
        status: int,
        url: str,
        code: str | None = None,
        reason: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.url = url
        self.code = code
        self.reason = reason
        self.retry_after_s = retry_after_s
        detail = f"HTTP {status}"
        if code:
            detail += f" [{code}]"
        if reason:
            detail += f": {reason}"
        super().__init__(detail)


class AuthError(APIError):
    """401/403: the credentials were refused."""


class SourceAuthError(AuthError):
    """The store a source's files are read from (the Data Landing Zone's container or bucket)
    refused the credentials AEP handed out for it: expired, revoked, or rotated by a refresh.
    Every other file would be refused the same way."""


class NotFoundError(APIError):
    """404: the dataset, batch or file does not exist."""


class PreconditionFailedError(APIError):
    """412: the object is no longer the version the request named (``If-Match``): it was
    rewritten since it was listed."""


class RateLimitedError(APIError):
    """429: the API asks the client to slow down."""


class ServerError(APIError):
    """5xx: the server failed; usually worth another try."""


class ProtocolError(AsyncdlError):
    """An answer whose shape contradicts the API documentation."""


class RangeMismatchError(ProtocolError):
    """A partial answer that does not start where the client asked."""


class StaleListingError(ProtocolError):
    """The server's total for a file differs from the listing's ``length``: the listing is stale,
    and asking again would only repeat the answer."""


class UnsafeResponseError(AsyncdlError):
    """The server asked for something the client refuses to do."""


class ForeignOriginError(UnsafeResponseError):
    """An href points outside the base URL's origin and the user did not allow that host."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"refusing to follow {url}: it is outside the API origin "
            "(allow its host with --allow-host; credentials are never sent there)"
        )
        self.url = url


class UnsafeNameError(UnsafeResponseError):
    """A file name from the server that could write outside the output directory."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"refusing file name {name!r}: {why}")
        self.name = name


class VerificationError(AsyncdlError):
    """Downloaded bytes disagree with what the listing or the Catalog promised."""


class StorageError(AsyncdlError):
    """The destination refused: a disk full, read-only or not permitted; an object store's
    bucket missing or unreachable."""


class StorageAuthError(StorageError):
    """An object store refused the destination's credentials (or their permissions): every
    other write would be refused the same way."""


class BusyError(AsyncdlError):
    """Another run holds the lock this one needs (one sync per directory): try again later."""


class NoBatchError(AsyncdlError):
    """The dataset has no batch that matches the request."""


class LandingZoneError(AsyncdlError):
    """The Data Landing Zone cannot give what was asked."""


class NoLandingZoneError(LandingZoneError):
    """The org's sandbox has no Data Landing Zone destination (its credentials call answered
    404, or nothing usable)."""


class NoExportError(LandingZoneError):
    """The landing zone holds no export of the dataset (none at the asked time, or none that
    passes its completeness check)."""


class LandingZoneExpiredError(LandingZoneError):
    """The credentials AEP handed out for the landing zone have expired (their
    ``expiryTime``, or the SAS's ``se``): asking the store would only be refused."""


class ExportJobError(AsyncdlError):
    """An audience export job did not produce its batches."""


class ExportJobFailedError(ExportJobError):
    """AEP ended the job FAILED (or CANCELLED); ``errors`` holds AEP's (code, message) pairs."""

    def __init__(
        self, *, job_id: int, status: str, errors: Sequence[tuple[str | None, str]]
    ) -> None:
        detail = "; ".join(f"[{c}] {m}" if c else m for c, m in errors) or "AEP gave no reason"
        super().__init__(f"export job {job_id} {status}: {detail}")
        self.job_id = job_id
        self.status = status
        self.errors = tuple(errors)


class ExportTimeoutError(ExportJobError):
    """The job was still running when the wait's timeout ran out."""

    def __init__(
        self,
        *,
        job_id: int,
        timeout_s: float,
        last_status: str | None,
        cancelled: bool,
        cancel_error: AsyncdlError | None = None,
    ) -> None:
        message = (
            f"export job {job_id} did not finish within {timeout_s:g} s "
            f"(last status {last_status or 'unknown'})"
        )
        if cancelled:
            message += "; AEP was asked to cancel it"
        elif cancel_error is not None:
            message += f"; cancelling it failed: {cancel_error}"
        else:
            message += "; it was left running"
        super().__init__(message)
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.last_status = last_status
        self.cancelled = cancelled
        self.cancel_error = cancel_error


#: What ends a whole run rather than one part or one listing entry: every other part would fail
#: the same way (refused credentials, an unusable configuration, a disk that refuses writes).
RUN_ENDING: tuple[type[AsyncdlError], ...] = (
    AuthError,
    ConfigError,
    StorageError,
    LandingZoneExpiredError,
)
