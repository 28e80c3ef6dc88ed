"""The commissioner return: every table read back from the .xlsx and checked against plain pandas."""

from __future__ import annotations

import json
import math

import numpy as np
import openpyxl
import pandas as pd
import pytest

from addin.spc import xmr
from server.reports.commissioner_return import Period, build_return, parse_period, return_to_mapping, write_return
from tests.test_reports_helpers import (
    AT_THEME, FORMULA_THEME, NORTH, P_END, PERIOD, SOUTH, TODAY, category_word, cli_result, frames, in_period, once,
    read_table, sheet_xml, site_workbooks, text,
)
from workbook_templates.codelists import CODE_LISTS

HARMS = ["none", "low", "moderate", "severe", "fatal"]
WITH_HARM = ["low", "moderate", "severe", "fatal"]
HARM_HEADINGS = ["No harm", "Low harm", "Moderate harm", "Severe harm", "Fatal"]


def words(list_name: str, code: str) -> str:
    meaning = CODE_LISTS[list_name][code]
    if list_name == "subcategory":
        meaning = meaning.split(": ", 1)[1]
    return meaning[:1].upper() + meaning[1:]


@pytest.fixture(scope="module")
def site_data(tmp_path_factory):
    """The Q4 2025 return of all three sites through the command, and three variants through the API."""
    records, paths = site_workbooks(tmp_path_factory)

    def build(folder):
        result = cli_result(folder, "return", *paths.values(), "--period", PERIOD, "--out",
                            folder / "return_all.xlsx", "--today", TODAY.isoformat())
        inc, act, expo = frames(records)
        sites = pd.DataFrame([r.site for r in records.values()])
        for key, options in {"north": {"commissioner": NORTH.upper()},
                             "south": {"commissioner": "  southshire   icb "},
                             "suppressed": {"suppress_below": 8}}.items():
            write_return(build_return(inc, act, expo, sites, period=PERIOD, today=TODAY, **options),
                         folder / f"return_{key}.xlsx")
        return result

    folder, result = once(tmp_path_factory, "return", build)
    assert result["exit_code"] == 0, result["output"]
    outs = {key: folder / f"return_{key}.xlsx" for key in ("all", "north", "south", "suppressed")}
    return records, paths, outs


@pytest.fixture(scope="module")
def returned(site_data):
    _, _, outs = site_data
    return {key: openpyxl.load_workbook(path) for key, path in outs.items()}


def period_incidents(records, codes=None):
    inc, _, _ = frames(records, codes)
    return inc[in_period(inc["occurred_at"])]


# --- the tables, one by one ------------------------------------------------------------------

def expected_category_harm(records, codes=None) -> pd.DataFrame:
    p = period_incidents(records, codes)
    rows = {}
    for cat in CODE_LISTS["category"]:
        sub = p[p["category"] == cat]
        near = int((sub["event_type"] == "near_miss").sum())
        incidents = sub[sub["event_type"] == "incident"]
        values = [near] + [int((incidents["physical_harm"] == h).sum()) for h in HARMS]
        rows[category_word(cat)] = values + [sum(values)]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["Near misses", *HARM_HEADINGS, "Total"])
    table.loc["Total"] = table.sum()
    return table


@pytest.mark.parametrize("key,codes", [("all", None), ("north", ["OAK", "RIV"]), ("south", ["RIV", "ELM"])])
def test_category_by_harm(site_data, returned, key, codes):
    records, _, _ = site_data
    got = read_table(returned[key], "tbl_category_harm")
    want = expected_category_harm(records, codes)
    assert got.index.name == "Category"
    assert list(got.columns) == list(want.columns)
    assert list(got.index) == list(want.index)
    assert got.astype(int).equals(want.astype(int))
    assert want.loc["Total", "Total"] > 25  # the data is big enough to mean something


