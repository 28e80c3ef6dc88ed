"""Shared pieces of the report workbooks: safe workbooks, formats, typed cell writing, safe output files.

Every report is written with xlsxwriter under ``WORKBOOK_OPTIONS`` (strings never
become formulas, links or numbers) and every value goes through :func:`write_value`,
which picks the typed ``write_*`` call itself: text from a log is always
``write_string``, whatever it starts with (../shared/spec/security.md).

CSV files reuse :func:`server.queries.frame_to_csv` (ISO dates, cells starting
with ``= + - @``, tab, CR or LF prefixed with ``'`` by :func:`workbook_templates.text_safety.csv_cell`);
nothing here restates it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xlsxwriter

from workbook_templates.builder import DATE_FORMAT, WORKBOOK_OPTIONS
from workbook_templates.text_safety import write_text

FONT = "Arial"
NAVY = "#1F4E79"
GREY_TEXT = "#595959"
BORDER_GREY = "#A6A6A6"
A4 = 9
# Making Data Count colours: improvement blue, concern orange, common cause grey.
MDC_COLOURS = {"improvement": "#289DE0", "concern": "#FAB428", "neutral": "#361475", "common": "#7B7D7D"}
FOOTER_COUNTS_ONLY = "Counts only; no information about individuals"


def new_workbook(path: str | Path, title: str, subject: str) -> xlsxwriter.Workbook:
    """An xlsxwriter workbook with the safe string options and document properties."""
    wb = xlsxwriter.Workbook(str(path), {**WORKBOOK_OPTIONS, "default_date_format": DATE_FORMAT})
    wb.set_properties({"title": title, "subject": subject, "comments": "Made with nearmiss"})
    return wb


def formats(wb: xlsxwriter.Workbook) -> dict[str, Any]:
    """The report formats, created once per workbook."""
    base = {"font_name": FONT, "font_size": 10, "valign": "top"}
    cell = {"border": 1, "border_color": BORDER_GREY}
    spec = {
        "title": {"bold": True, "font_size": 16, "font_color": NAVY},
        "subtitle": {"font_size": 11, "font_color": GREY_TEXT},
        "h2": {"bold": True, "font_size": 12, "font_color": NAVY, "valign": "bottom"},
        "label": {"bold": True},
        "text": {},
        "wrap": {"text_wrap": True},
        "note": {"italic": True, "font_color": GREY_TEXT, "text_wrap": True},
        "caption": {"bold": True, "font_size": 11, "text_wrap": True},
        "header": {"bold": True, "bg_color": "#DDEBF7", "text_wrap": True, "valign": "vcenter", **cell},
        "header_num": {"bold": True, "bg_color": "#DDEBF7", "text_wrap": True, "valign": "vcenter",
                       "align": "right", **cell},
        "key": {"bold": True, "valign": "top", "text_wrap": True, **cell},
        "value": {"text_wrap": True, **cell},
        "cell_text": {"text_wrap": True, **cell},
        "count": {"num_format": "#,##0", **cell},
        "number": {"num_format": "#,##0", **cell},
        "rate": {"num_format": "0.00", **cell},
        "percent": {"num_format": "0.0", **cell},
        "share": {"num_format": "0.0%", **cell},
        "date": {"num_format": DATE_FORMAT, "align": "left", **cell},
        "month": {"num_format": "mmm yyyy", "align": "left", **cell},
        "hidden": {"align": "right", **cell},  # a suppressed count: "*"
        "total_label": {"bold": True, "bg_color": "#F2F2F2", "text_wrap": True, **cell},
        "total_count": {"bold": True, "bg_color": "#F2F2F2", "num_format": "#,##0", **cell},
        "total_hidden": {"bold": True, "bg_color": "#F2F2F2", "align": "right", **cell},
        "total_rate": {"bold": True, "bg_color": "#F2F2F2", "num_format": "0.00", **cell},
        "total_percent": {"bold": True, "bg_color": "#F2F2F2", "num_format": "0.0", **cell},
        "concern": {"bold": True, "font_color": "#9C5700", "bg_color": "#FFEB9C", "text_wrap": True, **cell},
        "improvement": {"bold": True, "font_color": "#1F4E79", "bg_color": "#DDEBF7", "text_wrap": True, **cell},
        "overdue": {"bg_color": "#F8CBAD", "font_color": "#9C0006", "num_format": "#,##0", **cell},
    }
    return {name: wb.add_format({**base, **props}) for name, props in spec.items()}


def plain_signal(signal: str, *, verdict: bool = True) -> str:
    """An :func:`addin.spc.describe_signal` line without the measure's name, as a sentence.

    "falls with harm: no signal (common cause variation)" -> "Common cause variation only";
    with ``verdict=False`` the "(concern)"/"(improvement)" is left off, for tables that show
    the verdict in a column of its own.
    """
    words = signal.split(": ", 1)[1] if ": " in signal else signal
    words = words.replace("no signal (common cause variation)", "common cause variation only")
    if not verdict:
        words = re.sub(r" \((improvement|concern|no preferred direction)\)", "", words)
    return words[:1].upper() + words[1:]


def is_blank(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.floating) and np.isnan(value):
        return True
    return False


def stripped_text(values: pd.Series) -> pd.Series:
    """Stripped text with "" for missing values (in Arrow for the reader's text columns: 200,000 rows in
    milliseconds, not through a Python object per cell)."""
    if values.dtype != "str":
        values = values.astype(object).where(values.notna(), "").astype(str)
    return values.fillna("").str.strip()


def write_value(ws, row: int, col: int, value: Any, cell_format=None) -> None:
    """Write one value with an explicit type; text (any text, from anyone) is always a string.

    ``None``/NaN/NaT -> blank cell; bool -> "yes"/"no"; numbers -> number; dates
    -> date; anything else -> ``write_string`` through :func:`workbook_templates.text_safety.write_text`
    (cut to Excel's 32,767 characters with a visible marker rather than silently).
    """
    if is_blank(value):
        ws.write_blank(row, col, None, cell_format)
    elif isinstance(value, (bool, np.bool_)):
        ws.write_string(row, col, "yes" if value else "no", cell_format)
    elif isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if math.isfinite(number):
            ws.write_number(row, col, number, cell_format)
        else:
            ws.write_blank(row, col, None, cell_format)
    elif isinstance(value, (pd.Timestamp, dt.datetime)):
        moment = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        ws.write_datetime(row, col, moment.replace(tzinfo=None), cell_format)
    elif isinstance(value, dt.date):
        ws.write_datetime(row, col, dt.datetime(value.year, value.month, value.day), cell_format)
    else:
        write_text(ws, row, col, value, cell_format)


def page_setup(ws, *, title: str, landscape: bool = True, repeat_rows: tuple[int, int] | None = None,
               footer_left: str = "", header_right: str = "") -> None:
    """A4, fit to one page wide, title (and e.g. the as-at date) in the header, page numbers in the footer."""
    if landscape:
        ws.set_landscape()
    else:
        ws.set_portrait()
    ws.set_paper(A4)
    ws.fit_to_pages(1, 0)
    ws.set_margins(**MARGIN_INCHES)
    ws.hide_gridlines(2)
    if repeat_rows is not None:
        ws.repeat_rows(*repeat_rows)
    ws.set_header(f"&L&\"{FONT},Bold\"{_escape_hf(title)}&R{_escape_hf(header_right)}")
    ws.set_footer(f"&L{_escape_hf(footer_left)}&RPage &P of &N")


# Page geometry for working out where pages break (fit to one page wide, A4).
A4_INCHES = (8.27, 11.69)
MARGIN_INCHES = {"left": 0.5, "right": 0.5, "top": 0.75, "bottom": 0.75}
DEFAULT_ROW_POINTS = 15.0


def column_pixels(width_chars: float) -> int:
    """Excel's pixel width of a column ``width_chars`` wide (Calibri 11, the default font)."""
    return int(width_chars * 7 + 5)


def page_capacity_points(total_column_pixels: int, *, landscape: bool = True, reserved_points: float = 0.0,
                         safety: float = 0.97) -> float:
    """Sheet points of rows that fit on one printed page at the fit-to-width scale.

    ``reserved_points`` are the rows repeated at the top of every page; ``safety``
    leaves room for the difference between Excel's and LibreOffice's scaling.
    """
    short, long = A4_INCHES
    width_in, height_in = (long, short) if landscape else (short, long)
    printable_w = (width_in - MARGIN_INCHES["left"] - MARGIN_INCHES["right"]) * 72
    printable_h = (height_in - MARGIN_INCHES["top"] - MARGIN_INCHES["bottom"]) * 72
    scale = min(1.0, printable_w / (total_column_pixels * 0.75))
    return printable_h / scale * safety - reserved_points


def page_breaks(blocks: list[tuple[int, int]], heights: dict[int, float], capacity: float, first_row: int = 0,
                default: float = DEFAULT_ROW_POINTS) -> list[int]:
    """Rows to break before so that no block (first row, last row) is split across pages when it fits on one."""
    breaks: list[int] = []
    used = sum(heights.get(r, default) for r in range(first_row, blocks[0][0])) if blocks else 0.0
    for start, end in blocks:
        size = sum(heights.get(r, default) for r in range(start, end + 1))
        if used + size > capacity and used > 0:
            breaks.append(start)
            used = 0.0
        used += size
        while used > capacity:  # a block taller than a page: let it run on
            used -= capacity
    return breaks


def text_lines(text: str, width_chars: float) -> int:
    """Lines a wrapped text needs in a cell ``width_chars`` wide (Arial 10 in Calibri-11 units, roughly)."""
    per_line = max(1.0, width_chars * 1.2)
    return max(1, sum(-(-max(len(part), 1) // int(per_line)) for part in str(text).split("\n")))


def _escape_hf(text: str) -> str:
    """Header/footer text with '&' escaped (Excel reads '&' as a control code); Excel caps it at 255."""
    return text.replace("&", "&&")[:200]


def sheet_name(text: str, taken: set[str]) -> str:
    """A valid, unique worksheet name (31 characters, none of []:*?/\\)."""
    clean = "".join(" " if ch in "[]:*?/\\" else ch for ch in text).strip().strip("'") or "Sheet"
    name = clean[:31]
    n = 2
    while name.lower() in {t.lower() for t in taken}:
        suffix = f" ({n})"
        name = clean[: 31 - len(suffix)] + suffix
        n += 1
    taken.add(name)
    return name


@contextlib.contextmanager
def output_file(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it only when the block succeeds.

    Refuses (FileExistsError) when ``path`` exists and ``force`` is false, before
    anything is written; on any error the temporary file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
    try:
        yield tmp_path
        if path.exists() and not force:  # appeared while we were writing
            raise FileExistsError(str(path))
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
