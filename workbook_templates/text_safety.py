"""Text from people, written out as text: never a formula, a link or a number (../shared/spec/security.md).

One rule for every workbook and CSV file the project writes.  Anything a person typed (descriptions,
actions, themes, roles, refs, names of sites, providers and commissioners, column headers of an old log,
file names, and finding messages that quote any of these) goes through here:

- **xlsxwriter** workbooks are made with :data:`XLSXWRITER_OPTIONS` (``write()`` never turns a string
  into a formula, a link or a number) and user text is written with :func:`write_text`, an explicit
  ``write_string``;
- **openpyxl** cells get their text from :func:`set_text`: openpyxl stores a str starting with "=" as a
  formula unless the cell's ``data_type`` is set to "s" after the assignment, which it does;
- **CSV** cells go through :func:`csv_cell`: a cell starting with ``=``, ``+``, ``-``, ``@``, tab, CR or
  LF gets a leading ``'`` (OWASP "CSV injection"), everything else is left exactly as it was.

Length: an Excel cell holds at most 32,767 characters (UTF-16 code units), and xlsxwriter cuts longer
text silently.  :func:`cell_text` cuts it itself and ends it with :data:`CUT_MARKER`, so a reader of the
cell sees that text is missing; :func:`was_cut` tells a writer that wants to report it.  CSV has no
such limit, so CSV cells are never cut.

This module is at the bottom of the dependency order (workbook_templates <- addin <- server) and
imports nothing of the project.
"""

from __future__ import annotations

import re
from typing import Any

# Cells a spreadsheet would run as a formula when the CSV is opened (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
CSV_TEXT_PREFIX = "'"
# Never turn strings into formulas, links or numbers, whichever xlsxwriter write call is used.
XLSXWRITER_OPTIONS = {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
MAX_CELL_TEXT = 32_767  # Excel's limit, in UTF-16 code units
CUT_MARKER = " [text cut: too long for one Excel cell]"
# Characters XML 1.0 (and so xlsx) cannot hold; openpyxl raises on them (xlsxwriter escapes them itself).
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def csv_cell(value: Any) -> Any:
    """A CSV cell's value: text a spreadsheet would run as a formula gets a leading ``'``; the rest unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return CSV_TEXT_PREFIX + value
    return value


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as Excel counts: characters beyond the BMP (e.g. emoji) count twice."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def cell_text(value: Any) -> str:
    """``value`` as the text of one Excel cell: cut to 32,767 UTF-16 units with :data:`CUT_MARKER` when longer."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_CELL_TEXT // 2 or utf16_len(text) <= MAX_CELL_TEXT:
        return text
    room = MAX_CELL_TEXT - len(CUT_MARKER)
    out, used = [], 0
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if used + size > room:
            break
        out.append(ch)
        used += size
    return "".join(out) + CUT_MARKER


def was_cut(original: Any, written: str) -> bool:
    """Whether :func:`cell_text` had to cut ``original`` to give ``written``."""
    text = original if isinstance(original, str) else str(original)
    return written != text and written.endswith(CUT_MARKER)


def xml_text(value: Any) -> str:
    """Text without the control characters XML 1.0 cannot hold (openpyxl raises on them)."""
    return _XML_ILLEGAL.sub("", value if isinstance(value, str) else str(value))


def write_text(ws, row: int, col: int, value: Any, cell_format=None) -> int:
    """Write ``value`` into an xlsxwriter worksheet as a string cell, whatever it starts with (cut as above)."""
    return ws.write_string(row, col, cell_text(value), cell_format)


def set_text(cell, value: Any) -> None:
    """Put ``value`` into an openpyxl cell as a string cell, never a formula (cut as above)."""
    cell.value = cell_text(xml_text(value))
    cell.data_type = "s"


__all__ = ["FORMULA_TRIGGERS", "CSV_TEXT_PREFIX", "XLSXWRITER_OPTIONS", "MAX_CELL_TEXT", "CUT_MARKER",
           "csv_cell", "utf16_len", "cell_text", "was_cut", "xml_text", "write_text", "set_text"]
