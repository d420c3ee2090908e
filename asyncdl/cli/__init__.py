"""The ``asyncdl`` command: parse, build config, run, render. The only package that prints.

One module per command group (``download``, ``sync``, ``dlz``, ``data``, ``audience``,
``emulate``), each a
``typer.Typer()`` composed by ``app``; the download options they share are ``options``; what
every command needs is ``_common`` (exit codes, consoles, settings); ``progress`` and ``render``
show runs and results.

Exit codes: 0 every part arrived and reconciled; 1 some parts failed, a mismatch, or the run
could not complete (network, listing, disk); 2 bad usage; 3 authentication refused; 75 another
run holds the lock this one needs (a sync of the same directory: try again later); 130
interrupted (Ctrl-C; ``.part`` files are kept for the next run to resume).
"""

from __future__ import annotations

# isort: skip_file
from .. import tls

# Before anything imports aiohttp: this process is the command's (see asyncdl/tls.py).
tls.command_owns_process()

from ._common import parse_duration, parse_size  # noqa: E402
from .app import app, main  # noqa: E402

__all__ = ["app", "main", "parse_duration", "parse_size"]
