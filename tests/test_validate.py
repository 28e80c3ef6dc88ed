"""Validation: every rule fires on a minimal case at the exact cell, and stays quiet on a near case."""

from __future__ import annotations

import collections
import copy
import datetime as dt

import pandas as pd
import pytest

from addin.checks import CHECKS, STRUCTURAL_RULES, expected_notification, suggested_tier
from addin.reader import read_workbook
from addin.validate import findings_frame, validate_records, validate_result, validate_workbook
from tests.conftest import DATA_END
from workbook_templates.builder import build_workbook
from workbook_templates.records import SiteRecords
from workbook_templates.rules import RULES
from workbook_templates.synthetic import make_site

D = pd.Timestamp


def base_records() -> SiteRecords:
    """Three incidents (low, moderate, serious) and three actions that break no rule on DATA_END."""
    common = dict(site_code="OAK", location="care_home", psychological_harm="none", immediate_action="Made safe.",
                  staff_role="senior_carer", police_involved="no", age_band="85+", gender="female")
    incidents = pd.DataFrame([
        dict(common, incident_ref="OAK-2026-0001", occurred_at=D("2026-10-01"), occurred_time="09:30",
             reported_at=D("2026-10-01"), event_type="near_miss", category="medication", subcategory="wrong_time",
             physical_harm="none", consequence=1, likelihood=1, response_tier="low",
             learning_response="reflective_supervision", description="Lunchtime medicine given late.",
             person_ref="OAK-P001", safeguarding_considered="no", cqc_notification="none", riddor_reportable="no",
             duty_of_candour="no", status="closed", learning_theme="medication_rounds",
             feedback_to_reporter_date=D("2026-10-05"), closed_date=D("2026-10-05")),
        dict(common, incident_ref="OAK-2026-0002", occurred_at=D("2026-10-20"), occurred_time="14:00",
             reported_at=D("2026-10-20"), event_type="incident", category="falls", subcategory="witnessed_fall",
             physical_harm="moderate", consequence=3, likelihood=2, response_tier="moderate",
             learning_response="structured_review", description="Fell while walking to the lounge.",
             person_ref="OAK-P002", safeguarding_considered="no", cqc_notification="none", riddor_reportable="no",
             duty_of_candour="yes", candour_date=D("2026-10-21"), status="under_review"),
        dict(common, incident_ref="OAK-2026-0003", occurred_at=D("2026-10-25"), occurred_time="22:15",
             reported_at=D("2026-10-25"), event_type="incident", category="falls", subcategory="found_on_floor",
             physical_harm="severe", consequence=4, likelihood=2, response_tier="serious",
             learning_response="formal_investigation", description="Found on the floor; hip fracture.",
             person_ref="OAK-P003", safeguarding_considered="yes", cqc_notification="reg18_serious_injury",
             cqc_notified_date=D("2026-10-26"), commissioner_notified_date=D("2026-10-26"), riddor_reportable="yes",
             riddor_ref="RIDDOR-1", duty_of_candour="yes", candour_date=D("2026-10-27"), status="open"),
    ])
    actions = pd.DataFrame([
        dict(action_ref="OAK-A-0001", incident_refs="OAK-2026-0002", action="Falls refresher training",
             action_type="training", owner_role="registered_manager", raised_date=D("2026-10-21"),
             due_date=D("2026-11-20"), status="in_progress"),
        dict(action_ref="OAK-A-0002", incident_refs="OAK-2026-0003, OAK-2026-0002", action="Update the care plan",
             action_type="care_plan", owner_role="clinical_lead", raised_date=D("2026-10-26"),
             due_date=D("2026-11-15"), status="open"),
        dict(action_ref="OAK-A-0003", incident_refs="OAK-2026-0001", action="Add a timing check to the round",
             action_type="process", owner_role="deputy_manager", raised_date=D("2026-10-02"),
             due_date=D("2026-10-16"), status="done", completed_date=D("2026-10-10"),
             evidence="Audit log", effectiveness_check_date=D("2026-10-30"), effective="yes"),
    ])
    exposure = pd.DataFrame({"month": [D("2026-09-01"), D("2026-10-01")], "occupied_bed_days": [1100.0, 1120.0],
                             "people_supported": [37, 38]})
    site = dict(site_code="OAK", site_name="Oakview House", provider="Synthetic Care Ltd", setting="care_home",
                cqc_location_id="1-100000000", commissioners="Northshire County Council", people_supported=37)
    return SiteRecords(site=site, incidents=incidents, actions=actions, exposure=exposure)


