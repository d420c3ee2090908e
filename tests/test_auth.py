"""Token providers: static tokens never refresh; OAuth renews ahead of expiry, single-flight."""

from __future__ import annotations

import anyio
import pytest

from asyncdl.auth import OAuthTokenProvider, StaticTokenProvider, TokenGrant, lifetime_s


class FakeIMS:
    def __init__(self, lifetime_s: float = 100.0, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.lifetime_s = lifetime_s
        self.delay_s = delay_s

    async def grant(self) -> TokenGrant:
        self.calls += 1
        await anyio.sleep(self.delay_s)
        return TokenGrant(access_token=f"token-{self.calls}", expires_in_s=self.lifetime_s)


async def test_static_token_cannot_refresh() -> None:
    provider = StaticTokenProvider("abc")
    assert not provider.can_refresh
    assert await provider.token() == "abc"
    assert await provider.refresh("abc") == "abc"
    assert "abc" not in repr(provider)


async def test_oauth_token_is_cached_until_close_to_expiry() -> None:
    now = [0.0]
    ims = FakeIMS(lifetime_s=100.0)
    provider = OAuthTokenProvider(ims.grant, refresh_margin_s=300.0, clock=lambda: now[0])
    assert await provider.token() == "token-1"
    now[0] = 85.0  # margin is capped at a tenth of the lifetime: renew after 90 s
    assert await provider.token() == "token-1"
    now[0] = 91.0
    assert await provider.token() == "token-2"
    assert ims.calls == 2


async def test_thundering_herd_refresh_asks_ims_once() -> None:
    ims = FakeIMS(delay_s=0.05)
    provider = OAuthTokenProvider(ims.grant)
    stale = await provider.token()
    results: list[str] = []

    async def worker() -> None:
        results.append(await provider.refresh(stale))

    async with anyio.create_task_group() as tg:
        for _ in range(32):
            tg.start_soon(worker)
    assert ims.calls == 2  # the first token, then exactly one refresh
    assert set(results) == {"token-2"}


async def test_concurrent_first_use_asks_ims_once() -> None:
    ims = FakeIMS(delay_s=0.05)
    provider = OAuthTokenProvider(ims.grant)
    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(provider.token)
    assert ims.calls == 1


def test_grant_repr_hides_token() -> None:
    assert "secret" not in repr(TokenGrant(access_token="secret", expires_in_s=1.0))


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        (86399, 86399.0),
        ("86399", 86399.0),
        (3600.5, 3600.5),
        (86_399_000, 86399.0),  # the retired JWT exchange's milliseconds
        ("86399000", 86399.0),
        (10**12, 86400.0),  # no lifetime is longer than a day
        (0, 0.0),  # renew before the next use
        (-5, 0.0),
        (None, 86399.0),
        ("soon", 86399.0),
        ("nan", 86399.0),
        ("inf", 86399.0),
    ],
)
def test_token_lifetimes_are_read_as_ims_means_them(expires_in: object, seconds: float) -> None:
    assert lifetime_s(expires_in) == seconds
