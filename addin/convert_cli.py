"""The `nearmiss convert` command: a thin layer over :mod:`addin.convert`."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workbook_templates.cli import SITE_CODE
from workbook_templates.codelists import codes

from .pseudonym import MissingKey, PseudonymKeyError, create_key_file, default_key_file, read_key_file

if TYPE_CHECKING:
    from .convert import ConversionResult

EXIT_UNREADABLE = 2
MAX_REVIEW_LINES = 60
KINDS = {"incidents": "log", "actions": "action tracker"}
# Rules whose message quotes free text: printed without the quote (it may hold a name the converter missed).
QUOTES_FREE_TEXT = {"NM050", "NM051", "NM052", "NM053"}


@click.command("convert", help="Bring an existing, messy Excel log into the template: finds the header rows, "
                               "maps columns and values to the contract, turns residents' names into "
                               "pseudonymous refs and writes a new site workbook.")
@click.argument("legacy", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--site-code", required=True, help="Short site code, 2-8 capital letters or digits, e.g. OAK.")
@click.option("--site-name", required=True, help='The site\'s name, e.g. "Oakview House".')
@click.option("--setting", type=click.Choice(codes("setting")), default="care_home", show_default=True,
              help="Kind of service; rooms such as 'Bedroom' become this setting's location.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the new .xlsx workbook.")
@click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON or CSV file of 'source header,field' pairs that override the automatic column matching.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the pseudonym key (default: $NEARMISS_PSEUDONYM_KEY or the instance folder's "
                   "pseudonym.key).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.pass_context
def convert_command(ctx: click.Context, legacy: Path, site_code: str, site_name: str, setting: str, out: Path,
                    mapping: Path | None, key_file: Path | None, force: bool) -> None:
    site_code = site_code.strip().upper()
    if not SITE_CODE.match(site_code):
        raise click.BadParameter("use 2 to 8 capital letters or digits, e.g. OAK", param_hint="--site-code")
    if out.suffix.lower() != ".xlsx":
        raise click.BadParameter("the file name must end in .xlsx", param_hint="--out")
    if out.resolve() == legacy.resolve():
        raise click.BadParameter("give a new file name, not the old log's", param_hint="--out")
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists; choose another name or add --force to replace it.")
    if not out.parent.exists():
        raise click.ClickException(f"folder {out.parent} does not exist.")

    def fail(message: str) -> None:
        click.echo(f"Error: {message}", err=True)
        ctx.exit(EXIT_UNREADABLE)

    if not legacy.is_file():
        fail(f"{legacy} does not exist or is not a file.")
    # Only here: the converter brings in openpyxl, which no other command needs (0.15 s at every start).
    from .convert import MappingFileError, convert_legacy, load_mapping, write_conversion
    from .legacy import LegacyReadError

    try:
        mapping_obj = load_mapping(mapping) if mapping is not None else None
        key = read_key_file(key_file) if key_file is not None else None
    except (MappingFileError, PseudonymKeyError) as exc:
        fail(str(exc))

    def run(key: bytes | None) -> ConversionResult:
        return convert_legacy(legacy, site_code=site_code, site_name=site_name.strip(), setting=setting,
                              mapping=mapping_obj, key=key)

    try:
        try:
            result = run(key)
        except MissingKey:
            path = create_key_file(default_key_file())
            click.echo(f"Made a new pseudonym key at {path}. Keep it apart from the logs and back it up: the same "
                       "key gives the same person refs next time.")
            result = run(read_key_file(path))
    except (LegacyReadError, PseudonymKeyError) as exc:
        fail(str(exc))

    print_report(result)
    try:
        write_conversion(result, out, overwrite=force)
    except FileExistsError:
        raise click.ClickException(f"{out} already exists; choose another name or add --force to replace it.")
    except OSError as exc:
        raise click.ClickException(f"could not write {out}: {exc.strerror or exc}.")
    click.echo(f"\nWrote {out}: {len(result.records.incidents)} log rows and {len(result.records.actions)} actions.")
    print_review(result, out)


def print_report(result: ConversionResult) -> None:
    echo = click.echo
    echo(f"Converting {result.source}")
    echo("\nSheets found:")
    width = max((len(s.name) for s in result.sheets), default=0)
    for s in result.sheets:
        if s.kind == "ignored":
            echo(f"  {s.name:<{width}}  not converted: {s.reason}")
            continue
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(s.skipped.items()))
        hidden = " (hidden sheet)" if s.state != "visible" else ""
        echo(f"  {s.name:<{width}}  {KINDS[s.kind]}{hidden}, header on row {s.header_row}: {s.rows_in} rows read, "
             f"{s.rows_out} converted" + (f", skipped {skipped}" if skipped else ""))

    echo("\nColumn mapping used (source header -> field):")
    groups: dict[tuple, list[str]] = defaultdict(list)
    for s in result.sheets:
        if s.columns:
            groups[tuple((p.column.key, p.describe(), p.column.hidden) for p in s.columns)].append(s.name)
    for mapping, sheets in groups.items():
        echo(f"  {', '.join(sheets)}:")
        width = max((len(k) for k, _, _ in mapping), default=0)
        for key, target, hidden in mapping:
            echo(f"    {key:<{width}} -> {target}{' [hidden column]' if hidden else ''}")

    echo("\nValue fixes:")
    if not result.value_fixes:
        echo("  none")
    for (field, source, code), n in sorted(result.value_fixes.items(), key=lambda kv: (kv[0][0], -kv[1])):
        count = f"{n} found" if field == "free text" else f"{n} {'row' if n == 1 else 'rows'}"
        echo(f"  {field}: '{source}' -> {code} ({count})")

    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(result.rows_skipped.items())) or "none"
    echo(f"\nRows: {result.rows_in} read, {result.rows_out} converted, "
         f"{sum(result.rows_skipped.values())} skipped ({skipped}).")


def print_review(result: ConversionResult, out: Path) -> None:
    echo = click.echo
    lines = result.needs_review
    echo("\nNeeds a person's eye:")
    if not lines:
        echo("  nothing from the conversion")
    for line in lines[:MAX_REVIEW_LINES]:
        echo(f"  - {line}")
    if len(lines) > MAX_REVIEW_LINES:
        echo(f"  ... and {len(lines) - MAX_REVIEW_LINES} more (each row says what was done in its Notes).")
    if result.validation:
        severities = Counter(f.severity for f in result.validation)
        echo(f"\nChecks of the new workbook: {severities.get('error', 0)} errors, "
             f"{severities.get('warning', 0)} warnings.")
        by_message: Counter = Counter()
        for f in result.validation:
            message = f.message
            if f.rule in QUOTES_FREE_TEXT:
                message = re.sub(r"\('[^']*'\)|'[^']*'", "(...)", message)
            message = re.sub(r"\d+ days", "N days", message)
            by_message[(f.rule, message)] += 1
        for (rule, message), n in sorted(by_message.items(), key=lambda kv: (-kv[1], kv[0])):
            echo(f"  {rule} x{n}: {message}")
        echo(f"  Run `nearmiss validate {out}` to see every cell.")
