"""The Dashboard sheet: native Excel formulas and charts only, so it works with no Python.

Counts use COUNTIFS over whole columns of the Log and Actions sheets, so rows
typed below the table still count and blank rows count as nothing.  The
months shown end at the month in ``MONTH_CELL``, which defaults to the current
month and which a manager may overwrite.
"""

from __future__ import annotations

import datetime as dt

from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .codelists import CODE_LISTS, EXPOSURE_UNIT_BY_SETTING, HARM_LEVELS
from .contract import EXPOSURE_FIELDS, EXPOSURE_FIRST_COLUMN, SITE_FIELDS, SITE_SHEET, TABLE_SHEETS

SHEET = "Dashboard"
MONTHS = 12
MONTH_CELL = "$B$3"  # the last month shown
MONTHLY_HEADER_ROW = 5  # 0-based row of the monthly table's header
MONTHLY_COLUMNS = ["Month", "Near misses", "Incidents", "All reports", "Incidents with harm", "Near-miss share",
                   "Exposure", "Reports per 1,000"]
CATEGORY_FIRST_COL = len(MONTHLY_COLUMNS) + 1  # one blank column, then a column per category
ACTION_STATUSES = list(CODE_LISTS["action_status"])

LOG = TABLE_SHEETS["incidents"]
ACTIONS = TABLE_SHEETS["actions"]


def _col(sheet, name: str) -> str:
    """A whole-column reference to a field, e.g. 'Log'!$C:$C."""
    letter = sheet.column_letter(name)
    return f"'{sheet.sheet}'!${letter}:${letter}"


def _bounded(sheet, name: str, last: int = 5001) -> str:
    letter = sheet.column_letter(name)
    return f"'{sheet.sheet}'!${letter}$2:${letter}${last}"


def month_filter(month_cell: str) -> str:
    occurred = _col(LOG, "occurred_at")
    return f'{occurred},">="&{month_cell},{occurred},"<"&EDATE({month_cell},1)'


def monthly_formulas(row: int) -> list[str]:
    """Formulas of one month row (0-based sheet row); the month itself is in column A."""
    r = row + 1
    month = f"$A{r}"
    event = _col(LOG, "event_type")
    harm = _col(LOG, "physical_harm")
    in_month = month_filter(month)
    with_harm = "+".join(f'COUNTIFS({in_month},{event},"incident",{harm},"{level}")' for level in HARM_LEVELS)
    exposure = _exposure_formula(month)
    return [
        f'=EDATE({MONTH_CELL},{row - MONTHLY_HEADER_ROW - MONTHS})',
        f'=COUNTIFS({in_month},{event},"near_miss")',
        f'=COUNTIFS({in_month},{event},"incident")',
        f"=B{r}+C{r}",
        f"={with_harm}",
        f'=IF(D{r}=0,"",B{r}/D{r})',
        f"={exposure}",
        f'=IF(G{r}>0,ROUND(D{r}/G{r}*1000,2),"")',
    ]


def _exposure_formula(month: str) -> str:
    """Exposure of the month from the Site sheet: bed days for care homes, else care hours."""
    setting_row = 1 + [f.name for f in SITE_FIELDS].index("setting")
    setting = f"'{SITE_SHEET}'!$B${setting_row + 1}"
    names = [f.name for f in EXPOSURE_FIELDS]

    def exposure_col(name: str) -> str:
        letter = xl_col_to_name(EXPOSURE_FIRST_COLUMN + names.index(name))
        return f"'{SITE_SHEET}'!${letter}:${letter}"

    month_col = exposure_col("month")
    bed_days = f"SUMIFS({exposure_col('occupied_bed_days')},{month_col},{month})"
    hours = f"SUMIFS({exposure_col('care_hours')},{month_col},{month})"
    bed_day_settings = [s for s, unit in EXPOSURE_UNIT_BY_SETTING.items() if unit == "occupied_bed_days"]
    is_beds = "OR(" + ",".join(f'{setting}="{s}"' for s in bed_day_settings) + ")"
    return f"IF({is_beds},{bed_days},{hours})"


def category_formula(row: int, category_col: int) -> str:
    header = xl_rowcol_to_cell(MONTHLY_HEADER_ROW, category_col, row_abs=True)
    return f"=COUNTIFS({month_filter(f'$A{row + 1}')},{_col(LOG, 'category')},{header})"


def action_formulas() -> dict[str, str]:
    status = _col(ACTIONS, "status")
    due = _col(ACTIONS, "due_date")
    out = {s: f'=COUNTIFS({status},"{s}")' for s in ACTION_STATUSES}
    out["overdue"] = "=" + "+".join(f'COUNTIFS({status},"{s}",{due},"<"&TODAY())' for s in ("open", "in_progress"))
    done = f'({_bounded(ACTIONS, "status")}="done")'
    completed = _bounded(ACTIONS, "completed_date")
    out["done by due date"] = (f"=SUMPRODUCT({done}*ISNUMBER({completed})"
                               f"*({completed}<={_bounded(ACTIONS, 'due_date')}))")
    return out


