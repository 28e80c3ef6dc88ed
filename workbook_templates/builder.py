"""Builds the site workbook from the contract with xlsxwriter.

The layout, drop-downs, validation messages and derived formulas all come from
``contract.py`` and ``codelists.py``; this module only knows how to lay them
out.  ``build_workbook`` writes an empty template or one holding records (the
converter, the demo data and the benchmarks use the latter).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from . import dashboard, guide
from .codelists import CODE_LISTS, REVIEW_TARGET_DAYS
from .contract import (
    EXPOSURE_FIELDS, EXPOSURE_FIRST_COLUMN, EXPOSURE_MONTHS, EXPOSURE_TABLE, LIMITS, LISTS_SHEET, SITE_FIELDS,
    SITE_SHEET, TABLE_SHEETS, Field, TableSheet, column_letter,
)
from .records import SiteRecords
from .text_safety import MAX_CELL_TEXT, XLSXWRITER_OPTIONS, write_text

# Never turn user text into formulas or links (see ../shared/spec/security.md and text_safety.py).
WORKBOOK_OPTIONS = XLSXWRITER_OPTIONS
DEFAULT_FONT = {"font_name": "Arial", "font_size": 10}
DATE_FORMAT = "dd/mm/yyyy"
BLANK_TABLE_ROWS = 10  # rows an empty template's tables start with; Excel extends them as people type
TIER_COLOURS = {"low": "#C6EFCE", "moderate": "#FFEB9C", "serious": "#FFC7CE"}
OVERDUE_FILL = "#F8CBAD"
MAX_TEXT = MAX_CELL_TEXT  # Excel's cell limit; text_safety.cell_text cuts longer text with a visible marker


def list_range_name(list_name: str) -> str:
    return f"list_{list_name}"


def build_workbook(
    path: str | Path,
    records: SiteRecords | None = None,
    *,
    site: dict | None = None,
    first_month: dt.date | None = None,
    dashboard_month: dt.date | None = None,
) -> Path:
    """Write a site workbook to ``path``: an empty template, or one holding ``records``.

    ``site`` fills the Site sheet when no records are given; ``first_month``
    starts the exposure table of an empty template (default: April of the
    previous financial year, so the table covers three financial years).
    ``dashboard_month`` fixes the Dashboard's last month shown (default: a
    formula giving the current month), e.g. for a demo or a report "as at".
    """
    path = Path(path)
    records = records or SiteRecords(site=dict(site or {}))
    wb = xlsxwriter.Workbook(str(path), {**WORKBOOK_OPTIONS, "default_format_properties": DEFAULT_FONT})
    wb.set_properties({"title": f"nearmiss log: {records.site.get('site_name', '')}",
                       "subject": "Near-miss and incident log", "comments": "Made with nearmiss"})
    fmt = _formats(wb)

    guide_ws = wb.add_worksheet(guide.SHEET)
    site_ws = wb.add_worksheet(SITE_SHEET)
    log_ws = wb.add_worksheet(TABLE_SHEETS["incidents"].sheet)
    actions_ws = wb.add_worksheet(TABLE_SHEETS["actions"].sheet)
    dash_ws = wb.add_worksheet(dashboard.SHEET)
    lists_ws = wb.add_worksheet(LISTS_SHEET)

    _write_lists(wb, lists_ws)
    guide.write(guide_ws, fmt)
    _write_site(site_ws, records, fmt, first_month)
    for ws, sheet, frame in ((log_ws, TABLE_SHEETS["incidents"], records.incidents),
                             (actions_ws, TABLE_SHEETS["actions"], records.actions)):
        _write_table_sheet(ws, sheet, frame, fmt, records.site.get("site_name", ""))
    _format_log(log_ws, fmt, last_template_row(len(records.incidents)))
    _format_actions(actions_ws, fmt, last_template_row(len(records.actions)))
    dashboard.write(wb, dash_ws, fmt, dashboard_month)
    log_ws.activate()
    wb.close()
    return path


def _formats(wb: xlsxwriter.Workbook) -> dict[str, Any]:
    base = {"font_name": "Arial", "font_size": 10, "valign": "top"}
    f = {
        "text": {}, "wrap": {"text_wrap": True}, "date": {"num_format": DATE_FORMAT},
        "time": {"num_format": "hh:mm"},
        "int": {"num_format": "0"}, "number": {"num_format": "#,##0"}, "pct": {"num_format": "0%"},
        "month": {"num_format": "mmm yyyy"},
        "header": {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1F4E79", "text_wrap": True,
                   "valign": "vcenter", "border": 1},
        "title": {"bold": True, "font_size": 16, "font_color": "#1F4E79"},
        "h2": {"bold": True, "font_size": 12, "font_color": "#1F4E79"},
        "label": {"bold": True},
        "input": {"bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF"},
        "input_date": {"bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF", "num_format": "mmm yyyy"},
        "note": {"italic": True, "font_color": "#595959", "text_wrap": True},
        "note_line": {"italic": True, "font_color": "#595959"},
        "input_number": {"bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF", "num_format": "#,##0"},
        "derived": {"bg_color": "#F2F2F2", "font_color": "#404040"},
        "rate": {"num_format": "0.00"},
        "header_month": {"bold": True, "font_color": "#FFFFFF", "bg_color": "#1F4E79", "valign": "vcenter",
                         "border": 1, "num_format": "mmm yy", "align": "center"},
        "total_label": {"bold": True, "top": 1},
        "total": {"bold": True, "top": 1},
        "total_number": {"bold": True, "top": 1, "num_format": "#,##0"},
        "total_pct": {"bold": True, "top": 1, "num_format": "0%"},
        "total_rate": {"bold": True, "top": 1, "num_format": "0.00"},
    }
    out = {k: wb.add_format({**base, **v}) for k, v in f.items()}
    out["tier"] = {t: wb.add_format({"bg_color": c}) for t, c in TIER_COLOURS.items()}
    out["overdue"] = wb.add_format({"bg_color": OVERDUE_FILL, "font_color": "#9C0006"})
    out["harm_severe"] = wb.add_format({"bold": True, "font_color": "#9C0006"})
    out["done"] = wb.add_format({"font_color": "#7F7F7F"})
    return out


def _write_lists(wb: xlsxwriter.Workbook, ws) -> None:
    """One column per code list on a hidden sheet, each a named range the drop-downs use."""
    for col, (name, values) in enumerate(CODE_LISTS.items()):
        ws.write_string(0, col, name)
        for row, code in enumerate(values, start=1):
            ws.write_string(row, col, code)
        letter = xl_col_to_name(col)
        wb.define_name(list_range_name(name), f"='{LISTS_SHEET}'!${letter}$2:${letter}${len(values) + 1}")
    ws.hide()


SITE_NOTE = [
    "Rates are per 1,000 occupied bed days (care homes)",
    "or per 1,000 delivered care hours (homecare,",
    "supported living, complex care at home).",
    "Fill in one exposure figure a month in the table.",
]


def _write_site(ws, records: SiteRecords, fmt: dict, first_month: dt.date | None) -> None:
    ws.set_column(0, 0, 22)
    ws.set_column(1, 1, 34)
    ws.set_column(2, 2, 3)
    ws.set_row(0, 30)
    ws.write_string(0, 0, "Field", fmt["header"])
    ws.write_string(0, 1, "Value", fmt["header"])
    for row, f in enumerate(SITE_FIELDS, start=1):
        ws.write_string(row, 0, f.label, fmt["label"])
        ws.write_blank(row, 1, None, fmt["input"])
        _write_value(ws, row, 1, f, records.site.get(f.name), fmt["input"])
        if f.type == "code":
            ws.data_validation(row, 1, row, 1, _list_validation(f))
        elif f.type == "int":
            ws.data_validation(row, 1, row, 1, {"validate": "integer", "criteria": ">=", "value": 0,
                                                "ignore_blank": True, "input_title": f.label[:32],
                                                "input_message": f.help[:255], "error_title": f.label[:32],
                                                "error_message": "Type a whole number (0 or more)."})
        else:
            ws.data_validation(row, 1, row, 1, {"validate": "any", "input_title": f.label[:32],
                                                "input_message": f.help[:255]})
    note_row = len(SITE_FIELDS) + 2
    for i, line in enumerate(SITE_NOTE):
        ws.write_string(note_row + i, 0, line, fmt["note_line"])

    exposure = records.exposure
    if exposure is None or exposure.empty:
        start = pd.Timestamp(first_month or _default_first_month(dt.date.today()))
        exposure = pd.DataFrame({"month": pd.date_range(start, periods=EXPOSURE_MONTHS, freq="MS")})
    first_col = EXPOSURE_FIRST_COLUMN
    n = len(exposure)
    for i, f in enumerate(EXPOSURE_FIELDS):
        ws.set_column(first_col + i, first_col + i, 13 if i else 11)
        column = exposure[f.name] if f.name in exposure else pd.Series([None] * n)
        cell_format = fmt["month"] if f.name == "month" else fmt["input_number"]
        for r, value in enumerate(column, start=1):
            if f.name != "month":
                ws.write_blank(r, first_col + i, None, cell_format)
            _write_value(ws, r, first_col + i, f, value, cell_format)
    ws.add_table(0, first_col, n, first_col + len(EXPOSURE_FIELDS) - 1, {
        "name": EXPOSURE_TABLE, "style": "Table Style Light 9",
        "columns": [{"header": f.label, "header_format": fmt["header"]} for f in EXPOSURE_FIELDS],
    })
    ws.data_validation(1, first_col, max(n, EXPOSURE_MONTHS), first_col, {
        "validate": "date", "criteria": ">=", "value": dt.date(2000, 1, 1), "ignore_blank": True,
        "input_title": "Month", "input_message": "The first day of the month, e.g. 01/04/2026.",
        "error_title": "Month", "error_message": "Type the first day of the month as a date, e.g. 01/04/2026.",
    })
    ws.data_validation(1, first_col + 1, max(n, EXPOSURE_MONTHS), first_col + len(EXPOSURE_FIELDS) - 1, {
        "validate": "decimal", "criteria": ">=", "value": 0, "ignore_blank": True,
        "input_title": "Exposure", "input_message": "Bed days (care homes) or care hours delivered this month.",
        "error_title": "Exposure", "error_message": "Type a number of bed days, care hours or visits (0 or more).",
    })
    ws.freeze_panes(1, 0)
    ws.set_landscape()
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(0)
    ws.set_header(f"&L&\"Arial,Bold\"{SITE_SHEET}{_header_text(records.site.get('site_name', ''))}&R&D")
    ws.set_tab_color("#7F6000")


def _default_first_month(today: dt.date) -> dt.date:
    fy_start_year = today.year if today.month >= 4 else today.year - 1
    return dt.date(fy_start_year - 1, 4, 1)


def _write_table_sheet(ws, sheet: TableSheet, frame: pd.DataFrame, fmt: dict, site_name: str = "") -> None:
    n = len(frame) if frame is not None else 0
    data_rows = n or BLANK_TABLE_ROWS
    for col, f in enumerate(sheet.fields):
        cell_format = _column_format(f, fmt)
        ws.set_column(col, col, column_width(f), cell_format)
        if f.type == "derived" or n == 0 or f.name not in frame:
            continue
        for r, value in enumerate(frame[f.name].tolist(), start=1):
            _write_value(ws, r, col, f, value, cell_format)
    columns = []
    for f in sheet.fields:
        column = {"header": f.label, "header_format": fmt["header"]}
        if f.type == "derived":
            # A calculated column, so Excel fills the formula into every row the table grows by.
            column.update(formula=table_formula(sheet, f.name), format=fmt["derived"])
        columns.append(column)
    ws.add_table(0, 0, data_rows, len(sheet.fields) - 1, {
        "name": sheet.table, "style": "Table Style Medium 2", "columns": columns,
    })
    # Write the same formulas again with "" as their saved result (add_table saves 0), so a
    # reader that does not recalculate sees blank derived cells on rows nobody filled in.
    for col, f in enumerate(sheet.fields):
        if f.type == "derived":
            formula = table_formula(sheet, f.name)
            for r in range(1, data_rows + 1):
                ws.write_formula(r, col, formula, fmt["derived"], "")
    last = last_template_row(n)
    _add_validations(ws, sheet, last)
    ws.freeze_panes(1, 1)
    ws.set_row(0, 42)
    ws.set_landscape()
    ws.set_paper(9)  # A4
    ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    # Too wide for one readable page: print a band of rows across pages (about 80 % scale for the
    # log), repeating the header row and the reference column on each page.
    ws.fit_to_pages(sheet_pages_wide(sheet), 0)
    ws.print_across()
    ws.repeat_rows(0)
    ws.repeat_columns(0)
    ws.set_header(f"&L&\"Arial,Bold\"{sheet.sheet}{_header_text(site_name)}&R&D")
    ws.set_footer("&LNo names, dates of birth or NHS numbers&RPage &P of &N")
    ws.set_tab_color(sheet.tab_colour)


def table_formula(sheet: TableSheet, name: str) -> str:
    """A derived field's formula in a form that is the same on every row.

    ``INDEX($L:$L,ROW())`` is this row's cell of column L.  One formula text for
    the whole column makes it an Excel calculated column (filled in as the
    table grows, with no "inconsistent formula" marks), and unlike structured
    ``[@column]`` references LibreOffice evaluates it too.
    """
    cells = {n: f"INDEX(${column_letter(i)}:${column_letter(i)},ROW())" for i, n in enumerate(sheet.names)}
    return sheet.field(name).formula.format(**cells)


def last_template_row(n_records: int = 0) -> int:
    """0-based last row that validation and formatting cover: the template's rows, or more records."""
    return max(LIMITS["template_rows"], n_records)


