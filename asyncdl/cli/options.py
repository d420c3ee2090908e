"""The options every downloading command shares, written once as ``Annotated`` aliases.

``download``, ``export-audience``, ``demo`` (and every later command that downloads) take the
same download options with the same names, help and types. Each defaults to ``None``, so only
what the user set reaches ``DownloadSettings``; the defaults themselves, shown in the help, are
``DownloadSettings``'s (written once, there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from ..checksum import Checksum
from ..config import DEFAULT_BASE_URL, DownloadSettings, Setting
from ._common import download_settings, parse_size

__all__ = [
    "Adaptive",
    "AllowHost",
    "AsJson",
    "BaseUrl",
    "CaBundle",
    "ChecksumOption",
    "Concurrency",
    "DownloadFlags",
    "Fsync",
    "Out",
    "Quiet",
    "Retries",
    "SegmentSize",
    "SegmentThreshold",
    "Timeout",
    "out_option",
]

_D = DownloadSettings()
_MiB = 1 << 20


def _size_text(value: int | None) -> str:
    if value is None:
        return "never"
    return f"{value // _MiB}Mi" if value % _MiB == 0 else str(value)


def out_option(default: str) -> Any:
    """``--out``, with the default a command uses when it is not given."""
    return Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Where OUT/<batch id>/<part> goes: a directory, or s3://BUCKET/PREFIX,"
            f" az://CONTAINER/PREFIX (abfs://, abfss://), gs://BUCKET/PREFIX [{default}].",
        ),
    ]


Out = out_option(str(_D.out_dir))
Concurrency = Annotated[
    int | None,
    typer.Option("--concurrency", "-j", help=f"Parts downloaded at once [{_D.concurrency}]."),
]
Retries = Annotated[
    int | None,
    typer.Option("--retries", help=f"Attempts per part and per listing page [{_D.max_attempts}]."),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout", help=f"Seconds one part may take, retries included [{_D.part_timeout_s:g}]."
    ),
]
SegmentSize = Annotated[
    str | None,
    typer.Option(
        "--segment-size",
        help=f"Bytes per ranged segment of a big part [{_size_text(_D.segment_bytes)}].",
    ),
]
SegmentThreshold = Annotated[
    str | None,
    typer.Option(
        "--segment-threshold",
        help=f"Parts at least this big go in segments [{_size_text(_D.segment_threshold_bytes)}].",
    ),
]
StoreMemory = Annotated[
    str | None,
    typer.Option(
        "--store-memory",
        help="Into an object store: the most of parts' bytes kept in memory for their uploads;"
        " a part over 5 MiB holds 6 MiB of it, and parts that do not fit wait their turn"
        f" [{_size_text(_D.store_memory_bytes)}].",
    ),
]
Adaptive = Annotated[
    bool | None,
    typer.Option(
        "--adaptive/--no-adaptive",
        help="Halve concurrency on a sustained 429 limit, grow back on success [on].",
    ),
]
Fsync = Annotated[
    bool | None,
    typer.Option(
        "--fsync/--no-fsync",
        help="Sync each part to disk before naming it, so a power loss cannot leave a part"
        " the manifest vouches for. --no-fsync: faster on slow network file systems [on].",
    ),
]
ChecksumOption = Annotated[
    Checksum | None,
    typer.Option(
        "--checksum",
        help="The content hash recorded for each part: blake3 (about 4x cheaper), or sha256 for"
        f" tools that compare against one [{_D.checksum.value}].",
        case_sensitive=False,
    ),
]
AllowHost = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help="Also follow hrefs to this host (repeatable); it never receives credentials.",
    ),
]
CaBundle = Annotated[
    Path | None, typer.Option("--ca-bundle", help="Extra CA certificates (PEM) to trust.")
]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help=f"API base URL [env AEP_BASE_URL; {DEFAULT_BASE_URL}]."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
AsJson = Annotated[
    bool, typer.Option("--json", help="NDJSON events and a summary object on stdout.")
]


@dataclass(frozen=True, kw_only=True)
class DownloadFlags:
    """What the user set of the shared download options (None: not set)."""

    out: str | None = None
    concurrency: int | None = None
    retries: int | None = None
    timeout: float | None = None
    segment_size: str | None = None
    segment_threshold: str | None = None
    store_memory: str | None = None
    adaptive: bool | None = None
    fsync: bool | None = None
    checksum: Checksum | None = None
    allow_host: list[str] | None = None
    ca_bundle: Path | None = None
    base_url: str | None = None

    @classmethod
    def of(cls, arguments: Mapping[str, Any], **chosen: Any) -> DownloadFlags:
        """The shared download options among a command's ``arguments`` (its ``locals()``, as
        typer converted them), by name (``--out`` is each command's ``out_dir``); ``chosen``
        sets some as the command decides. A command without one of them leaves it unset."""
        values = {f.name: arguments.get(f.name) for f in fields(cls)}
        values["out"] = arguments.get("out_dir")
        return cls(**{**values, **chosen})

    def settings(self, environment: dict[str, Setting], **fixed: Any) -> DownloadSettings:
        """``DownloadSettings`` from what was set (flags > ``AEP_BASE_URL`` > defaults), plus
        ``fixed`` values a command decides itself; a bad value is a usage error (exit 2)."""
        chosen: dict[str, Any] = {
            "out_dir": self.out,
            "concurrency": self.concurrency,
            "max_attempts": self.retries,
            "part_timeout_s": self.timeout,
            "segment_bytes": None if self.segment_size is None else parse_size(self.segment_size),
            "segment_threshold_bytes": None
            if self.segment_threshold is None
            else parse_size(self.segment_threshold),
            "store_memory_bytes": None
            if self.store_memory is None
            else parse_size(self.store_memory),
            "adaptive": self.adaptive,
            "fsync": self.fsync,
            "checksum": self.checksum,
            "allowed_hosts": None if self.allow_host is None else frozenset(self.allow_host),
            "ca_bundle": self.ca_bundle,
            "base_url": self.base_url
            or (environment["AEP_BASE_URL"].value if "AEP_BASE_URL" in environment else None),
        }
        given = {name: value for name, value in chosen.items() if value is not None}
        return download_settings(**{**given, **fixed})
