"""The Dashboard sheet: native Excel formulas and charts only, so it works with no Python.

Counts use COUNTIFS over whole columns of the Log and Actions sheets, so rows
typed below the table still count and blank rows count as nothing.  The
months shown end at the month in ``MONTH_CELL``, which defaults to the current
month and which a manager may overwrite with any date in the month to look back.

Layout (printed on two A4 landscape pages at a fixed scale, because Excel
ignores manual page breaks when asked to fit to a number of pages):

- page 1: reports by month with the near misses and incidents chart beside
  it; below, action counts, open items by tier and the actions chart;
- page 2: reports by category and month (categories down, months across)
  and the stacked category chart.

The cell positions below are part of the module's interface: the tests read
the recalculated figures from them.
"""

from __future__ import annotations

import datetime as dt

from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .codelists import CODE_LISTS, EXPOSURE_UNIT_BY_SETTING, HARM_LEVELS, REVIEW_TARGET_DAYS
from .contract import EXPOSURE_FIELDS, EXPOSURE_FIRST_COLUMN, LIMITS, SITE_FIELDS, SITE_SHEET, TABLE_SHEETS

SHEET = "Dashboard"
MONTHS = 12
MONTH_CELL = "$B$3"  # the last month shown
MONTHLY_HEADER_ROW = 5  # 0-based row of the monthly table's header
MONTHLY_COLUMNS = ["Month", "Near misses", "Incidents", "All reports", "Incidents with harm", "Near-miss share",
                   "Exposure", "Reports per 1,000"]
FIRST_MONTH_ROW = MONTHLY_HEADER_ROW + 1
TOTAL_ROW = FIRST_MONTH_ROW + MONTHS  # 0-based row of the monthly totals
ACTIONS_HEADER_ROW = TOTAL_ROW + 3  # action counts: label in column A, count in column B
TIER_FIRST_COL = 3  # open items by tier: columns D..G, same header row as the actions
TIER_COLUMNS = ["Tier", "Target (days)", "Open", "Past target"]
PAGE_BREAK_ROW = ACTIONS_HEADER_ROW + 14  # page 2 starts here
CATEGORY_HEADER_ROW = PAGE_BREAK_ROW + 1  # categories down, months across from column B, total in the last column
CATEGORY_TOTAL_COL = 1 + MONTHS
UNCODED_LABEL = "blank or not in list"
PAGE_WIDTH_COLS = CATEGORY_TOTAL_COL + 1  # columns A..N make one printed page width
PRINT_SCALE = 80
ACTION_LABELS = {"overdue": "overdue", "done_by_due": "done by due date", "done_by_due_pct": "% done by due date"}

LOG = TABLE_SHEETS["incidents"]
ACTIONS = TABLE_SHEETS["actions"]


def categories() -> list[str]:
    return list(CODE_LISTS["category"])


def action_statuses() -> list[str]:
    return list(CODE_LISTS["action_status"])


def tiers() -> list[str]:
    return list(CODE_LISTS["response_tier"])


def category_rows() -> dict[str, int]:
    """0-based row of each category (and of the uncoded row and the total) in the category table."""
    rows = {c: CATEGORY_HEADER_ROW + 1 + i for i, c in enumerate(categories())}
    rows[UNCODED_LABEL] = CATEGORY_HEADER_ROW + 1 + len(rows)
    rows["Total"] = rows[UNCODED_LABEL] + 1
    return rows


def category_chart_row() -> int:
    return category_rows()["Total"] + 2


def action_rows() -> dict[str, int]:
    """0-based row of each action count: the statuses, then overdue and done by due date."""
    labels = action_statuses() + list(ACTION_LABELS.values())
    return {label: ACTIONS_HEADER_ROW + 1 + i for i, label in enumerate(labels)}


def tier_rows() -> dict[str, int]:
    """0-based row of each tier in the open items table (columns D..G)."""
    return {t: ACTIONS_HEADER_ROW + 1 + i for i, t in enumerate(tiers())}