def write(wb, ws, fmt: dict) -> None:
    ws.hide_gridlines(2)
    ws.set_column(0, 0, 11)
    ws.set_column(1, CATEGORY_FIRST_COL + len(CODE_LISTS["category"]), 11)
    ws.write_string(0, 0, "Dashboard", fmt["title"])
    ws.write_string(2, 0, "Last month shown", fmt["label"])
    ws.write_formula(2, 1, "=DATE(YEAR(TODAY()),MONTH(TODAY()),1)", fmt["input_date"])
    ws.write_string(2, 2, "Type another month (e.g. 01/03/2026) to look back.", fmt["note"])
    ws.data_validation(2, 1, 2, 1, {"validate": "date", "criteria": ">=", "value": dt.date(2000, 1, 1),
                                    "input_title": "Last month shown",
                                    "input_message": "The dashboard shows the 12 months ending with this month."})

    ws.write_string(MONTHLY_HEADER_ROW - 1, 0, "Reports by month", fmt["h2"])
    for c, head in enumerate(MONTHLY_COLUMNS):
        ws.write_string(MONTHLY_HEADER_ROW, c, head, fmt["header"])
    categories = list(CODE_LISTS["category"])
    ws.write_string(MONTHLY_HEADER_ROW - 1, CATEGORY_FIRST_COL, "Reports by month and category", fmt["h2"])
    for i, category in enumerate(categories):
        ws.write_string(MONTHLY_HEADER_ROW, CATEGORY_FIRST_COL + i, category, fmt["header"])
    first = MONTHLY_HEADER_ROW + 1
    last = first + MONTHS - 1
    col_formats = [fmt["month"], None, None, None, None, fmt["pct"], fmt["number"], None]
    for row in range(first, last + 1):
        for c, formula in enumerate(monthly_formulas(row)):
            ws.write_formula(row, c, formula, col_formats[c])
        for i in range(len(categories)):
            ws.write_formula(row, CATEGORY_FIRST_COL + i, category_formula(row, CATEGORY_FIRST_COL + i))
    total_row = last + 1
    ws.write_string(total_row, 0, "Total", fmt["label"])
    for c in list(range(1, 5)) + [6] + [CATEGORY_FIRST_COL + i for i in range(len(categories))]:
        letter = xl_col_to_name(c)
        ws.write_formula(total_row, c, f"=SUM({letter}{first + 1}:{letter}{last + 1})", fmt["label"])
    ws.write_formula(total_row, 5, f'=IF(D{total_row + 1}=0,"",B{total_row + 1}/D{total_row + 1})', fmt["pct"])
    ws.write_formula(total_row, 7, f'=IF(G{total_row + 1}>0,ROUND(D{total_row + 1}/G{total_row + 1}*1000,2),"")')

    actions_row = total_row + 3
    ws.write_string(actions_row - 1, 0, "Actions", fmt["h2"])
    ws.write_string(actions_row, 0, "Status", fmt["header"])
    ws.write_string(actions_row, 1, "Actions", fmt["header"])
    formulas = action_formulas()
    for i, (label, formula) in enumerate(formulas.items(), start=1):
        ws.write_string(actions_row + i, 0, label)
        ws.write_formula(actions_row + i, 1, formula)
    last_action_row = actions_row + len(formulas)
    open_row = last_action_row + 2
    ws.write_string(open_row - 0, 0, "Open items by tier", fmt["h2"])
    tier_status = _col(LOG, "status")
    tier_col = _col(LOG, "response_tier")
    for i, tier in enumerate(CODE_LISTS["response_tier"], start=1):
        ws.write_string(open_row + i, 0, tier, fmt["tier"][tier])
        ws.write_formula(open_row + i, 1, f'=COUNTIFS({tier_col},"{tier}",{tier_status},"<>closed")')

    _charts(wb, ws, first, last, actions_row, len(formulas), categories)
    ws.set_landscape()
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.set_tab_color("#7030A0")


def _charts(wb, ws, first: int, last: int, actions_row: int, n_action_rows: int, categories: list[str]) -> None:
    months = [SHEET, first, 0, last, 0]
    chart = wb.add_chart({"type": "column"})
    for col, colour in ((1, "#2E75B6"), (2, "#C00000")):
        chart.add_series({"name": [SHEET, MONTHLY_HEADER_ROW, col], "categories": months,
                          "values": [SHEET, first, col, last, col], "fill": {"color": colour}})
    chart.set_title({"name": "Near misses and incidents by month"})
    chart.set_x_axis({"num_format": "mmm yy", "date_axis": False})
    chart.set_y_axis({"name": "Reports", "min": 0, "major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": 620, "height": 300})
    ws.insert_chart(actions_row + n_action_rows + 8, 0, chart)

    stacked = wb.add_chart({"type": "column", "subtype": "stacked"})
    for i in range(len(categories)):
        c = CATEGORY_FIRST_COL + i
        stacked.add_series({"name": [SHEET, MONTHLY_HEADER_ROW, c], "categories": months,
                            "values": [SHEET, first, c, last, c]})
    stacked.set_title({"name": "Reports by category"})
    stacked.set_x_axis({"num_format": "mmm yy", "date_axis": False})
    stacked.set_legend({"position": "right"})
    stacked.set_size({"width": 720, "height": 300})
    ws.insert_chart(actions_row + n_action_rows + 8, 7, stacked)

    bar = wb.add_chart({"type": "bar"})
    bar.add_series({"name": "Actions", "categories": [SHEET, actions_row + 1, 0, actions_row + n_action_rows, 0],
                    "values": [SHEET, actions_row + 1, 1, actions_row + n_action_rows, 1],
                    "fill": {"color": "#375623"}, "data_labels": {"value": True}})
    bar.set_title({"name": "Actions: open, done and overdue"})
    bar.set_legend({"none": True})
    bar.set_size({"width": 480, "height": 260})
    ws.insert_chart(actions_row - 1, 3, bar)
