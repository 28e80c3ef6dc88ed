"""The Guide sheet: how to fill the log in, written from the contract and the rules."""

from __future__ import annotations

from .codelists import CODE_LISTS, REVIEW_TARGET_DAYS
from .contract import TABLE_SHEETS
from .rules import RULES

SHEET = "Guide"

INTRO = [
    "Record every incident and near miss on the Log sheet, one row each, as soon as you can.",
    "A near miss is an event that could have caused harm but did not reach the person, or was stopped in time. "
    "Reporting near misses is a sign of an open, safe culture: more near-miss reports is good news.",
    "Pick coded values from the drop-downs. Yellow help appears when you select a cell.",
    "Record what the service will change on the Actions sheet, with the incident ref it answers.",
    "The Dashboard works out monthly counts, near misses against incidents and open and overdue actions "
    "by itself: no add-in is needed.",
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


def write(ws, fmt: dict) -> None:
    ws.set_column(0, 0, 26)
    ws.set_column(1, 1, 70)
    ws.set_column(2, 2, 60)
    ws.hide_gridlines(2)
    row = 0
    ws.write_string(row, 0, "Near-miss and incident log: how to fill it in", fmt["title"])
    row += 2
    for line in INTRO:
        ws.write_string(row, 0, "•")
        ws.write_string(row, 1, line, fmt["wrap"])
        row += 1
    row += 1
    ws.write_string(row, 0, "Respond in proportion", fmt["h2"])
    row += 1
    for col, head in enumerate(("Tier", "What it means", "What the log needs")):
        ws.write_string(row, col, head, fmt["header"])
    row += 1
    for tier, meaning, needs in TIERS:
        ws.write_string(row, 0, tier, fmt["tier"][tier])
        ws.write_string(row, 1, meaning, fmt["wrap"])
        ws.write_string(row, 2, needs, fmt["wrap"])
        row += 1
    ws.write_string(row, 0, "Severe or fatal harm, or any CQC notification, is never tier low.", fmt["note"])
    row += 2
    ws.write_string(row, 0, "Never write", fmt["h2"])
    row += 1
    for line in NEVER:
        ws.write_string(row, 0, "✗")
        ws.write_string(row, 1, line, fmt["wrap"])
        row += 1
    row += 1
    ws.write_string(row, 0, "Columns", fmt["h2"])
    row += 1
    for sheet in TABLE_SHEETS.values():
        for f in sheet.fields:
            ws.write_string(row, 0, f"{sheet.sheet}: {f.label}", fmt["label"])
            needs = f"Required when {f.required_when}. " if f.required_when else ("Required. " if f.required else "")
            ws.write_string(row, 1, needs + f.help, fmt["wrap"])
            row += 1
    row += 1
    ws.write_string(row, 0, "Drop-down values", fmt["h2"])
    row += 1
    for list_name, values in CODE_LISTS.items():
        for code, meaning in values.items():
            ws.write_string(row, 0, list_name)
            ws.write_string(row, 1, code)
            ws.write_string(row, 2, meaning, fmt["wrap"])
            row += 1
    row += 1
    ws.write_string(row, 0, "Checks the add-in and the area server make", fmt["h2"])
    row += 1
    for rule in RULES:
        ws.write_string(row, 0, f"{rule.id} ({rule.severity})")
        ws.write_string(row, 1, rule.message.replace("{label}", "this column").replace("'{value}'", "a value")
                        .replace("{value}", "N"), fmt["wrap"])
        row += 1
