"""``python -m asyncdl``: the same as the ``asyncdl`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
