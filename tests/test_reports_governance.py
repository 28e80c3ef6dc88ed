"""The governance summary workbook (nearmiss consolidate): every figure checked against plain pandas."""

from __future__ import annotations

import csv
import re
import zipfile
from types import SimpleNamespace

import numpy as np
import openpyxl
import pandas as pd
import pytest

from addin.spc import xmr
from addin.validate import validate_workbook
from server.reports.commissioner_return import build_return, write_return
from server.reports.governance import write_governance
from tests.test_reports_helpers import (
    AT_THEME, FORMULA_DESCRIPTION, FORMULA_THEME, MINUS_ACTION, PERIOD, TODAY, cli_result, find_row, frames, once,
    sheet_xml, site_workbooks, table_below, text,
)
from workbook_templates.codelists import CODE_LISTS
from workbook_templates.contract import ACTIONS, INCIDENTS

WITH_HARM = ["low", "moderate", "severe", "fatal"]
MONTHS = pd.date_range("2024-11-01", "2026-10-01", freq="MS")  # the synthetic logs' 24 months
TODAY_TS = pd.Timestamp(TODAY)
SPC_SHEETS = ["SPC All reports", "SPC Near misses", "SPC Near-miss share", "SPC Incidents with harm",
              "SPC Falls with harm", "SPC Medication errors", "SPC Overdue actions", "SPC Actions on time"]


@pytest.fixture(scope="module")
def run_once(tmp_path_factory):
    """One `nearmiss consolidate` of the three sites and a broken file, with both CSVs (once per test run)."""
    records, paths = site_workbooks(tmp_path_factory)

    def build(folder):
        bad = folder / "broken.xlsx"
        bad.write_bytes(b"PK\x03\x04 this is not really a zip file")
        result = cli_result(folder, "consolidate", *paths.values(), bad, "--out", folder / "governance.xlsx",
                            "--csv", folder / "incidents.csv", "--actions-csv", folder / "actions.csv",
                            "--today", TODAY.isoformat(), "--area", "North area")
        result["findings"] = {code: [[f.rule, f.severity] for f in validate_workbook(path, today=TODAY)]
                              for code, path in paths.items()}
        return result

    folder, result = once(tmp_path_factory, "governance", build)
    return (records, paths, folder / "governance.xlsx", folder / "incidents.csv", folder / "actions.csv",
            SimpleNamespace(**result))


@pytest.fixture(scope="module")
def consolidated(run_once):
    records, paths, out, _, _, result = run_once
    assert result.exit_code == 2, result.output  # one file could not be read ...
    assert out.exists()  # ... and the rest were still summarised
    findings = {code: [SimpleNamespace(rule=r, severity=s) for r, s in fs] for code, fs in result.findings.items()}
    return records, paths, out, openpyxl.load_workbook(out), findings


def read_csv(path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh))
        fh.seek(0)
        return header, list(csv.DictReader(fh))


def test_consolidate_progress_messages_and_csvs(run_once):
    records, paths, out, inc_csv, act_csv, result = run_once
    assert "Reading 4 workbook(s)" in result.stderr  # the progress bar's label, on stderr
    assert "Could not read broken.xlsx:" in result.stderr
    assert f"Wrote {out}: 3 site(s)" in result.stdout

    header, rows = read_csv(inc_csv)
    assert header == INCIDENTS.names  # contract field names (site_code is one), derived columns included
    assert len(rows) == sum(len(r.incidents) for r in records.values())
    oak = records["OAK"].incidents.iloc[0]
    row = next(r for r in rows if r["incident_ref"] == oak["incident_ref"])
    assert row["description"] == "'" + FORMULA_DESCRIPTION  # neutralised: a spreadsheet shows it as text
    assert row["occurred_at"] == oak["occurred_at"].strftime("%Y-%m-%d")  # ISO dates
    assert row["risk_score"] == str(int(oak["consequence"]) * int(oak["likelihood"]))
    themed = [r["learning_theme"] for r in rows if r["learning_theme"].startswith("'")]
    assert sorted(themed) == sorted(["'" + FORMULA_THEME, "'" + AT_THEME])
    assert all(not r[k].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for k in r)

    header, actions = read_csv(act_csv)
    assert header == ["site_code", *ACTIONS.names]
    assert len(actions) == sum(len(r.actions) for r in records.values())
    first = next(a for a in actions if a["action_ref"] == records["OAK"].actions.iloc[0]["action_ref"])
    assert first["action"] == "'" + MINUS_ACTION and first["site_code"] == "OAK"


