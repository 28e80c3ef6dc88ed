"""What managers write in their own logs, mapped to the contract's codes: data for the converter.

``VALUE_SYNONYMS[list_name][text] = code``: ``list_name`` is a code list of
``workbook_templates.codelists``, ``text`` a value seen in legacy logs (written
naturally; it is normalised the same way as the cell before comparing), and
``code`` one of that list's codes.  The codes themselves and their meanings on
the Guide sheet match without being listed here.

``ROOM_WORDS`` are places inside wherever the person lives ("Bedroom",
"Lounge"): they map to the site's own kind of location, so "Bedroom" is
``care_home`` for a care home and ``own_home`` for a homecare branch.

Add to these lists rather than to the converter's code; a test checks that
every code here exists in its list.
"""

from __future__ import annotations

import re

from workbook_templates.codelists import CODE_LISTS

# Fuzzy matching of a value that matches no synonym exactly (rapidfuzz, 0-100).
VALUE_FUZZY_CUTOFF = 85
# A value whose words include every word of a synonym ("Fall - unwitnessed" holds "fall") scores this.
CONTAINS_SCORE = 95

_YES = ("y", "yes", "true", "1", "ticked", "x", "yes done")
_NO = ("n", "no", "false", "0", "not applicable", "n/a", "na", "nil")

