"""The ``asyncdl`` command: parse, build config, run, render. The only package that prints.

One module per command group (``download``, ``data``, ``audience``, ``emulate``), with the shared
pieces in ``_common`` (app, exit codes, settings), ``progress`` and ``render``.

Exit codes: 0 every part arrived and reconciled; 1 some parts failed, a mismatch, or the run
could not complete (network, listing, disk); 2 bad usage; 3 authentication refused;
130 interrupted (Ctrl-C; ``.part`` files are kept for the next run to resume).
"""

from __future__ import annotations

# isort: skip_file
from .. import tls

# Before anything imports aiohttp: this process is the command's (see asyncdl/tls.py).
tls.command_owns_process()

# Importing the command modules registers their commands on ``app``, in this order in --help:
# the everyday commands first, the emulator last.
from . import download, data, audience, emulate  # noqa: E402
from ._common import app, main, parse_size  # noqa: E402
from .audience import parse_duration  # noqa: E402

__all__ = ["app", "audience", "data", "download", "emulate", "main", "parse_duration", "parse_size"]
