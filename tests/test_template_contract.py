"""The written template, read back with openpyxl and as raw XML, against the contract it is built from."""

from __future__ import annotations

import datetime as dt
import re
import zipfile

import openpyxl
import pytest
from openpyxl.utils import column_index_from_string

from tests.conftest import DATA_END
from workbook_templates import builder, dashboard, guide
from workbook_templates.builder import BLANK_TABLE_ROWS, OVERDUE_FILL, TIER_COLOURS, build_workbook
from workbook_templates.codelists import CODE_LISTS, REVIEW_TARGET_DAYS
from workbook_templates.contract import (
    ACTIONS, EXPOSURE_FIELDS, EXPOSURE_MONTHS, EXPOSURE_TABLE, INCIDENTS, LIMITS, LISTS_SHEET, SITE_FIELDS,
    TABLE_SHEETS, code_fields,
)
from workbook_templates.synthetic import make_site

LAST = LIMITS["template_rows"] + 1  # last sheet row validation and formatting cover
SITE = {"site_code": "OAK", "site_name": "Oakview House", "setting": "care_home", "provider": "Synthetic Care Ltd"}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = build_workbook(tmp_path_factory.mktemp("contract") / "oak.xlsx", site=SITE,
                          first_month=dt.date(2025, 4, 1))
    return path, openpyxl.load_workbook(path)


def validations(ws) -> dict[str, object]:
    """Data validations by the column they cover (each covers one column)."""
    out = {}
    for dv in ws.data_validations.dataValidation:
        for rng in str(dv.sqref).split():
            m = re.fullmatch(r"([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?", rng)
            out[m.group(1)] = (dv, int(m.group(2)), int(m.group(4) or m.group(2)), m.group(3) or m.group(1))
    return out


def resolve_list(wb, formula: str) -> list[str]:
    """A list validation's source, through its defined name, to the values on the Lists sheet."""
    name = formula.lstrip("=")
    target = wb.defined_names[name].attr_text
    m = re.fullmatch(r"'?([^'!]+)'?!\$([A-Z]+)\$(\d+):\$([A-Z]+)\$(\d+)", target)
    sheet, col, first, col2, last = m.groups()
    assert sheet == LISTS_SHEET and col == col2
    ws = wb[sheet]
    return [ws[f"{col}{r}"].value for r in range(int(first), int(last) + 1)]


@pytest.mark.parametrize("sheet,field", code_fields(), ids=lambda x: getattr(x, "name", None) or x.key)
def test_every_coded_column_has_its_code_list_as_a_dropdown(template, sheet, field):
    _, wb = template
    ws = wb[sheet.sheet]
    dv, first, last, last_col = validations(ws)[sheet.column_letter(field.name)]
    assert dv.type == "list"
    assert (first, last, last_col) == (2, LAST, sheet.column_letter(field.name))
    assert resolve_list(wb, dv.formula1) == list(CODE_LISTS[field.codes])
    assert dv.allow_blank  # blank rows never trip the drop-down
    assert dv.showErrorMessage and dv.errorStyle in (None, "stop") and dv.error and dv.errorTitle
    assert dv.showInputMessage and dv.prompt == field.help[:255] and dv.promptTitle == field.label[:32]


@pytest.mark.parametrize("sheet", TABLE_SHEETS.values(), ids=lambda s: s.key)
def test_date_columns_take_only_dates_with_help_and_error_messages(template, sheet):
    _, wb = template
    found = validations(wb[sheet.sheet])
    for field in (f for f in sheet.fields if f.type == "date"):
        dv, first, last, _ = found[sheet.column_letter(field.name)]
        assert dv.type == "date" and (first, last) == (2, LAST), field.name
        assert dv.operator in (None, "between")
        assert dv.formula1 == str((dt.date(2000, 1, 1) - dt.date(1899, 12, 30)).days)
        # Dates that have happened may not be in the future; due and check dates may.
        assert (dv.formula2 == "TODAY()") != field.future_ok, field.name
        assert dv.showInputMessage and dv.prompt and dv.promptTitle, field.name
        assert dv.showErrorMessage and "dd/mm/yyyy" in dv.error and dv.errorTitle, field.name
        assert dv.allow_blank