VALUE_SYNONYMS: dict[str, dict[str, str]] = {
    "event_type": {
        **{t: "near_miss" for t in ("y", "yes", "true", "1", "near miss", "nearmiss", "near-miss", "nm",
                                    "near miss (no harm)", "no harm near miss", "near miss only", "prevented")},
        **{t: "incident" for t in ("n", "no", "false", "0", "incident", "actual incident", "adverse event",
                                   "accident", "reached the person", "actual")},
    },
    "category": {
        **{t: "falls" for t in ("fall", "falls", "slip", "trip", "slip/trip/fall", "slips trips and falls",
                                "slip trip or fall", "found on floor", "found on the floor", "fell",
                                "unwitnessed fall", "witnessed fall", "fall with injury", "fall no injury",
                                "rolled out of bed", "slid from chair", "near fall", "controlled descent")},
        **{t: "medication" for t in ("med error", "meds error", "medication error", "medication", "meds",
                                     "medicine", "medicines", "drug error", "drug", "drugs", "missed medication",
                                     "mar chart", "mar error", "controlled drug", "controlled drugs",
                                     "administration error", "medication incident", "medicines error")},
        **{t: "pressure_care" for t in ("pressure ulcer", "pressure sore", "pressure damage", "pressure care",
                                        "pressure area", "bed sore", "bedsore", "skin integrity", "skin damage",
                                        "moisture lesion", "tissue viability", "skin")},
        **{t: "safeguarding" for t in ("safeguarding", "abuse", "alleged abuse", "allegation", "neglect",
                                       "unexplained bruising", "unexplained injury", "financial abuse",
                                       "safeguarding concern", "self neglect")},
        **{t: "behaviour" for t in ("behaviour", "behavior", "challenging behaviour", "distressed behaviour",
                                    "behaviours that challenge", "aggression", "violence", "agitation",
                                    "verbal aggression", "physical aggression", "resident on resident",
                                    "altercation", "assault")},
        **{t: "missed_or_late_visit" for t in ("missed visit", "late visit", "missed call", "late call",
                                               "short visit", "missed or late visit", "missed/late call",
                                               "call not delivered", "visit missed")},
        **{t: "infection" for t in ("infection", "infection control", "uti", "chest infection", "covid",
                                    "covid-19", "outbreak", "diarrhoea and vomiting", "d&v", "norovirus", "flu",
                                    "sepsis", "ipc")},
        **{t: "equipment" for t in ("equipment", "equipment failure", "faulty equipment", "hoist", "hoist failure",
                                    "bed rails", "sensor mat", "call bell", "wheelchair", "mattress")},
        **{t: "environment" for t in ("environment", "environmental", "premises", "building", "wet floor",
                                      "spillage", "heating", "fire", "flood", "maintenance", "health and safety",
                                      "water temperature")},
        **{t: "information_governance" for t in ("information governance", "ig", "data breach", "data protection",
                                                 "gdpr", "confidentiality", "breach of confidentiality",
                                                 "records", "lost records")},
        **{t: "deterioration_escalation" for t in ("deterioration", "escalation", "deterioration escalation",
                                                   "not escalated", "failure to escalate", "acutely unwell",
                                                   "unwell", "delayed escalation", "news2")},
        **{t: "moving_and_handling" for t in ("moving and handling", "manual handling", "m&h", "moving & handling",
                                              "transfer", "unsafe transfer", "hoisting", "repositioning")},
        **{t: "choking" for t in ("choking", "choke", "choked", "aspiration", "dysphagia", "swallowing",
                                  "wrong texture", "eating and drinking")},
        **{t: "self_harm" for t in ("self harm", "self-harm", "self injury", "self-injury", "ligature")},
        **{t: "death" for t in ("death", "died", "passed away", "expected death", "unexpected death", "deceased")},
        **{t: "other" for t in ("other", "misc", "miscellaneous", "general", "various")},
    },
    "subcategory": {
        **{t: "omission" for t in ("omission", "omitted", "missed dose", "dose missed", "not given", "missed")},
        **{t: "wrong_dose" for t in ("wrong dose", "incorrect dose", "double dose", "overdose", "extra dose")},
        **{t: "wrong_time" for t in ("wrong time", "late dose", "given late", "given early", "timing")},
        **{t: "wrong_person" for t in ("wrong person", "wrong resident", "wrong service user", "wrong client",
                                       "given to wrong person")},
        **{t: "wrong_medicine" for t in ("wrong medicine", "wrong medication", "wrong drug", "wrong meds")},
        **{t: "not_signed" for t in ("not signed", "unsigned", "missing signature", "gap on mar", "mar gap",
                                     "signature missing", "not signed for")},
        **{t: "stock_or_storage" for t in ("stock", "storage", "out of stock", "ordering", "fridge temperature",
                                           "stock discrepancy", "stock count")},
        **{t: "unwitnessed_fall" for t in ("unwitnessed", "unwitnessed fall", "not witnessed")},
        **{t: "witnessed_fall" for t in ("witnessed", "witnessed fall")},
        **{t: "found_on_floor" for t in ("found on floor", "found on the floor")},
        **{t: "missed_visit" for t in ("missed visit", "missed call")},
        **{t: "late_visit" for t in ("late visit", "late call")},
        **{t: "short_visit" for t in ("short visit", "short call", "cut short")},
        **{t: "new_pressure_ulcer" for t in ("new pressure ulcer", "new sore", "new pressure sore")},
        **{t: "deteriorated_pressure_ulcer" for t in ("deteriorated pressure ulcer", "worsened", "deteriorated")},
        **{t: "moisture_damage" for t in ("moisture damage", "moisture lesion", "masd")},
    },
    "location": {
        **{t: "own_home" for t in ("own home", "home", "at home", "person's home", "client's home",
                                   "service user's home", "their home", "private home")},
        **{t: "care_home" for t in ("care home", "nursing home", "residential home", "the home")},
        **{t: "supported_living" for t in ("supported living", "supported living scheme", "scheme", "flat")},
        **{t: "community" for t in ("community", "in the community", "outing", "out", "shop", "shops", "park",
                                    "street", "public place", "bus", "transport", "taxi")},
        **{t: "day_service" for t in ("day service", "day centre", "day center", "day care", "day opportunities")},
        **{t: "hospital" for t in ("hospital", "a&e", "ward", "emergency department")},
        **{t: "other" for t in ("other", "elsewhere")},
    },
    "physical_harm": {
        **{t: "none" for t in ("none", "no harm", "no injury", "nil", "no", "0", "n/a", "not applicable",
                               "no injuries", "unharmed", "no apparent injury")},
        **{t: "low" for t in ("low", "minor", "low harm", "minimal", "minimal harm", "slight", "minor injury",
                              "bruise", "bruising", "graze", "skin tear", "first aid", "minor harm")},
        **{t: "moderate" for t in ("moderate", "medium", "moderate harm", "significant", "significant harm")},
        **{t: "severe" for t in ("severe", "major", "serious", "severe harm", "major harm", "serious harm",
                                 "serious injury", "fracture", "permanent harm")},
        **{t: "fatal" for t in ("fatal", "death", "died", "catastrophic")},
    },
    "psychological_harm": {
        **{t: "none" for t in ("none", "no harm", "nil", "no", "0", "n/a", "not applicable", "no distress")},
        **{t: "low" for t in ("low", "minor", "minimal", "slight", "mild", "low harm", "upset")},
        **{t: "moderate" for t in ("moderate", "medium", "significant", "distressed")},
        **{t: "severe" for t in ("severe", "major", "serious", "severe harm")},
    },
    "response_tier": {
        **{t: "low" for t in ("low", "green", "minor", "level 1", "tier 1", "1")},
        **{t: "moderate" for t in ("moderate", "medium", "amber", "level 2", "tier 2", "2")},
        **{t: "serious" for t in ("serious", "high", "red", "major", "severe", "level 3", "tier 3", "3")},
    },
    "learning_response": {
        **{t: "reflective_supervision" for t in ("reflective supervision", "supervision", "reflection")},
        **{t: "after_action_review" for t in ("after action review", "aar", "debrief")},
        **{t: "huddle" for t in ("huddle", "team huddle", "safety huddle", "team meeting")},
        **{t: "structured_review" for t in ("structured review", "review", "case review", "manager review")},
        **{t: "formal_investigation" for t in ("formal investigation", "investigation", "rca",
                                               "root cause analysis", "full investigation")},
        **{t: "thematic_review" for t in ("thematic review", "thematic", "themes review")},
    },
    "age_band": {
        **{t: "85+" for t in ("85+", "over 85", "85 plus", "86+", "85 and over")},
    },
    "gender": {
        **{t: "female" for t in ("f", "female", "woman", "w", "lady")},
        **{t: "male" for t in ("m", "male", "man", "gentleman")},
        **{t: "other" for t in ("other", "non-binary", "non binary")},
        **{t: "not_known" for t in ("not known", "unknown", "nk", "prefer not to say", "not stated")},
    },
    "yes_no": {
        **{t: "yes" for t in _YES},
        **{t: "no" for t in _NO},
    },
    "cqc_notification": {
        **{t: "none" for t in ("none", "no", "n", "not required", "not notifiable", "n/a", "na", "not needed")},
        **{t: "reg16_death" for t in ("death", "reg 16", "regulation 16", "died", "death notification")},
        **{t: "reg18_serious_injury" for t in ("serious injury", "injury", "reg 18 injury")},
        **{t: "reg18_abuse_allegation" for t in ("abuse", "allegation of abuse", "abuse allegation",
                                                 "safeguarding")},
        **{t: "reg18_police" for t in ("police", "police incident", "reported to police")},
        **{t: "reg18_dols" for t in ("dols", "deprivation of liberty", "dols outcome")},
        **{t: "reg18_service_disruption" for t in ("service disruption", "disruption")},
    },
    "pressure_ulcer_grade": {
        **{f"{word} {n}": f"category_{n}" for word in ("category", "grade", "stage", "cat") for n in (1, 2, 3, 4)},
        **{str(n): f"category_{n}" for n in (1, 2, 3, 4)},
        **{t: "unstageable" for t in ("unstageable", "unstagable", "unclassified")},
        **{t: "deep_tissue_injury" for t in ("dti", "deep tissue injury", "suspected deep tissue injury", "sdti")},
    },
    "incident_status": {
        **{t: "open" for t in ("open", "new", "reported", "pending", "outstanding", "not started", "live")},
        **{t: "under_review" for t in ("under review", "in progress", "investigating", "being investigated",
                                       "ongoing", "review", "in review", "awaiting review")},
        **{t: "closed" for t in ("closed", "complete", "completed", "done", "resolved", "finished",
                                 "signed off", "closed off")},
    },
    "action_type": {
        **{t: "care_plan" for t in ("care plan", "care plan review", "care plan update", "risk assessment")},
        **{t: "training" for t in ("training", "refresher training", "competency", "e-learning")},
        **{t: "supervision" for t in ("supervision", "reflective supervision", "1:1", "one to one")},
        **{t: "process" for t in ("process", "procedure", "policy", "checklist", "protocol")},
        **{t: "equipment" for t in ("equipment", "new equipment", "repair")},
        **{t: "staffing" for t in ("staffing", "rota", "staffing levels", "deployment")},
        **{t: "system_data" for t in ("system", "systems", "scheduling", "data", "it", "rostering system")},
        **{t: "other" for t in ("other",)},
    },
    "action_status": {
        **{t: "open" for t in ("open", "not started", "new", "outstanding", "to do", "pending")},
        **{t: "in_progress" for t in ("in progress", "ongoing", "started", "underway", "wip",
                                      "partially complete", "part complete")},
        **{t: "done" for t in ("done", "complete", "completed", "closed", "finished", "yes", "achieved")},
        **{t: "cancelled" for t in ("cancelled", "canceled", "not required", "withdrawn", "no longer needed")},
    },
    "effective": {
        **{t: "yes" for t in ("yes", "y", "effective", "worked", "true")},
        **{t: "no" for t in ("no", "n", "not effective", "did not work", "false")},
        **{t: "not_yet" for t in ("not yet", "pending", "tbc", "to be checked", "awaiting", "not checked")},
    },
}

