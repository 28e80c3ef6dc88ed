"""The checked copy, the Trends sheet and the add-in, opened in headless LibreOffice and read back.

All workbooks are converted in one LibreOffice call (module fixture); the add-in, which needs
LibreOffice's VBA-aware import filter, in a second one.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest

from addin.validate import validate_workbook
from addin.xl import checked_copy, macros, trends_sheet
from addin.xl.excel_io import OpenpyxlIO, hex_colour
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.synthetic import make_site

pytestmark = pytest.mark.libreoffice

FORMULA_TEXT = '=HYPERLINK("http://example.invalid","click me")'
CODE_TEXT = "=1+1"
NOW = dt.datetime(2026, 10, 31, 9, 30)


@pytest.fixture(scope="module")
def converted(libreoffice, tmp_path_factory):
    """Source workbooks and their LibreOffice round trips: checked copy, trends workbook, macro output."""
    d = tmp_path_factory.mktemp("xl-lo")
    records = make_site(end=DATA_END, seed=31, months=10, flaw_rate=0.2)
    first, second = records.incidents.index[:2]
    records.incidents.loc[first, "description"] = FORMULA_TEXT
    records.incidents.loc[second, "category"] = CODE_TEXT
    source = build_workbook(d / "oakview.xlsx", records)
    findings = validate_workbook(source, today=DATA_END)
    copy = checked_copy.write_checked_copy(source, findings, d / "checked.xlsx", checked_at=NOW)

    results = trends_sheet.measures_for(records, today=DATA_END)
    trends = trends_sheet.write_trends_workbook(d / "trends.xlsx", results, site="Oakview House", today=DATA_END)

    wb = openpyxl.load_workbook(source)
    xl = OpenpyxlIO(wb, name="oakview.xlsx")
    macros.check_log_body(xl, today=DATA_END, now=NOW)
    macros.refresh_trends_body(xl, today=DATA_END)
    live = d / "macros.xlsx"
    wb.save(live)

    out = libreoffice.convert([copy, trends], d / "lo")  # one LibreOffice run for both
    return {"findings": findings, "results": results, "source": source,
            "copy": out[0], "trends": out[1], "macros": live}


def checks_rows(ws) -> list[tuple]:
    return [tuple(r[:6]) for r in ws.iter_rows(min_row=checked_copy.HEADER_ROW + 1, values_only=True)
            if any(v is not None for v in r[:6])]


def as_row(f) -> tuple:
    return (f.sheet, f.cell or None, f.ref or None, f.rule, f.severity, f.message)


def test_checked_copy_rows_are_the_findings(converted):
    wb = openpyxl.load_workbook(converted["copy"])
    assert wb.sheetnames[0] == checked_copy.SHEET
    ws = wb[checked_copy.SHEET]
    assert checks_rows(ws) == [as_row(f) for f in converted["findings"]]
    assert ws.cell(checked_copy.HEADER_ROW, 1).value == "Sheet"
    assert ws["A3"].value == checked_copy.COPY_NOTE
    # the user's own sheets are all there, the Dashboard with its three charts
    assert {"Guide", "Site", "Log", "Actions", "Dashboard"} <= set(wb.sheetnames)
    with zipfile.ZipFile(converted["copy"]) as z:
        assert sum(1 for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)) == 3


def test_checked_copy_links_point_at_the_cells(converted):
    ws = openpyxl.load_workbook(converted["copy"])[checked_copy.SHEET]
    linked = 0
    for i, f in enumerate(converted["findings"]):
        cell = ws.cell(checked_copy.HEADER_ROW + 1 + i, 2)
        if f.cell and f.sheet:
            assert cell.hyperlink is not None, f
            target = cell.hyperlink.location or cell.hyperlink.target
            sheet, _, ref = target.lstrip("#").rpartition("!")
            assert (sheet.strip("'"), ref.replace("$", "")) == (f.sheet, f.cell)
            linked += 1
    assert linked > 10


def test_checked_copy_highlights_and_notes_the_cells(converted):
    wb = openpyxl.load_workbook(converted["copy"])
    by_cell: dict[tuple[str, str], list] = {}
    for f in converted["findings"]:
        if f.cell and f.sheet in wb.sheetnames:
            by_cell.setdefault((f.sheet, f.cell), []).append(f)
    for (sheet, ref), found in by_cell.items():
        cell = wb[sheet][ref]
        worst = "error" if any(f.severity == "error" for f in found) else "warning"
        assert cell.fill.fill_type == "solid" and hex_colour(cell.fill.fgColor.rgb) == checked_copy.FILLS[worst]
        assert cell.comment is not None and all(f.message in cell.comment.text for f in found)


def test_user_text_starting_with_equals_stays_text(converted):
    wb = openpyxl.load_workbook(converted["copy"])  # formulas as formulas: text must not be one
    log = wb["Log"]
    description = log.cell(2, 1 + [c.value for c in log[1]].index("What happened"))
    category = log.cell(3, 1 + [c.value for c in log[1]].index("Category"))
    assert (description.value, description.data_type) == (FORMULA_TEXT, "s")
    assert (category.value, category.data_type) == (CODE_TEXT, "s")
    messages = [r[5] for r in checks_rows(wb[checked_copy.SHEET])]
    assert any(m.startswith(f"'{CODE_TEXT}' is not an allowed Category") for m in messages)
    checks = wb[checked_copy.SHEET]
    assert all(c.data_type != "f" for row in checks.iter_rows() for c in row)


def test_trends_workbook_has_the_spc_tables_and_native_charts(converted):
    results = converted["results"]
    with zipfile.ZipFile(converted["trends"]) as z:
        charts = sorted(n for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
        assert len(charts) == len(results) == 8
        xml = [z.read(n).decode() for n in charts]
    _, specs, blocks = trends_sheet.trends_content(results, site="Oakview House", today=DATA_END)
    for spec in specs:
        first, last = spec.categories.split(":")
        months = f"$A${first[1:]}:$A${last[1:]}"  # the chart's x axis: this block's months
        [chart] = [x for x in xml if months in x]
        assert "<c:lineChart>" in chart
        assert chart.count("<c:ser>") == len(spec.series)
    ws = openpyxl.load_workbook(converted["trends"], data_only=True)[trends_sheet.SHEET]
    for block, result in zip(blocks, results):
        assert ws.cell(block.title_row, 1).value.startswith(result.label)
        assert ws.cell(block.title_row + 1, 1).value == result.signal
        table = [[ws.cell(r, c).value for c in range(1, 6)] for r in range(block.first_row, block.last_row + 1)]
        assert [row[0].date() for row in table] == [m.date() for m in result.months]
        spc = result.spc
        for row, value, (_, point) in zip(table, result.values, spc.iterrows()):
            expected = [value, point["mean"], point["lpl"], point["upl"]]
            assert row[1:5] == pytest.approx([None if v != v else v for v in expected], nan_ok=True)


def test_macro_output_has_checks_trends_and_the_dashboard(converted):
    # Written through the same adapter code as the two files above (which LibreOffice opened).
    wb = openpyxl.load_workbook(converted["macros"])
    assert checks_rows(wb[checked_copy.SHEET]) == [as_row(f) for f in validate_workbook(converted["source"],
                                                                                         today=DATA_END)]
    with zipfile.ZipFile(converted["macros"]) as z:
        charts = sum(1 for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
    assert charts == 8 + 3  # the Trends sheet's and the Dashboard's
    assert trends_sheet.SHEET in wb.sheetnames


def test_libreoffice_reads_the_addins_vba_and_settings(libreoffice, tmp_path):
    addin = Path(macros.__file__).parents[1] / "excel" / "nearmiss.xlam"
    cmd = [libreoffice.binary, f"-env:UserInstallation=file://{libreoffice.profile.resolve()}", "--headless",
           "--norestore", "--infilter=Calc MS Excel 2007 VBA XML", "--convert-to", "ods", "--outdir", str(tmp_path),
           str(addin)]
    subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)
    with zipfile.ZipFile(tmp_path / "nearmiss.ods") as z:
        names = z.namelist()
        ribbon_module = next(n for n in names if n.endswith("/RibbonMyAddin.xml"))
        assert "Sub RunMain(control As IRibbonControl)" in z.read(ribbon_module).decode()
        content = z.read("content.xml").decode()
    assert 'table:name="myaddin.conf"' in content and "addin.xl.udfs" in content
