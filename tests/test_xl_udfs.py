"""The worksheet functions, called as plain Python with what Excel passes (ndim=2 lists, None, floats)."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from addin import spc
from addin.trends import rates
from addin.validate import validate_records
from addin.xl import functions, udfs
from tests.conftest import DATA_END
from workbook_templates.contract import INCIDENTS
from workbook_templates.records import SiteRecords
from workbook_templates.synthetic import make_site


def excel_value(v):
    """A value as xlwings hands it to a UDF: floats for numbers, datetime for dates, None for blanks."""
    if v is None or v is pd.NaT or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def excel_row(frame: pd.DataFrame, i: int) -> list[list]:
    """Row i of a log frame as the 1-row range of the Log's columns (derived columns hold a number)."""
    rec = frame.iloc[i]
    cells = []
    for f in INCIDENTS.fields:
        if f.type == "derived":
            cells.append(12.0 if f.name == "risk_score" else "high")  # whatever Excel computed: ignored
        else:
            cells.append(excel_value(rec[f.name]) if f.name in frame else None)
    return [cells]


# --- NEARMISS_RATE ---------------------------------------------------------------------------------------

def test_rate_hand_worked():
    assert udfs.NEARMISS_RATE(5.0, 2000.0) == 2.5
    assert udfs.NEARMISS_RATE(0.0, 1000.0) == 0.0
    assert udfs.NEARMISS_RATE(7.0, 3500.0) == pytest.approx(2.0)


@pytest.mark.parametrize("exposure", [None, 0.0, "", "  ", -10.0])
def test_rate_blank_or_zero_exposure_is_blank_not_div0(exposure):
    assert udfs.NEARMISS_RATE(5.0, exposure) == ""


def test_rate_blank_count_and_bad_input():
    assert udfs.NEARMISS_RATE(None, 2000.0) == ""
    assert udfs.NEARMISS_RATE("five", 2000.0) == "NEARMISS_RATE: count must be a number, not 'five'"
    assert udfs.NEARMISS_RATE(-1.0, 2000.0).startswith("NEARMISS_RATE: count must not be negative")
    assert udfs.NEARMISS_RATE(True, 2000.0).startswith("NEARMISS_RATE: count must be a number")


def test_rate_matches_the_core_rates_function():
    counts = [3.0, 0.0, 11.0, 4.0]
    exposure = [1200.0, 980.0, 1240.0, 0.0]
    core = rates(pd.Series(counts), pd.Series(exposure))
    for c, e, expected in zip(counts, exposure, core):
        got = udfs.NEARMISS_RATE(c, e)
        assert got == "" if math.isnan(expected) else got == pytest.approx(expected)


# --- NEARMISS_SPC ----------------------------------------------------------------------------------------

def test_spc_hand_worked_limits():
    # 1..5: mean 3, every moving range 1, so limits 3 -/+ 2.66.
    table = udfs.NEARMISS_SPC([[1.0], [2.0], [3.0], [4.0], [5.0]], "increase")
    assert table[0] == ["value", "mean", "lpl", "upl", "point_type", "rule"]
    assert len(table) == 6
    for row in table[1:]:
        assert row[1] == pytest.approx(3.0)
        assert row[2] == pytest.approx(3 - 2.66)
        assert row[3] == pytest.approx(3 + 2.66)
        assert row[4] == "common_cause" and row[5] == ""


def test_spc_matches_spc_xmr_and_flags_a_point_outside():
    series = [4.0, 5.0, 3.0, 4.0, 6.0, 5.0, 4.0, 3.0, 5.0, 4.0, 5.0, 4.0, 19.0]
    table = udfs.NEARMISS_SPC([[v] for v in series], "decrease")
    expected = spc.xmr(series, improvement="decrease")
    assert [r[0] for r in table[1:]] == series
    for row, (_, exp) in zip(table[1:], expected.iterrows()):
        assert row[1:4] == pytest.approx([exp["mean"], exp["lpl"], exp["upl"]])
        assert row[4:] == [exp["point_type"], exp["rule"]]
    assert table[-1][4:] == ["special_cause_concern", "outside_limits"]


def test_spc_takes_a_row_ignores_trailing_blanks_and_defaults_to_neutral():
    row = udfs.NEARMISS_SPC([[2.0, 4.0, 3.0, None, None]])
    col = udfs.NEARMISS_SPC([[2.0], [4.0], [3.0]], None)
    assert row == col and len(row) == 4
    assert spc.xmr([2.0, 4.0, 3.0], improvement="neutral")["point_type"].tolist() == [r[4] for r in row[1:]]


