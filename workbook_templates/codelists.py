"""Code lists of the data contract: the one place each allowed value is written.

Each list maps a code (what is stored in the cell, in CSV exports and in the
database) to a short meaning shown on the Guide sheet.  The template builder,
the validator, the converter and the server all read these dicts; nothing else
restates them.  Sources: ../shared/spec/domain.md (LFPSE harm grading, NPSA
5x5 risk matrix, CQC Regulations 16 and 18, Care Act s42).
"""

from __future__ import annotations

CODE_LISTS: dict[str, dict[str, str]] = {
    "event_type": {
        "near_miss": "Near miss: no harm, the impact was prevented",
        "incident": "Incident: it reached the person",
    },
    "category": {
        "falls": "Falls, slips and trips",
        "medication": "Medication errors and near misses",
        "pressure_care": "Pressure damage and skin integrity",
        "safeguarding": "Safeguarding concerns (abuse, neglect)",
        "behaviour": "Distressed behaviour affecting the person or others",
        "missed_or_late_visit": "Missed, late or short care visits",
        "infection": "Infection prevention and control",
        "equipment": "Equipment failure or misuse",
        "environment": "Premises and environment",
        "information_governance": "Information governance and data breaches",
        "deterioration_escalation": "Deterioration not recognised or escalated",
        "moving_and_handling": "Moving and handling",
        "choking": "Choking and eating or drinking",
        "self_harm": "Self-harm",
        "death": "Death of a person using the service",
        "other": "Anything else",
    },
    "subcategory": {
        "omission": "medication: dose not given",
        "wrong_dose": "medication: wrong dose",
        "wrong_time": "medication: given at the wrong time",
        "wrong_person": "medication: given to the wrong person",
        "wrong_medicine": "medication: wrong medicine",
        "not_signed": "medication: given but not signed for",
        "stock_or_storage": "medication: stock, ordering or storage",
        "unwitnessed_fall": "falls: nobody saw the fall",
        "witnessed_fall": "falls: staff saw the fall",
        "found_on_floor": "falls: person found on the floor",
        "missed_visit": "missed_or_late_visit: visit did not happen",
        "late_visit": "missed_or_late_visit: more than 30 minutes late",
        "short_visit": "missed_or_late_visit: cut short",
        "new_pressure_ulcer": "pressure_care: new pressure ulcer",
        "deteriorated_pressure_ulcer": "pressure_care: existing ulcer got worse",
        "moisture_damage": "pressure_care: moisture-associated skin damage",
    },
    "location": {
        "own_home": "The person's own home",
        "care_home": "Care home",
        "supported_living": "Supported living",
        "community": "Out in the community",
        "day_service": "Day service",
        "hospital": "Hospital",
        "other": "Somewhere else",
    },
    "physical_harm": {
        "none": "No physical harm",
        "low": "Low: minimal harm, first aid or extra observation",
        "moderate": "Moderate: significant but not permanent harm",
        "severe": "Severe: permanent harm or lasting disability",
        "fatal": "Fatal: the person died as a result",
    },
    "psychological_harm": {
        "none": "No psychological harm",
        "low": "Low: minimal distress",
        "moderate": "Moderate: significant distress needing support",
        "severe": "Severe: lasting psychological harm",
    },
    "response_tier": {
        "low": "Low: put right at once, reflective supervision, brief learning note",
        "moderate": "Moderate: structured review, manager oversight, targeted action plan",
        "serious": "Serious: formal investigation, safeguarding considered, commissioner told",
    },
    "learning_response": {
        "reflective_supervision": "Reflective supervision",
        "after_action_review": "After action review",
        "huddle": "Team huddle",
        "structured_review": "Structured review",
        "formal_investigation": "Formal investigation",
        "thematic_review": "Thematic review",
    },
    "age_band": {
        "18-25": "18 to 25",
        "26-45": "26 to 45",
        "46-65": "46 to 65",
        "66-85": "66 to 85",
        "85+": "over 85",
    },
    "gender": {
        "female": "Female",
        "male": "Male",
        "other": "Other",
        "not_known": "Not known or not stated",
    },
    "yes_no": {"yes": "Yes", "no": "No"},
    "cqc_notification": {
        "none": "No CQC notification needed",
        "reg16_death": "Regulation 16: death of a person using the service",
        "reg18_serious_injury": "Regulation 18: serious injury",
        "reg18_abuse_allegation": "Regulation 18: abuse or allegation of abuse",
        "reg18_police": "Regulation 18: incident reported to or investigated by the police",
        "reg18_dols": "Regulation 18: Deprivation of Liberty Safeguards outcome",
        "reg18_service_disruption": "Regulation 18: event stopping the service running safely",
    },
    "pressure_ulcer_grade": {
        "category_1": "Category 1",
        "category_2": "Category 2",
        "category_3": "Category 3",
        "category_4": "Category 4",
        "unstageable": "Unstageable",
        "deep_tissue_injury": "Suspected deep tissue injury",
    },
    "incident_status": {
        "open": "Open: reported, not yet reviewed",
        "under_review": "Under review",
        "closed": "Closed: review finished and learning recorded",
    },
    "action_type": {
        "care_plan": "Change to a care plan",
        "training": "Training",
        "supervision": "Supervision",
        "process": "Process or checklist",
        "equipment": "Equipment",
        "staffing": "Staffing",
        "system_data": "Systems and scheduling data",
        "other": "Other",
    },
    "action_status": {
        "open": "Open: not started",
        "in_progress": "In progress",
        "done": "Done: completed with evidence",
        "cancelled": "Cancelled",
    },
    "effective": {
        "yes": "Yes: the check showed it worked",
        "no": "No: it did not work, a new action is needed",
        "not_yet": "Not yet checked",
    },
    "setting": {
        "care_home": "Care home (rates per 1,000 occupied bed days)",
        "homecare": "Homecare branch (rates per 1,000 delivered care hours)",
        "supported_living": "Supported living (rates per 1,000 delivered care hours)",
        "complex_care_at_home": "Complex care at home (rates per 1,000 delivered care hours)",
    },
}

# Which subcategories belong to which category (a warning when they disagree).
SUBCATEGORY_OF: dict[str, str] = {
    code: meaning.split(":", 1)[0] for code, meaning in CODE_LISTS["subcategory"].items()
}

# NPSA 5x5 matrix: risk score = consequence x likelihood, banded.
RISK_BANDS: list[tuple[int, int, str]] = [
    (1, 3, "low"),
    (4, 6, "moderate"),
    (8, 12, "high"),
    (15, 25, "extreme"),
]

# Exposure unit used for rates, by setting.
EXPOSURE_UNIT_BY_SETTING: dict[str, str] = {
    "care_home": "occupied_bed_days",
    "homecare": "care_hours",
    "supported_living": "care_hours",
    "complex_care_at_home": "care_hours",
}

# Harm levels that count as "with harm" in measures and returns.
HARM_LEVELS = ("low", "moderate", "severe", "fatal")

# Days from report to closure before an open item counts as overdue, by tier.
REVIEW_TARGET_DAYS: dict[str, int] = {"low": 14, "moderate": 28, "serious": 60}

# A CQC notification later than this many days after the report is "late".
CQC_NOTIFY_WITHIN_DAYS = 1


def codes(list_name: str) -> list[str]:
    """The allowed codes of one list, in display order."""
    return list(CODE_LISTS[list_name])


def risk_band(score: int) -> str:
    for low, high, band in RISK_BANDS:
        if low <= score <= high:
            return band
    raise ValueError(f"risk score {score} is not a product of two numbers 1-5")
