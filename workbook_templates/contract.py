"""The data contract: every sheet and column of the site workbook, declared once.

The template builder lays the workbook out from these declarations, the add-in
reads and validates against them, the converter maps legacy columns onto them
and the server stores their fields.  Field names are the contract's names (used
in CSV, JSON and the database); labels are what a care manager sees in Excel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .codelists import CODE_LISTS

# Field types.  "code" takes a value from a code list; "refs" is a comma
# separated list of references; "derived" is computed by a formula in Excel
# and recomputed (never trusted) when read.
FIELD_TYPES = ("text", "longtext", "code", "date", "time", "int", "number", "ref", "refs", "derived")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str
    help: str
    codes: str | None = None  # code list name for type "code"
    required: bool = False  # always required on a filled row
    required_when: str = ""  # plain-English condition; the check itself is a rule in rules.py
    width: int = 14
    minimum: int | None = None
    maximum: int | None = None
    # Excel formula for derived columns; {field_name} stands for that field's cell on the same row.
    formula: str | None = None
    free_text: bool = False  # checked for personal identifiers
    future_ok: bool = False  # dates that may lie ahead (due dates, planned checks)
    synonyms: tuple[str, ...] = ()  # other headers seen in managers' own logs

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"{self.name}: unknown type {self.type}")
        if (self.type == "code") != (self.codes is not None):
            raise ValueError(f"{self.name}: code fields and only code fields name a code list")
        if self.codes is not None and self.codes not in CODE_LISTS:
            raise ValueError(f"{self.name}: unknown code list {self.codes}")

    @property
    def allowed(self) -> list[str] | None:
        return list(CODE_LISTS[self.codes]) if self.codes else None


@dataclass(frozen=True)
class TableSheet:
    """A sheet holding one Excel table, one row per record."""

    key: str  # "incidents" | "actions"
    sheet: str  # sheet name in the workbook
    table: str  # Excel table name
    ref_field: str  # the unique reference column
    fields: tuple[Field, ...]
    tab_colour: str = "#1F4E79"

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def labels(self) -> list[str]:
        return [f.label for f in self.fields]

    @property
    def input_fields(self) -> list[Field]:
        return [f for f in self.fields if f.type != "derived"]

    def column_letter(self, name: str) -> str:
        return column_letter(self.names.index(name))

    def row_formula(self, name: str, row: int) -> str:
        """The derived field's formula for sheet row ``row`` (1-based), columns named by field."""
        cells = {n: f"${column_letter(i)}{row}" for i, n in enumerate(self.names)}
        return self.field(name).formula.format(**cells)



def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


F = Field