def _col(sheet, name: str) -> str:
    """A whole-column reference to a field, e.g. 'Log'!$C:$C."""
    letter = sheet.column_letter(name)
    return f"'{sheet.sheet}'!${letter}:${letter}"


def _bounded(sheet, name: str, last: int | None = None) -> str:
    """Rows 2 to the most the reader accepts: for SUMPRODUCT, which would be slow over whole columns."""
    last = last or LIMITS["max_rows"] + 1
    letter = sheet.column_letter(name)
    return f"'{sheet.sheet}'!${letter}$2:${letter}${last}"


def _next_month(month: str) -> str:
    return f"DATE(YEAR({month}),MONTH({month})+1,1)"


def month_filter(month_cell: str) -> str:
    occurred = _col(LOG, "occurred_at")
    return f'{occurred},">="&{month_cell},{occurred},"<"&{_next_month(month_cell)}'


def monthly_formulas(row: int) -> list[str]:
    """Formulas of one month row (0-based sheet row); the month itself is in column A."""
    r = row + 1
    month = f"$A{r}"
    event = _col(LOG, "event_type")
    harm = _col(LOG, "physical_harm")
    in_month = month_filter(month)
    with_harm = "+".join(f'COUNTIFS({in_month},{event},"incident",{harm},"{level}")' for level in HARM_LEVELS)
    offset = row - TOTAL_ROW + 1  # -11 .. 0
    return [
        # First day of the month whatever day of the month is typed in the month cell.
        f"=DATE(YEAR({MONTH_CELL}),MONTH({MONTH_CELL}){offset:+d},1)",
        f'=COUNTIFS({in_month},{event},"near_miss")',
        f'=COUNTIFS({in_month},{event},"incident")',
        f"=COUNTIFS({in_month})",  # every row dated in the month, coded or not
        f"={with_harm}",
        f'=IF(D{r}=0,"",B{r}/D{r})',
        f"={_exposure_formula(month)}",
        f'=IF(G{r}>0,ROUND(D{r}/G{r}*1000,2),"")',
    ]


def _setting_cell() -> str:
    row = 2 + [f.name for f in SITE_FIELDS].index("setting")
    return f"'{SITE_SHEET}'!$B${row}"


def _is_bed_days() -> str:
    bed_day_settings = [s for s, unit in EXPOSURE_UNIT_BY_SETTING.items() if unit == "occupied_bed_days"]
    return "OR(" + ",".join(f'{_setting_cell()}="{s}"' for s in bed_day_settings) + ")"


def _exposure_formula(month: str) -> str:
    """Exposure of the month from the Site sheet: bed days for care homes, else care hours."""
    names = [f.name for f in EXPOSURE_FIELDS]

    def exposure_col(name: str) -> str:
        letter = xl_col_to_name(EXPOSURE_FIRST_COLUMN + names.index(name))
        return f"'{SITE_SHEET}'!${letter}:${letter}"

    month_col = exposure_col("month")
    bed_days = f"SUMIFS({exposure_col('occupied_bed_days')},{month_col},{month})"
    hours = f"SUMIFS({exposure_col('care_hours')},{month_col},{month})"
    return f"IF({_is_bed_days()},{bed_days},{hours})"


def category_formula(row: int, month_col: int) -> str:
    """Reports of the category named in column A of ``row`` in the month heading column ``month_col``."""
    month = xl_rowcol_to_cell(CATEGORY_HEADER_ROW, month_col, row_abs=True)
    return f"=COUNTIFS({month_filter(month)},{_col(LOG, 'category')},$A{row + 1})"


def action_formulas() -> dict[str, str]:
    status = _col(ACTIONS, "status")
    due = _col(ACTIONS, "due_date")
    out = {s: f'=COUNTIFS({status},"{s}")' for s in action_statuses()}
    out[ACTION_LABELS["overdue"]] = "=" + "+".join(
        f'COUNTIFS({status},"{s}",{due},"<"&TODAY())' for s in ("open", "in_progress"))
    done = f'({_bounded(ACTIONS, "status")}="done")'
    completed = _bounded(ACTIONS, "completed_date")
    out[ACTION_LABELS["done_by_due"]] = (f"=SUMPRODUCT({done}*ISNUMBER({completed})"
                                         f"*({completed}<={_bounded(ACTIONS, 'due_date')}))")
    rows = {label: r + 1 for label, r in action_rows().items()}
    done_cell, by_due_cell = f"B{rows['done']}", f"B{rows[ACTION_LABELS['done_by_due']]}"
    out[ACTION_LABELS["done_by_due_pct"]] = f'=IF({done_cell}=0,"",{by_due_cell}/{done_cell})'
    return out


