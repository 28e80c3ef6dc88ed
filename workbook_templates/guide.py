"""The Guide sheet: how to fill the log in, written from the contract and the rules."""

from __future__ import annotations

from .codelists import CODE_LISTS, REVIEW_TARGET_DAYS
from .contract import EXPOSURE_FIELDS, SITE_FIELDS, SITE_SHEET, TABLE_SHEETS
from .rules import RULES

SHEET = "Guide"

INTRO = [
    "Record every incident and near miss on the Log sheet, one row each, as soon as you can.",
    "A near miss is an event that could have caused harm but did not reach the person, or was stopped in time. "
    "Reporting near misses is a sign of an open, safe culture: more near-miss reports is good news.",
    "Pick coded values from the drop-downs. Yellow help appears when you select a cell. Type dates as "
    "dd/mm/yyyy; dates that have happened cannot be in the future.",
    "Record what the service will change on the Actions sheet, with the incident ref it answers.",
    "Fill in the Site sheet once, and each month the exposure figure (occupied bed days for a care home, "
    "delivered care hours otherwise) so the Dashboard can work out rates.",
    "Rows turn orange when an open item is past its review target (see the tiers below) or an action is past "
    "its due date.",
    "The Dashboard works out monthly counts, near misses against incidents and open and overdue actions "
    "by itself: no add-in is needed. Type a date into its 'Last month shown' cell to look back.",
]

TIERS = [
    ("low", "Put right at once; reflective supervision; a brief learning note.",
     f"Close with a learning theme, normally within {REVIEW_TARGET_DAYS['low']} days."),
    ("moderate", "Structured review; management oversight; a targeted action plan.",
     "At least one action on the Actions sheet; tell the reporter the outcome; "
     f"close within {REVIEW_TARGET_DAYS['moderate']} days."),
    ("serious", "Formal investigation; safeguarding considered; commissioner notified; CQC where required.",
     "Record safeguarding considered, the commissioner notified date, CQC notification and date, actions, and "
     f"feedback to the reporter; close within {REVIEW_TARGET_DAYS['serious']} days."),
]

NEVER = [
    "names of people receiving care, relatives or staff (use the person ref and staff roles)",
    "dates of birth (use the age band)",
    "NHS numbers, addresses or postcodes",
]


WIDTHS = (34, 70, 50)  # columns A:C, in characters
LINE_HEIGHT = 13  # points per line of 10-point Arial


def _lines(text: str, width: float) -> int:
    """Lines ``text`` wraps to in a column ``width`` characters wide (a slightly generous estimate)."""
    per_line = max(int(width * 1.15) - 2, 1)
    lines, current = 1, 0
    for word in text.split():
        if current and current + 1 + len(word) > per_line:
            lines, current = lines + 1, len(word)
        else:
            current += len(word) + (1 if current else 0)
    return lines


def _row(ws, row: int, cells: list[tuple[int, str, object]]) -> None:
    """Write one row of cells; wrapped text gets a row tall enough to show it in any spreadsheet."""
    for col, text, cell_format in cells:
        ws.write_string(row, col, text, cell_format)
    lines = max(_lines(text, WIDTHS[col]) for col, text, _ in cells)
    if lines > 1:
        ws.set_row(row, lines * LINE_HEIGHT + 2)


def write(ws, fmt: dict) -> None:
    for col, width in enumerate(WIDTHS):
        ws.set_column(col, col, width)
    ws.hide_gridlines(2)
    ws.set_landscape()
    ws.set_paper(9)
    ws.set_margins(left=0.5, right=0.5)
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(0)
    ws.set_footer("&LNear-miss and incident log: guide&RPage &P of &N")
    ws.set_tab_color("#595959")
    row = 0
    ws.set_row(row, 24)
    ws.write_string(row, 0, "Near-miss and incident log: how to fill it in", fmt["title"])
    row += 2
    for line in INTRO:
        _row(ws, row, [(0, "•", fmt["text"]), (1, line, fmt["wrap"])])
        row += 1
    row += 1
    ws.write_string(row, 0, "Respond in proportion", fmt["h2"])
    row += 1
    for col, head in enumerate(("Tier", "What it means", "What the log needs")):
        ws.write_string(row, col, head, fmt["header"])
    row += 1
    for tier, meaning, needs in TIERS:
        _row(ws, row, [(0, tier, fmt["tier"][tier]), (1, meaning, fmt["wrap"]), (2, needs, fmt["wrap"])])
        row += 1
    ws.write_string(row, 0, "Severe or fatal harm, or any CQC notification, is never tier low.", fmt["note_line"])
    row += 2
    ws.write_string(row, 0, "Never write", fmt["h2"])
    row += 1
    for line in NEVER:
        _row(ws, row, [(0, "✗", fmt["text"]), (1, line, fmt["wrap"])])
        row += 1
    row += 1
    ws.write_string(row, 0, "Columns", fmt["h2"])
    row += 1
    sections = [(sheet.sheet, sheet.fields) for sheet in TABLE_SHEETS.values()]
    sections += [(SITE_SHEET, SITE_FIELDS), (f"{SITE_SHEET} exposure", EXPOSURE_FIELDS)]
    for sheet_name, fields in sections:
        for f in fields:
            needs = f"Required when {f.required_when}. " if f.required_when else ("Required. " if f.required else "")
            cells = [(0, f"{sheet_name}: {f.label}", fmt["label"]), (1, needs + f.help, fmt["wrap"])]
            if f.codes:
                cells.append((2, f"Drop-down: {f.codes} (listed below)", fmt["note_line"]))
            _row(ws, row, cells)
            row += 1
    row += 1
    ws.write_string(row, 0, "Drop-down values", fmt["h2"])
    row += 1
    for list_name, values in CODE_LISTS.items():
        for code, meaning in values.items():
            _row(ws, row, [(0, list_name, fmt["text"]), (1, code, fmt["text"]), (2, meaning, fmt["wrap"])])
            row += 1
    row += 1
    ws.write_string(row, 0, "Checks the add-in and the area server make", fmt["h2"])
    row += 1
    for rule in RULES:
        message = (rule.message.replace("{label}", "this column").replace("'{value}'", "a value")
                   .replace("{value}", "N"))
        _row(ws, row, [(0, f"{rule.id} ({rule.severity})", fmt["text"]), (1, message, fmt["wrap"])])
        row += 1
