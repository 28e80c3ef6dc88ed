"""Commands of the add-in: validate and convert."""

from __future__ import annotations

import click


@click.command("validate", help="Check site workbooks against the rules a reviewer expects: not yet available.")
@click.argument("files", nargs=-1)
def validate_command(files: tuple[str, ...]) -> None:
    raise click.ClickException("'nearmiss validate' is not yet available.")


@click.command("convert", help="Bring an existing, messy Excel log into the template: not yet available.")
@click.argument("legacy", required=False)
def convert_command(legacy: str | None) -> None:
    raise click.ClickException("'nearmiss convert' is not yet available.")
