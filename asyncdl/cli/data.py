"""``inspect``, ``merge`` and ``config show``: commands that work on local files and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import (
    DEFAULT_BASE_URL,
    KNOWN_VARIABLES,
)
from ..errors import AsyncdlError
from ._common import (
    EPILOG,
    EXIT_OK,
    emit,
    exit_code_for,
    fail,
    load_environment,
    mb,
    out,
)
from .render import render_report, report_json

app = typer.Typer()
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@app.command("inspect", epilog=EPILOG)
def inspect_command(
    directory: Annotated[Path, typer.Argument(help="A download directory (or one batch).")],
    bins: Annotated[
        int, typer.Option("--bins", help="Histogram bins at most, on round edges over the range.")
    ] = 10,
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            help="The numeric column to draw [score, else probability]; dotted for nested.",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many influential factors.")] = 10,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw the report as a PNG chart (needs asyncdl[plot])."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
) -> None:
    """Rows, parts, schema, score distribution, percentiles, propensity types, top factors.

    Reads parquet in streamed record batches, so any size fits in memory.

    Example: asyncdl inspect ./scores --bins 20 --plot scores.png
    """
    try:
        from ..tools.scores import inspect_scores  # pyarrow.dataset: loaded only when used

        report = inspect_scores(directory, bins=bins, top_factors=top, column=column)
        if plot is not None:
            from ..tools.plot import write_report_png  # matplotlib: the optional extra

            write_report_png(report, plot)
    except AsyncdlError as error:
        fail(str(error), exit_code_for(error))
    if as_json:
        emit(report_json(report))
        raise typer.Exit(EXIT_OK)
    render_report(report)
    if plot is not None:
        out.print(f"chart drawn into {plot}", markup=False)


@app.command("merge", epilog=EPILOG)
def merge_command(
    directory: Annotated[Path, typer.Argument(help="A download directory (or one batch).")],
    to: Annotated[Path, typer.Option("--to", help="The file to write: .parquet or .csv.")],
) -> None:
    """Merge every part below DIR into one parquet or CSV file, streaming (bounded memory).

    Example: asyncdl merge ./scores/01E5QSWCAASFQ054FNBKYV6TIQ --to scores.parquet
    """
    try:
        from ..tools.merge import merge_parts

        result = merge_parts(directory, to)
    except AsyncdlError as error:
        fail(str(error), exit_code_for(error))
    out.print(
        f"merged {result.parts} parts, {result.rows:,} rows into {result.target} "
        f"({mb(result.bytes)})",
        markup=False,
    )


@config_app.command("show")
def config_show_command(ctx: typer.Context) -> None:
    """Print the resolved AEP_* settings and where each came from (secrets masked).

    Example: asyncdl --config ~/aepp-config.json config show
    """
    environment = load_environment(ctx)
    out.print("# asyncdl configuration: flags > environment > config file", markup=False)
    for name in KNOWN_VARIABLES:
        setting = environment.get(name)
        if setting is not None:
            value, source = setting.shown(name), setting.source
        elif name == "AEP_BASE_URL":
            value, source = DEFAULT_BASE_URL, "default"
        elif name == "AEP_SANDBOX":
            value, source = "prod", "default"
        else:
            value, source = "-", "not set"
        out.print(f"{name}={value}  # {source}", markup=False)
