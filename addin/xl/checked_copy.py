"""The Checks sheet, and a checked copy of a user's workbook.

:func:`write_checks` writes findings to a **Checks** sheet through any :class:`~.excel_io.ExcelIO`
(one row per finding: sheet, cell as an internal link, ref, rule, severity, message) and
highlights the cells they point at (a fill, and a note holding the messages).  It first undoes
the highlights of the previous run, which it finds on the old Checks sheet (the hidden column G
keeps each cell's fill from before).  The **Check log** ribbon action calls it on the live
workbook; :func:`write_checked_copy` calls it on a copy.

:func:`write_checked_copy` is a pure function over (workbook path or bytes, findings): the
server's upload page uses it for people on Excel on the web, who cannot run Python in Excel.

Why the copy is the user's own workbook edited with openpyxl, not a rebuild with
``workbook_templates.builder.build_workbook(records)``: a finding's cell address is an address
in *the user's* workbook.  A rebuild lays rows and columns out afresh (the reader drops blank
rows, a workbook may have its columns in another order or extra columns), so links and
highlights would point at the wrong cells; and the values findings are most often about (text
in a date column, a code not in the list) cannot be held by typed records, so a rebuild would
lose exactly the cells to fix.  Editing the workbook itself keeps their data, extra sheets,
drop-downs, validation, conditional formatting, tables and names.  Charts: openpyxl 3.1 reads
charts back and writes them again, so the Dashboard's three charts are kept (the tests open the
copy in LibreOffice and find them; chart formatting openpyxl does not model may be simplified).
Pictures are not kept, and macros are never copied (the copy is always a plain .xlsx); the
Checks sheet says so in its third row.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from addin.findings import Finding

from .excel_io import (
    NOTE_PREFIX, ExcelIO, Mark, OpenpyxlIO, SheetContent, hex_colour, internal_target, is_cell, save_openpyxl,
)

SHEET = "Checks"
HEADER_ROW = 5
COLUMNS = ("Sheet", "Cell", "Ref", "Rule", "Severity", "Message", "Fill before")
CELL_COLUMN = "B"
FILL_COLUMN = "G"  # hidden: each highlighted cell's fill before the check, so the next run can undo it
FILLS = {"error": "#FF9B9B", "warning": "#FFD966"}
COPY_NOTE = ("This is a checked copy made by nearmiss: your workbook with this Checks sheet added and the cells "
             "to look at highlighted. Pictures and macros are not copied. Fix the highlighted cells in your own "
             "workbook, or keep working in this copy.")
LIVE_NOTE = ("Click a cell in the Cell column to go to it. Highlighted cells have a note with the message; "
             "run Check log again after fixing them.")


def summary_line(findings: Sequence[Finding], file: str, checked_at: dt.datetime) -> str:
    """e.g. "3 errors and 1 warning in oakview.xlsx, checked 31/10/2026 14:05."."""
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    when = checked_at.strftime("%d/%m/%Y %H:%M")
    name = f" in {file}" if file else ""
    if not findings:
        return f"No problems found{name}, checked {when}."
    parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return f"{' and '.join(parts)}{name}, checked {when}."


def marks(findings: Iterable[Finding], sheets: Sequence[str]) -> dict[str, dict[str, Mark]]:
    """Highlights per sheet: one per cell, the worst severity's fill and every message in the note."""
    grouped: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        if f.sheet in sheets and is_cell(f.cell):
            grouped.setdefault((f.sheet, f.cell), []).append(f)
    out: dict[str, dict[str, Mark]] = {}
    for (sheet, cell), found in grouped.items():
        severity = "error" if any(f.severity == "error" for f in found) else "warning"
        lines = [f"{f.rule} ({f.severity}): {f.message}" for f in found]
        out.setdefault(sheet, {})[cell] = Mark(FILLS[severity], "\n".join([NOTE_PREFIX, *lines]))
    return out