def edit(kind: str, index: int, **values):
    """A change to one record: set fields of row ``index`` of incidents/actions/exposure, or the site."""
    def apply(records: SiteRecords) -> None:
        if kind == "site":
            records.site.update(values)
            return
        frame = getattr(records, kind)
        for name, value in values.items():
            if name not in frame or (value is not None and not isinstance(value, type(frame[name].iloc[0]))):
                frame[name] = frame[name].astype(object) if name in frame else None
            frame.loc[index, name] = value
    return apply


def drop(kind: str, index: int):
    def apply(records: SiteRecords) -> None:
        setattr(records, kind, getattr(records, kind).drop(index=index).reset_index(drop=True))
    return apply


def changed(*edits) -> SiteRecords:
    records = copy.deepcopy(base_records())
    for e in edits:
        e(records)
    return records


I = "incidents"  # noqa: E741 - short names keep the case table readable
A = "actions"

# rule, edits that fire it, (sheet, cell) of the single finding, message fragment, edits of a near case that must not
CASES = [
    ("NM001", [edit(I, 0, category=None)], ("Log", "G2"), "Fill in Category", [edit(I, 0, category="other")]),
    ("NM002", [edit(I, 1, category="fall")], ("Log", "G3"), "'fall' is not an allowed Category",
     [edit(I, 1, category="FALLS")]),
    ("NM003", [edit(I, 2, incident_ref="OAK-2026-0001")], ("Log", "A4"), "'OAK-2026-0001' is used more than once",
     [edit(I, 2, incident_ref="OAK-2026-0004")]),
    ("NM004", [edit(I, 0, site_code="ELM")], ("Log", "B2"), "'ELM' does not match", [edit(I, 0, site_code="oak")]),
    ("NM005", [edit(I, 0, occurred_at="31/02/2026")], ("Log", "C2"), "'31/02/2026' is not a date",
     [edit(I, 0, occurred_at="01/10/2026")]),
    ("NM006", [edit(I, 0, consequence=6)], ("Log", "L2"), "Consequence (1-5) must be a whole number",
     [edit(I, 0, consequence=5)]),
    ("NM007", [edit(I, 0, occurred_time="25:99")], ("Log", "D2"), "'25:99' is not a time",
     [edit(I, 0, occurred_time="9.30")]),
    ("NM010", [edit(I, 0, closed_date=D("2026-11-01"))], ("Log", "AM2"), "Closed date is in the future",
     [edit(I, 0, closed_date=D("2026-10-31"))]),
    ("NM011", [edit(I, 0, reported_at=D("2026-09-30"))], ("Log", "E2"), "Date reported is before",
     [edit(I, 0, reported_at=D("2026-10-02"))]),
    ("NM012", [edit(I, 2, cqc_notified_date=D("2026-10-24"))], ("Log", "AC4"), "CQC notified date is before",
     [edit(I, 2, cqc_notified_date=D("2026-10-25"))]),
    ("NM013", [edit(I, 0, occurred_at=D("2026-09-28"), closed_date=D("2026-09-30"),
                    feedback_to_reporter_date=D("2026-09-30"))], ("Log", "AM2"),
     "Closed date is before the date reported",
     [edit(I, 0, occurred_at=D("2026-09-28"), closed_date=D("2026-10-01"))]),
    ("NM020", [edit(I, 0, physical_harm="low")], ("Log", "J2"), "A near miss cannot have physical harm",
     [edit(I, 1, physical_harm="low")]),
    ("NM021", [edit(I, 2, response_tier="low")], ("Log", "P4"), "cannot be tier low",
     [edit(I, 2, response_tier="moderate")]),
    ("NM022", [edit(A, 0, incident_refs="OAK-2026-0003"), edit(A, 1, incident_refs="OAK-2026-0003")],
     ("Log", "P3"), "need at least one action",
     [edit(A, 0, incident_refs="OAK-2026-0003"), edit(A, 1, incident_refs=" oak-2026-0002 ;OAK-2026-0003")]),
    ("NM023", [edit(I, 2, safeguarding_considered=None)], ("Log", "Y4"), "record whether safeguarding",
     [edit(I, 2, safeguarding_considered="no")]),
    ("NM024", [edit(I, 2, commissioner_notified_date=None)], ("Log", "AD4"), "date the commissioner",
     [edit(I, 1, commissioner_notified_date=None)]),
    ("NM025", [edit(I, 0, consequence=4, likelihood=2)], ("Log", "P2"), "suggests tier moderate",
     [edit(I, 0, consequence=4, likelihood=2, tier_override_reason="Checked at huddle: no ongoing risk")]),
    ("NM026", [edit(I, 0, subcategory="witnessed_fall")], ("Log", "H2"), "'witnessed_fall' belongs to another",
     [edit(I, 0, subcategory="not_signed")]),
    ("NM030", [edit(I, 1, police_involved="yes")], ("Log", "AB3"), "notifiable to CQC (reg18_police)",
     [edit(I, 1, police_involved="yes", cqc_notification="reg18_police", cqc_notified_date=D("2026-10-20"),
           response_tier="moderate")]),
    ("NM031", [edit(I, 2, cqc_notified_date=None)], ("Log", "AC4"), "no date is recorded",
     [edit(I, 1, cqc_notified_date=None)]),
    ("NM032", [edit(I, 2, cqc_notified_date=D("2026-10-28"))], ("Log", "AC4"), "notified 3 days after",
     [edit(I, 2, cqc_notified_date=D("2026-10-26"))]),
    ("NM033", [edit(I, 1, safeguarding_referral_date=D("2026-10-21"))], ("Log", "Y3"), "should be yes",
     [edit(I, 1, safeguarding_referral_date=D("2026-10-21"), safeguarding_considered="yes")]),
    ("NM034", [edit(I, 2, riddor_ref=None)], ("Log", "AF4"), "add the HSE reference",
     [edit(I, 2, riddor_ref=None, riddor_reportable="no")]),
    ("NM035", [edit(I, 1, candour_date=None)], ("Log", "AH3"), "Duty of candour applies",
     [edit(I, 1, candour_date=None, duty_of_candour="no")]),
    ("NM040", [edit(I, 0, closed_date=None)], ("Log", "AM2"), "add the closed date",
     [edit(I, 0, closed_date=None, status="under_review")]),
    ("NM041", [edit(I, 0, learning_theme=None)], ("Log", "AK2"), "add a learning theme",
     [edit(I, 0, learning_theme=None, status="open")]),
    ("NM042", [edit(I, 1, status="closed", closed_date=D("2026-10-30"), learning_theme="falls")], ("Log", "AL3"),
     "when the reporter heard", [edit(I, 0, feedback_to_reporter_date=None)]),
    ("NM043", [edit(I, 1, closed_date=D("2026-10-30"))], ("Log", "AM3"), "status is not closed",
     [edit(I, 1, closed_date=D("2026-10-30"), status="closed", learning_theme="falls",
           feedback_to_reporter_date=D("2026-10-30"))]),
    ("NM044", [edit(I, 1, occurred_at=D("2026-09-01"), reported_at=D("2026-09-01"))], ("Log", "AJ3"),
     "Open for 60 days", [edit(I, 1, occurred_at=D("2026-10-03"), reported_at=D("2026-10-03"))]),
    ("NM050", [edit(I, 0, description="Late dose. NHS 943 476 5919.")], ("Log", "S2"),
     "What happened seems to hold an NHS",
     [edit(I, 0, description="Late dose. Ref 943 476 5918.")]),
    ("NM051", [edit(I, 0, immediate_action="Checked DOB: 03/04/1940")], ("Log", "T2"),
     "Immediate action seems to hold a date",
     [edit(I, 0, immediate_action="Checked on 03/04/2026")]),
    ("NM052", [edit(A, 0, evidence="Stored at DN55 1PT")], ("Actions", "J2"), "Evidence seems to hold a postcode",
     [edit(A, 0, evidence="Stored in room B1 2nd floor")]),
    ("NM053", [edit(I, 0, notes="Mrs Jones was upset")], ("Log", "AN2"), "seems to name a person ('Jones')",
     [edit(I, 0, notes="Mr X was upset")]),
    ("NM060", [edit(A, 0, owner_role=None)], ("Actions", "E2"), "Fill in Owner (role)", [edit(A, 0, evidence=None)]),
    ("NM061", [edit(A, 0, status="ongoing")], ("Actions", "H2"), "'ongoing' is not an allowed Status",
     [edit(A, 0, status="In_Progress")]),
    ("NM062", [edit(A, 1, action_ref="OAK-A-0001")], ("Actions", "A3"), "'OAK-A-0001' is used more than once",
     [edit(A, 1, action_ref="OAK-A-0004")]),
    ("NM063", [edit(A, 1, incident_refs="OAK-2026-0003, OAK-2026-0099")], ("Actions", "B3"),
     "'OAK-2026-0099' is not in the Log", [edit(A, 1, incident_refs="OAK-2026-0003,OAK-2026-0002")]),
    ("NM064", [edit(A, 0, due_date=D("2026-10-20"))], ("Actions", "G2"), "Due date is before",
     [edit(A, 0, due_date=D("2026-10-21"))]),
    ("NM065", [edit(A, 2, completed_date=None)], ("Actions", "I4"), "Status is done",
     [edit(A, 0, completed_date=None)]),
    ("NM066", [edit(A, 0, due_date=D("2026-10-29"))], ("Actions", "G2"), "Overdue by 2 days",
     [edit(A, 0, due_date=D("2026-10-31"))]),
    ("NM067", [edit(A, 2, completed_date=D("2026-10-01"))], ("Actions", "I4"), "Completed date is before",
     [edit(A, 2, completed_date=D("2026-10-02"))]),
    ("NM068", [edit(A, 0, raised_date="yesterday")], ("Actions", "F2"), "'yesterday' is not a date",
     [edit(A, 0, raised_date="2026-10-21")]),
    ("NM069", [edit(A, 2, raised_date=D("2026-06-25"), due_date=D("2026-07-10"), completed_date=D("2026-07-01"),
                    effectiveness_check_date=None, effective=None)], ("Actions", "L4"), "no effectiveness check",
     [edit(A, 2, raised_date=D("2026-06-25"), due_date=D("2026-07-10"), completed_date=D("2026-08-15"),
           effectiveness_check_date=None, effective=None)]),
    ("NM070", [edit(A, 0, raised_date=D("2026-11-05"))], ("Actions", "F2"), "Date raised is in the future",
     [edit(A, 0, due_date=D("2027-01-01"))]),
    ("NM080", [edit("site", 0, setting=None)], ("Site", "B5"), "Fill in Setting on the Site sheet",
     [edit("site", 0, provider=None)]),
    ("NM081", [edit("site", 0, setting="nursing_home")], ("Site", "B5"), "'nursing_home' is not an allowed setting",
     [edit("site", 0, setting="Care_Home")]),
    ("NM082", [edit("exposure", 1, occupied_bed_days=None)], ("Site", "E3"), "No exposure figure for October 2026",
     [edit("exposure", 1, occupied_bed_days=0.0)]),
    ("NM083", [edit("site", 0, people_supported="about forty")], ("Site", "B8"), "'about forty' cannot be read",
     [edit("site", 0, people_supported="40")]),
]