def month_of(dates: pd.Series) -> pd.Series:
    return pd.to_datetime(dates).dt.to_period("M").dt.to_timestamp()


def monthly(mask: pd.Series, dates: pd.Series) -> pd.Series:
    return month_of(dates[mask]).value_counts().reindex(MONTHS, fill_value=0)


def expected_measures(inc: pd.DataFrame, act: pd.DataFrame) -> dict[str, pd.Series]:
    """Each key measure per month, written out plainly (NaN where a month has no value)."""
    incident = inc["event_type"] == "incident"
    near = inc["event_type"] == "near_miss"
    harmed = incident & inc["physical_harm"].isin(WITH_HARM)
    occurred = inc["occurred_at"]
    out = {
        "all_reports": monthly(pd.Series(True, index=inc.index), occurred),
        "near_misses": monthly(near, occurred),
        "incidents_with_harm": monthly(harmed, occurred),
        "falls_with_harm": monthly(harmed & (inc["category"] == "falls"), occurred),
        "medication_errors_reached": monthly(incident & (inc["category"] == "medication"), occurred),
    }
    nm, ic = monthly(near, occurred), monthly(incident, occurred)
    out["near_miss_share"] = (nm / (nm + ic)).where(nm + ic > 0)
    overdue = []
    for m in MONTHS:
        as_of = min(m + pd.offsets.MonthEnd(0), TODAY_TS)
        open_then = act["status"].isin(["open", "in_progress"]) | (
            (act["status"] == "done") & (act["completed_date"] > as_of))
        overdue.append(int(((act["raised_date"] <= as_of) & (act["due_date"] < as_of) & open_then).sum()))
    out["overdue_actions"] = pd.Series(overdue, index=MONTHS, dtype=float)
    due = act[act["status"] != "cancelled"]
    known = due[(due["status"] == "done") | (due["due_date"] < TODAY_TS)]
    on_time = (known["status"] == "done") & (known["completed_date"] <= known["due_date"])
    k = monthly(pd.Series(True, index=known.index), known["due_date"])
    t = monthly(on_time, known["due_date"])
    out["actions_on_time"] = (t / k * 100).where(k > 0)
    return out


def pooled_rate(inc: pd.DataFrame, expo: pd.DataFrame, codes: list[str], unit: str, mask: pd.Series,
                months=MONTHS) -> float:
    e = expo[expo["site_code"].isin(codes) & (expo[unit] > 0) & expo["month"].isin(months)]
    have = set(zip(e["site_code"], e["month"]))
    m = month_of(inc["occurred_at"])
    counted = [(s, mm) in have and ok for s, mm, ok in zip(inc["site_code"], m, mask)]
    return sum(counted) / e[unit].sum() * 1000


def summary_values(ws) -> dict[str, tuple]:
    table = table_below(ws, "Figure")
    return {row[0]: (row[1], row[2]) for row in table.itertuples(index=False)}


