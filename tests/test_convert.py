"""convert_legacy / write_conversion on a messy synthetic legacy log (tests/legacy_factory.py)."""

from __future__ import annotations

import datetime as dt
import json
import re

import openpyxl
import pandas as pd
import pytest

from addin import convert as convert_module
from addin.convert import convert_legacy, load_mapping, write_conversion
from addin.findings import Finding
from addin.pseudonym import MissingKey
from tests.legacy_factory import (
    ACTION_STATUS_LABELS, BAD_DATE, UNMAPPABLE_CATEGORY, make_legacy_log,
)
from workbook_templates.contract import ACTIONS, INCIDENTS

KEY = b"test-key-0123456789abcdef"
OTHER_KEY = b"another-key-0123456789abcdef"
TODAY = dt.date(2026, 11, 2)
STATUS = {"open": "open", "under_review": "under_review", "closed": "closed"}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    return make_legacy_log(tmp_path_factory.mktemp("legacy") / "oak_log.xlsx", reports_per_month=9)


@pytest.fixture(scope="module")
def result(legacy):
    return convert_legacy(legacy.path, site_code="OAK", site_name="Oakview House", key=KEY, today=TODAY)


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    return write_conversion(result, tmp_path_factory.mktemp("out") / "oak.xlsx")


def convert(path, site_code="OAK", site_name="Oakview House", **options):
    """convert_legacy with this module's key and date, and without the validator unless asked."""
    options = {"key": KEY, "today": TODAY, "validate": False, **options}
    return convert_legacy(path, site_code=site_code, site_name=site_name, **options)


def _name_pattern(names: list[str]) -> re.Pattern:
    """Whole names in any case, and each part of a name as a capitalised word."""
    full = [re.escape(n) for n in names]
    parts = sorted({re.escape(p) for n in names for p in n.split()}, key=len, reverse=True)
    return re.compile(r"(?i:" + "|".join(full) + r")|\b(?:" + "|".join(parts) + r")\b")


# --- rows --------------------------------------------------------------------------------------------------

def test_every_non_blank_non_total_row_arrives(legacy, result):
    inc = result.records.incidents
    assert len(inc) == len(legacy.rows)
    assert len(result.records.actions) == len(legacy.actions)
    assert result.rows_skipped == {"blank": legacy.blank_rows, "total row": legacy.total_rows}
    assert result.rows_in == result.rows_out + sum(result.rows_skipped.values())
    assert result.rows_out == len(inc) + len(result.records.actions)
    # In the old log's order, each with its old reference kept in notes.
    for expected, notes in zip(legacy.rows, inc["notes"]):
        assert f"Original ref: {expected.legacy_ref}" in notes
    for report in result.sheets:
        assert report.rows_in == report.rows_out + sum(report.skipped.values())


def test_sheets_found_and_classified(legacy, result):
    kinds = {s.name: s.kind for s in result.sheets}
    assert kinds == {**{name: "incidents" for name in legacy.sheets}, "Actions": "actions", "Summary": "ignored"}
    assert {s.name: s.header_row for s in result.sheets if s.kind == "incidents"} == {n: 4 for n in legacy.sheets}
    assert next(s for s in result.sheets if s.name == "Actions").header_row == 3
    assert any(f.rule == "CV014" and f.sheet == "Summary" for f in result.findings)


def test_column_mapping(legacy, result):
    mapping = result.column_mapping[legacy.sheets[0]]
    assert mapping == {
        "Ref No.": "incident_ref", "Date of Incident": "occurred_at", "Time": "occurred_time",
        "Resident name": "person_ref", "Type of incident": "category", "What happened?": "description",
        "Near miss? (Y/N)": "event_type", "Harm": "physical_harm", "Action taken": "immediate_action",
        "Reported by": "ignored", "Date reported": "reported_at", "Status": "status", "Room": "notes",
        "Manager comments": "notes",
    }
    assert result.column_mapping["Actions"] == {
        "Action No": "action_ref", "Incident No": "incident_refs", "Action required": "action",
        "Who": "owner_role", "Date raised": "raised_date", "Target date": "due_date", "Progress": "status",
        "Date completed": "completed_date",
    }
    hidden = [p.column.key for s in result.sheets for p in s.columns if p.column.hidden]
    assert set(hidden) == {"Room"}