def tier_formulas(tier: str) -> tuple[str, str]:
    """Open items of a tier, and those open longer than the tier's review target (as the Log highlights)."""
    tier_col, status, reported = _col(LOG, "response_tier"), _col(LOG, "status"), _col(LOG, "reported_at")
    is_open = f'{tier_col},"{tier}",{status},"<>closed"'
    return (f"=COUNTIFS({is_open})",
            f'=COUNTIFS({is_open},{reported},"<"&(TODAY()-{REVIEW_TARGET_DAYS[tier]}))')


def write(wb, ws, fmt: dict, last_month: dt.date | None = None) -> None:
    ws.hide_gridlines(2)
    ws.set_column(0, 0, 24)
    ws.set_column(1, CATEGORY_TOTAL_COL, 9.5)
    ws.write_string(0, 0, "Dashboard", fmt["title"])
    site_name = f"'{SITE_SHEET}'!$B${2 + [f.name for f in SITE_FIELDS].index('site_name')}"
    ws.write_formula(0, 2, f'=IF({site_name}="","",{site_name})', fmt["h2"], "")
    ws.write_string(2, 0, "Last month shown", fmt["label"])
    if last_month is None:
        ws.write_formula(2, 1, "=DATE(YEAR(TODAY()),MONTH(TODAY()),1)", fmt["input_date"])
    else:
        ws.write_datetime(2, 1, dt.datetime(last_month.year, last_month.month, 1), fmt["input_date"])
    ws.write_string(2, 2, "Type a date in another month (e.g. 01/03/2026) to look back; the 12 months "
                          "up to it are shown.", fmt["note_line"])
    ws.data_validation(2, 1, 2, 1, {"validate": "date", "criteria": ">=", "value": dt.date(2000, 1, 1),
                                    "input_title": "Last month shown",
                                    "input_message": "The dashboard shows the 12 months ending with this month.",
                                    "error_title": "Last month shown",
                                    "error_message": "Type a date, e.g. 01/03/2026."})

    # --- reports by month --------------------------------------------------------------------
    ws.write_string(MONTHLY_HEADER_ROW - 1, 0, "Reports by month", fmt["h2"])
    ws.set_row(MONTHLY_HEADER_ROW, 30)
    for c, head in enumerate(MONTHLY_COLUMNS):
        ws.write_string(MONTHLY_HEADER_ROW, c, head, fmt["header"])
    beds = _is_bed_days()
    ws.write_formula(MONTHLY_HEADER_ROW, 6, f'=IF({beds},"Bed days","Care hours")', fmt["header"], "Exposure")
    ws.write_formula(MONTHLY_HEADER_ROW, 7, f'=IF({beds},"Per 1,000 bed days","Per 1,000 care hours")',
                     fmt["header"], "Reports per 1,000")
    first, last = FIRST_MONTH_ROW, TOTAL_ROW - 1
    col_formats = [fmt["month"], fmt["text"], fmt["text"], fmt["text"], fmt["text"], fmt["pct"], fmt["number"],
                   fmt["rate"]]
    for row in range(first, last + 1):
        for c, formula in enumerate(monthly_formulas(row)):
            ws.write_formula(row, c, formula, col_formats[c])
    t = TOTAL_ROW + 1
    ws.write_string(TOTAL_ROW, 0, "Total", fmt["total_label"])
    for c in (1, 2, 3, 4, 6):
        letter = xl_col_to_name(c)
        ws.write_formula(TOTAL_ROW, c, f"=SUM({letter}{first + 1}:{letter}{last + 1})",
                         fmt["total_number"] if c == 6 else fmt["total"])
    ws.write_formula(TOTAL_ROW, 5, f'=IF(D{t}=0,"",B{t}/D{t})', fmt["total_pct"])
    # Rate over the months that have an exposure figure only.
    ws.write_formula(TOTAL_ROW, 7, f'=IF(G{t}>0,ROUND(SUMIFS(D{first + 1}:D{last + 1},G{first + 1}:G{last + 1},'
                                   f'">0")/G{t}*1000,2),"")', fmt["total_rate"])

    # --- actions and open items by tier --------------------------------------------------------
    ws.write_string(ACTIONS_HEADER_ROW - 1, 0, "Actions", fmt["h2"])
    ws.set_row(ACTIONS_HEADER_ROW, 30)
    ws.write_string(ACTIONS_HEADER_ROW, 0, "Status", fmt["header"])
    ws.write_string(ACTIONS_HEADER_ROW, 1, "Actions", fmt["header"])
    a_rows = action_rows()
    for label, formula in action_formulas().items():
        pct = label == ACTION_LABELS["done_by_due_pct"]
        ws.write_string(a_rows[label], 0, label, fmt["text"])
        ws.write_formula(a_rows[label], 1, formula, fmt["pct"] if pct else fmt["text"])

    ws.write_string(ACTIONS_HEADER_ROW - 1, TIER_FIRST_COL, "Open items by tier", fmt["h2"])
    for c, head in enumerate(TIER_COLUMNS):
        ws.write_string(ACTIONS_HEADER_ROW, TIER_FIRST_COL + c, head, fmt["header"])
    for tier, row in tier_rows().items():
        ws.write_string(row, TIER_FIRST_COL, tier, fmt["tier"][tier])
        ws.write_number(row, TIER_FIRST_COL + 1, REVIEW_TARGET_DAYS[tier], fmt["text"])
        open_count, past_target = tier_formulas(tier)
        ws.write_formula(row, TIER_FIRST_COL + 2, open_count, fmt["text"])
        ws.write_formula(row, TIER_FIRST_COL + 3, past_target, fmt["text"])
    note = max(tier_rows().values()) + 1
    ws.write_string(note, TIER_FIRST_COL, "Open: status not closed.", fmt["note_line"])
    ws.write_string(note + 1, TIER_FIRST_COL, "Past target: open longer than the target.", fmt["note_line"])

    # --- page 2: reports by category and month -------------------------------------------------
    ws.write_string(CATEGORY_HEADER_ROW - 1, 0, "Reports by category and month", fmt["h2"])
    ws.write_string(CATEGORY_HEADER_ROW, 0, "Category", fmt["header"])
    for i in range(MONTHS):
        ws.write_formula(CATEGORY_HEADER_ROW, 1 + i, f"=$A${first + 1 + i}", fmt["header_month"])
    ws.write_string(CATEGORY_HEADER_ROW, CATEGORY_TOTAL_COL, "Total", fmt["header"])
    rows = category_rows()
    for category in categories():
        row = rows[category]
        ws.write_string(row, 0, category, fmt["text"])
        for i in range(MONTHS):
            ws.write_formula(row, 1 + i, category_formula(row, 1 + i), fmt["text"])
    first_cat, last_cat = rows[categories()[0]] + 1, rows[categories()[-1]] + 1
    uncoded = rows[UNCODED_LABEL]
    ws.write_string(uncoded, 0, UNCODED_LABEL, fmt["note_line"])
    for i in range(MONTHS):
        letter = xl_col_to_name(1 + i)
        ws.write_formula(uncoded, 1 + i, f"=$D${first + 1 + i}-SUM({letter}{first_cat}:{letter}{last_cat})",
                         fmt["note_line"])
    for row in list(rows.values())[:-1]:
        ws.write_formula(row, CATEGORY_TOTAL_COL, f"=SUM(B{row + 1}:{xl_col_to_name(MONTHS)}{row + 1})",
                         fmt["label"])
    ws.write_string(rows["Total"], 0, "Total", fmt["total_label"])
    for c in range(1, CATEGORY_TOTAL_COL + 1):
        letter = xl_col_to_name(c)
        ws.write_formula(rows["Total"], c, f"=SUM({letter}{first_cat}:{letter}{uncoded + 1})", fmt["total"])

    _charts(wb, ws)
    ws.set_landscape()
    ws.set_paper(9)
    ws.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    ws.center_horizontally()
    ws.print_area(0, 0, category_chart_row() + 16, PAGE_WIDTH_COLS - 1)
    ws.set_h_pagebreaks([PAGE_BREAK_ROW])
    ws.set_print_scale(PRINT_SCALE)
    ws.set_footer("&LNearmiss dashboard&RPage &P of &N")
    ws.set_tab_color("#7030A0")