def test_spc_one_point_has_blank_limits():
    assert udfs.NEARMISS_SPC([[7.0]]) == [functions.SPC_HEADER, [7.0, 7.0, "", "", "common_cause", ""]]


@pytest.mark.parametrize("values,improvement,message", [
    ([[1.0], [None], [3.0]], "neutral", "value 2 is blank"),
    ([[1.0], ["n/a"], [3.0]], "neutral", "value 2 is not a number: 'n/a'"),
    ([[1.0, 2.0], [3.0, 4.0]], "neutral", "one column or one row"),
    ([[None], [None]], "neutral", "no numbers"),
    ([[1.0], [2.0]], "up", "improvement must be one of increase, decrease, neutral"),
])
def test_spc_bad_input_shows_a_message_in_the_cell(values, improvement, message):
    [[text]] = udfs.NEARMISS_SPC(values, improvement)
    assert text.startswith("NEARMISS_SPC: ") and message in text


# --- NEARMISS_CHECK --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flawed_site() -> SiteRecords:
    return make_site(end=DATA_END, seed=11, months=6, flaw_rate=0.35)


def test_check_matches_the_validator_row_by_row(flawed_site, monkeypatch):
    monkeypatch.setattr(udfs.dt, "date", type("FixedDate", (dt.date,), {"today": staticmethod(lambda: DATA_END)}))
    frame = flawed_site.incidents.reset_index(drop=True)
    rows = 10
    # The validator over these rows at once; row-level findings are the same as one row at a time.
    found = validate_records(SiteRecords(site={}, incidents=frame.iloc[:rows]), today=DATA_END)
    expected: dict[int, list[str]] = {}  # frame position -> lines (records without _row start at row 2)
    for f in found:
        if f.sheet == "Log" and f.rule not in functions.CROSS_ROW_RULES:
            expected.setdefault(int(re.sub(r"^[A-Z]+", "", f.cell)) - 2, []).append(f"{f.rule}: {f.message}")
    assert sum(map(len, expected.values())) > 0  # the flawed rows really are checked
    for i in range(rows):
        got = [r[0] for r in udfs.NEARMISS_CHECK(excel_row(frame, i))]
        assert sorted(got) == sorted(expected.get(i, ["OK"]))


def test_check_hand_worked_rows():
    today = dt.date(2026, 10, 31)
    cells = {f.name: None for f in INCIDENTS.fields}
    cells.update(incident_ref="OAK-2026-0001", site_code="OAK", occurred_at=dt.datetime(2026, 10, 29),
                 reported_at=dt.datetime(2026, 10, 27), event_type="near_miss", category="falls",
                 physical_harm="low", response_tier="low", description="Slipped on a wet floor", status="open")
    row = [[cells[f.name] for f in INCIDENTS.fields]]
    lines = functions.check_row(row, today=today)
    assert any(line.startswith("NM011: ") for line in lines)  # reported before it occurred
    assert any(line.startswith("NM020: ") for line in lines)  # a near miss with harm
    cells.update(reported_at=dt.datetime(2026, 10, 29), physical_harm="none")
    assert functions.check_row([[cells[f.name] for f in INCIDENTS.fields]], today=today) == ["OK"]
    cells.update(occurred_at="31/02/2026")  # text that is not a date
    assert any(line.startswith("NM005: ") for line in
               functions.check_row([[cells[f.name] for f in INCIDENTS.fields]], today=today))


def test_check_spills_down_and_handles_blank_and_wrong_rows():
    blank = [[None] * len(INCIDENTS.fields)]
    assert udfs.NEARMISS_CHECK(blank) == [[""]]
    [[short]] = udfs.NEARMISS_CHECK([[None, "OAK"]])
    assert short.startswith("NEARMISS_CHECK: give the whole Log row, columns A to AN (40 cells)")
    [[tall]] = udfs.NEARMISS_CHECK(blank + blank)
    assert "one Log row" in tall


def test_udfs_are_plain_functions_on_linux():
    # The decorators pass through on Linux: what Excel calls is the function itself.
    assert udfs.NEARMISS_RATE.__name__ == "NEARMISS_RATE"
    assert callable(udfs.NEARMISS_SPC) and callable(udfs.NEARMISS_CHECK)


def test_documented_log_range_matches_the_contract():
    last = INCIDENTS.column_letter(INCIDENTS.fields[-1].name)
    docs = (Path(__file__).parents[1] / "docs" / "excel-addin.md").read_text()
    assert f"Log!A14:{last}14" in docs and f"Log!A14:{last}14" in udfs.__doc__
