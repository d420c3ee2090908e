"""The root command: its global options, and the command groups composed under it.

Each command module owns a ``typer.Typer()`` of its commands; this module adds them with
``add_typer`` (without a name: their commands are top-level) and the ``config`` group by name.
``--config``, ``--profile`` and ``-v`` belong to the root but are accepted after the subcommand
too, as aws, gcloud and rclone accept theirs: the group moves them in front before parsing.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from . import audience, data, dlz, download, emulate, shards, sync
from ._common import EPILOG, EXIT_FAILED, EXIT_OK, GlobalOptions, out

__all__ = ["app", "hoist_global_options", "main"]

#: The root's options that take a value, and those that do not (after the subcommand too).
_VALUED = frozenset({"--config", "--profile"})
_FLAGS = frozenset({"--verbose"})


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """``args`` with every global option found after the subcommand moved before it.

    Stops at ``--`` (what follows is never an option). ``-v``, ``-vv`` and ``--verbose`` count
    wherever they are; ``--config X`` and ``--config=X`` keep their value.
    """
    before: list[str] = []
    after: list[str] = []
    hoisted: list[str] = []
    items = list(args)
    index = 0
    seen_command = False
    while index < len(items):
        arg = items[index]
        if arg == "--":
            after.extend(items[index:])
            break
        if not seen_command:
            if arg in _VALUED:
                before.extend(items[index : index + 2])
                index += 2
                continue
            if not arg.startswith("-"):
                seen_command = True
                after.append(arg)
            else:
                before.append(arg)
            index += 1
            continue
        name = arg.partition("=")[0]
        if name in _VALUED:
            if "=" in arg:
                hoisted.append(arg)
                index += 1
            else:
                hoisted.extend(items[index : index + 2])
                index += 2
            continue
        if arg in _FLAGS or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            hoisted.append(arg)
        else:
            after.append(arg)
        index += 1
    return before + hoisted + after


class _GlobalOptionsAnywhere(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))


app = typer.Typer(
    name="asyncdl",
    help="Fast, complete, verified downloads of Adobe Experience Platform dataset exports.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=_GlobalOptionsAnywhere,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"asyncdl {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log more (-vv: debug).")
    ] = 0,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="asyncdl TOML or aepp JSON config [default ~/.config/asyncdl/config.toml]",
        ),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Profile of the TOML config to use.")
    ] = None,
) -> None:
    """Fast, complete, verified downloads of Adobe Experience Platform dataset exports.

    Settings: flags > environment (AEP_*) > config file. --config, --profile and -v may come
    before or after the command.
    """
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            force=True,  # the CLI owns the process's logging, whatever was configured before
        )
    ctx.obj = GlobalOptions(config_path=config, profile=profile)


# In this order in --help: the everyday commands first, the emulator last.
app.add_typer(download.app)
app.add_typer(sync.app)
app.add_typer(dlz.app, name="dlz")
app.add_typer(shards.app)
app.add_typer(data.app)
app.add_typer(data.config_app, name="config")
app.add_typer(audience.app)
app.add_typer(emulate.app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `asyncdl ... | head` must not end in a traceback
        sys.stderr.close()
        raise SystemExit(EXIT_FAILED) from None
    finally:
        # Interpreter shutdown runs full garbage collections over every object still alive, and
        # after a run that is mostly what the imports made: tens of ms of every run's wall time.
        # Frozen objects are skipped. Frozen only now, at the end: frozen at the start, they
        # would leave the full collections' "long-lived" count near zero and make those run
        # more often during the run. The young generations are collected first (cheap), so the
        # run's own short-lived cycles are still finalized. main() is the process entry point
        # only: an in-process caller would have its whole heap frozen.
        gc.collect(1)
        gc.freeze()
