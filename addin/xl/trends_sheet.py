"""The Trends sheet: an XmR ("Making Data Count") table and a native line chart per key measure.

The key measures and their SPC come from :func:`addin.trends.key_measures` (one
:class:`addin.trends.MeasureResult` each); this module only lays them out:

- a title block (site, last month, how to read the charts);
- per measure, a block: its label and direction, the plain-English signal, then a table with
  one row per month (Month, Value, Mean, Lower limit, Upper limit, the special-cause points
  split by meaning (Concern / Improvement, or Special cause for a neutral measure), Point type,
  Rule, and the rate per 1,000 exposure units where the measure has one);
- beside each table a native line chart of value, mean, limits and the flagged points.

:func:`write_trends` writes the sheet through any :class:`~.excel_io.ExcelIO` (the **Refresh
trends** action uses the xlwings backend on the live workbook).  :func:`add_trends_sheet` puts
the sheet into an openpyxl workbook and :func:`write_trends_workbook` writes a workbook of its
own; both use openpyxl charts, which LibreOffice and Excel open as native charts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .excel_io import (
    ChartSpec, ExcelIO, OpenpyxlIO, SeriesStyle, SheetContent, column_letters, save_openpyxl,
)

SHEET = "Trends"
FIRST_BLOCK_ROW = 5
CHART_COLUMN = "M"
CHART_ROWS = 18  # rows a chart covers (250 pt at the default row height of 15 pt, and a margin)
GAP_ROWS = 2

VALUE_STYLE = SeriesStyle("#1F4E79", marker="circle", marker_size=5)
MEAN_STYLE = SeriesStyle("#595959")
LIMIT_STYLE = SeriesStyle("#A6A6A6", dashed=True)
# Making Data Count colours: orange for concern, blue for improvement, purple for neither.
FLAG_STYLES = {
    "Concern": SeriesStyle("#ED7D31", line=False, marker="circle", marker_size=8),
    "Improvement": SeriesStyle("#2E75B6", line=False, marker="circle", marker_size=8),
    "Special cause": SeriesStyle("#7030A0", line=False, marker="circle", marker_size=8),
}
FLAG_POINT_TYPES = {
    "Concern": ("special_cause_concern",),
    "Improvement": ("special_cause_improvement",),
    "Special cause": ("special_cause_neutral_high", "special_cause_neutral_low"),
}
DIRECTION_WORDS = {"increase": "higher is better", "decrease": "lower is better", "neutral": "no preferred direction"}
VALUE_FORMATS = {"count": "0", "share": "0%", "percent": "0.0", "rate": "0.00"}
LIMIT_FORMATS = {"count": "0.0", "share": "0.0%", "percent": "0.0", "rate": "0.00"}
HOW_TO_READ = ("Each chart is an XmR chart (NHS 'Making Data Count'): the grey line is the average, the dashed "
               "lines the expected range (process limits). Orange points are special cause for concern, blue "
               "for improvement, purple where higher or lower is neither better nor worse.")


@dataclass(frozen=True)
class Block:
    """Where one measure's table sits: rows (1-based) and its columns."""

    name: str
    title_row: int
    header_row: int
    first_row: int
    last_row: int
    columns: tuple[str, ...]


def _flag_columns(improvement: str) -> tuple[str, ...]:
    return ("Special cause",) if improvement == "neutral" else ("Concern", "Improvement")


def _num(value) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def block_columns(result) -> tuple[str, ...]:
    rate = ("Per 1,000 " + (result.rate_unit or "").replace("_", " "),) if result.rate is not None else ()
    return ("Month", "Value", "Mean", "Lower limit", "Upper limit", *_flag_columns(result.improvement),
            "Point type", "Rule", *rate)