INCIDENTS = TableSheet(
    key="incidents",
    sheet="Log",
    table="Incidents",
    ref_field="incident_ref",
    tab_colour="#C00000",
    fields=(
        F("incident_ref", "Incident ref", "ref", "Unique reference: site code, year, number, e.g. OAK-2026-0042.",
          required=True, width=16, synonyms=("ref", "reference", "incident no", "incident number", "log no", "id")),
        F("site_code", "Site code", "text", "Short code of the site; the same as on the Site sheet.",
          required=True, width=9, synonyms=("site", "home", "branch", "service")),
        F("occurred_at", "Date occurred", "date", "Date it happened (dd/mm/yyyy). Not in the future.",
          required=True, width=13, synonyms=("date of incident", "incident date", "date", "date occurred",
                                              "date of event", "when")),
        F("occurred_time", "Time occurred", "time", "Time it happened (hh:mm), if known.", width=10,
          synonyms=("time", "time of incident")),
        F("reported_at", "Date reported", "date", "Date it was reported. Not before the date it occurred.",
          required=True, width=13, synonyms=("date reported", "reported", "report date", "reported on")),
        F("event_type", "Near miss or incident", "code",
          "near_miss: no harm, the impact was prevented. incident: it reached the person.",
          codes="event_type", required=True, width=14,
          synonyms=("near miss", "near miss?", "near miss? (y/n)", "type", "event type", "nm/incident")),
        F("category", "Category", "code", "What kind of event it was.", codes="category", required=True, width=22,
          synonyms=("type of incident", "incident type", "category", "what type")),
        F("subcategory", "Subcategory", "code", "Optional detail, e.g. for medication: omission, wrong_dose.",
          codes="subcategory", width=20, synonyms=("sub category", "sub-category", "detail", "error type")),
        F("location", "Location", "code", "Where it happened.", codes="location", width=15,
          synonyms=("where", "place", "location of incident")),
        F("physical_harm", "Physical harm", "code", "LFPSE grading: none, low, moderate, severe, fatal.",
          codes="physical_harm", required=True, width=12, synonyms=("harm", "level of harm", "injury", "severity")),
        F("psychological_harm", "Psychological harm", "code", "none, low, moderate, severe.",
          codes="psychological_harm", width=13, synonyms=("psychological", "distress")),
        F("consequence", "Consequence (1-5)", "int", "NPSA 5x5: how bad the outcome was or could have been.",
          width=11, minimum=1, maximum=5, synonyms=("consequence", "impact score")),
        F("likelihood", "Likelihood (1-5)", "int", "NPSA 5x5: how likely it is to happen again.",
          width=11, minimum=1, maximum=5, synonyms=("likelihood", "probability")),
        F("risk_score", "Risk score", "derived", "Consequence x likelihood (worked out for you).", width=8,
          formula='=IF(AND(ISNUMBER({consequence}),ISNUMBER({likelihood})),{consequence}*{likelihood},"")'),
        F("risk_band", "Risk band", "derived", "1-3 low, 4-6 moderate, 8-12 high, 15-25 extreme.", width=10,
          formula='=IF(ISNUMBER({risk_score}),IF({risk_score}<=3,"low",IF({risk_score}<=6,"moderate",'
                  'IF({risk_score}<=12,"high","extreme"))),"")'),
        F("response_tier", "Response tier", "code",
          "low, moderate or serious: in proportion to harm, risk and notifications.",
          codes="response_tier", required=True, width=12, synonyms=("tier", "response level", "grading")),
        F("tier_override_reason", "Reason for tier choice", "text",
          "Why the tier is lower than the harm or risk suggests (only when you choose a lower tier).", width=24),
        F("learning_response", "Learning response", "code", "How the learning will be drawn out.",
          codes="learning_response", width=20, synonyms=("learning response", "review type")),
        F("description", "What happened", "longtext",
          "Facts only. Never names, dates of birth, NHS numbers or addresses.", required=True, width=45,
          free_text=True, synonyms=("what happened?", "description", "details", "summary", "incident details")),
        F("immediate_action", "Immediate action", "longtext", "What was done at once to make the person safe.",
          width=35, free_text=True, synonyms=("action taken", "immediate action taken", "what was done")),
        F("person_ref", "Person ref", "text", "Pseudonymous reference for the person receiving care; never a name.",
          width=12, synonyms=("resident", "service user", "client", "person", "resident name", "initials")),
        F("age_band", "Age band", "code", "Optional.", codes="age_band", width=9, synonyms=("age",)),
        F("gender", "Gender", "code", "Optional.", codes="gender", width=10, synonyms=("sex",)),
        F("staff_role", "Staff role", "text", "Role of the staff member involved (not a name).", width=16,
          synonyms=("staff", "staff involved", "role")),
        F("safeguarding_considered", "Safeguarding considered", "code", "yes or no.", codes="yes_no",
          required_when="response tier is serious", width=13, synonyms=("safeguarding", "safeguarding?")),
        F("safeguarding_referral_date", "Safeguarding referral date", "date",
          "Date a concern was raised to the local authority (Care Act s42).", width=13,
          synonyms=("safeguarding referral", "referral date")),
        F("police_involved", "Police involved", "code", "yes when the police were told or are investigating.",
          codes="yes_no", width=10, synonyms=("police",)),
        F("cqc_notification", "CQC notification", "code",
          "Which CQC notification applies (none if not notifiable).", codes="cqc_notification", width=22,
          required_when="death, serious injury, abuse allegation, police or service disruption",
          synonyms=("cqc", "cqc notified", "notification")),
        F("cqc_notified_date", "CQC notified date", "date", "Date CQC was notified (without delay).", width=13,
          synonyms=("date cqc notified",)),
        F("commissioner_notified_date", "Commissioner notified date", "date", "Date the commissioner was told.",
          required_when="response tier is serious", width=13, synonyms=("commissioner notified", "la notified")),
        F("riddor_reportable", "RIDDOR reportable", "code", "yes or no.", codes="yes_no", width=10,
          synonyms=("riddor",)),
        F("riddor_ref", "RIDDOR ref", "text", "HSE reference once reported.", width=12),
        F("duty_of_candour", "Duty of candour", "code", "yes when the duty of candour applies.", codes="yes_no",
          width=10, synonyms=("candour",)),
        F("candour_date", "Candour date", "date", "Date the duty of candour was met.", width=13),
        F("pressure_ulcer_grade", "Pressure ulcer grade", "code", "For pressure care events, where recorded.",
          codes="pressure_ulcer_grade", width=14, synonyms=("grade", "pressure ulcer category")),
        F("status", "Status", "code", "open, under_review or closed.", codes="incident_status", required=True,
          width=12, synonyms=("status", "open/closed")),
        F("learning_theme", "Learning theme", "text",
          "Short tag for the learning, e.g. handover, escalation_thresholds.",
          required_when="status is closed", width=20, free_text=True, synonyms=("theme", "lessons learned",
                                                                                  "learning")),
        F("feedback_to_reporter_date", "Feedback to reporter date", "date", "When the reporter heard the outcome.",
          required_when="closed at moderate or serious tier", width=13, synonyms=("feedback given",)),
        F("closed_date", "Closed date", "date", "Date the review closed.", required_when="status is closed",
          width=13, synonyms=("date closed", "closed")),
        F("notes", "Notes", "longtext", "Anything else, including notes left by the import.", width=30,
          free_text=True, synonyms=("comments", "notes")),
    ),
)

