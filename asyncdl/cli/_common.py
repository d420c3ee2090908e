"""What every command shares: exit codes, consoles, settings, errors → exit codes, tables."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import anyio
import typer
from rich.console import Console
from rich.table import Table

from ..config import (
    Credentials,
    DownloadSettings,
    Setting,
    resolve_environment,
)
from ..errors import (
    AsyncdlError,
    AuthError,
    BusyError,
    ConfigError,
    LandingZoneExpiredError,
    SourceAuthError,
    StorageAuthError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
#: Another run holds what this one needs (a sync of the same directory): sysexits' EX_TEMPFAIL,
#: which cron wrappers and systemd read as "try again later".
EXIT_BUSY = 75
EXIT_INTERRUPTED = 130

EPILOG = (
    "Exit codes: 0 ok; 1 some parts failed, a batch does not match the Catalog, or no "
    "landing zone or complete export; 2 bad usage; 3 credentials refused or expired (AEP's, "
    "the landing zone's, or the --out object store's); 75 another run holds the directory "
    "(try later); 130 interrupted (resume by running it again)."
)

# emoji=False: rich would turn ":tada:" inside a part name, path or server message into an emoji
# (markup=False does not stop that); its first use also imports a table of ~3,600 emoji codes.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class GlobalOptions:
    """What the root callback parsed: where configuration comes from."""

    config_path: Path | None = None
    profile: str | None = None


def fail(message: str, code: int) -> NoReturn:
    err.print(f"asyncdl: error: {message}", markup=False)
    raise typer.Exit(code)


def exit_code_for(error: AsyncdlError) -> int:
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, AuthError | StorageAuthError | LandingZoneExpiredError):
        return EXIT_AUTH
    if isinstance(error, BusyError):
        return EXIT_BUSY
    return EXIT_FAILED


def _describe(error: AsyncdlError) -> str:
    if isinstance(error, SourceAuthError):
        return (
            f"the landing zone refused its credentials: {error} (expired, revoked, or rotated "
            "by a refresh; run again to ask AEP for current ones)"
        )
    if isinstance(error, AuthError):
        hint = " (check AEP_ACCESS_TOKEN / AEP_CLIENT_ID, AEP_API_KEY, AEP_ORG_ID, AEP_SANDBOX)"
        return f"authentication refused: {error}{hint}"
    return str(error)


def run_async(func: Callable[[], Awaitable[T]], *, on_interrupt: Callable[[], None]) -> T:
    """Run ``func`` on an event loop; map our errors and Ctrl-C to a line and an exit code."""
    outcome: list[T] = []

    async def main() -> None:
        # The result travels outside the task on purpose: when asyncio.Runner restores the SIGINT
        # handler it calls signal.getsignal(), which builds (and discards) a ValueError message
        # holding repr() of its functools.partial, and so of the finished main task and its
        # result: a full repr of every part, growing with the run for nothing.
        outcome.append(await func())

    try:
        anyio.run(main)
        return outcome[0]
    except KeyboardInterrupt:
        on_interrupt()
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except AsyncdlError as error:
        fail(_describe(error), exit_code_for(error))
    except Exception as error:  # a bug: one line for the user, the traceback for -vv
        logging.getLogger("asyncdl").debug("unexpected error", exc_info=True)
        fail(
            f"unexpected error {type(error).__name__}: {error} "
            "(a bug in asyncdl; run with -vv for the traceback and please report it)",
            EXIT_FAILED,
        )


def quietly() -> None:
    err.print("asyncdl: interrupted", markup=False)


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def emit(event: dict[str, Any]) -> None:
    """One NDJSON line on stdout (``--json``); never holds a secret."""
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- settings ------------------------------------------------------------------------------------


def load_environment(ctx: typer.Context) -> dict[str, Setting]:
    options = ctx.obj if isinstance(ctx.obj, GlobalOptions) else GlobalOptions()
    try:
        return resolve_environment(config_path=options.config_path, profile=options.profile)
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)


def credentials_from(environment: dict[str, Setting]) -> Credentials:
    try:
        return Credentials.from_env({k: v.value for k, v in environment.items()})
    except ConfigError as error:
        fail(str(error), EXIT_USAGE)


def download_settings(**kwargs: Any) -> DownloadSettings:
    try:
        return DownloadSettings(**kwargs)
    except AsyncdlError as error:
        fail(_describe(error), exit_code_for(error))


def print_table(
    title: str, headers: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, right: int
) -> None:
    """A rich table on a terminal; tab-separated lines when piped (``| cut -f1`` works).

    Columns from index ``right`` on are right-aligned (numbers).
    """
    if not out.is_terminal:
        # Written directly: rich would expand the tabs into spaces.
        for line in (headers, *rows):
            out.file.write("\t".join(line) + "\n")
        out.file.flush()
        return
    table = Table(title=title, title_justify="left")
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index >= right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out.print(table)


_SIZE_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_size(text: str) -> int:
    """'16M' → 16,000,000; '1Mi' → 1,048,576; a plain number is bytes."""
    raw = text.strip().lower().removesuffix("/s").removesuffix("b")
    number = raw.rstrip("kmgi")
    suffix = raw[len(number) :]
    if suffix not in _SIZE_SUFFIXES:
        raise typer.BadParameter(f"not a size: {text!r} (try 16M, 512Ki or 1000000)")
    try:
        value = float(number) * _SIZE_SUFFIXES[suffix]
    except ValueError:
        raise typer.BadParameter(f"not a size: {text!r} (try 16M, 512Ki or 1000000)") from None
    if value < 0:
        raise typer.BadParameter(f"a size cannot be negative: {text!r}")
    return int(value)


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'90s' → 90.0, '15m' → 900.0, '2h' → 7200.0; a plain number is seconds."""
    raw = text.strip().lower()
    scale = 1.0
    if raw[-1:] in _DURATION_UNITS:
        scale = _DURATION_UNITS[raw[-1]]
        raw = raw[:-1].strip()
    try:
        value = float(raw) * scale
    except ValueError:
        raise typer.BadParameter(f"not a duration: {text!r} (try 90s, 15m, 2h or 600)") from None
    if not (value > 0 and value != float("inf")):
        raise typer.BadParameter(f"a duration must be positive, got {text!r}")
    return value
