"""Synthetic sites, their workbooks and readers of the report workbooks, shared by tests/test_reports_*.py.

No tests here: only data and small readers.  The expected figures are computed in
each test module, plainly, from the frames made here -- never with the code under test.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
from click.testing import CliRunner

from server.cli import main
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.codelists import CODE_LISTS
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site

TODAY = DATA_END  # 2026-10-31
PERIOD = "2025-Q4"
P_START, P_END = pd.Timestamp("2025-10-01"), pd.Timestamp("2025-12-31")
NORTH, SOUTH = "Northshire County Council", "Southshire ICB"
# (code, name, setting, seed, commissioners, reports per month, flaw rate)
SITES = [
    ("OAK", "Oakview House", "care_home", 11, NORTH, 12.0, 0.0),
    ("RIV", "Riverside Homecare", "homecare", 12, f"{NORTH}, {SOUTH}", 14.0, 0.03),
    ("ELM", "Elm Court", "supported_living", 13, SOUTH, 6.0, 0.0),
]
FORMULA_THEME = '=HYPERLINK("http://example.invalid","click")'
AT_THEME = "@sum(1)"
FORMULA_DESCRIPTION = "=1+2 then the person was made safe"
MINUS_ACTION = "-2+3 check the rota"


def make_records(months: int = 24, scale: float = 1.0) -> dict[str, SiteRecords]:
    """The three synthetic sites, with a few hostile strings, a falls spike and a missing exposure month.

    ``months`` must reach back to October 2025 (13 or more) so that the Q4 2025 return has data.
    """
    out = {}
    for code, name, setting, seed, commissioners, rate, flaws in SITES:
        records = make_site(code, name, setting=setting, end=TODAY, seed=seed, reports_per_month=rate * scale,
                            months=months, flaw_rate=flaws, commissioners=commissioners,
                            beds=30 if setting == "care_home" else 20)
        out[code] = records
    oak = out["OAK"].incidents
    closed_q4 = oak.index[(oak["status"] == "closed") & (oak["closed_date"] >= P_START)
                          & (oak["closed_date"] <= P_END)]
    oak.loc[closed_q4[0], "learning_theme"] = FORMULA_THEME
    oak.loc[closed_q4[1], "learning_theme"] = AT_THEME
    oak.loc[oak.index[0], "description"] = FORMULA_DESCRIPTION
    out["OAK"].actions.loc[out["OAK"].actions.index[0], "action"] = MINUS_ACTION
    elm = out["ELM"].exposure
    elm.loc[elm["month"] == pd.Timestamp("2025-11-01"), "care_hours"] = float("nan")
    # A falls spike in December 2025 at Oakview: a concern signal in the Q4 return.
    template = oak[(oak["category"] == "falls") & (oak["event_type"] == "incident")].iloc[0]
    extra = []
    for i in range(14):
        row = template.copy()
        day = pd.Timestamp("2025-12-01") + pd.Timedelta(days=2 * i)
        row["incident_ref"] = f"OAK-2025-{9000 + i}"
        row["occurred_at"] = row["reported_at"] = day
        row["physical_harm"] = "low"
        extra.append(row)
    # A notifiable event not yet notified, and a new pressure ulcer with no grade.
    row = template.copy()
    row["incident_ref"], row["occurred_at"], row["reported_at"] = "OAK-2025-9100", P_START, P_START
    row["physical_harm"], row["cqc_notification"], row["cqc_notified_date"] = "severe", "reg18_serious_injury", pd.NaT
    row["response_tier"] = "serious"
    extra.append(row)
    row = template.copy()
    row["incident_ref"], row["occurred_at"], row["reported_at"] = "OAK-2025-9101", P_START, P_START
    row["category"], row["subcategory"], row["pressure_ulcer_grade"] = "pressure_care", "new_pressure_ulcer", ""
    extra.append(row)
    out["OAK"].incidents = pd.concat([oak, pd.DataFrame(extra)], ignore_index=True)
    return out


def write_workbooks(records: dict[str, SiteRecords], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {code: build_workbook(folder / f"{code.lower()}.xlsx", r) for code, r in records.items()}


def shared_dir(tmp_path_factory) -> Path:
    """A folder of this pytest run shared by its xdist workers (the run's base temp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """Run ``build(folder)`` once per test run, whichever worker asks first; the others reuse its result.

    ``build`` writes its files into ``folder`` and returns JSON-ready data, kept in ``result.json``.
    """
    folder = shared_dir(tmp_path_factory) / f"reports-{name}"
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "result.json"
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(build(folder)))
        return folder, json.loads(done.read_text())


_RECORDS: dict[tuple, dict[str, SiteRecords]] = {}


def site_workbooks(tmp_path_factory, *, months: int = 24, scale: float = 0.6):
    """(records, workbook paths): the workbooks are written once per test run and shared by the workers.

    The records are remade (deterministically, from their seeds) in each worker.  Treat both as
    read-only: :func:`frames` gives copies to change.
    """
    key = (months, scale)
    if key not in _RECORDS:
        _RECORDS[key] = make_records(months, scale)
    records = _RECORDS[key]

    def build(folder: Path) -> dict:
        return {code: str(path) for code, path in write_workbooks(records, folder).items()}

    _, paths = once(tmp_path_factory, f"sites-{months}-{scale}", build)
    return records, {code: Path(path) for code, path in paths.items()}


def cli_result(folder: Path, *args) -> dict:
    """Run the command and keep what a test looks at, JSON-ready (for :func:`once`)."""
    result = run(*args)
    return {"exit_code": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
            "output": result.output}


def frames(records: dict[str, SiteRecords], codes=None):
    """Incidents, actions and exposure of the chosen sites with a site_code column (plain concat)."""
    codes = list(records) if codes is None else codes
    inc = pd.concat([records[c].incidents.assign(site_code=c) for c in codes], ignore_index=True)
    act = pd.concat([records[c].actions.assign(site_code=c) for c in codes], ignore_index=True)
    expo = pd.concat([records[c].exposure.assign(site_code=c) for c in codes], ignore_index=True)
    return inc, act, expo


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def read_table(wb: openpyxl.Workbook, name: str) -> pd.DataFrame:
    """A table of the return by its defined name: first column as index, header row as columns."""
    sheet, ref = next(iter(wb.defined_names[name].destinations))
    rows = [[c.value for c in row] for row in wb[sheet][ref.replace("$", "")]]
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    return frame.set_index(rows[0][0])


def sheet_rows(ws) -> list[list]:
    return [[c.value for c in row] for row in ws.iter_rows()]


def find_row(ws, first_cell: str) -> int:
    """1-based row whose column A holds ``first_cell``."""
    for row in ws.iter_rows(min_col=1, max_col=1):
        if row[0].value == first_cell:
            return row[0].row
    raise KeyError(first_cell)


def table_below(ws, header_first: str, *, stop_blank: bool = True) -> pd.DataFrame:
    """The table whose header row starts with ``header_first`` in column A, down to a blank row or a note."""
    top = find_row(ws, header_first)
    header = [c.value for c in ws[top]]
    width = max(i for i, v in enumerate(header) if v is not None) + 1
    rows = []
    for row in ws.iter_rows(min_row=top + 1, max_col=width, values_only=True):
        if stop_blank and (row[0] is None or isinstance(row[0], str) and all(v is None for v in row[1:])):
            break  # a blank row, or a note under the table
        rows.append(list(row))
    return pd.DataFrame(rows, columns=header[:width])


def sheet_xml(path: Path) -> dict[str, str]:
    """Sheet name -> worksheet XML, and "sharedStrings" -> the shared strings XML."""
    with zipfile.ZipFile(path) as zf:
        workbook = zf.read("xl/workbook.xml").decode()
        rels = zf.read("xl/_rels/workbook.xml.rels").decode()
        targets = dict(re.findall(r'Id="(rId\d+)"[^>]*Target="([^"]+)"', rels))
        targets.update({k: v for v, k in re.findall(r'Target="([^"]+)"[^>]*Id="(rId\d+)"', rels)})
        out = {}
        for name, rid in re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="(rId\d+)"', workbook):
            out[name] = zf.read("xl/" + targets[rid].lstrip("/").removeprefix("xl/")).decode()
        out["sharedStrings"] = zf.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in zf.namelist() \
            else ""
        out["_names"] = "\n".join(zf.namelist())
    return out


def category_word(code: str) -> str:
    text = CODE_LISTS["category"][code]
    return text[:1].upper() + text[1:]


def in_period(dates: pd.Series, start=P_START, end=P_END) -> pd.Series:
    d = pd.to_datetime(dates)
    return (d >= start) & (d <= end)


def text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "").astype(str).str.strip()


__all__ = ["TODAY", "PERIOD", "SITES", "make_records", "write_workbooks", "site_workbooks", "once", "cli_result",
           "frames", "run", "read_table",
           "sheet_rows", "sheet_xml", "find_row", "table_below", "category_word", "in_period", "text", "dt"]