def trends_content(results: Sequence, *, site: str = "", today: dt.date | None = None
                   ) -> tuple[SheetContent, list[ChartSpec], list[Block]]:
    """The Trends sheet for ``results`` (MeasureResults, in display order): content, charts, blocks."""
    rows: list[list] = [["Trends"]]
    made = f"Made {today:%d/%m/%Y}." if today else ""
    rows.append([" ".join(x for x in (f"Site: {site}." if site else "", made) if x)])
    rows.append([HOW_TO_READ])
    while len(rows) < FIRST_BLOCK_ROW - 1:
        rows.append([])
    bold: list[int] = [1]
    range_formats: dict[str, str] = {}
    charts: list[ChartSpec] = []
    blocks: list[Block] = []
    r = FIRST_BLOCK_ROW
    for result in results:
        columns = block_columns(result)
        spc = result.spc
        months = list(result.months)
        title_row, header_row = r, r + 2
        first, last = header_row + 1, header_row + max(len(months), 1)
        while len(rows) < title_row - 1:
            rows.append([])
        rows.append([f"{result.label} ({DIRECTION_WORDS.get(result.improvement, result.improvement)})"])
        rows.append([result.signal])
        rows.append(list(columns))
        bold += [title_row, header_row]
        flags = _flag_columns(result.improvement)
        rate = result.rate
        for i, month in enumerate(months):
            row_spc = spc.iloc[i]
            value = _num(result.values[i])
            point_type = row_spc["point_type"] if isinstance(row_spc["point_type"], str) else ""
            rule = row_spc["rule"] if isinstance(row_spc["rule"], str) else ""
            flagged = [value if point_type in FLAG_POINT_TYPES[name] else None for name in flags]
            line = [month.to_pydatetime() if hasattr(month, "to_pydatetime") else month, value,
                    _num(row_spc["mean"]), _num(row_spc["lpl"]), _num(row_spc["upl"]), *flagged,
                    point_type, rule]
            if rate is not None:
                line.append(_num(rate.iloc[i]))
            rows.append(line)
        if not months:
            rows.append(["no data"])
        n_series = 4 + len(flags)
        last_series = column_letters(1 + n_series)
        range_formats[f"A{first}:A{last}"] = "mmm yyyy"
        range_formats[f"B{first}:B{last}"] = VALUE_FORMATS.get(result.kind, "0.00")
        range_formats[f"C{first}:{last_series}{last}"] = LIMIT_FORMATS.get(result.kind, "0.00")
        for j, name in enumerate(flags):
            col = column_letters(6 + j)
            range_formats[f"{col}{first}:{col}{last}"] = VALUE_FORMATS.get(result.kind, "0.00")
        if rate is not None:
            col = column_letters(len(columns))
            range_formats[f"{col}{first}:{col}{last}"] = "0.00"
        if months:
            charts.append(ChartSpec(
                title=result.label, source=f"B{header_row}:{last_series}{last}", categories=f"A{first}:A{last}",
                anchor=f"{CHART_COLUMN}{title_row}", y_title=_y_title(result.kind),
                series=(VALUE_STYLE, MEAN_STYLE, LIMIT_STYLE, LIMIT_STYLE, *(FLAG_STYLES[f] for f in flags)),
            ))
        blocks.append(Block(result.name, title_row, header_row, first, last, columns))
        r = max(last, title_row + CHART_ROWS) + GAP_ROWS + 1
    widths = {"A": 11, "B": 9, "C": 9, "D": 11, "E": 11, "F": 12, "G": 12, "H": 26, "I": 14, "J": 14, "K": 12}
    content = SheetContent(rows=rows, bold_rows=tuple(bold), widths=widths, range_formats=range_formats,
                           position="last", tab_colour="#7030A0")
    return content, charts, blocks


def _y_title(kind: str) -> str:
    return {"count": "per month", "share": "share of reports", "percent": "%", "rate": "per 1,000"}.get(kind, "")


def write_trends(xl: ExcelIO, results: Sequence, *, site: str = "", today: dt.date | None = None) -> list[Block]:
    """Write (or replace) the Trends sheet and its charts through the adapter ``xl``."""
    content, charts, blocks = trends_content(results, site=site, today=today)
    xl.write_sheet(SHEET, content)
    for spec in charts:
        xl.add_chart(SHEET, spec)
    return blocks


def measures_for(records, *, today: dt.date | None = None, directions=None) -> list:
    """The key measures of one site's records (``addin.trends.key_measures``), up to ``today``'s month."""
    from addin.trends import key_measures

    today = today or dt.date.today()
    return key_measures(records.incidents, records.actions, records.exposure, records.site.get("setting"),
                        today=today, directions=directions)


def add_trends_sheet(workbook, results: Sequence, *, site: str = "", today: dt.date | None = None) -> list[Block]:
    """Put the Trends sheet (tables and native charts) into an openpyxl ``workbook``; replaces an old one."""
    return write_trends(OpenpyxlIO(workbook), results, site=site, today=today)


def write_trends_workbook(out_path: str | Path | None, results: Sequence, *, site: str = "",
                          today: dt.date | None = None) -> Path | bytes:
    """A workbook holding only the Trends sheet; written to ``out_path``, or returned as bytes when None."""
    import openpyxl

    wb = openpyxl.Workbook()
    blank = wb.active
    add_trends_sheet(wb, results, site=site, today=today)
    wb.remove(blank)
    return save_openpyxl(wb, out_path)