def test_summary_headline_figures(consolidated):
    records, _, _, wb, findings = consolidated
    inc, act, expo = frames(records)
    got = summary_values(wb["Summary"])
    near = (inc["event_type"] == "near_miss").sum()
    incidents = (inc["event_type"] == "incident").sum()
    harmed = (inc["event_type"] == "incident") & inc["physical_harm"].isin(WITH_HARM)
    assert got["Reports (near misses and incidents)"][0] == len(inc)
    assert got["Near misses"][0] == near
    assert got["Incidents"][0] == incidents
    assert got["Near-miss share of reports"][0] == pytest.approx(near / (near + incidents))
    assert got["Incidents with harm (low harm or worse)"][0] == harmed.sum()
    everything = pd.Series(True, index=inc.index)
    assert got["Reports per 1,000 occupied bed days"][0] == pytest.approx(
        pooled_rate(inc, expo, ["OAK"], "occupied_bed_days", everything))
    assert got["Reports per 1,000 delivered care hours"][0] == pytest.approx(
        pooled_rate(inc, expo, ["RIV", "ELM"], "care_hours", everything))
    assert got["Incidents with harm per 1,000 delivered care hours"][0] == pytest.approx(
        pooled_rate(inc, expo, ["RIV", "ELM"], "care_hours", harmed))
    # latest month: October 2026
    october = month_of(inc["occurred_at"]) == MONTHS[-1]
    assert got["Reports (near misses and incidents)"][1] == october.sum()
    assert got["Reports per 1,000 occupied bed days"][1] == pytest.approx(
        pooled_rate(inc, expo, ["OAK"], "occupied_bed_days", everything, MONTHS[-1:]))
    # actions
    in_months = lambda d: month_of(d).isin(MONTHS)  # noqa: E731
    assert got["Actions raised"][0] == in_months(act["raised_date"]).sum()
    assert got["Actions completed"][0] == ((act["status"] == "done") & in_months(act["completed_date"])).sum()
    due = act[(act["status"] != "cancelled") & in_months(act["due_date"])]
    known = due[(due["status"] == "done") | (due["due_date"] < TODAY_TS)]
    on_time = ((known["status"] == "done") & (known["completed_date"] <= known["due_date"])).sum()
    assert got["Actions completed by their due date (%)"][0] == pytest.approx(on_time / len(known) * 100)
    open_now = act["status"].isin(["open", "in_progress"])
    assert got["Actions open or in progress now"][0] == open_now.sum()
    assert got["Actions overdue now"][0] == (open_now & (act["due_date"] < TODAY_TS)).sum()
    # data quality: the validator's findings, counted
    every = [f for fs in findings.values() for f in fs]
    assert got["Data quality errors (findings)"][0] == sum(f.severity == "error" for f in every)
    assert got["Data quality warnings (findings)"][0] == sum(f.severity == "warning" for f in every)
    assert got["Files that could not be read"][0] == 1


def test_sites_sheet(consolidated):
    records, paths, _, wb, findings = consolidated
    inc, act, expo = frames(records)
    table = table_below(wb["Sites"], "Site code").set_index("Site code")
    units = {"OAK": ("occupied_bed_days", "bed days"), "RIV": ("care_hours", "care hours"),
             "ELM": ("care_hours", "care hours")}
    for code in ("OAK", "RIV", "ELM"):
        row = table.loc[code]
        mine = inc[inc["site_code"] == code]
        near = (mine["event_type"] == "near_miss").sum()
        incidents = (mine["event_type"] == "incident").sum()
        acts = act[act["site_code"] == code]
        open_now = acts["status"].isin(["open", "in_progress"])
        assert row["Site name"] == records[code].site["site_name"]
        assert row["Reports"] == len(mine)
        assert row["Near misses"] == near
        assert row["Near-miss share"] == pytest.approx(near / (near + incidents))
        assert row["Incidents with harm"] == ((mine["event_type"] == "incident")
                                              & mine["physical_harm"].isin(WITH_HARM)).sum()
        unit, words = units[code]
        assert row["Per 1,000"] == words
        assert row["Reports per 1,000"] == pytest.approx(
            pooled_rate(mine, expo, [code], unit, pd.Series(True, index=mine.index)))
        assert row["Actions open"] == open_now.sum()
        assert row["Overdue now"] == (open_now & (acts["due_date"] < TODAY_TS)).sum()
        assert row["Errors"] == sum(f.severity == "error" for f in findings[code])
        assert row["Warnings"] == sum(f.severity == "warning" for f in findings[code])
        assert row["Source file"] == paths[code].name
    area = table.loc["All"]
    assert area["Site name"] == "North area" and area["Reports"] == len(inc)
    assert area["Per 1,000"] == "mixed units" and pd.isna(area["Reports per 1,000"])


