"""The seam between the ribbon's actions and a workbook: a tiny adapter interface and two backends.

The macro bodies (:mod:`.macros`), the Checks sheet (:mod:`.checked_copy`) and the Trends
sheet (:mod:`.trends_sheet`) only talk to an :class:`ExcelIO`:

- ``read_sheet(name)``: the values from A1 to the last used cell, a list of rows;
- ``write_sheet(name, content)``: replace a sheet's contents with a :class:`SheetContent`
  (values, internal links, header style, widths, number formats); user text always lands as text;
- ``add_chart(sheet, spec)``: a native line chart from a :class:`ChartSpec`;
- ``highlight(sheet, cells)`` / ``unhighlight(sheet, previous)``: fill + note on cells, and undo;
- ``alert(message, title, buttons)``, ``ask_text``, ``choose_file``: talk to the person;
- ``open_workbook(path)``, ``save()``, ``name``, ``path``, ``sheet_names``.

Backends:

- :class:`XlwingsIO` wraps an open-source ``xlwings.Book`` (the workbook in Excel, from
  ``xw.Book.caller()``).  It is only exercised for real on Windows or Mac Excel; on Linux the
  tests drive it with a fake Book that records the calls.
- :class:`OpenpyxlIO` wraps an ``openpyxl.Workbook``: the checked copy and the Trends workbook
  are written through it, and tests use it as the fake Excel (alerts are recorded and answered
  from a script).

Text safety: Excel turns a typed "=..." into a formula, and COM/AppleScript assignment behaves
like typing.  :class:`XlwingsIO` therefore writes every string with a leading apostrophe (Excel's
"this is text" prefix, not part of the value), and :class:`OpenpyxlIO` sets the cell's data type
to string after assignment (:func:`workbook_templates.text_safety.set_text`; openpyxl would otherwise
store "=..." as a formula).  Text longer than a cell holds is cut with a visible marker, never silently.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from workbook_templates.text_safety import MAX_CELL_TEXT, cell_text, set_text, xml_text

NOTE_PREFIX = "nearmiss check:"  # every note this package writes starts so; only those are removed
MAX_TEXT = MAX_CELL_TEXT  # Excel's cell limit
_A1 = re.compile(r"^\$?([A-Z]{1,3})\$?([1-9][0-9]{0,6})$")
_RANGE = re.compile(r"^\$?[A-Z]{1,3}\$?[1-9][0-9]{0,6}(:\$?[A-Z]{1,3}\$?[1-9][0-9]{0,6})?$")


# --- what is written ------------------------------------------------------------------------------------

@dataclass
class SheetContent:
    """What a sheet holds after :meth:`ExcelIO.write_sheet`: values from A1 and their presentation.

    ``links`` maps a cell ("B6") to an internal target ("'Log'!F14"); the cell's value is the
    link's text.  ``header_row`` (1-based) is bold on a dark fill, with an autofilter and the
    panes frozen below it.  ``formats`` maps a column letter to a number format for the rows
    below the header, ``range_formats`` an A1 range to one; ``widths`` a column letter to a
    width in characters.
    """

    rows: list[list[Any]]
    links: dict[str, str] = field(default_factory=dict)
    header_row: int | None = None
    bold_rows: tuple[int, ...] = ()
    widths: dict[str, float] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    range_formats: dict[str, str] = field(default_factory=dict)  # "A6:A29" -> number format
    wrap_columns: tuple[str, ...] = ()
    hidden_columns: tuple[str, ...] = ()
    position: str = "last"  # "first" or "last" when the sheet is new
    tab_colour: str | None = None

    @property
    def width(self) -> int:
        return max((len(r) for r in self.rows), default=0)


@dataclass(frozen=True)
class SeriesStyle:
    """How one series of a :class:`ChartSpec` looks; colours are "#RRGGBB"."""

    colour: str
    line: bool = True
    marker: str = "none"  # none | circle | square | diamond | triangle
    marker_size: int = 5
    dashed: bool = False


@dataclass(frozen=True)
class ChartSpec:
    """A native line chart: one series per column of ``source`` (header row = series names).

    ``source`` is an A1 range with the header row, e.g. "B5:F29"; ``categories`` the x-axis
    labels without header, e.g. "A6:A29"; ``anchor`` the chart's top-left cell.
    """

    title: str
    source: str
    categories: str
    anchor: str
    series: tuple[SeriesStyle, ...]
    y_title: str = ""
    width: float = 480.0  # points
    height: float = 250.0
    category_format: str = "mmm yy"

    def __post_init__(self) -> None:
        for name in ("source", "categories", "anchor"):
            if not _RANGE.match(getattr(self, name)):
                raise ValueError(f"ChartSpec.{name} must be an A1 range, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Mark:
    """A highlight: the fill colour and the note text for one cell."""

    fill: str
    note: str


# --- the interface ---------------------------------------------------------------------------------------

@runtime_checkable
class ExcelIO(Protocol):
    name: str  # the workbook's file name, e.g. "oakview.xlsx"

    @property
    def path(self) -> str | None: ...  # full path when saved on this computer, else None

    @property
    def sheet_names(self) -> list[str]: ...

    def read_sheet(self, name: str) -> list[list[Any]]: ...

    def write_sheet(self, name: str, content: SheetContent) -> None: ...

    def add_chart(self, sheet: str, spec: ChartSpec) -> None: ...

    def highlight(self, sheet: str, cells: Mapping[str, Mark]) -> dict[str, str | None]: ...

    def unhighlight(self, sheet: str, previous: Mapping[str, str | None], fills: Sequence[str]) -> None: ...

    def alert(self, message: str, title: str = "nearmiss", buttons: str = "ok") -> str: ...

    def ask_text(self, prompt: str, title: str = "nearmiss", default: str = "") -> str | None: ...

    def choose_file(self, title: str) -> str | None: ...

    def open_workbook(self, path: str) -> None: ...

    def save(self) -> None: ...

    def addin_conf_rows(self) -> list[list[Any]]: ...  # the add-in's conf sheet (settings), [] if none


# --- helpers shared by the backends ----------------------------------------------------------------------

def save_openpyxl(wb, out_path=None):
    """Save ``wb`` to ``out_path`` and return the path, or return the bytes when no path is given."""
    if out_path is None:
        buffer = io.BytesIO()
        wb.save(buffer)
        return buffer.getvalue()
    out = Path(out_path)
    wb.save(out)
    return out


def safe_text(value: object) -> str:
    """Text as a cell can hold it: control characters dropped, cut to Excel's 32,767 characters with a marker
    (:mod:`workbook_templates.text_safety`)."""
    return cell_text(xml_text(value))


def split_cell(cell: str) -> tuple[str, int]:
    """"F14" -> ("F", 14); ValueError for anything that is not one A1 cell."""
    m = _A1.match(cell or "")
    if not m:
        raise ValueError(f"not a cell address: {cell!r}")
    return m.group(1), int(m.group(2))


def is_cell(cell: str) -> bool:
    return bool(_A1.match(cell or ""))


def quote_sheet(name: str) -> str:
    """A sheet name as it goes in a reference: always quoted, inner quotes doubled."""
    return "'" + name.replace("'", "''") + "'"


def internal_target(sheet: str, cell: str) -> str:
    """"Log", "F14" -> "'Log'!F14" (the sub-address of an internal link)."""
    split_cell(cell)
    return f"{quote_sheet(sheet)}!{cell}"


def column_index(letters: str) -> int:
    """"A" -> 1, "AA" -> 27."""
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def column_letters(index: int) -> str:
    """1 -> "A", 27 -> "AA"."""
    out = ""
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def hex_colour(value: Any) -> str | None:
    """A colour from Excel/openpyxl ((r, g, b), "#RRGGBB", "FFRRGGBB") as "#RRGGBB"; None for no fill."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return "#{:02X}{:02X}{:02X}".format(*(int(v) for v in value))
    text = str(value).lstrip("#").upper()
    if len(text) == 8:
        text = text[2:]
    if len(text) != 6 or not re.fullmatch(r"[0-9A-F]{6}", text):
        return None
    return "#" + text


