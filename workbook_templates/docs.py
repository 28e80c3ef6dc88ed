"""Writes docs/contract.md from the contract: ``python -m workbook_templates.docs > docs/contract.md``.

Everything in the reference part is read from ``contract.py``, ``codelists.py``,
``rules.py`` and the Dashboard's definitions, so the document cannot drift from
the workbook.  The comparison with ``../shared/spec/domain.md`` is worked out
against the domain notes' fields and code lists, restated once below.
"""

from __future__ import annotations

import sys

from . import codelists, dashboard, rules
from .builder import BLANK_TABLE_ROWS, list_range_name
from .codelists import CODE_LISTS
from .contract import (
    EXPOSURE_FIELDS, EXPOSURE_MONTHS, EXPOSURE_TABLE, FIELD_TYPES, GUIDE_SHEET, LIMITS, LISTS_SHEET, SITE_FIELDS,
    SITE_SHEET, TABLE_SHEETS, Field,
)

# What domain.md names, to show where the contract goes beyond it.
DOMAIN_FIELDS = {
    "incidents": [
        "incident_ref", "site_code", "occurred_at", "reported_at", "event_type", "category", "subcategory",
        "location", "physical_harm", "psychological_harm", "consequence", "likelihood", "risk_score", "risk_band",
        "response_tier", "learning_response", "description", "immediate_action", "person_ref", "age_band",
        "gender", "staff_role", "safeguarding_considered", "safeguarding_referral_date", "cqc_notification",
        "cqc_notified_date", "commissioner_notified_date", "riddor_reportable", "riddor_ref", "duty_of_candour",
        "candour_date", "status", "learning_theme", "feedback_to_reporter_date", "closed_date",
    ],
    "actions": [
        "action_ref", "incident_refs", "action", "action_type", "owner_role", "raised_date", "due_date", "status",
        "completed_date", "evidence", "effectiveness_check_date", "effective", "overdue",
    ],
    "site": ["site_code", "site_name", "provider", "setting", "cqc_location_id", "commissioners"],
}
DOMAIN_CODE_LISTS = {
    "event_type": ["near_miss", "incident"],
    "category": ["falls", "medication", "pressure_care", "safeguarding", "behaviour", "missed_or_late_visit",
                 "infection", "equipment", "environment", "information_governance", "deterioration_escalation",
                 "moving_and_handling", "choking", "self_harm", "death", "other"],
    "subcategory": ["omission", "wrong_dose", "wrong_time", "wrong_person", "not_signed"],
    "location": ["own_home", "care_home", "supported_living", "community", "day_service", "hospital", "other"],
    "physical_harm": ["none", "low", "moderate", "severe", "fatal"],
    "psychological_harm": ["none", "low", "moderate", "severe"],
    "response_tier": ["low", "moderate", "serious"],
    "learning_response": ["reflective_supervision", "after_action_review", "huddle", "structured_review",
                          "formal_investigation", "thematic_review"],
    "age_band": ["18-25", "26-45", "46-65", "66-85", "85+"],
    "yes_no": ["yes", "no"],
    "cqc_notification": ["none", "reg16_death", "reg18_serious_injury", "reg18_abuse_allegation", "reg18_police",
                         "reg18_dols", "reg18_service_disruption"],
    "incident_status": ["open", "under_review", "closed"],
    "action_type": ["care_plan", "training", "supervision", "process", "equipment", "staffing", "system_data",
                    "other"],
    "action_status": ["open", "in_progress", "done", "cancelled"],
    "effective": ["yes", "no", "not_yet"],
    "setting": ["care_home", "homecare", "supported_living", "complex_care_at_home"],
}
WHY_ADDED = {
    "occurred_time": "domain.md has \"date (and optional time)\" in one field; a separate time column keeps "
                     "the date a real Excel date and the time optional.",
    "tier_override_reason": "domain.md lets a manager override the suggested tier \"with a reason\": this is "
                            "where the reason goes (rule NM025 asks for it).",
    "police_involved": "police involvement makes an event notifiable to CQC (Regulation 18); without a field "
                       "the check could not see it.",
    "pressure_ulcer_grade": "the commissioner return counts new pressure ulcers by grade \"where recorded\".",
    "notes": "anything else, including what the converter could not place when importing an old log.",
    "people_supported": "the commissioner return's header gives the number of people supported.",
}
BEYOND = [
    ("Subcategory list",
     "domain.md gives medication examples only. The contract adds subcategories for falls, missed or late "
     "visits and pressure care (and two more for medication); each subcategory belongs to one category "
     "(`SUBCATEGORY_OF`), and a mismatch is a warning (NM026)."),
    ("Review targets",
     "domain.md sets no time limit for a review. `REVIEW_TARGET_DAYS` sets days from the date reported to "
     "closure per tier; an open item past it is highlighted on the Log, counted on the Dashboard (\"past "
     "target\") and flagged by NM044."),
    ("CQC \"without delay\"",
     "read as within `CQC_NOTIFY_WITHIN_DAYS` day(s) of the report; later is a warning (NM032)."),
    ("Effectiveness check",
     "an action done more than `EFFECTIVENESS_CHECK_DAYS` days ago with no effectiveness check is a "
     "warning (NM069)."),
    ("Derived columns",
     "risk score, risk band (Log) and overdue (Actions) are Excel formulas in the workbook, so they work with "
     "no add-in; the reader recomputes them and never trusts the saved result."),
    ("Exposure",
     "a monthly table on the Site sheet (occupied bed days, delivered care hours, visits, people supported). "
     "Rates use bed days for care homes and care hours for every other setting (`EXPOSURE_UNIT_BY_SETTING`); "
     "visits are recorded but not used for rates."),
    ("Lists sheet",
     f"a hidden `{LISTS_SHEET}` sheet holds one column per code list, each a workbook name "
     f"`{list_range_name('<list>')}` that the drop-downs point at. The add-in and server never read it: "
     "codes are checked against `codelists.py`."),
    ("Gender codes", "domain.md names the field only; the contract's codes are in the `gender` list above."),
    ("Age bands",
     "as domain.md: 18-25, 26-45, 46-65, 66-85, 85+. Note that age 85 fits two bands (domain.md's wording); "
     "pick 66-85 for 85 itself."),
    ("Field synonyms",
     "each field lists headers seen in managers' own logs (`Field.synonyms`); the converter uses them to map "
     "old columns."),
    ("Workbook rules",
     "NM090 onwards check the workbook as a whole (missing sheets and columns, extra columns, formulas without "
     "a saved result, macros): not in domain.md, needed to read real files safely."),
    ("Limits",
     "the template's drop-downs, validation and formatting cover the first "
     f"{LIMITS['template_rows']:,} rows; the reader refuses more than {LIMITS['max_rows']:,} rows, "
     f"{LIMITS['max_columns']} columns or {LIMITS['max_sheets']} sheets."),
]

