"""The checks a reviewer expects, declared as data with stable ids.

Each rule names the record it applies to, the column a finding points at, its
severity and the message a care manager reads (what to do, not just what is
wrong).  The add-in implements each id as one vectorised check
(``addin/checks.py``); the Guide sheet and the docs list them from here.
Ids never change meaning once published: retire an id rather than reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    record: str  # "incidents" | "actions" | "site" | "workbook" | "conversion"
    field: str  # the column the finding points at
    severity: str  # "error" | "warning"
    message: str  # shown to the care manager; {value} is the offending value where useful
    source: str = ""  # where the expectation comes from


R = Rule

RULES: tuple[Rule, ...] = (
    # --- completeness and code lists -------------------------------------------------
    R("NM001", "incidents", "*", "error", "Fill in {label}: every log row needs it.", "data contract"),
    R("NM002", "incidents", "*", "error", "'{value}' is not an allowed {label}. Pick a value from the drop-down.",
      "data contract"),
    R("NM003", "incidents", "incident_ref", "error",
      "Incident ref '{value}' is used more than once. Give each row its own reference.", "data contract"),
    R("NM004", "incidents", "site_code", "error",
      "Site code '{value}' does not match the Site sheet. Use this site's code.", "data contract"),
    R("NM005", "incidents", "*", "error", "'{value}' is not a date. Type it as dd/mm/yyyy.", "data contract"),
    R("NM006", "incidents", "*", "error", "{label} must be a whole number from 1 to 5.", "NPSA 5x5 matrix"),
    R("NM007", "incidents", "*", "error", "'{value}' is not a time. Type it as hh:mm, e.g. 14:30.", "data contract"),
    # --- dates ---------------------------------------------------------------------------
    R("NM010", "incidents", "*", "error", "{label} is in the future. Check the date.", "domain rules"),
    R("NM011", "incidents", "reported_at", "error",
      "Date reported is before the date it occurred. Check both dates.", "domain rules"),
    R("NM012", "incidents", "*", "error",
      "{label} is before the date it occurred. Check the dates.", "domain rules"),
    R("NM013", "incidents", "closed_date", "error", "Closed date is before the date reported. Check the dates.",
      "domain rules"),
    # --- harm, tier and proportionate response -----------------------------------------------
    R("NM020", "incidents", "physical_harm", "error",
      "A near miss cannot have physical harm. Either set harm to none or record it as an incident.",
      "domain rules"),
    R("NM021", "incidents", "response_tier", "error",
      "Severe or fatal harm, or a CQC notification, cannot be tier low. Raise the tier to moderate or serious.",
      "proportionate response"),
    R("NM022", "incidents", "response_tier", "error",
      "Moderate and serious incidents need at least one action in the Actions sheet that names this incident.",
      "proportionate response"),
    R("NM023", "incidents", "safeguarding_considered", "error",
      "Serious tier: record whether safeguarding was considered (yes or no).", "proportionate response"),
    R("NM024", "incidents", "commissioner_notified_date", "error",
      "Serious tier: record the date the commissioner was notified.", "proportionate response"),
    R("NM025", "incidents", "response_tier", "warning",
      "The harm or risk suggests tier {value}. Raise the tier or give a reason for the lower tier.",
      "proportionate response"),
    R("NM026", "incidents", "subcategory", "warning",
      "Subcategory '{value}' belongs to another category. Check the category and subcategory.", "data contract"),
    # --- notifications ------------------------------------------------------------------------
    R("NM030", "incidents", "cqc_notification", "error",
      "This looks notifiable to CQC ({value}). Choose the CQC notification that applies.",
      "CQC Regulations 16 and 18"),
    R("NM031", "incidents", "cqc_notified_date", "warning",
      "A CQC notification is chosen but no date is recorded. Add the date once CQC is notified.",
      "CQC Regulations 16 and 18"),
    R("NM032", "incidents", "cqc_notified_date", "warning",
      "CQC was notified {value} days after the report. CQC expects notification without delay.",
      "CQC Regulations 16 and 18"),
    R("NM033", "incidents", "safeguarding_considered", "warning",
      "A safeguarding referral date is recorded, so safeguarding considered should be yes.", "Care Act s42"),
    R("NM034", "incidents", "riddor_ref", "warning", "RIDDOR reportable is yes: add the HSE reference.", "RIDDOR"),
    R("NM035", "incidents", "candour_date", "warning",
      "Duty of candour applies: record the date it was met.", "Regulation 20"),
    # --- closure and learning -------------------------------------------------------------------
    R("NM040", "incidents", "closed_date", "error", "Status is closed: add the closed date.", "domain rules"),
    R("NM041", "incidents", "learning_theme", "error", "Status is closed: add a learning theme.", "domain rules"),
    R("NM042", "incidents", "feedback_to_reporter_date", "error",
      "Closed at moderate or serious tier: record when the reporter heard the outcome.", "domain rules"),
    R("NM043", "incidents", "closed_date", "warning",
      "A closed date is recorded but status is not closed. Set status to closed or clear the date.",
      "domain rules"),
    R("NM044", "incidents", "status", "warning",
      "Open for {value} days, longer than the review target for this tier.", "domain rules"),
    # --- personal identifiers in free text ---------------------------------------------------------
    R("NM050", "*", "*", "error",
      "{label} seems to hold an NHS number. Remove it: use the person ref instead.", "data protection"),
    R("NM051", "*", "*", "error", "{label} seems to hold a date of birth. Remove it; use the age band instead.",
      "data protection"),
    R("NM052", "*", "*", "error", "{label} seems to hold a postcode. Remove it.", "data protection"),
    R("NM053", "*", "*", "error",
      "{label} seems to name a person ('{value}'). Remove the name: use the person ref or a role.",
      "data protection"),
    # --- actions ------------------------------------------------------------------------------------
    R("NM060", "actions", "*", "error", "Fill in {label}: every action needs it.", "data contract"),
    R("NM061", "actions", "*", "error", "'{value}' is not an allowed {label}. Pick a value from the drop-down.",
      "data contract"),
    R("NM062", "actions", "action_ref", "error",
      "Action ref '{value}' is used more than once. Give each action its own reference.", "data contract"),
    R("NM063", "actions", "incident_refs", "error",
      "Incident ref '{value}' is not in the Log. Check the reference.", "data contract"),
    R("NM064", "actions", "due_date", "error", "Due date is before the date raised.", "domain rules"),
    R("NM065", "actions", "completed_date", "error", "Status is done: add the completed date.", "domain rules"),
    R("NM066", "actions", "due_date", "warning", "Overdue by {value} days. Update the status or agree a new date.",
      "domain rules"),
    R("NM067", "actions", "completed_date", "error", "Completed date is before the date raised.", "domain rules"),
    R("NM068", "actions", "*", "error", "'{value}' is not a date. Type it as dd/mm/yyyy.", "data contract"),
    R("NM069", "actions", "effective", "warning",
      "Done more than 90 days ago with no effectiveness check. Check that the change worked.", "domain rules"),
    R("NM070", "actions", "*", "error", "{label} is in the future. Check the date.", "domain rules"),
    # --- site sheet ------------------------------------------------------------------------------------
    R("NM080", "site", "*", "error", "Fill in {label} on the Site sheet.", "data contract"),
    R("NM081", "site", "setting", "error", "'{value}' is not an allowed setting.", "data contract"),
    R("NM082", "site", "month", "warning",
      "No exposure figure for {value}, a month with reports: rates cannot be worked out for it.", "rates"),
    R("NM083", "site", "*", "error",
      "'{value}' cannot be read as {label}. Type a number (for Month, the first day of the month as a date).",
      "data contract"),
    # --- the workbook as a whole ------------------------------------------------------------------------
    R("NM090", "workbook", "*", "error", "The workbook has no '{value}' sheet: is this a nearmiss log?", "contract"),
    R("NM091", "workbook", "*", "warning", "Column '{value}' is not part of the log; it was ignored.", "contract"),
    R("NM092", "workbook", "*", "error", "Column {label} is missing from the {value} sheet.", "contract"),
    R("NM093", "workbook", "*", "warning",
      "{label} holds a formula with no saved result; open and save the workbook in Excel.", "contract"),
    R("NM094", "workbook", "*", "warning",
      "The workbook holds macros; they were ignored (only the values in the cells are read).", "security"),
    # --- bringing an existing log over (nearmiss convert) -----------------------------------------------
    R("CV001", "conversion", "*", "warning",
      "{label} '{value}' does not match any allowed value: it was left blank and kept in Notes. Pick the right value.", "conversion"),
    R("CV002", "conversion", "*", "warning",
      "{label} '{value}' is not a date the converter understands: it was left blank and kept in Notes. Type it as dd/mm/yyyy.", "conversion"),
    R("CV003", "conversion", "*", "warning",
      "{label} '{value}' was not understood: it was left blank and kept in Notes.", "conversion"),
    R("CV004", "conversion", "*", "warning",
      'Date reported was blank on {value}: it was set to the date it occurred. Check those dates (each row says so in Notes).', "conversion"),
    R("CV005", "conversion", "*", "warning",
      'Response tier was blank on {value}: a tier was suggested from the harm, risk and notifications. Confirm or change it.', "conversion"),
    R("CV006", "conversion", "*", "warning",
      'Status was blank on {value}: it was set to open.', "conversion"),
    R("CV007", "conversion", "*", "warning",
      'Near miss or incident was blank on {value} with harm recorded: set to incident (a near miss has no harm).', "conversion"),
    R("CV008", "conversion", "*", "warning",
      "Reference '{value}' is used on more than one row: this row got a new reference and the old one is in Notes. Check which row any action means.", "conversion"),
    R("CV009", "conversion", "*", "warning",
      "{value} got a new reference in the site's format; the old reference is in Notes.", "conversion"),
    R("CV010", "conversion", "*", "warning",
      "Column '{label}' identifies the person cared for: each name or identifier became a pseudonymous person ref and none was copied.", "conversion"),
    R("CV011", "conversion", "*", "warning",
      "Column '{label}' holds people's names: it was left out (names are never copied).", "conversion"),
    R("CV012", "conversion", "*", "warning",
      '{label} {value} is not in the month this sheet is for: the day and month may be swapped. Check the date.', "conversion"),
    R("CV013", "conversion", "*", "warning",
      'This row has no date and no description: check that it is a real record.', "conversion"),
    R("CV014", "conversion", "*", "warning",
      "Sheet '{label}' was not converted: {value}.", "conversion"),
    R("CV015", "conversion", "*", "warning",
      "Column '{label}' matches no column of the template: its values were kept in Notes on {value}.", "conversion"),
    R("CV016", "conversion", "*", "warning",
      '{label} was hidden in the old log; it was converted like the rest.', "conversion"),
    R("CV017", "conversion", "*", "warning",
      '{label} holds a formula with no saved result; open and save the old log in Excel, then convert again.', "conversion"),
    R("CV018", "conversion", "*", "warning",
      "Incident ref '{value}' of this action is not in the log (or is used twice): check it.", "conversion"),
    R("CV019", "conversion", "*", "warning",
      '{value} names found in free text were replaced by the person ref or [name].', "conversion"),
    R("CV020", "conversion", "*", "warning",
      'The old log holds macros; they are not copied (the template needs none).', "conversion"),
    R("CV021", "conversion", "*", "warning",
      "The mapping file names column '{value}', which no sheet has.", "conversion"),
    R("CV022", "conversion", "*", "warning",
      "{label} held what looks like a person's name; it was left blank and not copied.", "conversion"),
    R("CV023", "conversion", "*", "warning",
      '{label} was blank on {value} and could not be worked out safely: fill it in.', "conversion"),
    R("CV024", "conversion", "*", "warning",
      "Column '{label}' was matched to {value} by its values; check that is right.", "conversion"),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
assert len(RULES_BY_ID) == len(RULES), "rule ids must be unique"

# Days after completion by which an action's effectiveness should be checked.
EFFECTIVENESS_CHECK_DAYS = 90
