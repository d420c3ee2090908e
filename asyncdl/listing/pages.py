"""Paging through Data Access listings in every way the spec allows, and resolving their hrefs.

Pages linked by ``_links.next`` (followed verbatim: ``start`` may be an opaque cursor), or only
by ``start``/``limit`` when an answer has no ``_links`` at all (the spec's unpaged example;
``_page.count`` is not used, because servers put the page size there as often as the total).
The first empty page ends a listing, even if it links on; a link back to a page already read
ends it too. Every href is resolved against the URL of the page it came from.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode, urljoin, urlsplit, urlunsplit

import anyio

from ..client import AEPClient, Page
from ..errors import AsyncdlError, ProtocolError
from ..models import EXPORT_PATH
from ..tasks import single_error

__all__ = ["PAGE_MAX", "data_of", "file_url", "href_of", "is_directory", "largest_pages", "pages"]

log = logging.getLogger(__name__)

PAGE_MAX = 100  # Data Access pages (batch files and directories): AEP's maximum limit
PAGES_AHEAD = 4  # pages asked for at once when a listing pages by entry offset
#: The longest a page asked for ahead is waited for once the page that was needed is in.
GUESS_GRACE_S = 1.0


def href_of(item: Any, page_url: str) -> str | None:
    """An item's ``_links.self.href``, resolved against its page (bare paths occur)."""
    try:
        href = item["_links"]["self"]["href"]
    except (KeyError, TypeError):
        return None
    return urljoin(page_url, href.strip()) if isinstance(href, str) and href.strip() else None


def _next_href(body: Any) -> str | None:
    try:
        href = body["_links"]["next"]["href"]
    except (KeyError, TypeError):
        return None
    return href.strip() if isinstance(href, str) and href.strip() else None


