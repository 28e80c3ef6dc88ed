"""The `nearmiss consolidate` and `nearmiss return` commands: site workbooks in, report workbooks out.

Both read the site workbooks with :func:`addin.reader.read_workbooks` (in parallel
threads, a progress bar on stderr), never overwrite an output without ``--force``,
and write each output to a temporary file in the same folder that is renamed
onto the output only once it is complete.

Unreadable files:

- ``consolidate`` reports each one on stderr, carries on with the rest, writes the
  outputs (listing the unreadable files on the Data quality sheet) and exits with
  status 2, so a script notices.  With no readable file at all nothing is written.
- ``return`` stops with status 2 and writes nothing: a return with a site silently
  missing would understate the counts sent to a commissioner.

Two workbooks with the same site code: the second is treated as unreadable (the
message names the first), as the server keeps one current log per site.  Every row
of a workbook is counted under the site code of its Site sheet (as the server files
rows under the site that sent them); a Log row naming another site is a validation
finding (NM004), not a reason to move it.

CSV files (``--csv``, ``--actions-csv``) are written by :func:`server.queries.frame_to_csv`,
the neutraliser the API's downloads use: contract field names (derived columns worked
out), ISO dates, text starting with ``= + - @``, tab, CR or LF prefixed with ``'``, and a
UTF-8 byte order mark so that Excel shows names and themes as typed.

Heavy imports (pandas, the reader, the reports) happen inside the commands so
that ``nearmiss --help`` and the other verbs start quickly.
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

EXIT_UNREADABLE = 2
VALIDATE_BATCH = 16  # workbooks validated together while the next ones are read


@dataclass
class _Read:
    """What reading the files gave: one entry per readable site, and the files that failed."""

    sites: list[dict] = field(default_factory=list)  # {"code", "file", "records", "saved"}
    findings: list[Any] = field(default_factory=list)  # DataFrames of findings with site_code
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def _err(message: str) -> None:
    click.echo(message, err=True)


def _check_outputs(outputs: list[tuple[str, Path | None]], force: bool) -> None:
    """Refuse before any work: an existing output without --force, a missing folder, or a wrong suffix."""
    seen: set[Path] = set()
    for option, path in outputs:
        if path is None:
            continue
        want = ".xlsx" if option == "--out" else ".csv"
        if path.suffix.lower() != want:
            raise click.BadParameter(f"the file name must end in {want}", param_hint=option)
        if path.resolve() in seen:
            raise click.BadParameter("two outputs name the same file", param_hint=option)
        seen.add(path.resolve())
        if path.exists() and not force:
            raise click.ClickException(f"{path} already exists; choose another name or add --force to replace it.")
        if not path.parent.is_dir():
            raise click.ClickException(f"folder {path.parent} does not exist.")


def _read(files: tuple[Path, ...], *, threads: int, today: dt.date, all_or_nothing: bool = False) -> _Read:
    """Read and validate every file, with a progress bar on stderr while they are read.

    ``all_or_nothing``: skip validation when some file could not be read (the caller stops then).
    """
    from addin.reader import read_workbooks
    from addin.validate import findings_frame, validate_results

    inputs = [f for f in files if f.suffix.lower() in (".xlsx", ".xlsm")]
    out = _Read()
    for f in files:
        if f not in inputs:
            out.unreadable.append((f.name, "Not an Excel workbook (.xlsx): nearmiss reads site logs saved as .xlsx."))
    # Workbooks are validated in batches as they are read: the checks (Python, holding the GIL) run
    # in this thread while the reading threads parse (Rust, GIL released), so both cores work.
    pending: list = []
    found: dict[int, list] = {}

    def validate_pending() -> None:
        batch = pending[:]
        pending.clear()
        for result, findings in zip(batch, validate_results(batch, today=today)):
            found[id(result)] = findings

    def done(result) -> None:  # noqa: ANN001
        bar.update(1)
        if result.ok:
            pending.append(result)
            if len(pending) >= VALIDATE_BATCH:
                validate_pending()

    with click.progressbar(length=len(inputs), label=f"Reading {len(inputs)} workbook(s)",
                           file=click.get_text_stream("stderr"), show_pos=True) as bar:
        results = read_workbooks(inputs, threads=threads, on_done=done)
    validate_pending()
    first_file: dict[str, str] = {}
    for path, result in zip(inputs, results):
        if not result.ok:
            out.unreadable.append((result.file, result.error or "unreadable"))
            continue
        code = _site_code(result.records)
        if not code:
            out.unreadable.append((result.file, "No site code on the Site sheet or in the Log: fill in the "
                                                "Site sheet's site code."))
            continue
        if code in first_file:
            out.unreadable.append((result.file, f"Site {code} is also in {first_file[code]}; only the first "
                                                "file of a site is used. Send each site's log once."))
            continue
        first_file[code] = result.file
        try:
            saved = dt.datetime.fromtimestamp(path.stat().st_mtime)
        except OSError:
            saved = None
        out.sites.append({"code": code, "file": result.file, "records": result.records, "saved": saved,
                          "result": result})
    results = [site.pop("result") for site in out.sites]
    tallies = []  # (site, errors, findings) of each site with findings
    if not (all_or_nothing and out.unreadable):
        # Each batch's rows were checked in one vectorised pass (the same findings as one site at a time).
        for site, result in zip(out.sites, results):
            mine = found[id(result)]
            out.findings.append(findings_frame(mine).assign(site_code=site["code"]))
            if mine:
                tallies.append((site, sum(f.severity == "error" for f in mine), len(mine)))
    for file, reason in out.unreadable:
        _err(f"Could not read {file}: {reason}")
    for site, errors, total in tallies:
        _err(f"{site['file']} ({site['code']}): {errors} error(s), {total - errors} warning(s); "
             f"`nearmiss validate {site['file']}` lists them.")
    return out


def _site_code(records) -> str:
    code = str(records.site.get("site_code") or "").strip().upper()
    if code:
        return code
    inc = records.incidents
    if "site_code" in inc.columns and inc["site_code"].notna().any():
        return str(inc["site_code"].dropna().astype(str).str.strip().str.upper().mode().iloc[0])
    return ""


def _frames(read: _Read):
    """Incidents, actions and exposure of every site with its ``site_code``, and the sites frame."""
    import numpy as np
    import pandas as pd

    from workbook_templates.records import field_names

    def stack(kind: str) -> pd.DataFrame:
        names = [n for n in field_names(kind) if n != "site_code"]
        frames = [getattr(site["records"], kind) for site in read.sites]
        if not frames:
            return pd.DataFrame(columns=["site_code", *names])
        if _alike(frames, names):  # the usual case: each column's arrays joined once, the site codes set at once
            codes = np.repeat(np.array([site["code"] for site in read.sites], dtype=object), [len(f) for f in frames])
            columns = {"site_code": pd.array(codes, dtype="str")}
            for name in names:
                if name in frames[0]:
                    arrays = [frame[name].array for frame in frames]  # one dtype (``_alike``)
                    columns[name] = type(arrays[0])._concat_same_type(arrays)  # the ExtensionArray interface
            return pd.DataFrame(columns, index=pd.RangeIndex(len(codes)), copy=False).reindex(
                columns=["site_code", *names])
        parts = [frame.reindex(columns=names).assign(site_code=site["code"]) for site, frame in zip(read.sites, frames)]
        out = pd.concat(parts, ignore_index=True)
        return out[["site_code", *names]]

    sites = pd.DataFrame([{**{k: v for k, v in s["records"].site.items() if not str(k).startswith("_")},
                           "site_code": s["code"], "file": s["file"]} for s in read.sites])
    for column in ("site_name", "setting", "provider", "cqc_location_id", "commissioners", "people_supported"):
        if column not in sites.columns:
            sites[column] = None
    return stack("incidents"), stack("actions"), stack("exposure"), sites


def _alike(frames: list, names: list[str]) -> bool:
    """True when every frame has the same ``names`` columns with the same dtypes (as the reader makes them)."""
    def kept(frame) -> list:  # noqa: ANN001
        dtypes = frame.dtypes
        return [(n, dtypes[n]) for n in names if n in dtypes.index]

    first = kept(frames[0])
    return all(kept(frame) == first for frame in frames[1:])


def _today(value: dt.datetime | None) -> dt.date:
    return value.date() if value else dt.date.today()


FILES = click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
TODAY = click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                     help="The date overdue and 'so far' are judged against (default: today), YYYY-MM-DD.")
THREADS = click.option("--threads", type=click.IntRange(1, 16), default=2, show_default=True,
                       help="Workbooks read at once.")
FORCE = click.option("--force", is_flag=True, help="Replace output files that already exist.")


@click.command("consolidate", short_help="Governance summary workbook from site logs.",
               help="Read site workbooks and write the area's governance summary workbook "
                    "(trends, SPC charts, overdue actions, themes, data quality).")
@FILES
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The governance workbook to write (.xlsx).")
@click.option("--csv", "incidents_csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every incident row to this CSV (contract field names, ISO dates).")
@click.option("--actions-csv", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every action row to this CSV.")
@click.option("--area", default="All sites", show_default=True, help="Name for the sites together.")
@TODAY
@THREADS
@FORCE
def consolidate_command(files: tuple[Path, ...], out: Path, incidents_csv: Path | None, actions_csv: Path | None,
                        area: str, today: dt.datetime | None, threads: int, force: bool) -> None:
    _check_outputs([("--out", out), ("--csv", incidents_csv), ("--actions-csv", actions_csv)], force)
    day = _today(today)
    read = _read(files, threads=threads, today=day)
    if not read.sites:
        _err("No workbook could be read; nothing was written.")
        sys.exit(EXIT_UNREADABLE)

    import pandas as pd

    from addin import trends
    from workbook_templates.contract import ACTIONS, INCIDENTS

    from .reports.governance import write_governance
    from .reports.xlsx import output_file

    incidents, actions, exposure, sites = _frames(read)
    settings = {s["code"]: dict(s["records"].site, site_code=s["code"]) for s in read.sites}
    summary = trends.area_summary({"incidents": incidents, "actions": actions, "exposure": exposure}, settings,
                                  today=day)
    findings = pd.concat(read.findings, ignore_index=True) if read.findings else None
    submissions = {s["code"]: {"file": s["file"], "saved": s["saved"]} for s in read.sites}
    try:
        with output_file(out, force=force) as tmp:
            write_governance(summary, tmp, incidents=incidents, actions=actions, findings=findings,
                             unreadable=read.unreadable, submissions=submissions, area=area)
        for path, frame, sheet in ((incidents_csv, incidents, INCIDENTS), (actions_csv, actions, ACTIONS)):
            if path is not None:
                from .queries import frame_to_csv, with_derived  # only here: it brings in SQLAlchemy (0.5 s)

                with output_file(path, force=force) as tmp:
                    # utf-8-sig: Excel reads the names of sites and themes right only with the BOM
                    tmp.write_text(frame_to_csv(with_derived(frame, sheet, today=day)), encoding="utf-8-sig",
                                   newline="")
    except FileExistsError as exc:
        raise click.ClickException(f"{exc} already exists; add --force to replace it.") from None
    n_sites = len(read.sites)
    click.echo(f"Wrote {out}: {n_sites} site(s), {summary['reports']['total']} report(s) over "
               f"{len(summary['months'])} month(s), {0 if findings is None else len(findings)} finding(s).")
    for path, label in ((incidents_csv, "incident"), (actions_csv, "action")):
        if path is not None:
            n = len(incidents) if label == "incident" else len(actions)
            click.echo(f"Wrote {path}: {n} {label} row(s).")
    if read.unreadable:
        _err(f"{len(read.unreadable)} file(s) could not be read and are left out (listed on the Data quality "
             "sheet).")
        sys.exit(EXIT_UNREADABLE)


def _period(ctx, param, value: str) -> Any:
    from .reports.commissioner_return import parse_period

    try:
        return parse_period(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("return", short_help="Commissioner return for a quarter or month.",
               help="Write the commissioner return for a period from site workbooks: counts by "
                    "category and harm, notifications, actions, themes, SPC signals and rates.")
@FILES
@click.option("--period", required=True, callback=_period,
              help="A calendar quarter, e.g. 2025-Q4 (October to December 2025), or a month, e.g. 2025-11.")
@click.option("--commissioner", default=None,
              help="Only the sites that name this commissioner on their Site sheet (case ignored).")
@click.option("--suppress-below", type=click.IntRange(min=3), default=None,
              help="Hide counts from 1 to N-1 as * and round the rest to the nearest 5, for a copy that leaves "
                   "the contract relationship.")
@click.option("--suppress", is_flag=True,
              help="Small-number suppression as NHS Digital publishes it: 1-7 hidden (same as --suppress-below 8).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The return workbook to write (.xlsx).")
@TODAY
@THREADS
@FORCE
def return_command(files: tuple[Path, ...], period, commissioner: str | None, suppress_below: int | None,
                   suppress: bool, out: Path, today: dt.datetime | None, threads: int, force: bool) -> None:
    from .reports import suppression

    if suppress and suppress_below is not None:
        raise click.UsageError("use --suppress or --suppress-below N, not both.")
    threshold = suppression.NHS_DIGITAL_THRESHOLD if suppress else suppress_below
    _check_outputs([("--out", out)], force)
    day = _today(today)
    if period.start.date() > day:
        raise click.BadParameter(f"{period.code} has not started yet (today is {day.isoformat()}).",
                                 param_hint="--period")
    read = _read(files, threads=threads, today=day, all_or_nothing=True)
    if read.unreadable:
        _err("Nothing was written: a return needs every site's log. Fix or leave out the files above.")
        sys.exit(EXIT_UNREADABLE)

    from .reports.commissioner_return import build_return, write_return
    from .reports.xlsx import output_file

    incidents, actions, exposure, sites = _frames(read)
    try:
        data = build_return(incidents, actions, exposure, sites, period=period, commissioner=commissioner,
                            suppress_below=threshold, today=day)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        with output_file(out, force=force) as tmp:
            write_return(data, tmp)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc} already exists; add --force to replace it.") from None
    note = "" if threshold is None else f", small numbers suppressed (1 to {threshold - 1} shown as *)"
    click.echo(f"Wrote {out}: {data.period.label}, {len(data.site_codes)} site(s) "
               f"({', '.join(data.site_codes)}){note}.")