# Rooms and spaces of wherever the person lives: the site's own kind of location.
ROOM_WORDS = (
    "bedroom", "own room", "room", "their room", "lounge", "dining room", "dining area", "bathroom", "toilet",
    "en suite", "ensuite", "corridor", "hallway", "hall", "stairs", "kitchen", "garden", "conservatory",
    "communal area", "communal lounge", "lift", "shower room", "wet room", "reception", "car park",
)
LOCATION_BY_SETTING = {
    "care_home": "care_home",
    "homecare": "own_home",
    "supported_living": "supported_living",
    "complex_care_at_home": "own_home",
}

# Ages written as numbers fall into the contract's bands.
AGE_BANDS: tuple[tuple[int, int, str], ...] = ((18, 25, "18-25"), (26, 45, "26-45"), (46, 65, "46-65"),
                                                (66, 85, "66-85"), (86, 130, "85+"))

_NON_WORD = re.compile(r"[^a-z0-9+]+")


def normalise(value: object) -> str:
    """Lower-case words with punctuation dropped: 'Slip/Trip/Fall ' -> 'slip trip fall'."""
    text = str(value).lower().replace("&", " and ").replace("'s ", "s ").replace("’s ", "s ")
    return " ".join(_NON_WORD.sub(" ", text).split())