def test_base_records_are_clean():
    assert validate_records(base_records(), today=DATA_END) == []


@pytest.mark.parametrize("rule, edits, where, fragment, near", CASES, ids=[c[0] for c in CASES])
def test_rule_fires_at_the_cell_and_not_on_the_near_case(rule, edits, where, fragment, near):
    found = validate_records(changed(*edits), today=DATA_END, file="oak.xlsx", rules=[rule])
    assert [(f.sheet, f.cell) for f in found] == [where]
    assert fragment in found[0].message
    assert found[0].file == "oak.xlsx"
    assert found[0].severity == next(r.severity for r in RULES if r.id == rule)
    quiet = validate_records(changed(*near), today=DATA_END, rules=[rule])
    assert quiet == []


VALIDATOR_RULES = [r for r in RULES if r.id.startswith("NM")]  # CVxxx rules are the converter's


def test_every_rule_has_a_check_or_comes_from_the_reader():
    structural = {r.id for r in VALIDATOR_RULES if r.record == "workbook"}
    assert structural == set(STRUCTURAL_RULES)
    for rule in VALIDATOR_RULES:
        assert (rule.id in CHECKS) != (rule.id in structural), rule.id
    assert set(CHECKS) <= {r.id for r in VALIDATOR_RULES}


def test_every_checked_rule_has_a_case():
    assert {c[0] for c in CASES} == set(CHECKS)