def plain_value(value: Any) -> Any:
    """A value as a cell takes it: numpy/pandas scalars to Python, NaN/NaT/NA to None."""
    if value is None:
        return None
    try:
        import pandas as pd  # local: keeps this module cheap to import for UDFs
        if value is pd.NaT or value is pd.NA:
            return None
        if isinstance(value, pd.Timestamp):
            return value.to_pydatetime()
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)
    return value


def _rectangular(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    width = max((len(r) for r in rows), default=0)
    return [list(r) + [None] * (width - len(r)) for r in rows]


# --- openpyxl backend ------------------------------------------------------------------------------------

class OpenpyxlIO:
    """The adapter over an ``openpyxl.Workbook`` (no Excel): used for files and as the tests' Excel.

    ``answers`` scripts what :meth:`alert`, :meth:`ask_text` and :meth:`choose_file` return, in
    order (a callable gets the prompt); every message shown is kept in ``messages``.
    ``opened`` lists the paths :meth:`open_workbook` was asked to open.
    """

    HEADER_FILL = "1F4E79"

    def __init__(self, workbook, *, name: str = "workbook.xlsx", path: str | None = None,
                 answers: Sequence[Any] = ()) -> None:
        self.wb = workbook
        self.name = name
        self._path = path
        self.answers = list(answers)
        self.messages: list[tuple[str, str, str]] = []  # (title, message, buttons)
        self.opened: list[str] = []
        self.saved = 0
        self.addin_rows: list[list[Any]] = []

    @property
    def path(self) -> str | None:
        return self._path

    @property
    def sheet_names(self) -> list[str]:
        return list(self.wb.sheetnames)

    def _answer(self, prompt: str, default: Any) -> Any:
        if not self.answers:
            return default
        answer = self.answers.pop(0)
        return answer(prompt) if callable(answer) else answer

    def read_sheet(self, name: str) -> list[list[Any]]:
        ws = self.wb[name]
        return [list(r) for r in ws.iter_rows(min_row=1, max_row=ws.max_row, max_col=ws.max_column,
                                              values_only=True)]

    def write_sheet(self, name: str, content: SheetContent) -> None:
        from openpyxl.styles import Alignment, Font, PatternFill
        from openpyxl.worksheet.hyperlink import Hyperlink

        if name in self.wb.sheetnames:
            old = self.wb[name]
            index = self.wb.sheetnames.index(name)
            self.wb.remove(old)
            ws = self.wb.create_sheet(name, index)
        else:
            ws = self.wb.create_sheet(name, 0 if content.position == "first" else None)
        if content.tab_colour:
            ws.sheet_properties.tabColor = content.tab_colour.lstrip("#")
        header = content.header_row
        for r, row in enumerate(content.rows, start=1):
            for c, value in enumerate(row, start=1):
                value = plain_value(value)
                if value is None:
                    continue
                cell = ws.cell(row=r, column=c)
                if isinstance(value, str):
                    set_text(cell, value)  # never a formula, whatever it starts with
                else:
                    cell.value = value
                letter = column_letters(c)
                if header and r > header and letter in content.formats:
                    cell.number_format = content.formats[letter]
                elif isinstance(value, dt.datetime):
                    cell.number_format = "dd/mm/yyyy"
                if letter in content.wrap_columns:
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
        for ref, fmt in content.range_formats.items():
            (c1, r1), (c2, r2) = _range_bounds(ref)
            for row_cells in ws.iter_rows(min_row=r1, max_row=r2, min_col=c1, max_col=c2):
                for cell in row_cells:
                    cell.number_format = fmt
        for cell_ref, target in content.links.items():
            cell = ws[cell_ref]
            if cell.value is None:
                cell.value = target
                cell.data_type = "s"
            cell.hyperlink = Hyperlink(ref=cell_ref, location=target, display=str(cell.value))
            cell.font = Font(color="0563C1", underline="single")
        for r in content.bold_rows:
            for c in range(1, content.width + 1):
                ws.cell(row=r, column=c).font = Font(bold=True)
        if header:
            for c in range(1, content.width + 1):
                cell = ws.cell(row=header, column=c)
                cell.font = Font(bold=True, color="FFFFFF")
                cell.fill = PatternFill("solid", fgColor=self.HEADER_FILL)
            last_row = max(header, len(content.rows))
            ws.auto_filter.ref = f"A{header}:{column_letters(max(content.width, 1))}{last_row}"
            ws.freeze_panes = f"A{header + 1}"
        for letter, width in content.widths.items():
            ws.column_dimensions[letter].width = width
        for letter in content.hidden_columns:
            ws.column_dimensions[letter].hidden = True
        self.wb.active = self.wb.sheetnames.index(name)
        for other in self.wb.worksheets:
            other.sheet_view.tabSelected = other.title == name

    def add_chart(self, sheet: str, spec: ChartSpec) -> None:
        from openpyxl.chart import LineChart, Reference

        ws = self.wb[sheet]
        (c1, r1), (c2, r2) = _range_bounds(spec.source)
        (kc, k1), (_, k2) = _range_bounds(spec.categories)
        chart = LineChart()
        chart.title = spec.title
        chart.y_axis.title = spec.y_title or None
        chart.width = spec.width / 28.35 * 1.0  # openpyxl sizes are in cm; 1 cm = 28.35 pt
        chart.height = spec.height / 28.35
        chart.add_data(Reference(ws, min_col=c1, min_row=r1, max_col=c2, max_row=r2), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=kc, min_row=k1, max_row=k2))
        chart.x_axis.number_format = spec.category_format
        chart.x_axis.delete = False  # openpyxl >= 3.1 hides axes unless told not to
        chart.y_axis.delete = False
        chart.x_axis.tickLblPos = "low"  # month labels below the plot, also when limits go below 0
        chart.legend.position = "b"
        for series, style in zip(chart.series, spec.series):
            _style_openpyxl_series(series, style)
        ws.add_chart(chart, spec.anchor)

    def highlight(self, sheet: str, cells: Mapping[str, Mark]) -> dict[str, str | None]:
        from openpyxl.comments import Comment
        from openpyxl.styles import PatternFill

        ws = self.wb[sheet]
        previous: dict[str, str | None] = {}
        for ref, mark in cells.items():
            cell = ws[ref]
            fill = cell.fill
            previous[ref] = hex_colour(fill.fgColor.rgb) if fill is not None and fill.fill_type == "solid" else None
            cell.fill = PatternFill("solid", fgColor=mark.fill.lstrip("#"))
            text = safe_text(mark.note)
            if cell.comment is not None and not cell.comment.text.startswith(NOTE_PREFIX):
                text = safe_text(f"{cell.comment.text}\n\n{mark.note}")
            comment = Comment(text, "nearmiss")
            comment.width, comment.height = 300, 160
            cell.comment = comment
        return previous

    def unhighlight(self, sheet: str, previous: Mapping[str, str | None], fills: Sequence[str]) -> None:
        from openpyxl.comments import Comment
        from openpyxl.styles import PatternFill

        if sheet not in self.wb.sheetnames:
            return
        ws = self.wb[sheet]
        ours = {hex_colour(f) for f in fills}
        for ref, before in previous.items():
            if not is_cell(ref):
                continue
            cell = ws[ref]
            if cell.fill is not None and cell.fill.fill_type == "solid" and hex_colour(cell.fill.fgColor.rgb) in ours:
                cell.fill = PatternFill("solid", fgColor=before.lstrip("#")) if before else PatternFill(fill_type=None)
            if cell.comment is not None:
                kept = strip_note(cell.comment.text)
                cell.comment = Comment(kept, cell.comment.author or "") if kept else None

    def alert(self, message: str, title: str = "nearmiss", buttons: str = "ok") -> str:
        self.messages.append((title, message, buttons))
        default = {"ok": "ok", "ok_cancel": "ok", "yes_no": "yes", "yes_no_cancel": "yes"}[buttons]
        return self._answer(message, default)

    def ask_text(self, prompt: str, title: str = "nearmiss", default: str = "") -> str | None:
        self.messages.append((title, prompt, "text"))
        return self._answer(prompt, default)

    def choose_file(self, title: str) -> str | None:
        self.messages.append((title, title, "file"))
        return self._answer(title, None)

    def open_workbook(self, path: str) -> None:
        self.opened.append(str(path))

    def save(self) -> None:
        self.saved += 1
        if self._path:
            self.wb.save(self._path)

    def addin_conf_rows(self) -> list[list[Any]]:
        return [list(r) for r in self.addin_rows]


