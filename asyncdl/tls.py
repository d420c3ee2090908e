"""The TLS context of a run, and how the ``asyncdl`` command avoids loading CA stores it never uses.

When aiohttp's connector module is imported it builds two default SSL contexts, and each loads
the system CA store: a large share of the command's start-up with OpenSSL 3 (benchmarks/
README.md has the profile). asyncdl never uses them: its sessions get ``new_context()``, whose
store ``load_trust`` adds before the first https request (a plain-http run, such as the
emulator's, loads none).

Only the command skips aiohttp's loading (``command_owns_process``, called before anything
imports aiohttp), because the process is its own. A program that imports asyncdl as a library
keeps aiohttp exactly as it is: other code in that process may rely on aiohttp's defaults.
Without their CAs those two contexts could only refuse a certificate, never accept one.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from .errors import ConfigError

__all__ = [
    "LazyTrust",
    "aiohttp_import_guard",
    "command_owns_process",
    "load_trust",
    "new_context",
]

_TRUST_LOADERS = ("load_default_certs", "set_default_verify_paths")
_command_owns_process = False


def command_owns_process() -> None:
    """The ``asyncdl`` command runs this process: aiohttp may be imported without CA loading."""
    global _command_owns_process
    _command_owns_process = True


def aiohttp_import_guard() -> AbstractContextManager[None]:
    """What ``client`` imports aiohttp inside."""
    return _trust_store_skipped() if _command_owns_process else nullcontext()


@contextmanager
def _trust_store_skipped() -> Iterator[None]:
    """SSL contexts made meanwhile get no CA store; the methods are restored after."""
    context_type = ssl.SSLContext
    originals = {name: context_type.__dict__.get(name) for name in _TRUST_LOADERS}
    for name in _TRUST_LOADERS:
        setattr(context_type, name, _no_trust_store)
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(context_type, name)  # it was inherited from _ssl._SSLContext
            else:
                setattr(context_type, name, original)


def _no_trust_store(context: ssl.SSLContext, *args: object, **kwargs: object) -> None:
    return None


def new_context() -> ssl.SSLContext:
    """What ``ssl.create_default_context()`` makes, less its CA store (see ``load_trust``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificates and host names verified
    if sys.version_info >= (3, 13):  # the flags 3.13's create_default_context() adds
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_trust(context: ssl.SSLContext, ca_bundle: Path | None) -> None:
    """Add the system's CA store, and ``ca_bundle`` beside it (blocking: a worker thread)."""
    context.load_default_certs()
    if ca_bundle is not None:
        # Added to the system store, not instead of it: a corporate proxy CA plus the real one.
        context.load_verify_locations(cafile=str(ca_bundle))


class LazyTrust:
    """A run's TLS context, whose CA store (and ``ca_bundle``) is loaded once, before the first
    request that may use TLS: a plain-http run (the emulator) never pays for it."""

    def __init__(self, ca_bundle: Path | None) -> None:
        self.context = new_context()
        self._bundle = ca_bundle
        self._loaded = False
        self._lock: anyio.Lock | None = None  # made on the loop that uses it

    async def before(self, url: str) -> None:
        """Make sure the store is loaded if ``url`` may use TLS."""
        if self._loaded or url[:7].lower() == "http://":  # per request: no urlsplit if plain
            return
        if urlsplit(url).scheme == "http":  # urlsplit strips what aiohttp does
            return
        await self.load()

    async def load(self) -> None:
        """Load the store now (a bad ``ca_bundle`` is a ConfigError)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._loaded:
                return
            try:
                await anyio.to_thread.run_sync(load_trust, self.context, self._bundle)
            except (OSError, ssl.SSLError) as exc:
                where = self._bundle or "the system's CA store"
                raise ConfigError(f"cannot load the certificates of {where}: {exc}") from exc
            self._loaded = True
