"""The fast area summary gives byte for byte what the plain one gave.

``trends_expected.json`` holds the sha256 of the summaries (JSON with sorted keys, by orjson,
so every float to its last bit) that :func:`addin.trends.area_summary` and
:func:`addin.trends.site_summary` gave before the area summary was made fast (issue 5), for
synthetic areas built here in memory: sites of every setting, a listed site with no rows, a site
of an unknown setting, a site found only in the frames, and a site of odd data (blank, unknown
and missing codes, undated and far-off reports, zero, missing and doubled exposure, actions
cancelled or done with no date).  The fast building blocks (months through a table of days,
site codes factorized per run) are compared with the plain ways they replace.  No timing is
asserted.

Regenerate (only when a summary is MEANT to change) with
``python -m tests.test_trends_speed_equivalence``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from addin import trends as T
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site

EXPECTED = Path(__file__).with_name("trends_expected.json")
END = dt.date(2026, 10, 31)
TODAY = pd.Timestamp(END)


def _odd_site() -> SiteRecords:
    """A site whose log has most of the oddities real logs have."""
    rec = make_site("ODD", site_name="Odd Lodge", end=END, seed=21, months=18, reports_per_month=9,
                    flaw_rate=0.1)
    inc, act, expo = rec.incidents.copy(), rec.actions.copy(), rec.exposure.copy()
    inc.loc[0, "category"] = ""
    inc.loc[1, "category"] = None
    inc.loc[2, "category"] = "made_up_category"
    inc.loc[3, "physical_harm"] = None
    inc.loc[4, "event_type"] = None
    inc.loc[5, "event_type"] = "  "
    inc.loc[6, "occurred_at"] = pd.NaT
    inc.loc[7, "occurred_at"] = pd.Timestamp("2011-02-03")
    inc.loc[8, "occurred_at"] = pd.Timestamp("2027-03-04")  # after today
    closed = inc.index[inc["status"] == "closed"]
    inc.loc[closed[:3], "learning_theme"] = [" Handover ", "HANDOVER", "  "]
    inc.loc[closed[3], "learning_theme"] = None
    act.loc[0, "status"] = "cancelled"
    act.loc[1, "due_date"] = pd.NaT
    act.loc[2, ["status", "completed_date"]] = ["done", pd.NaT]
    act.loc[3, "raised_date"] = pd.NaT
    act.loc[4, "status"] = None
    act.loc[5, ["status", "completed_date"]] = ["open", pd.NaT]
    expo.loc[2, "occupied_bed_days"] = 0
    expo.loc[3, "occupied_bed_days"] = np.nan
    expo.loc[4, "occupied_bed_days"] = -5
    expo = pd.concat([expo, expo.iloc[[6]]], ignore_index=True)  # one month given twice: summed
    return SiteRecords(site=rec.site, incidents=inc, actions=act, exposure=expo)


def _area(recs: list[SiteRecords]) -> dict:
    return {
        "incidents": pd.concat([r.incidents.assign(site_code=r.site["site_code"]) for r in recs], ignore_index=True),
        "actions": pd.concat([r.actions.assign(site_code=r.site["site_code"]) for r in recs], ignore_index=True),
        "exposure": pd.concat([r.exposure.assign(site_code=r.site["site_code"]) for r in recs], ignore_index=True),
    }


def areas() -> dict[str, tuple[dict, dict, list[SiteRecords]]]:
    """name -> (frames, sites, records) of each synthetic area."""
    mixed = [make_site("OAK", end=END, seed=1, months=24),
             make_site("ELM", end=END, seed=2, setting="homecare", reports_per_month=5, months=24),
             make_site("ASH", end=END, seed=3, months=12, beds=20),
             make_site("YEW", end=END, seed=4, setting="supported_living", flaw_rate=0.05, months=20),
             make_site("FIR", end=END, seed=5, setting="complex_care_at_home", reports_per_month=2, months=24),
             make_site("CAS", end=END, seed=6, months=10, reports_per_month=3),
             _odd_site(),
             make_site("ZED", end=END, seed=7, months=6, reports_per_month=4)]
    mixed_sites = {"OAK": {"setting": "care_home", "site_name": "Oakview"}, "ELM": "homecare",
                   "ASH": "care_home", "YEW": "supported_living", "FIR": "complex_care_at_home",
                   "CAS": "castle",  # an unknown setting: no rates
                   "ODD": {"setting": "care_home", "site_name": "Odd Lodge"},
                   "NEW": "care_home"}  # listed, no rows; ZED is found only in the frames
    one_unit = [make_site("PIN", end=END, seed=8, months=15), make_site("BAY", end=END, seed=9, months=15, beds=60)]
    one_unit_sites = {"BAY": "care_home", "PIN": "care_home", "NONE": "care_home"}
    return {"mixed": (_area(mixed), mixed_sites, mixed), "one_unit": (_area(one_unit), one_unit_sites, one_unit)}


CASES = {  # name -> area_summary keyword arguments
    "default": {},
    "no_per_site_spc": {"per_site_spc": False},
    "months_past_today": {"months": ("2025-09", "2027-01")},
    "months_short": {"months": ("2026-05", "2026-10")},
    "fixed_limits": {"spc_options": {"fix_after_n_points": 12}},
    "unscreened_neutral": {"spc_options": {"screen_outliers": False},
                           "directions": {"near_misses": "neutral", "overdue_actions": "increase"}},
}


def canonical(summary: dict) -> bytes:
    return orjson.dumps(summary, option=orjson.OPT_SORT_KEYS)


def digests_now() -> dict[str, str]:
    out = {}
    for area_name, (frames, sites, recs) in areas().items():
        for case, kwargs in CASES.items():
            summary = T.area_summary(frames, sites, today=TODAY, **kwargs)
            out[f"area/{area_name}/{case}"] = hashlib.sha256(canonical(summary)).hexdigest()
        for rec in recs[:2] + recs[-2:]:
            summary = T.site_summary(rec, today=TODAY)
            out[f"site/{area_name}/{rec.site['site_code']}"] = hashlib.sha256(canonical(summary)).hexdigest()
    return out


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    return json.loads(EXPECTED.read_text(encoding="utf-8"))


def test_summaries_are_byte_for_byte_the_ones_before(expected):
    now = digests_now()
    assert sorted(now) == sorted(expected)
    changed = [k for k in now if now[k] != expected[k]]
    assert not changed, f"summaries changed: {changed}"


def test_the_pinned_areas_have_what_they_are_meant_to_have():
    frames, sites, _ = areas()["mixed"]
    summary = T.area_summary(frames, sites, today=TODAY)
    assert [s["site_code"] for s in summary["sites"]] == [*sites, "ZED"]
    assert summary["per_site"]["NEW"]["reports"]["total"] == 0
    assert summary["per_site"]["CAS"]["rates"] == []
    odd = summary["per_site"]["ODD"]["reports"]
    assert odd["undated"] == 1 and odd["outside_months"] >= 2
    assert {g["unit"] for g in summary["rates"]} == {"occupied_bed_days", "care_hours"}


@pytest.mark.parametrize("dates", [
    ["2026-01-31", None, "2025-12-01", "1969-12-31", "2026-02-28"],  # a table of the days spanned
    ["2026-01-31", "2206-05-01", None, "1900-03-01"],  # far apart: converted directly
    [None, None],
])
def test_months_of_days_are_numpys_months(dates):
    days = pd.to_datetime(pd.Series(dates)).to_numpy().astype("datetime64[D]").astype(np.int64)
    direct = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    assert T._month_of_days(days).tolist() == direct.tolist()
    assert T._months(pd.to_datetime(pd.Series(dates))).tolist() == direct.tolist()


@pytest.mark.parametrize("dtype", ["str", object])
def test_factorizing_site_codes_by_runs_is_factorizing_them_row_by_row(dtype):
    runs = ["OAK"] * 30 + [None] * 9 + [""] * 8 + ["ELM"] * 20 + [" "] * 10 + ["OAK"] * 12 + ["not_recorded"] * 9
    chunked = pd.concat([pd.Series(runs[:40], dtype=dtype), pd.Series(runs[40:], dtype=dtype)], ignore_index=True)
    scattered = pd.Series(runs[::7] * 3, dtype=dtype)  # few runs: factorized row by row
    for values in (pd.Series(runs, dtype=dtype), chunked, chunked.iloc[5:70], scattered, pd.Series([], dtype=dtype)):
        codes, uniques = T._factorize_runs(values)
        want_codes, want_uniques = T._factorize(values)
        assert codes.tolist() == want_codes.tolist() and uniques.tolist() == want_uniques.tolist()


if __name__ == "__main__":
    EXPECTED.write_text(json.dumps(digests_now(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {EXPECTED}")
