"""The ribbon's actions as plain Python: bodies over the openpyxl adapter, entry points over a fake Book."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

import xlwings as xw
from addin.trends import key_measures
from addin.validate import validate_workbook
from addin.xl import checked_copy, macros, trends_sheet
from addin.xl.excel_io import OpenpyxlIO, hex_colour
from addin.xl.submit import Settings
from tests.conftest import DATA_END
from tests.test_xl_excel_io import FakeBook
from tests.test_xl_submit import Stub
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

NOW = dt.datetime(2026, 10, 31, 9, 30)


@pytest.fixture(scope="module")
def flawed_book(tmp_path_factory) -> Path:
    records = make_site(end=DATA_END, seed=21, months=8, flaw_rate=0.25)
    first = records.incidents.index[0]
    records.incidents.loc[first, "description"] = '=HYPERLINK("http://example.invalid","click")'
    return build_workbook(tmp_path_factory.mktemp("macros") / "oakview.xlsx", records)


def open_io(path: Path, **kwargs) -> OpenpyxlIO:
    return OpenpyxlIO(openpyxl.load_workbook(path), name=path.name, path=str(path), **kwargs)


# --- Check log ------------------------------------------------------------------------------------------

def test_check_log_reports_what_validate_workbook_reports(flawed_book):
    xl = open_io(flawed_book)
    findings = macros.check_log_body(xl, today=DATA_END, now=NOW)
    assert findings == validate_workbook(flawed_book, today=DATA_END)  # same findings, same cells
    assert len(findings) > 10
    ws = xl.wb[checked_copy.SHEET]
    assert xl.wb.sheetnames[0] == checked_copy.SHEET
    rows = list(ws.iter_rows(min_row=checked_copy.HEADER_ROW + 1, values_only=True))
    assert [tuple(r[:6]) for r in rows] == [(f.sheet, f.cell, f.ref or None, f.rule, f.severity, f.message)
                                           for f in findings]
    linked = [f for f in findings if f.cell]
    for i, f in enumerate(findings):
        cell = ws.cell(checked_copy.HEADER_ROW + 1 + i, 2)
        if f.cell:
            assert cell.hyperlink.location == f"'{f.sheet}'!{f.cell}"
    first = linked[0]
    target = xl.wb[first.sheet][first.cell]
    assert hex_colour(target.fill.fgColor.rgb) == checked_copy.FILLS[first.severity] or first.severity == "warning"
    assert first.message in target.comment.text
    title, message, _ = xl.messages[-1]
    assert message.startswith(checked_copy.summary_line(findings, flawed_book.name, NOW))


def test_check_log_twice_undoes_the_first_highlights(flawed_book, tmp_path):
    xl = open_io(flawed_book)
    first = macros.check_log_body(xl, today=DATA_END, now=NOW)
    f = next(x for x in first if x.sheet == "Log" and x.cell)
    xl.wb["Log"][f.cell].value = None  # pretend the manager fixed something ...
    xl.wb["Log"]["A2"].value = xl.wb["Log"]["A2"].value  # ... and the rest stays
    xl.unhighlight("Log", {f.cell: None}, list(checked_copy.FILLS.values()))  # the fix cleared its highlight
    second = macros.check_log_body(xl, today=DATA_END, now=NOW)
    cells_now = {(x.sheet, x.cell) for x in second if x.cell}
    for sheet in ("Log", "Actions", "Site"):
        ws = xl.wb[sheet]
        for row in ws.iter_rows():
            for cell in row:
                filled = cell.fill is not None and cell.fill.fill_type == "solid" and \
                    hex_colour(cell.fill.fgColor.rgb) in checked_copy.FILLS.values()
                assert filled == ((sheet, cell.coordinate) in cells_now), (sheet, cell.coordinate)
    assert len(list(xl.wb[checked_copy.SHEET].iter_rows(min_row=checked_copy.HEADER_ROW + 1))) == len(second)


def test_check_log_on_a_workbook_that_is_not_a_log():
    wb = openpyxl.Workbook()
    wb.active.title = "My incidents"
    xl = OpenpyxlIO(wb, name="old.xlsx")
    assert macros.check_log_body(xl) == []
    assert "not a nearmiss log" in xl.messages[-1][1] and "Checks" not in wb.sheetnames


# --- Refresh trends -------------------------------------------------------------------------------------

def test_refresh_trends_writes_the_key_measures_and_charts(flawed_book):
    xl = open_io(flawed_book)
    results = macros.refresh_trends_body(xl, today=DATA_END)
    records = macros.read_live(xl).records
    expected = key_measures(records.incidents, records.actions, records.exposure, records.site.get("setting"),
                            today=DATA_END)
    assert [r.name for r in results] == [r.name for r in expected]
    ws = xl.wb[trends_sheet.SHEET]
    assert len(ws._charts) == len(results) == 8
    _, _, blocks = trends_sheet.trends_content(results, today=DATA_END)
    for block, result in zip(blocks, expected):
        values = [ws.cell(r, 2).value for r in range(block.first_row, block.last_row + 1)]
        means = [ws.cell(r, 3).value for r in range(block.first_row, block.last_row + 1)]
        spc = result.spc
        assert values == pytest.approx([None if v != v else v for v in result.values], nan_ok=True)
        assert means == pytest.approx([None if v != v else v for v in spc["mean"]], nan_ok=True)
        assert ws.cell(block.header_row, 1).value == "Month"
    assert "Trends sheet now shows 8 measures" in xl.messages[-1][1]


# --- Import existing log --------------------------------------------------------------------------------

@pytest.fixture
def legacy_log(tmp_path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Incidents 2025"
    ws["A1"] = "Oakview House incident log"
    for j, h in enumerate(["Ref", "Date", "Type of incident", "Near miss? (y/n)", "What happened?", "Harm",
                           "Action taken", "Status"], start=1):
        ws.cell(3, j, h)
    rows = [["1", dt.datetime(2025, 3, 4), "Fall", "n", "Found on floor in bedroom", "Minor", "GP informed", "Closed"],
            ["2", "05/03/2025", "Medication", "y", "Wrong dose prepared, caught before given", "None", "MAR checked",
             "Open"]]
    for i, row in enumerate(rows, start=4):
        for j, v in enumerate(row, start=1):
            ws.cell(i, j, v)
    path = tmp_path / "old log.xlsx"
    wb.save(path)
    return path


def test_import_converts_beside_the_old_log_and_opens_it(legacy_log):
    xl = OpenpyxlIO(openpyxl.Workbook(), name="Book1")
    settings = Settings(site_code="OAK", site_name="Oakview House", setting="care_home")
    out = macros.import_log_body(xl, source=legacy_log, settings=settings, today=DATA_END)
    assert out == legacy_log.with_name("old log - nearmiss.xlsx") and out.is_file()
    assert xl.opened == [str(out)]
    assert xl.messages[-1][1].startswith("Imported 2 rows from old log.xlsx into old log - nearmiss.xlsx")
    log = openpyxl.load_workbook(out)["Log"]
    assert log["A2"].value.startswith("OAK-2025-")
    again = macros.import_log_body(xl, source=legacy_log, settings=settings, today=DATA_END)
    assert again.name == "old log - nearmiss (2).xlsx"  # never overwrites


def test_import_asks_for_the_file_and_site_when_not_configured(legacy_log):
    xl = OpenpyxlIO(openpyxl.Workbook(), name="Book1",
                    answers=[str(legacy_log), "oak", "Oakview House", "care_home"])
    out = macros.import_log_body(xl, settings=Settings(), today=DATA_END)
    assert out is not None and out.is_file()
    assert [m[2] for m in xl.messages[:4]] == ["file", "text", "text", "text"]


def test_import_stops_cleanly_on_cancel_and_bad_input(legacy_log, tmp_path):
    xl = OpenpyxlIO(openpyxl.Workbook(), name="Book1", answers=[None])
    assert macros.import_log_body(xl, settings=Settings()) is None  # file picker cancelled
    xl = OpenpyxlIO(openpyxl.Workbook(), name="Book1", answers=["Oak view!"])
    assert macros.import_log_body(xl, source=legacy_log, settings=Settings()) is None
    assert "is not a site code" in xl.messages[-1][1]
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a workbook at all")
    xl = OpenpyxlIO(openpyxl.Workbook(), name="Book1")
    settings = Settings(site_code="OAK", site_name="Oakview House", setting="care_home")
    assert macros.import_log_body(xl, source=broken, settings=settings) is None
    assert xl.messages[-1][1].startswith("The old log could not be imported")


# --- Submit to area -------------------------------------------------------------------------------------

def test_submit_saves_and_posts(flawed_book, tmp_path):
    stub = Stub()
    try:
        stub.body = {"site_code": "OAK", "counts": {"incidents": 3, "actions": 1}, "errors": 0, "warnings": 0}
        path = tmp_path / "site.xlsx"
        path.write_bytes(flawed_book.read_bytes())
        xl = open_io(path)
        result = macros.submit_body(xl, settings=Settings(server_url=stub.url, token="tok"))
        assert result.ok and xl.saved == 1
        assert stub.requests[0]["headers"]["Authorization"] == "Bearer tok"
        assert xl.messages[-1][1].startswith("Submitted OAK's log to the area server")
        stub.status, stub.body = 401, {"error": "unknown token"}
        result = macros.submit_body(xl, settings=Settings(server_url=stub.url, token="old"))
        assert result.status == 401 and "did not accept this site's token" in xl.messages[-1][1]
    finally:
        stub.close()


def test_submit_needs_settings_a_saved_file_and_a_yes(flawed_book):
    xl = open_io(flawed_book)
    assert macros.submit_body(xl, settings=Settings()) is None
    assert "does not know the server address and this site's token" in xl.messages[-1][1]
    unsaved = OpenpyxlIO(openpyxl.load_workbook(flawed_book), name="Book1")
    assert macros.submit_body(unsaved, settings=Settings(server_url="https://x.example", token="t")) is None
    assert "Save the workbook on this computer first" in unsaved.messages[-1][1]
    no = open_io(flawed_book, answers=["cancel"])
    assert macros.submit_body(no, settings=Settings(server_url="https://x.example", token="t")) is None
    assert no.saved == 0


# --- the chooser behind the one ribbon button ------------------------------------------------------------

@pytest.mark.parametrize("answers,expected", [
    (["yes"], "check_log"),
    (["no", "yes"], "refresh_trends"),
    (["no", "no", "yes"], "import_log"),
    (["no", "no", "no"], "submit_to_area"),
    (["cancel"], None),
    (["no", "cancel"], None),
    (["no", "no", "cancel"], None),
    ([None], None),
])
def test_chooser_maps_each_answer_to_its_action(answers, expected):
    asked = []

    def ask(message, buttons):
        asked.append(buttons)
        return answers[len(asked) - 1]

    assert macros.choose_action(ask, log=True) == expected
    assert set(asked) == {"yes_no_cancel"}


def test_chooser_outside_a_log_offers_only_import():
    assert macros.choose_action(lambda m, b: "ok", log=False) == "import_log"
    assert macros.choose_action(lambda m, b: "cancel", log=False) is None


def test_chooser_questions_name_the_four_actions():
    text = " ".join(q[0] for q in macros.chooser_questions(True))
    for label in macros.LABELS.values():
        assert label in text
    actions = {a for q in macros.chooser_questions(True) for a in q[2:] if a}
    assert actions == set(macros.BODIES) == set(macros.LABELS) == set(macros.ENTRY_POINTS)


@pytest.mark.parametrize("answers,expected", [(["yes"], "check_log"), (["no", "yes"], "refresh_trends"),
                                              (["no", "no", "yes"], "import_log"),
                                              (["no", "no", "no"], "submit_to_area")])
def test_main_dispatches_to_the_chosen_body(monkeypatch, flawed_book, answers, expected):
    called = []
    monkeypatch.setattr(macros, "BODIES", {name: (lambda n: lambda xl, **kw: called.append(n))(name)
                                           for name in macros.BODIES})
    xl = open_io(flawed_book, answers=answers)
    assert macros.main_body(xl) == expected
    assert called == [expected]


# --- the @xw.sub entry points, over a fake xw.Book.caller() ---------------------------------------------

def test_entry_points_run_the_bodies_on_the_callers_book(monkeypatch, flawed_book):
    book = FakeBook.from_openpyxl(openpyxl.load_workbook(flawed_book), name="oakview.xlsx",
                                  fullname=str(flawed_book), answers=["yes", "ok"])
    monkeypatch.setattr(xw.Book, "caller", staticmethod(lambda: book))
    import addin.excel.nearmiss as ribbon_module  # what RunMain imports
    assert ribbon_module.main is macros.main
    macros.main()  # "yes": Check log
    checks = book.sheets[checked_copy.SHEET]
    expected = validate_workbook(flawed_book)  # today: the entry point checks as of now
    assert checks.cells[(checked_copy.HEADER_ROW, 1)] == "'Sheet"
    assert len([k for k in checks.cells if k[0] > checked_copy.HEADER_ROW and k[1] == 4]) == len(expected)
    linked = [f for f in expected if f.cell]
    assert book.sheets[linked[0].sheet].colours  # cells highlighted in the live book
    counts = checked_copy.summary_line(expected, "oakview.xlsx", NOW).split(", checked")[0]
    assert book.app.alerts[-1][1].startswith(counts)


def test_entry_point_reports_an_unexpected_error_instead_of_a_traceback(monkeypatch, tmp_path):
    book = FakeBook()
    book.sheets.add("Log")
    monkeypatch.setattr(xw.Book, "caller", staticmethod(lambda: book))
    monkeypatch.setattr(macros, "live_findings", lambda xl, today=None: 1 / 0)
    monkeypatch.setattr(macros.tempfile, "gettempdir", lambda: str(tmp_path))
    assert macros.check_log() is None
    assert book.app.alerts[-1][1].startswith("nearmiss stopped unexpectedly (ZeroDivisionError")
    assert "ZeroDivisionError" in (tmp_path / "nearmiss-addin-error.log").read_text()


def test_check_and_trends_on_an_empty_template(tmp_path):
    path = build_workbook(tmp_path / "new.xlsx", site={"site_code": "OAK", "site_name": "Oak", "setting": "care_home"})
    xl = open_io(path)
    assert macros.check_log_body(xl, today=DATA_END, now=NOW) == []
    assert xl.messages[-1][1].startswith("No problems found in new.xlsx")
    macros.refresh_trends_body(xl, today=DATA_END)
    assert "no records yet" in xl.messages[-1][1] and not xl.wb[trends_sheet.SHEET]._charts