def test_falls_medication_and_pressure_ulcers(site_data, returned):
    records, _, _ = site_data
    p = period_incidents(records)
    falls = p[p["category"] == "falls"]
    got = read_table(returned["all"], "tbl_falls")
    assert got.iloc[:, 0].tolist() == [len(falls), int(((falls["event_type"] == "incident")
                                                        & falls["physical_harm"].isin(WITH_HARM)).sum())]

    med = p[p["category"] == "medication"]
    codes = [c for c, m in CODE_LISTS["subcategory"].items() if m.startswith("medication:")]
    want = pd.DataFrame({
        "Near misses": [int(((med["subcategory"] == c) & (med["event_type"] == "near_miss")).sum()) for c in codes],
        "Reached the person": [int(((med["subcategory"] == c) & (med["event_type"] == "incident")).sum())
                               for c in codes]}, index=[words("subcategory", c) for c in codes])
    want["Total"] = want.sum(axis=1)
    want.loc["Total"] = want.sum()
    got = read_table(returned["all"], "tbl_medication")
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    assert got.astype(int).equals(want)

    ulcers = p[(p["category"] == "pressure_care") & (p["event_type"] == "incident")
               & (p["subcategory"] == "new_pressure_ulcer")]
    grades = list(CODE_LISTS["pressure_ulcer_grade"])
    counts = [int((ulcers["pressure_ulcer_grade"] == g).sum()) for g in grades]
    not_recorded = len(ulcers) - sum(counts)
    got = read_table(returned["all"], "tbl_pressure_ulcers")
    assert list(got.index) == [words("pressure_ulcer_grade", g) for g in grades] + ["Grade not recorded", "Total"]
    assert got.iloc[:, 0].tolist() == counts + [not_recorded, len(ulcers)]


def test_notifications_and_cqc(site_data, returned):
    records, _, _ = site_data
    inc, _, _ = frames(records)
    p = inc[in_period(inc["occurred_at"])]
    got = read_table(returned["all"], "tbl_notifications").iloc[:, 0].tolist()
    assert got == [
        int(in_period(inc["safeguarding_referral_date"]).sum()),
        int(in_period(inc["commissioner_notified_date"]).sum()),
        int((p["riddor_reportable"] == "yes").sum()),
        int(((p["category"] == "death") | (p["physical_harm"] == "fatal")).sum()),
    ]
    regs = [c for c in CODE_LISTS["cqc_notification"] if c != "none"]
    notified = inc[in_period(inc["cqc_notified_date"])]
    pending = p[p["cqc_notification"].isin(regs) & p["cqc_notified_date"].isna()]
    got = read_table(returned["all"], "tbl_cqc_notifications")
    assert list(got.index) == [words("cqc_notification", r) for r in regs] + ["Total"]
    made = [int((notified["cqc_notification"] == r).sum()) for r in regs]
    waiting = [int((pending["cqc_notification"] == r).sum()) for r in regs]
    assert got.iloc[:, 0].tolist() == made + [len(notified)]
    assert got.iloc[:, 1].tolist() == waiting + [len(pending)]
    assert sum(made) > 0


def test_missed_visits_only_count_homecare_type_sites(site_data, returned):
    records, _, _ = site_data
    p = period_incidents(records, ["RIV", "ELM"])
    visits = p[p["category"] == "missed_or_late_visit"]
    codes = ["missed_visit", "late_visit", "short_visit"]
    got = read_table(returned["all"], "tbl_missed_visits")
    assert list(got.index) == [words("subcategory", c) for c in codes] + ["Total"]
    assert got.iloc[:, 0].tolist() == [int((visits["subcategory"] == c).sum()) for c in codes] + [len(visits)]
    assert "tbl_missed_visits" in returned["north"].defined_names  # RIV is homecare


def test_actions(site_data, returned):
    records, _, _ = site_data
    _, act, _ = frames(records)
    end = P_END  # the period has ended by TODAY
    status = act["status"]
    opened = in_period(act["raised_date"]).sum()
    completed = ((status == "done") & in_period(act["completed_date"])).sum()
    open_then = status.isin(["open", "in_progress"]) | ((status == "done") & (act["completed_date"] > end))
    overdue = ((act["raised_date"] <= end) & (act["due_date"] < end) & open_then).sum()
    due = act[in_period(act["due_date"]) & (status != "cancelled")]
    known = due[(due["status"] == "done") | (due["due_date"] < pd.Timestamp(TODAY))]
    on_time = ((known["status"] == "done") & (known["completed_date"] <= known["due_date"])).sum()
    got = read_table(returned["all"], "tbl_actions").iloc[:, 0].tolist()
    assert got[:5] == [opened, completed, overdue, len(known), on_time]
    assert got[5] == pytest.approx(round(on_time / len(known) * 100, 2))