@pytest.mark.parametrize("name,sheet", list(zip(
    ["all_reports", "near_misses", "near_miss_share", "incidents_with_harm", "falls_with_harm",
     "medication_errors_reached", "overdue_actions", "actions_on_time"], SPC_SHEETS)))
def test_spc_sheet_values_and_limits(consolidated, name, sheet):
    records, _, _, wb, _ = consolidated
    inc, act, _ = frames(records)
    want = expected_measures(inc, act)[name]
    table = table_below(wb[sheet], "Month")
    assert [pd.Timestamp(m) for m in table["Month"]] == list(MONTHS)
    values = table["Value"].astype(float).to_numpy()
    np.testing.assert_allclose(values, want.to_numpy(dtype=float), equal_nan=True)
    ok = ~np.isnan(values)
    chart = xmr(values[ok], improvement="neutral")
    np.testing.assert_allclose(table["Mean"].to_numpy(dtype=float)[ok], chart["mean"])
    np.testing.assert_allclose(table["Lower limit"].to_numpy(dtype=float)[ok], chart["lpl"])
    np.testing.assert_allclose(table["Upper limit"].to_numpy(dtype=float)[ok], chart["upl"])
    flagged = table["Point"].to_numpy()[ok] != "common cause"
    assert (flagged == (chart["point_type"].to_numpy() != "common_cause")).all()
    signal_columns = ["Signal"] if name == "all_reports" else ["Improvement", "Concern"]  # by direction
    assert list(table.columns[6:]) == signal_columns
    marked = table[signal_columns].notna().any(axis=1).to_numpy()
    assert (marked[ok] == flagged).all()
    caption = wb[sheet]["A3"].value
    assert caption.startswith("Latest month (Oct 2026): ")


def test_falls_spike_is_a_concern_point_on_its_chart(consolidated):
    _, _, _, wb, _ = consolidated
    table = table_below(wb["SPC Falls with harm"], "Month").set_index("Month")
    december = table.loc[pd.Timestamp("2025-12-01")]
    assert december["Point"] == "concern" and december["Concern"] == december["Value"]