def test_refs_name_the_row_and_actions_use_action_ref():
    records = changed(edit(I, 1, category="fall"), edit(A, 0, owner_role=None))
    findings = validate_records(records, today=DATA_END)
    by_rule = {f.rule: f for f in findings}
    assert by_rule["NM002"].ref == "OAK-2026-0002"
    assert by_rule["NM060"].to_dict()["action_ref"] == "OAK-A-0001"
    assert by_rule["NM002"].to_dict()["incident_ref"] == "OAK-2026-0002"


def test_nm063_lists_every_unknown_ref_of_a_row_once():
    records = changed(edit(A, 1, incident_refs="OAK-2026-0098; OAK-2026-0003,\nOAK-2026-0099"))
    found = [f for f in validate_records(records, today=DATA_END) if f.rule == "NM063"]
    assert len(found) == 1 and "'OAK-2026-0098, OAK-2026-0099'" in found[0].message


def test_a_cancelled_action_does_not_answer_an_incident():
    records = changed(edit(A, 0, incident_refs="OAK-2026-0003"), edit(A, 1, incident_refs="OAK-2026-0003"),
                      edit(A, 2, incident_refs="OAK-2026-0001, OAK-2026-0002", status="cancelled"))
    assert [f.cell for f in validate_records(records, today=DATA_END) if f.rule == "NM022"] == ["P3"]


