"""The `nearmiss validate` command: check site workbooks against the rules a reviewer expects."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import textwrap

from typing import TYPE_CHECKING

import click

from .findings import Finding

if TYPE_CHECKING:
    from .reader import ReadResult

PROGRESS_ABOVE = 3  # show a progress bar on stderr when checking more files than this
THREADS = 2


@click.command("validate", help=(
    "Check site workbooks against the rules a reviewer expects. Prints, per file, the number of errors "
    "and warnings and a table of findings (cell, reference, severity, message). Exit status: 0 no errors, "
    "1 errors found, 2 a file could not be read."))
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True,
              help="Print the findings as a JSON list (file, sheet, cell, incident_ref or action_ref, rule, "
                   "severity, message).")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, metavar="YYYY-MM-DD",
              help="Check as if today were this date (future dates, overdue actions), for reproducible runs.")
def validate_command(files: tuple[str, ...], as_json: bool, today: dt.datetime | None) -> None:
    from .validate import validate_result  # here, not at the top: `nearmiss --help` need not import pandas

    day = today.date() if today else None
    results = _read(files)
    unreadable = 0
    every: list[Finding] = []
    for result in results:
        if not result.ok:
            unreadable += 1
            click.echo(f"{result.file} cannot be read: {result.error}", err=True)
            continue
        findings = validate_result(result, today=day)
        every += findings
        if not as_json:
            _print_file(result.file, findings)
    if as_json:
        click.echo(json.dumps([f.to_dict() for f in every], indent=2, ensure_ascii=False))
    if unreadable:
        sys.exit(2)
    sys.exit(1 if any(f.severity == "error" for f in every) else 0)


def _read(files: tuple[str, ...]) -> list[ReadResult]:
    from .reader import read_workbooks

    if len(files) <= PROGRESS_ABOVE:
        return read_workbooks(files, threads=THREADS)
    with click.progressbar(length=len(files), label="Reading workbooks", file=click.get_text_stream("stderr"),
                           show_pos=True) as bar:
        return read_workbooks(files, threads=THREADS, on_done=lambda _result: bar.update(1))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_file(file: str, findings: list[Finding]) -> None:
    from .validate import counts

    n = counts(findings)
    click.echo(f"{file}: {_plural(n['error'], 'error')}, {_plural(n['warning'], 'warning')}")
    if not findings:
        return
    rows = [(f"{f.sheet}!{f.cell}" if f.sheet and f.cell else f.sheet or "(workbook)", f.ref, f.severity, f.rule,
             f.message) for f in findings]
    headers = ("Cell", "Ref", "Severity", "Rule", "Message")
    widths = [max(len(headers[i]), *(len(r[i]) for r in rows)) for i in range(4)]
    lead = sum(widths) + 2 * 4
    width = max(shutil.get_terminal_size((120, 24)).columns, lead + 30)
    line = "  ".join(h.ljust(w) for h, w in zip(headers[:4], widths)) + "  " + headers[4]
    click.echo(line)
    for row in rows:
        message = textwrap.wrap(row[4], width=width - lead) or [""]
        severity = click.style(row[2].ljust(widths[2]), fg="red" if row[2] == "error" else "yellow")
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), severity, row[3].ljust(widths[3])]
        click.echo("  ".join(cells) + "  " + message[0])
        for more in message[1:]:
            click.echo(" " * lead + more)
    click.echo("")