def test_values_map_to_codes(legacy, result):
    inc = result.records.incidents
    for expected, (_, row) in zip(legacy.rows, inc.iterrows()):
        rec = expected.record
        assert row["event_type"] == rec["event_type"]
        assert row["physical_harm"] == rec["physical_harm"]
        assert row["status"] == STATUS[rec["status"]]
        assert row["site_code"] == "OAK"
        assert row["occurred_time"] == rec["occurred_time"]
        if expected.unmappable_category:
            assert row["category"] is None
        else:
            assert row["category"] == rec["category"]
        assert row["response_tier"] in ("low", "moderate", "serious")
    assert result.value_fixes[("category", "Slip/trip/fall", "falls")] > 0
    event_fixes = {(source, code) for (f, source, code) in result.value_fixes if f == "event_type"}
    assert {("Y", "near_miss"), ("N", "incident")} <= event_fixes
    assert event_fixes & {("TRUE", "near_miss"), ("FALSE", "incident")}  # real booleans in the cells


def test_dates_are_read_day_first_in_every_style(legacy, result):
    inc = result.records.incidents
    styles = set()
    for expected, (_, row) in zip(legacy.rows, inc.iterrows()):
        styles.add(expected.date_style)
        assert row["occurred_at"] == pd.Timestamp(expected.record["occurred_at"]).normalize(), expected.date_style
        if expected.bad_reported_date:
            assert pd.isna(row["reported_at"])  # unreadable: not guessed from the date occurred
        else:
            assert row["reported_at"] == pd.Timestamp(expected.record["reported_at"]).normalize()
    assert styles == {"date", "dmy", "ordinal", "dmy2", "iso", "serial"}
    assert str(inc["occurred_at"].dtype).startswith("datetime64")


def test_unmappable_values_land_in_notes_with_a_finding(legacy, result):
    inc = result.records.incidents
    [i] = [k for k, e in enumerate(legacy.rows) if e.unmappable_category]
    expected = legacy.rows[i]
    row = inc.iloc[i]
    assert f"Category '{UNMAPPABLE_CATEGORY}' could not be matched" in row["notes"]
    [finding] = [f for f in result.findings if f.rule == "CV001"]
    assert isinstance(finding, Finding)
    assert (finding.sheet, finding.cell, finding.ref) == (expected.sheet, f"E{expected.row}", row["incident_ref"])
    assert UNMAPPABLE_CATEGORY in finding.message

    [j] = [k for k, e in enumerate(legacy.rows) if e.bad_reported_date]
    assert f"'{BAD_DATE}'" in inc.iloc[j]["notes"]
    assert any(f.rule == "CV002" and f.cell == f"K{legacy.rows[j].row}" for f in result.findings)


def test_refs_generated_and_actions_follow_them(legacy, result):
    inc = result.records.incidents
    assert inc["incident_ref"].is_unique
    assert inc["incident_ref"].str.fullmatch(r"OAK-\d{4}-\d{4}").all()
    # The reference typed twice: both rows got new refs and a finding each.
    assert sum(f.rule == "CV008" for f in result.findings) == 2
    new_ref = {}
    for expected, ref in zip(legacy.rows, inc["incident_ref"]):
        if expected.legacy_ref != legacy.duplicate_ref:
            new_ref[expected.legacy_ref] = ref
    act = result.records.actions
    legacy_numbers = {e.record["incident_ref"]: e.legacy_ref for e in legacy.rows}
    for (_, a), (_, out) in zip(legacy.actions.iterrows(), act.iterrows()):
        number = legacy_numbers[a["incident_refs"]]
        if number == legacy.duplicate_ref:
            assert out["incident_refs"] == str(number)
        else:
            assert out["incident_refs"] == new_ref[number]
        assert out["status"] == {v: k for k, v in ACTION_STATUS_LABELS.items()}[ACTION_STATUS_LABELS[a["status"]]]
        assert out["due_date"] == a["due_date"].normalize()
    assert act["action_ref"].str.fullmatch(r"OAK-A-\d{4}").all()


