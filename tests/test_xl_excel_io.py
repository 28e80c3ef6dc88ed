"""The adapter seam: helpers, the openpyxl backend, and the xlwings backend against a fake Book.

``FakeBook`` mimics the few open-source xlwings calls :class:`addin.xl.excel_io.XlwingsIO` makes
(sheets, ranges, values, formulas, colours, notes, charts, alerts), so the xlwings adapter and the
``@xw.sub`` entry points run on Linux.  Other test modules import it.
"""

from __future__ import annotations

import datetime as dt
import re

import openpyxl
import pytest

from addin.xl import excel_io
from addin.xl.excel_io import (
    ChartSpec, Mark, OpenpyxlIO, SeriesStyle, SheetContent, XlwingsIO, column_index, column_letters,
    excel_text_value, hex_colour, internal_target, split_cell, strip_note,
)


# --- a fake xlwings Book ---------------------------------------------------------------------------------

def _addr(ref: str) -> tuple[int, int]:
    col, row = split_cell(ref.replace("$", ""))
    return row, column_index(col)


class FakeNote:
    def __init__(self, cell: "FakeRange", text: str):
        self.cell, self.text = cell, text

    def delete(self):
        self.cell.sheet.notes.pop(self.cell.key)


class FakeFont:
    def __init__(self):
        self.bold = None
        self.color = None


class FakeRange:
    """A rectangle of a FakeSheet; (row, col) 1-based."""

    def __init__(self, sheet: "FakeSheet", first: tuple[int, int], last: tuple[int, int] | None = None):
        self.sheet, self.first, self.last = sheet, first, last or first
        self.font = FakeFont()
        self._ndim = None

    @property
    def key(self) -> tuple[int, int]:
        return self.first

    @property
    def row(self):
        return self.first[0]

    @property
    def column(self):
        return self.first[1]

    @property
    def last_cell(self):
        return FakeRange(self.sheet, self.last)

    def options(self, ndim=None, **_):
        self._ndim = ndim
        return self

    @property
    def value(self):
        (r1, c1), (r2, c2) = self.first, self.last
        grid = [[self.sheet.cells.get((r, c)) for c in range(c1, c2 + 1)] for r in range(r1, r2 + 1)]
        if self._ndim == 2 or (r1, c1) != (r2, c2):
            return grid
        return grid[0][0]

    @value.setter
    def value(self, data):
        rows = data if isinstance(data, list) and data and isinstance(data[0], list) else [[data]]
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                key = (self.first[0] + i, self.first[1] + j)
                self.sheet.cells[key] = v
                self.sheet.formulas.pop(key, None)
        self.sheet.writes.append((self.first, rows))

    @property
    def formula(self):
        return self.sheet.formulas.get(self.first, "")

    @formula.setter
    def formula(self, text):
        self.sheet.formulas[self.first] = text
        m = re.match(r'=HYPERLINK\("(.*)","(.*)"\)$', text)
        self.sheet.cells[self.first] = m.group(2) if m else text

    @property
    def color(self):
        return self.sheet.colours.get(self.first)

    @color.setter
    def color(self, value):
        for r in range(self.first[0], self.last[0] + 1):
            for c in range(self.first[1], self.last[1] + 1):
                if value is None:
                    self.sheet.colours.pop((r, c), None)
                else:
                    self.sheet.colours[(r, c)] = value if isinstance(value, tuple) else tuple(
                        int(value.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))

    @property
    def note(self):
        return self.sheet.notes.get(self.first)

    def add_note(self, text):
        self.sheet.notes[self.first] = FakeNote(self, text)
        return self.sheet.notes[self.first]

    def __setattr__(self, name, value):
        if name in ("number_format", "column_width", "wrap_text"):
            self.sheet.formats.append((name, self.first, self.last, value))
        object.__setattr__(self, name, value)


