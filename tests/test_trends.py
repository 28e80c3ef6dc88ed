"""addin.trends and addin.measures: every figure checked against a plain pandas computation or a hand count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from addin import measures as M
from addin import trends as T
from addin.spc import describe_signal, xmr
from tests.conftest import DATA_END
from workbook_templates.codelists import CODE_LISTS, HARM_LEVELS
from workbook_templates.records import SiteRecords, empty_frame
from workbook_templates.synthetic import make_site

TODAY = pd.Timestamp(DATA_END)


# --- helpers: the independent computations ---------------------------------------

def month_of(dates: pd.Series) -> pd.Series:
    return dates.dt.to_period("M").dt.to_timestamp()


def months_of(first: str, last: str) -> list[pd.Timestamp]:
    return list(pd.period_range(first, last, freq="M").to_timestamp())


def incident_rows(rows: list[tuple]) -> pd.DataFrame:
    """Incidents from (occurred_at, event_type, category, physical_harm[, status, learning_theme])."""
    frame = empty_frame("incidents")
    data = {c: [] for c in frame.columns}
    for i, row in enumerate(rows):
        occurred, event, category, harm, *rest = row
        status, theme = (*rest, "open", "")[:2] if rest else ("open", "")
        values = {"incident_ref": f"OAK-2026-{i + 1:04d}", "site_code": "OAK", "occurred_at": occurred,
                  "reported_at": occurred, "event_type": event, "category": category, "physical_harm": harm,
                  "status": status, "learning_theme": theme}
        for c in frame.columns:
            data[c].append(values.get(c))
    out = pd.DataFrame(data)
    out["occurred_at"] = pd.to_datetime(out["occurred_at"])
    out["reported_at"] = pd.to_datetime(out["reported_at"])
    return out


def action_rows(rows: list[tuple]) -> pd.DataFrame:
    """Actions from (ref, raised_date, due_date, status, completed_date)."""
    frame = pd.DataFrame(rows, columns=["action_ref", "raised_date", "due_date", "status", "completed_date"])
    for c in ("raised_date", "due_date", "completed_date"):
        frame[c] = pd.to_datetime(frame[c])
    frame["incident_refs"] = "OAK-2026-0001"
    return frame


def falls_with_harm_incidents(counts: list[int], first: str = "2025-01") -> pd.DataFrame:
    """Falls incidents with low harm, ``counts[i]`` of them in the i-th month from ``first``."""
    months = months_of(first, str(pd.Period(first, "M") + len(counts) - 1))
    dates = np.repeat(np.array([m + pd.Timedelta(days=9) for m in months], dtype="datetime64[ns]"), counts)
    return incident_rows([(d, "incident", "falls", "low") for d in pd.to_datetime(dates)])


@pytest.fixture(scope="module")
def site() -> SiteRecords:
    return make_site(end=DATA_END, seed=11)


@pytest.fixture(scope="module")
def area() -> tuple[list[SiteRecords], dict, dict]:
    """Four sites of two exposure units, concatenated as the server will."""
    recs = [make_site("OAK", end=DATA_END, seed=1),
            make_site("ELM", end=DATA_END, seed=2, setting="homecare", reports_per_month=6),
            make_site("ASH", end=DATA_END, seed=3, months=12, beds=20),
            make_site("YEW", end=DATA_END, seed=4, setting="supported_living", flaw_rate=0.05)]
    frames = {
        "incidents": pd.concat([r.incidents for r in recs], ignore_index=True),
        "actions": pd.concat([r.actions.assign(site_code=r.site["site_code"]) for r in recs], ignore_index=True),
        "exposure": pd.concat([r.exposure.assign(site_code=r.site["site_code"]) for r in recs],
                              ignore_index=True),
    }
    sites = {r.site["site_code"]: r.site["setting"] for r in recs}
    return recs, frames, sites


# --- months ------------------------------------------------------------------------

def test_month_range_is_every_month_start_inclusive():
    idx = T.month_range("2025-11-17", pd.Timestamp("2026-02-03"))
    assert list(idx) == months_of("2025-11", "2026-02")
    assert idx.name == "month"
    assert list(T.month_range(pd.Period("2026-03", "M"), "2026-03")) == [pd.Timestamp("2026-03-01")]
    with pytest.raises(ValueError):
        T.month_range("2026-03", "2026-01")


def test_default_months_span_the_data_and_stop_at_today():
    dates = pd.Series(pd.to_datetime(["2025-03-09", None, "2025-06-30", "2027-01-01"]))
    assert list(T.resolve_months(None, dates)) == months_of("2025-03", "2027-01")
    assert list(T.resolve_months(None, dates, today="2025-08-02")) == months_of("2025-03", "2025-08")
    assert T.resolve_months(None, pd.Series([], dtype="datetime64[ns]")).empty
    typo = pd.Series(pd.to_datetime(["1926-05-01", "2026-05-01"]))  # a mistyped year
    assert len(T.resolve_months(None, typo)) == T.MAX_DEFAULT_MONTHS
    assert T.resolve_months(None, typo)[-1] == pd.Timestamp("2026-05-01")
    with pytest.raises(ValueError):
        T.resolve_months("2026-01")


# --- monthly counts ----------------------------------------------------------------

def test_monthly_counts_match_pandas_groupby(site):
    inc = site.incidents
    tidy = T.monthly_counts(inc)
    expected = inc.groupby([month_of(inc["occurred_at"]), "category", "physical_harm"]).size()
    got = tidy.set_index(["month", "category", "physical_harm"])["count"]
    assert (got[got > 0].sort_index() == expected.sort_index()).all()
    assert len(got[got > 0]) == len(expected)
    assert got.sum() == len(inc)
    # every month x every code of both lists, in code-list order
    n_months = inc["occurred_at"].dt.to_period("M").nunique()
    assert len(tidy) == n_months * len(CODE_LISTS["category"]) * len(CODE_LISTS["physical_harm"])
    assert list(tidy["category"].drop_duplicates()) == list(CODE_LISTS["category"])

    wide = T.monthly_counts(inc, by=("category",), wide=True)
    plain = pd.crosstab(month_of(inc["occurred_at"]), inc["category"])
    for cat in plain.columns:
        assert wide[cat].tolist() == plain[cat].tolist()
    assert wide.loc[:, ~wide.columns.isin(plain.columns)].eq(0).all().all()


def test_months_with_no_reports_are_zero_and_blanks_are_counted():
    inc = incident_rows([
        ("2026-01-03", "near_miss", "falls", "none"),
        ("2026-01-28", "incident", "falls", "low"),
        ("2026-03-31", "incident", "medication", "none"),
        ("2026-03-02", "incident", None, "none"),
        (None, "incident", "falls", "low"),  # undated: cannot be placed in a month
    ])
    wide = T.monthly_counts(inc, by=(), wide=True)
    assert wide["count"].tolist() == [2, 0, 2]
    assert list(wide.index) == months_of("2026-01", "2026-03")
    by_cat = T.monthly_counts(inc, by=("category",), wide=True)
    assert by_cat["falls"].tolist() == [2, 0, 0]
    assert by_cat[T.MISSING].tolist() == [0, 0, 1]
    assert by_cat.columns[-1] == T.MISSING
    # a given range: months before and after the data are zeros, outside rows are left out
    ranged = T.monthly_counts(inc, by=(), months=("2025-12", "2026-02"), wide=True)
    assert ranged["count"].tolist() == [0, 2, 0]
    tidy = T.monthly_counts(inc, by=("event_type",), months=("2026-02", "2026-02"))
    assert tidy["count"].tolist() == [0, 0] and tidy["event_type"].tolist() == ["near_miss", "incident"]


def test_near_miss_share_matches_pandas_and_is_nan_without_reports(site):
    inc = site.incidents
    share = T.near_miss_share(inc)
    month = month_of(inc["occurred_at"])
    nm = (inc["event_type"] == "near_miss").groupby(month).sum()
    reports = inc["event_type"].isin(["near_miss", "incident"]).groupby(month).sum()
    assert share["near_misses"].tolist() == nm.tolist()
    assert share["reports"].tolist() == reports.tolist()
    assert np.allclose(share["share"], nm / reports)

    hand = incident_rows([("2026-01-03", "near_miss", "falls", "none"),
                          ("2026-01-04", "incident", "falls", "low"),
                          ("2026-01-05", "near_miss", "equipment", "none"),
                          ("2026-03-01", "incident", "falls", "none")])
    s = T.near_miss_share(hand)
    assert s["near_misses"].tolist() == [2, 0, 0]
    assert s["incidents"].tolist() == [1, 0, 1]
    assert s["share"].iloc[0] == pytest.approx(2 / 3)
    assert np.isnan(s["share"].iloc[1]) and s["share"].iloc[2] == 0


# --- exposure and rates ------------------------------------------------------------

def test_exposure_unit_follows_the_setting(site):
    care_home = T.exposure_by_month(site.exposure, "care_home")
    assert care_home.name == "occupied_bed_days"
    assert care_home.tolist() == site.exposure["occupied_bed_days"].tolist()
    hc = make_site("ELM", end=DATA_END, seed=2, setting="homecare", months=6)
    hours = T.exposure_by_month(hc.exposure, "homecare")
    assert hours.name == "care_hours" and hours.tolist() == hc.exposure["care_hours"].tolist()
    assert T.exposure_unit("supported_living") == "care_hours" and T.exposure_unit("nonsense") is None
    with pytest.raises(ValueError):
        T.exposure_by_month(site.exposure, "castle")


def test_rates_per_1000_with_missing_and_zero_exposure():
    exposure = pd.DataFrame({"month": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-04-15"]),
                             "occupied_bed_days": [1200.0, 0.0, 1000.0], "care_hours": np.nan})
    expo = T.exposure_by_month(exposure, "care_home", months=("2026-01", "2026-04"))
    assert expo.iloc[0] == 1200 and np.isnan(expo.iloc[1]) and np.isnan(expo.iloc[2]) and expo.iloc[3] == 1000
    counts = pd.Series([6, 3, 2, 5], index=T.month_range("2026-01", "2026-04"))
    r = T.rates(counts, expo)
    assert r.iloc[0] == pytest.approx(5.0) and r.iloc[3] == pytest.approx(5.0)
    assert np.isnan(r.iloc[1]) and np.isnan(r.iloc[2])
    assert not np.isinf(r).any()
    wide = T.rates(pd.DataFrame({"a": counts, "b": counts * 2}), expo)
    assert wide["b"].iloc[0] == pytest.approx(10.0) and np.isnan(wide["b"].iloc[1])


def test_pooled_rate_is_sum_over_sum_of_sites_with_exposure():
    idx = pd.MultiIndex.from_product([["A", "B"], T.month_range("2026-01", "2026-02")],
                                     names=["site_code", "month"])
    counts = pd.Series([4, 6, 10, 9], index=idx)
    exposure = pd.Series([1000.0, 2000.0, 3000.0, np.nan], index=idx)
    pooled = T.pooled_rate(counts, exposure)
    assert pooled.iloc[0] == pytest.approx((4 + 10) / 4000 * 1000)
    assert pooled.iloc[1] == pytest.approx(6 / 2000 * 1000)  # site B has no exposure in February


# --- actions -----------------------------------------------------------------------

HAND_ACTIONS = action_rows([
    ("A1", "2026-01-05", "2026-01-20", "done", "2026-01-18"),  # on time
    ("A2", "2026-01-10", "2026-01-25", "done", "2026-02-10"),  # late: overdue at the end of January
    ("A3", "2026-01-15", "2026-02-28", "open", None),  # due on the last day of February: overdue from March
    ("A4", "2026-02-01", "2026-02-10", "cancelled", None),  # counts only as opened
    ("A5", "2026-02-05", "2026-03-31", "in_progress", None),  # not due yet: outcome not known
    ("A6", "2026-03-01", "2026-03-10", "in_progress", None),  # overdue now
    ("A7", "2026-03-02", "2026-03-20", "done", "2026-03-05"),  # on time, early
    ("A8", "2025-12-01", "2025-12-15", "done", "2026-02-03"),  # raised before the range, overdue in January
    ("A9", "2026-01-02", "2026-01-03", "done", None),  # done with no date: never overdue, not on time
])
HAND_TODAY = "2026-03-15"


def test_action_stats_by_hand():
    stats = T.action_stats(HAND_ACTIONS, today=HAND_TODAY, months=("2026-01", "2026-03"))
    m = stats.monthly
    assert list(m.index) == months_of("2026-01", "2026-03")
    assert m["opened"].tolist() == [4, 2, 2]
    assert m["done"].tolist() == [1, 2, 1]
    assert m["due"].tolist() == [3, 1, 3]
    assert m["due_outcome_known"].tolist() == [3, 1, 2]
    assert m["done_by_due_date"].tolist() == [1, 0, 1]
    assert m["pct_done_by_due_date"].tolist() == pytest.approx([100 / 3, 0.0, 50.0])
    assert m["overdue_at_month_end"].tolist() == [2, 0, 2]
    now = stats.now
    assert now.to_dict() == {"open": 1, "in_progress": 2, "done": 5, "cancelled": 1, "overdue": 2, "total": 9}
    # the current month's "month end" is today, so it agrees with overdue now
    assert m["overdue_at_month_end"].iloc[-1] == now["overdue"]


def test_action_stats_months_after_today_and_default_span():
    stats = T.action_stats(HAND_ACTIONS, today=HAND_TODAY, months=("2026-03", "2026-05"))
    assert stats.monthly["overdue_at_month_end"].iloc[0] == 2
    assert stats.monthly["overdue_at_month_end"].iloc[1:].isna().all()
    assert stats.monthly["due"].tolist() == [3, 0, 0]
    default = T.action_stats(HAND_ACTIONS, today=HAND_TODAY)  # raised/completed span, up to today
    assert list(default.monthly.index) == months_of("2025-12", "2026-03")


def test_overdue_at_month_end_matches_a_plain_count_per_month(site):
    acts = site.actions
    stats = T.action_stats(acts, today=TODAY)
    for month, got in stats.monthly["overdue_at_month_end"].items():
        day = min(month + pd.offsets.MonthEnd(0), TODAY)
        open_then = (acts["status"].isin(["open", "in_progress"])
                     | ((acts["status"] == "done") & (acts["completed_date"] > day)))
        expected = (open_then & (acts["raised_date"] <= day) & (acts["due_date"] < day)).sum()
        assert got == expected, month
    due_month = month_of(acts["due_date"])
    live = acts[acts["status"] != "cancelled"]
    known = live[(live["status"] == "done") | (live["due_date"] < TODAY)]
    on_time = known[(known["status"] == "done") & (known["completed_date"] <= known["due_date"])]
    exp_pct = (on_time.groupby(due_month).size() / known.groupby(due_month).size() * 100).dropna()
    got = stats.monthly["pct_done_by_due_date"].dropna()
    common = got.index.intersection(exp_pct.index)
    assert len(common) > 12
    assert np.allclose(got[common], exp_pct.reindex(common).fillna(0))
    assert stats.now["overdue"] == (acts["status"].isin(["open", "in_progress"]) & (acts["due_date"] < TODAY)).sum()


# --- measures ----------------------------------------------------------------------

def test_measure_directions_come_from_the_declarations():
    d = M.DEFAULT_DIRECTIONS
    for name in ("incidents_with_harm", "falls_with_harm", "medication_errors_reached", "overdue_actions"):
        assert d[name] == "decrease"
    for name in ("near_misses", "near_miss_share", "actions_on_time"):
        assert d[name] == "increase"
    falls = M.get("falls_with_harm")
    assert falls.where["category"] == ("falls",) and set(falls.where["physical_harm"]) == set(HARM_LEVELS)
    assert falls.exposure_rate and not M.get("near_miss_share").exposure_rate
    changed = M.with_directions(M.KEY_MEASURES, {"near_misses": "neutral"})
    assert [m.improvement for m in changed if m.name == "near_misses"] == ["neutral"]
    assert M.get("near_misses").improvement == "increase"  # the defaults are untouched
    with pytest.raises(ValueError):
        M.with_directions(M.KEY_MEASURES, {"falls_with_harms": "decrease"})
    with pytest.raises(ValueError):
        M.with_directions(M.KEY_MEASURES, {"falls_with_harm": "down"})
    with pytest.raises(ValueError):
        M.Measure("bad", "bad", "incidents", "count", "decrease", where={"category": ("fall",)})
    json.dumps([m.to_dict() for m in M.MEASURES])


def test_measure_series_match_plain_filters(site):
    inc = site.incidents
    month = month_of(inc["occurred_at"])
    harmed = (inc["event_type"] == "incident") & inc["physical_harm"].isin(HARM_LEVELS)
    checks = {
        "all_reports": pd.Series(True, index=inc.index),
        "near_misses": inc["event_type"] == "near_miss",
        "incidents_with_harm": harmed,
        "falls_with_harm": harmed & (inc["category"] == "falls"),
        "medication_errors_reached": (inc["event_type"] == "incident") & (inc["category"] == "medication"),
    }
    for name, mask in checks.items():
        got = T.measure_series(site, name, today=TODAY)
        expected = mask.groupby(month).sum().reindex(got.index, fill_value=0)
        assert got.tolist() == expected.astype(float).tolist(), name
    share = T.measure_series(site, "near_miss_share", today=TODAY)
    assert np.allclose(share, checks["near_misses"].groupby(month).mean())
    overdue = T.measure_series(site, "overdue_actions", today=TODAY)
    stats = T.action_stats(site.actions, today=TODAY, months=(overdue.index[0], overdue.index[-1]))
    assert overdue.tolist() == stats.monthly["overdue_at_month_end"].tolist()
    rate = T.measure_series(site, M.Measure("falls_rate", "falls per 1,000 bed days", "incidents", "rate",
                                            "decrease", where={"category": ("falls",)}), today=TODAY)
    falls = (inc["category"] == "falls").groupby(month).sum()
    beds = site.exposure.set_index("month")["occupied_bed_days"]
    assert np.allclose(rate, (falls / beds * 1000).reindex(rate.index))


# --- key measures and SPC ---------------------------------------------------------

def test_seven_months_above_average_is_a_concern_for_falls_with_harm():
    counts = [3, 1] * 6 + [3] * 7
    inc = falls_with_harm_incidents(counts)
    results = {r.name: r for r in T.key_measures(inc, None, today="2026-07-31")}
    falls = results["falls_with_harm"]
    assert falls.series.tolist() == counts
    assert falls.improvement == "decrease"
    assert "7 months" in falls.signal and "above average" in falls.signal
    assert falls.latest_point_type == "special_cause_concern"
    assert falls.spc["rule"].iloc[-7:].eq("shift").all()
    assert not falls.trial_limits
    assert falls.signal == describe_signal(xmr(counts, improvement="decrease"), "falls with harm")
    # the same months read as improvement when someone declares falls with harm "increase"
    flipped = T.key_measures(inc, None, today="2026-07-31", directions={"falls_with_harm": "increase"},
                             measures=["falls_with_harm"])[0]
    assert flipped.latest_point_type == "special_cause_improvement"


def test_short_and_empty_series_do_not_crash():
    one = incident_rows([("2026-03-04", "incident", "falls", "low")])
    results = T.key_measures(one, None, today="2026-03-20")
    assert all(r.trial_limits for r in results)
    falls = next(r for r in results if r.name == "falls_with_harm")
    assert falls.series.tolist() == [1.0] and falls.latest_point_type == "common_cause"
    assert "no signal" in falls.signal
    on_time = next(r for r in results if r.name == "actions_on_time")
    assert on_time.latest_point_type is None and on_time.series.isna().all()
    json.dumps([r.to_dict() for r in results], allow_nan=False)
    empty = T.key_measures(empty_frame("incidents"), None, today="2026-03-20")
    assert all(r.series.empty and r.trial_limits and r.latest_point_type is None for r in empty)
    json.dumps([r.to_dict() for r in empty], allow_nan=False)


def test_months_without_a_value_are_left_out_of_the_chart():
    inc = incident_rows([("2026-01-03", "near_miss", "falls", "none"),
                         ("2026-03-05", "incident", "falls", "none"),
                         ("2026-04-05", "near_miss", "falls", "none")])
    share = T.key_measures(inc, None, today="2026-04-30", measures=["near_miss_share"])[0]
    assert share.series.tolist()[0] == 1.0 and np.isnan(share.series.iloc[1])
    chart = share.spc
    assert np.isnan(chart["mean"].iloc[1]) and pd.isna(chart["point_type"].iloc[1])
    expected = xmr([1.0, 0.0, 1.0], improvement="increase")
    assert chart["mean"].dropna().tolist() == pytest.approx(expected["mean"].tolist())
    d = share.to_dict()
    assert d["months"] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert d["values"][1] is None and d["spc"]["point_type"][1] is None and d["points"] == 3
    assert d["latest_month"] == "2026-04" and d["trial_limits"] is True


def test_key_measure_rates_use_the_site_exposure(site):
    results = {r.name: r for r in T.key_measures(site.incidents, site.actions, site.exposure, "care_home",
                                                  today=TODAY)}
    falls = results["falls_with_harm"]
    beds = site.exposure.set_index("month")["occupied_bed_days"].reindex(falls.series.index)
    assert falls.rate_unit == "occupied_bed_days"
    assert np.allclose(falls.rate, falls.series / beds * 1000)
    assert results["near_miss_share"].rate is None
    no_setting = T.key_measures(site.incidents, site.actions, site.exposure, None, today=TODAY)
    assert all(r.rate is None for r in no_setting)


# --- summaries ---------------------------------------------------------------------

def test_site_summary_figures_and_json(site):
    out = T.site_summary(site, today=TODAY)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["scope"] == "site"
    inc = site.incidents
    month = month_of(inc["occurred_at"])
    assert out["months"][0] == f"{month.min():%Y-%m}" and out["months"][-1] == "2026-10"
    assert out["reports"]["all_reports"] == inc.groupby(month).size().tolist()
    assert out["reports"]["total"] == len(inc)
    assert out["site"] == {"site_code": "OAK", "site_name": "Oakview House", "setting": "care_home",
                           "exposure_unit": "occupied_bed_days"}
    expected = inc.groupby(["category", "physical_harm"]).size()
    got = {(s["category"], s["physical_harm"]): s["total"] for s in out["counts"]["series"]}
    assert got == expected.to_dict()
    falls = next(c for c in out["by_category"] if c["category"] == "falls")
    assert falls["counts"] == (inc["category"] == "falls").groupby(month).sum().tolist()
    assert [c["category"] for c in out["by_category"]] == list(CODE_LISTS["category"])
    closed = inc[inc["status"] == "closed"]
    assert {t["theme"]: t["count"] for t in out["learning_themes"]} == closed["learning_theme"].value_counts().to_dict()
    counts = [t["count"] for t in out["learning_themes"]]
    assert counts == sorted(counts, reverse=True)
    rates = out["rates"]
    assert len(rates) == 1 and rates[0]["unit"] == "occupied_bed_days"
    assert rates[0]["values"]["all_reports"] == pytest.approx(
        (inc.groupby(month).size() / site.exposure.set_index("month")["occupied_bed_days"] * 1000).tolist())
    acts = out["actions"]
    assert acts["now"]["total"] == len(site.actions)
    assert acts["now"]["overdue"] == int((site.actions["status"].isin(["open", "in_progress"])
                                          & (site.actions["due_date"] < TODAY)).sum())
    names = [k["name"] for k in out["key_measures"]]
    assert names == list(M.KEY_MEASURES) and [m["name"] for m in out["measures"]] == names
    for k in out["key_measures"]:
        series = T.measure_series(site, k["name"], today=TODAY)
        assert k["values"] == [None if np.isnan(v) else v for v in series], k["name"]
        assert k["signal"].startswith(M.get(k["name"]).label)


def test_area_totals_are_the_sum_of_the_sites(area):
    recs, frames, sites = area
    out = T.area_summary(frames, sites, today=TODAY)
    json.dumps(out, allow_nan=False)
    assert [s["site_code"] for s in out["sites"]] == list(sites)
    per = out["per_site"]
    months = out["months"]
    for key in ("all_reports", "near_misses", "incidents", "incidents_with_harm"):
        assert out["reports"][key] == list(np.sum([per[s]["reports"][key] for s in sites], axis=0)), key
    for key in ("opened", "done", "due", "done_by_due_date", "overdue_at_month_end"):
        assert out["actions"]["monthly"][key] == pytest.approx(
            list(np.sum([per[s]["actions"]["monthly"][key] for s in sites], axis=0))), key
    for key in out["actions"]["now"]:
        assert out["actions"]["now"][key] == sum(per[s]["actions"]["now"][key] for s in sites)
    area_cells = {(c["category"], c["physical_harm"]): c["counts"] for c in out["counts"]["series"]}
    summed: dict = {}
    for s in sites:
        for c in per[s]["counts"]["series"]:
            key = (c["category"], c["physical_harm"])
            summed[key] = list(np.add(summed.get(key, [0] * len(months)), c["counts"]))
    assert area_cells == summed
    themes = pd.concat([r.incidents for r in recs])
    themes = themes[themes["status"] == "closed"]["learning_theme"].str.strip().str.lower()
    assert {t["theme"]: t["count"] for t in out["learning_themes"]} == themes[themes != ""].value_counts().to_dict()
    assert out["reports"]["total"] == len(frames["incidents"])
    falls = next(k for k in out["key_measures"] if k["name"] == "falls_with_harm")
    assert falls["values"] == list(np.sum([next(k for k in per[s]["key_measures"]
                                                if k["name"] == "falls_with_harm")["values"] for s in sites],
                                          axis=0).astype(float))
    assert falls["rate"] is None  # bed days and care hours cannot be pooled into one rate


def test_each_site_of_the_area_reads_as_it_does_alone(area):
    recs, frames, sites = area
    out = T.area_summary(frames, sites, today=TODAY, months=("2024-11", "2026-10"))
    for rec in recs:
        alone = T.site_summary(rec, today=TODAY, months=("2024-11", "2026-10"))
        mine = out["per_site"][rec.site["site_code"]]
        for key in ("reports", "counts", "by_category", "actions", "learning_themes", "key_measures"):
            assert mine[key] == alone[key], (rec.site["site_code"], key)
        assert mine["rates"][0]["values"] == alone["rates"][0]["values"]
        # and each chart is the one xmr draws for that site's series alone
        for k in mine["key_measures"]:
            values = [v for v in k["values"] if v is not None]
            chart = xmr(values, improvement=k["improvement"])
            assert [m for m in k["spc"]["mean"] if m is not None] == pytest.approx(chart["mean"].tolist())
            assert [p for p in k["spc"]["point_type"] if p is not None] == chart["point_type"].tolist()


def test_area_rates_are_pooled_per_exposure_unit(area):
    recs, frames, sites = area
    out = T.area_summary(frames, sites, today=TODAY)
    groups = {g["unit"]: g for g in out["rates"]}
    assert set(groups) == {"occupied_bed_days", "care_hours"}
    beds = groups["occupied_bed_days"]
    assert beds["site_codes"] == ["OAK", "ASH"]
    month_index = pd.PeriodIndex(out["months"], freq="M").to_timestamp()
    num = pd.Series(0.0, index=month_index)
    den = pd.Series(0.0, index=month_index)
    for rec in recs:
        if rec.site["setting"] != "care_home":
            continue
        expo = rec.exposure.set_index("month")["occupied_bed_days"].reindex(month_index)
        counts = rec.incidents.groupby(month_of(rec.incidents["occurred_at"])).size().reindex(month_index,
                                                                                              fill_value=0)
        num += counts.where(expo > 0, 0)
        den += expo.fillna(0)
    assert beds["values"]["all_reports"] == pytest.approx((num / den * 1000).tolist())
    assert beds["exposure"] == pytest.approx(den.tolist())


def test_one_unit_area_has_pooled_key_measure_rates():
    recs = [make_site("OAK", end=DATA_END, seed=5, months=12), make_site("ASH", end=DATA_END, seed=6, months=12)]
    frames = {"incidents": pd.concat([r.incidents for r in recs]),
              "actions": pd.concat([r.actions.assign(site_code=r.site["site_code"]) for r in recs]),
              "exposure": pd.concat([r.exposure.assign(site_code=r.site["site_code"]) for r in recs])}
    out = T.area_summary(frames, {"OAK": {"setting": "care_home", "site_name": "Oakview"}, "ASH": "care_home",
                                  "PINE": "care_home"}, today=TODAY)
    assert [s["site_code"] for s in out["sites"]] == ["OAK", "ASH", "PINE"]
    assert out["sites"][0]["site_name"] == "Oakview"
    assert out["per_site"]["PINE"]["reports"]["total"] == 0  # a listed site with no rows still appears
    harm = next(k for k in out["key_measures"] if k["name"] == "incidents_with_harm")
    assert harm["rate"]["unit"] == "occupied_bed_days"
    group = out["rates"][0]
    assert harm["rate"]["values"] == pytest.approx(group["values"]["incidents_with_harm"])
    assert T.area_summary(frames, {"OAK": "care_home", "ASH": "care_home"}, today=TODAY,
                          per_site_spc=False)["per_site"]["OAK"]["key_measures"] == []


def test_many_sites_need_a_site_code_on_every_frame(area):
    _, frames, sites = area
    bad = dict(frames, actions=frames["actions"].drop(columns="site_code"))
    with pytest.raises(ValueError, match="site_code"):
        T.area_summary(bad, sites, today=TODAY)


def test_pooled_functions_over_concatenated_frames(area):
    recs, frames, sites = area
    wide = T.monthly_counts(frames["incidents"], by=("event_type",), site_col="site_code", wide=True)
    for rec in recs:
        alone = T.monthly_counts(rec.incidents, by=("event_type",), months=(wide.index[0][1], wide.index[-1][1]),
                                 wide=True)
        assert wide.loc[rec.site["site_code"]].to_numpy().tolist() == alone.to_numpy().tolist()
    series = T.measure_series(frames, "near_misses", today=TODAY, site_col="site_code")
    nm = frames["incidents"]["event_type"] == "near_miss"
    assert series.tolist() == nm.groupby(month_of(frames["incidents"]["occurred_at"])).sum().astype(float).tolist()
    expo = T.exposure_by_month(frames["exposure"], sites, site_col="site_code")
    assert expo.loc["ELM"].tolist() == recs[1].exposure["care_hours"].tolist()
    assert expo.loc["ASH"].iloc[:12].isna().all()  # ASH's log starts a year later
    assert expo.loc["ASH"].iloc[12:].tolist() == recs[2].exposure["occupied_bed_days"].tolist()


def test_summary_of_a_small_hand_made_log_and_of_an_empty_one():
    inc = incident_rows([
        ("2026-01-03", "near_miss", "falls", "none", "closed", "Handover "),
        ("2026-01-20", "incident", "falls", "moderate", "closed", "handover"),
        ("2026-03-09", "incident", "medication", "none", "closed", "medication_rounds"),
        ("2026-03-10", "incident", "medication", "low", "open", ""),
        (None, "incident", "falls", "low"),
        ("2016-03-10", "incident", "falls", "low"),  # before the months asked for
    ])
    records = SiteRecords(site={"site_code": "OAK", "site_name": "Oak", "setting": "castle"}, incidents=inc,
                          actions=HAND_ACTIONS, exposure=None)
    out = T.site_summary(records, today=HAND_TODAY, months=("2026-01", "2026-03"))
    json.dumps(out, allow_nan=False)
    assert out["months"] == ["2026-01", "2026-02", "2026-03"]
    r = out["reports"]
    assert r["all_reports"] == [2, 0, 2] and r["near_misses"] == [1, 0, 0] and r["incidents_with_harm"] == [1, 0, 1]
    assert r["near_miss_share"] == [0.5, None, 0.0]
    assert (r["total"], r["undated"], r["outside_months"]) == (4, 1, 1)
    assert out["learning_themes"] == [{"theme": "handover", "count": 2}, {"theme": "medication_rounds", "count": 1}]
    assert out["rates"] == [] and out["site"]["exposure_unit"] is None  # unknown setting: no rates
    series = {(c["category"], c["physical_harm"]): c["counts"] for c in out["counts"]["series"]}
    assert series == {("falls", "none"): [1, 0, 0], ("falls", "moderate"): [1, 0, 0],
                      ("medication", "none"): [0, 0, 1], ("medication", "low"): [0, 0, 1]}
    a = out["actions"]
    assert a["monthly"]["overdue_at_month_end"] == [2, 0, 2]
    assert a["pct_done_by_due_date"] == pytest.approx(100 * 2 / 6)
    assert a["now"]["overdue"] == 2
    on_time = next(k for k in out["key_measures"] if k["name"] == "actions_on_time")
    assert on_time["values"] == pytest.approx([100 / 3, 0.0, 50.0]) and on_time["trial_limits"]

    empty = T.site_summary(SiteRecords(site={"site_code": "NEW", "setting": "homecare"}), today=HAND_TODAY)
    json.dumps(empty, allow_nan=False)
    assert empty["months"] == [] and empty["reports"]["total"] == 0
    assert all(k["signal"].endswith("no data") for k in empty["key_measures"])


def test_spc_options_apply_to_each_site_chart(area):
    _, frames, sites = area
    out = T.area_summary(frames, sites, today=TODAY, spc_options={"fix_after_n_points": 12})
    for code in sites:
        k = next(k for k in out["per_site"][code]["key_measures"] if k["name"] == "incidents_with_harm")
        values = [v for v in k["values"] if v is not None]
        chart = xmr(values, improvement="decrease", fix_after_n_points=12)
        assert [u for u in k["spc"]["upl"] if u is not None] == pytest.approx(chart["upl"].tolist())
        assert k["signal"] == describe_signal(chart, "incidents with harm")


@pytest.mark.parametrize("first_out", ["outer", "inner"])
def test_gc_paused_nested_across_threads_restores_collection(first_out):
    """Two overlapping pauses in two threads, ending in either order: collection is on again after both."""
    import gc
    import threading

    entered, release, done = ({k: threading.Event() for k in ("outer", "inner")} for _ in range(3))
    seen = {}

    def use(name):
        with T.gc_paused():
            seen[name] = gc.isenabled()
            entered[name].set()
            release[name].wait(5)
        done[name].set()

    assert gc.isenabled()
    threads = {k: threading.Thread(target=use, args=(k,)) for k in ("outer", "inner")}
    try:
        threads["outer"].start()
        assert entered["outer"].wait(5)
        threads["inner"].start()
        assert entered["inner"].wait(5)
        assert not gc.isenabled()
        second_out = "inner" if first_out == "outer" else "outer"
        release[first_out].set()
        assert done[first_out].wait(5)
        release[second_out].set()
        assert done[second_out].wait(5)
    finally:
        for k in release:
            release[k].set()
        for t in threads.values():
            t.join(5)
    assert seen == {"outer": False, "inner": False}
    assert gc.isenabled()


def test_gc_paused_leaves_collection_off_when_it_was_off():
    import gc

    gc.disable()
    try:
        with T.gc_paused():
            with T.gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with T.gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