def test_needs_review_names_cells_and_groups_month_sheets(legacy, result):
    lines = result.needs_review
    months = ", ".join(legacy.sheets)
    assert f"{months} column M: Column 'Room' was hidden in the old log; it was converted like the rest." in lines
    assert any(line.startswith(f"{months} column D: Column 'Resident name' identifies the person") for line in lines)
    [i] = [k for k, e in enumerate(legacy.rows) if e.unmappable_category]
    ref = result.records.incidents["incident_ref"].iloc[i]
    assert any(line.startswith(f"{legacy.rows[i].sheet}!E{legacy.rows[i].row} ({ref}): Category") for line in lines)


def test_findings_are_findings_and_validation_runs(result):
    assert all(isinstance(f, Finding) and f.severity in ("error", "warning") for f in result.findings)
    assert all(f.file == "oak_log.xlsx" for f in result.findings)
    assert result.validation, "validate_records should report on the converted records"
    assert {f.sheet for f in result.validation} <= {"Log", "Actions", "Site"}
    # The unmapped category is blank in the new workbook: the validator asks for it.
    assert any(f.rule == "NM001" and f.sheet == "Log" for f in result.validation)


# --- names and pseudonyms ------------------------------------------------------------------------------

def test_names_never_appear_in_the_output_workbook(legacy, written):
    pattern = _name_pattern(legacy.names)
    wb = openpyxl.load_workbook(written)
    seen = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                seen += 1
                if isinstance(cell.value, str):
                    assert not pattern.search(cell.value), f"{ws.title}!{cell.coordinate}"
    assert seen > 1000
    props = wb.properties
    for text in (props.title, props.subject, props.description, props.keywords):
        assert not (text and pattern.search(text))


def test_names_never_appear_in_the_result(legacy, result):
    pattern = _name_pattern(legacy.names)
    texts = [f.message for f in result.findings + result.validation]
    texts += [" ".join(map(str, k)) for k in result.value_fixes]
    texts += [f"{k} {v}" for m in result.column_mapping.values() for k, v in m.items()]
    for frame in (result.records.incidents, result.records.actions):
        texts += [v for v in frame.astype(object).to_numpy().ravel() if isinstance(v, str)]
    assert texts and not [t for t in texts if pattern.search(t)]
    assert "[name]" in " ".join(result.records.incidents["description"].dropna())


def test_person_ref_is_stable_within_a_site_and_differs_across_sites_and_keys(legacy, result):
    inc = result.records.incidents
    refs_by_name: dict[str, set] = {}
    for expected, ref in zip(legacy.rows, inc["person_ref"]):
        refs_by_name.setdefault(expected.name, set()).add(ref)
    assert all(len(refs) == 1 for refs in refs_by_name.values())  # "amy example" too
    assert len({next(iter(r)) for r in refs_by_name.values()}) == len(refs_by_name)
    assert inc["person_ref"].str.fullmatch(r"OAK-P-[0-9A-F]{10}").all()

    again = convert(legacy.path)
    assert again.records.incidents["person_ref"].tolist() == inc["person_ref"].tolist()
    other_key = convert(legacy.path, key=OTHER_KEY)
    other_site = convert(legacy.path, site_code="ELM", site_name="Elm Court")
    for other in (other_key, other_site):
        refs = other.records.incidents["person_ref"]
        assert not set(refs) & set(inc["person_ref"])
        # Still one ref per person.
        assert refs.nunique() == inc["person_ref"].nunique()