def test_rates_per_thousand(site_data, returned):
    records, _, _ = site_data
    inc, _, expo = frames(records)
    p = inc[in_period(inc["occurred_at"])].copy()
    p["month"] = p["occurred_at"].dt.to_period("M").dt.to_timestamp()
    expo = expo[in_period(expo["month"])]
    units = {"OAK": "occupied_bed_days", "RIV": "care_hours", "ELM": "care_hours"}
    filters = {
        "All reports": pd.Series(True, index=p.index),
        "Incidents with harm": (p["event_type"] == "incident") & p["physical_harm"].isin(WITH_HARM),
        "Falls with harm": (p["event_type"] == "incident") & (p["category"] == "falls")
                           & p["physical_harm"].isin(WITH_HARM),
        "Medication errors that reached the person": (p["event_type"] == "incident") & (p["category"] == "medication"),
    }
    want = []
    for unit, short in (("occupied_bed_days", "bed days"), ("care_hours", "care hours")):
        sites = [s for s, u in units.items() if u == unit]
        rows = expo[expo["site_code"].isin(sites) & (expo[unit] > 0)]
        have = set(zip(rows["site_code"], rows["month"]))
        counted = pd.Series([(s, m) in have for s, m in zip(p["site_code"], p["month"])], index=p.index)
        for label, mask in filters.items():
            n = int((mask & counted).sum())
            want.append([label, short, n, rows[unit].sum(), round(n / rows[unit].sum() * 1000, 2)])
    rows = expo[expo["site_code"].isin(["RIV", "ELM"]) & (expo["visits"] > 0)]
    have = set(zip(rows["site_code"], rows["month"]))
    n = int(sum((s, m) in have for s, m, c in zip(p["site_code"], p["month"], p["category"])
                if c == "missed_or_late_visit"))
    want.append(["Missed or late visits", "visits", n, rows["visits"].sum(), round(n / rows["visits"].sum() * 1000, 2)])
    got = read_table(returned["all"], "tbl_rates").reset_index()
    assert got.values.tolist() == want
    ws = returned["all"]["Return"]
    notes = [c.value for c in ws["A"] if isinstance(c.value, str)]
    assert any("Exposure not recorded for ELM: Nov 2025" in n for n in notes)


def test_spc_signals_match_xmr_of_the_monthly_counts(site_data, returned):
    records, _, _ = site_data
    inc, _, _ = frames(records)
    months = pd.date_range("2024-11-01", "2025-12-01", freq="MS")  # the data starts Nov 2024
    month = inc["occurred_at"].dt.to_period("M").dt.to_timestamp()
    incident = inc["event_type"] == "incident"
    harmed = incident & inc["physical_harm"].isin(WITH_HARM)
    measures = {
        "All reports": (pd.Series(True, index=inc.index), "neutral"),
        "Near-miss reports": (inc["event_type"] == "near_miss", "increase"),
        "Incidents with harm": (harmed, "decrease"),
        "Falls with harm": (harmed & (inc["category"] == "falls"), "decrease"),
        "Medication errors that reached the person": (incident & (inc["category"] == "medication"), "decrease"),
    }
    words_for = {"common_cause": "No signal", "special_cause_improvement": "Improvement",
                 "special_cause_concern": "Concern", "special_cause_neutral_high": "Signal (higher)",
                 "special_cause_neutral_low": "Signal (lower)"}
    got = read_table(returned["all"], "tbl_spc")
    assert len(got) == 8
    for label, (mask, improvement) in measures.items():
        series = month[mask].value_counts().reindex(months, fill_value=0)
        chart = xmr(series.to_numpy(), improvement=improvement)
        assert got.loc[label, "Signal"] == words_for[chart["point_type"].iloc[-1]], label
        assert got.loc[label, "Months"] == 14
        assert got.loc[label, "Latest month"] == "Dec 2025"
    assert got.loc["Falls with harm", "Signal"] == "Concern"  # the December spike of the test data
    assert got.loc["Falls with harm", "What the chart shows"] == "Latest month above the expected range"


def test_learning_themes_are_tags_written_as_strings(site_data, returned):
    records, _, outs = site_data
    inc, _, _ = frames(records)
    closed = inc[(inc["status"] == "closed") & in_period(inc["closed_date"])]
    themes = text(closed["learning_theme"]).str.lower()
    counts = themes[themes != ""].value_counts()
    want = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) + [("Total", int(counts.sum()))]
    got = read_table(returned["all"], "tbl_themes")
    assert list(zip(got.index, got.iloc[:, 0])) == want
    assert FORMULA_THEME.lower() in got.index and AT_THEME in got.index
    # never a formula: the sheet has no <f> element at all, and the theme is a shared string
    xml = sheet_xml(outs["all"])
    assert "<f>" not in xml["Return"] and "<f " not in xml["Return"]
    assert "example.invalid" in xml["sharedStrings"]
    ws = returned["all"]["Return"]
    cells = [c for row in ws.iter_rows() for c in row if c.value == FORMULA_THEME.lower()]
    assert cells and all(c.data_type == "s" for c in cells)


