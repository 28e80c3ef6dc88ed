"""The Checks sheet and the checked copy as pure functions (the LibreOffice round trip is in test_xl_libreoffice)."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pytest

from addin.findings import Finding, make_finding
from addin.xl import checked_copy, trends_sheet
from addin.xl.excel_io import hex_colour
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

NOW = dt.datetime(2026, 10, 31, 14, 5)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_workbook(tmp_path_factory.mktemp("copy") / "oakview.xlsx",
                          make_site(end=DATA_END, seed=4, months=3))


def test_summary_line():
    err = Finding("f.xlsx", "Log", "F3", "OAK-1", "NM021", "error", "x")
    warn = Finding("f.xlsx", "Log", "G3", "OAK-1", "NM025", "warning", "y")
    assert checked_copy.summary_line([], "f.xlsx", NOW) == "No problems found in f.xlsx, checked 31/10/2026 14:05."
    assert checked_copy.summary_line([err, err, warn], "f.xlsx", NOW).startswith("2 errors and 1 warning in f.xlsx")
    assert checked_copy.summary_line([warn], "", NOW) == "1 warning, checked 31/10/2026 14:05."


def test_copy_from_bytes_to_bytes_with_odd_findings(template):
    findings = [
        make_finding("NM090", file="oakview.xlsx", value="Archive"),  # no sheet, no cell
        Finding("oakview.xlsx", "Archive", "B2", "", "NM091", "warning", "not in this workbook"),
        make_finding("NM021", file="oakview.xlsx", sheet="Log", cell="P2", ref="OAK-2026-0001"),
        make_finding("NM025", file="oakview.xlsx", sheet="Log", cell="P2", ref="OAK-2026-0001", value="serious"),
        make_finding("NM080", file="oakview.xlsx", sheet="Site", cell="B6", label="CQC location ID"),
    ]
    data = checked_copy.write_checked_copy(template.read_bytes(), findings, file="oakview.xlsx", checked_at=NOW)
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb[checked_copy.SHEET]
    rows = [r[:6] for r in ws.iter_rows(min_row=checked_copy.HEADER_ROW + 1, values_only=True)]
    assert [r[3] for r in rows] == ["NM090", "NM091", "NM021", "NM025", "NM080"]
    links = {c.coordinate: c.hyperlink.location for row in ws.iter_rows() for c in row if c.hyperlink}
    assert links == {"B8": "'Log'!P2", "B9": "'Log'!P2", "B10": "'Site'!B6"}  # only cells that exist
    p2 = wb["Log"]["P2"]
    assert hex_colour(p2.fill.fgColor.rgb) == checked_copy.FILLS["error"]  # the worst of the two
    assert "NM021 (error)" in p2.comment.text and "NM025 (warning)" in p2.comment.text
    b6 = wb["Site"]["B6"]
    assert hex_colour(b6.fill.fgColor.rgb) == checked_copy.FILLS["error"]
    assert ws["A2"].value.startswith("3 errors and 2 warnings in oakview.xlsx")
    assert ws.column_dimensions["G"].hidden


def test_copy_without_findings_says_so(template, tmp_path):
    out = checked_copy.write_checked_copy(template, [], tmp_path / "ok.xlsx", checked_at=NOW)
    ws = openpyxl.load_workbook(out)[checked_copy.SHEET]
    assert ws["B2"].value is None and ws["A2"].value == "No problems found in oakview.xlsx, checked 31/10/2026 14:05."
    assert ws.max_row == checked_copy.HEADER_ROW


def test_copy_keeps_the_users_sheets_validation_and_formatting(template, tmp_path):
    out = checked_copy.write_checked_copy(template, [], tmp_path / "same.xlsx")
    before, after = openpyxl.load_workbook(template), openpyxl.load_workbook(out)
    assert after.sheetnames == [checked_copy.SHEET, *before.sheetnames]
    for name in before.sheetnames:
        b, a = before[name], after[name]
        assert [[c.value for c in r] for r in b.iter_rows()] == [[c.value for c in r] for r in a.iter_rows()]
        assert len(b.data_validations.dataValidation) == len(a.data_validations.dataValidation)
        assert len(b.conditional_formatting) == len(a.conditional_formatting)
        assert set(b.tables) == set(a.tables)
        assert len(b._charts) == len(a._charts)


def test_copy_of_a_file_object_and_a_macro_workbook_is_plain_xlsx(template, tmp_path):
    with open(template, "rb") as handle:
        data = checked_copy.write_checked_copy(handle, [])
    with io.BytesIO(data) as buffer:
        import zipfile
        names = zipfile.ZipFile(buffer).namelist()
    assert "xl/vbaProject.bin" not in names


# --- the Trends sheet layout -------------------------------------------------------------------------------

def test_trends_blocks_do_not_overlap_and_columns_follow_the_direction():
    records = make_site(end=DATA_END, seed=8, months=14)
    results = trends_sheet.measures_for(records, today=DATA_END)
    content, charts, blocks = trends_sheet.trends_content(results, site="OAK", today=DATA_END)
    assert len(blocks) == len(charts) == len(results)
    for a, b in zip(blocks, blocks[1:]):
        assert b.title_row > max(a.last_row, a.title_row + trends_sheet.CHART_ROWS)
    by_name = {b.name: b for b in blocks}
    assert "Special cause" in by_name["all_reports"].columns  # neutral
    assert {"Concern", "Improvement"} <= set(by_name["falls_with_harm"].columns)
    assert any(c.startswith("Per 1,000 occupied bed days") for c in by_name["falls_with_harm"].columns)
    assert all(len(chart.series) == 5 + (r.improvement != "neutral") for chart, r in zip(charts, results))


def test_trends_with_no_results_is_just_the_title_block():
    content, charts, blocks = trends_sheet.trends_content([], today=DATA_END)
    assert charts == [] and blocks == [] and content.rows[0] == ["Trends"]