def test_names_need_a_key(legacy, monkeypatch, tmp_path):
    monkeypatch.delenv("NEARMISS_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("NEARMISS_INSTANCE", str(tmp_path / "instance"))
    with pytest.raises(MissingKey):
        convert(legacy.path, key=None)
    monkeypatch.setenv("NEARMISS_PSEUDONYM_KEY", KEY.decode())
    from_env = convert(legacy.path, key=None)
    assert from_env.records.incidents["person_ref"].notna().all()


# --- mapping file ----------------------------------------------------------------------------------------------

def test_a_json_mapping_file_overrides_columns_and_values(legacy, tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"columns": {"Room": "location", "Manager comments": "ignore"},
                                "values": {"category": {UNMAPPABLE_CATEGORY: "falls"}}}))
    res = convert(legacy.path, mapping=path)
    mapping = res.column_mapping[legacy.sheets[0]]
    assert mapping["Room"] == "location" and mapping["Manager comments"] == "ignored"
    inc = res.records.incidents
    assert (inc["location"] == "care_home").all()  # "Room 4" is a room of the care home
    assert not inc["notes"].str.contains("Room:|Manager comments:").any()
    [i] = [k for k, e in enumerate(legacy.rows) if e.unmappable_category]
    assert inc.iloc[i]["category"] == "falls"
    assert not any(f.rule == "CV001" for f in res.findings)


def test_a_csv_mapping_file_overrides_a_column(legacy, tmp_path):
    path = tmp_path / "mapping.csv"
    path.write_text("source_header,field\nHarm,notes\n")
    res = convert(legacy.path, mapping=path)
    inc = res.records.incidents
    assert res.column_mapping[legacy.sheets[0]]["Harm"] == "notes"
    assert inc["physical_harm"].isna().all()
    assert inc["notes"].str.contains("Harm: ").all()


@pytest.mark.parametrize("content, message", [
    ('{"Harm": "severity_level"}', "not a field"),
    ('{"values": {"category": {"x": "tumbles"}}}', "not in the category list"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_mapping_file_is_refused(tmp_path, content, message):
    path = tmp_path / "mapping.json"
    path.write_text(content)
    with pytest.raises(convert_module.MappingFileError, match=message):
        load_mapping(path)


# --- the written workbook ------------------------------------------------------------------------------------

def test_the_output_matches_the_template(result, written):
    wb = openpyxl.load_workbook(written)
    log, actions = wb[INCIDENTS.sheet], wb[ACTIONS.sheet]
    assert [c.value for c in log[1]] == INCIDENTS.labels
    assert [c.value for c in actions[1]] == ACTIONS.labels
    assert log.max_row == len(result.records.incidents) + 1
    assert log.cell(2, 1).value == result.records.incidents["incident_ref"].iloc[0]
    assert isinstance(log.cell(2, INCIDENTS.names.index("occurred_at") + 1).value, dt.datetime)
    assert wb["Site"]["B2"].value == "OAK"


def test_write_refuses_to_overwrite_and_leaves_no_temp_file(result, tmp_path, monkeypatch):
    out = tmp_path / "oak.xlsx"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_conversion(result, out)
    assert out.read_bytes() == b"keep me"

    def broken(path, records):
        open(path, "wb").write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(convert_module, "build_workbook", broken)
    with pytest.raises(RuntimeError):
        write_conversion(result, out, overwrite=True)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oak.xlsx"]


@pytest.mark.libreoffice
def test_the_output_opens_in_libreoffice(result, written, libreoffice, tmp_path):
    wb = libreoffice.recalculate(written, tmp_path / "lo")
    log = wb[INCIDENTS.sheet]
    assert [c.value for c in log[1]] == INCIDENTS.labels
    refs = [log.cell(r, 1).value for r in range(2, len(result.records.incidents) + 2)]
    assert refs == result.records.incidents["incident_ref"].tolist()
    assert [c.value for c in wb[ACTIONS.sheet][1]] == ACTIONS.labels