class FakeChart:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.title = None
        self.x_axis = None
        self.series = [FakeSeries() for _ in range(kwargs["source"].last[1] - kwargs["source"].first[1] + 1)]
        self.deleted = False

    def set_x_axis_values(self, rng):
        self.x_axis = rng

    def delete(self):
        self.deleted = True


class FakeSeries:
    def __init__(self):
        self.style = {}

    def set(self, **kwargs):
        self.style.update(kwargs)


class FakeCharts(list):
    def add(self, **kwargs):
        chart = FakeChart(**kwargs)
        self.append(chart)
        return chart


class FakeFreeze:
    def __init__(self):
        self.at = None

    def freeze_at(self, where):
        self.at = where


class FakeSheet:
    def __init__(self, book, name):
        self.book, self.name = book, name
        self.cells, self.formulas, self.colours, self.notes = {}, {}, {}, {}
        self.formats, self.writes = [], []
        self.charts = FakeCharts()
        self.freeze_panes = FakeFreeze()
        self.active = False

    def range(self, a, b=None):
        first = a if isinstance(a, tuple) else _addr(a.split(":")[0])
        if b is not None:
            last = b if isinstance(b, tuple) else _addr(b)
        elif isinstance(a, str) and ":" in a:
            last = _addr(a.split(":")[1])
        else:
            last = first
        return FakeRange(self, first, last)

    @property
    def used_range(self):
        if not self.cells:
            return FakeRange(self, (1, 1))
        return FakeRange(self, (1, 1), (max(r for r, _ in self.cells), max(c for _, c in self.cells)))

    def clear(self):
        self.cells.clear()
        self.formulas.clear()
        self.colours.clear()

    def activate(self):
        for s in self.book.sheets:
            s.active = s is self


class FakeSheets(list):
    def __init__(self, book):
        super().__init__()
        self.book = book

    def __getitem__(self, key):
        if isinstance(key, str):
            for s in self:
                if s.name == key:
                    return s
            raise KeyError(key)
        return list.__getitem__(self, key)

    def add(self, name, before=None, after=None):
        sheet = FakeSheet(self.book, name)
        if before is not None:
            self.insert(self.index(before), sheet)
        elif after is not None:
            self.insert(self.index(after) + 1, sheet)
        else:
            self.append(sheet)
        return sheet


class FakeApp:
    def __init__(self, answers=()):
        self.answers = list(answers)
        self.alerts = []
        self.books = {}
        self.opened = []

    def alert(self, prompt, title=None, buttons="ok", mode=None, callback=None):
        self.alerts.append((title, prompt, buttons))
        return self.answers.pop(0) if self.answers else {"ok": "ok", "ok_cancel": "ok"}.get(buttons, "yes")


class FakeBook:
    """The parts of ``xlwings.Book`` that XlwingsIO uses."""

    def __init__(self, name="oakview.xlsx", fullname="/data/oakview.xlsx", answers=()):
        self.name, self.fullname = name, fullname
        self.sheets = FakeSheets(self)
        self.app = FakeApp(answers)
        self.saves = 0

    def save(self):
        self.saves += 1

    @classmethod
    def from_openpyxl(cls, wb, **kwargs) -> "FakeBook":
        """A fake Book holding an openpyxl workbook's values (what Excel would hand over)."""
        book = cls(**kwargs)
        for ws in wb.worksheets:
            sheet = book.sheets.add(ws.title)
            for row in ws.iter_rows():
                for cell in row:
                    if cell.value is not None:
                        v = cell.value
                        v = float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                        sheet.cells[(cell.row, cell.column)] = v
        return book


# --- helpers ---------------------------------------------------------------------------------------------