def _charts(wb, ws) -> None:
    first, last = FIRST_MONTH_ROW, TOTAL_ROW - 1
    months = [SHEET, first, 0, last, 0]
    axis_lines = {"major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}}

    # Beside the monthly table: columns I..N.
    chart = wb.add_chart({"type": "column"})
    for col, colour in ((1, "#2E75B6"), (2, "#C00000")):
        chart.add_series({"name": [SHEET, MONTHLY_HEADER_ROW, col], "categories": months,
                          "values": [SHEET, first, col, last, col], "fill": {"color": colour}, "gap": 80})
    chart.set_title({"name": "Near misses and incidents by month", "name_font": {"size": 11}})
    chart.set_x_axis({"num_format": "mmm yy", "date_axis": False, "num_font": {"size": 8}})
    chart.set_y_axis({"min": 0, "num_font": {"size": 8}, **axis_lines})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": 410, "height": 290})
    ws.insert_chart(MONTHLY_HEADER_ROW - 1, len(MONTHLY_COLUMNS), chart, {"x_offset": 12, "object_position": 3})

    # Page 2, under the category table: the monthly counts of each category, stacked.
    rows = category_rows()
    stacked = wb.add_chart({"type": "column", "subtype": "stacked"})
    for category in categories():
        row = rows[category]
        stacked.add_series({"name": [SHEET, row, 0], "categories": [SHEET, CATEGORY_HEADER_ROW, 1,
                                                                     CATEGORY_HEADER_ROW, MONTHS],
                            "values": [SHEET, row, 1, row, MONTHS], "gap": 60})
    stacked.set_title({"name": "Reports by category and month", "name_font": {"size": 11}})
    stacked.set_x_axis({"num_format": "mmm yy", "date_axis": False, "num_font": {"size": 8}})
    stacked.set_y_axis({"min": 0, "num_font": {"size": 8}, **axis_lines})
    stacked.set_legend({"position": "right", "font": {"size": 8}})
    stacked.set_size({"width": 960, "height": 310})
    ws.insert_chart(category_chart_row(), 0, stacked, {"object_position": 3})

    # Beside open items by tier: actions by status and overdue (not the done-by-due-date rows).
    a_rows = action_rows()
    bar_first, bar_last = a_rows[action_statuses()[0]], a_rows[ACTION_LABELS["overdue"]]
    bar = wb.add_chart({"type": "bar"})
    bar.add_series({"name": "Actions", "categories": [SHEET, bar_first, 0, bar_last, 0],
                    "values": [SHEET, bar_first, 1, bar_last, 1],
                    "fill": {"color": "#375623"}, "data_labels": {"value": True}, "gap": 60})
    bar.set_title({"name": "Actions by status, and overdue", "name_font": {"size": 11}})
    bar.set_x_axis({"min": 0, "num_font": {"size": 8}, **axis_lines})
    bar.set_y_axis({"reverse": True, "num_font": {"size": 9}})  # the same order as the table
    bar.set_legend({"none": True})
    bar.set_size({"width": 480, "height": 250})
    ws.insert_chart(ACTIONS_HEADER_ROW - 1, TIER_FIRST_COL + len(TIER_COLUMNS), bar,
                    {"x_offset": 12, "object_position": 3})
