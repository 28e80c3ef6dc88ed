"""The converter's parts: dates, values, names and pseudonyms, header finding, row kinds, odd layouts."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat

import pandas as pd
import pytest

from addin.convert import ValueMatcher, convert_legacy, parse_date, parse_time, row_kind, sheet_month
from addin.legacy import LegacyReadError, read_legacy
from addin.pseudonym import (
    NameScrubber, Pseudonymiser, PseudonymKeyError, create_key_file, load_key, looks_like_name,
)
from addin.value_maps import ROOM_WORDS, VALUE_SYNONYMS, normalise
from tests.legacy_factory import write_sheets
from workbook_templates.codelists import CODE_LISTS

KEY = b"unit-test-key-0123456789"
TODAY = dt.date(2026, 11, 2)
SERIAL_3_APRIL_2026 = (dt.date(2026, 4, 3) - dt.date(1899, 12, 30)).days


# --- dates and times -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, date, time", [
    ("03/04/2026", dt.date(2026, 4, 3), None),
    ("3/4/26", dt.date(2026, 4, 3), None),
    ("03-04-26", dt.date(2026, 4, 3), None),
    ("03.04.2026", dt.date(2026, 4, 3), None),
    ("2026-04-03", dt.date(2026, 4, 3), None),
    ("3rd April 2026", dt.date(2026, 4, 3), None),
    ("Friday 3rd of April 2026", dt.date(2026, 4, 3), None),
    ("3 Apr 26", dt.date(2026, 4, 3), None),
    ("April 3, 2026", dt.date(2026, 4, 3), None),
    ("03/04/2026 14:30", dt.date(2026, 4, 3), "14:30"),
    ("3/4/2026 2.30pm", dt.date(2026, 4, 3), "14:30"),
    (SERIAL_3_APRIL_2026, dt.date(2026, 4, 3), None),
    (dt.datetime(2026, 4, 3, 9, 5), dt.date(2026, 4, 3), "09:05"),
    (dt.date(2026, 4, 3), dt.date(2026, 4, 3), None),
    ("31/02/2026", None, None),
    ("13/13/2026", None, None),
    ("sometime in spring", None, None),
    (7, None, None),
    (True, None, None),
])
def test_parse_date_day_first(value, date, time):
    stamp, found_time = parse_date(value)
    assert (stamp.date() if stamp is not None else None) == date
    assert found_time == time


@pytest.mark.parametrize("value, expected", [
    ("14:30", "14:30"), ("2.30pm", "14:30"), ("12:15am", "00:15"), ("1430", "14:30"), ("9:05:00", "09:05"),
    (dt.time(7, 45), "07:45"), (0.5, "12:00"), ("morning", None), ("7", None), ("25:00", None),
])
def test_parse_time(value, expected):
    assert parse_time(value) == expected


def test_sheet_month():
    assert sheet_month("Jan 2026") == (2026, 1)
    assert sheet_month("September 25") == (2025, 9)
    assert sheet_month("Apr-2026") == (2026, 4)
    assert sheet_month("Actions") is None


# --- values ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("list_name, value, code", [
    ("category", "Slip/trip/fall", "falls"),
    ("category", "FOUND ON FLOOR", "falls"),
    ("category", "Fall - unwitnessed", "falls"),
    ("category", "Med error", "medication"),
    ("category", "Medicaton error", "medication"),  # a typo: fuzzy
    ("category", "Drug error", "medication"),
    ("category", "Falls, slips and trips", "falls"),  # the Guide's own wording
    ("category", "Fall / medication", None),  # two categories: a person decides
    ("category", "Wobbly moment", None),
    ("event_type", "Y", "near_miss"),
    ("event_type", "yes", "near_miss"),
    ("event_type", True, "near_miss"),
    ("event_type", "Near miss", "near_miss"),
    ("event_type", "N", "incident"),
    ("event_type", False, "incident"),
    ("physical_harm", "No harm", "none"),
    ("physical_harm", "minor", "low"),
    ("physical_harm", "Major", "severe"),
    ("physical_harm", "Death", "fatal"),
    ("incident_status", "Completed", "closed"),
    ("incident_status", "closed", "closed"),
    ("action_status", "Completed", "done"),
    ("yes_no", "Y", "yes"),
    ("age_band", 87, "85+"),
    ("age_band", "70", "66-85"),
    ("gender", "F", "female"),
    ("pressure_ulcer_grade", "Grade 2", "category_2"),
])
def test_values_map_to_codes(list_name, value, code):
    assert ValueMatcher().match(list_name, value)[0] == code


def test_rooms_become_the_settings_location():
    assert ValueMatcher("care_home").match("location", "Bedroom")[0] == "care_home"
    assert ValueMatcher("homecare").match("location", "Bedroom")[0] == "own_home"
    assert ValueMatcher("homecare").match("location", "Day centre")[0] == "day_service"


def test_value_maps_name_only_real_codes():
    for list_name, table in VALUE_SYNONYMS.items():
        assert list_name in CODE_LISTS
        assert set(table.values()) <= set(CODE_LISTS[list_name]), list_name
    assert all(normalise(w) for w in ROOM_WORDS)


# --- rows -----------------------------------------------------------------------------------------------------------

HEADERS = ["Date", "Category", "What happened?", "Count"]


@pytest.mark.parametrize("values, kind", [
    ([None, None, "  ", None], "blank"),
    (["Total", None, None, 12], "total"),
    (["TOTAL:", None, None, None], "total"),
    (["Grand total", None, None, 40.0], "total"),
    (["Total incidents", None, None, 12], "total"),
    (["Date", "Category", "What happened?", None], "header"),
    ([dt.datetime(2026, 3, 1), "Fall", "Total hip replacement: fell on the stairs", None], "data"),
    ([None, None, "Found on floor", None], "data"),
])
def test_row_kind(values, kind):
    assert row_kind(values, HEADERS) == kind


# --- names and pseudonyms ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["Amy Example", "Mrs Example", "Example, Amy", "A. Example", "J.S.",
                                   "Mary-Jane O'Test", "Ann McTest"])
def test_looks_like_name(value):
    assert looks_like_name(value)


@pytest.mark.parametrize("value", ["No Harm", "Team Leader", "Slip Trip Fall", "Senior Carer", "Falls",
                                   "Room 4", "fell in the lounge", "", None, 12])
def test_does_not_look_like_name(value):
    assert not looks_like_name(value)


def test_pseudonym_is_keyed_hmac_not_a_plain_hash():
    p = Pseudonymiser(KEY, "OAK")
    ref = p.ref("Amy Example")
    assert ref.startswith("OAK-P-") and len(ref) == len("OAK-P-") + 10
    assert ref == p.ref("  amy   EXAMPLE ") == p.ref("Amy Example (Room 4)")
    digest = ref.split("-")[-1].lower()
    for text in ("Amy Example", "amy example", "OAK amy example"):
        assert digest not in hashlib.sha256(text.encode()).hexdigest()
    assert Pseudonymiser(KEY + b"x", "OAK").ref("Amy Example") != ref
    assert Pseudonymiser(KEY, "ELM").ref("Amy Example").split("-")[-1] != digest
    assert p.ref("") is None
    assert "unit-test-key" not in repr(p)
    with pytest.raises(PseudonymKeyError):
        Pseudonymiser(b"short", "OAK")


def test_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("NEARMISS_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("NEARMISS_INSTANCE", str(tmp_path / "instance"))
    with pytest.raises(PseudonymKeyError, match="No pseudonym key"):
        load_key()
    made = create_key_file()
    assert made == tmp_path / "instance" / "pseudonym.key"
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o600
    assert load_key() == made.read_bytes().strip()
    with pytest.raises(FileExistsError):
        create_key_file()  # never replaces a key: refs would change
    monkeypatch.setenv("NEARMISS_PSEUDONYM_KEY", "from-the-environment-123")
    assert load_key() == b"from-the-environment-123"
    explicit = tmp_path / "k"
    explicit.write_text("explicit-key-file-0123\n")
    assert load_key(explicit) == b"explicit-key-file-0123"
    explicit.write_text("short")
    with pytest.raises(PseudonymKeyError, match="too short"):
        load_key(explicit)


def test_name_scrubber():
    s = NameScrubber()
    s.add("Amy Example", "OAK-P-1")
    s.add("Jo Bloggs", None)
    text = "Amy Example fell; AMY EXAMPLE was seen by Jo Bloggs. Amy is fine, for example. Jo said so."
    assert s.scrub(text) == "OAK-P-1 fell; OAK-P-1 was seen by [name]. [name] is fine, for example. Jo said so."
    assert s.contains_name("Seen by Example") and not s.contains_name("for example")
    s.add("Mrs Test", None)
    assert s.scrub("Mrs Test and Mrs Other") == "[name] and Mrs Other"


# --- layouts ---------------------------------------------------------------------------------------------------------

def test_header_below_instructions_and_a_two_row_header(tmp_path):
    path = write_sheets(tmp_path / "two_row.xlsx", {"Log": [
        ["Incident log - fill one row per event"],
        ["Please do not write names in the description"],
        [],
        ["Date", "Category", "What happened?", "Harm", None, "Status"],
        [None, None, None, "Physical", "Psychological", None],
        ["03/04/2026", "Fall", "Found on floor in lounge", "Minor", "None", "Open"],
        ["04/04/2026", "Med error", "Dose given late", "No harm", "Low", "Closed"],
    ]}, merged={"Log": ["A1:F1", "D4:E4"]})
    book = read_legacy(path)
    [sheet] = book.sheets
    assert (sheet.kind, sheet.header_row, sheet.data_start) == ("incidents", 4, 6)
    assert [c.key for c in sheet.columns] == ["Date", "Category", "What happened?", "Harm Physical",
                                               "Harm Psychological", "Status"]
    res = convert_legacy(path, site_code="OAK", site_name="Oak", today=TODAY, validate=False)
    inc = res.records.incidents
    assert res.column_mapping["Log"]["Harm Physical"] == "physical_harm"
    assert res.column_mapping["Log"]["Harm Psychological"] == "psychological_harm"
    assert inc["physical_harm"].tolist() == ["low", "none"]
    assert inc["psychological_harm"].tolist() == ["none", "low"]
    assert inc["reported_at"].tolist() == inc["occurred_at"].tolist()  # derived, and noted
    assert inc["notes"].str.contains("Date reported was blank").all()
    assert any(f.rule == "CV004" for f in res.findings)


def test_columns_repointed_by_their_values_and_initials_pseudonymised(tmp_path, monkeypatch):
    monkeypatch.setenv("NEARMISS_PSEUDONYM_KEY", KEY.decode())
    path = write_sheets(tmp_path / "type.xlsx", {"Mar 2026": [
        ["Date", "Type", "Details", "Service user", "Injury?"],
        [dt.datetime(2026, 3, 2), "Fall", "Found on floor", "J.S.", "No injury"],
        ["04/03/2026", "Med error", "Missed dose at lunch", "A.E.", "No injury"],
        ["03/04/2026", "Fall", "Slipped in the bathroom", "J.S.", "Bruise"],
    ]})
    res = convert_legacy(path, site_code="OAK", site_name="Oak", today=TODAY, validate=False)
    mapping = res.column_mapping["Mar 2026"]
    assert mapping["Type"] == "category"  # "Type" reads as near miss/incident, but its values are categories
    assert mapping["Service user"] == "person_ref"
    inc = res.records.incidents
    assert inc["category"].tolist() == ["falls", "medication", "falls"]
    assert inc["person_ref"].iloc[0] == inc["person_ref"].iloc[2] != inc["person_ref"].iloc[1]
    assert not inc.astype(str).apply(lambda c: c.str.contains(r"J\.S\.|A\.E\.")).any().any()
    assert any(f.rule == "CV024" for f in res.findings)
    # 03/04/2026 in the March sheet is 3 April day-first: the converter keeps it and asks a person.
    assert inc["occurred_at"].iloc[2] == pd.Timestamp(2026, 4, 3)
    assert [f.cell for f in res.findings if f.rule == "CV012"] == ["A4"]


def test_rows_are_never_dropped_silently(tmp_path):
    path = write_sheets(tmp_path / "odd.xlsx", {
        "Log": [
            ["Date of incident", "Type of incident", "What happened?", "Near miss? (Y/N)", "Harm"],
            ["01/05/2026", "Fall", "Fell in the garden", "N", "Minor"],
            [None, None, None, None, None],
            [None, None, None, None, "see the manager"],  # a stray note: kept as a row, flagged
            ["02/05/2026", "Choking", "Coughed at lunch", "Y", "No harm"],
            [None, None, None, None, None],
            [None, 2, None, None, None],  # numbers only under the table: a count
        ],
        "Old": [["Date of incident", "Type of incident", "What happened?"], ["01/01/2026", "Fall", "Tripped"]],
    }, hidden_sheets=("Old",))
    res = convert_legacy(path, site_code="OAK", site_name="Oak", today=TODAY, validate=False)
    inc = res.records.incidents
    assert len(inc) == 4  # three rows of "Log" and the hidden sheet's one
    assert res.rows_skipped == {"blank": 2, "total row": 1}
    assert res.rows_in == 7 and res.rows_out == 4
    stray = inc.iloc[1]
    assert "Physical harm 'see the manager' could not be matched" in stray["notes"]
    assert {f.rule for f in res.findings} >= {"CV001", "CV013", "CV016"}
    assert inc.iloc[0]["event_type"] == "incident" and inc.iloc[2]["event_type"] == "near_miss"
    assert inc["response_tier"].tolist()[:3] == ["low", None, "low"]


def test_a_resident_column_of_first_names_is_pseudonymised_and_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("NEARMISS_PSEUDONYM_KEY", KEY.decode())
    path = write_sheets(tmp_path / "first.xlsx", {"Log": [
        ["Date", "Resident", "Category", "Description", "Harm", "Comments"],
        ["01/05/2026", "Amy", "Fall", "Amy slipped; amy was checked", "Minor", "Amy's daughter told"],
        ["02/05/2026", "Bob", "Fall", "Found on floor", "No harm", None],
        ["02/05/2026", "R012", "Fall", "R012 tripped", "No harm", None],
    ]})
    res = convert_legacy(path, site_code="OAK", site_name="Oak", today=TODAY, validate=False)
    inc = res.records.incidents
    assert res.column_mapping["Log"]["Resident"] == "person_ref"
    assert inc["person_ref"].str.startswith("OAK-P-").all() and inc["person_ref"].nunique() == 3
    text = " ".join(inc["description"].tolist() + inc["notes"].dropna().tolist())
    assert "Amy" not in text and "amy" not in text and "R012" not in text
    assert inc["description"].iloc[0] == f"{inc['person_ref'].iloc[0]} slipped; {inc['person_ref'].iloc[0]} was checked"


def test_no_key_is_needed_without_names(tmp_path, monkeypatch):
    monkeypatch.delenv("NEARMISS_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("NEARMISS_INSTANCE", str(tmp_path / "nowhere"))
    path = write_sheets(tmp_path / "plain.xlsx", {"Log": [
        ["Date", "Category", "Description", "Harm"], ["01/05/2026", "Fall", "Fell", "Minor"]]})
    res = convert_legacy(path, site_code="OAK", site_name="Oak", today=TODAY, validate=False)
    assert len(res.records.incidents) == 1
    assert not (tmp_path / "nowhere").exists()


def test_actions_naming_unknown_incidents_are_flagged(tmp_path):
    path = write_sheets(tmp_path / "act.xlsx", {
        "Log": [["Incident no", "Date", "Category", "Description", "Harm"],
                ["OAK-2026-0007", "01/05/2026", "Fall", "Fell", "Minor"],
                [12, "02/05/2026", "Fall", "Fell again", "Minor"]],
        "Action plan": [["Action ref", "Incident ref", "Action", "Owner", "Due date"],
                        ["A1", "OAK-2026-0007, 12", "Review falls plan", "Manager", "01/06/2026"],
                        ["A2", "99", "Check sensor mat", "Deputy", "01/06/2026"]],
    })
    res = convert_legacy(path, site_code="OAK", site_name="Oak", today=TODAY, validate=False)
    inc, act = res.records.incidents, res.records.actions
    assert inc["incident_ref"].tolist() == ["OAK-2026-0007", "OAK-2026-0008"]  # kept, then the next free number
    assert act["incident_refs"].tolist() == ["OAK-2026-0007, OAK-2026-0008", "99"]
    assert act["status"].tolist() == ["open", "open"]
    [flag] = [f for f in res.findings if f.rule == "CV018"]
    assert (flag.sheet, flag.cell, flag.ref) == ("Action plan", "B3", act["action_ref"].iloc[1])


@pytest.mark.parametrize("content, message", [
    (b"Date,Category\n01/05/2026,Fall\n", "CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "xls"),
    (b"PK\x03\x04 truncated", "damaged"),
    (b"", "empty"),
])
def test_unreadable_files_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "log.xlsx"
    path.write_bytes(content)
    with pytest.raises(LegacyReadError, match=message):
        convert_legacy(path, site_code="OAK", site_name="Oak", validate=False)