def test_cell_and_colour_helpers():
    assert split_cell("F14") == ("F", 14)
    assert split_cell("$AA$3") == ("AA", 3)
    with pytest.raises(ValueError):
        split_cell("Log!F14")
    assert column_index("A") == 1 and column_index("AA") == 27 and column_letters(27) == "AA"
    assert internal_target("Log", "F14") == "'Log'!F14"
    assert internal_target("Mr O'Brien's log", "A1") == "'Mr O''Brien''s log'!A1"
    assert hex_colour((255, 155, 155)) == "#FF9B9B"
    assert hex_colour("FFFF9B9B") == "#FF9B9B"
    assert hex_colour("#ffd966") == "#FFD966"
    assert hex_colour(None) is None and hex_colour("00000000") == "#000000"
    assert strip_note(f"{excel_io.NOTE_PREFIX}\nNM001: x") == ""
    assert strip_note(f"their note\n\n{excel_io.NOTE_PREFIX}\nNM001: x") == "their note"
    assert strip_note("their note") == "their note"


def test_text_is_written_as_text_through_xlwings():
    assert excel_text_value("=1+1") == "'=1+1"
    assert excel_text_value("OAK-2026-0001") == "'OAK-2026-0001"
    assert excel_text_value("") is None
    assert excel_text_value(2.5) == 2.5
    assert excel_text_value(dt.date(2026, 1, 2)) == dt.datetime(2026, 1, 2)
    assert excel_text_value(float("nan")) is None
    assert excel_text_value("a\x07b") == "'ab"  # control characters cannot go into a cell


def test_chart_spec_rejects_non_ranges():
    with pytest.raises(ValueError):
        ChartSpec("t", "Log!B5:F9", "A6:A9", "M5", ())


# --- openpyxl backend ------------------------------------------------------------------------------------

def test_openpyxl_backend_writes_text_links_and_highlights():
    wb = openpyxl.Workbook()
    wb.active.title = "Log"
    wb["Log"]["F14"] = "moderate"
    xl = OpenpyxlIO(wb, name="x.xlsx", answers=["no"])
    xl.write_sheet("Checks", SheetContent(rows=[["Sheet", "Cell"], ["Log", "F14"], ["=2+2", None]],
                                         links={"B2": "'Log'!F14"}, header_row=1, position="first"))
    ws = wb["Checks"]
    assert wb.sheetnames[0] == "Checks"
    assert ws["A3"].value == "=2+2" and ws["A3"].data_type == "s"
    assert ws["B2"].hyperlink.location == "'Log'!F14" and ws["B2"].value == "F14"
    before = xl.highlight("Log", {"F14": Mark("#FF9B9B", f"{excel_io.NOTE_PREFIX}\nNM021: raise the tier")})
    assert before == {"F14": None}
    assert hex_colour(wb["Log"]["F14"].fill.fgColor.rgb) == "#FF9B9B"
    assert wb["Log"]["F14"].comment.text.endswith("raise the tier")
    xl.unhighlight("Log", before, ["#FF9B9B"])
    assert wb["Log"]["F14"].fill.fill_type is None and wb["Log"]["F14"].comment is None
    assert xl.alert("Go?", buttons="yes_no") == "no"
    assert xl.messages[-1] == ("nearmiss", "Go?", "yes_no")


def test_openpyxl_backend_keeps_a_users_own_note_and_fill():
    from openpyxl.comments import Comment
    from openpyxl.styles import PatternFill

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Site"
    ws["B2"].fill = PatternFill("solid", fgColor="FFF2CC")
    ws["B2"].comment = Comment("typed by the manager", "me")
    xl = OpenpyxlIO(wb)
    before = xl.highlight("Site", {"B2": Mark("#FFD966", f"{excel_io.NOTE_PREFIX}\nNM080: fill it")})
    assert before == {"B2": "#FFF2CC"}
    assert ws["B2"].comment.text.startswith("typed by the manager\n\n" + excel_io.NOTE_PREFIX)
    xl.unhighlight("Site", before, ["#FFD966"])
    assert hex_colour(ws["B2"].fill.fgColor.rgb) == "#FFF2CC"
    assert ws["B2"].comment.text == "typed by the manager"


# --- xlwings backend over the fake Book ------------------------------------------------------------------