def test_header_block(site_data, returned):
    records, _, _ = site_data
    header = read_table(returned["all"], "tbl_header")
    values = {k: v for k, v in zip([header.index.name, *header.index], [header.columns[0], *header.iloc[:, 0]])}
    assert values["Provider"] == "Synthetic Care Ltd"
    assert values["Site(s)"] == "Oakview House (OAK); Riverside Homecare (RIV); Elm Court (ELM)"
    assert values["CQC location ID(s)"] == "; ".join(r.site["cqc_location_id"] for r in records.values())
    assert values["Period"] == "Q4 2025 (1 October to 31 December 2025)"
    people = sum(r.exposure.loc[r.exposure["month"] == pd.Timestamp("2025-12-01"), "people_supported"].iloc[0]
                 for r in records.values())
    assert values["People supported"].startswith(f"{people:,.0f} ")
    _, _, expo = frames(records)
    q4 = expo[in_period(expo["month"])]
    beds = q4.loc[q4["site_code"] == "OAK", "occupied_bed_days"].sum()
    hours = q4.loc[q4["site_code"] != "OAK", "care_hours"].sum()
    visits = q4.loc[q4["site_code"] != "OAK", "visits"].sum()
    assert values["Exposure in the period"] == (f"{beds:,.0f} occupied bed days; {hours:,.0f} delivered care hours; "
                                                f"{visits:,.0f} visits")
    north = read_table(returned["north"], "tbl_header")
    assert north.loc["Site(s)"].iloc[0] == "Oakview House (OAK); Riverside Homecare (RIV)"
    assert north.loc["Commissioner"].iloc[0] == NORTH
    assert read_table(returned["south"], "tbl_header").loc["Commissioner"].iloc[0] == SOUTH


def test_return_is_counts_only(site_data, returned):
    """No description, immediate action, person ref or staff role text reaches the return."""
    records, _, outs = site_data
    inc, act, _ = frames(records)
    shared = sheet_xml(outs["all"])["sharedStrings"]
    for column in ("description", "immediate_action", "person_ref", "incident_ref"):
        for value in text(inc[column]).unique()[:50]:
            if value:
                assert value not in shared, (column, value)
    for value in text(act["action"]).unique():
        assert value not in shared
    ws = returned["all"]["Return"]
    assert ws.oddFooter.left.text == "Counts only; no information about individuals"
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth in (None, 1)
    assert ws.page_setup.fitToHeight == 0  # one page wide, as many pages long as needed
    assert ws.print_title_rows == "$1:$2"


# --- suppression, checked against the true counts ------------------------------------------------

def round5(n: int) -> int:
    return int(math.floor(n / 5 + 0.5) * 5)


def check_published(true: int, shown) -> None:
    if true == 0:
        assert shown == 0
    elif true < 8:
        assert shown == "*"
    else:
        assert shown == "*" or shown == round5(true)


def test_suppressed_return_hides_small_numbers_and_protects_totals(site_data, returned):
    records, _, _ = site_data
    want = expected_category_harm(records)
    got = read_table(returned["suppressed"], "tbl_category_harm")
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    for r in want.index:
        for c in want.columns:
            check_published(int(want.loc[r, c]), got.loc[r, c])
    hidden = got == "*"
    assert hidden.to_numpy().sum() > 10
    for r in got.index:  # no row or column, with its total, has exactly one hidden number
        assert hidden.loc[r].sum() != 1, r
    for c in got.columns:
        assert hidden[c].sum() != 1, c
    header = read_table(returned["suppressed"], "tbl_header")
    assert header.loc["Small numbers"].iloc[0].startswith("Suppressed (counts of 1 to 7 shown as *")
    rates = read_table(returned["suppressed"], "tbl_rates")
    for count, exposure, rate in zip(rates["Count"], rates["Exposure"], rates["Rate per 1,000"]):
        assert (rate == "*") == (count == "*")
        if count != "*":
            assert count % 5 == 0 and rate == pytest.approx(round(count / exposure * 1000, 2))
    ws = returned["suppressed"]["Return"]
    notes = " ".join(c.value for c in ws["A"] if isinstance(c.value, str))
    assert "NHS Digital method" in notes


