"""The `nearmiss` command: a thin click layer over the packages' Python APIs.

Each package contributes the commands for its own job; this module, at the top
of the dependency chain, gathers them into one group.
"""

from __future__ import annotations

import click

from addin.cli import convert_command, validate_command
from workbook_templates.cli import template_command

from .commands import admin_group, serve_command
from .report_commands import consolidate_command, return_command


def not_yet(name: str) -> click.Command:
    @click.command(name, help=f"{name.capitalize()}: not yet available.",
                   context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'nearmiss {name}' is not yet available.")

    return placeholder


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nearmiss")
def main() -> None:
    """nearmiss: near-miss and incident logs for adult social care, from Excel to learning."""


main.add_command(template_command)
main.add_command(validate_command)
main.add_command(convert_command)
main.add_command(consolidate_command)
main.add_command(return_command)
main.add_command(serve_command)
main.add_command(admin_group)