SHEETS = [
    (GUIDE_SHEET, "How to fill the log in: every column, the three tiers, what never to write, every code and "
                  "every check, written from the contract."),
    (SITE_SHEET, f"The site's details (label in column A, value in column B) and the `{EXPOSURE_TABLE}` table "
                 f"of monthly exposure ({EXPOSURE_MONTHS} months in a new template)."),
    (TABLE_SHEETS["incidents"].sheet, f"The incident and near-miss log: Excel table "
                                      f"`{TABLE_SHEETS['incidents'].table}`, one row per report."),
    (TABLE_SHEETS["actions"].sheet, f"The action tracker: Excel table `{TABLE_SHEETS['actions'].table}`, one row "
                                    f"per action."),
    (dashboard.SHEET, "Counts by month and category, near misses against incidents, rates, action counts and "
                      "open items by tier, with charts; plain Excel formulas only."),
    (LISTS_SHEET, "Hidden: the code lists the drop-downs use."),
]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _required(f: Field) -> str:
    if f.required:
        return "yes"
    if f.required_when:
        return f"when {f.required_when}"
    return ""


def _allowed(f: Field) -> str:
    if f.codes:
        values = CODE_LISTS[f.codes]
        shown = ", ".join(f"`{c}`" for c in values)
        return f"list `{f.codes}`: {shown}" if len(values) <= 8 else f"list `{f.codes}` ({len(values)} codes, below)"
    if f.minimum is not None:
        return f"whole number {f.minimum}-{f.maximum}"
    if f.type == "date":
        return "date, may be in the future" if f.future_ok else "date, not in the future"
    if f.type == "time":
        return "time hh:mm"
    if f.type == "derived":
        return f"formula: `{f.formula.lstrip('=')}`"
    if f.type == "refs":
        return "refs separated by commas"
    return ""