def test_time_column_takes_times_and_builder_writes_times_as_times(template, tmp_path):
    _, wb = template
    letter = INCIDENTS.column_letter("occurred_time")
    dv, first, last, _ = validations(wb[INCIDENTS.sheet])[letter]
    assert (dv.type, first, last) == ("time", 2, LAST) and "hh:mm" in dv.error and dv.prompt

    records = make_site(end=DATA_END, seed=1)
    records.incidents.loc[0, "occurred_time"] = "14:30"
    records.incidents.loc[1, "occurred_time"] = "after lunch"  # an old log's words stay text
    path = build_workbook(tmp_path / "times.xlsx", records)
    ws = openpyxl.load_workbook(path)[INCIDENTS.sheet]
    assert ws[f"{letter}2"].value == dt.time(14, 30) and ws[f"{letter}2"].number_format == "hh:mm"
    assert ws[f"{letter}3"].value == "after lunch"


def test_scores_take_whole_numbers_one_to_five(template):
    _, wb = template
    found = validations(wb[INCIDENTS.sheet])
    for name in ("consequence", "likelihood"):
        dv = found[INCIDENTS.column_letter(name)][0]
        assert (dv.type, dv.formula1, dv.formula2) == ("whole", "1", "5")


@pytest.mark.parametrize("sheet", TABLE_SHEETS.values(), ids=lambda s: s.key)
def test_every_input_column_has_help_and_derived_columns_are_calculated(template, sheet):
    _, wb = template
    ws = wb[sheet.sheet]
    found = validations(ws)
    table = ws.tables[sheet.table]
    columns = {c.name: c for c in table.tableColumns}
    for field in sheet.fields:
        letter = sheet.column_letter(field.name)
        if field.type == "derived":
            assert letter not in found
            formula = columns[field.label].calculatedColumnFormula.attr_text
            # One formula for the whole column, with no row-specific reference, so Excel fills it in as the
            # table grows and LibreOffice (which ignores structured references) evaluates it.
            assert "=" + formula == builder.table_formula(sheet, field.name)
            assert "ROW()" in formula and not re.search(r"\$?[A-Z]{1,2}\$?\d", formula) and "[" not in formula
            for r in range(2, BLANK_TABLE_ROWS + 2):
                assert ws[f"{letter}{r}"].value == "=" + formula
        else:
            assert found[letter][0].prompt == field.help[:255], field.name


@pytest.mark.parametrize("sheet", TABLE_SHEETS.values(), ids=lambda s: s.key)
def test_tables_have_the_contract_labels_in_order(template, sheet):
    _, wb = template
    ws = wb[sheet.sheet]
    table = ws.tables[sheet.table]
    assert [c.name for c in table.tableColumns] == sheet.labels
    assert [c.value for c in ws[1]][:len(sheet.fields)] == sheet.labels
    assert table.ref == f"A1:{sheet.column_letter(sheet.names[-1])}{BLANK_TABLE_ROWS + 1}"
    assert ws.freeze_panes == "B2"  # header row and reference column stay in view
    widths = {}
    for dim in ws.column_dimensions.values():
        for index in range(dim.min, dim.max + 1):
            widths[index] = dim.width
    for i, field in enumerate(sheet.fields, start=1):
        assert widths[i] == pytest.approx(builder.column_width(field), abs=1), field.name
        assert field.width <= builder.column_width(field) <= max(field.width, 15)


@pytest.mark.parametrize("sheet", TABLE_SHEETS.values(), ids=lambda s: s.key)
def test_table_sheets_print_readably(template, sheet):
    _, wb = template
    ws = wb[sheet.sheet]
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9  # A4
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.page_setup.fitToWidth == builder.sheet_pages_wide(sheet) and ws.page_setup.fitToHeight == 0
    assert ws.print_title_rows == "$1:$1" and ws.print_title_cols == "$A:$A"
    assert "Oakview House" in ws.oddHeader.left.text and "NHS numbers" in ws.oddFooter.left.text