def test_nm082_without_a_row_for_the_month_has_no_cell():
    found = [f for f in validate_records(changed(drop("exposure", 1)), today=DATA_END) if f.rule == "NM082"]
    assert [(f.sheet, f.cell) for f in found] == [("Site", "")]
    assert "October 2026" in found[0].message


def test_nm083_points_at_a_bad_exposure_cell():
    found = [f for f in validate_records(changed(edit("exposure", 0, month="Sept")), today=DATA_END)
             if f.rule == "NM083"]
    assert [(f.sheet, f.cell) for f in found] == [("Site", "D2")]


def test_an_unreadable_date_is_not_also_reported_missing():
    found = validate_records(changed(edit(I, 0, reported_at="sometime")), today=DATA_END)
    assert [(f.rule, f.cell) for f in found] == [("NM005", "E2")]


def test_findings_are_sorted_by_sheet_row_and_column():
    records = changed(edit(A, 0, owner_role=None), edit(I, 2, riddor_ref=None), edit(I, 2, category=None),
                      edit(I, 0, notes="Mrs Jones"), edit("site", 0, setting=None))
    cells = [(f.sheet, f.cell) for f in validate_records(records, today=DATA_END)]
    assert cells == [("Site", "B5"), ("Log", "AN2"), ("Log", "G4"), ("Log", "AF4"), ("Actions", "E2")]


def test_a_rule_run_alone_finds_what_the_full_run_finds():
    records = changed(edit(A, 0, incident_refs="OAK-2026-0003"), edit(A, 1, incident_refs="OAK-2026-0099"),
                      edit(I, 0, consequence=4, likelihood=2))
    full = validate_records(records, today=DATA_END)
    for rule in ("NM022", "NM025", "NM063"):
        assert validate_records(records, today=DATA_END, rules=[rule]) == [f for f in full if f.rule == rule] != []


def test_findings_frame():
    findings = validate_records(changed(edit(I, 0, category=None)), today=DATA_END, file="oak.xlsx")
    frame = findings_frame(findings)
    assert list(frame.columns) == ["file", "sheet", "cell", "ref", "rule", "severity", "message"]
    assert frame.iloc[0].to_dict()["cell"] == "G2"
    assert findings_frame([]).empty


# --- reusable judgements -------------------------------------------------------------------------------

def test_suggested_tier():
    frame = pd.DataFrame({
        "physical_harm": ["none", "moderate", "severe", "fatal", "none", "none", "none", "none", "low"],
        "consequence": [1, 1, 1, 1, 5, 4, 1, 1, 2],
        "likelihood": [1, 1, 1, 1, 3, 2, 1, 1, 4],
        "cqc_notification": ["none", "none", "none", "none", "none", "none", "reg18_police", None, None],
        "category": ["falls"] * 7 + ["safeguarding", "falls"],
    })
    assert suggested_tier(frame).tolist() == ["low", "moderate", "serious", "serious", "serious", "moderate",
                                              "moderate", "moderate", "moderate"]


def test_expected_notification():
    frame = pd.DataFrame({
        "category": ["death", "falls", "falls", "behaviour", "safeguarding", "safeguarding", "falls"],
        "physical_harm": ["none", "fatal", "severe", "low", "none", "none", "moderate"],
        "police_involved": ["no", "no", "no", "yes", "no", "no", None],
        "event_type": ["incident", "incident", "incident", "incident", "incident", "near_miss", "incident"],
    })
    got = expected_notification(frame)
    assert got.iloc[:5].tolist() == ["reg16_death", "reg16_death", "reg18_serious_injury", "reg18_police",
                                     "reg18_abuse_allegation"]
    assert got.iloc[5:].isna().all()