ACTIONS = TableSheet(
    key="actions",
    sheet="Actions",
    table="Actions",
    ref_field="action_ref",
    tab_colour="#375623",
    fields=(
        F("action_ref", "Action ref", "ref", "Unique reference, e.g. OAK-A-0017.", required=True, width=13,
          synonyms=("action no", "action number", "ref", "id")),
        F("incident_refs", "Incident refs", "refs", "One or more incident refs this answers, separated by commas.",
          required=True, width=22, synonyms=("incident ref", "incident", "linked incident", "incident no")),
        F("action", "Action", "longtext", "What will change: care plan, checklist, training, staffing, system.",
          required=True, width=45, free_text=True, synonyms=("action", "action required", "what will change")),
        F("action_type", "Action type", "code", "The kind of change.", codes="action_type", width=14,
          synonyms=("type",)),
        F("owner_role", "Owner (role)", "text", "Accountable role.", required=True, width=18,
          synonyms=("owner", "responsible", "who", "lead")),
        F("raised_date", "Date raised", "date", "When the action was agreed.", required=True, width=12,
          synonyms=("raised", "date raised", "date opened")),
        F("due_date", "Due date", "date", "Not before the date raised.", required=True, width=12, future_ok=True,
          synonyms=("due", "deadline", "target date")),
        F("status", "Status", "code", "open, in_progress, done or cancelled.", codes="action_status", required=True,
          width=12, synonyms=("status", "progress")),
        F("completed_date", "Completed date", "date", "Required when done.", required_when="status is done",
          width=12, synonyms=("completed", "date completed")),
        F("evidence", "Evidence", "text", "Where the evidence lives (audit, supervision notes, training log).",
          width=28, free_text=True, synonyms=("evidence",)),
        F("effectiveness_check_date", "Effectiveness check date", "date", "When you checked that it worked.",
          width=13, future_ok=True, synonyms=("check date", "review date")),
        F("effective", "Effective?", "code", "yes, no or not_yet.", codes="effective", width=10,
          synonyms=("effective", "did it work")),
        F("overdue", "Overdue", "derived", "Open or in progress and past its due date (worked out for you).",
          width=9, formula='=IF(AND(OR({status}="open",{status}="in_progress"),ISNUMBER({due_date})),'
                           'IF({due_date}<TODAY(),"overdue",""),"")'),
    ),
)

TABLE_SHEETS: dict[str, TableSheet] = {t.key: t for t in (INCIDENTS, ACTIONS)}

# The Site sheet: key/value pairs in columns A:B, exposure table from column D.
SITE_FIELDS: tuple[Field, ...] = (
    F("site_code", "Site code", "text", "Short code, 2-8 capital letters or digits, e.g. OAK.", required=True),
    F("site_name", "Site name", "text", "The site's name.", required=True),
    F("provider", "Provider", "text", "The registered provider."),
    F("setting", "Setting", "code", "care_home, homecare, supported_living or complex_care_at_home.",
      codes="setting", required=True),
    F("cqc_location_id", "CQC location ID", "text", "e.g. 1-123456789."),
    F("commissioners", "Commissioners", "text", "Commissioners of the contract(s), separated by commas."),
    F("people_supported", "People supported", "int", "Number of people supported now."),
)

EXPOSURE_FIELDS: tuple[Field, ...] = (
    F("month", "Month", "date", "First day of the month."),
    F("occupied_bed_days", "Occupied bed days", "number", "Care homes: occupied beds summed over the month."),
    F("care_hours", "Delivered care hours", "number", "Homecare and supported living: hours delivered."),
    F("visits", "Visits", "int", "Homecare: visits delivered."),
    F("people_supported", "People supported", "int", "People supported that month."),
)

SITE_SHEET = "Site"
EXPOSURE_TABLE = "Exposure"
EXPOSURE_FIRST_COLUMN = 3  # column D: one blank column after the key/value pairs
LISTS_SHEET = "Lists"
GUIDE_SHEET = "Guide"
DASHBOARD_SHEET = "Dashboard"
EXPOSURE_MONTHS = 36

# Limits a workbook must keep within; the reader refuses anything larger.
LIMITS = {
    "template_rows": 5000,  # rows the template's validation and formatting cover
    "max_rows": 50_000,  # rows per sheet the reader accepts
    "max_columns": 80,
    "max_sheets": 60,
}


@dataclass(frozen=True)
class Contract:
    incidents: TableSheet = INCIDENTS
    actions: TableSheet = ACTIONS
    site_fields: tuple[Field, ...] = SITE_FIELDS
    exposure_fields: tuple[Field, ...] = EXPOSURE_FIELDS
    extras: dict = field(default_factory=dict)


CONTRACT = Contract()


def code_fields() -> list[tuple[TableSheet, Field]]:
    """Every coded column of every table sheet."""
    return [(t, f) for t in TABLE_SHEETS.values() for f in t.fields if f.type == "code"]