def exact_table(list_name: str, setting: str = "care_home") -> dict[str, str]:
    """Normalised text -> code for one list: its codes, their Guide meanings and the synonyms above."""
    table: dict[str, str] = {}
    for code, meaning in CODE_LISTS[list_name].items():
        table[normalise(code)] = code
        table[normalise(meaning)] = code
        table.setdefault(normalise(meaning.split(":", 1)[0]), code)
    for text, code in VALUE_SYNONYMS.get(list_name, {}).items():
        table[normalise(text)] = code
    if list_name == "location":
        for word in ROOM_WORDS:
            table.setdefault(normalise(word), LOCATION_BY_SETTING.get(setting, "other"))
    return table


def fuzzy_choices(list_name: str, setting: str = "care_home") -> dict[str, str]:
    """Texts that fuzzy matching compares with: codes and synonyms, not the long Guide meanings."""
    table = {normalise(code): code for code in CODE_LISTS[list_name]}
    for text, code in VALUE_SYNONYMS.get(list_name, {}).items():
        table[normalise(text)] = code
    if list_name == "location":
        for word in ROOM_WORDS:
            table.setdefault(normalise(word), LOCATION_BY_SETTING.get(setting, "other"))
    # Single letters and digits ("y", "1") match only exactly.
    return {text: code for text, code in table.items() if len(text) >= 3}
