"""Messy legacy logs, made from synthetic data, for the converter's tests.

Real managers' logs are never used.  This builds what they look like: a title
block with merged cells, the header on row 4, one sheet per month, renamed
columns, text dates in UK order (several styles) mixed with real dates and
Excel serial numbers, blank rows, a total row, a hidden column, residents'
(made-up) names, a separate actions sheet and a summary sheet.  It returns,
with the file, what each converted row must become.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pandas as pd
from openpyxl.styles import Font

from workbook_templates.synthetic import make_site

END = dt.date(2026, 10, 31)

# Made-up names only.  "Jo Bloggs" and "Kim Nobody" stand for staff who reported.
RESIDENTS = ["Amy Example", "Bob Sample", "Cara Testperson", "Dan Placeholder", "Eve Madeup", "Finn Fictional"]
STAFF = ["Jo Bloggs", "Kim Nobody"]

CATEGORY_LABELS = {
    "falls": "Slip/trip/fall", "medication": "Med error", "pressure_care": "Pressure sore",
    "safeguarding": "Safeguarding", "behaviour": "Challenging behaviour", "missed_or_late_visit": "Missed call",
    "infection": "Infection", "equipment": "Equipment failure", "environment": "Environment",
    "information_governance": "Data breach", "deterioration_escalation": "Deterioration",
    "moving_and_handling": "Manual handling", "choking": "Choking", "self_harm": "Self harm", "death": "Death",
    "other": "Other",
}
HARM_LABELS = {"none": "No harm", "low": "Minor", "moderate": "Moderate", "severe": "Major", "fatal": "Death"}
STATUS_LABELS = {"open": "Open", "under_review": "Under review", "closed": "Complete"}
EVENT_LABELS = {"near_miss": ["Y", "yes", True, "Near miss"], "incident": ["N", "no", False, "Incident"]}
ACTION_STATUS_LABELS = {"open": "Not started", "in_progress": "Ongoing", "done": "Completed"}
HEADERS = ["Ref No.", "Date of Incident", "Time", "Resident name", "Type of incident", "What happened?",
           "Near miss? (Y/N)", "Harm", "Action taken", "Reported by", "Date reported", "Status", "Room",
           "Manager comments"]
ACTION_HEADERS = ["Action No", "Incident No", "Action required", "Who", "Date raised", "Target date", "Progress",
                  "Date completed"]
UNMAPPABLE_CATEGORY = "Wobbly moment"
BAD_DATE = "sometime in spring"
DATE_STYLES = ("date", "dmy", "ordinal", "dmy2", "iso", "serial")


@dataclass
class ExpectedRow:
    sheet: str
    row: int
    legacy_ref: int
    name: str
    record: dict  # the synthetic incident this row was written from (contract codes)
    date_style: str
    unmappable_category: bool = False
    bad_reported_date: bool = False
    name_in_description: bool = False


@dataclass
class LegacyLog:
    path: Path
    site_code: str
    rows: list[ExpectedRow]
    actions: pd.DataFrame  # the synthetic actions written to the Actions sheet (incident_refs as legacy numbers)
    names: list[str]  # every personal name written anywhere in the file
    blank_rows: int
    total_rows: int
    sheets: list[str]
    duplicate_ref: int | None = None
    extra: dict = field(default_factory=dict)


def _write_date(value: pd.Timestamp, style: str):
    d = value.date()
    if style == "date":
        return dt.datetime(d.year, d.month, d.day)
    if style == "dmy":
        return d.strftime("%d/%m/%Y")
    if style == "ordinal":
        suffix = "th" if 11 <= d.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
        return f"{d.day}{suffix} {d.strftime('%B %Y')}"
    if style == "dmy2":
        return d.strftime("%d-%m-%y")
    if style == "iso":
        return d.isoformat()
    if style == "serial":
        return (d - dt.date(1899, 12, 30)).days
    raise ValueError(style)


def make_legacy_log(path: Path, *, site_code: str = "OAK", site_name: str = "Oakview House", seed: int = 3,
                    months: int = 3, reports_per_month: float = 7.0) -> LegacyLog:
    site = make_site(site_code, site_name, months=months, end=END, seed=seed, reports_per_month=reports_per_month)
    inc = site.incidents.reset_index(drop=True)
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    expected: list[ExpectedRow] = []
    names_used: set[str] = set()
    blank_rows = total_rows = 0
    legacy_ref_of: dict[str, int] = {}
    counter = 0
    sheets = []
    months_list = sorted({(t.year, t.month) for t in inc["occurred_at"]})
    duplicate_ref = None
    for m_index, (year, month) in enumerate(months_list):
        name = dt.date(year, month, 1).strftime("%b %Y")
        sheets.append(name)
        ws = wb.create_sheet(name)
        last_col = len(HEADERS)
        ws.cell(1, 1, site_name).font = Font(bold=True, size=14)
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=last_col)
        ws.cell(2, 1, f"Incident and near miss log - {dt.date(year, month, 1):%B %Y}")
        ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=last_col)
        for c, header in enumerate(HEADERS, start=1):
            ws.cell(4, c, header).font = Font(bold=True)
        ws.column_dimensions["M"].hidden = True  # "Room"
        r = 5
        month_rows = inc[(inc["occurred_at"].dt.year == year) & (inc["occurred_at"].dt.month == month)]
        for k, (_, rec) in enumerate(month_rows.iterrows()):
            counter += 1
            legacy_ref = counter
            if m_index == 1 and k == 2:
                legacy_ref = counter - 1  # a reference typed twice
                duplicate_ref = legacy_ref
            else:
                legacy_ref_of[rec["incident_ref"]] = legacy_ref
            person = RESIDENTS[int(rec["person_ref"][-3:]) % len(RESIDENTS)]
            shown = person.lower() if counter % 11 == 0 else person
            names_used.add(person)
            style = DATE_STYLES[counter % len(DATE_STYLES)]
            event_label = EVENT_LABELS[rec["event_type"]][counter % 4]
            unmappable = counter == 4
            bad_date = counter == 6
            in_description = counter % 5 == 0
            description = rec["description"]
            if in_description:
                description = f"{description} {person} was reassured and {person.split()[0]} settled."
            values = [
                legacy_ref,
                _write_date(rec["occurred_at"], style),
                rec["occurred_time"] if counter % 2 else dt.time(*map(int, rec["occurred_time"].split(":"))),
                shown,
                UNMAPPABLE_CATEGORY if unmappable else CATEGORY_LABELS[rec["category"]],
                description,
                event_label,
                HARM_LABELS[rec["physical_harm"]],
                rec["immediate_action"],
                STAFF[counter % 2],
                BAD_DATE if bad_date else _write_date(rec["reported_at"], DATE_STYLES[(counter + 1) % 6]),
                STATUS_LABELS[rec["status"]],
                f"Room {counter % 20 + 1}",
                "Discussed at handover" if counter % 3 == 0 else None,
            ]
            for c, value in enumerate(values, start=1):
                cell = ws.cell(r, c, value)
                if isinstance(value, dt.datetime):
                    cell.number_format = "dd/mm/yyyy"
            expected.append(ExpectedRow(sheet=name, row=r, legacy_ref=legacy_ref, name=person, record=rec.to_dict(),
                                        date_style=style, unmappable_category=unmappable,
                                        bad_reported_date=bad_date, name_in_description=in_description))
            r += 1
            if k % 4 == 3:
                r += 1  # a blank row
                blank_rows += 1
        # A blank row, then a total row.
        r += 1
        blank_rows += 1
        if m_index % 2:
            ws.cell(r, 1, "TOTAL:")
            ws.cell(r, 2, f"=COUNTA(B5:B{r - 2})")  # no saved value: reads as empty
        else:
            ws.cell(r, 1, "Total")
            ws.cell(r, 2, len(month_rows))
        total_rows += 1

    # The action tracker, its own sheet: title on row 1, header on row 3.
    actions = site.actions.copy()
    actions = actions[actions["incident_refs"].isin(legacy_ref_of)].reset_index(drop=True)
    ws = wb.create_sheet("Actions")
    ws.cell(1, 1, "Action plan").font = Font(bold=True, size=14)
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(ACTION_HEADERS))
    for c, header in enumerate(ACTION_HEADERS, start=1):
        ws.cell(3, c, header)
    for i, (_, a) in enumerate(actions.iterrows()):
        values = [i + 1, legacy_ref_of[a["incident_refs"]], a["action"], a["owner_role"].replace("_", " ").title(),
                  a["raised_date"].to_pydatetime(), a["due_date"].strftime("%d/%m/%Y"),
                  ACTION_STATUS_LABELS[a["status"]],
                  a["completed_date"].to_pydatetime() if pd.notna(a["completed_date"]) else None]
        for c, value in enumerate(values, start=1):
            ws.cell(4 + i, c, value)

    # A summary sheet managers keep: not part of the log.
    ws = wb.create_sheet("Summary")
    ws.append(["Month", "Falls", "Medication", "All reports"])
    for name in sheets:
        ws.append([name, 1, 2, 3])

    wb.save(path)
    return LegacyLog(path=path, site_code=site_code, rows=expected, actions=actions,
                     names=sorted(names_used) + STAFF, blank_rows=blank_rows, total_rows=total_rows, sheets=sheets,
                     duplicate_ref=duplicate_ref)


def write_sheets(path: Path, sheets: dict[str, list[list]], *, hidden_sheets: tuple[str, ...] = (),
                 merged: dict[str, list[str]] | None = None) -> Path:
    """A small workbook from rows of values per sheet (None leaves a cell empty), for focused tests."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    ws.cell(r, c, value)
        for ref in (merged or {}).get(name, []):
            ws.merge_cells(ref)
        if name in hidden_sheets:
            ws.sheet_state = "hidden"
    wb.save(path)
    return path