def test_xlwings_backend_reads_values_from_a1():
    book = FakeBook()
    log = book.sheets.add("Log")
    log.cells[(1, 1)] = "Incident ref"
    log.cells[(3, 2)] = 4.0
    xl = XlwingsIO(book)
    assert xl.sheet_names == ["Log"]
    assert xl.read_sheet("Log") == [["Incident ref", None], [None, None], [None, 4.0]]
    assert xl.path == "/data/oakview.xlsx"
    assert XlwingsIO(FakeBook(fullname="https://tenant.sharepoint.com/x.xlsx")).path is None


def test_xlwings_backend_write_sheet_keeps_text_and_links_by_formula():
    book = FakeBook()
    book.sheets.add("Log")
    xl = XlwingsIO(book)
    content = SheetContent(rows=[["Checks"], [], ["Sheet", "Cell", "Message"], ["Log", "F14", "=cmd|' /C calc'!A0"]],
                           links={"B4": "'Log'!F14"}, header_row=3, widths={"C": 80}, hidden_columns=("D",),
                           position="first")
    xl.write_sheet("Checks", content)
    checks = book.sheets["Checks"]
    assert book.sheets[0] is checks and checks.active
    assert checks.cells[(4, 3)] == "'=cmd|' /C calc'!A0"  # Excel's text prefix: never a formula
    assert checks.formulas[(4, 2)] == '=HYPERLINK("#\'Log\'!F14","F14")'
    assert checks.freeze_panes.at == "4:4"
    assert ("column_width", (1, 4), (1, 4), 0) in checks.formats  # hidden
    # a second run clears the sheet and its charts first
    checks.charts.add(source=checks.range("A1:B2"))
    xl.write_sheet("Checks", SheetContent(rows=[["again"]]))
    assert checks.cells == {(1, 1): "'again"} and checks.charts[0].deleted


def test_xlwings_backend_chart_and_highlight_calls():
    book = FakeBook()
    sheet = book.sheets.add("Trends")
    xl = XlwingsIO(book)
    spec = ChartSpec("falls with harm", "B7:F30", "A8:A30", "M5",
                     (SeriesStyle("#1F4E79", marker="circle"), SeriesStyle("#595959"), SeriesStyle("#A6A6A6"),
                      SeriesStyle("#A6A6A6"), SeriesStyle("#ED7D31", line=False, marker="circle", marker_size=8)))
    xl.add_chart("Trends", spec)
    chart = sheet.charts[0]
    assert chart.kwargs["chart_type"] == "line_markers" and chart.kwargs["plot_by"] == "columns"
    assert (chart.kwargs["source"].first, chart.kwargs["source"].last) == ((7, 2), (30, 6))
    assert (chart.x_axis.first, chart.x_axis.last) == ((8, 1), (30, 1))
    assert chart.title == "falls with harm"
    assert chart.series[4].style["marker_size"] == 8
    log = book.sheets.add("Log")
    before = xl.highlight("Log", {"F14": Mark("#FF9B9B", f"{excel_io.NOTE_PREFIX}\nNM021: x")})
    assert before == {"F14": None} and log.colours[(14, 6)] == (255, 155, 155)
    assert log.notes[(14, 6)].text.endswith("NM021: x")
    xl.unhighlight("Log", before, ["#FF9B9B"])
    assert (14, 6) not in log.colours and (14, 6) not in log.notes


def test_xlwings_backend_reads_the_addin_conf_sheet():
    book = FakeBook()
    addin = FakeBook(name="nearmiss.xlam")
    conf = addin.sheets.add("myaddin.conf")
    conf.cells.update({(1, 1): "UDF Modules", (1, 2): "addin.xl.udfs",
                       (2, 1): "NEARMISS_SERVER_URL", (2, 2): "https://nm.example"})
    book.app.books["nearmiss.xlam"] = addin
    assert XlwingsIO(book).addin_conf_rows() == [["UDF Modules", "addin.xl.udfs"],
                                                 ["NEARMISS_SERVER_URL", "https://nm.example"]]
    assert XlwingsIO(FakeBook()).addin_conf_rows() == []