def test_native_charts_one_per_spc_sheet(consolidated):
    _, _, out, wb, _ = consolidated
    assert [s for s in wb.sheetnames if s.startswith("SPC ")] == SPC_SHEETS
    with zipfile.ZipFile(out) as zf:
        charts = sorted(n for n in zf.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
        assert len(charts) == len(SPC_SHEETS)
        for name in charts:
            xml = zf.read(name).decode()
            assert "<c:lineChart>" in xml
            assert xml.count('<a:prstDash val="dash"/>') == 2  # the process limits
            assert 'dispBlanksAs val="zero"' not in xml  # blank months are gaps (the default), never 0
            # value, mean, two limits, then the special-cause points: improvement (blue) and concern
            # (orange), or one kind of signal for "all reports", which has no preferred direction
            if "361475" in xml:
                assert xml.count("<c:ser>") == 5 and "289DE0" not in xml
            else:
                assert xml.count("<c:ser>") == 6 and "289DE0" in xml and "FAB428" in xml
        drawings = [n for n in zf.namelist() if re.fullmatch(r"xl/drawings/drawing\d+\.xml", n)]
        assert len(drawings) == len(SPC_SHEETS)


def test_overdue_actions_sheet(consolidated):
    records, _, _, wb, _ = consolidated
    _, act, _ = frames(records)
    late = act[act["status"].isin(["open", "in_progress"]) & (act["due_date"] < TODAY_TS)]
    table = table_below(wb["Overdue actions"], "Site")
    assert sorted(table["Action ref"]) == sorted(late["action_ref"])
    assert len(late) > 0
    days = dict(zip(late["action_ref"], (TODAY_TS - late["due_date"]).dt.days))
    assert all(days[r] == d for r, d in zip(table["Action ref"], table["Days overdue"]))
    assert list(table["Days overdue"]) == sorted(table["Days overdue"], reverse=True)


def test_themes_sheet(consolidated):
    records, _, out, wb, _ = consolidated
    inc, _, _ = frames(records)
    closed = inc[(inc["status"] == "closed") & month_of(inc["occurred_at"]).isin(MONTHS)]
    theme = text(closed["learning_theme"]).str.lower()
    closed = closed.assign(theme=theme)[theme != ""]
    table = table_below(wb["Themes"], "Learning theme").set_index("Learning theme")
    body = table.drop(index="Total")
    for code in ("OAK", "RIV", "ELM"):
        want = closed[closed["site_code"] == code]["theme"].value_counts()
        assert body[code][body[code] > 0].sort_index().to_dict() == want.sort_index().to_dict()
        assert table.loc["Total", code] == want.sum()
    assert body["All sites"].tolist() == sorted(body["All sites"], reverse=True)
    assert FORMULA_THEME.lower() in body.index
    xml = sheet_xml(out)
    for name, content in xml.items():
        if not name.startswith("_") and name != "sharedStrings":
            assert "<f>" not in content and "<f " not in content, name
    cell = next(c for row in wb["Themes"].iter_rows() for c in row if c.value == FORMULA_THEME.lower())
    assert cell.data_type == "s"


def test_themes_by_category_table(consolidated):
    records, _, _, wb, _ = consolidated
    inc, _, _ = frames(records)
    closed = inc[(inc["status"] == "closed") & month_of(inc["occurred_at"]).isin(MONTHS)]
    closed = closed.assign(theme=text(closed["learning_theme"]).str.lower())
    closed = closed[closed["theme"] != ""]
    known = closed["category"].isin(list(CODE_LISTS["category"]))
    closed = closed.assign(category=closed["category"].where(known, "other value"))
    want = pd.crosstab(closed["theme"], closed["category"])

    ws = wb["Themes"]
    top = find_row(ws, "Themes by category") + 1
    header = [c.value for c in ws[top] if c.value is not None]
    rows = [list(r[:len(header)]) for r in ws.iter_rows(min_row=top + 1, values_only=True) if r[0] is not None]
    got = pd.DataFrame(rows, columns=header).set_index("Learning theme")
    assert sorted(got.index) == sorted(want.index)
    labels = {c: c.replace("_", " ").capitalize() for c in want.columns}
    for category in want.columns:
        column = next(h for h in got.columns if h.lower() == labels[category].lower())
        assert got[column].to_dict() == want[category].reindex(got.index, fill_value=0).to_dict(), category
    assert got.sum(axis=1).to_dict() == closed["theme"].value_counts().reindex(got.index).to_dict()


def test_data_quality_sheet(consolidated):
    _, _, _, wb, findings = consolidated
    ws = wb["Data quality"]
    table = table_below(ws, "Rule")
    body = table[table["Rule"] != "Total"]
    for code, fs in findings.items():
        for (rule, severity), n in pd.Series([(f.rule, f.severity) for f in fs]).value_counts().items():
            row = body[(body["Rule"] == rule) & (body["Severity"] == severity)]
            assert row[code].iloc[0] == n, (code, rule)
        assert table[table["Rule"] == "Total"][code].iloc[0] == len(fs)
    unreadable = table_below(ws, "File")
    assert unreadable["File"].tolist() == ["broken.xlsx"]
    assert unreadable["Problem"].iloc[0]


def test_summary_links_every_measure_to_its_chart(consolidated):
    _, _, _, wb, _ = consolidated
    ws = wb["Summary"]
    top = find_row(ws, "Measure")
    links = [ws.cell(row=top + 1 + i, column=1).hyperlink for i in range(len(SPC_SHEETS))]
    assert [link.location.split("!")[0].strip("'") for link in links] == SPC_SHEETS
    falls = next(r for r in ws.iter_rows(min_row=top) if r[0].value == "Falls with harm")
    assert falls[3].value in ("Concern", "No signal")  # October 2026's point, whatever it is


@pytest.mark.libreoffice
@pytest.mark.filterwarnings("ignore:Unable to read chart")  # openpyxl cannot parse LibreOffice's chart XML
def test_both_workbooks_open_in_libreoffice(consolidated, libreoffice, tmp_path):
    records, paths, out, wb, _ = consolidated
    inc, act, expo = frames(records)
    sites = pd.DataFrame([r.site for r in records.values()])
    ret = write_return(build_return(inc, act, expo, sites, period=PERIOD, today=TODAY, suppress_below=5),
                       tmp_path / "return.xlsx")
    converted = libreoffice.convert([out, ret], tmp_path / "lo")  # one soffice call for both
    gov_lo = openpyxl.load_workbook(converted[0], data_only=True)
    ret_lo = openpyxl.load_workbook(converted[1], data_only=True)
    assert gov_lo.sheetnames == wb.sheetnames
    _same(summary_values(gov_lo["Summary"]), summary_values(wb["Summary"]))
    for sheet in SPC_SHEETS:
        a = table_below(gov_lo[sheet], "Month")["Value"].astype(float).to_numpy()
        b = table_below(wb[sheet], "Month")["Value"].astype(float).to_numpy()
        np.testing.assert_allclose(a, b, equal_nan=True)
    original = openpyxl.load_workbook(ret)
    for name in ("tbl_category_harm", "tbl_medication", "tbl_actions", "tbl_rates", "tbl_themes"):
        sheet, ref = next(iter(original.defined_names[name].destinations))
        ref = ref.replace("$", "")
        got = [[c.value for c in row] for row in ret_lo[sheet][ref]]
        want = [[c.value for c in row] for row in original[sheet][ref]]
        assert got == want, name
    with zipfile.ZipFile(converted[0]) as zf:
        assert len([n for n in zf.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n)]) == len(SPC_SHEETS)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for x, y in zip(a[key], b[key]):
            assert (pd.isna(x) and pd.isna(y)) or x == pytest.approx(y), key


def test_one_site_summary_and_an_empty_area(tmp_path):
    from addin import trends
    from workbook_templates.records import empty_frame
    from workbook_templates.synthetic import make_site

    records = make_site("OAK", end=TODAY, seed=5, months=6)
    summary = trends.site_summary(records, today=TODAY)
    out = write_governance(summary, tmp_path / "one.xlsx", actions=records.actions.assign(site_code="OAK"))
    wb = openpyxl.load_workbook(out)
    assert table_below(wb["Sites"], "Site code")["Site code"].tolist() == ["OAK"]
    assert summary_values(wb["Summary"])["Reports (near misses and incidents)"][0] == len(records.incidents)

    empty = {k: empty_frame(k).assign(site_code=pd.Series(dtype=object)) for k in ("incidents", "actions", "exposure")}
    summary = trends.area_summary(empty, {"NEW": "care_home"}, today=TODAY)
    wb = openpyxl.load_workbook(write_governance(summary, tmp_path / "empty.xlsx", **{
        k: empty[k] for k in ("incidents", "actions")}))
    assert summary_values(wb["Summary"])["Reports (near misses and incidents)"][0] == 0
    assert any(c.value == "No overdue actions." for c in wb["Overdue actions"]["A"])
