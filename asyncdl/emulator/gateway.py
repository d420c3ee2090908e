"""AEP's API gateway as the emulator plays it: the header checks every request passes before a
service sees it, in the gateway's order and with its error codes, and the bodies of refusals
(the rate limit's 429050, injected 429s and 5xx) with their Retry-After.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from asyncdl.emulator.answers import json_answer
from asyncdl.emulator.config import EmulatorConfig
from asyncdl.emulator.faults import Refusal, retry_after_header
from asyncdl.emulator.views import gateway_error, problem

__all__ = ["SANDBOX_ERROR_CODE", "check_headers", "refusal_answer"]

#: Sandbox refusals reuse the gateway's "profile is not valid" code: the token's profile has no
#: access to that sandbox. AEP documents no dedicated code for it.
SANDBOX_ERROR_CODE = "403025"
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def check_headers(
    request: web.Request, config: EmulatorConfig, *, token_valid: Callable[[str], bool]
) -> web.Response | None:
    """AEP's gateway checks, in the gateway's order; None lets the request through."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        # A 403, not a 401: the gateway's code says "missing", not "not valid".
        return json_answer(403, gateway_error("403010", "Oauth token is missing."))
    api_key = request.headers.get("x-api-key")
    if not api_key:
        return json_answer(403, gateway_error("403000", "Api Key is required"))
    # OAuth server-to-server clients send their client id as the API key, as on AEP.
    if api_key not in {config.api_key, config.client_id}:
        return json_answer(403, gateway_error("403003", "Api Key is invalid"))
    if not token_valid(token):
        return json_answer(401, gateway_error("401013", "Oauth token is not valid"))
    org = request.headers.get("x-gw-ims-org-id")
    if not org:
        return json_answer(400, gateway_error("400003", "Missing header x-gw-ims-org-id"))
    if org != config.org_id:
        return json_answer(403, gateway_error("403025", "Profile is not valid"))
    sandbox = request.headers.get("x-sandbox-name") or "prod"
    if sandbox != config.sandbox:
        message = f"Profile is not valid for sandbox {sandbox!r}"
        return json_answer(403, gateway_error(SANDBOX_ERROR_CODE, message))
    return None


def refusal_answer(refusal: Refusal, config: EmulatorConfig) -> web.Response:
    """The answer given instead of the route's: the gateway's body, a service's, or none."""
    headers = {}
    if refusal.retry_after_s is not None:
        if config.variants.malformed_retry_after and refusal.kind != "rate_limit":
            # Only injected refusals: the rate-limit bucket stays a usable signal.
            headers["Retry-After"] = refusal.malformed_retry_after
        else:
            headers["Retry-After"] = retry_after_header(
                refusal.retry_after_s, http_date=config.faults.retry_after_http_date
            )
    if refusal.empty_body:
        return web.Response(status=refusal.status, headers=headers)
    if refusal.gateway is not None:
        code, message = refusal.gateway
        return json_answer(refusal.status, gateway_error(code, message), headers)
    body = problem(
        status=refusal.status,
        title=_REASONS[refusal.status],
        detail="The service could not answer this time; try again later (emulated fault).",
        code=f"EMU-{refusal.status}",
    )
    return json_answer(refusal.status, body, headers)