def column_width(f: Field) -> float:
    """The contract's width, widened so each word of the bold, wrapped header fits on a line."""
    return max(f.width, max(len(word) for word in f.label.split()) + 2)


def sheet_pages_wide(sheet: TableSheet) -> int:
    """Pages across for printing at roughly 80 % or more: about 165 characters of width per A4 landscape."""
    width = sum(column_width(f) for f in sheet.fields)
    return max(1, math.ceil(width / 165))


def _header_text(site_name: str) -> str:
    site_name = (site_name or "").strip().replace("&", "&&")[:60]
    return f": {site_name}" if site_name else ""


def _column_format(f: Field, fmt: dict):
    return {"date": fmt["date"], "time": fmt["time"], "int": fmt["int"], "number": fmt["number"],
            "longtext": fmt["wrap"], "derived": fmt["derived"]}.get(f.type, fmt["text"])


_TIME_TEXT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def _write_value(ws, row: int, col: int, f: Field, value: Any, cell_format=None) -> None:
    """Write one value with an explicit type: user text is always a string, never a formula.

    Dates and times become real Excel dates and times ("14:30" in a time column
    too, as if typed); text that is not one (e.g. "31/13/2026" from an old log)
    stays text for the validator to point at.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT or value is pd.NA:
        return
    if isinstance(value, dt.time):
        ws.write_datetime(row, col, value, cell_format)
    elif isinstance(value, (dt.date, pd.Timestamp)) or (f.type == "date" and not isinstance(value, str)):
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            return
        ws.write_datetime(row, col, stamp.to_pydatetime(), cell_format)
    elif f.type == "time" and isinstance(value, str) and _TIME_TEXT.match(value.strip()):
        h, m, sec = _TIME_TEXT.match(value.strip()).groups()
        ws.write_datetime(row, col, dt.time(int(h), int(m), int(sec or 0)), cell_format)
    elif f.type in ("int", "number") and not isinstance(value, (str, bool)):
        ws.write_number(row, col, float(value), cell_format)
    else:
        text = str(value)
        if text:
            write_text(ws, row, col, text, cell_format)


def _list_validation(f: Field) -> dict:
    return {
        "validate": "list", "source": f"={list_range_name(f.codes)}", "ignore_blank": True,
        "input_title": f.label[:32], "input_message": f.help[:255],
        "error_title": f"{f.label}"[:32], "error_type": "stop",
        "error_message": f"Pick a value from the list for {f.label}. The Guide sheet explains each one."[:255],
    }


def _add_validations(ws, sheet: TableSheet, last: int) -> None:
    for col, f in enumerate(sheet.fields):
        title = f.label[:32]
        if f.type == "code":
            options = _list_validation(f)
        elif f.type == "date":
            options = {"validate": "date", "criteria": "between", "minimum": dt.date(2000, 1, 1),
                       "maximum": dt.date(2099, 12, 31) if f.future_ok else "=TODAY()",
                       "error_message": f"Type a date as dd/mm/yyyy{'' if f.future_ok else ', not in the future'}."}
        elif f.type == "time":
            options = {"validate": "time", "criteria": "between", "minimum": dt.time(0, 0),
                       "maximum": dt.time(23, 59, 59), "error_message": "Type a time as hh:mm, e.g. 14:30."}
        elif f.type == "int" and f.minimum is not None:
            options = {"validate": "integer", "criteria": "between", "minimum": f.minimum, "maximum": f.maximum,
                       "error_message": f"Type a whole number from {f.minimum} to {f.maximum}."}
        elif f.type == "derived":
            continue
        else:
            options = {"validate": "any"}
        options.setdefault("ignore_blank", True)
        options.setdefault("input_title", title)
        options.setdefault("input_message", f.help[:255])
        if options["validate"] != "any":
            options.setdefault("error_title", title)
        ws.data_validation(1, col, last, col, options)


def _format_log(ws, fmt: dict, last: int) -> None:
    sheet = TABLE_SHEETS["incidents"]
    first_letter = sheet.column_letter(sheet.ref_field)
    tier_col = sheet.names.index("response_tier")
    for tier, cell_format in fmt["tier"].items():
        ws.conditional_format(1, tier_col, last, tier_col, {
            "type": "cell", "criteria": "==", "value": f'"{tier}"', "format": cell_format})
    harm_col = sheet.names.index("physical_harm")
    ws.conditional_format(1, harm_col, last, harm_col, {
        "type": "formula", "criteria": f'=OR(${xl_col_to_name(harm_col)}2="severe",${xl_col_to_name(harm_col)}2="fatal")',
        "format": fmt["harm_severe"]})
    status = f"${sheet.column_letter('status')}2"
    reported = f"${sheet.column_letter('reported_at')}2"
    tier = f"${sheet.column_letter('response_tier')}2"
    target = str(REVIEW_TARGET_DAYS["low"])
    for name in ("moderate", "serious"):
        target = f'IF({tier}="{name}",{REVIEW_TARGET_DAYS[name]},{target})'
    ws.conditional_format(1, 0, last, len(sheet.fields) - 1, {
        "type": "formula",
        "criteria": f'=AND(${first_letter}2<>"",{status}<>"closed",ISNUMBER({reported}),'
                    f"TODAY()-{reported}>{target})",
        "format": fmt["overdue"], "stop_if_true": False})


def _format_actions(ws, fmt: dict, last: int) -> None:
    sheet = TABLE_SHEETS["actions"]
    ref = f"${sheet.column_letter(sheet.ref_field)}2"
    status = f"${sheet.column_letter('status')}2"
    due = f"${sheet.column_letter('due_date')}2"
    ws.conditional_format(1, 0, last, len(sheet.fields) - 1, {
        "type": "formula",
        "criteria": f'=AND({ref}<>"",OR({status}="open",{status}="in_progress"),ISNUMBER({due}),{due}<TODAY())',
        "format": fmt["overdue"]})
    ws.conditional_format(1, 0, last, len(sheet.fields) - 1, {
        "type": "formula", "criteria": f'=OR({status}="done",{status}="cancelled")', "format": fmt["done"]})


def cell_name(row: int, col: int) -> str:
    """0-based row/col to an A1 name."""
    return xl_rowcol_to_cell(row, col)