def strip_note(text: str) -> str:
    """A note's text without the part this package wrote ("" when it was all ours)."""
    if text.startswith(NOTE_PREFIX):
        return ""
    cut = text.find("\n\n" + NOTE_PREFIX)
    return text if cut < 0 else text[:cut]


def _range_bounds(ref: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """"B5:F29" -> ((2, 5), (6, 29)) as (column, row) pairs."""
    first, _, last = ref.replace("$", "").partition(":")
    c1, r1 = split_cell(first)
    c2, r2 = split_cell(last or first)
    return (column_index(c1), r1), (column_index(c2), r2)


def _style_openpyxl_series(series, style: SeriesStyle) -> None:
    from openpyxl.chart.marker import Marker
    from openpyxl.chart.shapes import GraphicalProperties

    colour = style.colour.lstrip("#")
    series.smooth = False
    if series.graphicalProperties is None:
        series.graphicalProperties = GraphicalProperties()
    line = series.graphicalProperties.line
    if style.line:
        line.solidFill = colour
        line.width = 12700 if style.dashed else 19050  # EMU: 1 pt dashed, 1.5 pt solid
        if style.dashed:
            line.prstDash = "dash"
    else:
        line.noFill = True
    if style.marker == "none":
        series.marker = Marker(symbol="none")
    else:
        props = GraphicalProperties(solidFill=colour)
        props.line.solidFill = colour
        series.marker = Marker(symbol=style.marker, size=style.marker_size, spPr=props)


# --- xlwings backend -------------------------------------------------------------------------------------

def excel_text_value(value: Any) -> Any:
    """A value as xlwings should write it: strings get Excel's text prefix (') so "=..." stays text."""
    value = plain_value(value)
    if isinstance(value, str):
        return "'" + safe_text(value) if value else None
    return value


def _formula_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class XlwingsIO:
    """The adapter over an open-source ``xlwings.Book`` (normally ``xw.Book.caller()``).

    Only documented open-source xlwings calls are used, plus Excel's own dialogs through
    ``app.api`` for the file picker and text prompt (Windows: ``GetOpenFilename``/``InputBox``;
    Mac: AppleScript's ``choose file``/``display dialog``), each with a plain fallback.
    """

    def __init__(self, book) -> None:
        self.book = book
        self.name = book.name

    @property
    def path(self) -> str | None:
        full = self.book.fullname
        if not full or "://" in full:
            return None  # not saved yet, or on OneDrive/SharePoint without a local copy
        return full

    @property
    def sheet_names(self) -> list[str]:
        return [s.name for s in self.book.sheets]

    def read_sheet(self, name: str) -> list[list[Any]]:
        sheet = self.book.sheets[name]
        last = sheet.used_range.last_cell
        values = sheet.range((1, 1), (last.row, last.column)).options(ndim=2).value
        return [list(r) for r in values or []]

    def write_sheet(self, name: str, content: SheetContent) -> None:
        if name in self.sheet_names:
            sheet = self.book.sheets[name]
            for chart in list(sheet.charts):
                chart.delete()
            sheet.clear()
        elif content.position == "first":
            sheet = self.book.sheets.add(name, before=self.book.sheets[0])
        else:
            sheet = self.book.sheets.add(name, after=self.book.sheets[len(self.book.sheets) - 1])
        rows = _rectangular([[excel_text_value(v) for v in row] for row in content.rows])
        if rows and rows[0]:
            sheet.range("A1").value = rows
        width = len(rows[0]) if rows else 0
        header = content.header_row
        for letter, fmt in content.formats.items():
            if header and len(rows) > header:
                sheet.range(f"{letter}{header + 1}:{letter}{len(rows)}").number_format = fmt
        for ref, fmt in content.range_formats.items():
            sheet.range(ref).number_format = fmt
        for cell_ref, target in content.links.items():
            text = rows[split_cell(cell_ref)[1] - 1][column_index(split_cell(cell_ref)[0]) - 1]
            text = (text or "'").lstrip("'") if isinstance(text, str) or text is None else str(text)
            sheet.range(cell_ref).formula = f"=HYPERLINK({_formula_string('#' + target)},{_formula_string(text)})"
        for r in content.bold_rows:
            sheet.range((r, 1), (r, max(width, 1))).font.bold = True
        if header and width:
            head = sheet.range((header, 1), (header, width))
            head.font.bold = True
            head.font.color = (255, 255, 255)
            head.color = "#" + OpenpyxlIO.HEADER_FILL
            try:
                sheet.freeze_panes.freeze_at(f"{header + 1}:{header + 1}")
            except Exception:  # noqa: BLE001 - cosmetic; older Excel builds lack the call
                pass
        for letter, w in content.widths.items():
            sheet.range(f"{letter}1").column_width = w
        for letter in content.wrap_columns:
            if len(rows) > 1:
                sheet.range(f"{letter}1:{letter}{len(rows)}").wrap_text = True
        for letter in content.hidden_columns:
            sheet.range(f"{letter}1").column_width = 0  # hides the column
        sheet.activate()

    def add_chart(self, sheet: str, spec: ChartSpec) -> None:
        ws = self.book.sheets[sheet]
        chart = ws.charts.add(source=ws.range(spec.source), chart_type="line_markers", plot_by="columns",
                              anchor=ws.range(spec.anchor), width=spec.width, height=spec.height)
        chart.set_x_axis_values(ws.range(spec.categories))
        chart.title = spec.title
        for series, style in zip(chart.series, spec.series):
            try:
                series.set(line_color=style.colour,
                           marker_style="circle" if style.marker == "none" and not style.line else style.marker,
                           **({"marker_size": style.marker_size,
                               "marker_foreground_color": style.colour,
                               "marker_background_color": style.colour} if style.marker != "none" else {}))
            except Exception:  # noqa: BLE001 - styling is cosmetic; the data is already charted
                pass

    def highlight(self, sheet: str, cells: Mapping[str, Mark]) -> dict[str, str | None]:
        ws = self.book.sheets[sheet]
        previous: dict[str, str | None] = {}
        for ref, mark in cells.items():
            rng = ws.range(ref)
            previous[ref] = hex_colour(rng.color)
            rng.color = mark.fill
            note = rng.note
            if note is not None:
                existing = note.text or ""
                note.text = safe_text(mark.note if existing.startswith(NOTE_PREFIX)
                                      else f"{strip_note(existing)}\n\n{mark.note}")
            else:
                rng.add_note(safe_text(mark.note))
        return previous

    def unhighlight(self, sheet: str, previous: Mapping[str, str | None], fills: Sequence[str]) -> None:
        if sheet not in self.sheet_names:
            return
        ws = self.book.sheets[sheet]
        ours = {hex_colour(f) for f in fills}
        for ref, before in previous.items():
            if not is_cell(ref):
                continue
            rng = ws.range(ref)
            if hex_colour(rng.color) in ours:
                rng.color = before
            note = rng.note
            if note is not None:
                kept = strip_note(note.text or "")
                if kept:
                    note.text = kept
                elif (note.text or "").startswith(NOTE_PREFIX):
                    note.delete()

    def alert(self, message: str, title: str = "nearmiss", buttons: str = "ok") -> str:
        answer = self.book.app.alert(message, title=title, buttons=buttons)
        return answer or "cancel"

    def ask_text(self, prompt: str, title: str = "nearmiss", default: str = "") -> str | None:
        app = self.book.app
        if sys.platform.startswith("win"):
            answer = app.api.InputBox(prompt, title, default)
            return None if answer is False else str(answer)
        if sys.platform == "darwin":  # pragma: no cover - needs Excel for Mac
            import osax  # appscript's osax: a dependency of xlwings on Mac
            from appscript import k as kw
            sa = osax.OSAX(pid=app.pid)
            sa.activate()
            try:
                reply = sa.display_dialog(prompt, default_answer=default, with_title=title)
            except Exception:  # noqa: BLE001 - the user pressed Cancel
                return None
            return reply[kw.text_returned]
        return _tk_ask_text(prompt, title, default)

    def choose_file(self, title: str) -> str | None:
        app = self.book.app
        if sys.platform.startswith("win"):
            answer = app.api.GetOpenFilename("Excel workbooks (*.xlsx;*.xlsm;*.xls),*.xlsx;*.xlsm;*.xls",
                                             1, title)
            return None if answer is False else str(answer)
        if sys.platform == "darwin":  # pragma: no cover - needs Excel for Mac
            import osax  # appscript's osax: a dependency of xlwings on Mac
            sa = osax.OSAX(pid=app.pid)
            sa.activate()
            try:
                alias = sa.choose_file(with_prompt=title)
            except Exception:  # noqa: BLE001 - the user pressed Cancel
                return None
            return alias.path
        return _tk_choose_file(title)

    def open_workbook(self, path: str) -> None:
        self.book.app.books.open(path)

    def save(self) -> None:
        self.book.save()

    def addin_conf_rows(self) -> list[list[Any]]:
        from .submit import ADDIN_CONF_SHEET, ADDIN_NAME

        try:
            sheet = self.book.app.books[ADDIN_NAME].sheets[ADDIN_CONF_SHEET]
        except Exception:  # noqa: BLE001 - the add-in is not loaded, or has no conf sheet
            return []
        last = sheet.used_range.last_cell
        values = sheet.range((1, 1), (last.row, max(last.column, 2))).options(ndim=2).value
        return [list(r) for r in values or []]


def _tk_ask_text(prompt: str, title: str, default: str) -> str | None:  # pragma: no cover - GUI
    from tkinter import Tk, simpledialog
    root = Tk()
    root.withdraw()
    root.attributes("-topmost", True)
    try:
        return simpledialog.askstring(title, prompt, initialvalue=default, parent=root)
    finally:
        root.destroy()


def _tk_choose_file(title: str) -> str | None:  # pragma: no cover - GUI
    from tkinter import Tk, filedialog
    root = Tk()
    root.withdraw()
    root.attributes("-topmost", True)
    try:
        return filedialog.askopenfilename(title=title, filetypes=[("Excel workbooks", "*.xlsx *.xlsm *.xls")]) or None
    finally:
        root.destroy()