def checks_content(findings: Sequence[Finding], *, file: str, checked_at: dt.datetime, sheets: Sequence[str],
                   note: str = LIVE_NOTE, previous: dict[str, dict[str, str | None]] | None = None) -> SheetContent:
    """The Checks sheet: a title, a summary, a note, then a header row and one row per finding, in order.

    The Cell column links to the cell (when its sheet exists); the hidden Fill before column
    holds the cell's fill before it was highlighted (from ``previous``: sheet -> cell -> fill).
    """
    previous = previous or {}
    rows: list[list] = [["Checks"], [summary_line(findings, file, checked_at)], [note], [], list(COLUMNS)]
    links: dict[str, str] = {}
    for i, f in enumerate(findings):
        r = HEADER_ROW + 1 + i
        before = previous.get(f.sheet, {}).get(f.cell)
        rows.append([f.sheet, f.cell, f.ref, f.rule, f.severity, f.message, before or ""])
        if f.sheet in sheets and is_cell(f.cell):
            links[f"{CELL_COLUMN}{r}"] = internal_target(f.sheet, f.cell)
    return SheetContent(
        rows=rows, links=links, header_row=HEADER_ROW, bold_rows=(1,),
        widths={"A": 12, "B": 8, "C": 16, "D": 8, "E": 9, "F": 90, "G": 10},
        wrap_columns=("F",), hidden_columns=(FILL_COLUMN,), position="first", tab_colour="#C55A11",
    )


def previous_marks(xl: ExcelIO) -> dict[str, dict[str, str | None]]:
    """The highlights of the last run, read back from the Checks sheet: sheet -> cell -> fill before."""
    if SHEET not in xl.sheet_names:
        return {}
    rows = xl.read_sheet(SHEET)
    header = next((i for i, r in enumerate(rows[:20]) if len(r) >= 2 and r[0] == COLUMNS[0] and r[1] == COLUMNS[1]),
                  None)
    if header is None:
        return {}
    fill_index = COLUMNS.index("Fill before")
    out: dict[str, dict[str, str | None]] = {}
    for r in rows[header + 1:]:
        if len(r) < 2 or not isinstance(r[0], str) or not isinstance(r[1], str) or not is_cell(r[1]):
            continue
        before = r[fill_index] if len(r) > fill_index else None
        out.setdefault(r[0], {}).setdefault(r[1], hex_colour(before) if before else None)
    return out


def write_checks(xl: ExcelIO, findings: Sequence[Finding], *, file: str | None = None,
                 checked_at: dt.datetime | None = None, note: str = LIVE_NOTE) -> dict[str, dict[str, Mark]]:
    """Undo the last run's highlights, highlight the cells of ``findings`` and write the Checks sheet.

    Returns the highlights made (sheet -> cell -> Mark).
    """
    checked_at = checked_at or dt.datetime.now().replace(second=0, microsecond=0)
    for sheet, cells in previous_marks(xl).items():
        xl.unhighlight(sheet, cells, list(FILLS.values()))
    sheets = [s for s in xl.sheet_names if s != SHEET]
    made = marks(findings, sheets)
    before: dict[str, dict[str, str | None]] = {}
    for sheet, cells in made.items():
        before[sheet] = xl.highlight(sheet, cells)
    xl.write_sheet(SHEET, checks_content(findings, file=file if file is not None else xl.name,
                                         checked_at=checked_at, sheets=sheets, note=note, previous=before))
    return made


def write_checked_copy(source: str | Path | bytes | BinaryIO, findings: Sequence[Finding],
                       out_path: str | Path | None = None, *, file: str | None = None,
                       checked_at: dt.datetime | None = None) -> Path | bytes:
    """A copy of the workbook ``source`` with a Checks sheet and the findings' cells highlighted.

    ``source`` is a path, the file's bytes or a binary file object; ``findings`` come from
    :func:`addin.validate.validate_workbook` (or the reader plus ``validate_records``) for the
    same workbook.  Writes ``out_path`` (always .xlsx content) and returns it, or returns the
    bytes when ``out_path`` is None.  Nothing is evaluated: formulas stay formulas, and every
    text written (messages, refs, notes) is stored as text, never as a formula.
    """
    import openpyxl

    if isinstance(source, (bytes, bytearray, memoryview)):
        handle: BinaryIO | str = io.BytesIO(bytes(source))
        name = file or "workbook.xlsx"
    elif isinstance(source, (str, Path)):
        handle = str(source)
        name = file or Path(source).name
    else:
        handle = source
        name = file or Path(getattr(source, "name", "") or "workbook.xlsx").name
    wb = openpyxl.load_workbook(handle, keep_vba=False, keep_links=False)
    write_checks(OpenpyxlIO(wb, name=name), findings, file=name, checked_at=checked_at, note=COPY_NOTE)
    return save_openpyxl(wb, out_path)


__all__ = ["SHEET", "HEADER_ROW", "COLUMNS", "FILLS", "COPY_NOTE", "checks_content", "marks", "previous_marks",
           "summary_line", "write_checks", "write_checked_copy"]
