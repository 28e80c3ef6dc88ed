"""The `nearmiss template` command."""

from __future__ import annotations

import re
from pathlib import Path

import click

from .codelists import codes

SITE_CODE = re.compile(r"^[A-Z0-9]{2,8}$")


@click.command("template", help="Write a new, empty site workbook: log, action tracker, site sheet and dashboard.")
@click.option("--site-code", required=True, help="Short site code, 2-8 capital letters or digits, e.g. OAK.")
@click.option("--site-name", required=True, help='The site\'s name, e.g. "Oakview House".')
@click.option("--setting", type=click.Choice(codes("setting")), default="care_home", show_default=True,
              help="Kind of service; decides the exposure unit for rates.")
@click.option("--provider", default="", help="Registered provider.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the .xlsx file.")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def template_command(site_code: str, site_name: str, setting: str, provider: str, out: Path, force: bool) -> None:
    site_code = site_code.strip().upper()
    if not SITE_CODE.match(site_code):
        raise click.BadParameter("use 2 to 8 capital letters or digits, e.g. OAK", param_hint="--site-code")
    if out.suffix.lower() != ".xlsx":
        raise click.BadParameter("the file name must end in .xlsx", param_hint="--out")
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists; choose another name or add --force to replace it.")
    if not out.parent.exists():
        raise click.ClickException(f"folder {out.parent} does not exist.")
    from .builder import build_workbook  # here, not at the top: `nearmiss --help` need not import pandas

    build_workbook(out, site={"site_code": site_code, "site_name": site_name.strip(), "setting": setting,
                              "provider": provider.strip()})
    click.echo(f"Wrote {out}: open it in Excel and start on the Log sheet (the Guide sheet explains each column).")