# --- whole workbooks --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_workbook(tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "OAK.xlsx"
    build_workbook(path, make_site(end=DATA_END, seed=11))
    return path


def test_a_clean_synthetic_workbook_has_no_errors(clean_workbook):
    findings = validate_workbook(clean_workbook, today=DATA_END)
    assert [f for f in findings if f.severity == "error"] == []
    assert {f.file for f in findings} <= {"OAK.xlsx"}


def test_clean_synthetic_records_have_no_errors_whatever_the_seed_or_setting():
    for seed, setting in ((0, "care_home"), (1, "homecare"), (2, "supported_living"), (26, "care_home")):
        findings = validate_records(make_site(end=DATA_END, seed=seed, setting=setting), today=DATA_END)
        assert [f for f in findings if f.severity == "error"] == [], (seed, setting)


def test_flawed_synthetic_workbook_shows_each_kind_of_flaw(tmp_path):
    path = tmp_path / "flawed.xlsx"
    build_workbook(path, make_site(end=DATA_END, seed=4, flaw_rate=0.1))
    rules = collections.Counter(f.rule for f in validate_workbook(path, today=DATA_END) if f.severity == "error")
    assert set(rules) == {"NM011", "NM020", "NM041", "NM050", "NM053", "NM065"}


def test_workbook_and_records_give_the_same_findings(tmp_path):
    records = changed(edit(I, 1, category="fall"), edit(I, 0, notes="Mrs Jones"), edit(A, 0, owner_role=None),
                      edit(A, 1, incident_refs="OAK-2026-0003, OAK-2026-0099"), edit("site", 0, setting="nursing"),
                      edit("exposure", 1, occupied_bed_days=None))
    path = tmp_path / "oak.xlsx"
    build_workbook(path, records)
    from_file = [(f.sheet, f.cell, f.rule, f.ref, f.message) for f in validate_workbook(path, today=DATA_END)]
    direct = [(f.sheet, f.cell, f.rule, f.ref, f.message) for f in validate_records(records, today=DATA_END)]
    assert from_file == direct
    assert {r for _, _, r, _, _ in direct} == {"NM002", "NM053", "NM060", "NM063", "NM081", "NM082"}


def test_cells_follow_the_columns_the_reader_found(tmp_path):
    """Columns moved in the sheet: findings point at where the data really is."""
    from tests.test_reader import write_xlsx

    records = base_records()
    inc = records.incidents.copy()
    inc.loc[1, "category"] = "fall"
    # Category first, then the rest; two title rows above the header.
    names = ["category"] + [c for c in inc.columns if c != "category"]
    log = [["Near-miss log"], []] + [names] + inc[names].astype(object).where(inc[names].notna(), None).values.tolist()
    path = tmp_path / "moved.xlsx"
    write_xlsx(path, {"Log": log, "Actions": _rows(records.actions), "Site": _site_rows(records)})
    result = read_workbook(path)
    found = [f for f in validate_result(result, today=DATA_END) if f.rule == "NM002"]
    assert [(f.sheet, f.cell) for f in found] == [("Log", "A5")]


def _rows(frame: pd.DataFrame) -> list[list]:
    return [list(frame.columns)] + frame.astype(object).where(frame.notna(), None).values.tolist()


def _site_rows(records: SiteRecords) -> list[list]:
    from workbook_templates.contract import EXPOSURE_FIELDS, SITE_FIELDS

    rows = [["Field", "Value", None] + [f.label for f in EXPOSURE_FIELDS]]
    exposure = records.exposure.reindex(columns=[f.name for f in EXPOSURE_FIELDS])
    for i in range(max(len(SITE_FIELDS), len(exposure))):
        row = [SITE_FIELDS[i].label, records.site.get(SITE_FIELDS[i].name)] if i < len(SITE_FIELDS) else [None, None]
        row.append(None)
        if i < len(exposure):
            row += [None if pd.isna(v) else v for v in exposure.iloc[i].tolist()]
        rows.append(row)
    return rows


def test_today_moves_what_is_overdue_or_in_the_future():
    # Actions due in 2026-11 are overdue on any day after 2026-11-20.
    findings = validate_records(base_records(), today=dt.date(2027, 1, 1))
    assert {f.rule for f in findings} >= {"NM066"}
