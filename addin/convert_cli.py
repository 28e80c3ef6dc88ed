"""The `nearmiss convert` command."""

from __future__ import annotations

import click


@click.command("convert", help="Bring an existing, messy Excel log into the template: not yet available.")
@click.argument("legacy", required=False)
def convert_command(legacy: str | None) -> None:
    raise click.ClickException("'nearmiss convert' is not yet available.")
