"""An error answer read into the ``asyncdl.errors`` tree: AEP's code and reason in every spelling
its services use (and an object store's: Azure's ``x-ms-error-code``, the XML ``<Code>``),
``Retry-After`` as seconds or a date, the class by status."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from ..errors import (
    APIError,
    AuthError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitedError,
    ServerError,
    SourceAuthError,
)
from ..retry import parse_retry_after
from .transport import aiohttp

__all__ = ["error_from"]

_MAX_ERROR_BODY = 64 * 1024
# Keys AEP's services use for an error's code and its text, in the order they are tried: the
# gateway's, Catalog/Data Access's RFC 7807, IMS's OAuth, and the camel-case some services use.
_ERROR_CODE_KEYS = ("error_code", "errorCode", "code", "error", "type")
_ERROR_TEXT_KEYS = ("message", "errorMessage", "detail", "error_description", "title")
# An object store's XML error (Azure, S3): only its code and the first line of its message are
# read; other elements (S3's StringToSign, SignatureProvided) are never shown.
_XML_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<\n]{1,300})")


def _code_and_reason(raw: bytes) -> tuple[str | None, str | None]:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = next((body[k] for k in _ERROR_CODE_KEYS if body.get(k) is not None), None)
        code = str(raw_code) if raw_code is not None else None
        for key in _ERROR_TEXT_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value:
                return code, value
        return code, None
    if raw and not raw.lstrip().startswith(b"<"):  # a short text answer; never an HTML page
        return None, raw[:200].decode("utf-8", "replace").strip() or None
    code_match, message_match = _XML_CODE.search(raw), _XML_MESSAGE.search(raw)
    if code_match is not None:
        message = message_match.group(1).decode("utf-8", "replace").strip() if message_match else ""
        return code_match.group(1).decode("utf-8", "replace"), message or None
    return None, None


async def error_from(
    response: aiohttp.ClientResponse,
    url: str,
    *,
    credentialed: bool,
    scrub: Callable[[str | None], str | None],
    signed: bool = False,
) -> APIError:
    """Read AEP's error body (gateway, RFC 7807 or IMS shape) into the matching APIError.

    A 401/403 from a host we sent no credentials to is that host's refusal, not a problem with
    the user's credentials: it stays a plain APIError (a part failure, not fatal). One from a
    store whose signature was sent (``signed``) is that signature's refusal: SourceAuthError,
    which ends the run. ``scrub`` takes secrets out of what the server echoed.
    """
    try:
        raw = await response.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        raw = b""
    finally:
        response.release()
    code, reason = _code_and_reason(raw)
    code = response.headers.get("x-ms-error-code") or code
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now_epoch_s=time.time())
    status = response.status
    cls: type[APIError] = APIError
    if status in (401, 403) and signed:
        cls = SourceAuthError
    elif status in (401, 403) and credentialed:
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 412:
        cls = PreconditionFailedError
    elif status == 429:
        cls = RateLimitedError
    elif status >= 500:
        cls = ServerError
    return cls(
        status=status, url=url, code=scrub(code), reason=scrub(reason), retry_after_s=retry_after
    )