def _field_table(fields, domain: list[str] | None) -> list[str]:
    lines = ["| field | label (Excel header) | type | required | allowed values | beyond domain.md |",
             "|---|---|---|---|---|---|"]
    for f in fields:
        extra = "" if domain is None or f.name in domain else "added"
        lines.append(f"| `{f.name}` | {_cell(f.label)} | {f.type} | {_cell(_required(f))} | {_cell(_allowed(f))} "
                     f"| {extra} |")
    return lines


def render() -> str:
    out: list[str] = [
        "# The nearmiss data contract",
        "",
        "<!-- Generated by `python -m workbook_templates.docs > docs/contract.md`: edit the contract, not this "
        "file. -->",
        "",
        "Every sheet, field, code list and rule of a site workbook is declared once in `workbook_templates/` "
        "(`contract.py`, `codelists.py`, `rules.py`). The template builder lays the workbook out from these "
        "declarations, the add-in reads and checks against them and the server stores their fields. Field "
        "names are used in CSV, JSON and the database; labels are the headers a care manager sees in Excel. "
        "This page is generated from those declarations, so it always matches them.",
        "",
        "## Sheets",
        "",
        "| sheet | holds |",
        "|---|---|",
        *[f"| {name} | {_cell(text)} |" for name, text in SHEETS],
        "",
        f"A new template's tables start with {BLANK_TABLE_ROWS} blank rows and grow as people type below "
        f"them; drop-downs, date checks and highlighting cover the first {LIMITS['template_rows']:,} rows. "
        "Blank rows anywhere are ignored by the Dashboard, the reader and the checks.",
        "",
        "Field types: " + ", ".join(f"`{t}`" for t in FIELD_TYPES) + ". A `code` takes a value from a code list; "
        "`refs` is a comma separated list of references; `derived` is an Excel formula, recomputed (never "
        "trusted) when read: in a formula, `{field}` stands for that field's cell on the same row (the workbook "
        "writes it as `INDEX($L:$L,ROW())`, one formula for the whole column, so Excel fills it into rows the "
        "table grows by). \"beyond domain.md\" marks fields the domain notes do not name.",
        "",
    ]
    for key, sheet in TABLE_SHEETS.items():
        out += [f"## {sheet.sheet} sheet (table `{sheet.table}`)", ""]
        out += _field_table(sheet.fields, DOMAIN_FIELDS[key])
        out += ["", "What each column is for (the help shown in Excel):", ""]
        out += [f"- `{f.name}`: {f.help}" for f in sheet.fields]
        out.append("")
    out += [f"## {SITE_SHEET} sheet", "", "Label in column A, value in column B, one row per field:", ""]
    out += _field_table(SITE_FIELDS, DOMAIN_FIELDS["site"])
    out += ["", f"The `{EXPOSURE_TABLE}` table, one row per month:", ""]
    out += _field_table(EXPOSURE_FIELDS, None)
    unit = ", ".join(f"{s}: `{u}`" for s, u in codelists.EXPOSURE_UNIT_BY_SETTING.items())
    out += ["", f"Exposure unit for rates by setting: {unit}. Rates are per 1,000 units.", ""]

    out += ["## Code lists", "", "Stored values are the codes; the meaning is what the Guide sheet shows.", ""]
    for name, values in CODE_LISTS.items():
        used_by = [f"{t.sheet}.{f.name}" for t in TABLE_SHEETS.values() for f in t.fields if f.codes == name]
        used_by += [f"{SITE_SHEET}.{f.name}" for f in SITE_FIELDS if f.codes == name]
        out += [f"### `{name}`", "", f"Used by: {', '.join(used_by) or '(no column)'}.", "",
                "| code | meaning |", "|---|---|"]
        out += [f"| `{code}` | {_cell(meaning)} |" for code, meaning in values.items()]
        out.append("")

    out += ["## Other constants", "",
            "| name | value |", "|---|---|",
            "| `SUBCATEGORY_OF` | " + ", ".join(f"`{s}` → {c}" for s, c in codelists.SUBCATEGORY_OF.items())
            + " |",
            "| `RISK_BANDS` | " + ", ".join(f"{lo}-{hi} {band}" for lo, hi, band in codelists.RISK_BANDS) + " |",
            "| `HARM_LEVELS` (\"with harm\") | " + ", ".join(codelists.HARM_LEVELS) + " |",
            "| `REVIEW_TARGET_DAYS` | " + ", ".join(f"{t} {d}" for t, d in codelists.REVIEW_TARGET_DAYS.items())
            + " |",
            f"| `CQC_NOTIFY_WITHIN_DAYS` | {codelists.CQC_NOTIFY_WITHIN_DAYS} |",
            f"| `EFFECTIVENESS_CHECK_DAYS` | {rules.EFFECTIVENESS_CHECK_DAYS} |",
            "| `LIMITS` | " + ", ".join(f"{k} {v:,}" for k, v in LIMITS.items()) + " |",
            ""]

    out += ["## Rules", "",
            "Each rule has a stable id (never reused), the record and column a finding points at, a severity and "
            "the message a care manager reads; `{label}` and `{value}` are filled in per finding.", "",
            "| id | record | column | severity | message | source |", "|---|---|---|---|---|---|"]
    out += [f"| {r.id} | {r.record} | {_cell(r.field)} | {r.severity} | {_cell(r.message)} | {_cell(r.source)} |"
            for r in rules.RULES]
    out.append("")

    out += ["## Dashboard definitions", "",
            f"The Dashboard shows the {dashboard.MONTHS} months ending with the month in its \"Last month shown\" "
            "cell (B3: this month unless a date is typed there). All figures are COUNTIFS/SUMIFS over the Log, "
            "Actions and Site sheets:", "",
            "- **Near misses / Incidents**: rows dated (date occurred) in the month with that event type.",
            "- **All reports**: every row dated in the month, whatever its event type (so a row with a missing or "
            "wrong event type still counts here).",
            "- **Incidents with harm**: incidents whose physical harm is one of `HARM_LEVELS`.",
            "- **Near-miss share**: near misses / all reports.",
            "- **Exposure / rate**: the month's exposure from the Site sheet (by setting), and all reports per "
            "1,000 exposure units; the total rate uses only months with an exposure figure.",
            "- **Reports by category and month**: one row per category code, plus \"blank or not in list\" "
            "(all reports less the coded ones).",
            "- **Actions**: count per status; overdue = open or in progress with a due date before today; done "
            "by due date = done with a completed date on or before the due date, and its share of done.",
            "- **Open items by tier**: rows of the tier whose status is not closed (a blank status counts as "
            "open); past target = open and reported more than the tier's `REVIEW_TARGET_DAYS` ago.",
            ""]

    out += ["## Where the contract goes beyond domain.md", "",
            "domain.md is the starting point; these are the contract's additions and choices.", "",
            "### Fields domain.md does not name", ""]
    for key, sheet in TABLE_SHEETS.items():
        for f in sheet.fields:
            if f.name not in DOMAIN_FIELDS[key]:
                out.append(f"- {sheet.sheet} `{f.name}` ({f.label}): {WHY_ADDED.get(f.name, f.help)}")
    for f in SITE_FIELDS:
        if f.name not in DOMAIN_FIELDS["site"]:
            out.append(f"- {SITE_SHEET} `{f.name}` ({f.label}): {WHY_ADDED.get(f.name, f.help)}")
    out += ["", "### Code lists compared with domain.md", "",
            "| list | added | not in the contract |", "|---|---|---|"]
    for name, values in CODE_LISTS.items():
        domain = DOMAIN_CODE_LISTS.get(name)
        if domain is None:
            out.append(f"| `{name}` | whole list (domain.md names no values) | |")
            continue
        added = [c for c in values if c not in domain]
        missing = [c for c in domain if c not in values]
        if added or missing:
            out.append(f"| `{name}` | {', '.join(f'`{c}`' for c in added)} | "
                       f"{', '.join(f'`{c}`' for c in missing)} |")
    unchanged = [n for n, v in CODE_LISTS.items() if DOMAIN_CODE_LISTS.get(n) == list(v)]
    out += ["", f"Unchanged from domain.md: {', '.join(f'`{n}`' for n in unchanged)}.", "",
            "### Other choices", ""]
    out += [f"- **{title}**: {text}" for title, text in BEYOND]
    out.append("")
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