def conditional_rules(ws):
    return [(str(cf.sqref), rule) for cf in ws.conditional_formatting for rule in cf.rules]


def fill_colour(rule) -> str:
    fill = rule.dxf.fill
    return (fill.bgColor.rgb or fill.fgColor.rgb)[-6:].upper()


def test_log_colours_tiers_and_highlights_overdue_open_items(template):
    _, wb = template
    ws = wb[INCIDENTS.sheet]
    rules = conditional_rules(ws)
    tier = INCIDENTS.column_letter("response_tier")
    tier_rules = {r.formula[0].strip('"'): fill_colour(r) for rng, r in rules
                  if rng == f"{tier}2:{tier}{LAST}" and r.type == "cellIs"}
    assert tier_rules == {t: c.lstrip("#").upper() for t, c in TIER_COLOURS.items()}
    assert list(tier_rules) == list(CODE_LISTS["response_tier"])
    whole_rows = f"A2:{INCIDENTS.column_letter(INCIDENTS.names[-1])}{LAST}"
    [overdue] = [r for rng, r in rules if rng == whole_rows]
    formula = overdue.formula[0]
    assert fill_colour(overdue) == OVERDUE_FILL.lstrip("#").upper()
    assert "TODAY()" in formula and f'${INCIDENTS.column_letter("status")}2<>"closed"' in formula
    assert f"ISNUMBER(${INCIDENTS.column_letter('reported_at')}2)" in formula  # blank rows never light up
    for days in REVIEW_TARGET_DAYS.values():
        assert str(days) in formula


def test_actions_highlight_overdue_rows_by_formula(template):
    _, wb = template
    ws = wb[ACTIONS.sheet]
    whole_rows = f"A2:{ACTIONS.column_letter(ACTIONS.names[-1])}{LAST}"
    formulas = {r.formula[0]: r for rng, r in conditional_rules(ws) if rng == whole_rows and r.type == "expression"}
    [overdue] = [f for f in formulas if "TODAY()" in f]
    due, status = ACTIONS.column_letter("due_date"), ACTIONS.column_letter("status")
    assert f"${due}2<TODAY()" in overdue and f'${status}2="open"' in overdue and f'${status}2="in_progress"' in overdue
    assert f"ISNUMBER(${due}2)" in overdue
    assert fill_colour(formulas[overdue]) == OVERDUE_FILL.lstrip("#").upper()


def test_lists_sheet_is_hidden_and_holds_every_code_list(template):
    _, wb = template
    ws = wb[LISTS_SHEET]
    assert ws.sheet_state == "hidden"
    for name, values in CODE_LISTS.items():
        assert resolve_list(wb, builder.list_range_name(name)) == list(values)


def test_sheets_in_order_with_guide_first_and_log_active(template):
    _, wb = template
    assert wb.sheetnames == [guide.SHEET, "Site", INCIDENTS.sheet, ACTIONS.sheet, dashboard.SHEET, LISTS_SHEET]
    assert wb.active.title == INCIDENTS.sheet