# --- the pure function -------------------------------------------------------------------------

def test_periods():
    assert parse_period("2025-Q4") == Period("2025-Q4", pd.Timestamp("2025-10-01"), pd.Timestamp("2025-12-31"))
    assert parse_period("2026-q1").end == pd.Timestamp("2026-03-31")
    assert parse_period("2024-02").end == pd.Timestamp("2024-02-29")
    assert parse_period("2025-11").label == "November 2025"
    assert list(parse_period("2025-Q2").months.month) == [4, 5, 6]
    for bad in ("2025-Q5", "2025/26", "Q4 2025", "2025-13", ""):
        with pytest.raises(ValueError, match="calendar quarter"):
            parse_period(bad)


def test_build_return_refuses_what_it_cannot_do(site_data):
    records, _, _ = site_data
    inc, act, expo = frames(records)
    sites = pd.DataFrame([r.site for r in records.values()])
    with pytest.raises(ValueError, match="has not started"):
        build_return(inc, act, expo, sites, period="2026-Q4", today=pd.Timestamp("2026-09-30").date())
    with pytest.raises(ValueError, match="Northshire County Council"):
        build_return(inc, act, expo, sites, period=PERIOD, commissioner="Nowhere Council", today=TODAY)
    with pytest.raises(ValueError, match="3 or more"):
        build_return(inc, act, expo, sites, period=PERIOD, suppress_below=2, today=TODAY)


def test_a_period_not_yet_ended_says_so_and_counts_so_far(site_data):
    records, _, _ = site_data
    inc, act, expo = frames(records)
    sites = pd.DataFrame([r.site for r in records.values()])
    data = build_return(inc, act, expo, sites, period="2026-Q4", today=TODAY)
    assert "the period has not ended" in data.header["Figures as at"]
    october = inc[in_period(inc["occurred_at"], pd.Timestamp("2026-10-01"), pd.Timestamp("2026-10-31"))]
    assert data.tables["category_harm"].frame.loc["Total", "Total"] == len(october)
    assert data.frames["spc"].loc["All reports", "Latest month"] == "Oct 2026"


def test_unknown_codes_are_counted_but_never_written(site_data):
    records, _, _ = site_data
    inc, act, expo = frames(records, ["OAK"])
    sites = pd.DataFrame([records["OAK"].site])
    rows = inc.index[in_period(inc["occurred_at"])][:3]
    inc.loc[rows[0], "category"] = "Mrs Smith fell"  # free text typed in a coded column
    inc.loc[rows[1], "physical_harm"] = np.nan
    inc.loc[rows[2], "event_type"] = "maybe"
    data = build_return(inc, act, expo, sites, period=PERIOD, today=TODAY)
    table = data.frames["category_harm"]
    assert table.loc["Other value or not recorded", "Total"] == 1
    assert "Harm not recorded" in table.columns or inc.loc[rows[1], "event_type"] == "near_miss"
    assert table.loc["Total", "Type not recorded"] == 1
    assert table.loc["Total", "Total"] == int(in_period(inc["occurred_at"]).sum())
    assert not any("Smith" in str(label) for label in table.index)


def test_a_site_with_no_rows_and_no_setting(tmp_path):
    """A newly registered site: nothing to count, no exposure, no setting; the return still says so plainly."""
    from workbook_templates.records import empty_frame

    def empty(kind):
        return empty_frame(kind).assign(site_code=pd.Series(dtype=object))

    sites = pd.DataFrame([{"site_code": "NEW", "site_name": "New Place", "setting": None}])
    data = build_return(empty("incidents"), empty("actions"), None, sites, period="2026-Q3", today=TODAY,
                        suppress_below=8)
    assert data.frames["category_harm"].loc["Total", "Total"] == 0
    assert data.frames["rates"].empty and data.frames["missed_visits"].empty
    assert "No rates for NEW: the site's setting is not recorded." in data.notes
    wb = openpyxl.load_workbook(write_return(data, tmp_path / "empty.xlsx"))
    assert "tbl_rates" not in wb.defined_names
    notes = [c.value for c in wb["Return"]["A"] if isinstance(c.value, str)]
    assert any(n.startswith("No rates: no exposure") for n in notes)
    assert any(n.startswith("Not applicable: no homecare") for n in notes)
    mapping = return_to_mapping(data)
    assert json.loads(json.dumps(mapping))["tables"]["category_harm"]["rows"][-1][0] == "Total"
