"""The `nearmiss validate` command."""

from __future__ import annotations

import click


@click.command("validate", help="Check site workbooks against the rules a reviewer expects: not yet available.")
@click.argument("files", nargs=-1)
def validate_command(files: tuple[str, ...]) -> None:
    raise click.ClickException("'nearmiss validate' is not yet available.")