def test_site_sheet_fields_and_exposure_table(template):
    _, wb = template
    ws = wb["Site"]
    assert [ws.cell(r, 1).value for r in range(2, 2 + len(SITE_FIELDS))] == [f.label for f in SITE_FIELDS]
    values = {f.name: ws.cell(2 + i, 2).value for i, f in enumerate(SITE_FIELDS)}
    assert {k: values[k] for k in SITE} == SITE
    found = validations(ws)
    setting_row = 2 + [f.name for f in SITE_FIELDS].index("setting")
    setting_dv = next(dv for dv in ws.data_validations.dataValidation if str(dv.sqref) == f"B{setting_row}")
    assert resolve_list(wb, setting_dv.formula1) == list(CODE_LISTS["setting"])

    table = ws.tables[EXPOSURE_TABLE]
    assert [c.name for c in table.tableColumns] == [f.label for f in EXPOSURE_FIELDS]
    m = re.fullmatch(r"([A-Z]+)1:([A-Z]+)(\d+)", table.ref)
    assert m and int(m.group(3)) == EXPOSURE_MONTHS + 1
    col = column_index_from_string(m.group(1))
    months = [ws.cell(r, col).value for r in range(2, EXPOSURE_MONTHS + 2)]
    assert months[0] == dt.datetime(2025, 4, 1)
    assert all(b.month == (a.month % 12) + 1 and b.day == 1 for a, b in zip(months, months[1:]))
    # Exposure figures take numbers 0 or more.
    dv, _, last, last_col = found[openpyxl.utils.get_column_letter(col + 1)]
    assert (last, last_col) == (EXPOSURE_MONTHS + 1, m.group(2))
    assert (dv.type, dv.operator, dv.formula1) == ("decimal", "greaterThanOrEqual", "0")


def test_guide_explains_every_column_tier_and_rule(template):
    _, wb = template
    text = "\n".join(str(c.value) for row in wb[guide.SHEET].iter_rows() for c in row if c.value is not None)
    for sheet in TABLE_SHEETS.values():
        for field in sheet.fields:
            assert f"{sheet.sheet}: {field.label}" in text
    for codes in CODE_LISTS.values():
        for code, meaning in codes.items():
            assert meaning in text
    for tier in CODE_LISTS["response_tier"]:
        assert tier in text
    assert "NM001 (error)" in text and "NHS numbers" in text


def test_dashboard_has_formulas_only_and_a_fixed_print_layout(template):
    path, wb = template
    ws = wb[dashboard.SHEET]
    assert ws["B3"].value == "=DATE(YEAR(TODAY()),MONTH(TODAY()),1)"
    first = dashboard.FIRST_MONTH_ROW + 1
    assert all(str(ws.cell(first, c).value).startswith("=") for c in range(1, 9))
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.scale == dashboard.PRINT_SCALE
    assert [b.id for b in ws.row_breaks.brk] == [dashboard.PAGE_BREAK_ROW]
    assert ws.print_area.endswith(f"$N${dashboard.category_chart_row() + 17}")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert len([n for n in names if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]) == 3
        assert not [n for n in names if "vba" in n.lower() or n.endswith(".bin")]  # no macros, no add-in


def test_the_contract_is_the_single_source_of_code_lists(tmp_path, monkeypatch):
    """Add a category to the code list only: the drop-down, the Guide and the Dashboard follow."""
    categories = dict(CODE_LISTS["category"])
    categories["test_only_category"] = "A category that exists only in this test"
    monkeypatch.setitem(CODE_LISTS, "category", categories)

    path = build_workbook(tmp_path / "patched.xlsx", site=SITE)
    wb = openpyxl.load_workbook(path)
    field = INCIDENTS.field("category")
    dv = validations(wb[INCIDENTS.sheet])[INCIDENTS.column_letter("category")][0]
    assert resolve_list(wb, dv.formula1) == list(categories)
    assert resolve_list(wb, dv.formula1)[-1] == "test_only_category"
    assert field.allowed == list(categories)

    ws = wb[dashboard.SHEET]
    rows = dashboard.category_rows()
    assert rows["test_only_category"] == dashboard.CATEGORY_HEADER_ROW + len(categories)
    assert [ws.cell(rows[c] + 1, 1).value for c in categories] == list(categories)
    formula = ws.cell(rows["test_only_category"] + 1, 2).value
    assert formula.startswith("=COUNTIFS(") and formula.endswith(f",$A{rows['test_only_category'] + 1})")
    guide_text = [c.value for row in wb[guide.SHEET].iter_rows() for c in row]
    assert "test_only_category" in guide_text
    with zipfile.ZipFile(path) as z:
        stacked = [z.read(n).decode() for n in z.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]
    assert max(x.count("<c:ser>") for x in stacked) == len(categories)
