"""Command-line interface: `transactive --help`. Commands are thin: parse, call the library, print."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="transactive: layered transactive energy markets on real distribution grids.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """transactive: layered transactive energy markets on real distribution grids."""


# --- market ---


# --- grid ---