def _with_query(url: str, **fields: int) -> str:
    """``url`` with these query fields set (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in fields]
    query.extend((k, str(v)) for k, v in fields.items())
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def largest_pages(href: str) -> str:
    """Ask for AEP's largest page (a 400-part batch is 4 round trips, not 16); the server's
    next links carry the limit on from there."""
    parts = urlsplit(href)
    if "limit" in dict(parse_qsl(parts.query)):
        return href
    query = f"{parts.query}&limit={PAGE_MAX}" if parts.query else f"limit={PAGE_MAX}"
    return urlunsplit(parts._replace(query=query))


def _page_limit(body: dict[str, Any], asked: int) -> int:
    """The page size the server used: ``_page.limit`` when it says (it may cap ours)."""
    page = body.get("_page")
    limit = page.get("limit") if isinstance(page, dict) else None
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        return min(limit, asked)
    return asked


def data_of(page: Page) -> list[Any]:
    data = page.body.get("data") if isinstance(page.body, dict) else None
    if not isinstance(data, list):
        raise ProtocolError(f"{page.url} answered without a data list")
    return data


def _canonical(url: str) -> tuple[str, str, str, tuple[tuple[str, str], ...]]:
    """A URL as a key: the same page whatever the order or quoting of its query."""
    parts = urlsplit(url)
    query = tuple(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return parts.scheme.lower(), parts.netloc.lower(), parts.path, query


def _offset(url: str) -> int | None:
    """The ``start`` of a page URL when it is an entry count (not an opaque cursor)."""
    start = dict(parse_qsl(urlsplit(url).query)).get("start", "")
    return int(start) if start.isdigit() else None


class _Pager:
    """The pages after the first, asked for ahead when the listing pages by entry offset.

    Past a full page whose following page starts at the count of entries listed so far, the
    next pages are predictable: the following ``PAGES_AHEAD`` are asked for at once (one round
    trip instead of one each), and used only when a page's own link (or, unlinked, its offset)
    names one of them. A short page ends the listing, so at most ``PAGES_AHEAD - 1`` requests
    are wasted. A guess is one attempt, dropped if it fails (the page is asked for again, with
    retries, if it is really needed), and given only as long again as the page that was needed
    took, and never more than ``GUESS_GRACE_S``: the listing never waits on a guess's backoff,
    and on a stalled answer at most that long. A cursor ``start``
    is followed link by link.
    """

    def __init__(self, client: AEPClient) -> None:
        self._client = client
        self._ahead: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], Page] = {}

    async def get(self, url: str, *, position: int, step: int) -> Page:
        """The page at ``url``; ``step`` entries per page when the page before was full."""
        known = self._ahead.pop(_canonical(url), None)
        if known is not None:
            return known
        self._ahead.clear()  # the listing went elsewhere: what was asked for ahead is stale
        if step <= 0 or _offset(url) != position:
            return await self._client.get_page(url)
        guesses = [_with_query(url, start=position + k * step) for k in range(1, PAGES_AHEAD)]
        found: dict[str, Page] = {}

        async def speculate(guess: str) -> None:
            try:
                found[guess] = await self._client.get_page(guess, retry=False)
            except AsyncdlError as error:  # never needed, or asked for again when it is
                log.debug("page asked for ahead %s: %s", guess, error)

        async with single_error(), anyio.create_task_group() as tg:
            for guess in guesses:
                tg.start_soon(speculate, guess)
            asked = anyio.current_time()
            page = await self._client.get_page(url)
            # The guesses went out with it: as long again as it took (a round trip, not the
            # backoff of its retries: at most GUESS_GRACE_S), then they are given up.
            took = anyio.current_time() - asked
            tg.cancel_scope.deadline = anyio.current_time() + min(took, GUESS_GRACE_S)
        self._ahead = {_canonical(g): found[g] for g in guesses if g in found}
        return page


async def pages(client: AEPClient, url: str, *, first: Page | None = None) -> AsyncIterator[Page]:
    """Every page of a Data Access listing that has entries, in order.

    ``_links.next`` is followed verbatim when given (``start`` may be an opaque cursor). An
    answer without any ``_links`` (the spec's unpaged example) is paged by ``start``/``limit``
    until a short page; ``_page.count`` is not used, because servers put the page size there
    as often as the total. The first empty page ends it, even if it links on, and a link back
    to a page already read ends it too: following it could only repeat entries. Offset-paged
    listings are read ahead (``_Pager``).
    """
    asked = PAGE_MAX
    base = largest_pages(url)
    seen = {base}
    pager = _Pager(client)
    page = first if first is not None else await client.get_page(base)
    position = 0  # entries listed so far: the next ``start`` of an unlinked listing
    linked = False  # once a page linked on, the first page that does not is the last
    while True:
        data = data_of(page)
        if not data:
            return
        yield page
        position += len(data)
        body: dict[str, Any] = page.body
        link = _next_href(body)
        limit = _page_limit(body, asked)
        if link is not None:
            linked = True
            following = urljoin(page.url, link)
        elif linked or "_links" in body:
            return  # a linked listing whose last page links nowhere
        else:
            if len(data) < limit:
                return
            following = _with_query(url, start=position, limit=limit)
        if following in seen:
            log.warning("%s links back to %s; the listing ends there", page.url, following)
            return
        seen.add(following)
        log.debug("listing page %s", following)
        # A page that links on is full by the server's own paging; an unlinked one only when it
        # holds a whole page. Either way, the next ones are likely as long.
        full = link is not None or len(data) >= limit
        page = await pager.get(following, position=position, step=len(data) if full else 0)


def file_url(client: AEPClient, file_id: str, name: str | None = None) -> str:
    """The documented href of a dataSetFile, or of one file in it."""
    url = client.api_url(f"{EXPORT_PATH}/files/{quote(file_id, safe='')}")
    return url if name is None else f"{url}?path={quote(name, safe='')}"


def is_directory(href: str) -> bool:
    """A file's href names it with ?path=; a nested dataSetFileId (a directory) has no path.

    The same answer as ``"path" not in parse_qs(urlsplit(href).query)`` (a field needs "=" and
    a value; its name is unquoted), without building a dict per listed entry.
    """
    query = href.partition("#")[0].partition("?")[2]
    for field in query.split("&"):
        name, _, value = field.partition("=")
        if value and (unquote_plus(name) if "%" in name or "+" in name else name) == "path":
            return False
    return True
